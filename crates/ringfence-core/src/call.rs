//! Calls and visitor sessions as the domain knows them, and the rules their input must meet.
//!
//! Each personal part of a call is its own struct, one per data category, so that the store
//! can seal a category's fields together and redaction can remove a category whole.

use std::net::IpAddr;

use crate::ids::{AccountId, CallId, SessionId};
use crate::personal::Personal;
use crate::phone::E164;
use crate::timestamp::Timestamp;

/// Longest accepted lengths, in characters, of free-text fields (the OpenAPI document's
/// `maxLength`s).
pub mod limits {
    pub const EXTERNAL_ID: usize = 128;
    pub const LABEL: usize = 128;
    pub const NAME: usize = 256;
    pub const LOCATION_PART: usize = 128;
    pub const TRANSCRIPT: usize = 1 << 20;
    pub const NOTES: usize = 64 * 1024;
    pub const TAGS: usize = 50;
    pub const TAG: usize = 64;
    pub const URL: usize = 4096;
    pub const USER_AGENT: usize = 1024;
    pub const CLICK_ID: usize = 512;
    /// A call may last at most a week.
    pub const DURATION_S: u32 = 7 * 24 * 3600;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "inbound" => Some(Direction::Inbound),
            // Twilio's outbound flavours are one direction to us.
            "outbound" | "outbound-api" | "outbound-dial" => Some(Direction::Outbound),
            _ => None,
        }
    }
}

/// A call's status, with Twilio's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallStatus {
    Queued,
    Initiated,
    Ringing,
    InProgress,
    Completed,
    Busy,
    NoAnswer,
    Canceled,
    Failed,
}

impl CallStatus {
    pub const ALL: [CallStatus; 9] = [
        CallStatus::Queued,
        CallStatus::Initiated,
        CallStatus::Ringing,
        CallStatus::InProgress,
        CallStatus::Completed,
        CallStatus::Busy,
        CallStatus::NoAnswer,
        CallStatus::Canceled,
        CallStatus::Failed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Queued => "queued",
            CallStatus::Initiated => "initiated",
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "in-progress",
            CallStatus::Completed => "completed",
            CallStatus::Busy => "busy",
            CallStatus::NoAnswer => "no-answer",
            CallStatus::Canceled => "canceled",
            CallStatus::Failed => "failed",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Where a status stands in a call's life, for ordering telephony callbacks: unknown <
    /// queued < initiated < ringing < in-progress < the final ones, ordered by name among
    /// themselves so that even two different final statuses converge. A status moves only
    /// forward, so any order of (repeated) deliveries ends on the same one.
    pub fn progress(status: Option<CallStatus>) -> (u8, &'static str) {
        let rank = match status {
            None => 0,
            Some(CallStatus::Queued) => 1,
            Some(CallStatus::Initiated) => 2,
            Some(CallStatus::Ringing) => 3,
            Some(CallStatus::InProgress) => 4,
            Some(_) => 5,
        };
        (rank, status.map(CallStatus::as_str).unwrap_or(""))
    }
}

/// Campaign parameters of the visit that led to the call: call facts, kept on redaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Utm {
    pub source: Option<String>,
    pub medium: Option<String>,
    pub campaign: Option<String>,
}

/// Category `caller_identity`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerIdentity {
    pub number: Option<E164>,
    pub name: Option<Personal<String>>,
    pub forwarded_from: Option<E164>,
}

impl CallerIdentity {
    pub fn is_empty(&self) -> bool {
        self.number.is_none() && self.name.is_none() && self.forwarded_from.is_none()
    }
    /// The stored fields updated by a later delivery, field by field: what the later one
    /// leaves out (a status callback without `CallerName`) is kept, not erased.
    pub fn updated_by(self, later: CallerIdentity) -> CallerIdentity {
        CallerIdentity {
            number: later.number.or(self.number),
            name: later.name.or(self.name),
            forwarded_from: later.forwarded_from.or(self.forwarded_from),
        }
    }
}

/// Category `caller_location`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerLocation {
    pub city: Option<Personal<String>>,
    pub region: Option<Personal<String>>,
    pub postal_code: Option<Personal<String>>,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: Option<Personal<String>>,
}

