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
    /// What the account collects (stored as JSON in the `settings` column).
    pub collection: ringfence_core::collection::CollectionSettings,
    /// The telephony provider's auth token (signs webhooks), sealed with the account's
    /// secrets key.
    pub twilio_auth_token: Option<Vec<u8>>,
    /// After a recording is downloaded, ask the provider to delete its copy.
    pub twilio_delete_recordings: bool,
    /// The account's own Twilio Account SID (`AC` + 32 hex digits; not a secret): recordings
    /// are fetched with the auth token only for callbacks naming it.
    pub twilio_account_sid: Option<String>,
    /// Automatic redaction.
    pub retention: ringfence_core::retention::RetentionPolicy,
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
    /// When the token last authenticated a request (to the minute).
    pub last_used_at: Option<Timestamp>,
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

/// What inserting a batch did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InsertReport {
    pub outcomes: Vec<Inserted<CallId>>,
    /// Calls stored redacted because their caller is on the forget list.
    pub forgotten: Vec<CallId>,
    /// Per call of the batch (same order): the categories left out because the subject
    /// withdrew consent to them.
    pub withheld: Vec<Vec<ringfence_core::DataCategory>>,
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
    pub legal_hold: Option<LegalHold>,
}

pub use ringfence_core::call::LegalHold;

/// A call to insert, with the session sent inline with it (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCallRow {
    pub call: CallRow,
    pub inline_session: Option<SessionRow>,
    /// Consent events sent with the call, recorded in the same transaction (their `call_id`
    /// is the call's); they count for the checks below.
    pub consents: Vec<ConsentRow>,
    /// The transcript is stored only with a granted `transcript` consent (the call's
    /// recording mode is opt-in); otherwise the batch is refused.
    pub transcript_needs_consent: bool,
}

/// A notice shown to subjects before they choose: versioned per account and category; a
/// version is immutable once a consent event refers to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeRow {
    pub account_id: AccountId,
    pub category: ringfence_core::DataCategory,
    pub version: u32,
    pub text: String,
    pub created_at: Timestamp,
    /// When a consent event first referred to it.
    pub used_at: Option<Timestamp>,
}

/// One event of the consent ledger. The subject is sealed with the subject's own key and
/// found through its blind index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRow {
    /// Ledger order (assigned by the store; 0 before insert).
    pub seq: i64,
    pub id: String,
    pub account_id: AccountId,
    pub subject_kind: ringfence_core::consent::SubjectKind,
    pub subject_bidx: BlindIndex,
    /// The subject (number or visitor id), sealed.
    pub subject: Vec<u8>,
    pub category: ringfence_core::DataCategory,
    pub status: ringfence_core::consent::ConsentStatus,
    pub notice_version: Option<u32>,
    pub method: ringfence_core::consent::ConsentMethod,
    pub at: Timestamp,
    pub call_id: Option<CallId>,
    /// A token id or `cli`.
    pub recorded_by: String,
}

/// What the store checks before attaching a recording, in the same transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingConsent {
    /// Attach unless the caller withdrew recording consent.
    UnlessWithdrawn,
    /// Attach only with a granted recording consent (of the caller or of the call).
    Granted,
}

/// A later status of a stored call (telephony callbacks). Categories given replace the
/// stored ones (sealed with the call's own key); `None` keeps what is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallUpdate {
    pub id: CallId,
    pub started_at: Timestamp,
    pub duration_s: Option<u32>,
    pub direction: Option<Direction>,
    pub status: Option<CallStatus>,
    pub caller_identity: Option<Vec<u8>>,
    pub caller_location: Option<Vec<u8>>,
    /// The sealed categories the update was merged from (as read): the update applies only
    /// while the row still holds them, so two deliveries merging at once cannot erase
    /// each other's fields.
    pub based_on: (Option<Vec<u8>>, Option<Vec<u8>>),
}

/// What a later status did to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallUpdated {
    Applied,
    /// Nothing to do (redacted, or an earlier status arriving late).
    Unchanged,
    /// The call's caller categories changed since they were read: merge again.
    Stale,
}

/// A recording to fetch from the telephony provider, durably queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadJob {
    pub id: String,
    pub account_id: AccountId,
    /// The provider's call id (the call's `external_id`).
    pub call_sid: String,
    pub recording_sid: String,
    /// Where the provider serves the audio (ids only, no personal data).
    pub url: String,
    /// The provider account to authenticate as (with the account's auth token).
    pub provider_account: String,
    /// `pending`, `done`, `skipped` or `failed`.
    pub state: String,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    /// Why it ended or was retried (no personal data).
    pub outcome: Option<String>,
    pub created_at: Timestamp,
}

