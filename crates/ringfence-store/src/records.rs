//! The rows the store traits exchange. Personal data appears here only sealed.

use ringfence_core::access::{Role, Scope};
use ringfence_core::call::{CallStatus, Direction, RedactionReason};
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, AgencyId, CallId, SessionId, TokenId};
use ringfence_crypto::BlindIndex;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgencyRecord {
    pub id: AgencyId,
    pub name: String,
    pub redaction_enabled: bool,
    pub max_retention_days: Option<u32>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    pub id: AccountId,
    pub agency_id: AgencyId,
    pub name: String,
    /// The account's settings document (JSON text owned by the HTTP layer); no personal data.
    pub settings: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: TokenId,
    /// SHA-256 of the token: the token itself is never stored.
    pub hash: [u8; 32],
    pub role: Role,
    pub scope: Scope,
    pub personal_data: bool,
    pub label: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// Outcome of an idempotent insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted<Id> {
    Created(Id),
    /// The external id was known: nothing was stored; this is the existing record.
    Existing(Id),
}

impl<Id: Copy> Inserted<Id> {
    pub fn id(&self) -> Id {
        match self {
            Inserted::Created(id) | Inserted::Existing(id) => *id,
        }
    }
    pub fn is_created(&self) -> bool {
        matches!(self, Inserted::Created(_))
    }
}

/// A stored recording's location and metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingRow {
    /// Object path in the blob store (ids only).
    pub object: String,
    pub content_type: String,
    pub bytes: u64,
}

/// A call row: call facts in the clear, each personal category sealed with the call's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRow {
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
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub gdpr_scope: Option<bool>,
    pub caller_bidx: Option<BlindIndex>,
    pub session_id: Option<SessionId>,
    pub caller_identity: Option<Vec<u8>>,
    pub caller_location: Option<Vec<u8>>,
    pub transcript: Option<Vec<u8>>,
    pub interaction: Option<Vec<u8>>,
    pub recording: Option<RecordingRow>,
    pub redacted_at: Option<Timestamp>,
    pub redaction_reason: Option<RedactionReason>,
    pub redacted_by: Option<String>,
}

/// A call to insert, with the session sent inline with it (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCallRow {
    pub call: CallRow,
    pub inline_session: Option<SessionRow>,
}

/// A visitor session row: facts in the clear, the visitor category sealed with its own key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: SessionId,
    pub account_id: AccountId,
    pub external_id: Option<String>,
    pub started_at: Timestamp,
    pub created_at: Timestamp,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub visitor: Option<Vec<u8>>,
    pub redacted_at: Option<Timestamp>,
    pub redaction_reason: Option<RedactionReason>,
}

/// A page request over one account's calls, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallQuery {
    pub account_id: AccountId,
    /// Inclusive lower bound of `started_at`.
    pub from: Option<Timestamp>,
    /// Exclusive upper bound of `started_at`.
    pub to: Option<Timestamp>,
    pub tracking_number: Option<String>,
    pub source: Option<String>,
    pub status: Option<CallStatus>,
    pub redacted: Option<bool>,
    pub caller_bidx: Option<BlindIndex>,
    /// Continue after this `(started_at, id)`.
    pub after: Option<(Timestamp, CallId)>,
    pub limit: u32,
}
