//! Consent per type of data: the events of the append-only ledger and the state derived
//! from them. The ledger never changes an event; the current state of a subject is the last
//! event per category.

use crate::datamap::DataCategory;

/// What the subject chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentStatus {
    Granted,
    Withdrawn,
}

impl ConsentStatus {
    /// Whether an event with this status and no notice version is weaker evidence: a grant
    /// must show what the subject was told; a withdrawal needs no notice to count.
    pub fn weak_without_notice(self, notice_version: Option<u32>) -> bool {
        self == ConsentStatus::Granted && notice_version.is_none()
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentStatus::Granted => "granted",
            ConsentStatus::Withdrawn => "withdrawn",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        [ConsentStatus::Granted, ConsentStatus::Withdrawn]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// How the choice was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentMethod {
    IvrKeypress,
    Verbal,
    WebForm,
    Api,
}

impl ConsentMethod {
    pub const ALL: [ConsentMethod; 4] = [
        ConsentMethod::IvrKeypress,
        ConsentMethod::Verbal,
        ConsentMethod::WebForm,
        ConsentMethod::Api,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentMethod::IvrKeypress => "ivr_keypress",
            ConsentMethod::Verbal => "verbal",
            ConsentMethod::WebForm => "web_form",
            ConsentMethod::Api => "api",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == text)
    }
}

/// Who a consent event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    /// A caller, by number.
    Caller,
    /// A web visitor, by the site's visitor id.
    Visitor,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Caller => "caller",
            SubjectKind::Visitor => "visitor",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        [SubjectKind::Caller, SubjectKind::Visitor]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
    /// The text a blind index is computed over: numbers and visitor ids never collide.
    pub fn index_input(self, value: &str) -> String {
        match self {
            SubjectKind::Caller => value.to_owned(),
            SubjectKind::Visitor => format!("visitor:{value}"),
        }
    }
}

/// A consent event sent inline with a call (an IVR posting the call and the keypress at
/// once): its subject is the call's caller (or, for a withheld number, its visitor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InlineConsent {
    pub category: DataCategory,
    pub status: ConsentStatus,
    pub method: ConsentMethod,
    pub notice_version: Option<u32>,
}

/// Categories consent can be asked for: every personal one. Call facts rest on the
/// business's legitimate interest and are not subject to consent.
pub fn consentable(category: DataCategory) -> bool {
    category.is_personal()
}

/// The current state of one subject: the last event per category, in ledger order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsentState {
    last: Vec<(DataCategory, ConsentStatus)>,
}

impl ConsentState {
    /// Folds events given in ledger order (oldest first).
    pub fn from_events(events: impl IntoIterator<Item = (DataCategory, ConsentStatus)>) -> Self {
        let mut state = Self::default();
        for (category, status) in events {
            state.apply(category, status);
        }
        state
    }

    pub fn apply(&mut self, category: DataCategory, status: ConsentStatus) {
        match self.last.iter_mut().find(|(c, _)| *c == category) {
            Some(entry) => entry.1 = status,
            None => self.last.push((category, status)),
        }
    }

    pub fn status(&self, category: DataCategory) -> Option<ConsentStatus> {
        self.last
            .iter()
            .find(|(c, _)| *c == category)
            .map(|(_, s)| *s)
    }

    pub fn granted(&self, category: DataCategory) -> bool {
        self.status(category) == Some(ConsentStatus::Granted)
    }

    pub fn withdrawn(&self, category: DataCategory) -> bool {
        self.status(category) == Some(ConsentStatus::Withdrawn)
    }

    /// Every category with its current status, in category order.
    pub fn entries(&self) -> Vec<(DataCategory, ConsentStatus)> {
        let mut out = self.last.clone();
        out.sort_by_key(|(c, _)| *c);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConsentStatus::*;
    use DataCategory::*;

    #[test]
    fn state_is_the_last_event_per_category() {
        let s = ConsentState::from_events([
            (Recording, Granted),
            (Transcript, Granted),
            (Recording, Withdrawn),
        ]);
        assert!(s.withdrawn(Recording) && !s.granted(Recording));
        assert!(s.granted(Transcript));
        assert_eq!(s.status(Visitor), None);
        let regranted = ConsentState::from_events([
            (Recording, Granted),
            (Recording, Withdrawn),
            (Recording, Granted),
        ]);
        assert!(regranted.granted(Recording));
        assert_eq!(
            s.entries(),
            vec![(Recording, Withdrawn), (Transcript, Granted)]
        );
    }

    #[test]
    fn names_round_trip_and_call_facts_are_not_consentable() {
        for m in ConsentMethod::ALL {
            assert_eq!(ConsentMethod::parse(m.as_str()), Some(m));
        }
        assert_eq!(ConsentStatus::parse("granted"), Some(Granted));
        assert_eq!(ConsentStatus::parse("maybe"), None);
        assert!(!consentable(CallFacts));
        assert!(DataCategory::PERSONAL.into_iter().all(consentable));
        assert_ne!(
            SubjectKind::Visitor.index_input("+442079460123"),
            SubjectKind::Caller.index_input("+442079460123")
        );
    }
}
