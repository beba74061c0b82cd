//! The wire format: request and response bodies, and their conversion to and from the
//! domain. Only this module knows JSON names.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use ringfence_core::DataCategory;
use ringfence_core::SessionId;
use ringfence_core::call::{
    Call, CallStatus, CallerIdentity, CallerLocation, Direction, FieldError, InteractionContent,
    NewCall, NewSession, Utm, VisitorDetails, checked_country, checked_ip, checked_personal,
    checked_tags, checked_text, limits,
};
use ringfence_core::consent::{ConsentMethod, ConsentStatus, InlineConsent, consentable};
use ringfence_core::phone::{E164, parse_caller_number, parse_e164};
use ringfence_core::timestamp::Timestamp;

/// A call as a telephony system or script sends it. Only `started_at` and
/// `tracking_number` are required; unknown fields are rejected.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"external_id": "CA5f0c2e8b7d9a41c6b8e2f4a6c8d0e1f2", "started_at": "2026-11-28T10:00:00Z", "duration_s": 95, "direction": "inbound", "status": "completed", "tracking_number": "+14155550100", "source": "google_ads", "campaign": "winter-sale", "caller_number": "+442079460123", "caller_name": "Alex Example", "caller_city": "London", "caller_country": "GB", "transcript": "Hello, I would like to book a viewing for Saturday.", "notes": "asked for a callback", "tags": ["lead"], "visitor": {"ip": "203.0.113.7", "user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "landing_url": "https://www.example.com/offers", "gclid": "EAIaIQobChMIexample", "utm_source": "google", "utm_medium": "cpc", "utm_campaign": "winter"}, "consents": [{"category": "recording", "status": "granted", "method": "ivr_keypress"}]}))]
pub struct CallInput {
    /// The sender's id of the call: makes ingest idempotent per account.
    #[schema(max_length = 128, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub external_id: Option<String>,
    /// RFC 3339 with a time zone.
    #[schema(example = "2026-11-28T10:00:00Z", schema_with = crate::schemas::instant)]
    pub started_at: String,
    #[schema(maximum = 604800)]
    pub duration_s: Option<u32>,
    /// `inbound` or `outbound` (Twilio's `outbound-api` and `outbound-dial` are accepted).
    #[schema(schema_with = crate::schemas::direction)]
    pub direction: Option<String>,
    /// Twilio's call statuses: queued, initiated, ringing, in-progress, completed, busy, no-answer, canceled, failed.
    #[schema(schema_with = crate::schemas::call_status)]
    pub status: Option<String>,
    /// The business's tracking number, E.164.
    #[schema(example = "+14155550100")]
    #[schema(schema_with = crate::schemas::e164)]
    pub tracking_number: String,
    #[schema(max_length = 128, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub source: Option<String>,
    #[schema(max_length = 128, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub campaign: Option<String>,
    /// E.164; empty, `anonymous` and the usual withheld markers mean no number.
    #[schema(schema_with = crate::schemas::caller_number)]
    pub caller_number: Option<String>,
    #[schema(max_length = 256, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub caller_name: Option<String>,
    #[schema(schema_with = crate::schemas::caller_number)]
    pub forwarded_from: Option<String>,
    #[schema(max_length = 128, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub caller_city: Option<String>,
    #[schema(max_length = 128, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub caller_region: Option<String>,
    #[schema(max_length = 128, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub caller_postal_code: Option<String>,
    /// ISO 3166-1 alpha-2.
    #[schema(pattern = "^([A-Za-z]{2})?$")]
    pub caller_country: Option<String>,
    #[schema(
        max_length = 1048576,
        pattern = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$"
    )]
    pub transcript: Option<String>,
    #[schema(
        max_length = 65536,
        pattern = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$"
    )]
    pub notes: Option<String>,
    #[schema(schema_with = crate::schemas::tags)]
    pub tags: Option<Vec<String>>,
    /// A visitor session of the same account to link (its id, from `POST …/sessions`);
    /// send this or `visitor`, not both.
    #[schema(
        pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$"
    )]
    pub session_id: Option<String>,
    /// The visit that led to the call, sent inline: stored as a session and linked.
    #[serde(
        default,
        deserialize_with = "crate::body::objects_only::optional_object"
    )]
    pub visitor: Option<VisitorInput>,
    #[schema(max_length = 128, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub utm_source: Option<String>,
    #[schema(max_length = 128, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub utm_medium: Option<String>,
    #[schema(max_length = 128, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub utm_campaign: Option<String>,
    /// Consent events sent with the call (an IVR posting the call and the keypress at once);
    /// their subject is the caller (or, for a withheld number, the visitor id).
    #[schema(max_items = 16)]
    #[serde(
        default,
        deserialize_with = "crate::body::objects_only::optional_objects"
    )]
    pub consents: Option<Vec<InlineConsentInput>>,
}

