//! Ringfence's storage above the database: the [`Store`] trait that each backend crate
//! implements (`ringfence-store-sqlite`, `ringfence-store-postgres`), the row types it takes
//! and returns, the blob store for recordings, and [`CallLog`], the encrypted call log that
//! seals every personal field before it reaches a store and opens it only for an authorised
//! read.
//!
//! Nothing personal is ever handed to a store in the clear: the store traits take and return
//! sealed blobs, blind indexes and call facts only. Store errors never carry row contents.
//! This crate knows no SQL and no database driver.

pub mod admission;
pub mod blobs;
pub mod calllog;
pub mod due;
pub mod effects;
pub mod journal;
pub mod keypool;
pub mod payload;
pub mod private;
pub mod recipients;
pub mod records;
pub mod users;

pub use blobs::{BlobError, Blobs};
pub use calllog::{
    CallLog, CallPage, Consent, ConsentOutcome, ConsentSubject, IngestOutcome, IngestPolicy,
    Ingested, LogError, NewConsent, RecordingRead, RedactionReceipt,
};
pub use records::*;
pub use users::{LoginFailure, UserChange, UserRecord, WebSessionRecord};

use async_trait::async_trait;
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, AgencyId, CallId, DeliveryId, RecipientId, SessionId};

/// A storage failure. User-caused ones carry what the user must fix; `Backend` is internal
/// and its text is logged, never sent to a client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    #[error("calls[{index}].session_id: no such session in this account")]
    SessionNotFound { index: usize },
    #[error("calls[{index}].external_id: the same external_id appears twice in the batch")]
    DuplicateInBatch { index: usize },
    #[error("a granted {category} consent is required")]
    ConsentRequired {
        /// The call of the batch (0 for a single record).
        index: usize,
        category: ringfence_core::DataCategory,
    },
    #[error("notice_version: no such notice version for this category")]
    UnknownNoticeVersion { index: Option<usize> },
    #[error("this notice version is in use by consent records and cannot change")]
    NoticeInUse,
    #[error("storage backend: {0}")]
    Backend(String),
}

