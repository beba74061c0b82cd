//! The encrypted call log: seals every personal field with the record's own data key before
//! a store sees it, keeps the keys in the vault, and opens records for authorised reads.
//!
//! Write order: the data keys are made durable in the vault first, then the rows in the
//! call log. A crash in between leaves keys without rows (harmless), never rows without keys.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use zeroize::Zeroizing;

use ringfence_core::call::{
    Call, NewCall, NewSession, RecordingMeta, Redaction, RedactionReason, Session, Utm,
    VisitorDetails,
};
use ringfence_core::collection::{CollectionSettings, RecordingMode};
use ringfence_core::consent::{ConsentMethod, ConsentStatus, SubjectKind};
use ringfence_core::jurisdiction::{combine_scope, gdpr_scope_of_number, is_gdpr_region};
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, CallId, DataCategory, E164, SessionId};
use ringfence_crypto::{
    BlindIndex, BlindIndexKey, DataKey, KeyPurpose, KeyRecord, RECORDING_CHUNK, RecordingLayout,
    RecordingSealer, Vault, VaultError, open, open_recording_chunk, seal,
};

use crate::blobs::{BlobError, Blobs};
use crate::keypool::KeyPool;
use crate::payload::{self, PayloadError};
use crate::records::*;
use crate::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("stored data of {0} does not open: {1}")]
    Corrupt(String, &'static str),
    #[error("the call was redacted")]
    Redacted,
    #[error("recording larger than the limit of {limit} bytes")]
    RecordingTooLarge { limit: u64 },
    #[error("recording is empty")]
    EmptyRecording,
    #[error("reading the request body failed")]
    BodyRead,
    #[error("background task failed: {0}")]
    Task(String),
    #[error(
        "calls[{index}].consents: a consent needs a subject, and the call has no caller number and no visitor id"
    )]
    NoConsentSubject { index: usize },
}

impl From<PayloadError> for LogError {
    fn from(_: PayloadError) -> Self {
        LogError::Corrupt("a sealed payload".into(), "malformed")
    }
}

/// One page of the call log.
#[derive(Debug)]
pub struct CallPage {
    pub calls: Vec<Call>,
    /// Where the next page starts, if there may be one.
    pub next: Option<(Timestamp, CallId)>,
}

/// Result of ingesting one call.
pub type IngestOutcome = Inserted<CallId>;

/// How a batch is ingested: what the account collects, and who sends it.
#[derive(Debug, Clone)]
pub struct IngestPolicy {
    pub collection: CollectionSettings,
    /// A token id or `cli` (recorded with inline consents).
    pub actor: String,
}

impl IngestPolicy {
    /// Everything kept (tests, benchmarks and tools that control their input).
    pub fn collect_all(actor: impl Into<String>) -> Self {
        Self {
            collection: CollectionSettings::collect_all(),
            actor: actor.into(),
        }
    }
}

/// What ingesting a call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingested {
    pub outcome: IngestOutcome,
    /// Input fields (or whole categories) not stored: excluded by the collection settings,
    /// or withdrawn by the subject.
    pub dropped: Vec<String>,
}

/// A consent event as the API takes it (the subject in the clear, sealed here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConsent {
    pub subject: ConsentSubject,
    pub category: DataCategory,
    pub status: ConsentStatus,
    pub notice_version: Option<u32>,
    pub method: ConsentMethod,
    pub call_id: Option<CallId>,
}

/// Who a consent event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentSubject {
    Caller(E164),
    Visitor(ringfence_core::Personal<String>),
}

impl ConsentSubject {
    pub fn kind(&self) -> SubjectKind {
        match self {
            ConsentSubject::Caller(_) => SubjectKind::Caller,
            ConsentSubject::Visitor(_) => SubjectKind::Visitor,
        }
    }
    fn text(&self) -> &str {
        match self {
            ConsentSubject::Caller(n) => n.as_str(),
            ConsentSubject::Visitor(v) => v.expose(),
        }
    }
}

/// A consent event, opened for an authorised reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub row: ConsentRow,
    /// The subject, or `None` when its key is gone (the subject is being redacted).
    pub subject: Option<ConsentSubject>,
}

/// What recording a consent event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentOutcome {
    pub consent: ConsentRow,
    pub audit_seq: i64,
    /// For a withdrawal: the removal of the category's data.
    pub removal: Option<RedactionReceipt>,
    pub skipped_legal_hold: u64,
}

/// The vault id of a consent subject's key: `subject:{account}:{blind index in hex}`.
pub fn subject_key_id(account: AccountId, bidx: &BlindIndex) -> String {
    format!(
        "subject:{account}:{}",
        ringfence_crypto::blind_index_to_hex(bidx)
    )
}

/// The account and blind index of a [`subject_key_id`]; `None` for any other id.
pub fn parse_subject_key_id(id: &str) -> Option<(AccountId, BlindIndex)> {
    let rest = id.strip_prefix("subject:")?;
    let (account, hex) = rest.split_once(':')?;
    Some((
        account.parse().ok()?,
        ringfence_crypto::blind_index_from_hex(hex)?,
    ))
}

/// What a redaction did, as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedactionReceipt {
    pub redacted_calls: u64,
    pub redacted_sessions: u64,
    /// The calls the request covered that were not redacted before it.
    pub call_ids: Vec<CallId>,
    pub at: Timestamp,
    pub audit_seq: i64,
    /// The number was put on the forget list.
    pub forgotten: bool,
    /// Calls left as they are because they are on legal hold.
    pub skipped_legal_hold: u64,
}

/// What the vault holds under a key id that was just issued if missing.
enum Issued {
    /// The key under the id: one that was there, ours, or a concurrent creator's.
    Held(DataKey),
    /// The key issued here: some key reached the vault under the id (ours or a concurrent
    /// creator's) and was destroyed before it could be read back.
    DestroyedSince(DataKey),
}

/// A recording opened for reading.
pub struct RecordingRead {
    pub meta: RecordingMeta,
    call: CallId,
    object: String,
    key: DataKey,
}

impl std::fmt::Debug for RecordingRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingRead")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

pub(crate) fn aad(table: &str, id: &str, column: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(table.len() + id.len() + column.len() + 2);
    for (i, part) in [table, id, column].into_iter().enumerate() {
        if i > 0 {
            out.push(b'|');
        }
        out.extend_from_slice(part.as_bytes());
    }
    out
}

fn seal_opt(key: &DataKey, aad: &[u8], plain: Option<Zeroizing<Vec<u8>>>) -> Option<Vec<u8>> {
    plain.map(|p| seal(key, aad, &p))
}

fn blind_key_id(account: AccountId) -> String {
    format!("blind-index:{account}")
}

/// What ingest knows of a row it just sealed.
struct RowMeta {
    created_at: Timestamp,
    gdpr_scope: Option<bool>,
    inline_session: Option<SessionId>,
}

/// The encrypted call log.
pub struct CallLog {
    store: Arc<dyn Store>,
    vault: Vault,
    blobs: Blobs,
    blind_keys: Mutex<HashMap<AccountId, BlindIndexKey>>,
    keys: Arc<KeyPool>,
}

/// Requests of at most this many calls take their keys from the [`KeyPool`]; larger ones
/// issue their own and commit them to the vault in one transaction, which they amortise.
const POOLED_MAX: usize = 8;

/// What the records of one request are sealed for.
#[derive(Clone, Copy)]
struct Sealing {
    account: AccountId,
    now: Timestamp,
    /// Take keys from the [`KeyPool`] (small requests) rather than issue them.
    pooled: bool,
}