/// What recording a consent event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRecorded {
    pub seq: i64,
    pub audit_seq: i64,
    /// For a withdrawal: the removal of the category's data, begun in the same transaction.
    pub job: Option<RedactionJob>,
    /// Calls left as they are because they are on legal hold.
    pub skipped_legal_hold: u64,
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
    /// Whether the visit's IP country is in GDPR scope.
    pub gdpr_scope: Option<bool>,
    /// Blind index of the visitor id (consent subject `visitor_id`).
    pub visitor_bidx: Option<BlindIndex>,
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

/// A privacy-relevant action, as the audit journal records it. Ids, roles, counts and
/// reasons only: never a number, a name or any other personal value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditEvent {
    /// A token id, `cli`, or a job's name.
    pub actor: String,
    /// What happened, e.g. `call.redacted`, `caller.redacted`, `agency.settings_changed`.
    pub action: String,
    pub agency_id: Option<AgencyId>,
    pub account_id: Option<AccountId>,
    /// Ids the action was about (comma-separated), never personal data.
    pub subject: Option<String>,
    pub count: Option<u64>,
    pub reason: Option<String>,
    /// Further non-personal facts, as JSON text.
    pub details: String,
}

/// A journal entry: the event, its place in the chain and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: Timestamp,
    pub event: AuditEvent,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

impl AuditEntry {
    /// The hash this entry should have, given its predecessor's.
    pub fn expected_hash(&self, prev: &[u8; 32]) -> [u8; 32] {
        let e = &self.event;
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let agency = e.agency_id.map(|a| a.to_string()).unwrap_or_default();
        let account = e.account_id.map(|a| a.to_string()).unwrap_or_default();
        let count = e.count.map(|c| c.to_string()).unwrap_or_default();
        ringfence_crypto::audit::chain_hash(
            prev,
            self.seq,
            &[
                self.at.millis().to_string().as_bytes(),
                e.actor.as_bytes(),
                e.action.as_bytes(),
                agency.as_bytes(),
                account.as_bytes(),
                opt(&e.subject).as_bytes(),
                count.as_bytes(),
                opt(&e.reason).as_bytes(),
                e.details.as_bytes(),
            ],
        )
    }
}

/// Which journal entries a reader may see, and where to continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only entries of this agency (its own and its accounts').
    pub agency_id: Option<AgencyId>,
    /// Only entries of this account.
    pub account_id: Option<AccountId>,
    pub after_seq: Option<i64>,
    /// Newest first, below this sequence number (`after_seq` is then ignored); `None`:
    /// oldest first.
    pub before_seq: Option<i64>,
    pub limit: u32,
}

/// A redaction under way: written before any key is destroyed, removed when every step is
/// done, so that a crash at any point is finished by `CallLog::resume_redactions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedactionJob {
    pub id: String,
    pub created_at: Timestamp,
    pub reason: RedactionReason,
    pub call_ids: Vec<CallId>,
    pub session_ids: Vec<SessionId>,
    /// Recording objects to delete.
    pub objects: Vec<String>,
    /// Blind indexes to add to accounts' forget lists.
    pub forget: Vec<(AccountId, ringfence_crypto::BlindIndex)>,
    /// Consent subjects whose ledger entries (and subject keys) are removed with the job.
    pub subjects: Vec<(AccountId, ringfence_crypto::BlindIndex)>,
    /// The journal entry written when the rows are cleared.
    pub audit: AuditEvent,
    /// Empty: redact the calls whole. Otherwise remove only these categories (the calls'
    /// keys stay; they are not marked redacted).
    pub categories: Vec<ringfence_core::DataCategory>,
}

/// What clearing the rows did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedactionApplied {
    pub calls: u64,
    pub sessions: u64,
    pub at: Timestamp,
    pub audit_seq: i64,
    /// Every recording object the cleared calls pointed at.
    pub objects: Vec<String>,
    /// Consent events removed with their subjects.
    pub consents: u64,
}

/// Calls automatic redaction may take: not redacted, not held, started before `before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueQuery {
    pub account_id: AccountId,
    pub before: Timestamp,
    /// Only calls in GDPR scope or of unknown scope.
    pub gdpr_only: bool,
    /// Only calls that still hold this category (`None`: whole calls).
    pub category: Option<ringfence_core::DataCategory>,
    /// Only calls that started at or after this (calls older are due whole).
    pub not_before: Option<Timestamp>,
    pub limit: u32,
}

/// A recipient of the account's calls and erasure notices.
#[derive(Clone, PartialEq, Eq)]
pub struct RecipientRow {
    pub id: ringfence_core::RecipientId,
    pub account_id: AccountId,
    pub name: String,
    /// `https://…`, or `http://` to a loopback address.
    pub url: String,
    /// The signing secret, sealed with the account's secrets key.
    pub secret: Vec<u8>,
    pub events: Vec<ringfence_core::recipients::EventKind>,
    /// Whether `call.created` carries the caller's personal data (else it is masked).
    pub personal_data: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Removed: no new events; its queued deliveries were cancelled.
    pub disabled_at: Option<Timestamp>,
}

