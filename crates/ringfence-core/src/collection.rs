//! What an account collects: the collection settings (data protection by default, GDPR
//! Art. 25) and the minimisation applied to every call and visit before anything is stored.
//!
//! Data a setting excludes is removed from the input here, before sealing: it is never
//! written anywhere. The caller learns which fields were dropped, by name, never by value.

use std::net::IpAddr;

use crate::call::{NewCall, NewSession, VisitorDetails};
use crate::personal::Personal;

/// When a call may be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingMode {
    /// Never: uploads are refused.
    Off,
    /// A notice is played; recording is allowed unless the caller withdrew consent.
    Announce,
    /// Only with a granted recording consent of the caller (or of the call itself).
    OptIn,
}

impl RecordingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingMode::Off => "off",
            RecordingMode::Announce => "announce",
            RecordingMode::OptIn => "opt_in",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        [
            RecordingMode::Off,
            RecordingMode::Announce,
            RecordingMode::OptIn,
        ]
        .into_iter()
        .find(|m| m.as_str() == text)
    }
}

/// What is kept of a visitor's IP address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpPolicy {
    Drop,
    /// IPv4 to its /24, IPv6 to its /48.
    Truncate,
    Full,
}

impl IpPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            IpPolicy::Drop => "drop",
            IpPolicy::Truncate => "truncate",
            IpPolicy::Full => "full",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        [IpPolicy::Drop, IpPolicy::Truncate, IpPolicy::Full]
            .into_iter()
            .find(|m| m.as_str() == text)
    }
}

/// An account's collection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollectionSettings {
    /// Caller-ID name (CNAM) lookup: keep `caller_name`.
    pub caller_name: bool,
    /// Keep the caller's city, region, postal code and country.
    pub caller_location: bool,
    /// Recording of callers in GDPR scope (and of callers whose scope is unknown).
    pub recording_gdpr: RecordingMode,
    /// Recording of everyone else.
    pub recording_other: RecordingMode,
    /// Keep transcripts.
    pub transcription: bool,
    pub visitor_ip: IpPolicy,
    /// Keep user agent, referrer, landing URL, click ids and visitor id.
    pub visitor_details: bool,
}

impl Default for CollectionSettings {
    /// Data protection by default: nothing that attribution does not need.
    fn default() -> Self {
        Self {
            caller_name: false,
            caller_location: false,
            recording_gdpr: RecordingMode::OptIn,
            recording_other: RecordingMode::Announce,
            transcription: false,
            visitor_ip: IpPolicy::Truncate,
            visitor_details: true,
        }
    }
}

impl CollectionSettings {
    /// Every field kept, recordings announced: for accounts that chose to collect it all.
    pub fn collect_all() -> Self {
        Self {
            caller_name: true,
            caller_location: true,
            recording_gdpr: RecordingMode::Announce,
            recording_other: RecordingMode::Announce,
            transcription: true,
            visitor_ip: IpPolicy::Full,
            visitor_details: true,
        }
    }

    /// The recording mode for a call of this scope; unknown scope counts as in scope.
    pub fn recording_mode(&self, gdpr_scope: Option<bool>) -> RecordingMode {
        if gdpr_scope == Some(false) {
            self.recording_other
        } else {
            self.recording_gdpr
        }
    }

    /// Removes what the settings exclude from a call (and the visit sent with it); returns
    /// the names of the input fields dropped, and `visitor.ip:truncated` when only the
    /// IP's network part (/24, /48) was kept.
    pub fn minimise_call(&self, call: &mut NewCall) -> Vec<String> {
        let mut dropped = Vec::new();
        if !self.caller_name && call.caller.name.take().is_some() {
            dropped.push("caller_name".to_owned());
        }
        if !self.caller_location {
            let l = &mut call.location;
            for (name, value) in [
                ("caller_city", &mut l.city),
                ("caller_region", &mut l.region),
                ("caller_postal_code", &mut l.postal_code),
                ("caller_country", &mut l.country),
            ] {
                if value.take().is_some() {
                    dropped.push(name.to_owned());
                }
            }
        }
        if !self.transcription && call.transcript.take().is_some() {
            dropped.push("transcript".to_owned());
        }
        if let Some(visitor) = &mut call.visitor {
            self.minimise_visitor(visitor, "visitor.", &mut dropped);
        }
        dropped
    }

    /// Removes what the settings exclude from a visitor session.
    pub fn minimise_session(&self, session: &mut NewSession) -> Vec<String> {
        let mut dropped = Vec::new();
        self.minimise_visitor(&mut session.visitor, "", &mut dropped);
        dropped
    }

    fn minimise_visitor(&self, v: &mut VisitorDetails, prefix: &str, dropped: &mut Vec<String>) {
        match self.visitor_ip {
            IpPolicy::Full => {}
            IpPolicy::Drop => {
                if v.ip.take().is_some() {
                    dropped.push(format!("{prefix}ip"));
                }
            }
            IpPolicy::Truncate => {
                if let Some(ip) = v.ip.take() {
                    v.ip = ip
                        .expose()
                        .parse::<IpAddr>()
                        .ok()
                        .map(|ip| Personal::new(truncate_ip(ip).to_string()));
                    dropped.push(format!("{prefix}ip:truncated"));
                }
            }
        }
        if !self.visitor_details {
            for (name, value) in [
                ("user_agent", &mut v.user_agent),
                ("referrer", &mut v.referrer),
                ("landing_url", &mut v.landing_url),
                ("gclid", &mut v.gclid),
                ("fbclid", &mut v.fbclid),
                ("msclkid", &mut v.msclkid),
                ("visitor_id", &mut v.visitor_id),
            ] {
                if value.take().is_some() {
                    dropped.push(format!("{prefix}{name}"));
                }
            }
        }
    }
}

