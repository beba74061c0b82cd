//! The data map: every stored field, the data category it belongs to, and where it is kept.
//!
//! This table is the single source of truth. The store checks its schema against it, the
//! HTTP layer checks its output against it, and the export, the checklist and the record of
//! processing are generated from it. A field that is not declared here fails a test.

use std::fmt;

/// The categories of SPEC.md's data map. The category decides what consent covers a field,
/// which retention applies to it and what redaction does to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataCategory {
    /// The fact that a call happened and its aggregate attribution. Kept on redaction.
    CallFacts,
    CallerIdentity,
    CallerLocation,
    Recording,
    Transcript,
    Visitor,
    InteractionContent,
}

/// What redaction does to a category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedactionEffect {
    Kept,
    Removed,
    FileDestroyed,
}

impl DataCategory {
    pub const ALL: [DataCategory; 7] = [
        DataCategory::CallFacts,
        DataCategory::CallerIdentity,
        DataCategory::CallerLocation,
        DataCategory::Recording,
        DataCategory::Transcript,
        DataCategory::Visitor,
        DataCategory::InteractionContent,
    ];

    /// The categories that hold personal data.
    pub const PERSONAL: [DataCategory; 6] = [
        DataCategory::CallerIdentity,
        DataCategory::CallerLocation,
        DataCategory::Recording,
        DataCategory::Transcript,
        DataCategory::Visitor,
        DataCategory::InteractionContent,
    ];

    /// The stable name used in the API, settings and exports.
    pub fn as_str(self) -> &'static str {
        match self {
            DataCategory::CallFacts => "call_facts",
            DataCategory::CallerIdentity => "caller_identity",
            DataCategory::CallerLocation => "caller_location",
            DataCategory::Recording => "recording",
            DataCategory::Transcript => "transcript",
            DataCategory::Visitor => "visitor",
            DataCategory::InteractionContent => "interaction_content",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    pub fn is_personal(self) -> bool {
        self != DataCategory::CallFacts
    }

    pub fn on_redaction(self) -> RedactionEffect {
        match self {
            DataCategory::CallFacts => RedactionEffect::Kept,
            DataCategory::Recording => RedactionEffect::FileDestroyed,
            _ => RedactionEffect::Removed,
        }
    }
}

impl fmt::Display for DataCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The record a field belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Call,
    VisitorSession,
}

/// Where a field is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// A plain column of the entity's table. Only call facts and non-reversible
    /// derivations (blind indexes, sizes) may be plain.
    Column(&'static str),
    /// Inside the sealed (encrypted) blob kept in this column: one blob per category.
    Sealed(&'static str),
    /// An encrypted file in the blob store, located by this column.
    File(&'static str),
}

impl Storage {
    pub fn column(self) -> &'static str {
        match self {
            Storage::Column(c) | Storage::Sealed(c) | Storage::File(c) => c,
        }
    }
}

/// One declared field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    pub entity: Entity,
    /// The field's path in the API's JSON output ("caller.number"), or a name of its own for
    /// fields that are stored but never output as such.
    pub name: &'static str,
    pub category: DataCategory,
    pub storage: Storage,
    pub description: &'static str,
}

const fn field(
    entity: Entity,
    name: &'static str,
    category: DataCategory,
    storage: Storage,
    description: &'static str,
) -> FieldSpec {
    FieldSpec {
        entity,
        name,
        category,
        storage,
        description,
    }
}

use DataCategory as C;
use Entity::{Call, VisitorSession as Session};
use Storage::{Column, File, Sealed};

