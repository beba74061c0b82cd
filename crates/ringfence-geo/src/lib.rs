//! Offline IP address → country lookup.
//!
//! [`CountryDb`] answers "which country is this IP address registered in?"
//! from a MaxMind DB (`.mmdb`) file held in memory — no network calls, no
//! third-party lookup service, so caller IP addresses never leave the process.
//!
//! The database used in production is `geo-whois-asn-country.mmdb` from the
//! npm package `@ip-location-db/geo-whois-asn-country-mmdb` (IPv4 + IPv6,
//! records `{"country_code": "DE"}`), fetched with `scripts/fetch-geoip` into
//! `.geoip/` — it is not committed. Its data comes from the NRO whois/ASN
//! statistics, licensed CC BY 4.0: **attribution to nro.net is required**
//! wherever the data is used (see the `NRO_LICENSE` file next to it).
//!
//! The answer is the country the address block is *registered* to, which is
//! usually but not always where the caller is; treat it as a hint.
//!
//! Addresses in special-purpose ranges that are not globally routable
//! (private, shared/CGNAT, loopback, link-local, multicast, benchmarking, …;
//! see [`CountryDb::country`]) always give `None`: the upstream data assigns
//! countries to some of them (e.g. parts of RFC 1918 space), which would
//! mislabel callers seen through a proxy or NAT.
//!
//! ```no_run
//! use std::{net::IpAddr, path::Path, sync::Arc};
//! use ringfence_geo::CountryDb;
//!
//! let db = Arc::new(CountryDb::open(Path::new(".geoip/geo-whois-asn-country.mmdb"))?);
//! let ip: IpAddr = "192.0.2.1".parse()?;
//! match db.country(ip) {
//!     Some(country) => println!("registered in {country}"),
//!     None => println!("unknown"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use maxminddb::{PathElement, Reader, WithinOptions};

#[cfg(any(test, feature = "testing"))]
pub mod testing;

/// Key of the country code in each database record.
const COUNTRY_CODE_KEY: &str = "country_code";
const COUNTRY_CODE_PATH: &[PathElement<'static>] = &[PathElement::Key(COUNTRY_CODE_KEY)];

/// An IP → country database, loaded fully into memory.
///
/// Immutable after opening; `Send + Sync`, so share one instance across
/// threads and tasks in an `Arc`. Lookups do not allocate.
pub struct CountryDb {
    reader: Reader<Vec<u8>>,
}

// `CountryDb` must stay shareable across threads.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CountryDb>();
};

