//! The call log on PostgreSQL.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};
use uuid::Uuid;

use ringfence_core::access::{Role, Scope};
use ringfence_core::call::{CallStatus, Direction, RedactionReason};
use ringfence_core::collection::{CollectionSettings, IpPolicy, RecordingMode};
use ringfence_core::consent::{ConsentMethod, ConsentStatus, SubjectKind};
use ringfence_core::recipients::{DeliveryState, EventKind};
use ringfence_core::retention::{RetentionPolicy, RetentionScope};
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, AgencyId, CallId, DeliveryId, RecipientId, SessionId, TokenId};
use ringfence_store::admission::{StatusMerge, StoredCall, merge_status};
use ringfence_store::effects;
use ringfence_store::records::*;
use ringfence_store::{LoginFailure, Store, StoreError, UserChange, UserRecord, WebSessionRecord};

use crate::connect::{DatabaseUrl, Schema, migrate};
use crate::{audit, backend, consent, ingest, is_unique_violation, redaction, users};

/// How many entries of `calls_live` one transaction of `retire_redacted` passes.
const RETIRE_WINDOW: i64 = 2000;

/// The call log in PostgreSQL: a pool of connections, each write one transaction (small
/// ingests share theirs: [`crate::group`]).
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    groups: crate::group::Groups,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the call log's database and applies its missing migrations (under the
    /// database's migration lock: see [`migrate`]).
    pub async fn open(url: &DatabaseUrl, max_connections: u32) -> Result<Self, StoreError> {
        migrate(url, Schema::CallLog).await?;
        let pool = url.pool(max_connections).await?;
        Ok(Self {
            groups: crate::group::Groups::start(pool.clone()),
            pool,
        })
    }

    /// Closes every connection (waiting for those in use to come back).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

pub(crate) fn hash32(bytes: Vec<u8>, column: &str) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Backend(format!("{column}: not 32 bytes")))
}

pub(crate) fn index16(bytes: Vec<u8>, column: &str) -> Result<[u8; 16], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Backend(format!("{column}: not 16 bytes")))
}

/// A uuid column as one of the domain's id types.
pub(crate) fn id<T: std::str::FromStr>(row: &PgRow, column: &str) -> Result<T, StoreError> {
    let uuid: Uuid = row.try_get(column).map_err(backend)?;
    uuid.to_string()
        .parse()
        .map_err(|_| StoreError::Backend(format!("{column}: not an id")))
}

pub(crate) fn opt_id<T: std::str::FromStr>(
    row: &PgRow,
    column: &str,
) -> Result<Option<T>, StoreError> {
    let uuid: Option<Uuid> = row.try_get(column).map_err(backend)?;
    uuid.map(|u| {
        u.to_string()
            .parse()
            .map_err(|_| StoreError::Backend(format!("{column}: not an id")))
    })
    .transpose()
}

pub(crate) fn ts(row: &PgRow, column: &str) -> Result<Timestamp, StoreError> {
    Ok(Timestamp::from_millis(
        row.try_get(column).map_err(backend)?,
    ))
}

pub(crate) fn opt_ts(row: &PgRow, column: &str) -> Result<Option<Timestamp>, StoreError> {
    Ok(row
        .try_get::<Option<i64>, _>(column)
        .map_err(backend)?
        .map(Timestamp::from_millis))
}

pub(crate) fn get<'r, T>(row: &'r PgRow, column: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column).map_err(backend)
}

/// A non-negative count or number of days, as PostgreSQL's `bigint` holds it.
fn u32_from(value: i64, column: &str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Backend(format!("{column}: out of range")))
}

pub(crate) fn role(row: &PgRow) -> Result<Role, StoreError> {
    let text: String = get(row, "role")?;
    Role::parse(&text).ok_or_else(|| StoreError::Backend("role: unknown".into()))
}

/// A token's or user's scope from its `(agency_id, account_id)` columns.
pub(crate) fn scope(row: &PgRow) -> Result<Scope, StoreError> {
    let agency: Option<AgencyId> = opt_id(row, "agency_id")?;
    let account: Option<AccountId> = opt_id(row, "account_id")?;
    Ok(match (agency, account) {
        (Some(agency), Some(account)) => Scope::Account { agency, account },
        (Some(agency), None) => Scope::Agency(agency),
        _ => Scope::Installation,
    })
}

pub(crate) fn scope_columns(scope: Scope) -> (Option<Uuid>, Option<Uuid>) {
    match scope {
        Scope::Installation => (None, None),
        Scope::Agency(a) => (Some(a.as_uuid()), None),
        Scope::Account { agency, account } => (Some(agency.as_uuid()), Some(account.as_uuid())),
    }
}

macro_rules! agency_columns {
    () => {
        "id, name, redaction_enabled, max_retention_days, created_at"
    };
}

fn agency_from(row: &PgRow) -> Result<AgencyRecord, StoreError> {
    Ok(AgencyRecord {
        id: id(row, "id")?,
        name: get(row, "name")?,
        redaction_enabled: get(row, "redaction_enabled")?,
        max_retention_days: get::<Option<i64>>(row, "max_retention_days")?
            .map(|d| u32_from(d, "max_retention_days"))
            .transpose()?,
        created_at: ts(row, "created_at")?,
    })
}

macro_rules! account_columns {
    () => {
        "id, agency_id, name, collect_caller_name, collect_caller_location, recording_gdpr, recording_other, collect_transcription, visitor_ip, collect_visitor_details, retention_days, retention_scope, retention_categories, twilio_auth_token, twilio_delete_recordings, twilio_account_sid, created_at"
    };
}

fn account_from(row: &PgRow) -> Result<AccountRecord, StoreError> {
    let mode = |column: &str| -> Result<RecordingMode, StoreError> {
        RecordingMode::parse(&get::<String>(row, column)?)
            .ok_or_else(|| StoreError::Backend(format!("{column}: unknown recording mode")))
    };
    let visitor_ip: String = get(row, "visitor_ip")?;
    let scope: String = get(row, "retention_scope")?;
    let categories: String = get(row, "retention_categories")?;
    Ok(AccountRecord {
        id: id(row, "id")?,
        agency_id: id(row, "agency_id")?,
        name: get(row, "name")?,
        collection: CollectionSettings {
            caller_name: get(row, "collect_caller_name")?,
            caller_location: get(row, "collect_caller_location")?,
            recording_gdpr: mode("recording_gdpr")?,
            recording_other: mode("recording_other")?,
            transcription: get(row, "collect_transcription")?,
            visitor_ip: IpPolicy::parse(&visitor_ip)
                .ok_or_else(|| StoreError::Backend("visitor_ip: unknown policy".into()))?,
            visitor_details: get(row, "collect_visitor_details")?,
        },
        twilio_auth_token: get(row, "twilio_auth_token")?,
        twilio_delete_recordings: get(row, "twilio_delete_recordings")?,
        twilio_account_sid: get(row, "twilio_account_sid")?,
        retention: RetentionPolicy {
            after_days: get::<Option<i64>>(row, "retention_days")?
                .map(|d| u32_from(d, "retention_days"))
                .transpose()?,
            scope: RetentionScope::parse(&scope)
                .ok_or_else(|| StoreError::Backend("retention_scope: unknown".into()))?,
            categories: RetentionPolicy::parse_categories(&categories),
        },
        created_at: ts(row, "created_at")?,
    })
}

macro_rules! token_columns {
    () => {
        "id, hash, role, agency_id, account_id, personal_data, label, created_at, expires_at, revoked_at, last_used_at"
    };
}

fn token_from(row: &PgRow) -> Result<TokenRecord, StoreError> {
    Ok(TokenRecord {
        id: id(row, "id")?,
        hash: hash32(get(row, "hash")?, "tokens.hash")?,
        role: role(row)?,
        scope: scope(row)?,
        personal_data: get(row, "personal_data")?,
        label: get(row, "label")?,
        created_at: ts(row, "created_at")?,
        expires_at: opt_ts(row, "expires_at")?,
        revoked_at: opt_ts(row, "revoked_at")?,
        last_used_at: opt_ts(row, "last_used_at")?,
    })
}

