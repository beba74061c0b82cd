//! Test support: a small in-memory MaxMind DB writer.
//!
//! Available with the cargo feature `testing` (and always in this crate's own
//! tests). [`mmdb_bytes`] builds a database in the same shape as the real
//! `geo-whois-asn-country.mmdb` — an IPv6 search tree whose records are maps
//! `{"country_code": "DE"}` — so other crates can test their geo code with
//! [`CountryDb::from_bytes`](crate::CountryDb::from_bytes) without the
//! downloaded file.
//!
//! The writer follows the MaxMind DB format 2.0
//! (<https://maxmind.github.io/MaxMind-DB/>):
//!
//! * binary search tree, `ip_version` 6, record size 24 bits (28 or 32 if the
//!   tree or data section grows too large for 24);
//! * IPv4 networks live at `::a.b.c.d` (96 zero bits, then the IPv4 bits), and
//!   `::ffff:0:0/96` (IPv4-mapped IPv6) is an alias pointing at that same
//!   IPv4 subtree, as in MaxMind's own databases;
//! * a 16-byte zero separator, then the data section with one map per
//!   distinct country;
//! * the metadata marker `\xAB\xCD\xEFMaxMind.com` and the metadata map.
//!
//! Only use documentation addresses in tests (`192.0.2.0/24`,
//! `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`).

use std::collections::HashMap;
use std::net::IpAddr;

/// `database_type` written into the metadata of [`mmdb_bytes`] databases.
pub const DATABASE_TYPE: &str = "Ringfence-Test-Country";

/// `build_epoch` written into the metadata of [`mmdb_bytes`] databases
/// (2023-11-14T22:13:20Z), fixed so the output is deterministic.
pub const BUILD_EPOCH: u64 = 1_700_000_000;

const METADATA_MARKER: &[u8] = b"\xAB\xCD\xEFMaxMind.com";
const DATA_SECTION_SEPARATOR: [u8; 16] = [0; 16];
/// Depth of the IPv4 subtree (`::/96`) in the IPv6 tree.
const IPV4_DEPTH: u8 = 96;
/// `::ffff:0:0/96`, the IPv4-mapped IPv6 range.
const IPV4_MAPPED: u128 = 0xffff_u128 << 32;

// Data types of the MaxMind DB data section.
const TYPE_UTF8_STRING: u8 = 2;
const TYPE_UINT16: u8 = 5;
const TYPE_UINT32: u8 = 6;
const TYPE_MAP: u8 = 7;
const TYPE_UINT64: u8 = 9;
const TYPE_ARRAY: u8 = 11;

/// Builds a MaxMind DB file (as bytes) mapping networks to countries.
///
/// Each entry is `(network address, prefix length, country code)`, for
/// example `("192.0.2.0".parse()?, 24, "DE")` or
/// `("2001:db8:1::".parse()?, 48, "IE")`. Every record is the map
/// `{"country_code": <code>}`. The country string is written verbatim (not
/// validated or uppercased), so tests can also build databases with malformed
/// codes.
///
/// Rules:
///
/// * **Entries are applied in order and later entries win where they
///   overlap.** A more-specific entry listed *after* a broader one carves its
///   range out of it (`198.51.100.0/24 → US`, then `198.51.100.128/25 → CA`
///   gives US for `.0–.127` and CA for `.128–.255`); a broader entry listed
///   after a more-specific one replaces it entirely.
/// * Host bits beyond the prefix length are ignored (`192.0.2.77/24` is
///   `192.0.2.0/24`).
/// * IPv4 entries are stored at `::a.b.c.d/(96 + prefix)`. IPv6 entries inside
///   `::ffff:0:0/96` are treated as the IPv4 network they map; the
///   `::ffff:0:0/96` range itself is always an alias of the IPv4 subtree.
/// * Addresses not covered by any entry have no record.
///
/// # Panics
///
/// If a prefix length is longer than the address (32 for IPv4, 128 for IPv6).
pub fn mmdb_bytes(entries: &[(IpAddr, u8, &str)]) -> Vec<u8> {
    write(entries, &Options::default())
}

/// Knobs for this crate's own tests (malformed databases, record sizes).
pub(crate) struct Options<'a> {
    /// Key of the country code in each record.
    pub(crate) key: &'a str,
    /// Metadata `database_type`.
    pub(crate) database_type: &'a str,
    /// Force a record size (24, 28 or 32) instead of the smallest that fits.
    pub(crate) record_size: Option<u16>,
    /// Alias `::ffff:0:0/96` to the IPv4 subtree.
    pub(crate) ipv4_mapped_alias: bool,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            key: "country_code",
            database_type: DATABASE_TYPE,
            record_size: None,
            ipv4_mapped_alias: true,
        }
    }
}

