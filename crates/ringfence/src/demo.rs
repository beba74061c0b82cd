//! `ringfence demo`: fills a data folder with realistic synthetic agencies, accounts, calls,
//! visitor sessions and recordings, so the API and the web interface can be tried at once.
//!
//! Every number, address and name comes from ranges reserved for fiction (Ofcom's drama
//! numbers, NANP 555-01xx, ARCEP's, the Bundesnetzagentur's, PTS's and ACMA's film ranges, the
//! documentation IP blocks, example.com) and from placeholder names. It must never produce data
//! that could belong to a real person, and it logs counts and ids only.
//!
//! The generator is seeded: call `i` of an account is the same call on every run, and its
//! `external_id` makes ingest skip it when it is already stored. Re-running with the same
//! `--calls` adds nothing (but prints fresh tokens, which expire after 30 days, and revokes
//! the ones an earlier run printed); a larger `--calls` adds the difference.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use ringfence_core::call::{
    CallStatus, CallerIdentity, CallerLocation, Direction, InteractionContent, NewCall, Utm,
    VisitorDetails,
};
use ringfence_core::phone::parse_e164;
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, AgencyId, CallId, E164, Personal};
use ringfence_store::{AccountRecord, AgencyRecord};

use crate::app::Resources;
use crate::commands::{TokenArgs, create_token};

/// The labels of the tokens the demo hands out: a later run revokes the earlier run's.
const DEMO_TOKEN_LABELS: [&str; 3] = [
    "demo account admin",
    "demo analyst without personal data",
    "demo agency admin",
];
/// Demo tokens expire after this many days.
const DEMO_TOKEN_DAYS: u32 = 30;

/// Calls are spread over this many days before now.
const DAYS: i64 = 120;
/// Calls per `ingest_calls` transaction.
const BATCH: usize = 500;
/// At most this many recordings, so a large demo stays fast and small on disk.
const MAX_RECORDINGS: usize = 600;
/// Share of completed calls that get a recording (below the cap).
const RECORDING_SHARE: f64 = 0.15;
/// Recordings uploaded at the same time.
const UPLOADS_AT_ONCE: usize = 8;
/// More than this is a typo, not a demo.
const MAX_CALLS: usize = 1_000_000;
const SEED: u64 = 0x5249_4e47_4645_4e43;
const SAMPLE_RATE: u32 = 8_000;