impl CountryDb {
    /// Reads and validates the database file at `path` (the whole file is
    /// loaded into memory; about 8 MB for `geo-whois-asn-country.mmdb`).
    ///
    /// Fails if the file cannot be read or is not a usable country database
    /// (see [`CountryDb::from_bytes`]).
    pub fn open(path: &Path) -> Result<CountryDb, GeoError> {
        let bytes = std::fs::read(path).map_err(|source| GeoError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        CountryDb::from_bytes(bytes)
    }

    /// Validates a database held in memory (the contents of a `.mmdb` file).
    ///
    /// Checks that the bytes are a MaxMind DB, that the metadata names a
    /// non-empty `database_type`, that lookups work, and that the first
    /// record in the tree has a two-letter `country_code` string.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<CountryDb, GeoError> {
        let reader = Reader::from_source(bytes).map_err(GeoError::Invalid)?;
        if reader.metadata().database_type.trim().is_empty() {
            return Err(GeoError::EmptyDatabaseType);
        }

        // Lookups walk the tree without panicking or failing.
        reader
            .lookup(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
            .map_err(GeoError::Invalid)?;
        if reader.metadata().ip_version == 6 {
            reader
                .lookup(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
                .map_err(GeoError::Invalid)?;
        }

        // The first network with data must carry a usable country code.
        let mut networks = reader
            .networks(WithinOptions::default())
            .map_err(GeoError::Invalid)?;
        let first = match networks.next() {
            None => return Err(GeoError::NoRecords),
            Some(result) => result.map_err(GeoError::Invalid)?,
        };
        let code: Option<&str> = first
            .decode_path(COUNTRY_CODE_PATH)
            .map_err(|_| GeoError::NoCountryCode)?;
        if code.and_then(Country::parse).is_none() {
            return Err(GeoError::NoCountryCode);
        }

        Ok(CountryDb { reader })
    }

    /// The country `ip` is registered to, or `None` if the database has no
    /// record for it (unallocated ranges) or the record is malformed. Never
    /// panics.
    ///
    /// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are looked up as the
    /// IPv4 address `a.b.c.d`.
    ///
    /// Special-purpose ranges that never identify a country give `None`
    /// whatever the database says: IPv4 `0.0.0.0/8`, `10.0.0.0/8`,
    /// `100.64.0.0/10`, `127.0.0.0/8`, `169.254.0.0/16`, `172.16.0.0/12`,
    /// `192.0.0.0/24`, `192.168.0.0/16`, `198.18.0.0/15`, `224.0.0.0/3`
    /// (multicast, reserved, broadcast); IPv6 `::/96` (unspecified, loopback,
    /// IPv4-compatible), `100::/64`, `2001:2::/48`, `fc00::/7`, `fe80::/10`,
    /// `ff00::/8`. The documentation ranges (`192.0.2.0/24`,
    /// `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`) are *not*
    /// filtered — they never occur as real source addresses, and test
    /// databases (`testing::mmdb_bytes`, feature `testing`) are built with them.
    #[inline]
    pub fn country(&self, ip: IpAddr) -> Option<Country> {
        let ip = ip.to_canonical();
        if is_non_global(ip) {
            return None;
        }
        let result = self.reader.lookup(ip).ok()?;
        let code: &str = result.decode_path(COUNTRY_CODE_PATH).ok()??;
        Country::parse(code)
    }

    /// A one-line description for logs: the database type and its build
    /// date, e.g. `country ipvAll (built 2026-06-17)`. Contains no personal
    /// data.
    pub fn description(&self) -> String {
        let metadata = self.reader.metadata();
        format!(
            "{} (built {})",
            metadata.database_type.trim(),
            utc_date(metadata.build_epoch)
        )
    }
}

impl fmt::Debug for CountryDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountryDb")
            .field("database", &self.description())
            .finish_non_exhaustive()
    }
}

/// An ISO 3166-1 alpha-2 country code: two uppercase ASCII letters.
///
/// The code is taken from the database as is (after uppercasing), so it may
/// also be a registry pseudo-code such as `EU` or `AP`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Country([u8; 2]);