/// The call log's records: tenants, tokens, calls and sessions (sealed), settings.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn create_agency(&self, agency: AgencyRecord) -> Result<(), StoreError>;
    async fn agency(&self, id: AgencyId) -> Result<Option<AgencyRecord>, StoreError>;
    async fn update_agency(&self, agency: AgencyRecord) -> Result<(), StoreError>;
    async fn list_agencies(&self) -> Result<Vec<AgencyRecord>, StoreError>;

    async fn create_account(&self, account: AccountRecord) -> Result<(), StoreError>;
    async fn account(&self, id: AccountId) -> Result<Option<AccountRecord>, StoreError>;
    async fn update_account(&self, account: AccountRecord) -> Result<(), StoreError>;
    async fn list_accounts(
        &self,
        agency: Option<AgencyId>,
    ) -> Result<Vec<AccountRecord>, StoreError>;

    async fn create_token(&self, token: TokenRecord) -> Result<(), StoreError>;
    async fn token_by_hash(&self, hash: [u8; 32]) -> Result<Option<TokenRecord>, StoreError>;
    async fn token_count(&self) -> Result<u64, StoreError>;
    async fn token(&self, id: ringfence_core::TokenId) -> Result<Option<TokenRecord>, StoreError>;
    /// Revokes a live token and journals it in the same transaction; false (and nothing
    /// journaled) when it was revoked already.
    async fn revoke_token(
        &self,
        id: ringfence_core::TokenId,
        at: Timestamp,
        audit: AuditEvent,
    ) -> Result<bool, StoreError>;
    /// Records that the token authenticated a request at `at` (the time only moves forward).
    async fn touch_token(
        &self,
        id: ringfence_core::TokenId,
        at: Timestamp,
    ) -> Result<(), StoreError>;

    /// Inserts a batch of calls and the sessions sent inline with them, atomically: either
    /// all are stored or none. A call whose `(account, external_id)` exists is not stored
    /// again; its outcome names the existing call, and its inline session is skipped.
    async fn insert_calls(&self, calls: Vec<NewCallRow>) -> Result<InsertReport, StoreError>;
    /// Inserts a session, idempotent on `(account, external_id)`. Leaves the visitor data out
    /// when the visitor withdrew consent to it (then answers `true`).
    async fn insert_session(
        &self,
        session: SessionRow,
    ) -> Result<(Inserted<SessionId>, bool), StoreError>;

    async fn call(&self, id: CallId) -> Result<Option<CallRow>, StoreError>;
    /// Calls of one account, newest first, after the cursor.
    async fn calls(&self, query: CallQuery) -> Result<Vec<CallRow>, StoreError>;
    /// How many calls match the query's filters (its cursor and limit are ignored).
    async fn count_calls(&self, query: CallQuery) -> Result<u64, StoreError>;
    async fn sessions(&self, ids: Vec<SessionId>) -> Result<Vec<SessionRow>, StoreError>;

    /// Sets (or clears) a call's recording; returns the recording it replaced. With
    /// `consent`, the caller's consent is checked in the same transaction
    /// (`ConsentRequired` when it does not allow the recording).
    async fn set_recording(
        &self,
        call: CallId,
        recording: Option<RecordingRow>,
        consent: Option<RecordingConsent>,
    ) -> Result<Option<RecordingRow>, StoreError>;

    /// A call of the account by its sender's id.
    async fn call_by_external(
        &self,
        account: AccountId,
        external_id: String,
    ) -> Result<Option<CallRow>, StoreError>;
    /// Applies a later status of a call. Statuses only move forward (an earlier status
    /// arriving late changes nothing); categories the caller withdrew consent to are not
    /// written; the caller categories only while the row holds `update.based_on`.
    async fn update_call(&self, update: CallUpdate) -> Result<CallUpdated, StoreError>;

    /// Which of these recording objects a call points at (live or not yet cleared).
    async fn referenced_recordings(&self, objects: Vec<String>) -> Result<Vec<String>, StoreError>;

    /// Queues a recording download; idempotent per `(account, recording_sid)` (answers
    /// whether it was new).
    async fn enqueue_download(&self, job: DownloadJob) -> Result<bool, StoreError>;
    /// Pending downloads due at `now`, oldest first.
    async fn due_downloads(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<DownloadJob>, StoreError>;
    /// Every download of an account (operators, tests).
    async fn downloads(&self, account: AccountId) -> Result<Vec<DownloadJob>, StoreError>;
    /// Records a download's new state, and journals `audit` in the same transaction.
    async fn update_download(
        &self,
        job: DownloadJob,
        audit: Option<AuditEvent>,
    ) -> Result<(), StoreError>;

    /// Adds a notice version (the next number for the account and category); journaled.
    async fn create_notice(
        &self,
        account: AccountId,
        category: ringfence_core::DataCategory,
        text: String,
        audit: AuditEvent,
    ) -> Result<NoticeRow, StoreError>;
    /// Changes the text of a notice version no consent refers to yet (`NoticeInUse` otherwise).
    async fn update_notice(
        &self,
        account: AccountId,
        category: ringfence_core::DataCategory,
        version: u32,
        text: String,
        audit: AuditEvent,
    ) -> Result<NoticeRow, StoreError>;
    async fn notices(&self, account: AccountId) -> Result<Vec<NoticeRow>, StoreError>;
    /// Appends a consent event and journals it; a withdrawal also begins, in the same
    /// transaction, the removal of the category's data of the subject (`job` is the template).
    async fn record_consent(
        &self,
        row: ConsentRow,
        job: Option<RedactionJob>,
    ) -> Result<ConsentRecorded, StoreError>;
    /// The current consent state of these subjects together with the events of `call`.
    async fn consent_state(
        &self,
        account: AccountId,
        subjects: Vec<ringfence_crypto::BlindIndex>,
        call: Option<CallId>,
    ) -> Result<ringfence_core::consent::ConsentState, StoreError>;
    /// Consent events of an account in ledger order, optionally of one subject.
    async fn consents(
        &self,
        account: AccountId,
        subject: Option<ringfence_crypto::BlindIndex>,
        after_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ConsentRow>, StoreError>;

    /// Calls due for automatic redaction (oldest first), through the `calls_live` index.
    async fn due_calls(&self, query: DueQuery) -> Result<Vec<CallRow>, StoreError>;
    /// How many calls `due_calls` would return without a limit.
    /// Takes calls redacted otherwise than by automatic redaction, started before `before`,
    /// out of the sweep's index (a redaction by hand leaves them there, to stay cheap); the
    /// number retired. Changes nothing anyone can read.
    async fn retire_redacted(
        &self,
        account: AccountId,
        before: Timestamp,
    ) -> Result<u64, StoreError>;
    async fn count_due(&self, query: DueQuery) -> Result<u64, StoreError>;
    /// Puts a call on legal hold (`Some`) or releases it (`None`); journals it. Returns the
    /// journal entry's sequence number.
    async fn set_legal_hold(
        &self,
        call: CallId,
        hold: Option<LegalHold>,
        audit: AuditEvent,
    ) -> Result<i64, StoreError>;

    /// Which of these calls exist and are not redacted.
    async fn live_calls(&self, ids: Vec<CallId>) -> Result<Vec<CallId>, StoreError>;
    /// Which of these sessions exist and are not redacted.
    async fn live_sessions(&self, ids: Vec<SessionId>) -> Result<Vec<SessionId>, StoreError>;
    async fn calls_by_ids(&self, ids: Vec<CallId>) -> Result<Vec<CallRow>, StoreError>;
    /// Every call of the account whose caller has this blind index, redacted or not.
    async fn calls_by_caller(
        &self,
        account: AccountId,
        bidx: ringfence_crypto::BlindIndex,
    ) -> Result<Vec<CallRow>, StoreError>;

    /// Records a redaction before any of its steps (durably).
    async fn begin_redaction(&self, job: RedactionJob) -> Result<(), StoreError>;
    /// Records the redaction of every live call of these callers (`job` is the template;
    /// its calls, sessions and objects are chosen here) and adds `job.forget` to the
    /// forget lists, in one transaction with the choice of calls, so that no call of a
    /// forgotten caller is neither chosen nor redacted on arrival. Returns the job and the
    /// number of calls left out for a legal hold.
    async fn begin_caller_redaction(
        &self,
        job: RedactionJob,
        callers: Vec<(AccountId, ringfence_crypto::BlindIndex)>,
    ) -> Result<(RedactionJob, u64), StoreError>;
    /// Clears the personal columns of the job's calls and sessions that are not redacted yet,
    /// marks them redacted, adds the forget-list entries and journals the event: one
    /// transaction, committed only after `keys_gone` says the job's keys are destroyed (and
    /// rolled back if it says they are not). Safe to repeat.
    async fn apply_redaction(
        &self,
        job: RedactionJob,
        by: String,
        keys_gone: KeysDestroyed,
    ) -> Result<RedactionApplied, StoreError>;
    /// Forgets a finished job.
    async fn end_redaction(&self, job_id: String) -> Result<(), StoreError>;
    async fn pending_redactions(&self) -> Result<Vec<RedactionJob>, StoreError>;

    /// Appends to the audit journal; returns the entry's sequence number.
    async fn append_audit(&self, event: AuditEvent) -> Result<i64, StoreError>;
    async fn audit(&self, query: AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;
    /// The journal's last entry.
    async fn last_audit(&self) -> Result<Option<AuditEntry>, StoreError>;
    /// Writes the WAL back into the database and truncates it, so that deleted data leaves
    /// no copy in the WAL file.
    async fn compact(&self) -> Result<(), StoreError>;

    /// Every token ever issued, revoked and expired ones included (hashes, never tokens).
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
    /// Records that the job `name` finished a run at `at` (the time only moves forward).
    async fn record_job_run(&self, name: String, at: Timestamp) -> Result<(), StoreError>;
    /// The last finished run of each job that ever ran.
    async fn job_runs(&self) -> Result<Vec<(String, Timestamp)>, StoreError>;

    // Recipients (Art. 19) and the outbox of their deliveries.
    /// Registers a recipient and journals it.
    async fn create_recipient(
        &self,
        recipient: RecipientRow,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;
    /// Replaces a recipient's settings (a removal cancels its queued deliveries) and
    /// journals it. False when the account has no such recipient.
    async fn update_recipient(
        &self,
        recipient: RecipientRow,
        audit: AuditEvent,
    ) -> Result<bool, StoreError>;
    /// The account's recipients, removed ones included, oldest first.
    async fn recipients(&self, account: AccountId) -> Result<Vec<RecipientRow>, StoreError>;
    async fn recipient(
        &self,
        account: AccountId,
        id: RecipientId,
    ) -> Result<Option<RecipientRow>, StoreError>;
    /// Queued deliveries whose next attempt is due at `now`, soonest first.
    async fn due_deliveries(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>, StoreError>;
    /// Records an attempt if the delivery is still queued; false when it no longer was.
    async fn finish_delivery(&self, attempt: DeliveryAttempt) -> Result<bool, StoreError>;
    /// Cancels a queued delivery without an attempt (`why` is a short code).
    async fn cancel_delivery(&self, id: DeliveryId, why: String) -> Result<bool, StoreError>;
    /// A page of a recipient's deliveries, newest first.
    async fn deliveries(&self, query: DeliveryQuery) -> Result<Vec<DeliveryRow>, StoreError>;
    /// Puts a dead-lettered delivery back in the queue (journaled); `None` when there is no
    /// such dead delivery of a live recipient in the account.
    async fn retry_delivery(
        &self,
        account: AccountId,
        recipient: RecipientId,
        id: DeliveryId,
        audit: AuditEvent,
    ) -> Result<Option<DeliveryRow>, StoreError>;
    /// Recipients and delivery counts of an account, for the checklist.
    async fn delivery_summary(&self, account: AccountId) -> Result<DeliverySummary, StoreError>;
    /// The recipients (id, name) each of `calls` was delivered to.
    async fn delivered_to(
        &self,
        calls: Vec<CallId>,
    ) -> Result<Vec<(CallId, RecipientId, String)>, StoreError>;

    async fn ping(&self) -> Result<(), StoreError>;

    // web UI: users of the web interface and their sessions.
    /// Adds a user (`AlreadyExists` when the e-mail index is taken) and journals it.
    async fn create_user(&self, user: UserRecord, audit: AuditEvent) -> Result<(), StoreError>;
    async fn user_by_email_index(
        &self,
        index: ringfence_crypto::BlindIndex,
    ) -> Result<Option<UserRecord>, StoreError>;
    async fn user(&self, id: ringfence_core::UserId) -> Result<Option<UserRecord>, StoreError>;
    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Counts a failed sign-in; the `max_failures`th locks the user for `lock_ms`.
    async fn record_login_failure(
        &self,
        user: ringfence_core::UserId,
        now: Timestamp,
        max_failures: u32,
        lock_ms: i64,
    ) -> Result<LoginFailure, StoreError>;
    /// Starts a session (resetting the user's failures), ending the one it `replaces`.
    async fn start_web_session(
        &self,
        session: WebSessionRecord,
        replaces: Option<[u8; 32]>,
    ) -> Result<(), StoreError>;
    async fn web_session(
        &self,
        hash: [u8; 32],
    ) -> Result<Option<(WebSessionRecord, UserRecord)>, StoreError>;
    async fn touch_web_session(&self, hash: [u8; 32], now: Timestamp) -> Result<(), StoreError>;
    /// Ends a session, and every session idle since `idle_before` or older than `started_before`.
    async fn end_web_session(
        &self,
        hash: [u8; 32],
        idle_before: Timestamp,
        started_before: Timestamp,
    ) -> Result<(), StoreError>;
    /// Applies a change to a user and journals `audit`, in one transaction; disabling it or
    /// setting a new password ends every session of the user in the same transaction.
    async fn update_user(
        &self,
        id: ringfence_core::UserId,
        change: UserChange,
        audit: Vec<AuditEvent>,
    ) -> Result<UserRecord, StoreError>;
    /// Removes a user and every session of theirs, and journals it, in one transaction.
    async fn remove_user(
        &self,
        id: ringfence_core::UserId,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;
}
