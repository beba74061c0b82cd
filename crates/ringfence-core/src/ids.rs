//! Identifiers. Every id is a UUID (version 7 when Ringfence makes it, so ids sort by
//! creation time and keep B-tree inserts local). Ids are never personal data. A call's or
//! session's id is its data key's: one taken from the ingest key pool was made when the key
//! was issued, up to 30 s before the record, so those ids sort by creation only roughly;
//! nothing relies on more (lists order by `started_at`, the id only breaks ties).

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                // Only the canonical hyphenated form: one spelling per id keeps lookups exact.
                if s.len() != 36 {
                    return Err(InvalidId);
                }
                Uuid::parse_str(s).map(Self).map_err(|_| InvalidId)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }
    };
}

id_type!(
    /// An agency: runs call tracking for several accounts.
    AgencyId
);
id_type!(
    /// An account: one business whose calls are tracked.
    AccountId
);
id_type!(
    /// One call.
    CallId
);
id_type!(
    /// One web visit (visitor session).
    SessionId
);
id_type!(
    /// One API token.
    TokenId
);
id_type!(
    /// A recipient: a system the account forwards calls and erasure notices to.
    RecipientId
);
id_type!(
    /// One event sent to recipients (the same for every recipient: receivers deduplicate by it).
    EventId
);
id_type!(
    /// One event's delivery to one recipient.
    DeliveryId
);
id_type!(
    /// One person who signs in to the web interface.
    UserId
);

/// A string that is not a canonical id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid id")]
pub struct InvalidId;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_their_canonical_text() {
        let id = CallId::generate();
        let text = id.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(text.parse::<CallId>(), Ok(id));
    }

    #[test]
    fn non_canonical_spellings_are_not_ids() {
        for bad in [
            "",
            "x",
            "0190c0a0c0a07000800000000000000",
            "{0190c0a0-c0a0-7000-8000-000000000000}",
            "0190C0A0C0A070008000000000000000",
        ] {
            assert_eq!(bad.parse::<CallId>(), Err(InvalidId), "{bad}");
        }
    }

    #[test]
    fn generated_ids_sort_by_creation() {
        let a = CallId::generate();
        let b = CallId::generate();
        assert!(a < b);
    }
}