impl CallerLocation {
    /// As [`CallerIdentity::updated_by`]: field by field, a field left out is kept.
    pub fn updated_by(self, later: CallerLocation) -> CallerLocation {
        CallerLocation {
            city: later.city.or(self.city),
            region: later.region.or(self.region),
            postal_code: later.postal_code.or(self.postal_code),
            country: later.country.or(self.country),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.city.is_none()
            && self.region.is_none()
            && self.postal_code.is_none()
            && self.country.is_none()
    }
}

/// Category `interaction_content`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InteractionContent {
    pub notes: Option<Personal<String>>,
    pub tags: Personal<Vec<String>>,
}

impl InteractionContent {
    pub fn is_empty(&self) -> bool {
        self.notes.is_none() && self.tags.expose().is_empty()
    }
}

/// Category `visitor`: what a web visit tells about the visitor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VisitorDetails {
    pub ip: Option<Personal<String>>,
    pub user_agent: Option<Personal<String>>,
    pub referrer: Option<Personal<String>>,
    pub landing_url: Option<Personal<String>>,
    pub gclid: Option<Personal<String>>,
    pub fbclid: Option<Personal<String>>,
    pub msclkid: Option<Personal<String>>,
    pub visitor_id: Option<Personal<String>>,
    /// The country of `ip` (ISO 3166-1 alpha-2), looked up before the IP is truncated or
    /// dropped.
    pub country: Option<Personal<String>>,
}

impl VisitorDetails {
    pub fn is_empty(&self) -> bool {
        self == &VisitorDetails::default()
    }
}

/// A call as it arrives, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCall {
    pub external_id: Option<String>,
    pub started_at: Timestamp,
    pub duration_s: Option<u32>,
    pub direction: Option<Direction>,
    pub status: Option<CallStatus>,
    pub tracking_number: E164,
    pub source: Option<String>,
    pub campaign: Option<String>,
    pub utm: Utm,
    pub caller: CallerIdentity,
    pub location: CallerLocation,
    pub transcript: Option<Personal<String>>,
    pub interaction: InteractionContent,
    /// An existing session of the same account to link.
    pub session_id: Option<SessionId>,
    /// A visit sent inline with the call: stored as a session of its own and linked.
    pub visitor: Option<VisitorDetails>,
    /// Consent events sent with the call, recorded with it.
    pub consents: Vec<crate::consent::InlineConsent>,
}

/// A visitor session as it arrives, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub external_id: Option<String>,
    pub started_at: Timestamp,
    pub utm: Utm,
    pub visitor: VisitorDetails,
}

/// Why a call was redacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedactionReason {
    Manual,
    Caller,
    Retention,
    ConsentWithdrawn,
    ForgetList,
}

impl RedactionReason {
    pub const ALL: [RedactionReason; 5] = [
        RedactionReason::Manual,
        RedactionReason::Caller,
        RedactionReason::Retention,
        RedactionReason::ConsentWithdrawn,
        RedactionReason::ForgetList,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            RedactionReason::Manual => "manual",
            RedactionReason::Caller => "caller",
            RedactionReason::Retention => "retention",
            RedactionReason::ConsentWithdrawn => "consent_withdrawn",
            RedactionReason::ForgetList => "forget_list",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// The mark a redacted call or session keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    pub at: Timestamp,
    pub reason: RedactionReason,
    /// A token id, a job name or "cli": never a person's data.
    pub by: String,
}

/// A legal hold: exempts a call from automatic redaction and from redaction on request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegalHold {
    pub at: Timestamp,
    /// A reference (no personal data).
    pub reason: String,
    pub by: String,
}

/// Metadata of a stored recording (category `recording`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingMeta {
    pub content_type: String,
    pub bytes: u64,
}