struct SealedSession {
    row: SessionRow,
    /// The key to insert in the vault first; `None` if it came from the pool, already durable.
    key: Option<KeyRecord>,
}

impl CallLog {
    pub fn new(store: Arc<dyn Store>, vault: Vault, blobs: Blobs) -> Self {
        Self {
            store,
            keys: Arc::new(KeyPool::new(vault.clone())),
            vault,
            blobs,
            blind_keys: Mutex::new(HashMap::new()),
        }
    }

    /// The pool of keys issued ahead of need (see [`KeyPool`]).
    pub fn key_pool(&self) -> &Arc<KeyPool> {
        &self.keys
    }

    /// A new record's id and key: from the pool if `ctx.pooled` and it has one (then nothing
    /// needs inserting), else freshly issued with the record to insert in the vault.
    fn new_key(
        &self,
        ctx: Sealing,
        purpose: KeyPurpose,
    ) -> (uuid::Uuid, DataKey, Option<KeyRecord>) {
        if ctx.pooled
            && let Some((id, key)) = self.keys.take(ctx.account, purpose)
        {
            return (id, key, None);
        }
        let id = uuid::Uuid::now_v7();
        let (key, record) = self
            .vault
            .issue(id.to_string(), ctx.account.to_string(), purpose);
        (id, key, Some(record))
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    /// The account's blind-index key, created on first use. Concurrent creators converge on
    /// the key that reached the vault first.
    pub async fn blind_key(&self, account: AccountId) -> Result<BlindIndexKey, LogError> {
        if let Some(k) = self
            .blind_keys
            .lock()
            .ok()
            .and_then(|m| m.get(&account).cloned())
        {
            return Ok(k);
        }
        let key = self
            .key_or_issue(
                blind_key_id(account),
                account.to_string(),
                KeyPurpose::BlindIndex,
            )
            .await?;
        let key = BlindIndexKey::from_data_key(&key);
        if let Ok(mut m) = self.blind_keys.lock() {
            m.insert(account, key.clone());
        }
        Ok(key)
    }

    /// The blind index of `number` in `account`.
    pub async fn blind_index(
        &self,
        account: AccountId,
        number: &E164,
    ) -> Result<BlindIndex, LogError> {
        Ok(self.blind_key(account).await?.index(number.as_str()))
    }

    fn seal_session(&self, ctx: Sealing, blind: &BlindIndexKey, s: &NewSession) -> SealedSession {
        let Sealing { account, now, .. } = ctx;
        let (id, key, record) = self.new_key(ctx, KeyPurpose::Session);
        let id = SessionId::from_uuid(id);
        let visitor = seal_opt(
            &key,
            &aad("session", &id.to_string(), "visitor"),
            payload::encode_visitor(&s.visitor),
        );
        SealedSession {
            row: SessionRow {
                id,
                account_id: account,
                external_id: s.external_id.clone(),
                started_at: s.started_at,
                created_at: now,
                utm_source: s.utm.source.clone(),
                utm_medium: s.utm.medium.clone(),
                utm_campaign: s.utm.campaign.clone(),
                visitor,
                gdpr_scope: s
                    .visitor
                    .country
                    .as_ref()
                    .map(|c| is_gdpr_region(c.expose())),
                visitor_bidx: s
                    .visitor
                    .visitor_id
                    .as_ref()
                    .map(|v| blind.index(&SubjectKind::Visitor.index_input(v.expose()))),
                redacted_at: None,
                redaction_reason: None,
            },
            key: record,
        }
    }

    fn seal_call(
        &self,
        ctx: Sealing,
        blind: &BlindIndexKey,
        c: &NewCall,
        policy: &IngestPolicy,
        subject: Option<&(SubjectKind, BlindIndex, DataKey)>,
    ) -> (NewCallRow, Vec<KeyRecord>) {
        let Sealing { account, now, .. } = ctx;
        let (id, key, record) = self.new_key(ctx, KeyPurpose::Call);
        let id = CallId::from_uuid(id);
        let ids = id.to_string();
        let mut keys: Vec<KeyRecord> = record.into_iter().collect();
        let inline_session = c.visitor.as_ref().map(|v| {
            let session = NewSession {
                external_id: None,
                started_at: c.started_at,
                utm: c.utm.clone(),
                visitor: v.clone(),
            };
            let sealed = self.seal_session(ctx, blind, &session);
            keys.extend(sealed.key);
            sealed.row
        });
        let row = CallRow {
            id,
            account_id: account,
            external_id: c.external_id.clone(),
            started_at: c.started_at,
            created_at: now,
            duration_s: c.duration_s,
            direction: c.direction,
            status: c.status,
            tracking_number: c.tracking_number.as_str().to_owned(),
            source: c.source.clone(),
            campaign: c.campaign.clone(),
            utm_source: c.utm.source.clone(),
            utm_medium: c.utm.medium.clone(),
            utm_campaign: c.utm.campaign.clone(),
            gdpr_scope: combine_scope(
                c.caller.number.as_ref().and_then(gdpr_scope_of_number),
                c.visitor
                    .as_ref()
                    .and_then(|v| v.country.as_ref())
                    .map(|country| is_gdpr_region(country.expose())),
            ),
            caller_bidx: c.caller.number.as_ref().map(|n| blind.index(n.as_str())),
            session_id: c.session_id,
            caller_identity: seal_opt(
                &key,
                &aad("call", &ids, "caller_identity"),
                payload::encode_identity(&c.caller),
            ),
            caller_location: seal_opt(
                &key,
                &aad("call", &ids, "caller_location"),
                payload::encode_location(&c.location),
            ),
            transcript: seal_opt(
                &key,
                &aad("call", &ids, "transcript"),
                payload::encode_transcript(c.transcript.as_ref()),
            ),
            interaction: seal_opt(
                &key,
                &aad("call", &ids, "interaction"),
                payload::encode_interaction(&c.interaction),
            ),
            recording: None,
            redacted_at: None,
            redaction_reason: None,
            redacted_by: None,
            legal_hold: None,
        };
        let transcript_needs_consent = row.transcript.is_some()
            && policy.collection.recording_mode(row.gdpr_scope) == RecordingMode::OptIn;
        let consents = match subject {
            Some((kind, bidx, key)) => c
                .consents
                .iter()
                .map(|ev| {
                    let consent_id = uuid::Uuid::now_v7().to_string();
                    let subject_text = match kind {
                        SubjectKind::Caller => {
                            c.caller.number.as_ref().map(|n| n.as_str().to_owned())
                        }
                        SubjectKind::Visitor => c
                            .visitor
                            .as_ref()
                            .and_then(|v| v.visitor_id.as_ref())
                            .map(|v| v.expose().clone()),
                    }
                    .unwrap_or_default();
                    ConsentRow {
                        seq: 0,
                        subject: seal(
                            key,
                            &aad("consent", &consent_id, "subject"),
                            subject_text.as_bytes(),
                        ),
                        id: consent_id,
                        account_id: account,
                        subject_kind: *kind,
                        subject_bidx: *bidx,
                        category: ev.category,
                        status: ev.status,
                        notice_version: ev.notice_version,
                        method: ev.method,
                        at: now,
                        call_id: None,
                        recorded_by: policy.actor.clone(),
                    }
                })
                .collect(),
            None => Vec::new(),
        };
        (
            NewCallRow {
                call: row,
                inline_session,
                consents,
                transcript_needs_consent,
            },
            keys,
        )
    }

    /// The vault's key `id`, issued on first use. Concurrent creators converge on the key
    /// that reached the vault first. For keys no erasure destroys (blind-index, secrets and
    /// installation keys): one missing right after its issue is corruption.
    pub(crate) async fn key_or_issue(
        &self,
        id: String,
        owner: String,
        purpose: KeyPurpose,
    ) -> Result<DataKey, LogError> {
        match self.open_or_issue(id.clone(), owner, purpose).await? {
            Issued::Held(key) => Ok(key),
            Issued::DestroyedSince(_) => Err(LogError::Corrupt(
                id,
                "a key just issued was destroyed, and no erasure destroys keys of its kind",
            )),
        }
    }

    /// The vault's key `id` if it holds one, else a fresh key issued under `id`; what the
    /// vault answers once the insert is done. A concurrent creator's insert may have reached
    /// the vault first (ids are unique: the first key stays, and both converge on it), and
    /// an erasure may destroy the key between the insert and the read that follows it.
    async fn open_or_issue(
        &self,
        id: String,
        owner: String,
        purpose: KeyPurpose,
    ) -> Result<Issued, LogError> {
        if let Some(k) = self.vault.open_key(&id).await? {
            return Ok(Issued::Held(k));
        }
        let (issued, record) = self.vault.issue(id.clone(), owner, purpose);
        self.vault.insert(vec![record]).await?;
        Ok(match self.vault.open_key(&id).await? {
            Some(k) => Issued::Held(k),
            None => Issued::DestroyedSince(issued),
        })
    }

    /// The key sealing an account's secrets, created on first use.
    pub(crate) async fn secrets_key(&self, account: AccountId) -> Result<DataKey, LogError> {
        self.key_or_issue(
            format!("account-secrets:{account}"),
            account.to_string(),
            KeyPurpose::AccountSecret,
        )
        .await
    }

    /// Seals a telephony auth token for the account (to store in its record).
    pub async fn seal_twilio_auth_token(
        &self,
        account: AccountId,
        token: &str,
    ) -> Result<Vec<u8>, LogError> {
        let key = self.secrets_key(account).await?;
        Ok(seal(
            &key,
            &aad("account", &account.to_string(), "twilio_auth_token"),
            token.as_bytes(),
        ))
    }

    /// The account's telephony auth token, opened.
    pub async fn twilio_auth_token(
        &self,
        account: &AccountRecord,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, LogError> {
        let Some(sealed) = &account.twilio_auth_token else {
            return Ok(None);
        };
        let key = self.secrets_key(account.id).await?;
        let plain = open(
            &key,
            &aad("account", &account.id.to_string(), "twilio_auth_token"),
            sealed,
        )
        .map_err(|_| {
            LogError::Corrupt(format!("account {}", account.id), "secret does not open")
        })?;
        Ok(Some(plain))
    }

    /// Stores a status of a call sent by a telephony provider, identified by its
    /// `external_id` (the provider's call id): the first status creates the call, later
    /// ones update it (facts, caller identity and location, sealed with the call's own key).
    /// Statuses only move forward, so repeated and out-of-order deliveries converge.
    /// Answers the call's id, whether this delivery created it, and what was dropped.
    pub async fn ingest_status(
        self: &Arc<Self>,
        account: AccountId,
        call: NewCall,
        policy: &IngestPolicy,
    ) -> Result<(CallId, bool, Vec<String>), LogError> {
        let external = call
            .external_id
            .clone()
            .ok_or_else(|| LogError::Task("a status needs the provider's call id".into()))?;
        let mut minimised = call.clone();
        let dropped = policy.collection.minimise_call(&mut minimised);
        let mut existing = match self
            .store
            .call_by_external(account, external.clone())
            .await?
        {
            Some(row) => row,
            None => {
                let ingested = self
                    .ingest_calls(account, vec![call], policy)
                    .await?
                    .into_iter()
                    .next()
                    .ok_or_else(|| LogError::Task("ingest returned no outcome".into()))?;
                if ingested.outcome.is_created() {
                    return Ok((ingested.outcome.id(), true, ingested.dropped));
                }
                // Another delivery of the same call was first: update it instead.
                self.store
                    .call_by_external(account, external.clone())
                    .await?
                    .ok_or_else(|| {
                        LogError::Corrupt(ingested.outcome.id().to_string(), "call vanished")
                    })?
            }
        };
        // A later delivery updates the caller's fields one by one (what it leaves out is
        // kept). The merge is read here and written only while the row still holds what was
        // read; a delivery merging at the same moment makes us read again. Each round
        // either applies or sees another delivery's write, so this ends.
        loop {
            if existing.redacted_at.is_some() {
                return Ok((existing.id, false, dropped));
            }
            let Some(key) = self.vault.open_key(&existing.id.to_string()).await? else {
                // Its key is gone: a redaction is under way.
                return Ok((existing.id, false, dropped));
            };
            let ids = existing.id.to_string();
            let identity_aad = aad("call", &ids, "caller_identity");
            let location_aad = aad("call", &ids, "caller_location");
            // The project's one way to open a sealed category (`open_category`).
            let stored_identity = open_category(
                &key,
                &ids,
                "caller_identity",
                &existing.caller_identity,
                payload::decode_identity,
            )?
            .unwrap_or_default();
            let stored_location = open_category(
                &key,
                &ids,
                "caller_location",
                &existing.caller_location,
                payload::decode_location,
            )?
            .unwrap_or_default();
            let identity = stored_identity.updated_by(minimised.caller.clone());
            let location = stored_location.updated_by(minimised.location.clone());
            let update = CallUpdate {
                id: existing.id,
                started_at: minimised.started_at,
                duration_s: minimised.duration_s,
                direction: minimised.direction,
                status: minimised.status,
                caller_identity: seal_opt(&key, &identity_aad, payload::encode_identity(&identity)),
                caller_location: seal_opt(&key, &location_aad, payload::encode_location(&location)),
                based_on: (
                    existing.caller_identity.clone(),
                    existing.caller_location.clone(),
                ),
            };
            match self.store.update_call(update).await? {
                CallUpdated::Applied | CallUpdated::Unchanged => {
                    return Ok((existing.id, false, dropped));
                }
                CallUpdated::Stale => {
                    existing = self
                        .store
                        .call_by_external(account, external.clone())
                        .await?
                        .ok_or_else(|| LogError::Corrupt(ids.clone(), "call vanished"))?;
                }
            }
        }
    }

    /// The key that seals a consent subject's events, created on first use; destroyed when
    /// the subject is redacted.
    ///
    /// A caller's erasure can destroy it between its issue and the read that follows
    /// (`Issued::DestroyedSince`). What is sealed with the key just issued is then born
    /// unreadable — the vault holds no key under that id that opens it, or none at all —,
    /// which is what the erasure wants; and the store decides in its own transaction what
    /// arrives: the erasure's forget-list entry is committed before it destroys the key, so
    /// an arriving call of the forgotten caller is stored redacted and its consents are not
    /// stored. Either way this is not an error of the request.
    async fn subject_key(
        &self,
        account: AccountId,
        bidx: &BlindIndex,
    ) -> Result<DataKey, LogError> {
        match self
            .open_or_issue(
                subject_key_id(account, bidx),
                account.to_string(),
                KeyPurpose::Subject,
            )
            .await?
        {
            Issued::Held(key) | Issued::DestroyedSince(key) => Ok(key),
        }
    }

    /// Stores calls atomically: all or none. Idempotent per `(account, external_id)`.
    /// What the collection settings exclude is removed before anything is sealed; what the
    /// subject withdrew consent to is left out by the store. Returns once the calls are
    /// durable.
    pub async fn ingest_calls(
        self: &Arc<Self>,
        account: AccountId,
        calls: Vec<NewCall>,
        policy: &IngestPolicy,
    ) -> Result<Vec<Ingested>, LogError> {
        Ok(self.ingest_inner(account, calls, policy).await?.0)
    }

    async fn ingest_inner(
        self: &Arc<Self>,
        account: AccountId,
        mut calls: Vec<NewCall>,
        policy: &IngestPolicy,
    ) -> Result<(Vec<Ingested>, Vec<RowMeta>, Vec<CallId>), LogError> {
        let blind = self.blind_key(account).await?;
        let now = Timestamp::now();
        // Data minimisation first: what the settings exclude is never sealed nor written.
        let mut dropped: Vec<Vec<String>> = calls
            .iter_mut()
            .map(|c| policy.collection.minimise_call(c))
            .collect();
        // The subjects of inline consents, and their keys.
        let mut subjects: Vec<Option<(SubjectKind, BlindIndex, DataKey)>> =
            Vec::with_capacity(calls.len());
        for (index, c) in calls.iter().enumerate() {
            if c.consents.is_empty() {
                subjects.push(None);
                continue;
            }
            let subject = match (
                &c.caller.number,
                c.visitor.as_ref().and_then(|v| v.visitor_id.as_ref()),
            ) {
                (Some(number), _) => ConsentSubject::Caller(number.clone()),
                (None, Some(visitor)) => ConsentSubject::Visitor(visitor.clone()),
                (None, None) => return Err(LogError::NoConsentSubject { index }),
            };
            let bidx = blind.index(&subject.kind().index_input(subject.text()));
            let key = self.subject_key(account, &bidx).await?;
            subjects.push(Some((subject.kind(), bidx, key)));
        }
        // Small requests take pooled keys; a larger one issues its own and commits them in
        // one transaction. Sealing costs microseconds per call: a large batch goes off the
        // async runtime.
        let ctx = Sealing {
            account,
            now,
            pooled: calls.len() <= POOLED_MAX,
        };
        let (rows, keys) = if ctx.pooled {
            self.seal_calls(ctx, &blind, &calls, policy, &subjects)
        } else {
            let this = Arc::clone(self);
            let policy = policy.clone();
            tokio::task::spawn_blocking(move || {
                this.seal_calls(ctx, &blind, &calls, &policy, &subjects)
            })
            .await
            .map_err(|e| LogError::Task(e.to_string()))?
        };
        let key_ids_by_call: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let mut ids = vec![r.call.id.to_string()];
                ids.extend(r.inline_session.as_ref().map(|s| s.id.to_string()));
                ids
            })
            .collect();
        let metas: Vec<RowMeta> = rows
            .iter()
            .map(|r| RowMeta {
                created_at: r.call.created_at,
                gdpr_scope: r.call.gdpr_scope,
                inline_session: r.inline_session.as_ref().map(|s| s.id),
            })
            .collect();
        self.vault.insert(keys).await?;
        let report = match self.store.insert_calls(rows).await {
            Ok(r) => r,
            Err(e) => {
                // Nothing was stored: the keys issued for it open nothing.
                let _ = self
                    .vault
                    .destroy(key_ids_by_call.into_iter().flatten().collect())
                    .await;
                return Err(e.into());
            }
        };
        // Keys that open nothing: duplicates, and calls of forgotten callers (stored
        // without personal data).
        let unused: Vec<String> = report
            .outcomes
            .iter()
            .zip(key_ids_by_call)
            .filter(|(o, _)| !o.is_created() || report.forgotten.contains(&o.id()))
            .flat_map(|(_, ids)| ids)
            .collect();
        if !unused.is_empty() {
            let _ = self.vault.destroy(unused).await;
        }
        for (names, withheld) in dropped.iter_mut().zip(&report.withheld) {
            names.extend(withheld.iter().map(|c| c.as_str().to_owned()));
        }
        let ingested = report
            .outcomes
            .into_iter()
            .zip(dropped)
            .map(|(outcome, dropped)| Ingested { outcome, dropped })
            .collect();
        Ok((ingested, metas, report.forgotten))
    }

