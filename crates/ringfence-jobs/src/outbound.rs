//! Outbound HTTP to places named by someone else (a webhook recipient's URL, a provider
//! callback's recording URL): which addresses may be connected to, checked on the address
//! actually connected to, not only on the name in the URL.
//!
//! The rules are `ringfence_core::net::is_public_address`; loopback is allowed only when the
//! operator enables it. A client built with [`guarded`] resolves names through
//! [`GuardedResolver`], which drops every address the guard refuses (so a name that
//! resolves to `10.0.0.1` or `169.254.169.254` is never connected to, whenever it is
//! resolved), and uses no proxy. IP-literal hosts never reach a resolver: callers check
//! them with [`AddressGuard::permits_url`] before each request and each redirect hop.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use ringfence_core::net::{host_matches, is_loopback_address, is_loopback_name, is_public_address};

/// Which addresses outbound requests may reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressGuard {
    /// Loopback (`127.0.0.0/8`, `::1`) too: local relays and tests, only when the operator
    /// enables it.
    pub allow_loopback: bool,
}

/// The guard refused every address a name resolved to. Its text names no address.
#[derive(Debug, thiserror::Error)]
#[error("the name resolves to no permitted address")]
pub struct Refused;

impl AddressGuard {
    pub fn permits(&self, ip: IpAddr) -> bool {
        is_public_address(ip) || (self.allow_loopback && is_loopback_address(ip))
    }

    /// Whether the URL's host may be connected to as far as can be told without DNS: an IP
    /// literal must be permitted, a loopback name (`localhost`) needs loopback allowed; other
    /// names are checked when resolved.
    pub fn permits_url(&self, url: &Url) -> bool {
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.permits(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.permits(IpAddr::V6(ip)),
            Some(url::Host::Domain(name)) => self.allow_loopback || !is_loopback_name(name),
            None => false,
        }
    }

    /// Resolves `host` now (bounded by `timeout`) and says whether every address it has is
    /// permitted: `Some(false)` if any is not, `None` if it does not resolve (then the
    /// connect-time check still applies).
    pub async fn check_name(&self, host: &str, timeout: Duration) -> Option<bool> {
        let lookup = tokio::net::lookup_host((host, 0));
        match tokio::time::timeout(timeout, lookup).await {
            Ok(Ok(addrs)) => {
                let addrs: Vec<SocketAddr> = addrs.collect();
                if addrs.is_empty() {
                    None
                } else {
                    Some(addrs.iter().all(|a| self.permits(a.ip())))
                }
            }
            _ => None,
        }
    }
}

/// A DNS resolver that answers only the addresses the guard permits, and fails when none is.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver(pub AddressGuard);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.0;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let permitted: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| guard.permits(a.ip()))
                .collect();
            if permitted.is_empty() {
                return Err(Box::new(Refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

/// A client builder that resolves through the guard and ignores proxy settings (a proxy
/// would connect on our behalf, past the guard).
pub fn guarded(builder: reqwest::ClientBuilder, guard: AddressGuard) -> reqwest::ClientBuilder {
    builder
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver(guard)))
}

/// Twilio's hosts that recording URLs and their redirects may point at, unless the operator
/// configures others: the REST API (`api.twilio.com`, and the regional
/// `api.<edge>.<region>.twilio.com`) and the media CDN it redirects downloads to.
pub const DEFAULT_TWILIO_MEDIA_HOSTS: &[&str] =
    &["api.twilio.com", "*.twilio.com", "*.twiliocdn.com"];

/// Where recordings may be fetched from: an operator's list of hosts (exact names or
/// `*.suffix`), `https` only — plain `http` only to loopback, and loopback only when local
/// fetching is enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaHosts {
    pub hosts: Vec<String>,
    pub allow_local: bool,
}

impl Default for MediaHosts {
    fn default() -> Self {
        Self {
            hosts: DEFAULT_TWILIO_MEDIA_HOSTS
                .iter()
                .map(|h| (*h).to_owned())
                .collect(),
            allow_local: false,
        }
    }
}

impl MediaHosts {
    pub fn guard(&self) -> AddressGuard {
        AddressGuard {
            allow_loopback: self.allow_local,
        }
    }

    /// Whether `url` may be fetched: scheme, no credentials in it, a listed host, and an IP
    /// literal (if it is one) the guard permits.
    pub fn permits(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => is_loopback_address(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => is_loopback_address(IpAddr::V6(ip)),
            Some(url::Host::Domain(name)) => is_loopback_name(name),
            None => false,
        };
        let scheme = match url.scheme() {
            "https" => true,
            "http" => self.allow_local && loopback,
            _ => false,
        };
        scheme
            && url.username().is_empty()
            && url.password().is_none()
            && self.hosts.iter().any(|pattern| host_matches(pattern, host))
            && self.guard().permits_url(url)
    }