/// A stored call, opened for an authorised reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub id: CallId,
    pub account_id: AccountId,
    pub external_id: Option<String>,
    pub started_at: Timestamp,
    pub created_at: Timestamp,
    pub duration_s: Option<u32>,
    pub direction: Option<Direction>,
    pub status: Option<CallStatus>,
    pub tracking_number: String,
    pub source: Option<String>,
    pub campaign: Option<String>,
    pub utm: Utm,
    pub gdpr_scope: Option<bool>,
    /// `None` once redacted; otherwise the opened categories (possibly empty).
    pub caller: Option<CallerIdentity>,
    pub location: Option<CallerLocation>,
    pub recording: Option<RecordingMeta>,
    pub transcript: Option<Personal<String>>,
    pub interaction: Option<InteractionContent>,
    pub visitor: Option<(SessionId, VisitorDetails)>,
    pub redaction: Option<Redaction>,
    pub legal_hold: Option<LegalHold>,
}

/// A stored visitor session, opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub account_id: AccountId,
    pub external_id: Option<String>,
    pub started_at: Timestamp,
    pub utm: Utm,
    pub visitor: Option<VisitorDetails>,
    pub redaction: Option<Redaction>,
}

/// One input field that breaks a rule. The message names the field and the rule, never the
/// value (it may be personal data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    /// A stable code: `invalid_phone_number`, `invalid_field`, `missing_field`, `too_long`.
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

/// Checks a free-text field: length in characters (Unicode scalar values, as JSON Schema's
/// `maxLength` counts them, so the OpenAPI document's limits are the server's), no control
/// characters except (when `multiline`) newlines and tabs. Empty strings count as absent.
pub fn checked_text(
    field: &str,
    value: Option<String>,
    max: usize,
    multiline: bool,
) -> Result<Option<String>, FieldError> {
    let Some(value) = value else { return Ok(None) };
    if value.len() > max && value.chars().count() > max {
        return Err(FieldError::new(
            field,
            "too_long",
            format!("longer than {max} characters"),
        ));
    }
    let bad = |c: char| c.is_control() && !(multiline && (c == '\n' || c == '\t' || c == '\r'));
    if value.chars().any(bad) {
        return Err(FieldError::new(
            field,
            "invalid_field",
            "contains control characters",
        ));
    }
    if value.trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(value))
}

/// Like [`checked_text`], wrapped as personal data.
pub fn checked_personal(
    field: &str,
    value: Option<String>,
    max: usize,
    multiline: bool,
) -> Result<Option<Personal<String>>, FieldError> {
    checked_text(field, value, max, multiline).map(|v| v.map(Personal::new))
}

/// Checks an IP address and returns its canonical text.
pub fn checked_ip(
    field: &str,
    value: Option<String>,
) -> Result<Option<Personal<String>>, FieldError> {
    let Some(value) = value else { return Ok(None) };
    if value.trim().is_empty() {
        return Ok(None);
    }
    let ip: IpAddr = value
        .trim()
        .parse()
        .map_err(|_| FieldError::new(field, "invalid_field", "not an IPv4 or IPv6 address"))?;
    Ok(Some(Personal::new(ip.to_string())))
}

/// Checks an ISO 3166-1 alpha-2 country code and returns it in upper case.
pub fn checked_country(
    field: &str,
    value: Option<String>,
) -> Result<Option<Personal<String>>, FieldError> {
    let Some(value) = value else { return Ok(None) };
    if value.is_empty() {
        return Ok(None);
    }
    if value.len() != 2 || !value.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(FieldError::new(
            field,
            "invalid_field",
            "not an ISO 3166-1 alpha-2 country code",
        ));
    }
    Ok(Some(Personal::new(value.to_ascii_uppercase())))
}