/// Every field Ringfence stores about calls and visitor sessions.
pub const DATA_MAP: &[FieldSpec] = &[
    field(
        Call,
        "id",
        C::CallFacts,
        Column("id"),
        "Ringfence's id of the call",
    ),
    field(
        Call,
        "account_id",
        C::CallFacts,
        Column("account_id"),
        "the account the call belongs to",
    ),
    field(
        Call,
        "external_id",
        C::CallFacts,
        Column("external_id"),
        "the sender's id of the call (idempotency key)",
    ),
    field(
        Call,
        "started_at",
        C::CallFacts,
        Column("started_at"),
        "when the call started",
    ),
    field(
        Call,
        "duration_s",
        C::CallFacts,
        Column("duration_s"),
        "call length in seconds",
    ),
    field(
        Call,
        "direction",
        C::CallFacts,
        Column("direction"),
        "inbound or outbound",
    ),
    field(
        Call,
        "status",
        C::CallFacts,
        Column("status"),
        "the call's final or current status",
    ),
    field(
        Call,
        "tracking_number",
        C::CallFacts,
        Column("tracking_number"),
        "the business's tracking number that was dialled",
    ),
    field(
        Call,
        "source",
        C::CallFacts,
        Column("source"),
        "tracking source (e.g. google_ads)",
    ),
    field(
        Call,
        "campaign",
        C::CallFacts,
        Column("campaign"),
        "tracking campaign",
    ),
    field(
        Call,
        "utm.source",
        C::CallFacts,
        Column("utm_source"),
        "utm_source of the attributed visit",
    ),
    field(
        Call,
        "utm.medium",
        C::CallFacts,
        Column("utm_medium"),
        "utm_medium of the attributed visit",
    ),
    field(
        Call,
        "utm.campaign",
        C::CallFacts,
        Column("utm_campaign"),
        "utm_campaign of the attributed visit",
    ),
    field(
        Call,
        "created_at",
        C::CallFacts,
        Column("created_at"),
        "when Ringfence stored the call",
    ),
    field(
        Call,
        "redaction.at",
        C::CallFacts,
        Column("redacted_at"),
        "when the call was redacted",
    ),
    field(
        Call,
        "redaction.reason",
        C::CallFacts,
        Column("redaction_reason"),
        "why the call was redacted",
    ),
    field(
        Call,
        "redaction.by",
        C::CallFacts,
        Column("redacted_by"),
        "who or what redacted it (token or job id, never a person's data)",
    ),
    field(
        Call,
        "legal_hold.at",
        C::CallFacts,
        Column("legal_hold_at"),
        "when the call was put on legal hold",
    ),
    field(
        Call,
        "legal_hold.reason",
        C::CallFacts,
        Column("legal_hold_reason"),
        "why it is held (a reference, no personal data)",
    ),
    field(
        Call,
        "legal_hold.by",
        C::CallFacts,
        Column("legal_hold_by"),
        "who put it on hold",
    ),
    field(
        Call,
        "sweep.retired",
        C::CallFacts,
        Column("swept"),
        "bookkeeping: automatic redaction has nothing left to do with the call (not shown)",
    ),
    field(
        Call,
        "gdpr_scope",
        C::CallerIdentity,
        Column("gdpr_scope"),
        "whether the caller is in GDPR scope, derived from the number's region",
    ),
    field(
        Call,
        "caller.number",
        C::CallerIdentity,
        Sealed("caller_identity"),
        "the caller's number in E.164",
    ),
    field(
        Call,
        "caller.name",
        C::CallerIdentity,
        Sealed("caller_identity"),
        "caller ID name (CNAM)",
    ),
    field(
        Call,
        "caller.forwarded_from",
        C::CallerIdentity,
        Sealed("caller_identity"),
        "the number the call was forwarded from",
    ),
    field(
        Call,
        "caller_blind_index",
        C::CallerIdentity,
        Column("caller_bidx"),
        "keyed HMAC of the caller's number, to find a caller's calls",
    ),
    field(
        Call,
        "caller.city",
        C::CallerLocation,
        Sealed("caller_location"),
        "the caller's city",
    ),
    field(
        Call,
        "caller.region",
        C::CallerLocation,
        Sealed("caller_location"),
        "the caller's region or state",
    ),
    field(
        Call,
        "caller.postal_code",
        C::CallerLocation,
        Sealed("caller_location"),
        "the caller's postal code",
    ),
    field(
        Call,
        "caller.country",
        C::CallerLocation,
        Sealed("caller_location"),
        "the caller's country",
    ),
    field(
        Call,
        "recording.audio",
        C::Recording,
        File("recording_object"),
        "the encrypted audio file",
    ),
    field(
        Call,
        "recording.content_type",
        C::Recording,
        Column("recording_content_type"),
        "the audio's media type",
    ),
    field(
        Call,
        "recording.bytes",
        C::Recording,
        Column("recording_bytes"),
        "the audio's size",
    ),
    field(
        Call,
        "transcript",
        C::Transcript,
        Sealed("transcript"),
        "the call's transcript",
    ),
    field(
        Call,
        "notes",
        C::InteractionContent,
        Sealed("interaction"),
        "agent notes",
    ),
    field(
        Call,
        "tags",
        C::InteractionContent,
        Sealed("interaction"),
        "tags set on the call",
    ),
    field(
        Call,
        "visitor.session_id",
        C::Visitor,
        Column("session_id"),
        "the visitor session linked to the call",
    ),
    field(
        Session,
        "id",
        C::CallFacts,
        Column("id"),
        "Ringfence's id of the session",
    ),
    field(
        Session,
        "account_id",
        C::CallFacts,
        Column("account_id"),
        "the account the session belongs to",
    ),
    field(
        Session,
        "external_id",
        C::CallFacts,
        Column("external_id"),
        "the sender's id of the session (idempotency key)",
    ),
    field(
        Session,
        "started_at",
        C::CallFacts,
        Column("started_at"),
        "when the visit started",
    ),
    field(
        Session,
        "created_at",
        C::CallFacts,
        Column("created_at"),
        "when Ringfence stored the session",
    ),
    field(
        Session,
        "utm.source",
        C::CallFacts,
        Column("utm_source"),
        "utm_source of the visit",
    ),
    field(
        Session,
        "utm.medium",
        C::CallFacts,
        Column("utm_medium"),
        "utm_medium of the visit",
    ),
    field(
        Session,
        "utm.campaign",
        C::CallFacts,
        Column("utm_campaign"),
        "utm_campaign of the visit",
    ),
    field(
        Session,
        "redaction.at",
        C::CallFacts,
        Column("redacted_at"),
        "when the session was redacted",
    ),
    field(
        Session,
        "redaction.reason",
        C::CallFacts,
        Column("redaction_reason"),
        "why the session was redacted",
    ),
    field(
        Session,
        "visitor.ip",
        C::Visitor,
        Sealed("visitor"),
        "the visitor's IP address",
    ),
    field(
        Session,
        "visitor.user_agent",
        C::Visitor,
        Sealed("visitor"),
        "the browser's user agent",
    ),
    field(
        Session,
        "visitor.referrer",
        C::Visitor,
        Sealed("visitor"),
        "the referring page",
    ),
    field(
        Session,
        "visitor.landing_url",
        C::Visitor,
        Sealed("visitor"),
        "the first page of the visit",
    ),
    field(
        Session,
        "visitor.gclid",
        C::Visitor,
        Sealed("visitor"),
        "Google click id",
    ),
    field(
        Session,
        "visitor.fbclid",
        C::Visitor,
        Sealed("visitor"),
        "Meta click id",
    ),
    field(
        Session,
        "visitor.msclkid",
        C::Visitor,
        Sealed("visitor"),
        "Microsoft click id",
    ),
    field(
        Session,
        "visitor.visitor_id",
        C::Visitor,
        Sealed("visitor"),
        "the site's visitor id or cookie",
    ),
    field(
        Session,
        "visitor.country",
        C::Visitor,
        Sealed("visitor"),
        "the country of the IP address, looked up before the address is truncated or dropped",
    ),
    field(
        Session,
        "gdpr_scope",
        C::Visitor,
        Column("gdpr_scope"),
        "whether the IP's country is in GDPR scope (counts toward linked calls' scope)",
    ),
    field(
        Session,
        "visitor_bidx",
        C::Visitor,
        Column("visitor_bidx"),
        "blind index of the visitor id, to find a visitor's sessions for consent withdrawal",
    ),
];