    /// Stores one call and returns it as a read would, without reading it back when it is
    /// new (a re-delivery or a forgotten caller's call is read back).
    pub async fn ingest_call(
        self: &Arc<Self>,
        account: AccountId,
        mut call: NewCall,
        policy: &IngestPolicy,
    ) -> Result<(Ingested, Call), LogError> {
        let (outcomes, metas, forgotten) = self
            .ingest_inner(account, vec![call.clone()], policy)
            .await?;
        let (Some(ingested), Some(meta)) = (outcomes.into_iter().next(), metas.into_iter().next())
        else {
            return Err(LogError::Task("ingest returned no outcome".into()));
        };
        let outcome = ingested.outcome;
        // What the response shows is what was stored.
        let _ = policy.collection.minimise_call(&mut call);
        if outcome.is_created()
            && !forgotten.contains(&outcome.id())
            && call.session_id.is_none()
            && ingested
                .dropped
                .iter()
                .all(|d| DataCategory::parse(d).is_none())
        {
            // Everything the response shows was just sealed: no need to read and open it.
            let c = Call {
                id: outcome.id(),
                account_id: account,
                external_id: call.external_id,
                started_at: call.started_at,
                created_at: meta.created_at,
                duration_s: call.duration_s,
                direction: call.direction,
                status: call.status,
                tracking_number: call.tracking_number.as_str().to_owned(),
                source: call.source,
                campaign: call.campaign,
                utm: call.utm,
                gdpr_scope: meta.gdpr_scope,
                caller: Some(call.caller),
                location: Some(call.location),
                recording: None,
                transcript: call.transcript,
                interaction: Some(call.interaction),
                visitor: meta.inline_session.zip(call.visitor),
                redaction: None,
                legal_hold: None,
            };
            return Ok((ingested, c));
        }
        let opened = self
            .call(outcome.id())
            .await?
            .ok_or_else(|| LogError::Corrupt(outcome.id().to_string(), "stored call not found"))?;
        Ok((ingested, opened))
    }