macro_rules! download_columns {
    () => {
        "id, account_id, call_sid, recording_sid, url, provider_account, state, attempts, next_attempt_at, outcome, created_at"
    };
}

fn download_from(row: &PgRow) -> Result<DownloadJob, StoreError> {
    Ok(DownloadJob {
        id: get(row, "id")?,
        account_id: id(row, "account_id")?,
        call_sid: get(row, "call_sid")?,
        recording_sid: get(row, "recording_sid")?,
        url: get(row, "url")?,
        provider_account: get(row, "provider_account")?,
        state: get(row, "state")?,
        attempts: u32_from(get(row, "attempts")?, "attempts")?,
        next_attempt_at: ts(row, "next_attempt_at")?,
        outcome: get(row, "outcome")?,
        created_at: ts(row, "created_at")?,
    })
}

fn notice_from(row: &PgRow) -> Result<NoticeRow, StoreError> {
    let category: String = get(row, "category")?;
    Ok(NoticeRow {
        account_id: id(row, "account_id")?,
        category: ringfence_core::DataCategory::parse(&category)
            .ok_or_else(|| StoreError::Backend("notices.category: unknown".into()))?,
        version: u32_from(get(row, "version")?, "version")?,
        text: get(row, "text")?,
        created_at: ts(row, "created_at")?,
        used_at: opt_ts(row, "used_at")?,
    })
}

macro_rules! recipient_columns {
    () => {
        "id, account_id, name, url, secret, events, personal_data, created_at, updated_at, disabled_at"
    };
}

fn recipient_from(row: &PgRow) -> Result<RecipientRow, StoreError> {
    let events: Vec<String> = get(row, "events")?;
    Ok(RecipientRow {
        id: id(row, "id")?,
        account_id: id(row, "account_id")?,
        name: get(row, "name")?,
        url: get(row, "url")?,
        secret: get(row, "secret")?,
        events: events
            .iter()
            .map(|e| {
                EventKind::parse(e)
                    .ok_or_else(|| StoreError::Backend("recipients.events: unknown".into()))
            })
            .collect::<Result<_, _>>()?,
        personal_data: get(row, "personal_data")?,
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
        disabled_at: opt_ts(row, "disabled_at")?,
    })
}

macro_rules! delivery_columns {
    () => {
        "id, event_id, event, recipient_id, account_id, call_id, payload, created_at, state, attempts, next_attempt_at, last_attempt_at, last_status, last_error, done_at"
    };
}

fn delivery_from(row: &PgRow) -> Result<DeliveryRow, StoreError> {
    let event: String = get(row, "event")?;
    let state: String = get(row, "state")?;
    Ok(DeliveryRow {
        id: id(row, "id")?,
        event_id: id(row, "event_id")?,
        event: EventKind::parse(&event)
            .ok_or_else(|| StoreError::Backend("deliveries.event: unknown".into()))?,
        recipient_id: id(row, "recipient_id")?,
        account_id: id(row, "account_id")?,
        call_id: opt_id(row, "call_id")?,
        payload: get(row, "payload")?,
        created_at: ts(row, "created_at")?,
        state: DeliveryState::parse(&state)
            .ok_or_else(|| StoreError::Backend("deliveries.state: unknown".into()))?,
        attempts: u32_from(get(row, "attempts")?, "attempts")?,
        next_attempt_at: ts(row, "next_attempt_at")?,
        last_attempt_at: opt_ts(row, "last_attempt_at")?,
        last_status: get::<Option<i32>>(row, "last_status")?
            .map(|s| {
                u16::try_from(s)
                    .map_err(|_| StoreError::Backend("last_status: out of range".into()))
            })
            .transpose()?,
        last_error: get(row, "last_error")?,
        done_at: opt_ts(row, "done_at")?,
    })
}

macro_rules! call_columns {
    () => {
        "id, account_id, external_id, started_at, created_at, duration_s, direction, status, tracking_number, source, campaign, utm_source, utm_medium, utm_campaign, gdpr_scope, caller_bidx, session_id, caller_identity, caller_location, transcript, interaction, recording_object, recording_content_type, recording_bytes, redacted_at, redaction_reason, redacted_by, legal_hold_at, legal_hold_reason, legal_hold_by"
    };
}

fn reason_of(row: &PgRow) -> Result<Option<RedactionReason>, StoreError> {
    get::<Option<String>>(row, "redaction_reason")?
        .map(|r| {
            RedactionReason::parse(&r)
                .ok_or_else(|| StoreError::Backend("redaction_reason: unknown".into()))
        })
        .transpose()
}

fn opt_index(row: &PgRow, column: &str) -> Result<Option<[u8; 16]>, StoreError> {
    get::<Option<Vec<u8>>>(row, column)?
        .map(|b| index16(b, column))
        .transpose()
}

fn call_from(row: &PgRow) -> Result<CallRow, StoreError> {
    let direction: Option<String> = get(row, "direction")?;
    let status: Option<String> = get(row, "status")?;
    let recording_object: Option<String> = get(row, "recording_object")?;
    let recording = match recording_object {
        Some(object) => Some(RecordingRow {
            object,
            content_type: get::<Option<String>>(row, "recording_content_type")?.unwrap_or_default(),
            bytes: get::<Option<i64>>(row, "recording_bytes")?
                .map(|b| {
                    u64::try_from(b)
                        .map_err(|_| StoreError::Backend("recording_bytes: out of range".into()))
                })
                .transpose()?
                .unwrap_or(0),
        }),
        None => None,
    };
    let legal_hold = match opt_ts(row, "legal_hold_at")? {
        Some(at) => Some(LegalHold {
            at,
            reason: get::<Option<String>>(row, "legal_hold_reason")?.unwrap_or_default(),
            by: get::<Option<String>>(row, "legal_hold_by")?.unwrap_or_default(),
        }),
        None => None,
    };
    Ok(CallRow {
        id: id(row, "id")?,
        account_id: id(row, "account_id")?,
        external_id: get(row, "external_id")?,
        started_at: ts(row, "started_at")?,
        created_at: ts(row, "created_at")?,
        duration_s: get::<Option<i64>>(row, "duration_s")?
            .map(|d| u32_from(d, "duration_s"))
            .transpose()?,
        direction: direction
            .map(|d| {
                Direction::parse(&d).ok_or_else(|| StoreError::Backend("direction: unknown".into()))
            })
            .transpose()?,
        status: status
            .map(|s| {
                CallStatus::parse(&s).ok_or_else(|| StoreError::Backend("status: unknown".into()))
            })
            .transpose()?,
        tracking_number: get(row, "tracking_number")?,
        source: get(row, "source")?,
        campaign: get(row, "campaign")?,
        utm_source: get(row, "utm_source")?,
        utm_medium: get(row, "utm_medium")?,
        utm_campaign: get(row, "utm_campaign")?,
        gdpr_scope: get(row, "gdpr_scope")?,
        caller_bidx: opt_index(row, "caller_bidx")?,
        session_id: opt_id(row, "session_id")?,
        caller_identity: get(row, "caller_identity")?,
        caller_location: get(row, "caller_location")?,
        transcript: get(row, "transcript")?,
        interaction: get(row, "interaction")?,
        recording,
        redacted_at: opt_ts(row, "redacted_at")?,
        redaction_reason: reason_of(row)?,
        redacted_by: get(row, "redacted_by")?,
        legal_hold,
    })
}

macro_rules! session_columns {
    () => {
        "id, account_id, external_id, started_at, created_at, utm_source, utm_medium, utm_campaign, visitor, gdpr_scope, visitor_bidx, redacted_at, redaction_reason"
    };
}