impl std::fmt::Debug for RecipientRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a receiver's routing token; ids are enough to debug.
        f.debug_struct("RecipientRow")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("events", &self.events)
            .field("disabled_at", &self.disabled_at)
            .finish_non_exhaustive()
    }
}

impl RecipientRow {
    pub fn wants(&self, event: ringfence_core::recipients::EventKind) -> bool {
        self.disabled_at.is_none() && self.events.contains(&event)
    }
}

/// One event's delivery to one recipient: the outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    pub id: ringfence_core::DeliveryId,
    pub event_id: ringfence_core::EventId,
    pub event: ringfence_core::recipients::EventKind,
    pub recipient_id: ringfence_core::RecipientId,
    pub account_id: AccountId,
    /// The call a `call.created` is about.
    pub call_id: Option<CallId>,
    /// The event's `data` as JSON (ids only); `None` for `call.created`, rendered when sent.
    pub payload: Option<String>,
    pub created_at: Timestamp,
    pub state: ringfence_core::recipients::DeliveryState,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub last_attempt_at: Option<Timestamp>,
    /// The HTTP status of the last answer, if there was one.
    pub last_status: Option<u16>,
    /// Why the last attempt failed, as a short code (never a receiver's answer body).
    pub last_error: Option<String>,
    /// When it was delivered, dead-lettered or cancelled.
    pub done_at: Option<Timestamp>,
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub id: ringfence_core::DeliveryId,
    pub at: Timestamp,
    /// `Delivered`, `Queued` (retry at `next_attempt_at`), `Dead` or `Cancelled`.
    pub state: ringfence_core::recipients::DeliveryState,
    pub next_attempt_at: Timestamp,
    pub status: Option<u16>,
    pub error: Option<String>,
    /// Journaled with it (a dead-lettered erasure notice, say).
    pub audit: Option<AuditEvent>,
}

/// A page of one recipient's deliveries, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryQuery {
    pub account_id: AccountId,
    pub recipient_id: ringfence_core::RecipientId,
    pub state: Option<ringfence_core::recipients::DeliveryState>,
    pub event: Option<ringfence_core::recipients::EventKind>,
    /// Deliveries older than this one (cursor).
    pub before: Option<ringfence_core::DeliveryId>,
    pub limit: u32,
}

/// Counts per state of an account's deliveries, for the checklist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliverySummary {
    pub recipients: u64,
    /// Recipients that take erasure notices.
    pub erasure_recipients: u64,
    pub queued: u64,
    pub dead: u64,
    /// Dead-lettered erasure notices: recipients that were never told of an erasure.
    pub dead_erasures: u64,
    /// The oldest queued erasure notice's creation time.
    pub oldest_queued_erasure: Option<Timestamp>,
}

/// Tells a store when a redaction's data keys are destroyed. A store may prepare the
/// redaction's changes before then, but commits them only once the keys are gone for good
/// (the vault has committed their deletion): so on disk a call's ciphertext is never cleared
/// while its key exists, and the work of both overlaps. If the vault fails, the sender is
/// dropped (the request was abandoned), or no answer comes within [`KEYS_WAIT`], the store
/// undoes its changes and fails; the recorded job finishes the redaction later.
#[derive(Debug)]
pub struct KeysDestroyed(std::sync::mpsc::Receiver<bool>);

/// The vault's side of [`KeysDestroyed`].
#[derive(Debug)]
pub struct KeysDestroyedSignal(std::sync::mpsc::Sender<bool>);

/// The longest a store waits for the vault with a redaction's changes prepared (a writer
/// waiting holds up the store's other writes).
pub const KEYS_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

impl KeysDestroyed {
    pub fn channel() -> (KeysDestroyedSignal, KeysDestroyed) {
        let (tx, rx) = std::sync::mpsc::channel();
        (KeysDestroyedSignal(tx), KeysDestroyed(rx))
    }

    /// Blocks until the vault has answered, at most [`KEYS_WAIT`]; whether the keys are
    /// destroyed. For a store's own writer thread, never for an async task.
    pub fn wait_blocking(self) -> bool {
        self.0.recv_timeout(KEYS_WAIT).unwrap_or(false)
    }
}

impl KeysDestroyedSignal {
    /// `destroyed`: whether the vault committed the deletion of every key.
    pub fn send(self, destroyed: bool) {
        // The store may have given up already (its transaction failed): nothing to tell.
        let _ = self.0.send(destroyed);
    }
}