/// An IPv4 address to its /24, an IPv6 address to its /48 (an IPv4-mapped IPv6 address is
/// truncated as IPv4).
pub fn truncate_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return truncate_ip(IpAddr::V4(v4));
            }
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], 0, 0, 0, 0, 0])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::{CallerIdentity, CallerLocation, InteractionContent, Utm};
    use crate::phone::parse_e164;
    use crate::timestamp::Timestamp;

    fn p(v: &str) -> Option<Personal<String>> {
        Some(Personal::new(v.to_owned()))
    }

    fn full_call() -> NewCall {
        NewCall {
            external_id: None,
            started_at: Timestamp::from_millis(0),
            duration_s: None,
            direction: None,
            status: None,
            tracking_number: parse_e164("+14155550100").unwrap(),
            source: None,
            campaign: None,
            utm: Utm::default(),
            caller: CallerIdentity {
                number: Some(parse_e164("+442079460123").unwrap()),
                name: p("Test Caller"),
                forwarded_from: None,
            },
            location: CallerLocation {
                city: p("London"),
                region: None,
                postal_code: p("EC1A"),
                country: p("GB"),
            },
            transcript: p("hello"),
            interaction: InteractionContent::default(),
            session_id: None,
            visitor: Some(VisitorDetails {
                ip: p("203.0.113.77"),
                user_agent: p("ua"),
                gclid: p("g"),
                ..Default::default()
            }),
            consents: Vec::new(),
        }
    }

    #[test]
    fn defaults_protect_by_default() {
        let d = CollectionSettings::default();
        assert!(!d.caller_name && !d.caller_location && !d.transcription);
        assert_eq!(d.recording_gdpr, RecordingMode::OptIn);
        assert_eq!(d.recording_other, RecordingMode::Announce);
        assert_eq!(d.visitor_ip, IpPolicy::Truncate);
        assert!(d.visitor_details);
    }

    #[test]
    fn defaults_drop_name_location_transcript_and_truncate_the_ip() {
        let mut call = full_call();
        let dropped = CollectionSettings::default().minimise_call(&mut call);
        assert_eq!(
            dropped,
            [
                "caller_name",
                "caller_city",
                "caller_postal_code",
                "caller_country",
                "transcript",
                "visitor.ip:truncated"
            ]
        );
        assert!(call.caller.name.is_none() && call.location.is_empty());
        assert!(call.transcript.is_none());
        assert!(call.caller.number.is_some(), "the number is always kept");
        let v = call.visitor.unwrap();
        assert_eq!(v.ip.unwrap().expose(), "203.0.113.0");
        assert_eq!(v.user_agent.unwrap().expose(), "ua");
    }

    #[test]
    fn collect_all_keeps_everything() {
        let mut call = full_call();
        let before = call.clone();
        assert!(
            CollectionSettings::collect_all()
                .minimise_call(&mut call)
                .is_empty()
        );
        assert_eq!(call, before);
    }

    #[test]
    fn visitor_ip_drop_and_details_off() {
        let settings = CollectionSettings {
            visitor_ip: IpPolicy::Drop,
            visitor_details: false,
            ..CollectionSettings::collect_all()
        };
        let mut call = full_call();
        let dropped = settings.minimise_call(&mut call);
        assert_eq!(
            dropped,
            ["visitor.ip", "visitor.user_agent", "visitor.gclid"]
        );
        assert!(call.visitor.unwrap().is_empty());
    }

    #[test]
    fn truncation_of_v4_v6_and_mapped_addresses() {
        let cases = [
            ("203.0.113.77", "203.0.113.0"),
            ("198.51.100.255", "198.51.100.0"),
            ("2001:db8:abcd:12:1:2:3:4", "2001:db8:abcd::"),
            ("2001:db8::1", "2001:db8::"),
            ("::ffff:192.0.2.9", "192.0.2.0"),
        ];
        for (input, expected) in cases {
            let ip: IpAddr = input.parse().unwrap();
            assert_eq!(truncate_ip(ip).to_string(), expected, "{input}");
        }
    }

    #[test]
    fn recording_mode_by_scope_unknown_counts_as_gdpr() {
        let s = CollectionSettings::default();
        assert_eq!(s.recording_mode(Some(true)), RecordingMode::OptIn);
        assert_eq!(s.recording_mode(None), RecordingMode::OptIn);
        assert_eq!(s.recording_mode(Some(false)), RecordingMode::Announce);
        for m in ["off", "announce", "opt_in"] {
            assert_eq!(RecordingMode::parse(m).unwrap().as_str(), m);
        }
        for m in ["drop", "truncate", "full"] {
            assert_eq!(IpPolicy::parse(m).unwrap().as_str(), m);
        }
        assert!(RecordingMode::parse("maybe").is_none());
    }
}