    fn seal_calls(
        &self,
        ctx: Sealing,
        blind: &BlindIndexKey,
        calls: &[NewCall],
        policy: &IngestPolicy,
        subjects: &[Option<(SubjectKind, BlindIndex, DataKey)>],
    ) -> (Vec<NewCallRow>, Vec<KeyRecord>) {
        let mut rows = Vec::with_capacity(calls.len());
        let mut keys = Vec::with_capacity(calls.len());
        for (i, c) in calls.iter().enumerate() {
            let subject = subjects.get(i).and_then(Option::as_ref);
            let (row, k) = self.seal_call(ctx, blind, c, policy, subject);
            rows.push(row);
            keys.extend(k);
        }
        (rows, keys)
    }

    /// Stores a visitor session, idempotent per `(account, external_id)`.
    /// Stores a visitor session, minimised by `collection`; idempotent per
    /// `(account, external_id)`. Answers the outcome and the input fields not stored.
    pub async fn ingest_session(
        &self,
        account: AccountId,
        mut session: NewSession,
        collection: &CollectionSettings,
    ) -> Result<(Inserted<SessionId>, Vec<String>), LogError> {
        let mut dropped = collection.minimise_session(&mut session);
        let blind = self.blind_key(account).await?;
        let ctx = Sealing {
            account,
            now: Timestamp::now(),
            pooled: true,
        };
        let sealed = self.seal_session(ctx, &blind, &session);
        let key_id = sealed.row.id.to_string();
        self.vault.insert(sealed.key.into_iter().collect()).await?;
        let (outcome, withheld) = match self.store.insert_session(sealed.row).await {
            Ok(o) => o,
            Err(e) => {
                let _ = self.vault.destroy(vec![key_id]).await;
                return Err(e.into());
            }
        };
        if !outcome.is_created() || withheld {
            let _ = self.vault.destroy(vec![key_id]).await;
        }
        if withheld {
            dropped.push(DataCategory::Visitor.as_str().to_owned());
        }
        Ok((outcome, dropped))
    }