/// The declared field of `entity` named `name`.
pub fn field_spec(entity: Entity, name: &str) -> Option<&'static FieldSpec> {
    DATA_MAP
        .iter()
        .find(|f| f.entity == entity && f.name == name)
}

/// The columns of `entity`'s table that hold fields of `category`, each once.
pub fn columns_of(entity: Entity, category: DataCategory) -> Vec<&'static str> {
    let mut columns: Vec<&'static str> = Vec::new();
    for f in DATA_MAP
        .iter()
        .filter(|f| f.entity == entity && f.category == category)
    {
        if !columns.contains(&f.storage.column()) {
            columns.push(f.storage.column());
        }
    }
    columns
}

/// The columns of `entity`'s table that hold fields of any of `categories`, each once: what
/// a removal of those categories clears.
pub fn columns_of_all(entity: Entity, categories: &[DataCategory]) -> Vec<&'static str> {
    let mut columns: Vec<&'static str> = Vec::new();
    for category in categories {
        for column in columns_of(entity, *category) {
            if !columns.contains(&column) {
                columns.push(column);
            }
        }
    }
    columns
}

/// The columns of `entity`'s table that hold personal data: what a whole redaction clears.
pub fn personal_columns(entity: Entity) -> Vec<&'static str> {
    columns_of_all(entity, &DataCategory::PERSONAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_declared_once() {
        for (i, a) in DATA_MAP.iter().enumerate() {
            for b in &DATA_MAP[i + 1..] {
                assert!(
                    !(a.entity == b.entity && a.name == b.name),
                    "{} declared twice",
                    a.name
                );
            }
        }
    }

    #[test]
    fn a_sealed_column_holds_exactly_one_category() {
        for a in DATA_MAP {
            for b in DATA_MAP {
                if a.entity == b.entity && a.storage.column() == b.storage.column() {
                    assert_eq!(
                        a.category,
                        b.category,
                        "column {} mixes categories",
                        a.storage.column()
                    );
                }
            }
        }
    }

    #[test]
    fn only_call_facts_and_derived_values_are_stored_in_the_clear() {
        let allowed_plain_personal = [
            "caller_bidx",
            "visitor_bidx",
            "gdpr_scope",
            "recording_content_type",
            "recording_bytes",
            "session_id",
        ];
        for f in DATA_MAP {
            if f.category.is_personal()
                && let Storage::Column(c) = f.storage
            {
                assert!(
                    allowed_plain_personal.contains(&c),
                    "personal field {} stored in clear column {c}",
                    f.name
                );
            }
        }
    }

    #[test]
    fn category_names_round_trip() {
        for c in DataCategory::ALL {
            assert_eq!(DataCategory::parse(c.as_str()), Some(c));
        }
        assert_eq!(DataCategory::parse("everything"), None);
    }

    #[test]
    fn redaction_keeps_call_facts_and_removes_the_rest() {
        assert_eq!(
            DataCategory::CallFacts.on_redaction(),
            RedactionEffect::Kept
        );
        assert_eq!(
            DataCategory::Recording.on_redaction(),
            RedactionEffect::FileDestroyed
        );
        for c in DataCategory::PERSONAL {
            assert_ne!(c.on_redaction(), RedactionEffect::Kept, "{c}");
        }
    }
}
