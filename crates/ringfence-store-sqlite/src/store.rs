use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params};

use ringfence_core::access::{Role, Scope};
use ringfence_core::call::{CallStatus, Direction, RedactionReason};
use ringfence_core::retention::{RetentionPolicy, RetentionScope};
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, AgencyId, CallId, DeliveryId, RecipientId, SessionId, TokenId};

use super::db::{RedoLimits, SqliteDb};
use super::{audit, consent, outbox, redaction, redo_record, schema, users};
use crate::db_error;
use ringfence_core::DataCategory;
use ringfence_core::collection::{CollectionSettings, IpPolicy, RecordingMode};
use ringfence_store::admission;
use ringfence_store::records::*;
use ringfence_store::{LoginFailure, Store, StoreError, UserChange, UserRecord, WebSessionRecord};

/// The call log in SQLite.
#[derive(Clone)]
pub struct SqliteStore {
    db: Arc<SqliteDb>,
}

impl SqliteStore {
    /// Opens the call log; ingest is acknowledged from its redo log (see `redo`), and what a
    /// crash left there is stored before this returns.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            db: SqliteDb::open_logged(
                path,
                schema::CALL_LOG,
                RedoLimits::default(),
                replay_insert_calls,
            )?,
        })
    }

    pub fn db(&self) -> &Arc<SqliteDb> {
        &self.db
    }

    /// [`open`](Self::open) with other limits for the open transaction.
    #[cfg(test)]
    fn open_with_limits(path: &Path, limits: RedoLimits) -> Result<Self, StoreError> {
        Ok(Self {
            db: SqliteDb::open_logged(path, schema::CALL_LOG, limits, replay_insert_calls)?,
        })
    }
}

fn parse_id<T: std::str::FromStr>(text: String) -> rusqlite::Result<T> {
    text.parse().map_err(|_| {
        rusqlite::Error::InvalidColumnType(0, "id".into(), rusqlite::types::Type::Text)
    })
}

fn opt_id<T: std::str::FromStr>(text: Option<String>) -> rusqlite::Result<Option<T>> {
    text.map(parse_id).transpose()
}

fn ts(millis: i64) -> Timestamp {
    Timestamp::from_millis(millis)
}

fn opt_ts(millis: Option<i64>) -> Option<Timestamp> {
    millis.map(Timestamp::from_millis)
}

fn bidx(blob: Option<Vec<u8>>) -> Option<[u8; 16]> {
    blob.and_then(|b| b.try_into().ok())
}

fn agency_from(row: &Row<'_>) -> rusqlite::Result<AgencyRecord> {
    Ok(AgencyRecord {
        id: parse_id(row.get(0)?)?,
        name: row.get(1)?,
        redaction_enabled: row.get(2)?,
        max_retention_days: row.get(3)?,
        created_at: ts(row.get(4)?),
    })
}

const ACCOUNT_COLUMNS: &str = "id, agency_id, name, settings, created_at, retention_days, retention_scope, retention_categories, twilio_auth_token, twilio_delete_recordings, twilio_account_sid";

const DOWNLOAD_COLUMNS: &str = "id, account_id, call_sid, recording_sid, url, provider_account, state, attempts, next_attempt_at, outcome, created_at";

fn download_from(row: &Row<'_>) -> rusqlite::Result<DownloadJob> {
    Ok(DownloadJob {
        id: row.get(0)?,
        account_id: parse_id(row.get(1)?)?,
        call_sid: row.get(2)?,
        recording_sid: row.get(3)?,
        url: row.get(4)?,
        provider_account: row.get(5)?,
        state: row.get(6)?,
        attempts: row.get(7)?,
        next_attempt_at: ts(row.get(8)?),
        outcome: row.get(9)?,
        created_at: ts(row.get(10)?),
    })
}

/// The collection settings as the `settings` column keeps them (JSON); unknown or missing
/// keys read as the defaults.
fn encode_collection(c: &CollectionSettings) -> String {
    serde_json::json!({"collection": {
        "caller_name": c.caller_name,
        "caller_location": c.caller_location,
        "recording_gdpr": c.recording_gdpr.as_str(),
        "recording_other": c.recording_other.as_str(),
        "transcription": c.transcription,
        "visitor_ip": c.visitor_ip.as_str(),
        "visitor_details": c.visitor_details,
    }})
    .to_string()
}

fn decode_collection(text: &str) -> CollectionSettings {
    let mut c = CollectionSettings::default();
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return c;
    };
    let Some(doc) = value.get("collection") else {
        return c;
    };
    let flag =
        |name: &str, default: bool| doc.get(name).and_then(|v| v.as_bool()).unwrap_or(default);
    let text_of = |name: &str| doc.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    c.caller_name = flag("caller_name", c.caller_name);
    c.caller_location = flag("caller_location", c.caller_location);
    c.transcription = flag("transcription", c.transcription);
    c.visitor_details = flag("visitor_details", c.visitor_details);
    if let Some(m) = text_of("recording_gdpr").and_then(|t| RecordingMode::parse(&t)) {
        c.recording_gdpr = m;
    }
    if let Some(m) = text_of("recording_other").and_then(|t| RecordingMode::parse(&t)) {
        c.recording_other = m;
    }
    if let Some(p) = text_of("visitor_ip").and_then(|t| IpPolicy::parse(&t)) {
        c.visitor_ip = p;
    }
    c
}

fn account_from(row: &Row<'_>) -> rusqlite::Result<AccountRecord> {
    let scope: String = row.get(6)?;
    let categories: String = row.get(7)?;
    Ok(AccountRecord {
        twilio_auth_token: row.get(8)?,
        twilio_delete_recordings: row.get(9)?,
        twilio_account_sid: row.get(10)?,
        id: parse_id(row.get(0)?)?,
        agency_id: parse_id(row.get(1)?)?,
        name: row.get(2)?,
        collection: decode_collection(&row.get::<_, String>(3)?),
        created_at: ts(row.get(4)?),
        retention: RetentionPolicy {
            after_days: row.get(5)?,
            scope: RetentionScope::parse(&scope).unwrap_or_default(),
            categories: RetentionPolicy::parse_categories(&categories),
        },
    })
}

const TOKEN_COLUMNS: &str = "id, hash, role, agency_id, account_id, personal_data, label, created_at, expires_at, revoked_at, last_used_at";

fn token_from(row: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    let role_text: String = row.get(2)?;
    let role = Role::parse(&role_text).ok_or_else(|| {
        rusqlite::Error::InvalidColumnType(2, "role".into(), rusqlite::types::Type::Text)
    })?;
    let agency: Option<AgencyId> = opt_id(row.get(3)?)?;
    let account: Option<AccountId> = opt_id(row.get(4)?)?;
    let scope = match (agency, account) {
        (Some(agency), Some(account)) => Scope::Account { agency, account },
        (Some(agency), None) => Scope::Agency(agency),
        _ => Scope::Installation,
    };
    let hash: Vec<u8> = row.get(1)?;
    Ok(TokenRecord {
        id: parse_id(row.get(0)?)?,
        hash: hash.try_into().map_err(|_| {
            rusqlite::Error::InvalidColumnType(1, "hash".into(), rusqlite::types::Type::Blob)
        })?,
        role,
        scope,
        personal_data: row.get(5)?,
        label: row.get(6)?,
        created_at: ts(row.get(7)?),
        expires_at: opt_ts(row.get(8)?),
        revoked_at: opt_ts(row.get(9)?),
        last_used_at: opt_ts(row.get(10)?),
    })
}

const CALL_COLUMNS: &str = "id, account_id, external_id, started_at, created_at, duration_s, direction, status, tracking_number, source, campaign, utm_source, utm_medium, utm_campaign, gdpr_scope, caller_bidx, session_id, caller_identity, caller_location, transcript, interaction, recording_object, recording_content_type, recording_bytes, redacted_at, redaction_reason, redacted_by, legal_hold_at, legal_hold_reason, legal_hold_by";

/// The `WHERE` condition of a call-log query's filters (without its cursor and limit).
fn call_filter(q: &CallQuery) -> (String, Vec<Value>) {
    let mut sql = String::from("account_id = ?");
    let mut args: Vec<Value> = vec![Value::Text(q.account_id.to_string())];
    if let Some(from) = q.from {
        sql.push_str(" AND started_at >= ?");
        args.push(Value::Integer(from.millis()));
    }
    if let Some(to) = q.to {
        sql.push_str(" AND started_at < ?");
        args.push(Value::Integer(to.millis()));
    }
    if let Some(t) = &q.tracking_number {
        sql.push_str(" AND tracking_number = ?");
        args.push(Value::Text(t.clone()));
    }
    if let Some(s) = &q.source {
        sql.push_str(" AND source = ?");
        args.push(Value::Text(s.clone()));
    }
    if let Some(s) = q.status {
        sql.push_str(" AND status = ?");
        args.push(Value::Text(s.as_str().to_owned()));
    }
    match q.redacted {
        Some(true) => sql.push_str(" AND redacted_at IS NOT NULL"),
        Some(false) => sql.push_str(" AND redacted_at IS NULL"),
        None => {}
    }
    if let Some(b) = q.caller_bidx {
        sql.push_str(" AND caller_bidx = ?");
        args.push(Value::Blob(b.to_vec()));
    }
    (sql, args)
}