/// A record of the search tree while building.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Rec {
    /// No data for this network.
    Empty,
    /// Index into `Tree::nodes`.
    Node(usize),
    /// Index into the list of distinct values.
    Data(usize),
}

struct Tree {
    /// `[left (bit 0), right (bit 1)]` per node; node 0 is the root.
    nodes: Vec<[Rec; 2]>,
}

/// Bit `depth` (0 = most significant) of a 128-bit address.
fn bit_at(bits: u128, depth: u8) -> usize {
    usize::from((bits >> (127 - u32::from(depth))) & 1 == 1)
}

impl Tree {
    fn new() -> Tree {
        Tree {
            nodes: vec![[Rec::Empty; 2]],
        }
    }

    /// Follows `bits` for `depth` steps from the root and returns the node
    /// reached, creating nodes on the way. A leaf on the path is split into a
    /// node whose two children both keep the leaf's value.
    fn node_at(&mut self, bits: u128, depth: u8) -> usize {
        let mut node = 0;
        for d in 0..depth {
            let bit = bit_at(bits, d);
            node = match self.nodes[node][bit] {
                Rec::Node(child) => child,
                leaf => {
                    let child = self.nodes.len();
                    self.nodes.push([leaf; 2]);
                    self.nodes[node][bit] = Rec::Node(child);
                    child
                }
            };
        }
        node
    }

    /// Sets the whole network `bits/prefix` to `value`, replacing whatever
    /// was there (including more-specific networks inside it).
    fn insert(&mut self, bits: u128, prefix: u8, value: Rec) {
        match prefix.checked_sub(1) {
            None => self.nodes[0] = [value; 2],
            Some(last) => {
                let parent = self.node_at(bits, last);
                self.nodes[parent][bit_at(bits, last)] = value;
            }
        }
    }

    /// Points `::ffff:0:0/96` at the IPv4 subtree (`::/96`).
    fn alias_ipv4_mapped(&mut self) {
        let ipv4_root = self.node_at(0, IPV4_DEPTH);
        self.insert(IPV4_MAPPED, IPV4_DEPTH, Rec::Node(ipv4_root));
    }
}

/// Network address as 128 bits in the IPv6 tree, and its prefix length there.
fn tree_network(ip: IpAddr, prefix: u8) -> (u128, u8) {
    let (bits, prefix) = match ip {
        IpAddr::V4(v4) => {
            assert!(
                prefix <= 32,
                "IPv4 prefix length {prefix} is longer than 32"
            );
            (u128::from(u32::from(v4)), prefix + IPV4_DEPTH)
        }
        IpAddr::V6(v6) => {
            assert!(
                prefix <= 128,
                "IPv6 prefix length {prefix} is longer than 128"
            );
            let bits = u128::from(v6);
            if prefix >= IPV4_DEPTH && bits >> 32 == IPV4_MAPPED >> 32 {
                // ::ffff:a.b.c.d/(96 + n) is the IPv4 network a.b.c.d/n.
                (bits & u128::from(u32::MAX), prefix)
            } else {
                (bits, prefix)
            }
        }
    };
    let mask = match prefix {
        0 => 0,
        p => u128::MAX << (128 - u32::from(p)),
    };
    (bits & mask, prefix)
}