    /// The stored row of a call, for access checks (no personal data opened).
    pub async fn call_row(&self, id: CallId) -> Result<Option<CallRow>, LogError> {
        Ok(self.store.call(id).await?)
    }

    /// A call, opened.
    pub async fn call(&self, id: CallId) -> Result<Option<Call>, LogError> {
        let Some(row) = self.store.call(id).await? else {
            return Ok(None);
        };
        Ok(self.open_calls(vec![row]).await?.pop())
    }

    /// A page of an account's calls, newest first, opened.
    pub async fn calls(&self, query: CallQuery) -> Result<CallPage, LogError> {
        let limit = query.limit as usize;
        let mut q = query;
        q.limit += 1;
        let mut rows = self.store.calls(q).await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = if more {
            rows.last().map(|r| (r.started_at, r.id))
        } else {
            None
        };
        Ok(CallPage {
            calls: self.open_calls(rows).await?,
            next,
        })
    }

    /// Opens call rows for an authorised reader (with their linked sessions).
    pub async fn open_calls(&self, rows: Vec<CallRow>) -> Result<Vec<Call>, LogError> {
        let session_ids: Vec<SessionId> = rows
            .iter()
            .filter(|r| r.redacted_at.is_none())
            .filter_map(|r| r.session_id)
            .collect();
        let sessions: HashMap<SessionId, SessionRow> = self
            .store
            .sessions(session_ids)
            .await?
            .into_iter()
            .map(|s| (s.id, s))
            .collect();
        let mut key_ids: Vec<String> = rows
            .iter()
            .filter(|r| r.redacted_at.is_none())
            .map(|r| r.id.to_string())
            .collect();
        key_ids.extend(sessions.keys().map(|s| s.to_string()));
        let keys = self.vault.open_keys(key_ids).await?;
        rows.into_iter()
            .map(|row| open_call(row, &keys, &sessions))
            .collect()
    }

    /// Opens sessions by id (for exports and the caller page).
    pub async fn sessions(&self, ids: Vec<SessionId>) -> Result<Vec<Session>, LogError> {
        let rows = self.store.sessions(ids).await?;
        let keys = self
            .vault
            .open_keys(rows.iter().map(|r| r.id.to_string()).collect())
            .await?;
        rows.into_iter()
            .map(|row| {
                let visitor = open_visitor(&row, keys.get(&row.id.to_string()))?;
                Ok(Session {
                    id: row.id,
                    account_id: row.account_id,
                    external_id: row.external_id,
                    started_at: row.started_at,
                    utm: Utm {
                        source: row.utm_source,
                        medium: row.utm_medium,
                        campaign: row.utm_campaign,
                    },
                    visitor,
                    redaction: row
                        .redacted_at
                        .zip(row.redaction_reason)
                        .map(|(at, reason)| Redaction {
                            at,
                            reason,
                            by: String::new(),
                        }),
                })
            })
            .collect()
    }

    /// Streams a recording into the blob store, sealed, and attaches it to the call
    /// (replacing any earlier one). Stops at `limit` bytes.
    pub async fn put_recording<S, E>(
        &self,
        call: &CallRow,
        content_type: String,
        mut body: S,
        limit: u64,
        consent: Option<RecordingConsent>,
    ) -> Result<RecordingMeta, LogError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
    {
        if call.redacted_at.is_some() {
            return Err(LogError::Redacted);
        }
        let key = self
            .vault
            .open_key(&call.id.to_string())
            .await?
            .ok_or(LogError::Redacted)?;
        // One folder per account, a file per upload named by the call and the upload: deleting
        // a recording is then one unlink, with no per-call folder to remove.
        let object = format!(
            "recordings/{}/{}.{}.rfrec",
            call.account_id,
            call.id,
            uuid::Uuid::now_v7()
        );
        let mut upload = self.blobs.upload(&object).await?;
        let mut sealer = RecordingSealer::new(key, object.clone());
        let mut failure: Option<LogError> = None;
        if let Err(e) = upload.write(&RecordingSealer::header()).await {
            failure = Some(e.into());
        }
        while failure.is_none() {
            let Some(part) = body.next().await else { break };
            let part = match part {
                Ok(p) => p,
                Err(_) => {
                    failure = Some(LogError::BodyRead);
                    break;
                }
            };
            if sealer.bytes_so_far() + part.len() as u64 > limit {
                failure = Some(LogError::RecordingTooLarge { limit });
                break;
            }
            for chunk in sealer.push(&part) {
                if let Err(e) = upload.write(&chunk).await {
                    failure = Some(e.into());
                    break;
                }
            }
        }
        if failure.is_none() && sealer.bytes_so_far() == 0 {
            failure = Some(LogError::EmptyRecording);
        }
        if let Some(e) = failure {
            upload.abort().await;
            return Err(e);
        }
        let (last, bytes) = sealer.finish();
        upload.write(&last).await?;
        upload.finish().await?;
        let row = RecordingRow {
            object: object.clone(),
            content_type: content_type.clone(),
            bytes,
        };
        match self.store.set_recording(call.id, Some(row), consent).await {
            Ok(Some(previous)) => {
                let _ = self.blobs.delete(&previous.object).await;
            }
            Ok(None) => {}
            Err(e) => {
                let _ = self.blobs.delete(&object).await;
                return Err(match e {
                    StoreError::AlreadyExists(_) => LogError::Redacted,
                    other => other.into(),
                });
            }
        }
        Ok(RecordingMeta {
            content_type,
            bytes,
        })
    }

    /// The call's recording, ready to read, or `None` when it has none.
    pub async fn recording(&self, call: &CallRow) -> Result<Option<RecordingRead>, LogError> {
        if call.redacted_at.is_some() {
            return Err(LogError::Redacted);
        }
        let Some(rec) = &call.recording else {
            return Ok(None);
        };
        let key = self
            .vault
            .open_key(&call.id.to_string())
            .await?
            .ok_or(LogError::Redacted)?;
        Ok(Some(RecordingRead {
            meta: RecordingMeta {
                content_type: rec.content_type.clone(),
                bytes: rec.bytes,
            },
            call: call.id,
            object: rec.object.clone(),
            key,
        }))
    }

