//! Realistic synthetic calls from ranges reserved for fiction (Ofcom's +44 20 7946 0xxx drama
//! range, the US 555-01xx range, 203.0.113.0/24), as HTTP bodies and as the rows the baseline
//! writes. A pool of templates is serialised once; a call's body is its template with the
//! call's own `external_id` spliced in, so generating load costs the client a memcpy.

use serde_json::{Value, json};

/// Marks where the external id goes in a serialised template.
const EXTERNAL_ID_SLOT: &str = "@@EXTERNAL_ID@@";
/// Marks where the start time goes, in live mode.
const STARTED_AT_SLOT: &str = "@@STARTED_AT@@";

/// A small, fast, deterministic generator (SplitMix64): the same seed gives the same calls.
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

const FIRST_NAMES: &[&str] = &[
    "Erika", "John", "Aisha", "Wei", "Maria", "Oliver", "Priya", "Lucas", "Fatima", "Tom", "Sofia",
    "Kwame",
];
const LAST_NAMES: &[&str] = &[
    "Mustermann",
    "Doe",
    "Khan",
    "Zhang",
    "Garcia",
    "Smith",
    "Patel",
    "Martin",
    "Okafor",
    "Brown",
    "Rossi",
    "Mensah",
];
const UK_PLACES: &[(&str, &str, &str)] = &[
    ("London", "ENG", "EC1A 1BB"),
    ("London", "ENG", "SW1A 2AA"),
    ("London", "ENG", "N1 9GU"),
    ("Croydon", "ENG", "CR0 1NX"),
];
const US_PLACES: &[(&str, &str, &str)] = &[
    ("San Francisco", "CA", "94103"),
    ("Oakland", "CA", "94612"),
    ("San Jose", "CA", "95113"),
    ("Berkeley", "CA", "94704"),
];
const SOURCES: &[(&str, &str)] = &[
    ("google_ads", "winter-sale"),
    ("facebook", "retargeting-q4"),
    ("organic", "seo"),
    ("direct", "brand"),
    ("bing_ads", "boiler-repair"),
];
const STATUSES: &[&str] = &[
    "completed",
    "completed",
    "completed",
    "completed",
    "no-answer",
    "busy",
];
const TAGS: &[&str] = &[
    "lead",
    "qualified",
    "quote",
    "existing-customer",
    "spam",
    "follow-up",
    "booked",
];
const SENTENCES: &[&str] = &[
    "Hello, thanks for calling, how can I help you today?",
    "Hi, I saw your advert and I would like a quote for a new boiler.",
    "Sure, could I take your name and the postcode of the property?",
    "It is a three bedroom terraced house, the old boiler is about fifteen years old.",
    "We have an engineer free on Thursday morning between eight and twelve.",
    "Thursday works for me, can you send a confirmation by text message?",
    "Of course. Is this the best number to reach you on?",
    "Yes, or you can email me, I check it most evenings.",
    "Great, the survey is free and takes about forty minutes.",
    "Do you offer finance on the installation, or is it payment on completion?",
    "We offer both; the engineer will go through the options with you.",
    "Perfect, thank you very much for your help, goodbye.",
];
const NOTES: &[&str] = &[
    "call back tomorrow after 5pm",
    "wants a quote for boiler replacement, survey booked Thursday",
    "existing customer, asked about annual service",
    "price shopping, sent brochure",
    "no answer, left voicemail",
];
const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
];