fn call_from(row: &Row<'_>) -> rusqlite::Result<CallRow> {
    let direction: Option<String> = row.get(6)?;
    let status: Option<String> = row.get(7)?;
    let recording_object: Option<String> = row.get(21)?;
    let reason: Option<String> = row.get(25)?;
    Ok(CallRow {
        id: parse_id(row.get(0)?)?,
        account_id: parse_id(row.get(1)?)?,
        external_id: row.get(2)?,
        started_at: ts(row.get(3)?),
        created_at: ts(row.get(4)?),
        duration_s: row.get(5)?,
        direction: direction.as_deref().and_then(Direction::parse),
        status: status.as_deref().and_then(CallStatus::parse),
        tracking_number: row.get(8)?,
        source: row.get(9)?,
        campaign: row.get(10)?,
        utm_source: row.get(11)?,
        utm_medium: row.get(12)?,
        utm_campaign: row.get(13)?,
        gdpr_scope: row.get(14)?,
        caller_bidx: bidx(row.get(15)?),
        session_id: opt_id(row.get(16)?)?,
        caller_identity: row.get(17)?,
        caller_location: row.get(18)?,
        transcript: row.get(19)?,
        interaction: row.get(20)?,
        recording: match recording_object {
            Some(object) => Some(RecordingRow {
                object,
                content_type: row.get::<_, Option<String>>(22)?.unwrap_or_default(),
                bytes: row.get::<_, Option<i64>>(23)?.unwrap_or(0) as u64,
            }),
            None => None,
        },
        redacted_at: opt_ts(row.get(24)?),
        redaction_reason: reason.as_deref().and_then(RedactionReason::parse),
        redacted_by: row.get(26)?,
        legal_hold: match row.get::<_, Option<i64>>(27)? {
            Some(at) => Some(LegalHold {
                at: ts(at),
                reason: row.get::<_, Option<String>>(28)?.unwrap_or_default(),
                by: row.get::<_, Option<String>>(29)?.unwrap_or_default(),
            }),
            None => None,
        },
    })
}

const SESSION_COLUMNS: &str = "id, account_id, external_id, started_at, created_at, utm_source, utm_medium, utm_campaign, visitor, redacted_at, redaction_reason, gdpr_scope, visitor_bidx";

fn session_from(row: &Row<'_>) -> rusqlite::Result<SessionRow> {
    let reason: Option<String> = row.get(10)?;
    Ok(SessionRow {
        id: parse_id(row.get(0)?)?,
        account_id: parse_id(row.get(1)?)?,
        external_id: row.get(2)?,
        started_at: ts(row.get(3)?),
        created_at: ts(row.get(4)?),
        utm_source: row.get(5)?,
        utm_medium: row.get(6)?,
        utm_campaign: row.get(7)?,
        visitor: row.get(8)?,
        gdpr_scope: row.get(11)?,
        visitor_bidx: bidx(row.get(12)?),
        redacted_at: opt_ts(row.get(9)?),
        redaction_reason: reason.as_deref().and_then(RedactionReason::parse),
    })
}

/// Inserts a session unless its external id is known; returns the outcome.
fn insert_session_row(
    conn: &Connection,
    s: &SessionRow,
) -> Result<Inserted<SessionId>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO sessions (id, account_id, external_id, started_at, created_at, utm_source, utm_medium, utm_campaign, visitor, redacted_at, redaction_reason, gdpr_scope, visitor_bidx)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, NULL, ?10, ?11) ON CONFLICT (account_id, external_id) DO NOTHING",
    ).map_err(db_error)?;
    let n = stmt
        .execute(params![
            s.id.to_string(),
            s.account_id.to_string(),
            s.external_id,
            s.started_at.millis(),
            s.created_at.millis(),
            s.utm_source,
            s.utm_medium,
            s.utm_campaign,
            s.visitor,
            s.gdpr_scope,
            s.visitor_bidx.as_ref().map(|b| b.as_slice()),
        ])
        .map_err(db_error)?;
    if n == 1 {
        return Ok(Inserted::Created(s.id));
    }
    let existing: String = conn
        .prepare_cached("SELECT id FROM sessions WHERE account_id = ?1 AND external_id = ?2")
        .map_err(db_error)?
        .query_row(params![s.account_id.to_string(), s.external_id], |r| {
            r.get(0)
        })
        .map_err(db_error)?;
    Ok(Inserted::Existing(parse_id(existing).map_err(db_error)?))
}

/// Runs an ingest's redo record again (see `redo`).
fn replay_insert_calls(conn: &Connection, record: &[u8]) -> Result<(), StoreError> {
    insert_call_rows(conn, &redo_record::decode(record)?, Rows::Replayed).map(|_| ())
}

/// Where `insert_call_rows`' rows come from.
enum Rows<'a> {
    /// An ingest: each row is checked; what is stored goes into the redo record.
    New(&'a mut redo_record::Encoder),
    /// A redo record: rows as they were stored, the consent checks already passed (the
    /// forget list is checked again: it left a forgotten caller's blind index for it).
    Replayed,
}