fn session_from(row: &PgRow) -> Result<SessionRow, StoreError> {
    Ok(SessionRow {
        id: id(row, "id")?,
        account_id: id(row, "account_id")?,
        external_id: get(row, "external_id")?,
        started_at: ts(row, "started_at")?,
        created_at: ts(row, "created_at")?,
        utm_source: get(row, "utm_source")?,
        utm_medium: get(row, "utm_medium")?,
        utm_campaign: get(row, "utm_campaign")?,
        visitor: get(row, "visitor")?,
        gdpr_scope: get(row, "gdpr_scope")?,
        visitor_bidx: opt_index(row, "visitor_bidx")?,
        redacted_at: opt_ts(row, "redacted_at")?,
        redaction_reason: reason_of(row)?,
    })
}

/// Rows of `ids` in the order asked (absent ones left out).
fn in_order<T, K: PartialEq>(mut rows: Vec<T>, ids: &[K], key: impl Fn(&T) -> K) -> Vec<T> {
    rows.sort_by_key(|r| {
        let k = key(r);
        ids.iter().position(|i| *i == k).unwrap_or(usize::MAX)
    });
    rows
}

/// `(account, blind index)` pairs as the two arrays a job row keeps them in.
fn split_pairs(pairs: &[(AccountId, [u8; 16])]) -> (Vec<Uuid>, Vec<Vec<u8>>) {
    pairs.iter().map(|(a, b)| (a.as_uuid(), b.to_vec())).unzip()
}

fn zip_pairs(
    row: &PgRow,
    accounts: &str,
    indexes: &str,
) -> Result<Vec<(AccountId, [u8; 16])>, StoreError> {
    let accounts: Vec<Uuid> = get(row, accounts)?;
    let indexes: Vec<Vec<u8>> = get(row, indexes)?;
    accounts
        .into_iter()
        .zip(indexes)
        .map(|(a, b)| Ok((AccountId::from_uuid(a), index16(b, "redaction_jobs pairs")?)))
        .collect()
}

fn job_from(row: &PgRow) -> Result<RedactionJob, StoreError> {
    let call_ids: Vec<Uuid> = get(row, "call_ids")?;
    let session_ids: Vec<Uuid> = get(row, "session_ids")?;
    let categories: Vec<String> = get(row, "categories")?;
    Ok(RedactionJob {
        id: get(row, "id")?,
        created_at: ts(row, "created_at")?,
        reason: reason_of_job(row)?,
        call_ids: call_ids.into_iter().map(CallId::from_uuid).collect(),
        session_ids: session_ids.into_iter().map(SessionId::from_uuid).collect(),
        objects: get(row, "objects")?,
        forget: zip_pairs(row, "forget_accounts", "forget_bidx")?,
        subjects: zip_pairs(row, "subject_accounts", "subject_bidx")?,
        audit: AuditEvent {
            actor: get(row, "audit_actor")?,
            action: get(row, "audit_action")?,
            agency_id: opt_id(row, "audit_agency")?,
            account_id: opt_id(row, "audit_account")?,
            subject: get(row, "audit_subject")?,
            count: get::<Option<i64>>(row, "audit_count")?.map(|c| c as u64),
            reason: get(row, "audit_reason")?,
            details: get(row, "audit_details")?,
        },
        categories: categories
            .iter()
            .map(|c| {
                ringfence_core::DataCategory::parse(c)
                    .ok_or_else(|| StoreError::Backend("redaction_jobs.categories: unknown".into()))
            })
            .collect::<Result<_, _>>()?,
    })
}

fn reason_of_job(row: &PgRow) -> Result<RedactionReason, StoreError> {
    let text: String = get(row, "reason")?;
    RedactionReason::parse(&text).ok_or_else(|| StoreError::Backend("reason: unknown".into()))
}

macro_rules! consent_columns {
    () => {
        "seq, id, account_id, subject_kind, subject_bidx, subject, category, status, notice_version, method, at, call_id, recorded_by"
    };
}

fn consent_from(row: &PgRow) -> Result<ConsentRow, StoreError> {
    let unknown = |column: &str| StoreError::Backend(format!("consents.{column}: unknown"));
    let kind: String = get(row, "subject_kind")?;
    let category: String = get(row, "category")?;
    let status: String = get(row, "status")?;
    let method: String = get(row, "method")?;
    Ok(ConsentRow {
        seq: get(row, "seq")?,
        id: get(row, "id")?,
        account_id: id(row, "account_id")?,
        subject_kind: SubjectKind::parse(&kind).ok_or_else(|| unknown("subject_kind"))?,
        subject_bidx: index16(get(row, "subject_bidx")?, "consents.subject_bidx")?,
        subject: get(row, "subject")?,
        category: ringfence_core::DataCategory::parse(&category)
            .ok_or_else(|| unknown("category"))?,
        status: ConsentStatus::parse(&status).ok_or_else(|| unknown("status"))?,
        notice_version: get::<Option<i64>>(row, "notice_version")?
            .map(|v| u32_from(v, "notice_version"))
            .transpose()?,
        method: ConsentMethod::parse(&method).ok_or_else(|| unknown("method"))?,
        at: ts(row, "at")?,
        call_id: opt_id(row, "call_id")?,
        recorded_by: get(row, "recorded_by")?,
    })
}