/// Checks tags: at most [`limits::TAGS`], each a non-empty single line of at most [`limits::TAG`] bytes.
pub fn checked_tags(field: &str, tags: Vec<String>) -> Result<Personal<Vec<String>>, FieldError> {
    if tags.len() > limits::TAGS {
        return Err(FieldError::new(
            field,
            "too_long",
            format!("more than {} tags", limits::TAGS),
        ));
    }
    let mut out = Vec::with_capacity(tags.len());
    for (i, tag) in tags.into_iter().enumerate() {
        let name = format!("{field}[{i}]");
        match checked_text(&name, Some(tag), limits::TAG, false)? {
            Some(tag) => out.push(tag),
            None => return Err(FieldError::new(name, "invalid_field", "empty tag")),
        }
    }
    Ok(Personal::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_only_move_forward_and_two_final_ones_converge() {
        use CallStatus::*;
        let life = [
            None,
            Some(Queued),
            Some(Initiated),
            Some(Ringing),
            Some(InProgress),
        ];
        for pair in life.windows(2) {
            assert!(CallStatus::progress(pair[0]) < CallStatus::progress(pair[1]));
        }
        for last in [Completed, Busy, NoAnswer, Canceled, Failed] {
            assert!(CallStatus::progress(Some(InProgress)) < CallStatus::progress(Some(last)));
        }
        // Two different final statuses are ordered, so either delivery order ends the same.
        assert!(CallStatus::progress(Some(Busy)) < CallStatus::progress(Some(Completed)));
        assert_ne!(
            CallStatus::progress(Some(Failed)),
            CallStatus::progress(Some(Canceled))
        );
    }

    #[test]
    fn text_fields_enforce_length_and_control_characters() {
        type Case<'a> = (
            Option<&'a str>,
            usize,
            bool,
            Result<Option<&'a str>, &'a str>,
        );
        let cases: [Case; 7] = [
            (None, 10, false, Ok(None)),
            (Some(""), 10, false, Ok(None)),
            (Some("  "), 10, false, Ok(None)),
            (Some("google_ads"), 10, false, Ok(Some("google_ads"))),
            (Some("google_ads!"), 10, false, Err("too_long")),
            (Some("a\nb"), 10, false, Err("invalid_field")),
            (Some("a\nb"), 10, true, Ok(Some("a\nb"))),
        ];
        for (input, max, multiline, expected) in cases {
            let got = checked_text("f", input.map(str::to_owned), max, multiline);
            match expected {
                Ok(v) => assert_eq!(got, Ok(v.map(str::to_owned)), "{input:?}"),
                Err(code) => assert_eq!(got.map_err(|e| e.code), Err(code), "{input:?}"),
            }
        }
    }

    #[test]
    fn field_errors_never_repeat_the_value() {
        let err = checked_ip("visitor.ip", Some("203.0.113.999".into())).unwrap_err();
        assert!(!err.to_string().contains("203.0.113"), "{err}");
        let err = checked_text("caller_name", Some("Erika\u{7}".into()), 100, false).unwrap_err();
        assert!(!err.to_string().contains("Erika"), "{err}");
    }

    #[test]
    fn ip_addresses_are_canonicalised() {
        let cases = [
            ("203.0.113.7", "203.0.113.7"),
            ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
            (" 198.51.100.1 ", "198.51.100.1"),
        ];
        for (input, expected) in cases {
            let got = checked_ip("ip", Some(input.into())).unwrap().unwrap();
            assert_eq!(got.expose(), expected);
        }
        assert!(checked_ip("ip", Some("example.org".into())).is_err());
    }

    #[test]
    fn countries_are_two_letters_upper_cased() {
        assert_eq!(
            checked_country("c", Some("de".into()))
                .unwrap()
                .unwrap()
                .expose(),
            "DE"
        );
        for bad in ["DEU", "D", "1A", "ÄÖ"] {
            assert!(checked_country("c", Some(bad.into())).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags_are_bounded() {
        assert!(checked_tags("tags", vec!["lead".into(), "vip".into()]).is_ok());
        assert_eq!(
            checked_tags("tags", vec!["x".into(); 51]).unwrap_err().code,
            "too_long"
        );
        assert_eq!(
            checked_tags("tags", vec!["".into()]).unwrap_err().field,
            "tags[0]"
        );
    }

    #[test]
    fn statuses_directions_and_reasons_round_trip() {
        for s in CallStatus::ALL {
            assert_eq!(CallStatus::parse(s.as_str()), Some(s));
        }
        for r in RedactionReason::ALL {
            assert_eq!(RedactionReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(Direction::parse("outbound-dial"), Some(Direction::Outbound));
        assert_eq!(Direction::parse("sideways"), None);
    }
}