/// A small seeded generator (splitmix64): enough for synthetic data, no dependency.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// An independent generator for sub-stream `n` (an account, a call).
    fn derive(&self, n: u64) -> Rng {
        let mut r = Rng(self.0 ^ n.wrapping_add(1).wrapping_mul(0xA24B_AED4_963E_E407));
        r.next_u64();
        Rng(r.next_u64())
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`; `n` must be positive.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    fn weighted<T: Copy>(&mut self, items: &[(T, u32)]) -> T {
        let total: u64 = items.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut x = self.below(total.max(1));
        for (item, w) in items {
            if x < u64::from(*w) {
                return *item;
            }
            x -= u64::from(*w);
        }
        items[items.len() - 1].0
    }

    fn alphanumeric(&mut self, len: usize) -> String {
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..len).map(|_| char::from(self.pick(CHARS))).collect()
    }

    fn hex(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(self.pick(b"0123456789abcdef")))
            .collect()
    }
}

/// Numbers of a place, all from ranges reserved for fiction.
#[derive(Debug)]
enum Numbers {
    /// `prefix` then `width` digits, from `from` to `from + count - 1`.
    Range {
        prefix: &'static str,
        width: usize,
        from: u32,
        count: u32,
    },
    /// Single reserved numbers.
    List(&'static [&'static str]),
}

impl Numbers {
    fn draw(&self, rng: &mut Rng) -> String {
        match self {
            Numbers::Range {
                prefix,
                width,
                from,
                count,
            } => format!(
                "{prefix}{:0width$}",
                from + rng.below(u64::from(*count)) as u32
            ),
            Numbers::List(list) => rng.pick(list).to_owned(),
        }
    }

    #[cfg(test)]
    fn all(&self) -> Vec<String> {
        match self {
            Numbers::Range {
                prefix,
                width,
                from,
                count,
            } => (*from..from + count)
                .map(|n| format!("{prefix}{n:0width$}"))
                .collect(),
            Numbers::List(list) => list.iter().map(|n| (*n).to_owned()).collect(),
        }
    }
}

/// Where callers come from: a fiction number range and the location that goes with it.
#[derive(Debug)]
struct Place {
    key: &'static str,
    /// ISO 3166-1 alpha-2 of the numbers' region.
    country: &'static str,
    /// City, ISO 3166-2 subdivision and postal codes; `None` for mobile ranges, which tell the
    /// country only.
    city: Option<(&'static str, &'static str, &'static [&'static str])>,
    numbers: Numbers,
    names: &'static [&'static str],
}

const NAMES_GB: &[&str] = &[
    "Joe Bloggs",
    "Jane Bloggs",
    "Fred Bloggs",
    "Joe Public",
    "A. N. Other",
    "Tommy Atkins",
];
const NAMES_NA: &[&str] = &[
    "John Doe",
    "Jane Doe",
    "Richard Roe",
    "Jane Roe",
    "John Q. Public",
    "Joe Schmoe",
];
const NAMES_DE: &[&str] = &[
    "Erika Mustermann",
    "Max Mustermann",
    "Otto Normalverbraucher",
    "Lieschen Müller",
];
const NAMES_FR: &[&str] = &[
    "Jean Dupont",
    "Marie Dupont",
    "Monsieur Tartempion",
    "Jean Untel",
];
const NAMES_SE: &[&str] = &["Medel Svensson", "Sven Svensson", "Anna Andersson"];
const NAMES_AU: &[&str] = &["John Citizen", "Jane Citizen", "Fred Nurk", "Joe Bloggs"];

/// 555-0100..0109 are kept for tracking numbers; callers get 555-0110..0199.
const fn nanp(prefix: &'static str) -> Numbers {
    Numbers::Range {
        prefix,
        width: 3,
        from: 110,
        count: 90,
    }
}

/// ACMA's reserved Australian mobile numbers for drama.
const AU_MOBILES: &[&str] = &[
    "+61491570006",
    "+61491570156",
    "+61491570157",
    "+61491570158",
    "+61491570159",
    "+61491570110",
    "+61491570313",
    "+61491570737",
    "+61491571266",
    "+61491571491",
    "+61491571804",
    "+61491572549",
    "+61491572665",
    "+61491572983",
    "+61491573770",
    "+61491573087",
    "+61491574118",
    "+61491574632",
    "+61491575254",
    "+61491575789",
    "+61491576398",
    "+61491576801",
    "+61491577426",
    "+61491577644",
    "+61491578957",
    "+61491578148",
    "+61491578888",
    "+61491579212",
    "+61491579760",
    "+61491579455",
];

#[rustfmt::skip]
static PLACES: &[Place] = &[
    // Ofcom drama ranges (020 7946 0xxx, 0161 496 0xxx, 0113 496 0xxx); 0990..0999 are tracking numbers.
    Place { key: "london", country: "GB", city: Some(("London", "ENG", &["EC1A 1BB", "W1A 0AX", "SE1 7PB", "N1 9GU", "E14 5AB"])), numbers: Numbers::Range { prefix: "+442079460", width: 3, from: 0, count: 990 }, names: NAMES_GB },
    Place { key: "manchester", country: "GB", city: Some(("Manchester", "ENG", &["M1 1AE", "M2 5DB", "M4 6WX", "M15 4PS"])), numbers: Numbers::Range { prefix: "+441614960", width: 3, from: 0, count: 990 }, names: NAMES_GB },
    Place { key: "leeds", country: "GB", city: Some(("Leeds", "ENG", &["LS1 4DY", "LS2 7HY", "LS6 2AA"])), numbers: Numbers::Range { prefix: "+441134960", width: 3, from: 0, count: 1000 }, names: NAMES_GB },
    // Bundesnetzagentur film ranges 030 23125 xxx and 040 66969 xxx.
    Place { key: "berlin", country: "DE", city: Some(("Berlin", "BE", &["10115", "10117", "10178", "10435", "12043"])), numbers: Numbers::Range { prefix: "+493023125", width: 3, from: 0, count: 1000 }, names: NAMES_DE },
    Place { key: "hamburg", country: "DE", city: Some(("Hamburg", "HH", &["20095", "20099", "22767"])), numbers: Numbers::Range { prefix: "+494066969", width: 3, from: 0, count: 1000 }, names: NAMES_DE },
    // ARCEP fiction ranges 01 99 00 xx xx and 04 65 71 xx xx.
    Place { key: "paris", country: "FR", city: Some(("Paris", "IDF", &["75001", "75011", "75015", "75018"])), numbers: Numbers::Range { prefix: "+3319900", width: 4, from: 0, count: 10_000 }, names: NAMES_FR },
    Place { key: "lyon", country: "FR", city: Some(("Lyon", "ARA", &["69001", "69003", "69007"])), numbers: Numbers::Range { prefix: "+3346571", width: 4, from: 0, count: 10_000 }, names: NAMES_FR },
    // PTS fiction ranges 08-465 004 xx, 031-390 06 xx and 070-174 06 05..99.
    Place { key: "stockholm", country: "SE", city: Some(("Stockholm", "AB", &["111 20", "113 30", "118 46"])), numbers: Numbers::Range { prefix: "+468465004", width: 2, from: 0, count: 100 }, names: NAMES_SE },
    Place { key: "gothenburg", country: "SE", city: Some(("Gothenburg", "O", &["411 05", "413 01"])), numbers: Numbers::Range { prefix: "+463139006", width: 2, from: 0, count: 100 }, names: NAMES_SE },
    Place { key: "se_mobile", country: "SE", city: None, numbers: Numbers::Range { prefix: "+467017406", width: 2, from: 5, count: 95 }, names: NAMES_SE },
    // NANP 555-01xx, fictional in every area code.
    Place { key: "san_francisco", country: "US", city: Some(("San Francisco", "CA", &["94103", "94110", "94117"])), numbers: nanp("+14155550"), names: NAMES_NA },
    Place { key: "los_angeles", country: "US", city: Some(("Los Angeles", "CA", &["90012", "90017", "90026"])), numbers: nanp("+12135550"), names: NAMES_NA },
    Place { key: "seattle", country: "US", city: Some(("Seattle", "WA", &["98101", "98109", "98122"])), numbers: nanp("+12065550"), names: NAMES_NA },
    Place { key: "new_york", country: "US", city: Some(("New York", "NY", &["10001", "10013", "10024"])), numbers: nanp("+12125550"), names: NAMES_NA },
    Place { key: "denver", country: "US", city: Some(("Denver", "CO", &["80202", "80205"])), numbers: nanp("+13035550"), names: NAMES_NA },
    Place { key: "chicago", country: "US", city: Some(("Chicago", "IL", &["60601", "60614", "60622"])), numbers: nanp("+13125550"), names: NAMES_NA },
    Place { key: "austin", country: "US", city: Some(("Austin", "TX", &["78701", "78704"])), numbers: nanp("+15125550"), names: NAMES_NA },
    Place { key: "atlanta", country: "US", city: Some(("Atlanta", "GA", &["30303", "30309"])), numbers: nanp("+14045550"), names: NAMES_NA },
    Place { key: "boston", country: "US", city: Some(("Boston", "MA", &["02108", "02116"])), numbers: nanp("+16175550"), names: NAMES_NA },
    Place { key: "miami", country: "US", city: Some(("Miami", "FL", &["33130", "33139"])), numbers: nanp("+13055550"), names: NAMES_NA },
    Place { key: "toronto", country: "CA", city: Some(("Toronto", "ON", &["M5V 2T6", "M4W 1A8"])), numbers: nanp("+14165550"), names: NAMES_NA },
    Place { key: "vancouver", country: "CA", city: Some(("Vancouver", "BC", &["V6B 1A1", "V5K 0A1"])), numbers: nanp("+16045550"), names: NAMES_NA },
    Place { key: "montreal", country: "CA", city: Some(("Montreal", "QC", &["H2X 1Y4", "H3B 1A7"])), numbers: nanp("+15145550"), names: NAMES_NA },
    // ACMA drama ranges (02) 5550 xxxx and (03) 7010 xxxx; 9990..9999 are tracking numbers.
    Place { key: "sydney", country: "AU", city: Some(("Sydney", "NSW", &["2000", "2010", "2060"])), numbers: Numbers::Range { prefix: "+6125550", width: 4, from: 0, count: 9_990 }, names: NAMES_AU },
    Place { key: "melbourne", country: "AU", city: Some(("Melbourne", "VIC", &["3000", "3004", "3121"])), numbers: Numbers::Range { prefix: "+6137010", width: 4, from: 0, count: 10_000 }, names: NAMES_AU },
    Place { key: "au_mobile", country: "AU", city: None, numbers: Numbers::List(AU_MOBILES), names: NAMES_AU },
];

/// A demo business.
#[derive(Debug)]
struct AccountSpec {
    name: &'static str,
    /// For external ids and landing pages.
    slug: &'static str,
    /// The business's local time (standard time) minus UTC, in hours.
    utc_offset_h: i64,
    /// Relative share of the calls.
    share: u32,
    tracking: &'static [&'static str],
    /// Place keys and weights of its callers.
    callers: &'static [(&'static str, u32)],
    search_campaigns: &'static [&'static str],
    social_campaigns: &'static [&'static str],
    /// What callers want: "I'd like to …".
    needs: &'static [&'static str],
    landing_paths: &'static [&'static str],
}

#[derive(Debug)]
struct AgencySpec {
    name: &'static str,
    redaction_enabled: bool,
    accounts: &'static [AccountSpec],
}

#[rustfmt::skip]
static AGENCIES: &[AgencySpec] = &[
    AgencySpec {
        name: "Kestrel & Finch Digital",
        redaction_enabled: true,
        accounts: &[
            AccountSpec {
                name: "Harbour Lane Dental Clinic", slug: "harbourlanedental", utc_offset_h: 0, share: 28,
                tracking: &["+442079460990", "+442079460991", "+442079460992"],
                callers: &[("london", 55), ("manchester", 6), ("leeds", 5), ("paris", 6), ("berlin", 5), ("stockholm", 3), ("lyon", 2), ("se_mobile", 1),
                           ("new_york", 6), ("san_francisco", 3), ("toronto", 3), ("sydney", 3), ("au_mobile", 2)],
                search_campaigns: &["brand-search", "emergency-dentist", "teeth-whitening"],
                social_campaigns: &["new-patient-offer", "smile-makeover"],
                needs: &["book a check-up", "ask about teeth whitening prices", "move my appointment to next week", "see someone today about a toothache", "register as a new patient"],
                landing_paths: &["/", "/emergency", "/whitening", "/new-patients", "/book"],
            },
            AccountSpec {
                name: "Northgate Property Lettings", slug: "northgatelettings", utc_offset_h: 0, share: 17,
                tracking: &["+441614960990", "+441614960991"],
                callers: &[("manchester", 50), ("leeds", 12), ("london", 12), ("hamburg", 4), ("paris", 4), ("gothenburg", 3),
                           ("chicago", 5), ("sydney", 4), ("vancouver", 3), ("au_mobile", 3)],
                search_campaigns: &["flats-to-rent", "landlord-services", "brand-search"],
                social_campaigns: &["student-lets", "landlord-guide"],
                needs: &["arrange a viewing of the two-bedroom flat", "ask whether the flat is still available", "talk about letting my house", "report a broken boiler"],
                landing_paths: &["/", "/to-rent", "/landlords", "/viewings"],
            },
        ],
    },
    AgencySpec {
        name: "Brightwater Growth Partners",
        redaction_enabled: false,
        accounts: &[
            AccountSpec {
                name: "Summit Ridge Plumbing & Heating", slug: "summitridgeplumbing", utc_offset_h: -8, share: 25,
                tracking: &["+14155550100", "+14155550101", "+14155550102", "+14155550103"],
                callers: &[("san_francisco", 45), ("los_angeles", 12), ("seattle", 10), ("new_york", 6), ("denver", 5), ("austin", 2),
                           ("vancouver", 6), ("toronto", 3), ("london", 4), ("berlin", 3), ("paris", 2), ("sydney", 2)],
                search_campaigns: &["emergency-plumber", "water-heater-install", "brand-search"],
                social_campaigns: &["spring-maintenance", "referral-rewards"],
                needs: &["get a quote for a new water heater", "have someone look at a leaking pipe today", "book a drain cleaning", "ask about your service area"],
                landing_paths: &["/", "/emergency", "/water-heaters", "/drain-cleaning", "/contact"],
            },
            AccountSpec {
                name: "Lakeshore Auto Group", slug: "lakeshoreauto", utc_offset_h: -6, share: 18,
                tracking: &["+13125550100", "+13125550101", "+13125550102"],
                callers: &[("chicago", 50), ("atlanta", 6), ("boston", 5), ("miami", 5), ("austin", 6), ("denver", 4),
                           ("toronto", 8), ("montreal", 5), ("london", 4), ("hamburg", 3), ("lyon", 2), ("melbourne", 2)],
                search_campaigns: &["used-suvs", "service-specials", "brand-search"],
                social_campaigns: &["summer-sales-event", "trade-in-offer"],
                needs: &["book a test drive", "ask about the price of a used SUV", "schedule an oil change", "get a trade-in estimate"],
                landing_paths: &["/", "/inventory/used", "/service", "/trade-in", "/finance"],
            },
        ],
    },
    AgencySpec {
        name: "Southern Cross Media Co.",
        redaction_enabled: true,
        accounts: &[AccountSpec {
            name: "Coastline Physio & Sports Clinic", slug: "coastlinephysio", utc_offset_h: 10, share: 12,
            tracking: &["+61255509990", "+61255509991"],
            callers: &[("sydney", 55), ("melbourne", 15), ("au_mobile", 12), ("london", 5), ("manchester", 2), ("berlin", 3), ("paris", 2),
                       ("stockholm", 1), ("los_angeles", 3), ("vancouver", 2)],
            search_campaigns: &["sports-physio", "back-pain", "brand-search"],
            social_campaigns: &["running-clinic", "pilates-classes"],
            needs: &["book a physio session for my knee", "ask whether you bulk bill", "join the Tuesday pilates class", "see someone about back pain"],
            landing_paths: &["/", "/sports-injuries", "/pilates", "/book-online"],
        }],
    },
];

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
];
const AGENTS: &[&str] = &["Alex", "Sam", "Jordan", "Morgan", "Robin"];
const REPLIES: &[&str] = &[
    "Of course, let me check what we have available.",
    "Sure, I can help with that.",
    "No problem, can I take a few details first?",
    "Certainly, I'll put you through to the right person.",
];
const CLOSINGS: &[&str] = &[
    "Great, thank you.",
    "That works for me, thanks.",
    "Perfect, speak soon.",
    "Lovely, bye for now.",
];
const NOTES: &[&str] = &[
    "Asked for a call back tomorrow morning.",
    "Sent the price list by e-mail.",
    "Booked in for next week.",
    "Existing customer, question about an invoice.",
    "Wants a written quote before deciding.",
    "Wrong number, not a customer.",
];

/// Where the call came from: the tracking source and how the web visit, if any, looked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    GoogleAds,
    FacebookAds,
    BingAds,
    Organic,
    Direct,
    Email,
    Referral,
    Print,
}

const CHANNELS: &[(Channel, u32)] = &[
    (Channel::GoogleAds, 30),
    (Channel::Organic, 20),
    (Channel::Direct, 14),
    (Channel::FacebookAds, 12),
    (Channel::Email, 7),
    (Channel::BingAds, 6),
    (Channel::Referral, 6),
    (Channel::Print, 5),
];

impl Channel {
    fn source(self) -> &'static str {
        match self {
            Channel::GoogleAds => "google_ads",
            Channel::FacebookAds => "facebook_ads",
            Channel::BingAds => "bing_ads",
            Channel::Organic => "organic",
            Channel::Direct => "direct",
            Channel::Email => "email",
            Channel::Referral => "referral",
            Channel::Print => "print",
        }
    }

    fn is_web(self) -> bool {
        !matches!(self, Channel::Direct | Channel::Print)
    }

    /// Paid search, social and the other channels each have a number while there are enough;
    /// the last number serves whatever is left.
    fn tracking_slot(self, slots: usize) -> usize {
        let slot = match self {
            Channel::GoogleAds | Channel::BingAds => 0,
            Channel::FacebookAds => 1,
            Channel::Organic | Channel::Email | Channel::Referral => 2,
            Channel::Direct | Channel::Print => 3,
        };
        slot.min(slots - 1)
    }

    /// Campaign and `utm_source`/`utm_medium`/`utm_campaign`.
    fn campaign_and_utm(self, spec: &AccountSpec, rng: &mut Rng) -> (Option<String>, Utm) {
        let utm = |source: &str, medium: &str, campaign: Option<&str>| Utm {
            source: Some(source.to_owned()),
            medium: Some(medium.to_owned()),
            campaign: campaign.map(str::to_owned),
        };
        let campaign = match self {
            Channel::GoogleAds | Channel::BingAds => Some(rng.pick(spec.search_campaigns)),
            Channel::FacebookAds => Some(rng.pick(spec.social_campaigns)),
            Channel::Email => Some(rng.pick(&["monthly-newsletter", "win-back"])),
            Channel::Print => Some(rng.pick(&["local-directory", "flyer-drop"])),
            Channel::Organic | Channel::Direct | Channel::Referral => None,
        };
        let utm = match self {
            Channel::GoogleAds => utm("google", "cpc", campaign),
            Channel::BingAds => utm("bing", "cpc", campaign),
            Channel::FacebookAds => utm("facebook", "paid_social", campaign),
            Channel::Email => utm("newsletter", "email", campaign),
            Channel::Organic => utm("google", "organic", None),
            Channel::Referral => utm("partners.example.org", "referral", None),
            Channel::Direct | Channel::Print => Utm::default(),
        };
        (campaign.map(str::to_owned), utm)
    }
}

/// Relative call volume by local hour: quiet at night, peaks late morning and mid-afternoon.
const HOUR_WEIGHT: [f64; 24] = [
    0.02, 0.01, 0.01, 0.01, 0.01, 0.03, 0.08, 0.25, 0.70, 1.00, 1.10, 1.00, 0.80, 0.90, 1.00, 0.95,
    0.80, 0.55, 0.35, 0.25, 0.18, 0.12, 0.07, 0.04,
];
/// Relative call volume by local weekday, Monday first.
const WEEKDAY_WEIGHT: [f64; 7] = [1.05, 1.10, 1.05, 1.00, 0.90, 0.45, 0.25];

/// Picks call times in the last [`DAYS`] days, weighted by the business's local hour and
/// weekday and by a gentle growth over the period.
#[derive(Debug)]
struct CallClock {
    first_hour: i64,
    now_ms: i64,
    cumulative: Vec<f64>,
}

impl CallClock {
    fn new(now: Timestamp, utc_offset_h: i64) -> Self {
        let last_hour = now.millis().div_euclid(3_600_000);
        let first_hour = last_hour - DAYS * 24;
        let span = (last_hour - first_hour) as f64;
        let mut total = 0.0;
        let cumulative = (first_hour..=last_hour)
            .map(|hour| {
                let local = hour + utc_offset_h;
                // 1970-01-01 was a Thursday: day 0 is weekday 3 counting from Monday.
                let weekday = (local.div_euclid(24) + 3).rem_euclid(7) as usize;
                let growth = 0.8 + 0.4 * (hour - first_hour) as f64 / span;
                total +=
                    WEEKDAY_WEIGHT[weekday] * HOUR_WEIGHT[local.rem_euclid(24) as usize] * growth;
                total
            })
            .collect();
        CallClock {
            first_hour,
            now_ms: now.millis(),
            cumulative,
        }
    }

    fn sample(&self, rng: &mut Rng) -> Timestamp {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let x = rng.unit() * total;
        let index = self
            .cumulative
            .partition_point(|c| *c <= x)
            .min(self.cumulative.len().saturating_sub(1));
        let hour_start = (self.first_hour + index as i64) * 3_600_000;
        // The current hour is only partly over.
        let hour_len = (self.now_ms - hour_start).clamp(1, 3_600_000);
        Timestamp::from_millis(hour_start + rng.below(hour_len as u64) as i64)
    }
}

/// Someone who calls an account, maybe several times.
#[derive(Debug)]
struct Caller {
    number: E164,
    name: Option<&'static str>,
    place: &'static Place,
    postal_code: &'static str,
    /// Whether the caller-ID lookup returned a location.
    located: bool,
}

fn place(key: &str) -> anyhow::Result<&'static Place> {
    PLACES
        .iter()
        .find(|p| p.key == key)
        .with_context(|| format!("demo place {key} is not defined"))
}

/// The account's callers, each number once; early ones in the pool call more often.
fn caller_pool(spec: &AccountSpec, size: usize, rng: &mut Rng) -> anyhow::Result<Vec<Caller>> {
    let places = spec
        .callers
        .iter()
        .map(|(key, w)| Ok((place(key)?, *w)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut seen = HashSet::new();
    let mut pool = Vec::with_capacity(size);
    for _ in 0..size {
        let place = rng.weighted(&places);
        // A small range may run out: then the pool simply holds fewer callers from it.
        let Some(text) = (0..8)
            .map(|_| place.numbers.draw(rng))
            .find(|t| !seen.contains(t))
        else {
            continue;
        };
        seen.insert(text.clone());
        let number = parse_e164(&text)
            .with_context(|| format!("a demo number of {} does not validate", place.key))?;
        let postal_code = place.city.map_or("", |(_, _, codes)| rng.pick(codes));
        pool.push(Caller {
            number,
            name: rng.chance(0.75).then(|| rng.pick(place.names)),
            place,
            postal_code,
            located: rng.chance(0.85),
        });
    }
    Ok(pool)
}

fn personal(text: impl Into<String>) -> Option<Personal<String>> {
    Some(Personal::new(text.into()))
}

/// One account's generator: its tracking numbers, callers and calendar.
struct AccountPlan {
    spec: &'static AccountSpec,
    index: usize,
    tracking: Vec<E164>,
    pool: Vec<Caller>,
    clock: CallClock,
    rng: Rng,
    recording_share: f64,
}

/// A call to ingest, and the recording to attach if it is stored.
struct PlannedCall {
    call: NewCall,
    recording: Option<(u32, u64)>,
}

impl AccountPlan {
    fn new(
        spec: &'static AccountSpec,
        index: usize,
        calls: usize,
        now: Timestamp,
        recording_share: f64,
    ) -> anyhow::Result<Self> {
        let rng = Rng::new(SEED).derive(index as u64);
        let tracking = spec
            .tracking
            .iter()
            .map(|t| {
                parse_e164(t).with_context(|| {
                    format!("a tracking number of {} does not validate", spec.slug)
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let pool = caller_pool(spec, (calls * 11 / 20).max(8), &mut rng.derive(u64::MAX))?;
        Ok(AccountPlan {
            spec,
            index,
            tracking,
            pool,
            clock: CallClock::new(now, spec.utc_offset_h),
            rng,
            recording_share,
        })
    }

    /// Call `n` of the account: the same call on every run.
    fn call(&self, n: usize) -> PlannedCall {
        let spec = self.spec;
        let mut rng = self.rng.derive(n as u64);
        let started_at = self.clock.sample(&mut rng);
        let direction = if rng.chance(0.07) {
            Direction::Outbound
        } else {
            Direction::Inbound
        };
        let status = rng.weighted(&[
            (CallStatus::Completed, 82),
            (CallStatus::NoAnswer, 9),
            (CallStatus::Busy, 4),
            (CallStatus::Canceled, 3),
            (CallStatus::Failed, 2),
        ]);
        let completed = status == CallStatus::Completed;
        // Log-uniform between 20 s and 20 min, skewed short.
        let duration_s = if completed {
            (20.0 * 60f64.powf(rng.unit().powf(1.4))).round() as u32
        } else {
            0
        };
        let channel = if direction == Direction::Outbound {
            Channel::Direct
        } else {
            rng.weighted(CHANNELS)
        };
        let (campaign, utm) = channel.campaign_and_utm(spec, &mut rng);
        let tracking_number = self.tracking[channel.tracking_slot(self.tracking.len())].clone();

        let withheld = direction == Direction::Inbound && rng.chance(0.05);
        // Early callers in the pool call far more often than late ones.
        let caller = (!withheld)
            .then(|| &self.pool[((self.pool.len() as f64) * rng.unit().powf(2.2)) as usize]);
        let identity = CallerIdentity {
            number: caller.map(|c| c.number.clone()),
            name: caller.and_then(|c| c.name).and_then(personal),
            forwarded_from: None,
        };
        let location = match caller.filter(|c| c.located) {
            Some(c) => {
                let (city, region) = c.place.city.map_or((None, None), |(city, region, _)| {
                    (personal(city), personal(region))
                });
                let postal_code =
                    (!c.postal_code.is_empty()).then(|| Personal::new(c.postal_code.to_owned()));
                CallerLocation {
                    city,
                    region,
                    postal_code,
                    country: personal(c.place.country),
                }
            }
            None => CallerLocation::default(),
        };

        let transcript = (completed && rng.chance(0.6)).then(|| {
            Personal::new(format!(
                "Agent: Thank you for calling {}, {} speaking. How can I help?\nCaller: Hi, I'd like to {}.\nAgent: {}\nCaller: {}",
                spec.name,
                rng.pick(AGENTS),
                rng.pick(spec.needs),
                rng.pick(REPLIES),
                rng.pick(CLOSINGS)
            ))
        });
        let notes = rng
            .chance(0.3)
            .then(|| Personal::new(rng.pick(NOTES).to_owned()));
        let mut tags = Vec::new();
        match (direction, completed) {
            (Direction::Outbound, _) => tags.push("callback"),
            (Direction::Inbound, true) => {
                if rng.chance(0.45) {
                    tags.push("lead");
                    tags.push(rng.pick(&["new-customer", "quote-requested", "appointment-booked"]));
                } else if rng.chance(0.3) {
                    tags.push("existing-customer");
                }
            }
            (Direction::Inbound, false) => {
                if rng.chance(0.5) {
                    tags.push("missed-call");
                }
            }
        }
        if rng.chance(0.02) {
            tags.push("spam");
        }
        let interaction = InteractionContent {
            notes,
            tags: Personal::new(tags.into_iter().map(str::to_owned).collect()),
        };

        let visitor =
            (channel.is_web() && rng.chance(0.7)).then(|| visitor(spec, channel, &utm, &mut rng));
        let recording = (completed && duration_s >= 15 && rng.chance(self.recording_share))
            .then(|| (1 + rng.below(4) as u32, rng.next_u64()));

        PlannedCall {
            call: NewCall {
                external_id: Some(format!("demo-{}-{n:07}", spec.slug)),
                started_at,
                duration_s: Some(duration_s),
                direction: Some(direction),
                status: Some(status),
                tracking_number,
                source: Some(channel.source().to_owned()),
                campaign,
                utm,
                caller: identity,
                location,
                transcript,
                interaction,
                session_id: None,
                visitor,
                consents: Vec::new(),
            },
            recording,
        }
    }
}

/// A web visit from the documentation address blocks, landing on the account's example site.
fn visitor(spec: &AccountSpec, channel: Channel, utm: &Utm, rng: &mut Rng) -> VisitorDetails {
    let ip = if rng.chance(0.8) {
        let net = rng.pick(&["192.0.2", "198.51.100", "203.0.113"]);
        format!("{net}.{}", 1 + rng.below(254))
    } else {
        format!(
            "2001:db8:{:x}:{:x}::{:x}",
            rng.below(0x10000),
            rng.below(0x10000),
            1 + rng.below(0xfffe)
        )
    };
    let referrer = match channel {
        Channel::GoogleAds | Channel::BingAds | Channel::Organic => {
            Some("https://search.example.org/")
        }
        Channel::FacebookAds => Some("https://social.example.org/"),
        Channel::Email => Some("https://mail.example.org/"),
        Channel::Referral => Some("https://partners.example.org/directory"),
        Channel::Direct | Channel::Print => None,
    };
    let gclid = (channel == Channel::GoogleAds).then(|| format!("Cj0KCQ{}", rng.alphanumeric(40)));
    let fbclid = (channel == Channel::FacebookAds).then(|| format!("IwAR{}", rng.alphanumeric(40)));
    let msclkid = (channel == Channel::BingAds).then(|| rng.hex(32));
    let mut landing = format!(
        "https://www.{}.example.com{}",
        spec.slug,
        rng.pick(spec.landing_paths)
    );
    let mut params: Vec<String> = Vec::new();
    for (key, value) in [
        ("utm_source", &utm.source),
        ("utm_medium", &utm.medium),
        ("utm_campaign", &utm.campaign),
    ] {
        if let Some(v) = value {
            params.push(format!("{key}={v}"));
        }
    }
    for (key, value) in [
        ("gclid", &gclid),
        ("fbclid", &fbclid),
        ("msclkid", &msclkid),
    ] {
        if let Some(v) = value {
            params.push(format!("{key}={v}"));
        }
    }
    if !params.is_empty() {
        landing.push('?');
        landing.push_str(&params.join("&"));
    }
    VisitorDetails {
        ip: personal(ip),
        user_agent: personal(rng.pick(USER_AGENTS)),
        referrer: referrer.and_then(personal),
        landing_url: personal(landing),
        gclid: gclid.and_then(personal),
        fbclid: fbclid.and_then(personal),
        msclkid: msclkid.and_then(personal),
        visitor_id: personal(format!("rf1.{}", rng.hex(16))),
        country: None,
    }
}

/// A short synthetic recording: 8 kHz mono 16-bit PCM WAV, a ringback tone, then speech-like
/// babble (harmonics of a wandering pitch at syllable pace) over faint noise.
fn synthetic_wav(seconds: u32, seed: u64) -> Vec<u8> {
    use std::f64::consts::TAU;
    let mut rng = Rng::new(seed);
    let samples = (SAMPLE_RATE * seconds) as usize;
    let data_len = (samples * 2) as u32;
    let mut wav = Vec::with_capacity(44 + samples * 2);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&SAMPLE_RATE.to_le_bytes());
    wav.extend_from_slice(&(SAMPLE_RATE * 2).to_le_bytes()); // bytes per second
    wav.extend_from_slice(&2u16.to_le_bytes()); // block align
    wav.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());

    let rate = f64::from(SAMPLE_RATE);
    let ring_end = (samples / 3).min(SAMPLE_RATE as usize * 4 / 5);
    let pitch = 100.0 + 90.0 * rng.unit();
    let syllables = 3.0 + 2.0 * rng.unit();
    let mut phase = 0.0f64;
    for i in 0..samples {
        let t = i as f64 / rate;
        let value = if i < ring_end {
            0.22 * ((TAU * 440.0 * t).sin() + (TAU * 480.0 * t).sin())
        } else {
            let f = pitch * (1.0 + 0.12 * (TAU * 0.7 * t).sin());
            phase = (phase + TAU * f / rate) % TAU;
            let voice = phase.sin()
                + 0.5 * (2.0 * phase).sin()
                + 0.3 * (3.0 * phase).sin()
                + 0.15 * (4.0 * phase).sin();
            let envelope = (TAU * syllables * t).sin().max(0.0).powi(2);
            0.3 * voice * envelope
        };
        let noise = (rng.unit() - 0.5) * 0.02;
        let sample = ((value + noise).clamp(-1.0, 1.0) * 32_000.0) as i16;
        wav.extend_from_slice(&sample.to_le_bytes());
    }
    wav
}

/// Progress on stderr: a bar on a terminal, a line now and then elsewhere, nothing when off.
enum Progress {
    Bar(ProgressBar),
    Lines {
        total: usize,
        done: usize,
        last: Instant,
    },
    Off,
}

impl Progress {
    fn new(enabled: bool, total: usize) -> Progress {
        if !enabled {
            return Progress::Off;
        }
        if std::io::stderr().is_terminal() {
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} demo [{bar:40}] {pos}/{len} calls {msg} ({elapsed})",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            Progress::Bar(bar)
        } else {
            Progress::Lines {
                total,
                done: 0,
                last: Instant::now(),
            }
        }
    }

    fn advance(&mut self, calls: usize, recordings: usize) {
        match self {
            Progress::Bar(bar) => {
                bar.inc(calls as u64);
                bar.set_message(format!("· {recordings} recordings"));
            }
            Progress::Lines { total, done, last } => {
                *done += calls;
                if last.elapsed() >= Duration::from_secs(2) || *done == *total {
                    eprintln!("demo: {done}/{total} calls, {recordings} recordings");
                    *last = Instant::now();
                }
            }
            Progress::Off => {}
        }
    }

    fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// The demo agencies and accounts, found by name when an earlier run made them.
async fn ensure_tenants(
    resources: &Resources,
) -> anyhow::Result<Vec<(AgencyRecord, Vec<AccountRecord>)>> {
    let store = resources.log.store();
    let existing = store.list_agencies().await?;
    let mut tenants = Vec::with_capacity(AGENCIES.len());
    for spec in AGENCIES {
        let agency = match existing.iter().find(|a| a.name == spec.name) {
            Some(a) => a.clone(),
            None => {
                let record = AgencyRecord {
                    id: AgencyId::generate(),
                    name: spec.name.to_owned(),
                    redaction_enabled: spec.redaction_enabled,
                    max_retention_days: None,
                    created_at: Timestamp::now(),
                };
                store
                    .create_agency(record.clone())
                    .await
                    .context("cannot create a demo agency")?;
                record
            }
        };
        let existing_accounts = store.list_accounts(Some(agency.id)).await?;
        let mut accounts = Vec::with_capacity(spec.accounts.len());
        for account_spec in spec.accounts {
            let account = match existing_accounts
                .iter()
                .find(|a| a.name == account_spec.name)
            {
                Some(a) => a.clone(),
                None => {
                    let record = AccountRecord {
                        twilio_auth_token: None,
                        twilio_delete_recordings: false,
                        twilio_account_sid: None,
                        id: AccountId::generate(),
                        agency_id: agency.id,
                        name: account_spec.name.to_owned(),
                        // The demo shows every kind of data: its accounts collect it all.
                        collection: ringfence_core::collection::CollectionSettings::collect_all(),
                        created_at: Timestamp::now(),
                        retention: Default::default(),
                    };
                    store
                        .create_account(record.clone())
                        .await
                        .context("cannot create a demo account")?;
                    resources.log.blind_key(record.id).await?;
                    record
                }
            };
            accounts.push(account);
        }
        tenants.push((agency, accounts));
    }
    Ok(tenants)
}

/// Splits `total` calls by the accounts' shares; the remainder goes to the first accounts.
fn split_calls(total: usize, shares: &[u32]) -> Vec<usize> {
    let sum: usize = shares.iter().map(|s| *s as usize).sum::<usize>().max(1);
    let mut counts: Vec<usize> = shares.iter().map(|s| total * *s as usize / sum).collect();
    // Each share loses less than one call to rounding down, so fewer calls than accounts are left.
    let rest = total - counts.iter().sum::<usize>();
    for c in counts.iter_mut().take(rest) {
        *c += 1;
    }
    counts
}

async fn upload_recordings(
    resources: &Resources,
    planned: Vec<(CallId, u32, u64)>,
) -> anyhow::Result<usize> {
    if planned.is_empty() {
        return Ok(0);
    }
    // Synthesis is CPU work: off the async runtime.
    let wavs = tokio::task::spawn_blocking(move || {
        planned
            .into_iter()
            .map(|(id, seconds, seed)| (id, synthetic_wav(seconds, seed)))
            .collect::<Vec<_>>()
    })
    .await
    .context("the recording generator failed")?;
    let log = &resources.log;
    let limit = resources.config.max_recording_bytes;
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(wavs)
        .map(|(id, wav)| async move {
            let row = log
                .call_row(id)
                .await?
                .with_context(|| format!("demo call {id} vanished"))?;
            let body = futures::stream::iter(vec![Ok::<Bytes, std::io::Error>(Bytes::from(wav))]);
            log.put_recording(&row, "audio/wav".into(), body, limit, None)
                .await
                .with_context(|| format!("cannot store the recording of call {id}"))?;
            Ok(())
        })
        .buffer_unordered(UPLOADS_AT_ONCE)
        .collect()
        .await;
    let stored = results.len();
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    Ok(stored)
}

/// Fills the data folder with demo tenants and `calls` calls; returns what was made and tokens
/// to try the API with.
pub async fn run_demo(
    resources: &Resources,
    calls: usize,
    progress: bool,
) -> anyhow::Result<Value> {
    if calls > MAX_CALLS {
        bail!("--calls must be at most {MAX_CALLS}");
    }
    let started = Instant::now();
    let now = Timestamp::now();
    let tenants = ensure_tenants(resources).await?;
    let specs: Vec<(&'static AccountSpec, &AccountRecord)> = AGENCIES
        .iter()
        .zip(&tenants)
        .flat_map(|(agency, (_, accounts))| agency.accounts.iter().zip(accounts))
        .collect();
    let counts = split_calls(
        calls,
        &specs.iter().map(|(s, _)| s.share).collect::<Vec<_>>(),
    );
    // About 82 % of calls complete; keep the expected number of recordings under the cap.
    let recording_share = RECORDING_SHARE.min(MAX_RECORDINGS as f64 / (calls.max(1) as f64 * 0.82));

    let mut bar = Progress::new(progress, calls);
    let (mut created, mut sessions, mut recordings) = (0usize, 0usize, 0usize);
    for (index, ((spec, account), count)) in specs.iter().zip(&counts).enumerate() {
        let plan = AccountPlan::new(spec, index, *count, now, recording_share)?;
        let mut next = 0;
        while next < *count {
            let end = (next + BATCH).min(*count);
            let planned: Vec<PlannedCall> = (next..end).map(|n| plan.call(n)).collect();
            next = end;
            let mut batch = Vec::with_capacity(planned.len());
            let mut extras = Vec::with_capacity(planned.len());
            for p in planned {
                extras.push((p.call.visitor.is_some(), p.recording));
                batch.push(p.call);
            }
            let outcomes: Vec<_> = resources
                .log
                .ingest_calls(
                    account.id,
                    batch,
                    &ringfence_store::IngestPolicy::collect_all("demo"),
                )
                .await
                .context("cannot store the demo calls")?
                .into_iter()
                .map(|i| i.outcome)
                .collect();
            let mut wanted = Vec::new();
            for (outcome, (has_visitor, recording)) in outcomes.iter().zip(extras) {
                if !outcome.is_created() {
                    continue;
                }
                created += 1;
                sessions += usize::from(has_visitor);
                if let Some((seconds, seed)) =
                    recording.filter(|_| recordings + wanted.len() < MAX_RECORDINGS)
                {
                    wanted.push((outcome.id(), seconds, seed));
                }
            }
            recordings += upload_recordings(resources, wanted).await?;
            bar.advance(outcomes.len(), recordings);
        }
        tracing::debug!(account_id = %account.id, account_index = plan.index, calls = count, "demo calls ready");
    }
    bar.finish();

    let (first_agency, first_accounts) = tenants.first().context("no demo agency")?;
    let first_account = first_accounts.first().context("no demo account")?;
    let token = |role: &str,
                 agency: Option<AgencyId>,
                 account: Option<AccountId>,
                 no_personal_data: bool,
                 label: &str| TokenArgs {
        role: role.to_owned(),
        agency: agency.map(|a| a.to_string()),
        account: account.map(|a| a.to_string()),
        label: Some(label.to_owned()),
        no_personal_data,
        expires_in_days: Some(DEMO_TOKEN_DAYS),
    };
    let revoked_tokens = revoke_earlier_demo_tokens(resources).await?;
    let (_, account_admin) = create_token(
        resources,
        &token(
            "account_admin",
            None,
            Some(first_account.id),
            false,
            DEMO_TOKEN_LABELS[0],
        ),
    )
    .await?;
    let (_, analyst) = create_token(
        resources,
        &token(
            "analyst",
            None,
            Some(first_account.id),
            true,
            DEMO_TOKEN_LABELS[1],
        ),
    )
    .await?;
    let (_, agency_admin) = create_token(
        resources,
        &token(
            "agency_admin",
            Some(first_agency.id),
            None,
            false,
            DEMO_TOKEN_LABELS[2],
        ),
    )
    .await?;

    let users = demo_users(resources, first_agency.id, first_account).await?;

    tracing::info!(
        calls = created,
        sessions,
        recordings,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "demo data created"
    );
    let agencies: Vec<Value> = tenants
        .iter()
        .map(|(a, _)| json!({"id": a.id.to_string(), "name": a.name, "redaction_enabled": a.redaction_enabled}))
        .collect();
    let accounts: Vec<Value> = specs
        .iter()
        .zip(&counts)
        .map(|((_, a), count)| json!({"id": a.id.to_string(), "agency_id": a.agency_id.to_string(), "name": a.name, "calls": count}))
        .collect();
    Ok(json!({
        "agencies": agencies,
        "accounts": accounts,
        "calls": calls,
        "new_calls": created,
        "sessions": sessions,
        "recordings": recordings,
        "tokens": {"account_admin": account_admin, "analyst": analyst, "agency_admin": agency_admin},
        "tokens_expire_in_days": DEMO_TOKEN_DAYS,
        "earlier_demo_tokens_revoked": revoked_tokens,
        "sign_in": {
            "url": format!("http://{}/login", resources.config.listen),
            "users": users,
        },
        "try": format!(
            "curl -H 'Authorization: Bearer {account_admin}' 'http://{}/api/v1/accounts/{}/calls?limit=5'",
            resources.config.listen,
            first_account.id
        ),
    }))
}

/// Revokes the live tokens an earlier demo run handed out (found by their labels), so that
/// reruns leave no pile of tokens behind; returns how many.
async fn revoke_earlier_demo_tokens(resources: &Resources) -> anyhow::Result<usize> {
    use ringfence_core::access::Scope;
    let store = resources.log.store();
    let now = Timestamp::now();
    let mut revoked = 0;
    for token in store.list_tokens().await? {
        let demo = token
            .label
            .as_deref()
            .is_some_and(|l| DEMO_TOKEN_LABELS.contains(&l));
        if !demo || token.revoked_at.is_some() {
            continue;
        }
        let (agency_id, account_id) = match token.scope {
            Scope::Installation => (None, None),
            Scope::Agency(a) => (Some(a), None),
            Scope::Account { agency, account } => (Some(agency), Some(account)),
        };
        let event = ringfence_store::AuditEvent {
            actor: "demo".into(),
            action: "token.revoked".into(),
            agency_id,
            account_id,
            subject: Some(format!("token:{}", token.id)),
            count: None,
            reason: Some("replaced by a later demo run".into()),
            details: json!({"role": token.role.as_str()}).to_string(),
        };
        if store.revoke_token(token.id, now, event).await? {
            revoked += 1;
        }
    }
    Ok(revoked)
}

/// Web interface users for the demo, each with a fresh random password printed once. A user
/// that exists from an earlier run keeps its password (only its hash is stored).
async fn demo_users(
    resources: &Resources,
    agency: ringfence_core::AgencyId,
    account: &AccountRecord,
) -> anyhow::Result<Vec<Value>> {
    use base64::Engine;
    use ringfence_core::access::{Role, Scope};
    use ringfence_store::users::NewUserError;
    let account_scope = Scope::Account {
        agency,
        account: account.id,
    };
    let mut users = Vec::new();
    for (email, role, scope, personal_data) in [
        (
            "demo-admin@example.com",
            Role::AccountAdmin,
            account_scope,
            true,
        ),
        (
            "demo-analyst@example.com",
            Role::Analyst,
            account_scope,
            false,
        ),
        (
            "demo-agency@example.com",
            Role::AgencyAdmin,
            Scope::Agency(agency),
            true,
        ),
    ] {
        let password = zeroize::Zeroizing::new(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(ringfence_crypto::random_bytes::<12>()),
        );
        match resources
            .log
            .create_user(email, password.clone(), role, scope, personal_data, "demo".into())
            .await
        {
            Ok(_) => users.push(json!({"email": email, "role": role.as_str(), "personal_data": personal_data, "password": password.as_str()})),
            Err(NewUserError::Exists) => users.push(json!({"email": email, "role": role.as_str(), "personal_data": personal_data, "password": null, "note": format!("created by an earlier demo run, which printed its password; `ringfence user reset-password {email}` sets a new one")})),
            Err(e) => return Err(anyhow::anyhow!("{e}")),
        }
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use ringfence_core::jurisdiction::gdpr_scope_of_number;

    use super::*;

    #[test]
    fn every_demo_number_is_valid_and_in_its_country() {
        for place in PLACES {
            let in_scope = matches!(place.country, "GB" | "DE" | "FR" | "SE");
            for text in place.numbers.all() {
                let number = parse_e164(&text)
                    .unwrap_or_else(|e| panic!("{} number {text}: {e}", place.key));
                assert_eq!(
                    number.region(),
                    Some(place.country),
                    "{} number {text}",
                    place.key
                );
                assert_eq!(
                    gdpr_scope_of_number(&number),
                    Some(in_scope),
                    "{} number {text}",
                    place.key
                );
            }
        }
        for agency in AGENCIES {
            for account in agency.accounts {
                assert!(
                    (2..=4).contains(&account.tracking.len()),
                    "{}",
                    account.slug
                );
                for t in account.tracking {
                    assert!(parse_e164(t).is_ok(), "tracking number {t}");
                }
                for (key, _) in account.callers {
                    assert!(place(key).is_ok(), "{key}");
                }
            }
        }
    }

    #[test]
    fn the_generator_is_reproducible() {
        let mut a = Rng::new(7).derive(3);
        let mut b = Rng::new(7).derive(3);
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        assert_eq!(xs, (0..5).map(|_| b.next_u64()).collect::<Vec<_>>());
        assert_ne!(xs[0], Rng::new(7).derive(4).next_u64());
        let mut r = Rng::new(1);
        assert!((0..1000).all(|_| r.below(6) < 6 && (0.0..1.0).contains(&r.unit())));
    }

    #[test]
    fn calls_fall_mostly_on_weekdays_in_business_hours_of_the_last_120_days() {
        let now = Timestamp::now();
        let clock = CallClock::new(now, 0);
        let mut rng = Rng::new(1);
        let times: Vec<i64> = (0..5000).map(|_| clock.sample(&mut rng).millis()).collect();
        assert!(
            times
                .iter()
                .all(|t| *t < now.millis() && *t >= now.minus_days(121).millis())
        );
        let business = |t: &&i64| {
            let hour = t.div_euclid(3_600_000);
            let weekday = (hour.div_euclid(24) + 3).rem_euclid(7);
            weekday < 5 && (8..18).contains(&hour.rem_euclid(24))
        };
        let share = times.iter().filter(business).count() as f64 / times.len() as f64;
        assert!(share > 0.6, "{share}");
    }

    #[test]
    fn calls_are_split_by_share_without_losing_any() {
        for total in [0, 1, 7, 300, 5000] {
            let counts = split_calls(total, &[28, 17, 25, 18, 12]);
            assert_eq!(counts.iter().sum::<usize>(), total);
        }
        assert_eq!(
            split_calls(100, &[28, 17, 25, 18, 12]),
            vec![28, 17, 25, 18, 12]
        );
    }

    #[test]
    fn synthetic_recordings_are_8_khz_mono_16_bit_wav() {
        let wav = synthetic_wav(2, 42);
        assert_eq!(wav.len(), 44 + 2 * 8000 * 2);
        assert_eq!(&wav[0..4], b"RIFF");
        assert_eq!(
            u32::from_le_bytes([wav[4], wav[5], wav[6], wav[7]]) as usize,
            wav.len() - 8
        );
        assert_eq!(&wav[8..16], b"WAVEfmt ");
        assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 1);
        assert_eq!(
            u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]),
            8000
        );
        assert_eq!(u16::from_le_bytes([wav[34], wav[35]]), 16);
        assert_eq!(&wav[36..40], b"data");
        assert!(
            wav[44..]
                .chunks(2)
                .any(|s| i16::from_le_bytes([s[0], s[1]]).abs() > 5000),
            "audible"
        );
    }

    #[test]
    fn demo_calls_pass_the_ingest_rules() {
        let now = Timestamp::now();
        let spec = &AGENCIES[0].accounts[0];
        let plan = AccountPlan::new(spec, 0, 400, now, 0.15).expect("plan");
        let calls: Vec<PlannedCall> = (0..400).map(|n| plan.call(n)).collect();
        for p in &calls {
            let c = &p.call;
            assert!(
                c.external_id
                    .as_ref()
                    .is_some_and(|e| e.len() <= ringfence_core::call::limits::EXTERNAL_ID)
            );
            if let Some(v) = &c.visitor {
                let ip: std::net::IpAddr =
                    v.ip.as_ref()
                        .expect("ip")
                        .expose()
                        .parse()
                        .expect("an IP address");
                let documentation = match ip {
                    std::net::IpAddr::V4(v4) => matches!(
                        v4.octets(),
                        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _]
                    ),
                    std::net::IpAddr::V6(v6) => v6.segments()[0..2] == [0x2001, 0x0db8],
                };
                assert!(documentation, "visitor IP outside the documentation ranges");
                assert!(
                    v.landing_url
                        .as_ref()
                        .expect("landing")
                        .expose()
                        .starts_with("https://www.")
                );
            }
            if let (Some(number), Some(country)) = (&c.caller.number, &c.location.country) {
                assert_eq!(number.region(), Some(country.expose().as_str()));
            }
        }
        let with_visitor = calls.iter().filter(|p| p.call.visitor.is_some()).count();
        assert!(
            (100..300).contains(&with_visitor),
            "{with_visitor} of 400 calls have a visitor"
        );
        assert!(
            calls.iter().any(|p| p.call.caller.number.is_none()),
            "some callers withhold their number"
        );
        let numbers: Vec<&str> = calls
            .iter()
            .filter_map(|p| p.call.caller.number.as_ref().map(E164::as_str))
            .collect();
        let distinct: HashSet<&str> = numbers.iter().copied().collect();
        assert!(distinct.len() < numbers.len(), "some callers call again");
        // The same call on every run.
        assert_eq!(plan.call(17).call.external_id, calls[17].call.external_id);
        assert_eq!(plan.call(17).call.caller, calls[17].call.caller);
    }
}