/// The consent state of `subjects` (and of `call`'s own events), read on `conn` — inside the
/// transaction that acts on it, where it decides what is written.
pub(crate) async fn consent_state_in(
    conn: &mut sqlx::PgConnection,
    account: AccountId,
    subjects: &[ringfence_crypto::BlindIndex],
    call: Option<CallId>,
) -> Result<ringfence_core::consent::ConsentState, StoreError> {
    let subjects: Vec<Vec<u8>> = subjects.iter().map(|b| b.to_vec()).collect();
    let events: Vec<(String, String)> = sqlx::query_as(
        "SELECT category, status FROM consents
         WHERE account_id = $1 AND (subject_bidx = ANY($2) OR call_id = $3)
         ORDER BY seq",
    )
    .bind(account.as_uuid())
    .bind(&subjects)
    .bind(call.map(|c| c.as_uuid()))
    .fetch_all(conn)
    .await
    .map_err(backend)?;
    let events = events
        .iter()
        .map(|(category, status)| {
            Ok((
                ringfence_core::DataCategory::parse(category)
                    .ok_or_else(|| StoreError::Backend("consents.category: unknown".into()))?,
                ConsentStatus::parse(status)
                    .ok_or_else(|| StoreError::Backend("consents.status: unknown".into()))?,
            ))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    // How events fold into a state is the domain's.
    Ok(ringfence_core::consent::ConsentState::from_events(events))
}

/// The account and the filters of `q` (not its cursor or limit). Only the filters asked for
/// are in the statement, so that each shape gets a plan that uses its index (a generic plan
/// of `$n IS NULL OR …` would not).
fn push_call_filters(sql: &mut sqlx::QueryBuilder<sqlx::Postgres>, q: &CallQuery) {
    sql.push_bind(q.account_id.as_uuid());
    if let Some(from) = q.from {
        sql.push(" AND started_at >= ").push_bind(from.millis());
    }
    if let Some(to) = q.to {
        sql.push(" AND started_at < ").push_bind(to.millis());
    }
    if let Some(tracking) = &q.tracking_number {
        sql.push(" AND tracking_number = ")
            .push_bind(tracking.clone());
    }
    if let Some(source) = &q.source {
        sql.push(" AND source = ").push_bind(source.clone());
    }
    if let Some(status) = q.status {
        sql.push(" AND status = ").push_bind(status.as_str());
    }
    match q.redacted {
        Some(true) => {
            sql.push(" AND redacted_at IS NOT NULL");
        }
        Some(false) => {
            sql.push(" AND redacted_at IS NULL");
        }
        None => {}
    }
    if let Some(bidx) = q.caller_bidx {
        sql.push(" AND caller_bidx = ").push_bind(bidx.to_vec());
    }
}

/// Records a redaction job (its own statement, or part of the transaction that chose it).
pub(crate) async fn insert_job(
    conn: &mut sqlx::PgConnection,
    job: &RedactionJob,
) -> Result<(), StoreError> {
    let (forget_accounts, forget_bidx) = split_pairs(&job.forget);
    let (subject_accounts, subject_bidx) = split_pairs(&job.subjects);
    let call_ids: Vec<Uuid> = job.call_ids.iter().map(|c| c.as_uuid()).collect();
    let session_ids: Vec<Uuid> = job.session_ids.iter().map(|s| s.as_uuid()).collect();
    let categories: Vec<&str> = job.categories.iter().map(|c| c.as_str()).collect();
    let a = &job.audit;
    sqlx::query(
            "INSERT INTO redaction_jobs (id, created_at, reason, call_ids, session_ids, objects, forget_accounts, forget_bidx, subject_accounts, subject_bidx, categories, audit_actor, audit_action, audit_agency, audit_account, audit_subject, audit_count, audit_reason, audit_details)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
        )
        .bind(&job.id)
        .bind(job.created_at.millis())
        .bind(job.reason.as_str())
        .bind(&call_ids)
        .bind(&session_ids)
        .bind(&job.objects)
        .bind(&forget_accounts)
        .bind(&forget_bidx)
        .bind(&subject_accounts)
        .bind(&subject_bidx)
        .bind(&categories)
        .bind(&a.actor)
        .bind(&a.action)
        .bind(a.agency_id.map(|x| x.as_uuid()))
        .bind(a.account_id.map(|x| x.as_uuid()))
        .bind(&a.subject)
        .bind(a.count.map(|c| c as i64))
        .bind(&a.reason)
        .bind(&a.details)
        .execute(conn)
        .await
        .map_err(crate::exists_or_backend("redaction job"))?;
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    async fn create_agency(&self, a: AgencyRecord) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO agencies (",
            agency_columns!(),
            ") VALUES ($1, $2, $3, $4, $5)"
        ))
        .bind(a.id.as_uuid())
        .bind(&a.name)
        .bind(a.redaction_enabled)
        .bind(a.max_retention_days.map(i64::from))
        .bind(a.created_at.millis())
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::AlreadyExists("agency")
            } else {
                backend(e)
            }
        })?;
        Ok(())
    }

    async fn agency(&self, id: AgencyId) -> Result<Option<AgencyRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            agency_columns!(),
            " FROM agencies WHERE id = $1"
        ))
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .as_ref()
        .map(agency_from)
        .transpose()
    }

    async fn update_agency(&self, a: AgencyRecord) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE agencies SET name = $2, redaction_enabled = $3, max_retention_days = $4 WHERE id = $1",
        )
        .bind(a.id.as_uuid())
        .bind(&a.name)
        .bind(a.redaction_enabled)
        .bind(a.max_retention_days.map(i64::from))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("agency"));
        }
        Ok(())
    }

    async fn list_agencies(&self) -> Result<Vec<AgencyRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            agency_columns!(),
            " FROM agencies ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(agency_from)
        .collect()
    }

    async fn create_account(&self, a: AccountRecord) -> Result<(), StoreError> {
        let c = &a.collection;
        let inserted = sqlx::query(concat!(
            "INSERT INTO accounts (",
            account_columns!(),
            ") SELECT $1, id, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17
               FROM agencies WHERE id = $2"
        ))
        .bind(a.id.as_uuid())
        .bind(a.agency_id.as_uuid())
        .bind(&a.name)
        .bind(c.caller_name)
        .bind(c.caller_location)
        .bind(c.recording_gdpr.as_str())
        .bind(c.recording_other.as_str())
        .bind(c.transcription)
        .bind(c.visitor_ip.as_str())
        .bind(c.visitor_details)
        .bind(a.retention.after_days.map(i64::from))
        .bind(a.retention.scope.as_str())
        .bind(a.retention.categories_text())
        .bind(&a.twilio_auth_token)
        .bind(a.twilio_delete_recordings)
        .bind(&a.twilio_account_sid)
        .bind(a.created_at.millis())
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::AlreadyExists("account")
            } else {
                backend(e)
            }
        })?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::NotFound("agency"));
        }
        Ok(())
    }

    async fn account(&self, id: AccountId) -> Result<Option<AccountRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            account_columns!(),
            " FROM accounts WHERE id = $1"
        ))
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .as_ref()
        .map(account_from)
        .transpose()
    }

    async fn update_account(&self, a: AccountRecord) -> Result<(), StoreError> {
        let c = &a.collection;
        let done = sqlx::query(
            "UPDATE accounts SET name = $2, collect_caller_name = $3, collect_caller_location = $4,
                recording_gdpr = $5, recording_other = $6, collect_transcription = $7, visitor_ip = $8,
                collect_visitor_details = $9, retention_days = $10, retention_scope = $11,
                retention_categories = $12, twilio_auth_token = $13, twilio_delete_recordings = $14,
                twilio_account_sid = $15
             WHERE id = $1",
        )
        .bind(a.id.as_uuid())
        .bind(&a.name)
        .bind(c.caller_name)
        .bind(c.caller_location)
        .bind(c.recording_gdpr.as_str())
        .bind(c.recording_other.as_str())
        .bind(c.transcription)
        .bind(c.visitor_ip.as_str())
        .bind(c.visitor_details)
        .bind(a.retention.after_days.map(i64::from))
        .bind(a.retention.scope.as_str())
        .bind(a.retention.categories_text())
        .bind(&a.twilio_auth_token)
        .bind(a.twilio_delete_recordings)
        .bind(&a.twilio_account_sid)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("account"));
        }
        Ok(())
    }

    async fn list_accounts(
        &self,
        agency: Option<AgencyId>,
    ) -> Result<Vec<AccountRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            account_columns!(),
            " FROM accounts WHERE $1::uuid IS NULL OR agency_id = $1 ORDER BY created_at, id"
        ))
        .bind(agency.map(|a| a.as_uuid()))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(account_from)
        .collect()
    }

    async fn create_token(&self, t: TokenRecord) -> Result<(), StoreError> {
        let (agency, account) = scope_columns(t.scope);
        sqlx::query(concat!(
            "INSERT INTO tokens (",
            token_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(t.id.as_uuid())
        .bind(t.hash.as_slice())
        .bind(t.role.as_str())
        .bind(agency)
        .bind(account)
        .bind(t.personal_data)
        .bind(&t.label)
        .bind(t.created_at.millis())
        .bind(t.expires_at.map(Timestamp::millis))
        .bind(t.revoked_at.map(Timestamp::millis))
        .bind(t.last_used_at.map(Timestamp::millis))
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::AlreadyExists("token")
            } else {
                backend(e)
            }
        })?;
        Ok(())
    }

    async fn token_by_hash(&self, hash: [u8; 32]) -> Result<Option<TokenRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM tokens WHERE hash = $1"
        ))
        .bind(hash.as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .as_ref()
        .map(token_from)
        .transpose()
    }

    async fn token_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tokens")
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(n as u64)
    }

    async fn token(&self, id: TokenId) -> Result<Option<TokenRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM tokens WHERE id = $1"
        ))
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .as_ref()
        .map(token_from)
        .transpose()
    }

    async fn revoke_token(
        &self,
        id: TokenId,
        at: Timestamp,
        event: AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let revoked =
            sqlx::query("UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id.as_uuid())
                .bind(at.millis())
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected()
                > 0;
        if revoked {
            audit::append(&mut tx, &event).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(revoked)
    }

    async fn touch_token(&self, id: TokenId, at: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE tokens SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
        )
        .bind(id.as_uuid())
        .bind(at.millis())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn insert_calls(&self, calls: Vec<NewCallRow>) -> Result<InsertReport, StoreError> {
        if calls.len() <= crate::group::GROUPED_MAX {
            self.groups.insert(calls).await
        } else {
            crate::group::insert_alone(&self.pool, &calls).await
        }
    }

    async fn insert_session(
        &self,
        session: SessionRow,
    ) -> Result<(Inserted<SessionId>, bool), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let stored = ingest::insert_session(&mut tx, session).await?;
        tx.commit().await.map_err(backend)?;
        Ok(stored)
    }

    async fn call(&self, id: CallId) -> Result<Option<CallRow>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            call_columns!(),
            " FROM calls WHERE id = $1"
        ))
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .as_ref()
        .map(call_from)
        .transpose()
    }

    async fn calls(&self, q: CallQuery) -> Result<Vec<CallRow>, StoreError> {
        let mut sql = sqlx::QueryBuilder::<sqlx::Postgres>::new(concat!(
            "SELECT ",
            call_columns!(),
            " FROM calls WHERE account_id = "
        ));
        push_call_filters(&mut sql, &q);
        if let Some((at, after)) = q.after {
            sql.push(" AND (started_at, id) < (")
                .push_bind(at.millis())
                .push(", ")
                .push_bind(after.as_uuid())
                .push(")");
        }
        sql.push(" ORDER BY started_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(q.limit));
        sql.build()
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(call_from)
            .collect()
    }

    async fn count_calls(&self, q: CallQuery) -> Result<u64, StoreError> {
        let mut sql = sqlx::QueryBuilder::<sqlx::Postgres>::new(
            "SELECT count(*) FROM calls WHERE account_id = ",
        );
        push_call_filters(&mut sql, &q);
        let n: i64 = sql
            .build_query_scalar()
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        u64::try_from(n).map_err(|_| StoreError::Backend("count: out of range".into()))
    }

    async fn sessions(&self, ids: Vec<SessionId>) -> Result<Vec<SessionRow>, StoreError> {
        let uuids: Vec<Uuid> = ids.iter().map(|s| s.as_uuid()).collect();
        let rows = sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE id = ANY($1)"
        ))
        .bind(&uuids)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(session_from)
        .collect::<Result<Vec<_>, _>>()?;
        Ok(in_order(rows, &ids, |r| r.id))
    }

    async fn set_recording(
        &self,
        call: CallId,
        recording: Option<RecordingRow>,
        consent_check: Option<RecordingConsent>,
    ) -> Result<Option<RecordingRow>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let previous = ingest::set_recording(&mut tx, call, recording, consent_check).await?;
        tx.commit().await.map_err(backend)?;
        Ok(previous)
    }

    async fn call_by_external(
        &self,
        account: AccountId,
        external_id: String,
    ) -> Result<Option<CallRow>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            call_columns!(),
            " FROM calls WHERE account_id = $1 AND external_id = $2"
        ))
        .bind(account.as_uuid())
        .bind(&external_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .as_ref()
        .map(call_from)
        .transpose()
    }

    async fn update_call(&self, u: CallUpdate) -> Result<CallUpdated, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // The row stays locked until the merge is written: two deliveries of one call merge
        // one after the other.
        let row = sqlx::query(
            "SELECT account_id, status, started_at, duration_s, direction, redacted_at, caller_bidx, caller_identity, caller_location
             FROM calls WHERE id = $1 FOR UPDATE",
        )
        .bind(u.id.as_uuid())
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?
        .ok_or(StoreError::NotFound("call"))?;
        let status: Option<String> = get(&row, "status")?;
        let direction: Option<String> = get(&row, "direction")?;
        let stored = StoredCall {
            account_id: id(&row, "account_id")?,
            status: status
                .map(|s| {
                    CallStatus::parse(&s)
                        .ok_or_else(|| StoreError::Backend("status: unknown".into()))
                })
                .transpose()?,
            started_at: ts(&row, "started_at")?,
            duration_s: get::<Option<i64>>(&row, "duration_s")?
                .map(|d| u32_from(d, "duration_s"))
                .transpose()?,
            direction: direction
                .map(|d| {
                    Direction::parse(&d)
                        .ok_or_else(|| StoreError::Backend("direction: unknown".into()))
                })
                .transpose()?,
            redacted: opt_ts(&row, "redacted_at")?.is_some(),
            caller_bidx: opt_index(&row, "caller_bidx")?,
            caller_identity: get(&row, "caller_identity")?,
            caller_location: get(&row, "caller_location")?,
        };
        // The caller's consent, read in this transaction.
        let consent = match stored.caller_bidx {
            Some(bidx) if !stored.redacted => {
                consent_state_in(&mut tx, stored.account_id, &[bidx], None).await?
            }
            _ => Default::default(),
        };
        // What the status changes is the shared rule's.
        let merged = match merge_status(&stored, &u, &consent) {
            StatusMerge::Unchanged => return Ok(CallUpdated::Unchanged),
            StatusMerge::Stale => return Ok(CallUpdated::Stale),
            StatusMerge::Apply(merged) => merged,
        };
        sqlx::query(
            "UPDATE calls SET status = $3, started_at = $4, duration_s = $5, direction = $6,
                    caller_identity = $7, caller_location = $8
             WHERE account_id = $1 AND id = $2 AND redacted_at IS NULL",
        )
        .bind(stored.account_id.as_uuid())
        .bind(u.id.as_uuid())
        .bind(merged.status.map(CallStatus::as_str))
        .bind(merged.started_at.millis())
        .bind(merged.duration_s.map(i64::from))
        .bind(merged.direction.map(Direction::as_str))
        .bind(&merged.caller_identity)
        .bind(&merged.caller_location)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(CallUpdated::Applied)
    }

    async fn referenced_recordings(&self, objects: Vec<String>) -> Result<Vec<String>, StoreError> {
        // Objects a redaction job still has to delete count as referenced: the job deletes
        // them itself.
        sqlx::query_scalar(
            "SELECT o FROM unnest($1::text[]) AS o
             WHERE EXISTS (SELECT 1 FROM calls c WHERE c.recording_object = o)
                OR EXISTS (SELECT 1 FROM redaction_jobs j WHERE j.objects @> ARRAY[o])",
        )
        .bind(&objects)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)
    }

    async fn enqueue_download(&self, job: DownloadJob) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO recording_downloads (id, account_id, call_sid, recording_sid, url, provider_account, state, attempts, next_attempt_at, outcome, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, NULL, $8, $8)
             ON CONFLICT (account_id, recording_sid) DO NOTHING",
        )
        .bind(&job.id)
        .bind(job.account_id.as_uuid())
        .bind(&job.call_sid)
        .bind(&job.recording_sid)
        .bind(&job.url)
        .bind(&job.provider_account)
        .bind(job.next_attempt_at.millis())
        .bind(job.created_at.millis())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn due_downloads(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<DownloadJob>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            download_columns!(),
            " FROM recording_downloads WHERE state = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2"
        ))
        .bind(now.millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(download_from)
        .collect()
    }

    async fn downloads(&self, account: AccountId) -> Result<Vec<DownloadJob>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            download_columns!(),
            " FROM recording_downloads WHERE account_id = $1 ORDER BY created_at, id"
        ))
        .bind(account.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(download_from)
        .collect()
    }

    async fn update_download(
        &self,
        job: DownloadJob,
        event: Option<AuditEvent>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query(
            "UPDATE recording_downloads SET state = $3, attempts = $4, next_attempt_at = $5, outcome = $6, updated_at = $7
             WHERE account_id = $1 AND id = $2",
        )
        .bind(job.account_id.as_uuid())
        .bind(&job.id)
        .bind(&job.state)
        .bind(i64::from(job.attempts))
        .bind(job.next_attempt_at.millis())
        .bind(&job.outcome)
        .bind(Timestamp::now().millis())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if let Some(event) = event {
            audit::append(&mut tx, &event).await?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn create_notice(
        &self,
        account: AccountId,
        category: ringfence_core::DataCategory,
        text: String,
        audit: AuditEvent,
    ) -> Result<NoticeRow, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // Versions of one account are numbered one at a time: the account's row is locked
        // (without blocking the rows that refer to it) until the new version commits.
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM accounts WHERE id = $1 FOR NO KEY UPDATE")
                .bind(account.as_uuid())
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
        if found.is_none() {
            return Err(StoreError::NotFound("account"));
        }
        let now = Timestamp::now();
        let version: i64 = sqlx::query_scalar(
            "INSERT INTO notices (account_id, category, version, text, created_at, used_at)
             SELECT $1, $2, COALESCE(MAX(version), 0) + 1, $3, $4, NULL
             FROM notices WHERE account_id = $1 AND category = $2
             RETURNING version",
        )
        .bind(account.as_uuid())
        .bind(category.as_str())
        .bind(&text)
        .bind(now.millis())
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        let version = u32_from(version, "version")?;
        audit::append(&mut tx, &effects::notice_event(audit, category, version)).await?;
        tx.commit().await.map_err(backend)?;
        Ok(NoticeRow {
            account_id: account,
            category,
            version,
            text,
            created_at: now,
            used_at: None,
        })
    }

    async fn update_notice(
        &self,
        account: AccountId,
        category: ringfence_core::DataCategory,
        version: u32,
        text: String,
        audit: AuditEvent,
    ) -> Result<NoticeRow, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // Locked until the edit commits: a consent that would refer to it waits (its
        // `used_at` update needs the row), and sees the new text's version in use after.
        let mut notice = sqlx::query(
            "SELECT account_id, category, version, text, created_at, used_at FROM notices
             WHERE account_id = $1 AND category = $2 AND version = $3 FOR UPDATE",
        )
        .bind(account.as_uuid())
        .bind(category.as_str())
        .bind(i64::from(version))
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?
        .as_ref()
        .map(notice_from)
        .transpose()?
        .ok_or(StoreError::NotFound("notice"))?;
        effects::notice_editable(&notice)?;
        sqlx::query(
            "UPDATE notices SET text = $4 WHERE account_id = $1 AND category = $2 AND version = $3",
        )
        .bind(account.as_uuid())
        .bind(category.as_str())
        .bind(i64::from(version))
        .bind(&text)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        audit::append(&mut tx, &effects::notice_event(audit, category, version)).await?;
        tx.commit().await.map_err(backend)?;
        notice.text = text;
        Ok(notice)
    }

    async fn notices(&self, account: AccountId) -> Result<Vec<NoticeRow>, StoreError> {
        sqlx::query(
            "SELECT account_id, category, version, text, created_at, used_at FROM notices
             WHERE account_id = $1 ORDER BY category, version",
        )
        .bind(account.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(notice_from)
        .collect()
    }

    async fn record_consent(
        &self,
        row: ConsentRow,
        job: Option<RedactionJob>,
    ) -> Result<ConsentRecorded, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let recorded = consent::record(&mut tx, &row, job).await?;
        tx.commit().await.map_err(backend)?;
        Ok(recorded)
    }

    async fn consent_state(
        &self,
        account: AccountId,
        subjects: Vec<ringfence_crypto::BlindIndex>,
        call: Option<CallId>,
    ) -> Result<ringfence_core::consent::ConsentState, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        consent_state_in(&mut conn, account, &subjects, call).await
    }

    async fn consents(
        &self,
        account: AccountId,
        subject: Option<ringfence_crypto::BlindIndex>,
        after_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ConsentRow>, StoreError> {
        let query = match subject {
            Some(bidx) => sqlx::query(concat!(
                "SELECT ",
                consent_columns!(),
                " FROM consents WHERE account_id = $1 AND seq > $2 AND subject_bidx = $4 ORDER BY seq LIMIT $3"
            ))
            .bind(account.as_uuid())
            .bind(after_seq.unwrap_or(0))
            .bind(i64::from(limit))
            .bind(bidx.to_vec()),
            None => sqlx::query(concat!(
                "SELECT ",
                consent_columns!(),
                " FROM consents WHERE account_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            ))
            .bind(account.as_uuid())
            .bind(after_seq.unwrap_or(0))
            .bind(i64::from(limit)),
        };
        query
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(consent_from)
            .collect()
    }

    async fn due_calls(&self, q: DueQuery) -> Result<Vec<CallRow>, StoreError> {
        // Built from the shared condition and the data map's column names, never from input.
        let sql = format!(
            "SELECT {} FROM calls {} ORDER BY started_at, id LIMIT $4",
            call_columns!(),
            ringfence_store::due::due_condition(&q, |n| format!("${n}"))
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(q.account_id.as_uuid())
            .bind(q.before.millis())
            .bind(q.gdpr_only)
            .bind(i64::from(q.limit))
            .bind(q.not_before.map(Timestamp::millis))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(call_from)
            .collect()
    }

    async fn retire_redacted(
        &self,
        account: AccountId,
        before: Timestamp,
    ) -> Result<u64, StoreError> {
        // Through `calls_live` in order, a window per transaction, so that no transaction
        // holds many row locks and no entry is read twice (calls that stay in the index
        // would otherwise be passed again by every window).
        let mut retired = 0u64;
        let mut after = (i64::MIN, Uuid::nil());
        loop {
            let row = sqlx::query(
                "WITH passed AS (
                    SELECT id, started_at, redacted_at IS NOT NULL AS redacted FROM calls
                     WHERE account_id = $1 AND swept IS NULL AND legal_hold_at IS NULL
                       AND started_at < $2 AND (started_at, id) > ($3, $4)
                     ORDER BY started_at, id LIMIT $5
                 ), retired AS (
                    UPDATE calls c SET swept = true FROM passed p
                     WHERE c.account_id = $1 AND c.id = p.id AND p.redacted
                    RETURNING 1
                 ), last AS (
                    SELECT started_at, id FROM passed ORDER BY started_at DESC, id DESC LIMIT 1
                 )
                 SELECT (SELECT count(*) FROM retired) AS retired,
                        (SELECT count(*) FROM passed) AS passed,
                        (SELECT started_at FROM last) AS last_started_at,
                        (SELECT id FROM last) AS last_id",
            )
            .bind(account.as_uuid())
            .bind(before.millis())
            .bind(after.0)
            .bind(after.1)
            .bind(RETIRE_WINDOW)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
            retired += get::<i64>(&row, "retired")? as u64;
            if get::<i64>(&row, "passed")? < RETIRE_WINDOW {
                return Ok(retired);
            }
            after = (get(&row, "last_started_at")?, get(&row, "last_id")?);
        }
    }

    async fn count_due(&self, q: DueQuery) -> Result<u64, StoreError> {
        let sql = format!(
            "SELECT count(*) FROM calls {}",
            ringfence_store::due::due_condition(&q, |n| format!("${n}"))
        );
        // $4 is `due_calls`' limit: bound, unused here.
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(q.account_id.as_uuid())
            .bind(q.before.millis())
            .bind(q.gdpr_only)
            .bind(0i64)
            .bind(q.not_before.map(Timestamp::millis))
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        u64::try_from(n).map_err(|_| StoreError::Backend("count: out of range".into()))
    }

    async fn set_legal_hold(
        &self,
        call: CallId,
        hold: Option<LegalHold>,
        event: AuditEvent,
    ) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let changed = match &hold {
            // Only a call not yet redacted can be held.
            Some(h) => sqlx::query(
                "UPDATE calls SET legal_hold_at = $2, legal_hold_reason = $3, legal_hold_by = $4
                 WHERE id = $1 AND redacted_at IS NULL",
            )
            .bind(call.as_uuid())
            .bind(h.at.millis())
            .bind(&h.reason)
            .bind(&h.by),
            None => sqlx::query(
                "UPDATE calls SET legal_hold_at = NULL, legal_hold_reason = NULL, legal_hold_by = NULL
                 WHERE id = $1",
            )
            .bind(call.as_uuid()),
        }
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound("unredacted call"));
        }
        let seq = audit::append(&mut tx, &event).await?;
        tx.commit().await.map_err(backend)?;
        Ok(seq)
    }

    async fn live_calls(&self, ids: Vec<CallId>) -> Result<Vec<CallId>, StoreError> {
        let uuids: Vec<Uuid> = ids.iter().map(|c| c.as_uuid()).collect();
        let live: Vec<Uuid> =
            sqlx::query_scalar("SELECT id FROM calls WHERE id = ANY($1) AND redacted_at IS NULL")
                .bind(&uuids)
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?;
        Ok(ids
            .into_iter()
            .filter(|c| live.contains(&c.as_uuid()))
            .collect())
    }

    async fn live_sessions(&self, ids: Vec<SessionId>) -> Result<Vec<SessionId>, StoreError> {
        let uuids: Vec<Uuid> = ids.iter().map(|s| s.as_uuid()).collect();
        let live: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM sessions WHERE id = ANY($1) AND redacted_at IS NULL",
        )
        .bind(&uuids)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(ids
            .into_iter()
            .filter(|s| live.contains(&s.as_uuid()))
            .collect())
    }

    async fn calls_by_ids(&self, ids: Vec<CallId>) -> Result<Vec<CallRow>, StoreError> {
        let uuids: Vec<Uuid> = ids.iter().map(|c| c.as_uuid()).collect();
        let rows = sqlx::query(concat!(
            "SELECT ",
            call_columns!(),
            " FROM calls WHERE id = ANY($1)"
        ))
        .bind(&uuids)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(call_from)
        .collect::<Result<Vec<_>, _>>()?;
        Ok(in_order(rows, &ids, |r| r.id))
    }

    async fn calls_by_caller(
        &self,
        account: AccountId,
        bidx: ringfence_crypto::BlindIndex,
    ) -> Result<Vec<CallRow>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            call_columns!(),
            " FROM calls WHERE account_id = $1 AND caller_bidx = $2"
        ))
        .bind(account.as_uuid())
        .bind(bidx.as_slice())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(call_from)
        .collect()
    }

    async fn begin_redaction(&self, job: RedactionJob) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        insert_job(&mut conn, &job).await
    }

    async fn begin_caller_redaction(
        &self,
        mut job: RedactionJob,
        callers: Vec<(AccountId, ringfence_crypto::BlindIndex)>,
    ) -> Result<(RedactionJob, u64), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let held = redaction::begin_callers(&mut tx, &mut job, &callers).await?;
        tx.commit().await.map_err(backend)?;
        Ok((job, held))
    }

    async fn apply_redaction(
        &self,
        job: RedactionJob,
        by: String,
        keys_gone: KeysDestroyed,
    ) -> Result<RedactionApplied, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // An error drops the transaction: the rows stay as they were.
        let applied = redaction::apply(&mut tx, &job, &by, keys_gone).await?;
        tx.commit().await.map_err(backend)?;
        Ok(applied)
    }

    async fn end_redaction(&self, job_id: String) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM redaction_jobs WHERE id = $1")
            .bind(&job_id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn pending_redactions(&self) -> Result<Vec<RedactionJob>, StoreError> {
        sqlx::query(
            "SELECT id, created_at, reason, call_ids, session_ids, objects, forget_accounts, forget_bidx, subject_accounts, subject_bidx, categories, audit_actor, audit_action, audit_agency, audit_account, audit_subject, audit_count, audit_reason, audit_details
             FROM redaction_jobs ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(job_from)
        .collect()
    }

    async fn append_audit(&self, event: AuditEvent) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let seq = audit::append(&mut tx, &event).await?;
        tx.commit().await.map_err(backend)?;
        Ok(seq)
    }

    async fn audit(&self, query: AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        audit::query(&mut conn, &query).await
    }

    async fn last_audit(&self) -> Result<Option<AuditEntry>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        audit::last(&mut conn).await
    }

    /// Vacuums the tables a redaction clears, so that the cleared values' old row versions
    /// (ciphertext whose key is destroyed) leave the heap now rather than at autovacuum.
    async fn compact(&self) -> Result<(), StoreError> {
        sqlx::query("VACUUM calls, sessions, consents")
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM tokens ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(token_from)
        .collect()
    }

    async fn record_job_run(&self, name: String, at: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO job_runs (name, at) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET at = excluded.at WHERE excluded.at > job_runs.at",
        )
        .bind(&name)
        .bind(at.millis())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn job_runs(&self) -> Result<Vec<(String, Timestamp)>, StoreError> {
        sqlx::query("SELECT name, at FROM job_runs ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(|row| Ok((get(row, "name")?, ts(row, "at")?)))
            .collect()
    }

    async fn create_recipient(
        &self,
        recipient: RecipientRow,
        event: AuditEvent,
    ) -> Result<(), StoreError> {
        let r = &recipient;
        let events: Vec<&str> = r.events.iter().map(|e| e.as_str()).collect();
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query(concat!(
            "INSERT INTO recipients (",
            recipient_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(r.id.as_uuid())
        .bind(r.account_id.as_uuid())
        .bind(&r.name)
        .bind(&r.url)
        .bind(&r.secret)
        .bind(&events)
        .bind(r.personal_data)
        .bind(r.created_at.millis())
        .bind(r.updated_at.millis())
        .bind(r.disabled_at.map(Timestamp::millis))
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::AlreadyExists("recipient")
            } else {
                backend(e)
            }
        })?;
        audit::append(&mut tx, &event).await?;
        tx.commit().await.map_err(backend)
    }

    async fn update_recipient(
        &self,
        recipient: RecipientRow,
        event: AuditEvent,
    ) -> Result<bool, StoreError> {
        let r = &recipient;
        let events: Vec<&str> = r.events.iter().map(|e| e.as_str()).collect();
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let found = sqlx::query(
            "UPDATE recipients SET name = $3, url = $4, secret = $5, events = $6, personal_data = $7, updated_at = $8, disabled_at = $9
             WHERE account_id = $1 AND id = $2",
        )
        .bind(r.account_id.as_uuid())
        .bind(r.id.as_uuid())
        .bind(&r.name)
        .bind(&r.url)
        .bind(&r.secret)
        .bind(&events)
        .bind(r.personal_data)
        .bind(r.updated_at.millis())
        .bind(r.disabled_at.map(Timestamp::millis))
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected()
            > 0;
        if !found {
            return Ok(false);
        }
        // A removed recipient gets nothing more: its queued deliveries end with it.
        if r.disabled_at.is_some() {
            sqlx::query(
                "UPDATE deliveries SET state = 'cancelled', last_error = 'recipient_removed', done_at = $3
                 WHERE account_id = $1 AND recipient_id = $2 AND state = 'queued'",
            )
            .bind(r.account_id.as_uuid())
            .bind(r.id.as_uuid())
            .bind(r.updated_at.millis())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        audit::append(&mut tx, &event).await?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn recipients(&self, account: AccountId) -> Result<Vec<RecipientRow>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            recipient_columns!(),
            " FROM recipients WHERE account_id = $1 ORDER BY created_at, id"
        ))
        .bind(account.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(recipient_from)
        .collect()
    }

    async fn recipient(
        &self,
        account: AccountId,
        id: RecipientId,
    ) -> Result<Option<RecipientRow>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            recipient_columns!(),
            " FROM recipients WHERE account_id = $1 AND id = $2"
        ))
        .bind(account.as_uuid())
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .as_ref()
        .map(recipient_from)
        .transpose()
    }

    async fn due_deliveries(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM deliveries WHERE state = 'queued' AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2"
        ))
        .bind(now.millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(delivery_from)
        .collect()
    }

    async fn finish_delivery(&self, a: DeliveryAttempt) -> Result<bool, StoreError> {
        let done = (a.state != DeliveryState::Queued).then_some(a.at.millis());
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // Only a still-queued delivery takes the attempt: a cancellation made meanwhile stands.
        let recorded = sqlx::query(
            "UPDATE deliveries SET state = $2, attempts = attempts + 1, next_attempt_at = $3, last_attempt_at = $4,
                    last_status = $5, last_error = $6, done_at = $7
             WHERE id = $1 AND state = 'queued'",
        )
        .bind(a.id.as_uuid())
        .bind(a.state.as_str())
        .bind(a.next_attempt_at.millis())
        .bind(a.at.millis())
        .bind(a.status.map(i32::from))
        .bind(&a.error)
        .bind(done)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected()
            > 0;
        if recorded && let Some(event) = &a.audit {
            audit::append(&mut tx, event).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(recorded)
    }

    async fn cancel_delivery(&self, id: DeliveryId, why: String) -> Result<bool, StoreError> {
        let cancelled = sqlx::query(
            "UPDATE deliveries SET state = 'cancelled', last_error = $2, done_at = $3
             WHERE id = $1 AND state = 'queued'",
        )
        .bind(id.as_uuid())
        .bind(&why)
        .bind(Timestamp::now().millis())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(cancelled.rows_affected() > 0)
    }

    async fn deliveries(&self, q: DeliveryQuery) -> Result<Vec<DeliveryRow>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM deliveries
             WHERE account_id = $1 AND recipient_id = $2 AND ($3::text IS NULL OR state = $3)
               AND ($4::text IS NULL OR event = $4) AND ($5::uuid IS NULL OR id < $5)
             ORDER BY id DESC LIMIT $6"
        ))
        .bind(q.account_id.as_uuid())
        .bind(q.recipient_id.as_uuid())
        .bind(q.state.map(DeliveryState::as_str))
        .bind(q.event.map(EventKind::as_str))
        .bind(q.before.map(|d| d.as_uuid()))
        .bind(i64::from(q.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(delivery_from)
        .collect()
    }

    async fn retry_delivery(
        &self,
        account: AccountId,
        recipient: RecipientId,
        id: DeliveryId,
        event: AuditEvent,
    ) -> Result<Option<DeliveryRow>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let requeued = sqlx::query(concat!(
            "UPDATE deliveries SET state = 'queued', attempts = 0, next_attempt_at = $4, done_at = NULL
             WHERE account_id = $1 AND recipient_id = $2 AND id = $3 AND state = 'dead'
               AND EXISTS (SELECT 1 FROM recipients r WHERE r.account_id = $1 AND r.id = $2 AND r.disabled_at IS NULL)
             RETURNING ",
            delivery_columns!()
        ))
        .bind(account.as_uuid())
        .bind(recipient.as_uuid())
        .bind(id.as_uuid())
        .bind(Timestamp::now().millis())
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?
        .as_ref()
        .map(delivery_from)
        .transpose()?;
        if requeued.is_some() {
            audit::append(&mut tx, &event).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(requeued)
    }

    async fn delivery_summary(&self, account: AccountId) -> Result<DeliverySummary, StoreError> {
        // Which events are erasure notices is the domain's (`EventKind::is_erasure`).
        let erasures: Vec<&str> = EventKind::ALL
            .into_iter()
            .filter(|e| e.is_erasure())
            .map(EventKind::as_str)
            .collect();
        let row = sqlx::query(
            "SELECT
                (SELECT count(*) FROM recipients WHERE account_id = $1 AND disabled_at IS NULL) AS recipients,
                (SELECT count(*) FROM recipients WHERE account_id = $1 AND disabled_at IS NULL AND events && $2::text[]) AS erasure_recipients,
                count(*) FILTER (WHERE state = 'queued') AS queued,
                count(*) FILTER (WHERE state = 'dead') AS dead,
                count(*) FILTER (WHERE state = 'dead' AND event = ANY($2)) AS dead_erasures,
                min(created_at) FILTER (WHERE state = 'queued' AND event = ANY($2)) AS oldest_queued_erasure
             FROM deliveries WHERE account_id = $1 AND state IN ('queued', 'dead')",
        )
        .bind(account.as_uuid())
        .bind(&erasures)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        let count =
            |column: &str| -> Result<u64, StoreError> { Ok(get::<i64>(&row, column)? as u64) };
        Ok(DeliverySummary {
            recipients: count("recipients")?,
            erasure_recipients: count("erasure_recipients")?,
            queued: count("queued")?,
            dead: count("dead")?,
            dead_erasures: count("dead_erasures")?,
            oldest_queued_erasure: opt_ts(&row, "oldest_queued_erasure")?,
        })
    }

    async fn delivered_to(
        &self,
        calls: Vec<CallId>,
    ) -> Result<Vec<(CallId, RecipientId, String)>, StoreError> {
        let ids: Vec<Uuid> = calls.iter().map(|c| c.as_uuid()).collect();
        sqlx::query(
            "SELECT d.call_id, r.id, r.name FROM deliveries d
               JOIN recipients r ON r.account_id = d.account_id AND r.id = d.recipient_id
             WHERE d.call_id = ANY($1) AND d.state = 'delivered' AND d.event = 'call.created'
             ORDER BY d.call_id, r.id",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(|row| Ok((id(row, "call_id")?, id(row, "id")?, get(row, "name")?)))
        .collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn create_user(&self, user: UserRecord, event: AuditEvent) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        users::insert(&mut tx, &user).await?;
        audit::append(&mut tx, &event).await?;
        tx.commit().await.map_err(backend)
    }

    async fn user_by_email_index(
        &self,
        index: ringfence_crypto::BlindIndex,
    ) -> Result<Option<UserRecord>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        users::by_index(&mut conn, &index).await
    }

    async fn user(&self, id: ringfence_core::UserId) -> Result<Option<UserRecord>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        users::by_id(&mut conn, id, false).await
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        users::list(&mut conn).await
    }

    async fn record_login_failure(
        &self,
        user: ringfence_core::UserId,
        now: Timestamp,
        max_failures: u32,
        lock_ms: i64,
    ) -> Result<LoginFailure, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let outcome = users::record_failure(&mut tx, user, now, max_failures, lock_ms).await?;
        tx.commit().await.map_err(backend)?;
        Ok(outcome)
    }

    async fn start_web_session(
        &self,
        session: WebSessionRecord,
        replaces: Option<[u8; 32]>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        users::start_session(&mut tx, &session, replaces).await?;
        tx.commit().await.map_err(backend)
    }

    async fn web_session(
        &self,
        hash: [u8; 32],
    ) -> Result<Option<(WebSessionRecord, UserRecord)>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        users::session(&mut conn, &hash).await
    }

    async fn touch_web_session(&self, hash: [u8; 32], now: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE web_sessions SET last_seen_at = greatest(last_seen_at, $2) WHERE hash = $1",
        )
        .bind(hash.as_slice())
        .bind(now.millis())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn end_web_session(
        &self,
        hash: [u8; 32],
        idle_before: Timestamp,
        started_before: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM web_sessions WHERE hash = $1 OR last_seen_at < $2 OR created_at < $3",
        )
        .bind(hash.as_slice())
        .bind(idle_before.millis())
        .bind(started_before.millis())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn update_user(
        &self,
        id: ringfence_core::UserId,
        change: UserChange,
        events: Vec<AuditEvent>,
    ) -> Result<UserRecord, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let user = users::update(&mut tx, id, &change).await?;
        for event in &events {
            audit::append(&mut tx, event).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(user)
    }

    async fn remove_user(
        &self,
        id: ringfence_core::UserId,
        event: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        users::remove(&mut tx, id).await?;
        audit::append(&mut tx, &event).await?;
        tx.commit().await.map_err(backend)
    }
}
