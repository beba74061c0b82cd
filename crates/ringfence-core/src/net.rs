//! Which network addresses the server may connect to on someone else's say-so: a webhook
//! recipient's URL, a recording URL named by a provider callback. The one place these rules
//! live; the connect-time guard (`ringfence_jobs::outbound`) and the API's checks both ask it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 ranges that are never a public server: (network, prefix length).
const NOT_PUBLIC_V4: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),       // "this network", unspecified
    (Ipv4Addr::new(10, 0, 0, 0), 8),      // private (RFC 1918)
    (Ipv4Addr::new(100, 64, 0, 0), 10),   // shared address space, CGNAT (RFC 6598)
    (Ipv4Addr::new(127, 0, 0, 0), 8),     // loopback
    (Ipv4Addr::new(169, 254, 0, 0), 16),  // link-local (cloud metadata services)
    (Ipv4Addr::new(172, 16, 0, 0), 12),   // private (RFC 1918)
    (Ipv4Addr::new(192, 0, 0, 0), 24),    // IETF protocol assignments
    (Ipv4Addr::new(192, 0, 2, 0), 24),    // documentation (TEST-NET-1)
    (Ipv4Addr::new(192, 88, 99, 0), 24),  // 6to4 relay anycast (deprecated)
    (Ipv4Addr::new(192, 168, 0, 0), 16),  // private (RFC 1918)
    (Ipv4Addr::new(198, 18, 0, 0), 15),   // benchmarking (RFC 2544)
    (Ipv4Addr::new(198, 51, 100, 0), 24), // documentation (TEST-NET-2)
    (Ipv4Addr::new(203, 0, 113, 0), 24),  // documentation (TEST-NET-3)
    (Ipv4Addr::new(224, 0, 0, 0), 4),     // multicast
    (Ipv4Addr::new(240, 0, 0, 0), 4),     // reserved, and 255.255.255.255 broadcast
];

/// IPv6 ranges inside global unicast (`2000::/3`) that are never a public server. Everything
/// outside `2000::/3` (unspecified, loopback, IPv4-compatible and -mapped, discard, unique
/// local `fc00::/7`, link-local `fe80::/10`, site-local, multicast `ff00::/8`) is not public
/// either, except the NAT64 prefix, judged by the IPv4 address it carries.
const NOT_PUBLIC_V6: &[(Ipv6Addr, u8)] = &[
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32), // Teredo (carries any IPv4 address)
    (Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0), 48), // benchmarking (RFC 5180)
    (Ipv6Addr::new(0x2001, 0x10, 0, 0, 0, 0, 0, 0), 28), // ORCHID
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16), // 6to4 (carries any IPv4 address)
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20), // documentation (RFC 9637)
];

fn in_v4(ip: Ipv4Addr, (net, len): (Ipv4Addr, u8)) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net)
}

fn in_v6(ip: Ipv6Addr, (net, len): (Ipv6Addr, u8)) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net)
}

/// Whether `ip` is a globally reachable unicast address: not loopback, private, link-local,
/// unique-local, CGNAT, unspecified, multicast, broadcast, reserved or documentation space,
/// and not an IPv6 form (mapped, compatible, NAT64, 6to4, Teredo) of such an IPv4 address.
pub fn is_public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !NOT_PUBLIC_V4.iter().any(|&range| in_v4(v4, range)),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_address(IpAddr::V4(v4));
            }
            // NAT64 well-known prefix 64:ff9b::/96: an IPv6-only network's way to IPv4.
            if in_v6(v6, (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96)) {
                let [.., a, b, c, d] = v6.octets();
                return is_public_address(IpAddr::V4(Ipv4Addr::new(a, b, c, d)));
            }
            in_v6(v6, (Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3))
                && !NOT_PUBLIC_V6.iter().any(|&range| in_v6(v6, range))
        }
    }
}

/// Whether `ip` is a loopback address (`127.0.0.0/8`, `::1`, or `127.x` mapped into IPv6):
/// the only non-public place an operator may open to outbound requests (local relays, tests).
pub fn is_loopback_address(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Whether a host name is a name for loopback that never needs DNS: `localhost` and names
/// under `.localhost` (RFC 6761).
pub fn is_loopback_name(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

/// A host allowed by an operator's list: `api.twilio.com` matches that name only,
/// `*.twilio.com` any name below `twilio.com` (not `twilio.com` itself). Case-insensitive;
/// a trailing dot is ignored. An IP address matches an entry that spells it.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            !suffix.is_empty()
                && host.len() > suffix.len() + 1
                && host.ends_with(&suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
        }
        None => !pattern.is_empty() && host == pattern,
    }
}