/// One realistic call as the API's JSON, with the external id left as a slot.
fn template(rng: &mut SplitMix, with_visitor: bool) -> Value {
    let uk = rng.chance(0.6);
    let caller_number = if uk {
        format!("+44207946{:04}", rng.below(1000))
    } else {
        format!("+1415555{:04}", 100 + rng.below(100))
    };
    let (city, region, postal) = *rng.pick(if uk { UK_PLACES } else { US_PLACES });
    let (source, campaign) = *rng.pick(SOURCES);
    let status = *rng.pick(STATUSES);
    let mut transcript = String::new();
    let start = rng.below(SENTENCES.len() as u64) as usize;
    for i in 0..(4 + rng.below(5) as usize) {
        if !transcript.is_empty() {
            transcript.push('\n');
        }
        transcript.push_str(if i % 2 == 0 { "Agent: " } else { "Caller: " });
        transcript.push_str(SENTENCES[(start + i) % SENTENCES.len()]);
    }
    let tags: Vec<&str> = (0..1 + rng.below(3))
        .map(|_| *rng.pick(TAGS))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut call = json!({
        "external_id": EXTERNAL_ID_SLOT,
        "started_at": format!("2026-11-28T{:02}:{:02}:{:02}Z", 8 + rng.below(10), rng.below(60), rng.below(60)),
        "duration_s": if status == "completed" { 20 + rng.below(900) } else { 0 },
        "direction": "inbound",
        "status": status,
        "tracking_number": format!("+1415555{:04}", 100 + rng.below(10)),
        "source": source,
        "campaign": campaign,
        "caller_number": caller_number,
        "caller_name": format!("{} {}", rng.pick(FIRST_NAMES), rng.pick(LAST_NAMES)),
        "caller_city": city,
        "caller_region": region,
        "caller_postal_code": postal,
        "caller_country": if uk { "GB" } else { "US" },
        "transcript": transcript,
        "notes": *rng.pick(NOTES),
        "tags": tags,
    });
    if with_visitor {
        call["visitor"] = json!({
            "ip": format!("203.0.113.{}", 1 + rng.below(254)),
            "user_agent": *rng.pick(USER_AGENTS),
            "referrer": "https://search.example/",
            "landing_url": format!("https://shop.example/{campaign}?gclid=EAIaIQobChMI{:08x}", rng.next_u64() as u32),
            "gclid": format!("EAIaIQobChMI{:016x}", rng.next_u64()),
            "utm_source": source,
            "utm_medium": "cpc",
            "utm_campaign": campaign,
        });
    }
    call
}

/// When calls start: in arrival order, as a live feed sends them, or spread at random over
/// a day, as a back-fill might.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum StartTimes {
    /// Call `n` started n/20 seconds after the first, less its duration
    /// (a call is posted when it ends).
    Live,
    /// Each template's own random time of day (08:00 to 18:00).
    Shuffled,
}

/// Calls per second of the live feed the start times imitate.
const CALLS_PER_SECOND: u64 = 20;
/// 2026-11-28T08:00:00Z, when the live feed starts.
const FEED_START: i64 = 1_795_852_800;

/// One serialised template: the JSON text around the two slots.
struct Body {
    head: Vec<u8>,
    /// Between the external id and the start time (empty in shuffled mode).
    middle: Vec<u8>,
    tail: Vec<u8>,
    duration_s: i64,
}

/// The pool of serialised templates.
pub struct Calls {
    bodies: Vec<Body>,
    /// Each template as JSON, with the slots still in it.
    templates: Vec<Value>,
    start_times: StartTimes,
}

fn split_at_slot(text: &str, slot: &str) -> (Vec<u8>, Vec<u8>) {
    match text.find(slot) {
        Some(at) => (
            text.as_bytes()[..at].to_vec(),
            text.as_bytes()[at + slot.len()..].to_vec(),
        ),
        None => (text.as_bytes().to_vec(), Vec::new()),
    }
}

impl Calls {
    /// `count` templates, a `visitor_share` of them with an inline visitor.
    pub fn new(count: usize, visitor_share: f64, seed: u64, start_times: StartTimes) -> Calls {
        let mut rng = SplitMix::new(seed);
        let mut bodies = Vec::with_capacity(count);
        let mut templates = Vec::with_capacity(count);
        for i in 0..count {
            // Spread visitors evenly so that any run of calls has the same share.
            let with_visitor =
                ((i + 1) as f64 * visitor_share).floor() > (i as f64 * visitor_share).floor();
            let mut value = template(&mut rng, with_visitor);
            if start_times == StartTimes::Live {
                value["started_at"] = Value::String(STARTED_AT_SLOT.to_owned());
            }
            let duration_s = value["duration_s"].as_i64().unwrap_or(0);
            // serde_json writes keys in order: external_id comes before started_at.
            let text = value.to_string();
            let (head, rest) = split_at_slot(&text, EXTERNAL_ID_SLOT);
            let (middle, tail) = if start_times == StartTimes::Live {
                split_at_slot(
                    std::str::from_utf8(&rest).unwrap_or_default(),
                    STARTED_AT_SLOT,
                )
            } else {
                (Vec::new(), rest)
            };
            bodies.push(Body {
                head,
                middle,
                tail,
                duration_s,
            });
            templates.push(value);
        }
        Calls {
            bodies,
            templates,
            start_times,
        }
    }