fn insert_call_rows(
    conn: &Connection,
    calls: &[NewCallRow],
    mut rows: Rows<'_>,
) -> Result<InsertReport, StoreError> {
    admission::duplicate_in_batch(calls)?;
    let mut outcomes = Vec::with_capacity(calls.len());
    let mut withheld_all: Vec<Vec<DataCategory>> = Vec::with_capacity(calls.len());
    let mut forgotten: Vec<(AccountId, CallId)> = Vec::new();
    // Most accounts have no consent events at all: ask once per account, not once per call.
    let mut ledgers: std::collections::HashMap<AccountId, bool> = std::collections::HashMap::new();
    // Most accounts never forget anyone: ask once per account, not once per call.
    let mut forget_lists: std::collections::HashMap<AccountId, bool> =
        std::collections::HashMap::new();
    for (index, new) in calls.iter().enumerate() {
        let mut c: Cow<'_, CallRow> = Cow::Borrowed(&new.call);
        let mut inline_session: Option<Cow<'_, SessionRow>> =
            new.inline_session.as_ref().map(Cow::Borrowed);
        let mut forgotten_now = false;
        let forget_list_used = match forget_lists.get(&c.account_id) {
            Some(used) => *used,
            None => {
                let used = conn
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM forget_list WHERE account_id = ?1)",
                    )
                    .map_err(db_error)?
                    .query_row([c.account_id.to_string()], |r| r.get::<_, bool>(0))
                    .map_err(db_error)?;
                forget_lists.insert(c.account_id, used);
                used
            }
        };
        if forget_list_used
            && let Some(bidx) = c.caller_bidx
            && !redaction::forgotten(conn, c.account_id, &[bidx])?.is_empty()
        {
            c = Cow::Owned(admission::forgotten_on_arrival(&c));
            inline_session = None;
            forgotten_now = true;
            forgotten.push((c.account_id, c.id));
        }
        // Consent, checked here in the writer so that a withdrawal and an ingest never pass
        // each other; the rule is `admission::apply_consent`.
        let mut withheld: Vec<DataCategory> = Vec::new();
        if c.redacted_at.is_none() && matches!(rows, Rows::New(_)) {
            let has_ledger = match ledgers.get(&c.account_id) {
                Some(has) => *has,
                None => {
                    let has = consent::account_has_any(conn, c.account_id)?;
                    ledgers.insert(c.account_id, has);
                    has
                }
            };
            let subjects = admission::consent_subjects(&c, inline_session.as_deref());
            let state = if has_ledger && !subjects.is_empty() {
                consent::state(conn, c.account_id, &subjects, None)?
            } else {
                Default::default()
            };
            let decided =
                admission::apply_consent(new, &c, inline_session.as_deref(), state, index)?;
            if !decided.withheld.is_empty() {
                withheld = decided.withheld;
                let call = decided.call.into_owned();
                inline_session = decided.session.map(|s| Cow::Owned(s.into_owned()));
                c = Cow::Owned(call);
            }
        }
        // A call sent with its visit: its session must exist before the call refers to it,
        // and must not be stored for a re-delivered call, so look the external id up first.
        // Other calls go straight to an insert that ignores a known external id.
        if inline_session.is_some()
            && let Some(ext) = &c.external_id
            && let Some(existing) = conn
                .prepare_cached("SELECT id FROM calls WHERE account_id = ?1 AND external_id = ?2")
                .map_err(db_error)?
                .query_row(params![c.account_id.to_string(), ext], |r| {
                    r.get::<_, String>(0)
                })
                .optional()
                .map_err(db_error)?
        {
            outcomes.push(Inserted::Existing(parse_id(existing).map_err(db_error)?));
            withheld_all.push(Vec::new());
            if let Some(pos) = forgotten.iter().position(|(_, id)| *id == c.id) {
                forgotten.remove(pos);
            }
            continue;
        }
        let session_id = match inline_session.as_deref() {
            Some(session) => Some(insert_session_row(conn, session)?.id()),
            None => {
                if let Some(session) = c.session_id {
                    let scope: Option<Option<bool>> = conn
                        .prepare_cached(
                            "SELECT gdpr_scope FROM sessions WHERE id = ?1 AND account_id = ?2",
                        )
                        .map_err(db_error)?
                        .query_row(
                            params![session.to_string(), c.account_id.to_string()],
                            |r| r.get(0),
                        )
                        .optional()
                        .map_err(db_error)?;
                    let Some(scope) = scope else {
                        return Err(StoreError::SessionNotFound { index });
                    };
                    if let Some(linked) = admission::linked_to_session(&c, scope) {
                        c = Cow::Owned(linked);
                    }
                }
                c.session_id
            }
        };
        let (rec_object, rec_type, rec_bytes) = match &c.recording {
            Some(r) => (
                Some(r.object.as_str()),
                Some(r.content_type.as_str()),
                Some(r.bytes as i64),
            ),
            None => (None, None, None),
        };
        let inserted = conn.prepare_cached(
            "INSERT INTO calls (id, account_id, external_id, started_at, created_at, duration_s, direction, status, tracking_number, source, campaign, utm_source, utm_medium, utm_campaign, gdpr_scope, caller_bidx, session_id, caller_identity, caller_location, transcript, interaction, recording_object, recording_content_type, recording_bytes, redacted_at, redaction_reason, redacted_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27)
             ON CONFLICT (account_id, external_id) DO NOTHING",
        ).map_err(db_error)?
        .execute(params![
            c.id.to_string(),
            c.account_id.to_string(),
            c.external_id,
            c.started_at.millis(),
            c.created_at.millis(),
            c.duration_s,
            c.direction.map(Direction::as_str),
            c.status.map(CallStatus::as_str),
            c.tracking_number,
            c.source,
            c.campaign,
            c.utm_source,
            c.utm_medium,
            c.utm_campaign,
            c.gdpr_scope,
            c.caller_bidx.as_ref().map(|b| b.as_slice()),
            session_id.map(|s| s.to_string()),
            c.caller_identity,
            c.caller_location,
            c.transcript,
            c.interaction,
            rec_object,
            rec_type,
            rec_bytes,
            c.redacted_at.map(Timestamp::millis),
            c.redaction_reason.map(RedactionReason::as_str),
            c.redacted_by,
        ]).map_err(db_error)?;
        if inserted == 0 {
            // A re-delivery: the external id is known; nothing was stored.
            let existing: String = conn
                .prepare_cached("SELECT id FROM calls WHERE account_id = ?1 AND external_id = ?2")
                .map_err(db_error)?
                .query_row(params![c.account_id.to_string(), c.external_id], |r| {
                    r.get(0)
                })
                .map_err(db_error)?;
            outcomes.push(Inserted::Existing(parse_id(existing).map_err(db_error)?));
            withheld_all.push(Vec::new());
            if let Some(pos) = forgotten.iter().position(|(_, id)| *id == c.id) {
                forgotten.remove(pos);
            }
            continue;
        }
        if c.redacted_at.is_none() {
            for event in &new.consents {
                let event = ConsentRow {
                    call_id: Some(c.id),
                    ..event.clone()
                };
                consent::record_inline(conn, &event).map_err(|e| match e {
                    StoreError::UnknownNoticeVersion { .. } => {
                        StoreError::UnknownNoticeVersion { index: Some(index) }
                    }
                    other => other,
                })?;
                ledgers.insert(c.account_id, true);
            }
        }
        if let Rows::New(record) = &mut rows {
            if forgotten_now {
                // Nothing of the caller but the blind index that forgets them again.
                let blind_only = CallRow {
                    caller_bidx: new.call.caller_bidx,
                    ..(*c).clone()
                };
                record.push(&blind_only, None, &[], false);
            } else {
                record.push(
                    &c,
                    inline_session.as_deref(),
                    &new.consents,
                    new.transcript_needs_consent,
                );
            }
        }
        outcomes.push(Inserted::Created(c.id));
        withheld_all.push(withheld);
    }
    let mut by_account: std::collections::BTreeMap<AccountId, Vec<CallId>> =
        std::collections::BTreeMap::new();
    for (account, call) in &forgotten {
        by_account.entry(*account).or_default().push(*call);
    }
    for (account, ids) in by_account {
        let agency: Option<String> = conn
            .prepare_cached("SELECT agency_id FROM accounts WHERE id = ?1")
            .map_err(db_error)?
            .query_row([account.to_string()], |r| r.get(0))
            .optional()
            .map_err(db_error)?;
        super::audit::append(
            conn,
            &admission::forgotten_on_arrival_event(
                account,
                agency.and_then(|a| a.parse().ok()),
                &ids,
            ),
        )?;
    }
    // New calls go to the account's recipients (rendered when sent, from the sealed row).
    if outcomes.iter().any(|o| matches!(o, Inserted::Created(_))) && outbox::any_recipient(conn)? {
        let now = Timestamp::now();
        for (account, ids) in admission::created_by_account(calls, &outcomes) {
            let ids: Vec<String> = ids.iter().map(CallId::to_string).collect();
            outbox::enqueue_created(conn, account, &ids, now)?;
        }
    }
    Ok(InsertReport {
        outcomes,
        forgotten: forgotten.into_iter().map(|(_, c)| c).collect(),
        withheld: withheld_all,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_agency(&self, a: AgencyRecord) -> Result<(), StoreError> {
        self.db
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO agencies (id, name, redaction_enabled, max_retention_days, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![a.id.to_string(), a.name, a.redaction_enabled, a.max_retention_days, a.created_at.millis()],
                ).map_err(db_error)?;
                Ok(())
            })
            .await
    }

    async fn agency(&self, id: AgencyId) -> Result<Option<AgencyRecord>, StoreError> {
        self.db
            .read(move |conn| {
                conn
                    .prepare_cached("SELECT id, name, redaction_enabled, max_retention_days, created_at FROM agencies WHERE id = ?1").map_err(db_error)?
                    .query_row([id.to_string()], agency_from)
                    .optional().map_err(db_error)
            })
            .await
    }

    async fn update_agency(&self, a: AgencyRecord) -> Result<(), StoreError> {
        self.db
            .write(move |conn| {
                let n = conn.execute(
                    "UPDATE agencies SET name = ?2, redaction_enabled = ?3, max_retention_days = ?4 WHERE id = ?1",
                    params![a.id.to_string(), a.name, a.redaction_enabled, a.max_retention_days],
                ).map_err(db_error)?;
                if n == 0 { Err(StoreError::NotFound("agency")) } else { Ok(()) }
            })
            .await
    }

    async fn list_agencies(&self) -> Result<Vec<AgencyRecord>, StoreError> {
        self.db
            .read(|conn| {
                let mut stmt = conn.prepare_cached("SELECT id, name, redaction_enabled, max_retention_days, created_at FROM agencies ORDER BY created_at, id").map_err(db_error)?;
                let rows = stmt.query_map([], agency_from).map_err(db_error)?.collect::<Result<Vec<_>, _>>().map_err(db_error)?;
                Ok(rows)
            })
            .await
    }

    async fn create_account(&self, a: AccountRecord) -> Result<(), StoreError> {
        self.db
            .write(move |conn| {
                let agency: Option<i64> = conn.query_row("SELECT 1 FROM agencies WHERE id = ?1", [a.agency_id.to_string()], |r| r.get(0)).optional().map_err(db_error)?;
                if agency.is_none() {
                    return Err(StoreError::NotFound("agency"));
                }
                conn.execute(
                    "INSERT INTO accounts (id, agency_id, name, settings, created_at, retention_days, retention_scope, retention_categories, twilio_auth_token, twilio_delete_recordings, twilio_account_sid) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    params![
                        a.id.to_string(),
                        a.agency_id.to_string(),
                        a.name,
                        encode_collection(&a.collection),
                        a.created_at.millis(),
                        a.retention.after_days,
                        a.retention.scope.as_str(),
                        a.retention.categories_text(),
                        a.twilio_auth_token,
                        a.twilio_delete_recordings,
                        a.twilio_account_sid
                    ],
                ).map_err(db_error)?;
                Ok(())
            })
            .await
    }

    async fn account(&self, id: AccountId) -> Result<Option<AccountRecord>, StoreError> {
        self.db
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"
                ))
                .map_err(db_error)?
                .query_row([id.to_string()], account_from)
                .optional()
                .map_err(db_error)
            })
            .await
    }

    async fn update_account(&self, a: AccountRecord) -> Result<(), StoreError> {
        self.db
            .write(move |conn| {
                let n = conn.execute(
                    "UPDATE accounts SET name = ?2, settings = ?3, retention_days = ?4, retention_scope = ?5, retention_categories = ?6, twilio_auth_token = ?7, twilio_delete_recordings = ?8, twilio_account_sid = ?9 WHERE id = ?1",
                    params![a.id.to_string(), a.name, encode_collection(&a.collection), a.retention.after_days, a.retention.scope.as_str(), a.retention.categories_text(), a.twilio_auth_token, a.twilio_delete_recordings, a.twilio_account_sid],
                ).map_err(db_error)?;
                if n == 0 {
                    Err(StoreError::NotFound("account"))
                } else {
                    Ok(())
                }
            })
            .await
    }

    async fn list_accounts(
        &self,
        agency: Option<AgencyId>,
    ) -> Result<Vec<AccountRecord>, StoreError> {
        self.db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE ?1 IS NULL OR agency_id = ?1 ORDER BY created_at, id"),
                ).map_err(db_error)?;
                let rows = stmt.query_map([agency.map(|a| a.to_string())], account_from).map_err(db_error)?.collect::<Result<Vec<_>, _>>().map_err(db_error)?;
                Ok(rows)
            })
            .await
    }

    async fn create_token(&self, t: TokenRecord) -> Result<(), StoreError> {
        self.db
            .write(move |conn| {
                let (agency, account) = match t.scope {
                    Scope::Installation => (None, None),
                    Scope::Agency(a) => (Some(a.to_string()), None),
                    Scope::Account { agency, account } => (Some(agency.to_string()), Some(account.to_string())),
                };
                conn.execute(
                    "INSERT INTO tokens (id, hash, role, agency_id, account_id, personal_data, label, created_at, expires_at, revoked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![
                        t.id.to_string(),
                        t.hash.as_slice(),
                        t.role.as_str(),
                        agency,
                        account,
                        t.personal_data,
                        t.label,
                        t.created_at.millis(),
                        t.expires_at.map(Timestamp::millis),
                        t.revoked_at.map(Timestamp::millis),
                    ],
                ).map_err(db_error)?;
                Ok(())
            })
            .await
    }

    async fn token_by_hash(&self, hash: [u8; 32]) -> Result<Option<TokenRecord>, StoreError> {
        self.db
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?1"
                ))
                .map_err(db_error)?
                .query_row([hash.as_slice()], token_from)
                .optional()
                .map_err(db_error)
            })
            .await
    }

    async fn token_count(&self) -> Result<u64, StoreError> {
        self.db
            .read(|conn| {
                Ok(conn
                    .query_row("SELECT COUNT(*) FROM tokens", [], |r| r.get::<_, i64>(0))
                    .map_err(db_error)? as u64)
            })
            .await
    }

    async fn token(&self, id: TokenId) -> Result<Option<TokenRecord>, StoreError> {
        self.db
            .read(move |conn| {
                conn.prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"))
                    .map_err(db_error)?
                    .query_row([id.to_string()], token_from)
                    .optional()
                    .map_err(db_error)
            })
            .await
    }

    async fn revoke_token(
        &self,
        id: TokenId,
        at: Timestamp,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        self.db
            .write(move |conn| {
                let n = conn
                    .execute(
                        "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                        params![id.to_string(), at.millis()],
                    )
                    .map_err(db_error)?;
                if n > 0 {
                    audit::append(conn, &audit)?;
                }
                Ok(n > 0)
            })
            .await
    }

    async fn touch_token(&self, id: TokenId, at: Timestamp) -> Result<(), StoreError> {
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE tokens SET last_used_at = ?2 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
                ).map_err(db_error)?
                .execute(params![id.to_string(), at.millis()]).map_err(db_error)?;
                Ok(())
            })
            .await
    }

    async fn insert_calls(&self, calls: Vec<NewCallRow>) -> Result<InsertReport, StoreError> {
        // One call without inline consents fails only before it writes (every check comes
        // before its inserts), so it needs no savepoint; a batch, or consents whose notice
        // version is checked as they are recorded, may fail part-way.
        let checked_first = matches!(calls.as_slice(), [only] if only.consents.is_empty());
        let job = move |conn: &Connection| {
            let mut record = redo_record::Encoder::new(calls.len());
            let report = insert_call_rows(conn, &calls, Rows::New(&mut record))?;
            Ok((report, record.finish()))
        };
        if checked_first {
            return self.db.write_logged_checked_first(job).await;
        }
        self.db.write_logged(job).await
    }

    async fn insert_session(
        &self,
        session: SessionRow,
    ) -> Result<(Inserted<SessionId>, bool), StoreError> {
        self.db
            .write(move |conn| {
                let state = match session.visitor_bidx {
                    Some(bidx) if consent::account_has_any(conn, session.account_id)? => {
                        consent::state(conn, session.account_id, &[bidx], None)?
                    }
                    _ => Default::default(),
                };
                let (session, withheld) = admission::session_on_arrival(session, &state);
                Ok((insert_session_row(conn, &session)?, withheld))
            })
            .await
    }

    async fn call(&self, id: CallId) -> Result<Option<CallRow>, StoreError> {
        self.db
            .read(move |conn| {
                conn.prepare_cached(&format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = ?1"))
                    .map_err(db_error)?
                    .query_row([id.to_string()], call_from)
                    .optional()
                    .map_err(db_error)
            })
            .await
    }

    async fn calls(&self, q: CallQuery) -> Result<Vec<CallRow>, StoreError> {
        self.db
            .read(move |conn| {
                let (filter, mut args) = call_filter(&q);
                let mut sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE {filter}");
                if let Some((at, id)) = q.after {
                    sql.push_str(" AND (started_at, id) < (?, ?)");
                    args.push(Value::Integer(at.millis()));
                    args.push(Value::Text(id.to_string()));
                }
                sql.push_str(" ORDER BY started_at DESC, id DESC LIMIT ?");
                args.push(Value::Integer(i64::from(q.limit)));
                let mut stmt = conn.prepare_cached(&sql).map_err(db_error)?;
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(args), call_from)
                    .map_err(db_error)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db_error)?;
                Ok(rows)
            })
            .await
    }

    async fn count_calls(&self, q: CallQuery) -> Result<u64, StoreError> {
        self.db
            .read(move |conn| {
                let (filter, args) = call_filter(&q);
                let count: i64 = conn
                    .prepare_cached(&format!("SELECT count(*) FROM calls WHERE {filter}"))
                    .map_err(db_error)?
                    .query_row(rusqlite::params_from_iter(args), |r| r.get(0))
                    .map_err(db_error)?;
                Ok(u64::try_from(count).unwrap_or(0))
            })
            .await
    }

    async fn sessions(&self, ids: Vec<SessionId>) -> Result<Vec<SessionRow>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.db
            .read(move |conn| {
                let mut out = Vec::with_capacity(ids.len());
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"
                    ))
                    .map_err(db_error)?;
                for id in ids {
                    if let Some(row) = stmt
                        .query_row([id.to_string()], session_from)
                        .optional()
                        .map_err(db_error)?
                    {
                        out.push(row);
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn set_recording(
        &self,
        call: CallId,
        recording: Option<RecordingRow>,
        consent_check: Option<RecordingConsent>,
    ) -> Result<Option<RecordingRow>, StoreError> {
        self.db
            .write(move |conn| {
                type Current = (Option<String>, Option<String>, Option<i64>, Option<i64>, String, Option<Vec<u8>>, Option<Vec<u8>>);
                let previous: Option<Current> = conn
                    .query_row(
                        "SELECT c.recording_object, c.recording_content_type, c.recording_bytes, c.redacted_at, c.account_id, c.caller_bidx, s.visitor_bidx
                         FROM calls c LEFT JOIN sessions s ON s.id = c.session_id WHERE c.id = ?1",
                        [call.to_string()],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
                    )
                    .optional().map_err(db_error)?;
                let Some((object, content_type, bytes, redacted_at, account, caller, visitor)) = previous else {
                    return Err(StoreError::NotFound("call"));
                };
                if recording.is_some() {
                    let state = match consent_check {
                        Some(_) if redacted_at.is_none() => {
                            let account: AccountId = parse_id(account).map_err(db_error)?;
                            let subjects: Vec<ringfence_crypto::BlindIndex> = [bidx(caller), bidx(visitor)].into_iter().flatten().collect();
                            consent::state(conn, account, &subjects, Some(call))?
                        }
                        _ => Default::default(),
                    };
                    admission::recording_allowed(redacted_at.is_some(), consent_check, &state)?;
                }
                let (o, t, b) = match &recording {
                    Some(r) => (Some(r.object.clone()), Some(r.content_type.clone()), Some(r.bytes as i64)),
                    None => (None, None, None),
                };
                conn.execute(
                    "UPDATE calls SET recording_object = ?2, recording_content_type = ?3, recording_bytes = ?4 WHERE id = ?1",
                    params![call.to_string(), o, t, b],
                ).map_err(db_error)?;
                Ok(object.map(|object| RecordingRow { object, content_type: content_type.unwrap_or_default(), bytes: bytes.unwrap_or(0) as u64 }))
            })
            .await
    }

    async fn due_calls(&self, q: DueQuery) -> Result<Vec<CallRow>, StoreError> {
        self.db
            .read(move |conn| {
                let sql = format!(
                    "SELECT {CALL_COLUMNS} FROM calls {} ORDER BY started_at LIMIT ?4",
                    due_predicate(&q)
                );
                let mut stmt = conn.prepare_cached(&sql).map_err(db_error)?;
                let rows = stmt
                    .query_map(
                        params![
                            q.account_id.to_string(),
                            q.before.millis(),
                            q.gdpr_only,
                            i64::from(q.limit),
                            q.not_before.map(Timestamp::millis)
                        ],
                        call_from,
                    )
                    .map_err(db_error)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db_error)?;
                Ok(rows)
            })
            .await
    }

    async fn retire_redacted(
        &self,
        account: AccountId,
        before: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut retired = 0;
        // Through the index in order, a window at a time, so that the writer lets other work
        // through between windows and no entry is read twice (calls that stay, such as those
        // out of a GDPR-only scope, would otherwise be passed again by every window).
        let mut after = (i64::MIN, i64::MIN);
        loop {
            let (n, last) = self
                .db
                .write(move |conn| {
                    let window: Vec<(i64, i64, bool)> = conn
                        .prepare_cached(RETIRE_WINDOW).map_err(db_error)?
                        .query_map(
                            params![account.to_string(), before.millis(), after.0, after.1],
                            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                        ).map_err(db_error)?
                        .collect::<Result<_, _>>().map_err(db_error)?;
                    let stale: Vec<String> = window
                        .iter()
                        .filter(|(_, _, redacted)| *redacted)
                        .map(|(rowid, _, _)| rowid.to_string())
                        .collect();
                    let n = if stale.is_empty() {
                        0
                    } else {
                        conn.prepare_cached(
                            "UPDATE calls SET swept = 1 WHERE rowid IN (SELECT value FROM json_each(?1))",
                        ).map_err(db_error)?
                        .execute([format!("[{}]", stale.join(","))]).map_err(db_error)? as u64
                    };
                    let last = (window.len() as u32 == RETIRE_WINDOW_SIZE)
                        .then(|| window.last().map(|(rowid, started, _)| (*started, *rowid)))
                        .flatten();
                    Ok((n, last))
                })
                .await?;
            retired += n;
            match last {
                Some(last) => after = last,
                None => return Ok(retired),
            }
        }
    }

    async fn count_due(&self, q: DueQuery) -> Result<u64, StoreError> {
        self.db
            .read(move |conn| {
                let sql = format!("SELECT COUNT(*) FROM calls {}", due_predicate(&q));
                let n: i64 = conn
                    .prepare_cached(&sql)
                    .map_err(db_error)?
                    .query_row(
                        // ?4 is the limit of `due_calls`, unused here.
                        params![
                            q.account_id.to_string(),
                            q.before.millis(),
                            q.gdpr_only,
                            0i64,
                            q.not_before.map(Timestamp::millis)
                        ],
                        |r| r.get(0),
                    )
                    .map_err(db_error)?;
                Ok(n as u64)
            })
            .await
    }

    async fn set_legal_hold(
        &self,
        call: CallId,
        hold: Option<LegalHold>,
        event: AuditEvent,
    ) -> Result<i64, StoreError> {
        self.db
            .write(move |conn| {
                let n = match &hold {
                    Some(h) => conn.execute(
                        "UPDATE calls SET legal_hold_at = ?2, legal_hold_reason = ?3, legal_hold_by = ?4 WHERE id = ?1 AND redacted_at IS NULL",
                        params![call.to_string(), h.at.millis(), h.reason, h.by],
                    ).map_err(db_error)?,
                    None => conn.execute(
                        "UPDATE calls SET legal_hold_at = NULL, legal_hold_reason = NULL, legal_hold_by = NULL WHERE id = ?1",
                        params![call.to_string()],
                    ).map_err(db_error)?,
                };
                if n == 0 {
                    return Err(StoreError::NotFound("unredacted call"));
                }
                audit::append(conn, &event)
            })
            .await
    }

    async fn live_calls(&self, ids: Vec<CallId>) -> Result<Vec<CallId>, StoreError> {
        self.db
            .read(move |conn| {
                let mut stmt = conn
                    .prepare_cached("SELECT 1 FROM calls WHERE id = ?1 AND redacted_at IS NULL")
                    .map_err(db_error)?;
                let mut out = Vec::new();
                for id in ids {
                    if stmt.exists([id.to_string()]).map_err(db_error)? {
                        out.push(id);
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn live_sessions(&self, ids: Vec<SessionId>) -> Result<Vec<SessionId>, StoreError> {
        self.db
            .read(move |conn| {
                let mut stmt = conn
                    .prepare_cached("SELECT 1 FROM sessions WHERE id = ?1 AND redacted_at IS NULL")
                    .map_err(db_error)?;
                let mut out = Vec::new();
                for id in ids {
                    if stmt.exists([id.to_string()]).map_err(db_error)? {
                        out.push(id);
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn calls_by_ids(&self, ids: Vec<CallId>) -> Result<Vec<CallRow>, StoreError> {
        self.db
            .read(move |conn| {
                let mut stmt = conn
                    .prepare_cached(&format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = ?1"))
                    .map_err(db_error)?;
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    out.extend(
                        stmt.query_row([id.to_string()], call_from)
                            .optional()
                            .map_err(db_error)?,
                    );
                }
                Ok(out)
            })
            .await
    }

    async fn calls_by_caller(
        &self,
        account: AccountId,
        bidx: ringfence_crypto::BlindIndex,
    ) -> Result<Vec<CallRow>, StoreError> {
        self.db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {CALL_COLUMNS} FROM calls WHERE account_id = ?1 AND caller_bidx = ?2"
                )).map_err(db_error)?;
                let rows = stmt
                    .query_map(params![account.to_string(), bidx.as_slice()], call_from)
                    .map_err(db_error)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db_error)?;
                Ok(rows)
            })
            .await
    }

    async fn begin_redaction(&self, job: RedactionJob) -> Result<(), StoreError> {
        self.db
            .write(move |conn| redaction::begin(conn, &job))
            .await
    }

    async fn begin_caller_redaction(
        &self,
        mut job: RedactionJob,
        callers: Vec<(AccountId, ringfence_crypto::BlindIndex)>,
    ) -> Result<(RedactionJob, u64), StoreError> {
        self.db
            .write(move |conn| {
                let skipped = redaction::begin_callers(conn, &mut job, &callers)?;
                Ok((job, skipped))
            })
            .await
    }

    async fn apply_redaction(
        &self,
        job: RedactionJob,
        by: String,
        keys_gone: KeysDestroyed,
    ) -> Result<RedactionApplied, StoreError> {
        self.db
            .write(move |conn| {
                // The statements run while the vault destroys the keys; the transaction
                // commits (after this returns) only once they are destroyed.
                let applied = redaction::apply(conn, &job, &by)?;
                if keys_gone.wait_blocking() {
                    Ok(applied)
                } else {
                    Err(StoreError::Backend(
                        "the vault did not destroy the keys: the rows stay as they were".into(),
                    ))
                }
            })
            .await
    }

    async fn end_redaction(&self, job_id: String) -> Result<(), StoreError> {
        self.db
            .write(move |conn| redaction::end(conn, &job_id))
            .await
    }

    async fn pending_redactions(&self) -> Result<Vec<RedactionJob>, StoreError> {
        self.db.read(redaction::pending).await
    }

    async fn append_audit(&self, event: AuditEvent) -> Result<i64, StoreError> {
        self.db.write(move |conn| audit::append(conn, &event)).await
    }

    async fn audit(&self, query: AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.db.read(move |conn| audit::query(conn, &query)).await
    }

    async fn last_audit(&self) -> Result<Option<AuditEntry>, StoreError> {
        self.db.read(audit::last).await
    }

    async fn compact(&self) -> Result<(), StoreError> {
        self.db.truncate_wal().await
    }

    async fn call_by_external(
        &self,
        account: AccountId,
        external_id: String,
    ) -> Result<Option<CallRow>, StoreError> {
        self.db
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {CALL_COLUMNS} FROM calls WHERE account_id = ?1 AND external_id = ?2"
                ))
                .map_err(db_error)?
                .query_row(params![account.to_string(), external_id], call_from)
                .optional()
                .map_err(db_error)
            })
            .await
    }

    async fn update_call(&self, u: CallUpdate) -> Result<CallUpdated, StoreError> {
        self.db
            .write(move |conn| {
                let stored = conn
                    .prepare_cached(
                        "SELECT account_id, status, started_at, duration_s, direction, redacted_at, caller_bidx, caller_identity, caller_location FROM calls WHERE id = ?1",
                    )
                    .map_err(db_error)?
                    .query_row([u.id.to_string()], |r| {
                        Ok(admission::StoredCall {
                            account_id: parse_id(r.get(0)?)?,
                            status: r.get::<_, Option<String>>(1)?.as_deref().and_then(CallStatus::parse),
                            started_at: ts(r.get(2)?),
                            duration_s: r.get(3)?,
                            direction: r.get::<_, Option<String>>(4)?.as_deref().and_then(Direction::parse),
                            redacted: r.get::<_, Option<i64>>(5)?.is_some(),
                            caller_bidx: bidx(r.get(6)?),
                            caller_identity: r.get(7)?,
                            caller_location: r.get(8)?,
                        })
                    })
                    .optional()
                    .map_err(db_error)?
                    .ok_or(StoreError::NotFound("call"))?;
                // The caller's consent, read in this transaction: a withdrawal and a status
                // never pass each other.
                let consent = match stored.caller_bidx {
                    Some(b) if !stored.redacted && consent::account_has_any(conn, stored.account_id)? => {
                        consent::state(conn, stored.account_id, &[b], None)?
                    }
                    _ => Default::default(),
                };
                let merged = match admission::merge_status(&stored, &u, &consent) {
                    admission::StatusMerge::Unchanged => return Ok(CallUpdated::Unchanged),
                    admission::StatusMerge::Stale => return Ok(CallUpdated::Stale),
                    admission::StatusMerge::Apply(merged) => merged,
                };
                conn.prepare_cached(
                    "UPDATE calls SET status = ?2, started_at = ?3, duration_s = ?4, direction = ?5, caller_identity = ?6, caller_location = ?7
                     WHERE id = ?1 AND redacted_at IS NULL",
                )
                .map_err(db_error)?
                .execute(params![
                    u.id.to_string(),
                    merged.status.map(CallStatus::as_str),
                    merged.started_at.millis(),
                    merged.duration_s,
                    merged.direction.map(Direction::as_str),
                    merged.caller_identity,
                    merged.caller_location,
                ])
                .map_err(db_error)?;
                Ok(CallUpdated::Applied)
            })
            .await
    }

    async fn referenced_recordings(&self, objects: Vec<String>) -> Result<Vec<String>, StoreError> {
        self.db
            .read(move |conn| {
                let list = serde_json::to_string(&objects).map_err(|e| StoreError::Backend(e.to_string()))?;
                // Objects a redaction job still has to delete count as referenced: the job
                // deletes them itself.
                let rows = conn
                    .prepare_cached(
                        "SELECT value FROM json_each(?1) WHERE value IN (SELECT recording_object FROM calls WHERE recording_object IS NOT NULL AND recording_object IN (SELECT value FROM json_each(?1)))
                         OR EXISTS (SELECT 1 FROM redaction_jobs j WHERE instr(',' || j.objects || ',', ',' || value || ',') > 0)",
                    ).map_err(db_error)?
                    .query_map([list], |r| r.get::<_, String>(0)).map_err(db_error)?
                    .collect::<Result<Vec<_>, _>>().map_err(db_error)?;
                Ok(rows)
            })
            .await
    }

    async fn enqueue_download(&self, job: DownloadJob) -> Result<bool, StoreError> {
        self.db
            .write(move |conn| {
                let n = conn
                    .prepare_cached(
                        "INSERT INTO recording_downloads (id, account_id, call_sid, recording_sid, url, provider_account, state, attempts, next_attempt_at, outcome, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?7, NULL, ?8, ?8) ON CONFLICT (account_id, recording_sid) DO NOTHING",
                    ).map_err(db_error)?
                    .execute(params![
                        job.id,
                        job.account_id.to_string(),
                        job.call_sid,
                        job.recording_sid,
                        job.url,
                        job.provider_account,
                        job.next_attempt_at.millis(),
                        job.created_at.millis(),
                    ]).map_err(db_error)?;
                Ok(n == 1)
            })
            .await
    }

    async fn due_downloads(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<DownloadJob>, StoreError> {
        self.db
            .read(move |conn| {
                let rows = conn
                    .prepare_cached(&format!(
                        "SELECT {DOWNLOAD_COLUMNS} FROM recording_downloads WHERE state = 'pending' AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id LIMIT ?2"
                    )).map_err(db_error)?
                    .query_map(params![now.millis(), limit], download_from).map_err(db_error)?
                    .collect::<Result<Vec<_>, _>>().map_err(db_error)?;
                Ok(rows)
            })
            .await
    }

    async fn downloads(&self, account: AccountId) -> Result<Vec<DownloadJob>, StoreError> {
        self.db
            .read(move |conn| {
                let rows = conn
                    .prepare_cached(&format!(
                        "SELECT {DOWNLOAD_COLUMNS} FROM recording_downloads WHERE account_id = ?1 ORDER BY created_at, id"
                    )).map_err(db_error)?
                    .query_map([account.to_string()], download_from).map_err(db_error)?
                    .collect::<Result<Vec<_>, _>>().map_err(db_error)?;
                Ok(rows)
            })
            .await
    }

    async fn update_download(
        &self,
        job: DownloadJob,
        audit: Option<AuditEvent>,
    ) -> Result<(), StoreError> {
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE recording_downloads SET state = ?2, attempts = ?3, next_attempt_at = ?4, outcome = ?5, updated_at = ?6 WHERE id = ?1",
                ).map_err(db_error)?
                .execute(params![
                    job.id,
                    job.state,
                    job.attempts,
                    job.next_attempt_at.millis(),
                    job.outcome,
                    Timestamp::now().millis(),
                ]).map_err(db_error)?;
                if let Some(event) = audit {
                    audit::append(conn, &event)?;
                }
                Ok(())
            })
            .await
    }

    async fn create_notice(
        &self,
        account: AccountId,
        category: DataCategory,
        text: String,
        audit: AuditEvent,
    ) -> Result<NoticeRow, StoreError> {
        self.db
            .write(move |conn| consent::create_notice(conn, account, category, &text, audit))
            .await
    }

    async fn update_notice(
        &self,
        account: AccountId,
        category: DataCategory,
        version: u32,
        text: String,
        audit: AuditEvent,
    ) -> Result<NoticeRow, StoreError> {
        self.db
            .write(move |conn| {
                consent::update_notice(conn, account, category, version, &text, audit)
            })
            .await
    }

    async fn notices(&self, account: AccountId) -> Result<Vec<NoticeRow>, StoreError> {
        self.db
            .read(move |conn| {
                let sql = format!(
                    "SELECT {} FROM notices WHERE account_id = ?1 ORDER BY category, version",
                    consent::NOTICE_COLUMNS
                );
                let rows = conn
                    .prepare_cached(&sql)
                    .map_err(db_error)?
                    .query_map([account.to_string()], consent::notice_from)
                    .map_err(db_error)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db_error)?;
                Ok(rows)
            })
            .await
    }

    async fn record_consent(
        &self,
        row: ConsentRow,
        job: Option<RedactionJob>,
    ) -> Result<ConsentRecorded, StoreError> {
        self.db
            .write(move |conn| consent::record(conn, &row, job))
            .await
    }

    async fn consent_state(
        &self,
        account: AccountId,
        subjects: Vec<ringfence_crypto::BlindIndex>,
        call: Option<CallId>,
    ) -> Result<ringfence_core::consent::ConsentState, StoreError> {
        self.db
            .read(move |conn| consent::state(conn, account, &subjects, call))
            .await
    }

    async fn consents(
        &self,
        account: AccountId,
        subject: Option<ringfence_crypto::BlindIndex>,
        after_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ConsentRow>, StoreError> {
        self.db
            .read(move |conn| {
                let sql = format!(
                    "SELECT {} FROM consents WHERE account_id = ?1 AND (?2 IS NULL OR subject_bidx = ?2) AND seq > ?3 ORDER BY seq LIMIT ?4",
                    consent::CONSENT_COLUMNS
                );
                let rows = conn
                    .prepare_cached(&sql).map_err(db_error)?
                    .query_map(
                        params![
                            account.to_string(),
                            subject.as_ref().map(|b| b.as_slice()),
                            after_seq.unwrap_or(0),
                            limit
                        ],
                        consent::consent_from,
                    ).map_err(db_error)?
                    .collect::<Result<Vec<_>, _>>().map_err(db_error)?;
                Ok(rows)
            })
            .await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.db
            .read(|conn| {
                conn.prepare_cached(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id"
                ))
                .map_err(db_error)?
                .query_map([], token_from)
                .map_err(db_error)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_error)
            })
            .await
    }

    async fn record_job_run(&self, name: String, at: Timestamp) -> Result<(), StoreError> {
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO job_runs (name, at) VALUES (?1, ?2)
                     ON CONFLICT (name) DO UPDATE SET at = excluded.at WHERE excluded.at > job_runs.at",
                ).map_err(db_error)?
                .execute(params![name, at.millis()]).map_err(db_error)?;
                Ok(())
            })
            .await
    }

    async fn job_runs(&self) -> Result<Vec<(String, Timestamp)>, StoreError> {
        self.db
            .read(|conn| {
                conn.prepare_cached("SELECT name, at FROM job_runs ORDER BY name")
                    .map_err(db_error)?
                    .query_map([], |r| Ok((r.get::<_, String>(0)?, ts(r.get(1)?))))
                    .map_err(db_error)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db_error)
            })
            .await
    }

    async fn create_recipient(
        &self,
        recipient: RecipientRow,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        self.db
            .write(move |conn| {
                outbox::insert_recipient(conn, &recipient)?;
                audit::append(conn, &audit)?;
                Ok(())
            })
            .await
    }

    async fn update_recipient(
        &self,
        recipient: RecipientRow,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        self.db
            .write(move |conn| {
                let found = outbox::update_recipient(conn, &recipient)?;
                if found {
                    audit::append(conn, &audit)?;
                }
                Ok(found)
            })
            .await
    }

    async fn recipients(&self, account: AccountId) -> Result<Vec<RecipientRow>, StoreError> {
        self.db
            .read(move |conn| outbox::recipients(conn, account))
            .await
    }

    async fn recipient(
        &self,
        account: AccountId,
        id: RecipientId,
    ) -> Result<Option<RecipientRow>, StoreError> {
        self.db
            .read(move |conn| outbox::recipient(conn, account, id))
            .await
    }

    async fn due_deliveries(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        self.db
            .read(move |conn| outbox::due(conn, now, limit))
            .await
    }

    async fn finish_delivery(&self, attempt: DeliveryAttempt) -> Result<bool, StoreError> {
        self.db
            .write(move |conn| outbox::finish(conn, &attempt))
            .await
    }

    async fn cancel_delivery(&self, id: DeliveryId, why: String) -> Result<bool, StoreError> {
        self.db
            .write(move |conn| outbox::cancel(conn, id, &why, Timestamp::now()))
            .await
    }

    async fn deliveries(&self, query: DeliveryQuery) -> Result<Vec<DeliveryRow>, StoreError> {
        self.db.read(move |conn| outbox::list(conn, &query)).await
    }

    async fn retry_delivery(
        &self,
        account: AccountId,
        recipient: RecipientId,
        id: DeliveryId,
        audit: AuditEvent,
    ) -> Result<Option<DeliveryRow>, StoreError> {
        self.db
            .write(move |conn| {
                outbox::requeue(conn, account, recipient, id, Timestamp::now(), &audit)
            })
            .await
    }

    async fn delivery_summary(&self, account: AccountId) -> Result<DeliverySummary, StoreError> {
        self.db
            .read(move |conn| outbox::summary(conn, account))
            .await
    }

    async fn delivered_to(
        &self,
        calls: Vec<CallId>,
    ) -> Result<Vec<(CallId, RecipientId, String)>, StoreError> {
        self.db
            .read(move |conn| {
                let ids: Vec<String> = calls.iter().map(|c| c.to_string()).collect();
                let json = serde_json::to_string(&ids)
                    .map_err(|e| StoreError::Backend(format!("call ids: {e}")))?;
                Ok(outbox::delivered_to(conn, &json)?
                    .into_iter()
                    .filter_map(|(c, r, name)| Some((c.parse().ok()?, r.parse().ok()?, name)))
                    .collect())
            })
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db
            .read(|conn| {
                conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                    .map(|_| ())
                    .map_err(db_error)
            })
            .await
    }

    // web UI: users and sessions.
    async fn create_user(&self, user: UserRecord, audit: AuditEvent) -> Result<(), StoreError> {
        self.db
            .write(move |conn| users::insert_user(conn, &user, &audit))
            .await
    }

    async fn user_by_email_index(
        &self,
        index: ringfence_crypto::BlindIndex,
    ) -> Result<Option<UserRecord>, StoreError> {
        self.db
            .read(move |conn| users::user_by_index(conn, &index))
            .await
    }

    async fn user(&self, id: ringfence_core::UserId) -> Result<Option<UserRecord>, StoreError> {
        self.db.read(move |conn| users::user(conn, id)).await
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.db.read(users::list_users).await
    }

    async fn record_login_failure(
        &self,
        user: ringfence_core::UserId,
        now: Timestamp,
        max_failures: u32,
        lock_ms: i64,
    ) -> Result<LoginFailure, StoreError> {
        self.db
            .write(move |conn| users::record_login_failure(conn, user, now, max_failures, lock_ms))
            .await
    }

    async fn start_web_session(
        &self,
        session: WebSessionRecord,
        replaces: Option<[u8; 32]>,
    ) -> Result<(), StoreError> {
        self.db
            .write(move |conn| users::start_session(conn, &session, replaces))
            .await
    }

    async fn web_session(
        &self,
        hash: [u8; 32],
    ) -> Result<Option<(WebSessionRecord, UserRecord)>, StoreError> {
        self.db.read(move |conn| users::session(conn, &hash)).await
    }

    async fn touch_web_session(&self, hash: [u8; 32], now: Timestamp) -> Result<(), StoreError> {
        self.db
            .write(move |conn| users::touch_session(conn, &hash, now))
            .await
    }

    async fn end_web_session(
        &self,
        hash: [u8; 32],
        idle_before: Timestamp,
        started_before: Timestamp,
    ) -> Result<(), StoreError> {
        self.db
            .write(move |conn| users::end_session(conn, &hash, idle_before, started_before))
            .await
    }

    async fn update_user(
        &self,
        id: ringfence_core::UserId,
        change: UserChange,
        audit: Vec<AuditEvent>,
    ) -> Result<UserRecord, StoreError> {
        self.db
            .write(move |conn| users::update_user(conn, id, &change, &audit))
            .await
    }

    async fn remove_user(
        &self,
        id: ringfence_core::UserId,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        self.db
            .write(move |conn| users::remove_user(conn, id, &audit))
            .await
    }
}