impl Country {
    /// Parses a two-letter ASCII code, uppercasing it (`"de"` → `DE`).
    /// Anything else (other lengths, digits, non-ASCII) gives `None`.
    pub fn parse(code: &str) -> Option<Country> {
        match *code.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some(Country([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => None,
        }
    }

    /// The code as a string slice, e.g. `"DE"`.
    pub fn as_str(&self) -> &str {
        // Always two ASCII letters (see `parse`), hence valid UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Debug for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Country({})", self.as_str())
    }
}

/// Why a database could not be opened. Messages never contain IP addresses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GeoError {
    /// The database file could not be read.
    #[error("cannot read the GeoIP database file {} (run scripts/fetch-geoip to download it)", path.display())]
    Read {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying IO error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a valid MaxMind DB.
    #[error("the GeoIP database is not a valid MaxMind DB file")]
    Invalid(#[source] maxminddb::MaxMindDbError),
    /// The metadata's `database_type` is empty.
    #[error("the GeoIP database metadata has an empty database_type")]
    EmptyDatabaseType,
    /// The database has no records at all.
    #[error("the GeoIP database has no records")]
    NoRecords,
    /// Records do not hold a two-letter `country_code` string.
    #[error("the GeoIP database records have no two-letter \"country_code\" string")]
    NoCountryCode,
}

/// IPv4 special-purpose ranges (IANA registry, RFC 6890) that are not
/// globally reachable, except the documentation ranges.
pub(crate) const NON_GLOBAL_V4: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),      // "this network"
    (Ipv4Addr::new(10, 0, 0, 0), 8),     // private (RFC 1918)
    (Ipv4Addr::new(100, 64, 0, 0), 10),  // shared address space, CGNAT (RFC 6598)
    (Ipv4Addr::new(127, 0, 0, 0), 8),    // loopback
    (Ipv4Addr::new(169, 254, 0, 0), 16), // link-local
    (Ipv4Addr::new(172, 16, 0, 0), 12),  // private (RFC 1918)
    (Ipv4Addr::new(192, 0, 0, 0), 24),   // IETF protocol assignments
    (Ipv4Addr::new(192, 168, 0, 0), 16), // private (RFC 1918)
    (Ipv4Addr::new(198, 18, 0, 0), 15),  // benchmarking (RFC 2544)
    (Ipv4Addr::new(224, 0, 0, 0), 3),    // multicast, reserved, broadcast
];

/// IPv6 special-purpose ranges that are not globally reachable, except the
/// documentation range. (`::ffff:0:0/96` is looked up as IPv4.)
pub(crate) const NON_GLOBAL_V6: &[(Ipv6Addr, u8)] = &[
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96), // unspecified, loopback, IPv4-compatible
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64), // discard-only
    (Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0), 48), // benchmarking (RFC 5180)
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7), // unique local
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10), // link-local
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8), // multicast
];

/// Whether `ip` (canonical form) is in [`NON_GLOBAL_V4`] / [`NON_GLOBAL_V6`].
#[inline]
fn is_non_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            NON_GLOBAL_V4.iter().any(|&(net, len)| {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                bits & mask == u32::from(net)
            })
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            NON_GLOBAL_V6.iter().any(|&(net, len)| {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                bits & mask == u128::from(net)
            })
        }
    }
}