/// Whether `pattern` is a valid entry for [`host_matches`]: a host name (letters, digits,
/// hyphens, dots), optionally behind `*.`, or an IP address.
pub fn valid_host_pattern(pattern: &str) -> bool {
    if pattern.parse::<IpAddr>().is_ok() {
        return true;
    }
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_globally_reachable_unicast_addresses_are_public() {
        let table: &[(&str, bool)] = &[
            // Public (well-known anycast resolvers, a Twilio-style range).
            ("1.1.1.1", true),
            ("8.8.8.8", true),
            ("54.172.60.0", true),
            ("100.63.255.255", true),
            ("100.128.0.0", true),
            ("172.15.255.255", true),
            ("172.32.0.0", true),
            ("2606:4700:4700::1111", true),
            ("2a00:1450:4009:81f::200e", true),
            ("::ffff:8.8.8.8", true),
            ("64:ff9b::808:808", true),
            // Loopback, unspecified, broadcast.
            ("127.0.0.1", false),
            ("127.255.255.254", false),
            ("0.0.0.0", false),
            ("0.1.2.3", false),
            ("255.255.255.255", false),
            ("::1", false),
            ("::", false),
            // Private, CGNAT, link-local (metadata), benchmarking, protocol assignments.
            ("10.0.0.1", false),
            ("172.16.0.1", false),
            ("172.31.255.255", false),
            ("192.168.1.1", false),
            ("100.64.0.1", false),
            ("100.127.255.255", false),
            ("169.254.169.254", false),
            ("198.18.0.1", false),
            ("192.0.0.8", false),
            // Multicast, reserved.
            ("224.0.0.1", false),
            ("239.255.255.250", false),
            ("240.0.0.1", false),
            ("ff02::1", false),
            ("ff05::2", false),
            // Documentation.
            ("192.0.2.1", false),
            ("198.51.100.7", false),
            ("203.0.113.9", false),
            ("2001:db8::1", false),
            ("3fff::1", false),
            // IPv6 link-local, unique-local, site-local, discard.
            ("fe80::1", false),
            ("febf::1", false),
            ("fc00::1", false),
            ("fd00::1", false),
            ("fec0::1", false),
            ("100::1", false),
            // IPv6 forms of non-public IPv4 addresses.
            ("::ffff:127.0.0.1", false),
            ("::ffff:10.0.0.1", false),
            ("::ffff:169.254.169.254", false),
            ("::127.0.0.1", false),
            ("64:ff9b::a00:1", false),
            ("64:ff9b::7f00:1", false),
            ("2002:a00:1::1", false),
            ("2001:0:4136:e378::1", false),
        ];
        for &(text, public) in table {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(is_public_address(ip), public, "{text}");
        }
    }

    #[test]
    fn loopback_addresses_and_names() {
        for ip in ["127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback_address(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.1", "::", "0.0.0.0", "fe80::1"] {
            assert!(!is_loopback_address(ip.parse().unwrap()), "{ip}");
        }
        assert!(is_loopback_name("localhost"));
        assert!(is_loopback_name("LOCALHOST."));
        assert!(is_loopback_name("relay.localhost"));
        assert!(!is_loopback_name("localhost.example.com"));
        assert!(!is_loopback_name("notlocalhost"));
    }

    #[test]
    fn host_patterns_match_a_name_or_the_names_below_a_suffix() {
        assert!(host_matches("api.twilio.com", "api.twilio.com"));
        assert!(host_matches("api.twilio.com", "API.Twilio.com."));
        assert!(!host_matches(
            "api.twilio.com",
            "api.twilio.com.evil.example"
        ));
        assert!(!host_matches("api.twilio.com", "xapi.twilio.com"));
        assert!(host_matches("*.twilio.com", "api.dublin.ie1.twilio.com"));
        assert!(!host_matches("*.twilio.com", "twilio.com"));
        assert!(!host_matches("*.twilio.com", "eviltwilio.com"));
        assert!(!host_matches("*.twilio.com", "twilio.com.evil.example"));
        assert!(host_matches("127.0.0.1", "127.0.0.1"));
        assert!(!host_matches("", ""));
        assert!(!host_matches("*.", "a."));
        for ok in ["api.twilio.com", "*.twiliocdn.com", "127.0.0.1", "::1"] {
            assert!(valid_host_pattern(ok), "{ok}");
        }
        for bad in ["", "*.", "*", "a..b", "http://x", "a/b", "*.*.x", "a b"] {
            assert!(!valid_host_pattern(bad), "{bad}");
        }
    }
}