/// The `WHERE` of a due-calls query; parameters ?1 account, ?2 before, ?3 gdpr_only.
/// Its first terms match the partial index `calls_live`, which also holds calls redacted by
/// hand until the sweep retires them (`retire_redacted`).
/// The due calls' condition (`ringfence_store::due`), with SQLite's parameters.
fn due_predicate(q: &DueQuery) -> String {
    ringfence_store::due::due_condition(q, |n| format!("?{n}"))
}

/// How many entries of `calls_live` one step of `retire_redacted` reads.
const RETIRE_WINDOW_SIZE: u32 = 2000;
/// The next window of `calls_live` after `(?3 started_at, ?4 rowid)`, with whether each call
/// is redacted.
const RETIRE_WINDOW: &str = "SELECT rowid, started_at, redacted_at IS NOT NULL FROM calls WHERE account_id = ?1 AND swept IS NULL AND legal_hold_at IS NULL AND started_at < ?2 AND (started_at, rowid) > (?3, ?4) ORDER BY started_at, rowid LIMIT 2000";

#[cfg(test)]
pub(crate) fn table_columns(conn: &Connection, table: &str) -> Vec<String> {
    let mut stmt = conn
        .prepare(&format!("PRAGMA table_info({table})"))
        .expect("pragma");
    stmt.query_map([], |r| r.get::<_, String>(1))
        .expect("query")
        .collect::<Result<Vec<_>, _>>()
        .expect("rows")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_core::datamap::{DATA_MAP, Entity};

    #[tokio::test]
    async fn retiring_walks_the_index_in_windows_and_takes_only_redacted_calls_before_the_cutoff() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let store = SqliteStore::open(&path).expect("open");
        let account = AccountId::generate();
        // 5,000 calls, three to each instant (ties across window edges); every third one
        // redacted by hand, every seventh on legal hold.
        let conn = Connection::open(&path).expect("open");
        // Rows of an account that exists nowhere else: only the calls table matters here.
        conn.pragma_update(None, "foreign_keys", "OFF")
            .expect("pragma");
        conn.execute_batch("BEGIN").expect("begin");
        for i in 0..5000i64 {
            conn.execute(
                "INSERT INTO calls (id, account_id, started_at, created_at, tracking_number, redacted_at, legal_hold_at) VALUES (?1, ?2, ?3, 0, 't', ?4, ?5)",
                params![
                    format!("call-{i}"),
                    account.to_string(),
                    i / 3,
                    (i % 3 == 0).then_some(1i64),
                    (i % 7 == 0).then_some(1i64)
                ],
            )
            .expect("insert");
        }
        conn.execute_batch("COMMIT").expect("commit");
        let before = 1200; // calls 0..3600
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).expect("count") };
        let expected = (0..3600i64).filter(|i| i % 3 == 0 && i % 7 != 0).count() as u64;
        let retired = store
            .retire_redacted(account, Timestamp::from_millis(before))
            .await
            .expect("retire");
        assert_eq!(retired, expected);
        assert_eq!(
            count("SELECT COUNT(*) FROM calls WHERE swept = 1") as u64,
            expected
        );
        assert_eq!(
            count(&format!(
                "SELECT COUNT(*) FROM calls WHERE swept = 1 AND (redacted_at IS NULL OR legal_hold_at IS NOT NULL OR started_at >= {before})"
            )),
            0
        );
        // Another account's calls and a second pass: nothing more.
        assert_eq!(
            store
                .retire_redacted(AccountId::generate(), Timestamp::from_millis(i64::MAX))
                .await
                .expect("retire"),
            0
        );
        assert_eq!(
            store
                .retire_redacted(account, Timestamp::from_millis(before))
                .await
                .expect("retire"),
            0
        );
    }

    #[test]
    fn the_due_calls_query_reads_the_sweeps_index_and_a_redaction_by_hand_leaves_it_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = Connection::open(dir.path().join("t.db")).expect("open");
        for migration in schema::CALL_LOG {
            conn.execute_batch(migration).expect("schema");
        }
        let plan = |sql: &str| -> String {
            let mut stmt = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .expect("plan");
            let values: [&dyn rusqlite::ToSql; 5] = [&"a", &0i64, &0i64, &10i64, &None::<i64>];
            let n = stmt.parameter_count();
            stmt.query_map(&values[..n], |r| r.get::<_, String>(3))
                .expect("query")
                .collect::<Result<Vec<_>, _>>()
                .expect("rows")
                .join("; ")
        };
        for category in [None, Some(ringfence_core::DataCategory::Recording)] {
            let q = DueQuery {
                account_id: AccountId::generate(),
                before: Timestamp::now(),
                gdpr_only: true,
                category,
                not_before: None,
                limit: 10,
            };
            let due = plan(&format!(
                "SELECT id FROM calls {} ORDER BY started_at LIMIT ?4",
                due_predicate(&q)
            ));
            assert!(due.contains("INDEX calls_live"), "{category:?}: {due}");
            let count = plan(&format!("SELECT COUNT(*) FROM calls {}", due_predicate(&q)));
            assert!(count.contains("INDEX calls_live"), "{category:?}: {count}");
        }
        let retire = plan(RETIRE_WINDOW);
        assert!(
            retire.contains("INDEX calls_live") && !retire.contains("TEMP B-TREE"),
            "{retire}"
        );
        assert!(RETIRE_WINDOW.ends_with(&format!("LIMIT {RETIRE_WINDOW_SIZE}")));
        // The columns a redaction changes are neither in the index nor in its condition, so
        // SQLite does not touch it (it would cost one scattered page per redacted call).
        let (sql,): (String,) = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'calls_live'",
                [],
                |r| Ok((r.get(0)?,)),
            )
            .expect("index");
        let redaction_columns = DATA_MAP
            .iter()
            .filter(|f| {
                f.entity == Entity::Call && f.category != ringfence_core::DataCategory::CallFacts
            })
            .map(|f| f.storage.column())
            .chain(["redacted_at", "redaction_reason", "redacted_by"]);
        for column in redaction_columns {
            assert!(!sql.contains(column), "calls_live mentions {column}: {sql}");
        }
    }

    #[test]
    fn every_column_of_calls_and_sessions_is_declared_in_the_data_map() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = Connection::open(dir.path().join("t.db")).expect("open");
        for migration in schema::CALL_LOG {
            conn.execute_batch(migration).expect("schema");
        }
        for (table, entity) in [
            ("calls", Entity::Call),
            ("sessions", Entity::VisitorSession),
        ] {
            for column in table_columns(&conn, table) {
                let declared = DATA_MAP
                    .iter()
                    .any(|f| f.entity == entity && f.storage.column() == column);
                assert!(
                    declared,
                    "column {table}.{column} is not declared in ringfence_core::datamap::DATA_MAP"
                );
            }
        }
    }

    /// A call row whose four sealed categories are `marker` followed by a category letter.
    fn marked_call(account: AccountId, bidx: [u8; 16], marker: &str) -> NewCallRow {
        let blob = |c: &str| Some(format!("{marker}-{c}").into_bytes());
        NewCallRow {
            call: CallRow {
                id: CallId::generate(),
                account_id: account,
                external_id: Some(format!("ext-{marker}")),
                started_at: Timestamp::from_millis(1_000),
                created_at: Timestamp::from_millis(2_000),
                duration_s: None,
                direction: None,
                status: None,
                tracking_number: "+14155550100".into(),
                source: None,
                campaign: None,
                utm_source: None,
                utm_medium: None,
                utm_campaign: None,
                gdpr_scope: Some(true),
                caller_bidx: Some(bidx),
                session_id: None,
                caller_identity: blob("I"),
                caller_location: blob("L"),
                transcript: blob("T"),
                interaction: blob("X"),
                recording: None,
                redacted_at: None,
                redaction_reason: None,
                redacted_by: None,
                legal_hold: None,
            },
            inline_session: None,
            consents: Vec::new(),
            transcript_needs_consent: false,
        }
    }

    #[tokio::test]
    async fn the_redo_log_holds_only_what_is_stored_and_replays_it_as_stored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let hour = RedoLimits {
            max_delay: std::time::Duration::from_secs(3600),
            max_bytes: u64::MAX,
        };
        let store = SqliteStore::open_with_limits(&path, hour).expect("open");
        let account = AccountId::generate();
        let (forgotten, withdrew, plain) = ([1u8; 16], [2u8; 16], [3u8; 16]);
        store
            .db
            .write(move |conn| {
                conn.execute_batch(&format!(
                    "INSERT INTO agencies (id, name, created_at) VALUES ('ag', 'A', 0);
                     INSERT INTO accounts (id, agency_id, name, settings, created_at) VALUES ('{account}', 'ag', 'B', '{{}}', 0);"
                )).map_err(db_error)?;
                conn.execute(
                    "INSERT INTO forget_list (account_id, caller_bidx, created_at) VALUES (?1, ?2, 0)",
                    params![account.to_string(), &forgotten[..]],
                ).map_err(db_error)?;
                conn.execute(
                    "INSERT INTO consents (id, account_id, subject_kind, subject_bidx, subject, category, status, method, at, recorded_by) VALUES ('c1', ?1, 'caller', ?2, x'00', 'caller_location', 'withdrawn', 'api', 0, 'test')",
                    params![account.to_string(), &withdrew[..]],
                ).map_err(db_error)?;
                Ok(())
            })
            .await
            .expect("setup");
        let report = store
            .insert_calls(vec![
                marked_call(account, forgotten, "FORGOTTEN"),
                marked_call(account, withdrew, "WITHDREW"),
                marked_call(account, plain, "PLAIN"),
            ])
            .await
            .expect("insert");
        assert_eq!(report.forgotten.len(), 1);
        assert_eq!(report.withheld[1], vec![DataCategory::CallerLocation]);
        let log = std::fs::read(dir.path().join("t.db-redo")).expect("log");
        let holds = |m: &str| log.windows(m.len()).any(|w| w == m.as_bytes());
        assert!(
            holds("PLAIN-I") && holds("PLAIN-L") && holds("WITHDREW-I"),
            "the log holds what is stored"
        );
        for absent in [
            "FORGOTTEN-I",
            "FORGOTTEN-L",
            "FORGOTTEN-T",
            "FORGOTTEN-X",
            "WITHDREW-L",
        ] {
            assert!(
                !holds(absent),
                "{absent} is not stored, so not logged either"
            );
        }
        // A re-delivery stores nothing and logs nothing.
        let before = log.len();
        store
            .insert_calls(vec![marked_call(account, plain, "PLAIN")])
            .await
            .expect("re-delivery");
        let log = std::fs::read(dir.path().join("t.db-redo")).expect("log");
        assert!(!log[before..].windows(7).any(|w| w == b"PLAIN-I"));
        // A crash now: the copy replays to what was stored, the forgetting journaled again.
        let crash = dir.path().join("crash");
        std::fs::create_dir(&crash).expect("dir");
        for f in ["t.db", "t.db-wal", "t.db-redo"] {
            if dir.path().join(f).exists() {
                std::fs::copy(dir.path().join(f), crash.join(f)).expect("copy");
            }
        }
        // (caller identity, caller location, redaction reason) of each call.
        type Stored = (Option<Vec<u8>>, Option<Vec<u8>>, Option<String>);
        let stored = |path: &Path| -> Vec<Stored> {
            let conn = Connection::open(path).expect("open");
            let mut stmt = conn
                .prepare("SELECT caller_identity, caller_location, redaction_reason FROM calls ORDER BY external_id")
                .expect("prepare");
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .expect("query")
                .collect::<Result<_, _>>()
                .expect("rows")
        };
        assert!(
            stored(&crash.join("t.db")).is_empty(),
            "nothing committed before the crash"
        );
        let replayed = SqliteStore::open(&crash.join("t.db")).expect("replay");
        drop(replayed);
        let rows = stored(&crash.join("t.db"));
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0],
            (None, None, Some("forget_list".into())),
            "FORGOTTEN"
        );
        assert_eq!(
            rows[1],
            (Some(b"PLAIN-I".to_vec()), Some(b"PLAIN-L".to_vec()), None)
        );
        assert_eq!(rows[2], (Some(b"WITHDREW-I".to_vec()), None, None));
        let journaled: i64 = Connection::open(crash.join("t.db"))
            .expect("open")
            .query_row(
                "SELECT COUNT(*) FROM audit_log WHERE action = 'call.redacted_on_arrival'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(journaled, 1);
        drop(store);
        assert_eq!(stored(&path), rows, "the live database stored the same");
    }
}