/// `YYYY-MM-DD` (UTC) of a Unix timestamp.
fn utc_date(epoch_seconds: u64) -> String {
    // Days-to-civil conversion from Howard Hinnant's date algorithms
    // (proleptic Gregorian calendar, eras of 400 years).
    let days = epoch_seconds / 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::testing::{self, Options};
    use super::*;
    use std::error::Error as _;
    use std::sync::Arc;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn fixture_db() -> CountryDb {
        CountryDb::from_bytes(testing::mmdb_bytes(&[
            (ip("192.0.2.0"), 24, "DE"),
            (ip("198.51.100.0"), 24, "US"),
            (ip("203.0.113.0"), 25, "FR"),
            (ip("2001:db8:1::"), 48, "IE"),
            (ip("2001:db8:2::"), 48, "CH"),
        ]))
        .unwrap()
    }

    fn code(db: &CountryDb, addr: &str) -> Option<String> {
        db.country(ip(addr)).map(|c| c.as_str().to_owned())
    }

    #[test]
    fn looks_up_countries_in_the_fixture() {
        let db = fixture_db();
        for (addr, want) in [
            ("192.0.2.1", Some("DE")),
            ("192.0.2.254", Some("DE")),
            ("198.51.100.1", Some("US")),
            ("203.0.113.1", Some("FR")),
            ("203.0.113.127", Some("FR")),
            ("2001:db8:1::1", Some("IE")),
            ("2001:db8:2::1", Some("CH")),
            ("203.0.113.200", None),
            ("2001:db8:3::1", None),
            ("192.0.3.1", None),
            ("2001:db8::1", None),
            ("::", None),
            ("0.0.0.0", None),
            ("::ffff:192.0.2.5", Some("DE")),
            ("::ffff:203.0.113.200", None),
        ] {
            assert_eq!(code(&db, addr).as_deref(), want, "{addr}");
        }
    }

    #[test]
    fn ipv4_mapped_addresses_look_up_as_ipv4_even_without_the_alias() {
        // Without the ::ffff:0:0/96 alias in the tree, only the
        // canonicalisation in `country()` finds the IPv4 record.
        let bytes = testing::write(
            &[(ip("198.51.100.0"), 24, "US")],
            &Options {
                ipv4_mapped_alias: false,
                ..Options::default()
            },
        );
        let raw = Reader::from_source(bytes.clone()).unwrap();
        let mapped = IpAddr::V6(Ipv4Addr::new(198, 51, 100, 7).to_ipv6_mapped());
        assert!(!raw.lookup(mapped).unwrap().has_data());
        let db = CountryDb::from_bytes(bytes).unwrap();
        assert_eq!(db.country(mapped), Country::parse("US"));
        assert_eq!(code(&db, "::ffff:198.51.100.7").as_deref(), Some("US"));
    }

    #[test]
    fn non_global_ranges_give_none_even_when_the_database_has_data() {
        // The addresses come from the filter tables themselves (reserved
        // ranges, not anyone's address); each range gets data in the test db.
        let mut ranges: Vec<(IpAddr, u8)> = NON_GLOBAL_V4
            .iter()
            .map(|&(net, len)| (IpAddr::V4(net), len))
            .collect();
        ranges.extend(
            NON_GLOBAL_V6
                .iter()
                .map(|&(net, len)| (IpAddr::V6(net), len)),
        );
        for (net, len) in ranges {
            let bytes = testing::mmdb_bytes(&[(net, len, "XX"), (ip("192.0.2.0"), 24, "DE")]);
            let raw = Reader::from_source(bytes.clone()).unwrap();
            let has = |addr: IpAddr| raw.lookup(addr).unwrap().has_data();
            let db = CountryDb::from_bytes(bytes).unwrap();
            let last = match net {
                IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) | (u32::MAX >> len)).into()),
                IpAddr::V6(v6) => IpAddr::V6(
                    (u128::from(v6) | u128::MAX.checked_shr(u32::from(len)).unwrap_or(0)).into(),
                ),
            };
            for addr in [net, last] {
                assert!(has(addr), "{addr}: the test db has data");
                assert_eq!(db.country(addr), None, "{addr}/{len}");
                if let IpAddr::V4(v4) = addr {
                    assert_eq!(db.country(IpAddr::V6(v4.to_ipv6_mapped())), None, "{addr}");
                }
            }
            // Documentation ranges are not filtered.
            assert_eq!(code(&db, "192.0.2.1").as_deref(), Some("DE"), "{net}/{len}");
        }
    }

    #[test]
    fn nested_entries_later_more_specific_wins() {
        let db = CountryDb::from_bytes(testing::mmdb_bytes(&[
            (ip("198.51.100.0"), 24, "US"),
            (ip("198.51.100.128"), 25, "CA"),
        ]))
        .unwrap();
        assert_eq!(code(&db, "198.51.100.127").as_deref(), Some("US"));
        assert_eq!(code(&db, "198.51.100.128").as_deref(), Some("CA"));
    }

    #[test]
    fn lowercase_codes_are_uppercased_and_malformed_ones_are_none() {
        let db = CountryDb::from_bytes(testing::mmdb_bytes(&[
            (ip("192.0.2.0"), 26, "de"),
            (ip("192.0.2.64"), 26, "D1"),
            (ip("192.0.2.128"), 26, "DEU"),
            (ip("192.0.2.192"), 27, ""),
            (ip("192.0.2.224"), 27, "Ü"),
        ]))
        .unwrap();
        assert_eq!(code(&db, "192.0.2.1").as_deref(), Some("DE"));
        for addr in ["192.0.2.65", "192.0.2.129", "192.0.2.193", "192.0.2.225"] {
            assert_eq!(code(&db, addr), None, "{addr}");
        }
    }

    #[test]
    fn databases_without_country_code_are_rejected() {
        let bytes = testing::write(
            &[(ip("192.0.2.0"), 24, "DE")],
            &Options {
                key: "iso_code",
                ..Options::default()
            },
        );
        let err = CountryDb::from_bytes(bytes).unwrap_err();
        assert!(matches!(err, GeoError::NoCountryCode), "{err}");
        // The first record holds a malformed code.
        let bytes = testing::mmdb_bytes(&[(ip("192.0.2.0"), 24, "DEU")]);
        let err = CountryDb::from_bytes(bytes).unwrap_err();
        assert!(matches!(err, GeoError::NoCountryCode), "{err}");
    }

    #[test]
    fn rejects_bad_databases() {
        assert!(matches!(
            CountryDb::from_bytes(Vec::new()),
            Err(GeoError::Invalid(_))
        ));
        assert!(matches!(
            CountryDb::from_bytes(b"not a database at all".to_vec()),
            Err(GeoError::Invalid(_))
        ));
        assert!(matches!(
            CountryDb::from_bytes(testing::mmdb_bytes(&[])),
            Err(GeoError::NoRecords)
        ));
        let bytes = testing::write(
            &[(ip("192.0.2.0"), 24, "DE")],
            &Options {
                database_type: " ",
                ..Options::default()
            },
        );
        assert!(matches!(
            CountryDb::from_bytes(bytes),
            Err(GeoError::EmptyDatabaseType)
        ));

        // Truncations of a valid database never panic.
        let good = testing::mmdb_bytes(&[(ip("192.0.2.0"), 24, "DE")]);
        for len in 0..good.len() {
            let _ = CountryDb::from_bytes(good[..len].to_vec());
        }
        // Neither do single-byte corruptions, at open or at lookup.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xff;
            if let Ok(db) = CountryDb::from_bytes(bad) {
                let _ = db.country(ip("192.0.2.1"));
                let _ = db.country(ip("2001:db8::1"));
            }
        }
    }

    #[test]
    fn open_reports_missing_files_without_ip_addresses() {
        let err = CountryDb::open(Path::new("/nonexistent/ringfence-geo.mmdb")).unwrap_err();
        assert!(matches!(err, GeoError::Read { .. }));
        let message = err.to_string();
        assert!(message.contains("scripts/fetch-geoip"), "{message}");
        assert!(err.source().is_some());
    }

    #[test]
    fn open_reads_a_file() {
        let dir = std::env::temp_dir().join(format!("ringfence-geo-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fixture.mmdb");
        std::fs::write(&path, testing::mmdb_bytes(&[(ip("192.0.2.0"), 24, "DE")])).unwrap();
        let db = CountryDb::open(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(code(&db, "192.0.2.1").as_deref(), Some("DE"));
    }

    #[test]
    fn description_names_type_and_build_date() {
        let db = fixture_db();
        assert_eq!(
            db.description(),
            format!("{} (built 2023-11-14)", testing::DATABASE_TYPE)
        );
        assert!(format!("{db:?}").contains(testing::DATABASE_TYPE));
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(86_399), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_700_000_000), "2023-11-14");
        assert_eq!(utc_date(1_709_164_800), "2024-02-29");
        assert_eq!(utc_date(1_735_689_599), "2024-12-31");
        assert_eq!(utc_date(1_735_689_600), "2025-01-01");
        assert_eq!(utc_date(4_102_444_800), "2100-01-01");
    }

    #[test]
    fn country_parse_and_format() {
        let de = Country::parse("de").unwrap();
        assert_eq!(de.as_str(), "DE");
        assert_eq!(de.to_string(), "DE");
        assert_eq!(format!("{de:>4}|{de:<3}|"), "  DE|DE |");
        assert_eq!(format!("{de:?}"), "Country(DE)");
        assert_eq!(Country::parse("De"), Some(de));
        for bad in ["", "D", "DEU", "D1", "1D", "Ü", "ÜÜ", " D", "D "] {
            assert_eq!(Country::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn shared_across_threads() {
        let db = Arc::new(fixture_db());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let db = Arc::clone(&db);
                std::thread::spawn(move || db.country(ip("198.51.100.9")))
            })
            .collect();
        for handle in handles {
            assert_eq!(handle.join().unwrap(), Country::parse("US"));
        }
    }
}