pub(crate) fn write(entries: &[(IpAddr, u8, &str)], options: &Options<'_>) -> Vec<u8> {
    // Distinct values, in order of first use.
    let mut values: Vec<&str> = Vec::new();
    let mut value_index: HashMap<&str, usize> = HashMap::new();
    let mut tree = Tree::new();
    for &(ip, prefix, country) in entries {
        let index = *value_index.entry(country).or_insert_with(|| {
            values.push(country);
            values.len() - 1
        });
        let (bits, prefix) = tree_network(ip, prefix);
        tree.insert(bits, prefix, Rec::Data(index));
    }
    if options.ipv4_mapped_alias {
        tree.alias_ipv4_mapped();
    }

    // Number the reachable nodes breadth-first from the root (node 0 stays 0;
    // nodes replaced by a later, broader entry are dropped).
    let mut number: Vec<Option<usize>> = vec![None; tree.nodes.len()];
    let mut order = vec![0_usize];
    number[0] = Some(0);
    let mut next = 0;
    while let Some(&node) = order.get(next) {
        next += 1;
        for rec in tree.nodes[node] {
            if let Rec::Node(child) = rec
                && number[child].is_none()
            {
                number[child] = Some(order.len());
                order.push(child);
            }
        }
    }
    let node_count = order.len();

    // Data section: one map {key: country} per distinct value.
    let mut data = Vec::new();
    let mut value_offset = Vec::with_capacity(values.len());
    for value in &values {
        value_offset.push(data.len());
        write_control(&mut data, TYPE_MAP, 1);
        write_str(&mut data, options.key);
        write_str(&mut data, value);
    }

    let record_value = |rec: Rec| -> u64 {
        let value = match rec {
            Rec::Empty => node_count,
            Rec::Node(node) => number[node].unwrap_or(node_count),
            Rec::Data(index) => node_count + DATA_SECTION_SEPARATOR.len() + value_offset[index],
        };
        value as u64
    };
    let largest = (node_count + DATA_SECTION_SEPARATOR.len() + data.len()) as u64;
    let record_size = options.record_size.unwrap_or(match largest {
        l if l < 1 << 24 => 24,
        l if l < 1 << 28 => 28,
        _ => 32,
    });
    assert!(
        matches!(record_size, 24 | 28 | 32) && largest < 1_u64 << record_size,
        "record size {record_size} cannot address {largest}"
    );

    let mut out = Vec::with_capacity(node_count * usize::from(record_size) / 4 + data.len() + 256);
    for &node in &order {
        let [left, right] = tree.nodes[node].map(record_value);
        write_node(&mut out, record_size, left, right);
    }
    out.extend_from_slice(&DATA_SECTION_SEPARATOR);
    out.extend_from_slice(&data);

    out.extend_from_slice(METADATA_MARKER);
    write_control(&mut out, TYPE_MAP, 9);
    write_str(&mut out, "node_count");
    write_uint(&mut out, TYPE_UINT32, node_count as u64);
    write_str(&mut out, "record_size");
    write_uint(&mut out, TYPE_UINT16, u64::from(record_size));
    write_str(&mut out, "ip_version");
    write_uint(&mut out, TYPE_UINT16, 6);
    write_str(&mut out, "database_type");
    write_str(&mut out, options.database_type);
    write_str(&mut out, "languages");
    write_control(&mut out, TYPE_ARRAY, 1);
    write_str(&mut out, "en");
    write_str(&mut out, "binary_format_major_version");
    write_uint(&mut out, TYPE_UINT16, 2);
    write_str(&mut out, "binary_format_minor_version");
    write_uint(&mut out, TYPE_UINT16, 0);
    write_str(&mut out, "build_epoch");
    write_uint(&mut out, TYPE_UINT64, BUILD_EPOCH);
    write_str(&mut out, "description");
    write_control(&mut out, TYPE_MAP, 1);
    write_str(&mut out, "en");
    write_str(
        &mut out,
        "Ringfence test fixture (documentation addresses only)",
    );
    out
}

/// One search-tree node: two records of `record_size` bits, big-endian.
fn write_node(out: &mut Vec<u8>, record_size: u16, left: u64, right: u64) {
    let be = |v: u64| v.to_be_bytes();
    match record_size {
        24 => {
            out.extend_from_slice(&be(left)[5..]);
            out.extend_from_slice(&be(right)[5..]);
        }
        28 => {
            // [left low 24][left high 4 | right high 4][right low 24]
            out.extend_from_slice(&be(left)[5..]);
            out.push((((left >> 24) & 0x0f) << 4 | ((right >> 24) & 0x0f)) as u8);
            out.extend_from_slice(&be(right)[5..]);
        }
        _ => {
            out.extend_from_slice(&be(left)[4..]);
            out.extend_from_slice(&be(right)[4..]);
        }
    }
}