    /// Plaintext bytes `start..end` of a recording, as a stream of pieces, opened before
    /// anything is sent. The recording's object is opened here, once, with the key
    /// [`recording`](Self::recording) opened: the stream reads that object to its end
    /// whatever happens meanwhile (a redaction deletes the file: the open file stays
    /// readable; see [`Blobs::open_range`]), so it delivers the whole range or fails only
    /// as storage can fail. An object gone before it could be opened means the call was
    /// redacted (`Redacted`) or its recording replaced or removed (`None`: ask again).
    pub async fn read_recording(
        &self,
        rec: RecordingRead,
        start: u64,
        end: u64,
    ) -> Result<Option<impl Stream<Item = Result<Bytes, LogError>> + Send + 'static>, LogError>
    {
        let layout = RecordingLayout {
            plaintext_len: rec.meta.bytes,
        };
        let end = end.min(rec.meta.bytes);
        let (first, last, _) = layout.chunks_for(start, end.max(start + 1));
        let from = layout.sealed_offset(first);
        let to = layout.sealed_offset(last) + layout.sealed_chunk_len(last);
        let blob = match self.blobs.open_range(&rec.object, from..to).await {
            Ok(blob) => blob,
            Err(BlobError::NotFound) => {
                return match self.store.call(rec.call).await? {
                    Some(row) if row.redacted_at.is_some() => Err(LogError::Redacted),
                    _ => Ok(None),
                };
            }
            Err(e) => return Err(e.into()),
        };
        let RecordingRead { object, key, .. } = rec;
        // Up to 16 chunks (1 MiB) per read.
        const GROUP: u64 = 16;
        Ok(Some(futures::stream::unfold(
            (blob, first),
            move |(mut blob, index)| {
                let object = object.clone();
                let key = key.clone();
                async move {
                    if index > last || start >= end {
                        return None;
                    }
                    let group_last = (index + GROUP - 1).min(last);
                    let n = layout.sealed_offset(group_last) + layout.sealed_chunk_len(group_last)
                        - layout.sealed_offset(index);
                    let result = async {
                        let sealed = blob.read(n as usize).await?;
                        let mut out = Vec::with_capacity(
                            ((group_last - index + 1) as usize) * RECORDING_CHUNK,
                        );
                        let mut at = 0usize;
                        for i in index..=group_last {
                            let n = layout.sealed_chunk_len(i) as usize;
                            let piece = sealed.get(at..at + n).ok_or_else(|| {
                                LogError::Corrupt("a recording".into(), "truncated")
                            })?;
                            let plain =
                                open_recording_chunk(&key, &object, i, layout.is_last(i), piece)
                                    .map_err(|_| {
                                        LogError::Corrupt(
                                            "a recording".into(),
                                            "chunk does not open",
                                        )
                                    })?;
                            let chunk_start = i * RECORDING_CHUNK as u64;
                            let lo =
                                start.saturating_sub(chunk_start).min(plain.len() as u64) as usize;
                            let hi = (end - chunk_start).min(plain.len() as u64) as usize;
                            if lo < hi {
                                out.extend_from_slice(&plain[lo..hi]);
                            }
                            at += n;
                        }
                        Ok::<Bytes, LogError>(Bytes::from(out))
                    }
                    .await;
                    // After a failure the stream ends: the body is cut, never shifted.
                    let next = if result.is_ok() {
                        group_last + 1
                    } else {
                        last + 1
                    };
                    Some((result, (blob, next)))
                }
            },
        )))
    }

    /// Redacts these calls (and the visitor sessions linked to them): the keys are destroyed
    /// first, then the personal columns cleared and journaled, then the recording files
    /// deleted. Calls already redacted are left as they are and not counted.
    pub async fn redact_calls(
        &self,
        rows: Vec<CallRow>,
        reason: RedactionReason,
        audit: AuditEvent,
    ) -> Result<RedactionReceipt, LogError> {
        self.redact(rows, Vec::new(), Vec::new(), reason, audit)
            .await
    }

    /// Redacts every call of `number` in each of `accounts` (found through each account's
    /// blind index) and their sessions; with `forget`, later calls from the number are
    /// redacted on arrival.
    pub async fn redact_caller(
        &self,
        accounts: &[AccountId],
        number: &E164,
        forget: bool,
        audit: AuditEvent,
    ) -> Result<RedactionReceipt, LogError> {
        let mut callers = Vec::new();
        for account in accounts {
            callers.push((*account, self.blind_index(*account, number).await?));
        }
        let template = RedactionJob {
            id: uuid::Uuid::now_v7().to_string(),
            created_at: Timestamp::now(),
            reason: RedactionReason::Caller,
            call_ids: Vec::new(),
            session_ids: Vec::new(),
            objects: Vec::new(),
            forget: if forget { callers.clone() } else { Vec::new() },
            // The caller's consent records go with them.
            subjects: callers.clone(),
            audit,
            categories: Vec::new(),
        };
        // The calls are chosen in the transaction that puts the number on the forget list
        // (not read beforehand), so a call arriving meanwhile is either chosen or redacted
        // on arrival.
        let (job, skipped_legal_hold) =
            self.store.begin_caller_redaction(template, callers).await?;
        let applied = self.finish_redaction(job.clone()).await?;
        Ok(RedactionReceipt {
            redacted_calls: applied.calls,
            redacted_sessions: applied.sessions,
            call_ids: job.call_ids,
            at: applied.at,
            audit_seq: applied.audit_seq,
            forgotten: forget,
            skipped_legal_hold,
        })
    }

    /// Redacts calls by id and puts blind indexes on forget lists (a restore re-applying the
    /// journal). Ids of calls that do not exist are skipped.
    pub async fn redact_by_ids(
        &self,
        ids: Vec<CallId>,
        forget: Vec<(AccountId, BlindIndex)>,
        subjects: Vec<(AccountId, BlindIndex)>,
        reason: RedactionReason,
        audit: AuditEvent,
    ) -> Result<RedactionReceipt, LogError> {
        let rows = self.store.calls_by_ids(ids).await?;
        self.redact(rows, forget, subjects, reason, audit).await
    }

    /// Removes `categories` from calls and sessions by id (a restore re-applying a removal
    /// journaled after its backup). Ids that do not exist are skipped.
    pub async fn remove_categories_by_ids(
        &self,
        call_ids: Vec<CallId>,
        session_ids: Vec<SessionId>,
        categories: Vec<DataCategory>,
        reason: RedactionReason,
        audit: AuditEvent,
    ) -> Result<RedactionReceipt, LogError> {
        let rows = self.store.calls_by_ids(call_ids).await?;
        self.remove(rows, session_ids, categories, reason, audit)
            .await
    }

    /// Removes `categories` from these calls, which otherwise stay as they are (automatic
    /// redaction by category). Same crash-safe order as a redaction.
    pub async fn remove_categories(
        &self,
        rows: Vec<CallRow>,
        categories: Vec<DataCategory>,
        reason: RedactionReason,
        audit: AuditEvent,
    ) -> Result<RedactionReceipt, LogError> {
        self.remove(rows, Vec::new(), categories, reason, audit)
            .await
    }

    /// Removes `categories` from the live ones of `rows` and, for the visitor category,
    /// from their sessions and `more_sessions`.
    async fn remove(
        &self,
        rows: Vec<CallRow>,
        more_sessions: Vec<SessionId>,
        categories: Vec<DataCategory>,
        reason: RedactionReason,
        audit: AuditEvent,
    ) -> Result<RedactionReceipt, LogError> {
        let live: Vec<&CallRow> = rows.iter().filter(|r| r.redacted_at.is_none()).collect();
        let mut session_ids = more_sessions;
        if categories.contains(&DataCategory::Visitor) {
            session_ids.extend(live.iter().filter_map(|r| r.session_id));
        }
        session_ids.sort();
        session_ids.dedup();
        let job = RedactionJob {
            id: uuid::Uuid::now_v7().to_string(),
            created_at: Timestamp::now(),
            reason,
            call_ids: live.iter().map(|r| r.id).collect(),
            session_ids,
            objects: if categories.contains(&DataCategory::Recording) {
                live.iter()
                    .filter_map(|r| r.recording.as_ref().map(|rec| rec.object.clone()))
                    .collect()
            } else {
                Vec::new()
            },
            forget: Vec::new(),
            subjects: Vec::new(),
            audit,
            categories,
        };
        self.store.begin_redaction(job.clone()).await?;
        let applied = self.finish_redaction(job.clone()).await?;
        Ok(RedactionReceipt {
            redacted_calls: applied.calls,
            redacted_sessions: applied.sessions,
            call_ids: job.call_ids,
            at: applied.at,
            audit_seq: applied.audit_seq,
            forgotten: false,
            skipped_legal_hold: 0,
        })
    }