/// A consent event inline with a call.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InlineConsentInput {
    /// caller_identity, caller_location, recording, transcript, visitor, interaction_content
    #[schema(schema_with = crate::schemas::consent_category)]
    pub category: String,
    /// granted or withdrawn
    #[schema(schema_with = crate::schemas::consent_status)]
    pub status: String,
    /// ivr_keypress, verbal, web_form or api
    #[schema(schema_with = crate::schemas::consent_method)]
    pub method: String,
    #[schema(minimum = 1)]
    pub notice_version: Option<u32>,
}

/// A category consent can be asked for (every personal one).
pub fn consent_category(name: &str, field: &str) -> Result<DataCategory, FieldError> {
    DataCategory::parse(name)
        .filter(|c| consentable(*c))
        .ok_or_else(|| {
            FieldError::new(
                field,
                "unknown_category",
                "must be one of caller_identity, caller_location, recording, transcript, visitor, interaction_content",
            )
        })
}

/// Validates a consent's category, status, method and notice version.
pub fn checked_consent_parts(
    prefix: &str,
    category: &str,
    status: &str,
    method: &str,
    notice_version: Option<u32>,
) -> Result<InlineConsent, Vec<FieldError>> {
    let mut errors = Vec::new();
    let category_parsed = match consent_category(category, &format!("{prefix}category")) {
        Ok(c) => Some(c),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let status_parsed = ConsentStatus::parse(status);
    if status_parsed.is_none() {
        errors.push(FieldError::new(
            format!("{prefix}status"),
            "invalid_field",
            "must be granted or withdrawn",
        ));
    }
    let method_parsed = ConsentMethod::parse(method);
    if method_parsed.is_none() {
        errors.push(FieldError::new(
            format!("{prefix}method"),
            "invalid_field",
            "must be ivr_keypress, verbal, web_form or api",
        ));
    }
    if notice_version == Some(0) {
        errors.push(FieldError::new(
            format!("{prefix}notice_version"),
            "unknown_notice_version",
            "notice versions start at 1",
        ));
    }
    match (
        category_parsed,
        status_parsed,
        method_parsed,
        errors.is_empty(),
    ) {
        (Some(category), Some(status), Some(method), true) => Ok(InlineConsent {
            category,
            status,
            method,
            notice_version,
        }),
        _ => Err(errors),
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VisitorInput {
    /// IPv4 or IPv6; kept whole, truncated or dropped as the account's `visitor_ip` says.
    #[schema(schema_with = crate::schemas::ip_address)]
    pub ip: Option<String>,
    #[schema(max_length = 1024, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub user_agent: Option<String>,
    #[schema(max_length = 4096, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub referrer: Option<String>,
    #[schema(max_length = 4096, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub landing_url: Option<String>,
    #[schema(max_length = 512, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub gclid: Option<String>,
    #[schema(max_length = 512, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub fbclid: Option<String>,
    #[schema(max_length = 512, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub msclkid: Option<String>,
    #[schema(max_length = 128, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub visitor_id: Option<String>,
    #[schema(max_length = 128, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub utm_source: Option<String>,
    #[schema(max_length = 128, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub utm_medium: Option<String>,
    #[schema(max_length = 128, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub utm_campaign: Option<String>,
}

/// A visitor session (web visit) sent by a website or the tracking snippet.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"external_id": "visit-8f14e45f", "started_at": "2026-11-28T09:55:00Z", "ip": "198.51.100.23", "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X)", "referrer": "https://www.google.com/", "landing_url": "https://www.example.com/offers", "gclid": "EAIaIQobChMIexample", "visitor_id": "v-5c2a9e", "utm_source": "google", "utm_medium": "cpc", "utm_campaign": "winter"}))]
pub struct SessionInput {
    #[schema(max_length = 128, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub external_id: Option<String>,
    /// RFC 3339 with a time zone.
    #[schema(schema_with = crate::schemas::instant)]
    pub started_at: String,
    /// IPv4 or IPv6; kept whole, truncated or dropped as the account's `visitor_ip` says.
    #[schema(schema_with = crate::schemas::ip_address)]
    pub ip: Option<String>,
    #[schema(max_length = 1024, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub user_agent: Option<String>,
    #[schema(max_length = 4096, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub referrer: Option<String>,
    #[schema(max_length = 4096, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub landing_url: Option<String>,
    #[schema(max_length = 512, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub gclid: Option<String>,
    #[schema(max_length = 512, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub fbclid: Option<String>,
    #[schema(max_length = 512, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub msclkid: Option<String>,
    #[schema(max_length = 128, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub visitor_id: Option<String>,
    #[schema(max_length = 128, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub utm_source: Option<String>,
    #[schema(max_length = 128, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub utm_medium: Option<String>,
    #[schema(max_length = 128, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub utm_campaign: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"calls": [{"external_id": "CA6a1d3f9c8e0b52d7c9f3a5b7d9e1f203", "started_at": "2026-11-28T10:05:00Z", "duration_s": 42, "direction": "inbound", "status": "completed", "tracking_number": "+14155550100", "source": "google_ads", "caller_number": "+12125550199"}, {"external_id": "CA7b2e4a0d9f1c63e8d0a4b6c8e0f2a314", "started_at": "2026-11-28T10:09:00Z", "direction": "inbound", "status": "no-answer", "tracking_number": "+14155550100", "source": "direct", "caller_number": "anonymous"}]}))]
pub struct BatchInput {
    /// 1 to 5,000 calls (`Limits::max_batch_calls`).
    #[schema(min_items = 1, max_items = 5000)]
    #[serde(deserialize_with = "crate::body::objects_only::objects")]
    pub calls: Vec<CallInput>,
}

/// Collects field errors with a common prefix (`calls[3].`).
struct Checker {
    prefix: String,
    errors: Vec<FieldError>,
}

impl Checker {
    /// The value, or records the error, its field named with the prefix (built only then:
    /// a batch checks about twenty fields per call).
    fn take<T>(&mut self, r: Result<T, FieldError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(mut e) => {
                e.field.insert_str(0, &self.prefix);
                self.errors.push(e);
                None
            }
        }
    }
    fn text(&mut self, name: &str, v: Option<String>, max: usize) -> Option<String> {
        self.take(checked_text(name, v, max, false)).flatten()
    }
    fn personal(
        &mut self,
        name: &str,
        v: Option<String>,
        max: usize,
        multiline: bool,
    ) -> Option<ringfence_core::Personal<String>> {
        self.take(checked_personal(name, v, max, multiline))
            .flatten()
    }
    fn timestamp(&mut self, name: &str, v: &str) -> Option<Timestamp> {
        self.take(
            Timestamp::parse_rfc3339(v)
                .map_err(|e| FieldError::new(name, "invalid_field", e.to_string())),
        )
    }
    /// A start time, at most `MAX_CLOCK_SKEW_MS` ahead of the server's clock: a call dated
    /// in the future would escape retention.
    fn start(&mut self, name: &str, v: &str) -> Option<Timestamp> {
        let at = self.timestamp(name, v)?;
        let now = Timestamp::now();
        if at.is_beyond_skew_of(now) {
            return self.take(Err(FieldError::new(
                name,
                "start_in_future",
                "more than 5 minutes ahead of the server's clock",
            )));
        }
        Some(at.as_start_arriving_at(now))
    }
    fn number(&mut self, name: &str, v: &str) -> Option<E164> {
        self.take(parse_e164(v).map_err(|e| {
            FieldError::new(
                name,
                "invalid_phone_number",
                format!("not a valid E.164 number ({e})"),
            )
        }))
    }
    fn caller_number(&mut self, name: &str, v: Option<&str>) -> Option<E164> {
        let v = v?;
        self.take(parse_caller_number(v).map_err(|e| {
            FieldError::new(
                name,
                "invalid_phone_number",
                format!("not a valid E.164 number ({e})"),
            )
        }))
        .flatten()
    }
    fn visitor(&mut self, prefix: &str, v: VisitorFields) -> VisitorDetails {
        VisitorDetails {
            ip: self
                .take(checked_ip(&format!("{prefix}ip"), v.ip))
                .flatten(),
            user_agent: self.personal(
                &format!("{prefix}user_agent"),
                v.user_agent,
                limits::USER_AGENT,
                false,
            ),
            referrer: self.personal(&format!("{prefix}referrer"), v.referrer, limits::URL, false),
            landing_url: self.personal(
                &format!("{prefix}landing_url"),
                v.landing_url,
                limits::URL,
                false,
            ),
            gclid: self.personal(&format!("{prefix}gclid"), v.gclid, limits::CLICK_ID, false),
            fbclid: self.personal(
                &format!("{prefix}fbclid"),
                v.fbclid,
                limits::CLICK_ID,
                false,
            ),
            msclkid: self.personal(
                &format!("{prefix}msclkid"),
                v.msclkid,
                limits::CLICK_ID,
                false,
            ),
            visitor_id: self.personal(
                &format!("{prefix}visitor_id"),
                v.visitor_id,
                limits::EXTERNAL_ID,
                false,
            ),
            country: None,
        }
    }
    fn utm(
        &mut self,
        prefix: &str,
        source: Option<String>,
        medium: Option<String>,
        campaign: Option<String>,
    ) -> Utm {
        Utm {
            source: self.text(&format!("{prefix}utm_source"), source, limits::LABEL),
            medium: self.text(&format!("{prefix}utm_medium"), medium, limits::LABEL),
            campaign: self.text(&format!("{prefix}utm_campaign"), campaign, limits::LABEL),
        }
    }
}

struct VisitorFields {
    ip: Option<String>,
    user_agent: Option<String>,
    referrer: Option<String>,
    landing_url: Option<String>,
    gclid: Option<String>,
    fbclid: Option<String>,
    msclkid: Option<String>,
    visitor_id: Option<String>,
}

impl CallInput {
    /// Validates the input; `prefix` names its place in a batch (`calls[3].`).
    pub fn into_domain(self, prefix: &str) -> Result<NewCall, Vec<FieldError>> {
        let mut c = Checker {
            prefix: prefix.to_owned(),
            errors: Vec::new(),
        };
        let external_id = c.text("external_id", self.external_id, limits::EXTERNAL_ID);
        let started_at = c.start("started_at", &self.started_at);
        if let Some(d) = self.duration_s
            && d > limits::DURATION_S
        {
            c.take::<()>(Err(FieldError::new(
                "duration_s",
                "invalid_field",
                format!("longer than {} seconds", limits::DURATION_S),
            )));
        }
        let direction = match self.direction.as_deref() {
            None | Some("") => None,
            Some(d) => c.take(Direction::parse(d).ok_or_else(|| {
                FieldError::new("direction", "invalid_field", "must be inbound or outbound")
            })),
        };
        let status = match self.status.as_deref() {
            None | Some("") => None,
            Some(s) => c.take(CallStatus::parse(s).ok_or_else(|| {
                let allowed: Vec<&str> = CallStatus::ALL.iter().map(|s| s.as_str()).collect();
                FieldError::new(
                    "status",
                    "invalid_field",
                    format!("must be one of {}", allowed.join(", ")),
                )
            })),
        };
        let tracking_number = c.number("tracking_number", &self.tracking_number);
        let source = c.text("source", self.source, limits::LABEL);
        let campaign = c.text("campaign", self.campaign, limits::LABEL);
        let number = c.caller_number("caller_number", self.caller_number.as_deref());
        let forwarded_from = c.caller_number("forwarded_from", self.forwarded_from.as_deref());
        let caller = CallerIdentity {
            number,
            name: c.personal("caller_name", self.caller_name, limits::NAME, false),
            forwarded_from,
        };
        let location = CallerLocation {
            city: c.personal(
                "caller_city",
                self.caller_city,
                limits::LOCATION_PART,
                false,
            ),
            region: c.personal(
                "caller_region",
                self.caller_region,
                limits::LOCATION_PART,
                false,
            ),
            postal_code: c.personal(
                "caller_postal_code",
                self.caller_postal_code,
                limits::LOCATION_PART,
                false,
            ),
            country: c
                .take(checked_country("caller_country", self.caller_country))
                .flatten(),
        };
        let transcript = c.personal("transcript", self.transcript, limits::TRANSCRIPT, true);
        let notes = c.personal("notes", self.notes, limits::NOTES, true);
        let tags = c
            .take(checked_tags("tags", self.tags.unwrap_or_default()))
            .unwrap_or_default();
        let session_id =
            match self.session_id.as_deref() {
                None | Some("") => None,
                Some(s) => c.take(s.parse::<SessionId>().map_err(|_| {
                    FieldError::new("session_id", "invalid_field", "not a session id")
                })),
            };
        let mut utm = c.utm("", self.utm_source, self.utm_medium, self.utm_campaign);
        let visitor = self.visitor.map(|v| {
            let visit_utm = c.utm("visitor.", v.utm_source, v.utm_medium, v.utm_campaign);
            utm.source = utm.source.take().or(visit_utm.source);
            utm.medium = utm.medium.take().or(visit_utm.medium);
            utm.campaign = utm.campaign.take().or(visit_utm.campaign);
            c.visitor(
                "visitor.",
                VisitorFields {
                    ip: v.ip,
                    user_agent: v.user_agent,
                    referrer: v.referrer,
                    landing_url: v.landing_url,
                    gclid: v.gclid,
                    fbclid: v.fbclid,
                    msclkid: v.msclkid,
                    visitor_id: v.visitor_id,
                },
            )
        });
        let mut consents = Vec::new();
        for (i, ev) in self.consents.unwrap_or_default().into_iter().enumerate() {
            match checked_consent_parts(
                &format!("{}consents[{i}].", c.prefix),
                &ev.category,
                &ev.status,
                &ev.method,
                ev.notice_version,
            ) {
                Ok(consent) => consents.push(consent),
                Err(e) => c.errors.extend(e),
            }
        }
        if consents.len() > 16 {
            c.take::<()>(Err(FieldError::new(
                "consents",
                "too_long",
                "more than 16 consent events",
            )));
        }
        if visitor.is_some() && session_id.is_some() {
            c.take::<()>(Err(FieldError::new(
                "visitor",
                "invalid_field",
                "send either session_id or visitor, not both",
            )));
        }
        match (started_at, tracking_number, c.errors.is_empty()) {
            (Some(started_at), Some(tracking_number), true) => Ok(NewCall {
                external_id,
                started_at,
                duration_s: self.duration_s,
                direction,
                status,
                tracking_number,
                source,
                campaign,
                utm,
                caller,
                location,
                transcript,
                interaction: InteractionContent { notes, tags },
                session_id,
                visitor: visitor.filter(|v| !v.is_empty()),
                consents,
            }),
            _ => Err(c.errors),
        }
    }
}

impl SessionInput {
    pub fn into_domain(self) -> Result<NewSession, Vec<FieldError>> {
        let mut c = Checker {
            prefix: String::new(),
            errors: Vec::new(),
        };
        let external_id = c.text("external_id", self.external_id, limits::EXTERNAL_ID);
        let started_at = c.start("started_at", &self.started_at);
        let utm = c.utm("", self.utm_source, self.utm_medium, self.utm_campaign);
        let visitor = c.visitor(
            "",
            VisitorFields {
                ip: self.ip,
                user_agent: self.user_agent,
                referrer: self.referrer,
                landing_url: self.landing_url,
                gclid: self.gclid,
                fbclid: self.fbclid,
                msclkid: self.msclkid,
                visitor_id: self.visitor_id,
            },
        );
        match (started_at, c.errors.is_empty()) {
            (Some(started_at), true) => Ok(NewSession {
                external_id,
                started_at,
                utm,
                visitor,
            }),
            _ => Err(c.errors),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UtmOutput {
    pub source: Option<String>,
    pub medium: Option<String>,
    pub campaign: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallerOutput {
    pub number: Option<String>,
    pub name: Option<String>,
    pub forwarded_from: Option<String>,
    pub city: Option<String>,
    pub region: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingOutput {
    pub content_type: String,
    pub bytes: u64,
    /// Where signed-in users play it (bearer token required).
    pub url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VisitorOutput {
    pub session_id: String,
    /// IPv4 or IPv6; kept whole, truncated or dropped as the account's `visitor_ip` says.
    #[schema(schema_with = crate::schemas::ip_address)]
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub referrer: Option<String>,
    pub landing_url: Option<String>,
    pub gclid: Option<String>,
    pub fbclid: Option<String>,
    pub msclkid: Option<String>,
    pub visitor_id: Option<String>,
    /// The country of the visitor's IP address (ISO 3166-1 alpha-2), looked up before the
    /// address was truncated or dropped.
    pub country: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RedactionOutput {
    pub at: String,
    /// manual, caller, retention, consent_withdrawn or forget_list
    pub reason: String,
    pub by: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LegalHoldOutput {
    pub at: String,
    pub reason: String,
    pub by: String,
}

/// The answer to a re-delivery from a token that may not read the call log (an ingest
/// token): the stored call's id, nothing of its content.
#[derive(Debug, Serialize, ToSchema)]
pub struct Redelivered {
    pub id: String,
    /// Always `already_stored`.
    #[schema(example = "already_stored")]
    pub status: &'static str,
}

/// A call as the API shows it. After redaction `caller`, `recording`, `transcript`,
/// `notes`, `visitor` and `gdpr_scope` are null and `tags` is empty; facts and `utm` stay.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallOutput {
    pub id: String,
    pub account_id: String,
    pub external_id: Option<String>,
    pub started_at: String,
    pub created_at: String,
    #[schema(maximum = 604800)]
    pub duration_s: Option<u32>,
    pub direction: Option<String>,
    pub status: Option<String>,
    pub tracking_number: String,
    pub source: Option<String>,
    pub campaign: Option<String>,
    pub utm: UtmOutput,
    pub gdpr_scope: Option<bool>,
    pub caller: Option<CallerOutput>,
    pub recording: Option<RecordingOutput>,
    pub transcript: Option<String>,
    pub notes: Option<String>,
    pub tags: Vec<String>,
    pub visitor: Option<VisitorOutput>,
    pub redaction: Option<RedactionOutput>,
    /// Set while the call is on legal hold (exempt from redaction).
    pub legal_hold: Option<LegalHoldOutput>,
    /// True when personal data is masked for this token.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub masked: bool,
    /// Only in the answer to an ingest: input fields not stored because the account's
    /// collection settings exclude them (`caller_name`, `visitor.ip`…), `visitor.ip:truncated`
    /// when only the IP's network part was kept, or whole categories the subject withdrew
    /// consent to (`caller_location`…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped: Option<Vec<String>>,
}

pub(crate) fn reveal(p: &Option<ringfence_core::Personal<String>>) -> Option<String> {
    p.as_ref().map(|v| v.expose().clone())
}

impl CallOutput {
    /// `personal_data = false` masks numbers and leaves out every other personal field.
    pub fn from_call(call: &Call, personal_data: bool) -> Self {
        let id = call.id.to_string();
        let caller = match (&call.caller, &call.location) {
            (Some(identity), location) => {
                let location = location.clone().unwrap_or_default();
                if personal_data {
                    Some(CallerOutput {
                        number: identity.number.as_ref().map(|n| n.as_str().to_owned()),
                        name: reveal(&identity.name),
                        forwarded_from: identity
                            .forwarded_from
                            .as_ref()
                            .map(|n| n.as_str().to_owned()),
                        city: reveal(&location.city),
                        region: reveal(&location.region),
                        postal_code: reveal(&location.postal_code),
                        country: reveal(&location.country),
                    })
                } else {
                    Some(CallerOutput {
                        number: identity.number.as_ref().map(E164::masked),
                        name: None,
                        forwarded_from: identity.forwarded_from.as_ref().map(E164::masked),
                        city: None,
                        region: None,
                        postal_code: None,
                        country: None,
                    })
                }
            }
            _ => None,
        };
        let interaction = call.interaction.as_ref().filter(|_| personal_data);
        CallOutput {
            account_id: call.account_id.to_string(),
            external_id: call.external_id.clone(),
            started_at: call.started_at.to_rfc3339(),
            created_at: call.created_at.to_rfc3339(),
            duration_s: call.duration_s,
            direction: call.direction.map(|d| d.as_str().to_owned()),
            status: call.status.map(|s| s.as_str().to_owned()),
            tracking_number: call.tracking_number.clone(),
            source: call.source.clone(),
            campaign: call.campaign.clone(),
            utm: UtmOutput {
                source: call.utm.source.clone(),
                medium: call.utm.medium.clone(),
                campaign: call.utm.campaign.clone(),
            },
            gdpr_scope: call.gdpr_scope,
            caller,
            recording: call
                .recording
                .as_ref()
                .filter(|_| personal_data)
                .map(|r| RecordingOutput {
                    content_type: r.content_type.clone(),
                    bytes: r.bytes,
                    url: format!("/api/v1/calls/{id}/recording"),
                }),
            transcript: if personal_data {
                reveal(&call.transcript)
            } else {
                None
            },
            notes: interaction.and_then(|i| reveal(&i.notes)),
            tags: interaction
                .map(|i| i.tags.expose().clone())
                .unwrap_or_default(),
            visitor: call
                .visitor
                .as_ref()
                .filter(|_| personal_data)
                .map(|(session, v)| VisitorOutput {
                    session_id: session.to_string(),
                    ip: reveal(&v.ip),
                    user_agent: reveal(&v.user_agent),
                    referrer: reveal(&v.referrer),
                    landing_url: reveal(&v.landing_url),
                    gclid: reveal(&v.gclid),
                    fbclid: reveal(&v.fbclid),
                    msclkid: reveal(&v.msclkid),
                    visitor_id: reveal(&v.visitor_id),
                    country: reveal(&v.country),
                }),
            redaction: call.redaction.as_ref().map(|r| RedactionOutput {
                at: r.at.to_rfc3339(),
                reason: r.reason.as_str().to_owned(),
                by: r.by.clone(),
            }),
            legal_hold: call.legal_hold.as_ref().map(|h| LegalHoldOutput {
                at: h.at.to_rfc3339(),
                reason: h.reason.clone(),
                by: h.by.clone(),
            }),
            masked: !personal_data && call.redaction.is_none(),
            dropped: None,
            id,
        }
    }
}

/// A page of calls.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallList {
    pub items: Vec<CallOutput>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchOutput {
    /// One id per input call, in input order (the existing id for a re-delivered external_id).
    pub ids: Vec<String>,
    /// How many of them were new.
    pub created: usize,
    /// Per input call (same order): the input fields not stored because the account's
    /// collection settings exclude them (`visitor.ip:truncated` when only the IP's network
    /// part was kept), or whole categories the subject withdrew consent to.
    pub dropped: Vec<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IdOutput {
    pub id: String,
    /// False when the external_id was already known and nothing was stored.
    pub created: bool,
    /// Input fields not stored (collection settings, withdrawn consent).
    pub dropped: Vec<String>,
}