    pub fn len(&self) -> usize {
        self.bodies.len()
    }

    pub fn template_of(&self, n: u64) -> usize {
        (n % self.bodies.len() as u64) as usize
    }

    /// The JSON template of call `n`, slots unfilled.
    pub fn template(&self, index: usize) -> &Value {
        &self.templates[index]
    }

    /// The external id of call `n` (shaped like a Twilio call SID).
    pub fn external_id(n: u64) -> String {
        format!("CA{n:032x}")
    }

    /// Call `n`'s start in Unix seconds, in live mode.
    fn live_start(&self, n: u64) -> i64 {
        FEED_START + (n / CALLS_PER_SECOND) as i64 - self.bodies[self.template_of(n)].duration_s
    }

    /// Call `n`'s start in Unix milliseconds, as the server will store it.
    pub fn started_at_millis(&self, n: u64) -> Option<i64> {
        (self.start_times == StartTimes::Live).then(|| self.live_start(n) * 1000)
    }

    /// Appends the JSON of call `n` to `out`.
    pub fn write_body(&self, n: u64, out: &mut Vec<u8>) {
        let body = &self.bodies[self.template_of(n)];
        out.extend_from_slice(&body.head);
        out.extend_from_slice(Self::external_id(n).as_bytes());
        out.extend_from_slice(&body.middle);
        if self.start_times == StartTimes::Live {
            let at = time::OffsetDateTime::from_unix_timestamp(self.live_start(n))
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            let text = at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            out.extend_from_slice(text.as_bytes());
        }
        out.extend_from_slice(&body.tail);
    }

    /// The JSON of call `n`.
    pub fn body(&self, n: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(1200);
        self.write_body(n, &mut out);
        out
    }

    /// `{"calls": [...]}` for calls `first..first + count`.
    pub fn batch_body(&self, first: u64, count: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(count as usize * 1200 + 16);
        out.extend_from_slice(b"{\"calls\":[");
        for n in first..first + count {
            if n > first {
                out.push(b',');
            }
            self.write_body(n, &mut out);
        }
        out.extend_from_slice(b"]}");
        out
    }

    /// Mean body size in bytes and the share of calls with a visitor.
    pub fn describe(&self) -> (usize, f64) {
        let bytes: usize = (0..self.len() as u64).map(|n| self.body(n).len()).sum();
        let visitors = self
            .templates
            .iter()
            .filter(|t| t.get("visitor").is_some())
            .count();
        (
            bytes / self.len().max(1),
            visitors as f64 / self.len().max(1) as f64,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_is_a_valid_call_for_the_api() {
        let calls = Calls::new(64, 0.3, 7, StartTimes::Live);
        for n in 0..64 {
            let value: Value = serde_json::from_slice(&calls.body(n)).expect("json");
            let input: ringfence_http::dto::CallInput =
                serde_json::from_value(value).expect("call input");
            assert!(input.into_domain("").is_ok(), "template {n} is rejected");
        }
        let (_, share) = calls.describe();
        assert!((share - 0.3).abs() < 0.05, "{share}");
    }

    #[test]
    fn a_batch_body_holds_each_call_once() {
        let calls = Calls::new(8, 0.5, 1, StartTimes::Live);
        let value: Value = serde_json::from_slice(&calls.batch_body(10, 5)).expect("json");
        let ids: Vec<&str> = value["calls"]
            .as_array()
            .expect("array")
            .iter()
            .map(|c| c["external_id"].as_str().expect("id"))
            .collect();
        assert_eq!(ids, (10..15).map(Calls::external_id).collect::<Vec<_>>());
    }

    #[test]
    fn live_start_times_are_in_the_body_as_the_server_will_store_them() {
        let calls = Calls::new(16, 0.3, 3, StartTimes::Live);
        for n in [0, 1, 19, 20, 1000, 123_456] {
            let value: Value = serde_json::from_slice(&calls.body(n)).expect("json");
            let text = value["started_at"].as_str().expect("started_at");
            let parsed =
                ringfence_core::timestamp::Timestamp::parse_rfc3339(text).expect("rfc 3339");
            assert_eq!(Some(parsed.millis()), calls.started_at_millis(n), "{text}");
        }
        assert_eq!(
            Calls::new(16, 0.3, 3, StartTimes::Shuffled).started_at_millis(5),
            None
        );
    }
}