    async fn redact(
        &self,
        rows: Vec<CallRow>,
        forget: Vec<(AccountId, BlindIndex)>,
        subjects: Vec<(AccountId, BlindIndex)>,
        reason: RedactionReason,
        audit: AuditEvent,
    ) -> Result<RedactionReceipt, LogError> {
        // Calls on legal hold are exempt (GDPR Art. 17(3)(e)); the receipt counts them.
        let skipped_legal_hold = rows
            .iter()
            .filter(|r| r.redacted_at.is_none() && r.legal_hold.is_some())
            .count() as u64;
        let live: Vec<&CallRow> = rows
            .iter()
            .filter(|r| r.redacted_at.is_none() && r.legal_hold.is_none())
            .collect();
        let mut session_ids: Vec<SessionId> = live.iter().filter_map(|r| r.session_id).collect();
        session_ids.sort();
        session_ids.dedup();
        let job = RedactionJob {
            id: uuid::Uuid::now_v7().to_string(),
            created_at: Timestamp::now(),
            reason,
            call_ids: live.iter().map(|r| r.id).collect(),
            session_ids,
            objects: live
                .iter()
                .filter_map(|r| r.recording.as_ref().map(|rec| rec.object.clone()))
                .collect(),
            forget: forget.clone(),
            subjects,
            audit,
            categories: Vec::new(),
        };
        self.store.begin_redaction(job.clone()).await?;
        let applied = self.finish_redaction(job.clone()).await?;
        Ok(RedactionReceipt {
            redacted_calls: applied.calls,
            redacted_sessions: applied.sessions,
            call_ids: job.call_ids,
            at: applied.at,
            audit_seq: applied.audit_seq,
            forgotten: !forget.is_empty(),
            skipped_legal_hold,
        })
    }

    /// The steps after the job is recorded; each is safe to repeat.
    async fn finish_redaction(&self, job: RedactionJob) -> Result<RedactionApplied, LogError> {
        // A whole redaction destroys the calls' and sessions' keys; removing categories only
        // the keys of the visitor sessions it redacts.
        let mut keys: Vec<String> = Vec::new();
        if job.categories.is_empty() {
            keys.extend(job.call_ids.iter().map(ToString::to_string));
        }
        if job.categories.is_empty() || job.categories.contains(&DataCategory::Visitor) {
            keys.extend(job.session_ids.iter().map(ToString::to_string));
        }
        keys.extend(job.subjects.iter().map(|(a, b)| subject_key_id(*a, b)));
        let started = std::time::Instant::now();
        // 1. The keys: once the vault has committed their deletion, the ciphertext is
        // unreadable wherever it lies. 2. The ciphertext, the marks and the journal entry, in
        // one call-log transaction that the store prepares meanwhile but commits only after
        // step 1 (and rolls back if step 1 fails): on disk, no call's ciphertext is cleared
        // while its key exists, and the two databases work at the same time.
        let (signal, keys_gone) = KeysDestroyed::channel();
        let destroy = async {
            let destroyed = self.vault.destroy(keys).await;
            signal.send(destroyed.is_ok());
            let keys_done = started.elapsed();
            destroyed.map(|_| keys_done)
        };
        let apply = self
            .store
            .apply_redaction(job.clone(), job.audit.actor.clone(), keys_gone);
        let (destroyed, applied) = futures::join!(destroy, apply);
        let keys_done = destroyed?;
        let applied = applied?;
        let rows_done = started.elapsed();
        // 3. The files, while the vault's WAL, which still holds the pages the keys were
        // deleted from, is written back and truncated.
        // Deleting a file is a blocking call of its own: run many at once.
        let blobs = self.blobs.clone();
        let deletes = applied.objects.clone().into_iter().map(move |object| {
            let blobs = blobs.clone();
            async move { blobs.delete(&object).await }
        });
        let files = futures::stream::iter(deletes)
            .buffer_unordered(32)
            .try_collect::<Vec<()>>();
        let (compacted, deleted) = futures::join!(self.vault.compact(), files);
        compacted?;
        deleted?;
        let files_done = started.elapsed();
        self.store.end_redaction(job.id.clone()).await?;
        // A sweep's batches leave the call log's WAL and the journal's anchor to the sweep,
        // which does both once when it ends (`finish_sweep`): truncating after each batch
        // copied every page back in line while the next batch waited, and halved the sweep.
        // The keys are gone and the vault's WAL truncated by now, batch by batch.
        if job.reason != RedactionReason::Retention {
            self.finish_sweep().await?;
        }
        tracing::debug!(
            job = %job.id,
            calls = applied.calls,
            keys_ms = keys_done.as_secs_f64() * 1e3,
            rows_ms = rows_done.as_secs_f64() * 1e3,
            files_and_vault_wal_ms = (files_done - rows_done).as_secs_f64() * 1e3,
            compact_ms = (started.elapsed() - files_done).as_secs_f64() * 1e3,
            "redaction steps"
        );
        Ok(applied)
    }

    /// Whether the caller's consent allows a recording of this call now (`check` as the
    /// account's recording mode asks). Checked before an upload writes a byte; the store
    /// checks again when it attaches the recording.
    pub async fn recording_allowed(
        &self,
        call: &CallRow,
        check: RecordingConsent,
    ) -> Result<bool, LogError> {
        let mut subjects: Vec<BlindIndex> = call.caller_bidx.into_iter().collect();
        if let Some(session) = call.session_id {
            subjects.extend(
                self.store
                    .sessions(vec![session])
                    .await?
                    .into_iter()
                    .filter_map(|s| s.visitor_bidx),
            );
        }
        let state = self
            .store
            .consent_state(call.account_id, subjects, Some(call.id))
            .await?;
        Ok(match check {
            RecordingConsent::Granted => state.granted(DataCategory::Recording),
            RecordingConsent::UnlessWithdrawn => !state.withdrawn(DataCategory::Recording),
        })
    }

    /// Records a consent event. A withdrawal removes the category's data of the subject
    /// everywhere in the account (calls on legal hold excepted), in the crash-safe order of a
    /// redaction, and journals it with reason `consent_withdrawn`.
    pub async fn record_consent(
        &self,
        account: AccountId,
        agency: Option<ringfence_core::AgencyId>,
        consent: NewConsent,
        actor: String,
    ) -> Result<ConsentOutcome, LogError> {
        let blind = self.blind_key(account).await?;
        let kind = consent.subject.kind();
        let bidx = blind.index(&kind.index_input(consent.subject.text()));
        let key = self.subject_key(account, &bidx).await?;
        let id = uuid::Uuid::now_v7().to_string();
        let row = ConsentRow {
            seq: 0,
            subject: seal(
                &key,
                &aad("consent", &id, "subject"),
                consent.subject.text().as_bytes(),
            ),
            id,
            account_id: account,
            subject_kind: kind,
            subject_bidx: bidx,
            category: consent.category,
            status: consent.status,
            notice_version: consent.notice_version,
            method: consent.method,
            at: Timestamp::now(),
            call_id: consent.call_id,
            recorded_by: actor.clone(),
        };
        let template = RedactionJob {
            id: uuid::Uuid::now_v7().to_string(),
            created_at: Timestamp::now(),
            reason: RedactionReason::ConsentWithdrawn,
            call_ids: Vec::new(),
            session_ids: Vec::new(),
            objects: Vec::new(),
            forget: Vec::new(),
            subjects: Vec::new(),
            audit: AuditEvent {
                actor,
                action: "consent.data_removed".into(),
                agency_id: agency,
                account_id: Some(account),
                subject: None,
                count: None,
                reason: Some(RedactionReason::ConsentWithdrawn.as_str().into()),
                details: "{}".into(),
            },
            categories: vec![consent.category],
        };
        let recorded = self
            .store
            .record_consent(row.clone(), Some(template))
            .await?;
        let removal = match recorded.job {
            Some(job) => {
                let applied = self.finish_redaction(job.clone()).await?;
                Some(RedactionReceipt {
                    redacted_calls: applied.calls,
                    redacted_sessions: applied.sessions,
                    call_ids: job.call_ids,
                    at: applied.at,
                    audit_seq: applied.audit_seq,
                    forgotten: false,
                    skipped_legal_hold: recorded.skipped_legal_hold,
                })
            }
            None => {
                self.anchor_journal().await?;
                None
            }
        };
        Ok(ConsentOutcome {
            consent: ConsentRow {
                seq: recorded.seq,
                ..row
            },
            audit_seq: recorded.audit_seq,
            removal,
            skipped_legal_hold: recorded.skipped_legal_hold,
        })
    }