    /// The same check on a URL as text (at most 2,048 characters, no spaces or controls).
    pub fn permits_text(&self, url: &str) -> bool {
        url.len() <= 2048
            && !url.chars().any(|c| c.is_control() || c.is_whitespace())
            && Url::parse(url).is_ok_and(|u| self.permits(&u))
    }

    /// A redirect policy that follows at most `max` hops, each to a permitted URL; any other
    /// hop is an error (reqwest drops the Authorization header on a hop to another host).
    pub fn redirect_policy(&self, max: usize) -> reqwest::redirect::Policy {
        let hosts = self.clone();
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max {
                attempt.error(OffHosts)
            } else if hosts.permits(attempt.url()) {
                attempt.follow()
            } else {
                attempt.error(OffHosts)
            }
        })
    }
}

/// A redirect the policy refused. Its text names no URL.
#[derive(Debug, thiserror::Error)]
#[error("redirect refused")]
pub struct OffHosts;

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn recording_urls_must_name_an_allowed_host_over_https() {
        let twilio = MediaHosts::default();
        for ok in [
            "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1",
            "https://api.dublin.ie1.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1",
            "https://media.twiliocdn.com/x",
        ] {
            assert!(twilio.permits(&url(ok)), "{ok}");
        }
        for bad in [
            "http://api.twilio.com/rec",
            "https://user:pw@api.twilio.com/rec",
            "https://api.twilio.com.evil.example/rec",
            "https://twilio.com/rec",
            "https://10.0.0.1/rec",
            "https://169.254.169.254/latest/meta-data/",
            "https://[fd00::1]/rec",
            "http://127.0.0.1:8080/metrics",
            "https://localhost/rec",
            "ftp://api.twilio.com/rec",
        ] {
            assert!(!twilio.permits(&url(bad)), "{bad}");
        }
        for bad in [
            "https://",
            "https:///rec",
            "file:///etc/passwd",
            "https://api.twilio.com/a b",
            "https://api.twilio.com/a\nb",
            "api.twilio.com/rec",
        ] {
            assert!(!twilio.permits_text(bad), "{bad}");
        }
        // An operator's list that names loopback still needs local fetching enabled.
        let mut local = MediaHosts {
            hosts: vec!["127.0.0.1".into(), "localhost".into(), "10.0.0.1".into()],
            allow_local: false,
        };
        assert!(!local.permits(&url("http://127.0.0.1:9000/rec")));
        assert!(!local.permits(&url("https://localhost:9000/rec")));
        local.allow_local = true;
        assert!(local.permits(&url("http://127.0.0.1:9000/rec")));
        assert!(local.permits(&url("http://localhost:9000/rec")));
        assert!(
            !local.permits(&url("https://10.0.0.1/rec")),
            "listed, but not public: the address rules still apply"
        );
        assert!(
            !local.permits(&url("http://127.0.0.2:9000/rec")),
            "not listed"
        );
    }

    #[test]
    fn the_guard_refuses_non_public_addresses_unless_loopback_is_enabled() {
        let strict = AddressGuard::default();
        let local = AddressGuard {
            allow_loopback: true,
        };
        for ip in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!strict.permits(ip) && local.permits(ip), "{ip}");
        }
        for ip in [
            "10.1.2.3",
            "169.254.169.254",
            "fd00::1",
            "0.0.0.0",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!strict.permits(ip) && !local.permits(ip), "{ip}");
        }
        assert!(strict.permits("8.8.8.8".parse().unwrap()));
        assert!(!strict.permits_url(&url("https://localhost/")));
        assert!(!strict.permits_url(&url("https://[::ffff:7f00:1]/")));
        assert!(
            !strict.permits_url(&url("https://2130706433/")),
            "decimal 127.0.0.1"
        );
        assert!(local.permits_url(&url("https://localhost/")));
    }

    #[tokio::test]
    async fn the_resolver_answers_no_refused_address() {
        let strict = GuardedResolver(AddressGuard::default());
        let name: Name = "localhost".parse().unwrap();
        assert!(strict.resolve(name).await.is_err());
        let local = GuardedResolver(AddressGuard {
            allow_loopback: true,
        });
        let name: Name = "localhost".parse().unwrap();
        let addrs: Vec<SocketAddr> = local.resolve(name).await.unwrap().collect();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
    }
}
