//! Checks against the real downloaded database (`scripts/fetch-geoip`).
//!
//! The file is `$RINGFENCE_GEOIP_FILE` if set, else
//! `<repo>/.geoip/geo-whois-asn-country.mmdb`. If it is missing the test is
//! skipped with a note, unless `RINGFENCE_GEOIP_REQUIRED=1` (set by `.ci/run`,
//! which fetches the file first): then it fails.

use std::net::IpAddr;
use std::path::PathBuf;

use ringfence_geo::{Country, CountryDb};

fn database_path() -> Option<PathBuf> {
    if let Some(file) = std::env::var_os("RINGFENCE_GEOIP_FILE").filter(|f| !f.is_empty()) {
        // An explicitly named file must exist; opening it reports the error.
        return Some(PathBuf::from(file));
    }
    let default =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.geoip/geo-whois-asn-country.mmdb");
    default.exists().then_some(default)
}

fn open_real_db() -> Option<CountryDb> {
    let Some(path) = database_path() else {
        if std::env::var("RINGFENCE_GEOIP_REQUIRED").as_deref() != Ok("1") {
            eprintln!(
                "note: GeoIP database not found; skipping. \
                 Run scripts/fetch-geoip to test against it (CI sets RINGFENCE_GEOIP_REQUIRED=1)."
            );
            return None;
        }
        panic!(
            "GeoIP database not found at .geoip/geo-whois-asn-country.mmdb: run \
             `scripts/fetch-geoip` (or set RINGFENCE_GEOIP_FILE=/path/to/file.mmdb)"
        );
    };
    match CountryDb::open(&path) {
        Ok(db) => Some(db),
        Err(err) => panic!("cannot open {}: {err}", path.display()),
    }
}

#[test]
fn real_database_opens_and_answers_documentation_ranges() {
    let Some(db) = open_real_db() else { return };
    let description = db.description();
    assert!(!description.trim().is_empty());
    assert!(description.contains("(built "), "{description}");
    eprintln!("GeoIP database: {description}");

    let lookup = |addr: &str| db.country(addr.parse::<IpAddr>().unwrap());

    // TEST-NET-1 is not in the data.
    assert_eq!(lookup("192.0.2.1"), None::<Country>);
    assert_eq!(lookup("::ffff:192.0.2.1"), None::<Country>);

    // The other documentation ranges are NOT reliably absent: the upstream
    // whois/ASN data assigns countries to them (198.51.100.0/24 and
    // 203.0.113.0/24 -> AU, 2001:db8::/32 -> JP in the 2026-06 build). They
    // are not filtered by `CountryDb` (test databases use them), so only
    // check that the lookups work and that IPv4-mapped IPv6 addresses give
    // the IPv4 answer (the real file has no ::ffff:0:0/96 alias, so this
    // exercises `CountryDb`'s own mapping).
    for v4 in ["198.51.100.1", "203.0.113.1"] {
        let answer = lookup(v4);
        eprintln!("{v4}: {answer:?}");
        assert_eq!(lookup(&format!("::ffff:{v4}")), answer, "::ffff:{v4}");
    }
    eprintln!("2001:db8::1: {:?}", lookup("2001:db8::1"));
}