    /// The blind index of a consent subject in `account`.
    pub async fn subject_index(
        &self,
        account: AccountId,
        subject: &ConsentSubject,
    ) -> Result<BlindIndex, LogError> {
        Ok(self
            .blind_key(account)
            .await?
            .index(&subject.kind().index_input(subject.text())))
    }

    /// Consent events of an account (optionally of one subject), in ledger order, opened.
    pub async fn consents(
        &self,
        account: AccountId,
        subject: Option<&ConsentSubject>,
        after_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Consent>, LogError> {
        let bidx = match subject {
            Some(s) => Some(self.subject_index(account, s).await?),
            None => None,
        };
        let rows = self.store.consents(account, bidx, after_seq, limit).await?;
        let mut ids: Vec<String> = rows
            .iter()
            .map(|r| subject_key_id(r.account_id, &r.subject_bidx))
            .collect();
        ids.sort();
        ids.dedup();
        let keys = self.vault.open_keys(ids).await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let subject = keys
                    .get(&subject_key_id(row.account_id, &row.subject_bidx))
                    .and_then(|k| open(k, &aad("consent", &row.id, "subject"), &row.subject).ok())
                    .and_then(|plain| String::from_utf8(plain.to_vec()).ok())
                    .and_then(|text| match row.subject_kind {
                        SubjectKind::Caller => E164::from_stored(&text).map(ConsentSubject::Caller),
                        SubjectKind::Visitor => {
                            Some(ConsentSubject::Visitor(ringfence_core::Personal::new(text)))
                        }
                    });
                Consent { row, subject }
            })
            .collect())
    }

    /// Records the journal's current head in the vault, apart from the journal, so that
    /// deleting its last entries or rewriting it whole does not verify.
    /// What ends every redaction but a sweep's batches, which leave it to the end of their
    /// sweep: the call log's WAL truncated (no page it held before the redaction, cleared
    /// ciphertext included, is left in it) and the journal anchored in the vault.
    pub async fn finish_sweep(&self) -> Result<(), LogError> {
        self.store.compact().await?;
        self.anchor_journal().await
    }

    pub async fn anchor_journal(&self) -> Result<(), LogError> {
        if let Some(last) = self.store.last_audit().await? {
            self.vault.anchor_journal(last.seq, last.hash).await?;
        }
        Ok(())
    }

    /// Finishes every redaction a crash interrupted. Run on start and in the background.
    pub async fn resume_redactions(&self) -> Result<usize, LogError> {
        let pending = self.store.pending_redactions().await?;
        let n = pending.len();
        for job in pending {
            let id = job.id.clone();
            self.finish_redaction(job).await?;
            tracing::info!(job = %id, "finished an interrupted redaction");
        }
        // An interrupted sweep's batches, finished here, end as the sweep would have.
        if n > 0 {
            self.finish_sweep().await?;
        }
        Ok(n)
    }

    pub async fn ping(&self) -> Result<(), LogError> {
        self.store.ping().await?;
        self.vault.ping().await?;
        Ok(())
    }
}

fn open_category<T>(
    key: &DataKey,
    id: &str,
    column: &str,
    sealed: &Option<Vec<u8>>,
    decode: impl Fn(&[u8]) -> Result<T, PayloadError>,
) -> Result<Option<T>, LogError> {
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    let plain = open(key, &aad("call", id, column), sealed)
        .map_err(|_| LogError::Corrupt(format!("call {id}"), "a sealed field does not open"))?;
    Ok(Some(decode(&plain)?))
}

fn open_visitor(
    row: &SessionRow,
    key: Option<&DataKey>,
) -> Result<Option<VisitorDetails>, LogError> {
    if row.redacted_at.is_some() {
        return Ok(None);
    }
    let (Some(key), Some(sealed)) = (key, &row.visitor) else {
        return Ok(if row.visitor.is_none() {
            Some(VisitorDetails::default())
        } else {
            None
        });
    };
    let id = row.id.to_string();
    let plain = open(key, &aad("session", &id, "visitor"), sealed)
        .map_err(|_| LogError::Corrupt(format!("session {id}"), "visitor does not open"))?;
    Ok(Some(payload::decode_visitor(&plain)?))
}

fn open_call(
    row: CallRow,
    keys: &HashMap<String, DataKey>,
    sessions: &HashMap<SessionId, SessionRow>,
) -> Result<Call, LogError> {
    let id = row.id.to_string();
    let redaction = match (row.redacted_at, row.redaction_reason) {
        (Some(at), Some(reason)) => Some(Redaction {
            at,
            reason,
            by: row.redacted_by.clone().unwrap_or_default(),
        }),
        _ => None,
    };
    let utm = Utm {
        source: row.utm_source.clone(),
        medium: row.utm_medium.clone(),
        campaign: row.utm_campaign.clone(),
    };
    let mut call = Call {
        id: row.id,
        account_id: row.account_id,
        external_id: row.external_id.clone(),
        started_at: row.started_at,
        created_at: row.created_at,
        duration_s: row.duration_s,
        direction: row.direction,
        status: row.status,
        tracking_number: row.tracking_number.clone(),
        source: row.source.clone(),
        campaign: row.campaign.clone(),
        utm,
        gdpr_scope: None,
        caller: None,
        location: None,
        recording: None,
        transcript: None,
        interaction: None,
        visitor: None,
        redaction,
        legal_hold: row.legal_hold.clone(),
    };
    // A redacted call, or one whose key is already destroyed (a redaction under way),
    // shows its facts only.
    let key = match (&call.redaction, keys.get(&id)) {
        (None, Some(key)) => key,
        _ => return Ok(call),
    };
    call.gdpr_scope = row.gdpr_scope;
    call.caller = Some(
        open_category(
            key,
            &id,
            "caller_identity",
            &row.caller_identity,
            payload::decode_identity,
        )?
        .unwrap_or_default(),
    );
    call.location = Some(
        open_category(
            key,
            &id,
            "caller_location",
            &row.caller_location,
            payload::decode_location,
        )?
        .unwrap_or_default(),
    );
    call.transcript = open_category(
        key,
        &id,
        "transcript",
        &row.transcript,
        payload::decode_transcript,
    )?
    .flatten();
    call.interaction = Some(
        open_category(
            key,
            &id,
            "interaction",
            &row.interaction,
            payload::decode_interaction,
        )?
        .unwrap_or_default(),
    );
    call.recording = row.recording.as_ref().map(|r| RecordingMeta {
        content_type: r.content_type.clone(),
        bytes: r.bytes,
    });
    if let Some(session) = row.session_id.and_then(|s| sessions.get(&s))
        && let Some(visitor) = open_visitor(session, keys.get(&session.id.to_string()))?
    {
        call.visitor = Some((session.id, visitor));
    }
    Ok(call)
}