/// Control byte(s) of a data field: type (extended types take an extra
/// byte) and payload size (sizes of 29 and more take 1–3 extra bytes).
fn write_control(out: &mut Vec<u8>, type_num: u8, size: usize) {
    let (size_bits, extra): (u8, Vec<u8>) = match size {
        0..=28 => (size as u8, Vec::new()),
        29..=284 => (29, vec![(size - 29) as u8]),
        285..=65_820 => (30, ((size - 285) as u16).to_be_bytes().to_vec()),
        _ => {
            assert!(size <= 16_843_036, "field of {size} bytes is too large");
            (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec())
        }
    };
    if type_num <= 7 {
        out.push(type_num << 5 | size_bits);
    } else {
        out.push(size_bits);
        out.push(type_num - 7);
    }
    out.extend_from_slice(&extra);
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    write_control(out, TYPE_UTF8_STRING, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// Unsigned integer in the fewest big-endian bytes (zero has no bytes).
fn write_uint(out: &mut Vec<u8>, type_num: u8, value: u64) {
    let bytes = value.to_be_bytes();
    let skip = (value.leading_zeros() / 8) as usize;
    write_control(out, type_num, bytes.len() - skip);
    out.extend_from_slice(&bytes[skip..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The fixture from the crate docs/brief.
    fn fixture() -> Vec<(IpAddr, u8, &'static str)> {
        vec![
            (ip("192.0.2.0"), 24, "DE"),
            (ip("198.51.100.0"), 24, "US"),
            (ip("203.0.113.0"), 25, "FR"),
            (ip("2001:db8:1::"), 48, "IE"),
            (ip("2001:db8:2::"), 48, "CH"),
        ]
    }

    /// Reads `country_code` straight through the `maxminddb` crate, bypassing
    /// `CountryDb`, so the writer is checked against the real reader.
    fn raw_lookup(reader: &maxminddb::Reader<Vec<u8>>, addr: &str) -> Option<String> {
        let result = reader.lookup(ip(addr)).unwrap();
        result
            .decode_path(&[maxminddb::PathElement::Key("country_code")])
            .unwrap()
    }

    fn check_fixture(reader: &maxminddb::Reader<Vec<u8>>) {
        let cases = [
            ("192.0.2.0", Some("DE")),
            ("192.0.2.5", Some("DE")),
            ("192.0.2.255", Some("DE")),
            ("198.51.100.1", Some("US")),
            ("198.51.100.255", Some("US")),
            ("203.0.113.0", Some("FR")),
            ("203.0.113.127", Some("FR")),
            ("2001:db8:1::1", Some("IE")),
            ("2001:db8:1:ffff:ffff:ffff:ffff:ffff", Some("IE")),
            ("2001:db8:2::1", Some("CH")),
            // Outside every entry.
            ("203.0.113.128", None),
            ("203.0.113.200", None),
            ("192.0.3.1", None),
            ("192.0.1.255", None),
            ("2001:db8:3::1", None),
            ("2001:db8::1", None),
            ("::", None),
            ("0.0.0.0", None),
            // IPv4 in the IPv6 tree: ::a.b.c.d and the ::ffff:0:0/96 alias.
            ("::192.0.2.5", Some("DE")),
            ("::ffff:192.0.2.5", Some("DE")),
            ("::ffff:203.0.113.200", None),
        ];
        for (addr, want) in cases {
            assert_eq!(raw_lookup(reader, addr).as_deref(), want, "{addr}");
        }
    }

    #[test]
    fn fixture_reads_back_with_maxminddb_at_every_record_size() {
        for record_size in [None, Some(24), Some(28), Some(32)] {
            let options = Options {
                record_size,
                ..Options::default()
            };
            let reader = maxminddb::Reader::from_source(write(&fixture(), &options)).unwrap();
            let metadata = reader.metadata();
            assert_eq!(metadata.record_size, record_size.unwrap_or(24));
            assert_eq!(metadata.ip_version, 6);
            assert_eq!(metadata.database_type, DATABASE_TYPE);
            assert_eq!(metadata.build_epoch, BUILD_EPOCH);
            assert_eq!(metadata.binary_format_major_version, 2);
            assert_eq!(metadata.binary_format_minor_version, 0);
            assert_eq!(metadata.languages, ["en"]);
            // The strict verifier: tree, separator, every referenced record.
            reader.verify().unwrap();
            check_fixture(&reader);
        }
    }

    #[test]
    fn lookups_report_the_written_networks() {
        let reader = maxminddb::Reader::from_source(mmdb_bytes(&fixture())).unwrap();
        let network = |addr: &str| reader.lookup(ip(addr)).unwrap().network().unwrap();
        assert_eq!(network("192.0.2.9").to_string(), "192.0.2.0/24");
        assert_eq!(network("203.0.113.9").to_string(), "203.0.113.0/25");
        assert_eq!(network("2001:db8:2::9").to_string(), "2001:db8:2::/48");
    }

    #[test]
    fn iterating_the_database_yields_exactly_the_entries() {
        let reader = maxminddb::Reader::from_source(mmdb_bytes(&fixture())).unwrap();
        let mut seen: Vec<(String, String)> = reader
            .networks(maxminddb::WithinOptions::default())
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                let code: String = r
                    .decode_path(&[maxminddb::PathElement::Key("country_code")])
                    .unwrap()
                    .unwrap();
                (r.network().unwrap().to_string(), code)
            })
            .collect();
        seen.sort();
        let mut want: Vec<(String, String)> = [
            ("192.0.2.0/24", "DE"),
            ("198.51.100.0/24", "US"),
            ("203.0.113.0/25", "FR"),
            ("2001:db8:1::/48", "IE"),
            ("2001:db8:2::/48", "CH"),
        ]
        .iter()
        .map(|(n, c)| (n.to_string(), c.to_string()))
        .collect();
        want.sort();
        assert_eq!(seen, want);
    }

    #[test]
    fn later_more_specific_entries_win_and_later_broader_entries_replace() {
        let bytes = mmdb_bytes(&[
            (ip("198.51.100.0"), 24, "US"),
            (ip("198.51.100.128"), 25, "CA"),
            (ip("198.51.100.192"), 26, "MX"),
            (ip("2001:db8:1::"), 48, "IE"),
            (ip("2001:db8:1:2::"), 64, "GB"),
            // A broader entry after a more-specific one replaces it.
            (ip("203.0.113.64"), 26, "NL"),
            (ip("203.0.113.0"), 24, "BE"),
        ]);
        let reader = maxminddb::Reader::from_source(bytes).unwrap();
        reader.verify().unwrap();
        for (addr, want) in [
            ("198.51.100.1", "US"),
            ("198.51.100.127", "US"),
            ("198.51.100.128", "CA"),
            ("198.51.100.191", "CA"),
            ("198.51.100.192", "MX"),
            ("198.51.100.255", "MX"),
            ("2001:db8:1:1::1", "IE"),
            ("2001:db8:1:2::1", "GB"),
            ("2001:db8:1:3::1", "IE"),
            ("203.0.113.70", "BE"),
            ("203.0.113.1", "BE"),
        ] {
            assert_eq!(raw_lookup(&reader, addr).as_deref(), Some(want), "{addr}");
        }
    }

    #[test]
    fn host_bits_and_mapped_entries_are_normalised() {
        let bytes = mmdb_bytes(&[
            (ip("192.0.2.77"), 24, "DE"),
            (ip("::ffff:198.51.100.0"), 120, "US"),
        ]);
        let reader = maxminddb::Reader::from_source(bytes).unwrap();
        reader.verify().unwrap();
        assert_eq!(raw_lookup(&reader, "192.0.2.1").as_deref(), Some("DE"));
        assert_eq!(raw_lookup(&reader, "198.51.100.9").as_deref(), Some("US"));
        assert_eq!(
            raw_lookup(&reader, "::ffff:198.51.100.9").as_deref(),
            Some("US")
        );
    }

    #[test]
    fn empty_and_host_entries() {
        let reader = maxminddb::Reader::from_source(mmdb_bytes(&[])).unwrap();
        assert_eq!(raw_lookup(&reader, "192.0.2.1"), None);
        assert_eq!(raw_lookup(&reader, "2001:db8::1"), None);

        let bytes = mmdb_bytes(&[
            (IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 32, "DE"),
            (
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
                128,
                "FR",
            ),
        ]);
        let reader = maxminddb::Reader::from_source(bytes).unwrap();
        reader.verify().unwrap();
        assert_eq!(raw_lookup(&reader, "192.0.2.1").as_deref(), Some("DE"));
        assert_eq!(raw_lookup(&reader, "192.0.2.0"), None);
        assert_eq!(raw_lookup(&reader, "192.0.2.2"), None);
        assert_eq!(raw_lookup(&reader, "2001:db8::1").as_deref(), Some("FR"));
        assert_eq!(raw_lookup(&reader, "2001:db8::2"), None);
    }

    #[test]
    fn long_strings_use_extended_sizes() {
        // Keys/values of 29+, 285+ bytes exercise the size extension bytes.
        for len in [28, 29, 284, 285, 70_000] {
            let value = "x".repeat(len);
            let reader =
                maxminddb::Reader::from_source(mmdb_bytes(&[(ip("192.0.2.0"), 24, &value)]))
                    .unwrap();
            reader.verify().unwrap();
            assert_eq!(raw_lookup(&reader, "192.0.2.1"), Some(value), "{len}");
        }
    }

    #[test]
    #[should_panic(expected = "longer than 32")]
    fn rejects_overlong_ipv4_prefix() {
        mmdb_bytes(&[(ip("192.0.2.0"), 33, "DE")]);
    }
}
