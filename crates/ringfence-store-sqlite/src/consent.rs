//! Notices and the consent ledger in SQLite, and the consent checks that run inside the
//! writer's transactions (so that a withdrawal and an ingest never pass each other).

use rusqlite::{Connection, OptionalExtension, Row, params};

use ringfence_core::call::RedactionReason;
use ringfence_core::consent::{ConsentMethod, ConsentState, ConsentStatus, SubjectKind};
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, CallId, DataCategory, SessionId};
use ringfence_crypto::BlindIndex;

use super::{audit, redaction};
use crate::db_error;
use ringfence_store::StoreError;
use ringfence_store::records::{AuditEvent, ConsentRecorded, ConsentRow, NoticeRow, RedactionJob};

pub(crate) const CONSENT_COLUMNS: &str = "seq, id, account_id, subject_kind, subject_bidx, subject, category, status, notice_version, method, at, call_id, recorded_by";

fn bad(column: usize, name: &str) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnType(column, name.into(), rusqlite::types::Type::Text)
}

pub(crate) fn consent_from(r: &Row<'_>) -> rusqlite::Result<ConsentRow> {
    let account: String = r.get(2)?;
    let kind: String = r.get(3)?;
    let bidx: Vec<u8> = r.get(4)?;
    let category: String = r.get(6)?;
    let status: String = r.get(7)?;
    let method: String = r.get(9)?;
    let call: Option<String> = r.get(11)?;
    Ok(ConsentRow {
        seq: r.get(0)?,
        id: r.get(1)?,
        account_id: account.parse().map_err(|_| bad(2, "account_id"))?,
        subject_kind: SubjectKind::parse(&kind).ok_or_else(|| bad(3, "subject_kind"))?,
        subject_bidx: bidx.try_into().map_err(|_| bad(4, "subject_bidx"))?,
        subject: r.get(5)?,
        category: DataCategory::parse(&category).ok_or_else(|| bad(6, "category"))?,
        status: ConsentStatus::parse(&status).ok_or_else(|| bad(7, "status"))?,
        notice_version: r.get(8)?,
        method: ConsentMethod::parse(&method).ok_or_else(|| bad(9, "method"))?,
        at: Timestamp::from_millis(r.get(10)?),
        call_id: call.and_then(|c| c.parse().ok()),
        recorded_by: r.get(12)?,
    })
}

pub(crate) fn notice_from(r: &Row<'_>) -> rusqlite::Result<NoticeRow> {
    let account: String = r.get(0)?;
    let category: String = r.get(1)?;
    Ok(NoticeRow {
        account_id: account.parse().map_err(|_| bad(0, "account_id"))?,
        category: DataCategory::parse(&category).ok_or_else(|| bad(1, "category"))?,
        version: r.get(2)?,
        text: r.get(3)?,
        created_at: Timestamp::from_millis(r.get(4)?),
        used_at: r.get::<_, Option<i64>>(5)?.map(Timestamp::from_millis),
    })
}

pub(crate) const NOTICE_COLUMNS: &str = "account_id, category, version, text, created_at, used_at";

pub(crate) fn create_notice(
    conn: &Connection,
    account: AccountId,
    category: DataCategory,
    text: &str,
    audit_event: AuditEvent,
) -> Result<NoticeRow, StoreError> {
    let now = Timestamp::now();
    let version: u32 = conn
        .prepare_cached(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM notices WHERE account_id = ?1 AND category = ?2",
        ).map_err(db_error)?
        .query_row(params![account.to_string(), category.as_str()], |r| {
            r.get(0)
        }).map_err(db_error)?;
    conn.prepare_cached(
        "INSERT INTO notices (account_id, category, version, text, created_at, used_at) VALUES (?1, ?2, ?3, ?4, ?5, NULL)",
    ).map_err(db_error)?
    .execute(params![
        account.to_string(),
        category.as_str(),
        version,
        text,
        now.millis()
    ]).map_err(db_error)?;
    let mut event = audit_event;
    event.details = format!(
        "{{\"category\":\"{}\",\"version\":{version}}}",
        category.as_str()
    );
    audit::append(conn, &event)?;
    Ok(NoticeRow {
        account_id: account,
        category,
        version,
        text: text.to_owned(),
        created_at: now,
        used_at: None,
    })
}

pub(crate) fn update_notice(
    conn: &Connection,
    account: AccountId,
    category: DataCategory,
    version: u32,
    text: &str,
    audit_event: AuditEvent,
) -> Result<NoticeRow, StoreError> {
    let existing = conn
        .prepare_cached(&format!(
            "SELECT {NOTICE_COLUMNS} FROM notices WHERE account_id = ?1 AND category = ?2 AND version = ?3"
        )).map_err(db_error)?
        .query_row(
            params![account.to_string(), category.as_str(), version],
            notice_from,
        )
        .optional().map_err(db_error)?;
    let Some(mut notice) = existing else {
        return Err(StoreError::NotFound("notice"));
    };
    if notice.used_at.is_some() {
        return Err(StoreError::NoticeInUse);
    }
    conn.prepare_cached(
        "UPDATE notices SET text = ?4 WHERE account_id = ?1 AND category = ?2 AND version = ?3",
    )
    .map_err(db_error)?
    .execute(params![
        account.to_string(),
        category.as_str(),
        version,
        text
    ])
    .map_err(db_error)?;
    let mut event = audit_event;
    event.details = format!(
        "{{\"category\":\"{}\",\"version\":{version}}}",
        category.as_str()
    );
    audit::append(conn, &event)?;
    notice.text = text.to_owned();
    Ok(notice)
}

/// Marks the notice used (immutable from now on); fails when it does not exist.
fn use_notice(
    conn: &Connection,
    account: AccountId,
    category: DataCategory,
    version: u32,
    at: Timestamp,
) -> Result<(), StoreError> {
    let found = conn
        .prepare_cached(
            "UPDATE notices SET used_at = COALESCE(used_at, ?4) WHERE account_id = ?1 AND category = ?2 AND version = ?3",
        ).map_err(db_error)?
        .execute(params![
            account.to_string(),
            category.as_str(),
            version,
            at.millis()
        ]).map_err(db_error)?;
    if found == 0 {
        return Err(StoreError::UnknownNoticeVersion { index: None });
    }
    Ok(())
}

/// Appends one event and journals it (the journal keeps that a consent existed, never whose).
fn insert_event(
    conn: &Connection,
    row: &ConsentRow,
    agency: Option<String>,
) -> Result<(i64, i64), StoreError> {
    if let Some(version) = row.notice_version {
        use_notice(conn, row.account_id, row.category, version, row.at)?;
    }
    conn.prepare_cached(
        "INSERT INTO consents (id, account_id, subject_kind, subject_bidx, subject, category, status, notice_version, method, at, call_id, recorded_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    ).map_err(db_error)?
    .execute(params![
        row.id,
        row.account_id.to_string(),
        row.subject_kind.as_str(),
        row.subject_bidx.as_slice(),
        row.subject,
        row.category.as_str(),
        row.status.as_str(),
        row.notice_version,
        row.method.as_str(),
        row.at.millis(),
        row.call_id.map(|c| c.to_string()),
        row.recorded_by,
    ]).map_err(db_error)?;
    let seq = conn.last_insert_rowid();
    let notice = row
        .notice_version
        .map(|v| v.to_string())
        .unwrap_or_else(|| "null".into());
    let call = row
        .call_id
        .map(|c| format!("\"{c}\""))
        .unwrap_or_else(|| "null".into());
    let audit_seq = audit::append(
        conn,
        &AuditEvent {
            actor: row.recorded_by.clone(),
            action: format!("consent.{}", row.status.as_str()),
            agency_id: agency.and_then(|a| a.parse().ok()),
            account_id: Some(row.account_id),
            subject: Some(row.id.clone()),
            count: None,
            reason: None,
            details: format!(
                "{{\"category\":\"{}\",\"method\":\"{}\",\"notice_version\":{notice},\"subject_kind\":\"{}\",\"call_id\":{call},\"ledger_seq\":{seq}}}",
                row.category.as_str(),
                row.method.as_str(),
                row.subject_kind.as_str()
            ),
        },
    )?;
    Ok((seq, audit_seq))
}

fn agency_of(conn: &Connection, account: AccountId) -> Result<Option<String>, StoreError> {
    conn.prepare_cached("SELECT agency_id FROM accounts WHERE id = ?1")
        .map_err(db_error)?
        .query_row([account.to_string()], |r| r.get(0))
        .optional()
        .map_err(db_error)
}

/// Tells the account's recipients of a withdrawal: the consent event's id, the category,
/// the kind of subject and the calls it touches (never the subject).
fn tell_withdrawn(conn: &Connection, row: &ConsentRow, calls: &[String]) -> Result<(), StoreError> {
    if !super::outbox::any_recipient(conn)? {
        return Ok(());
    }
    let extra = ringfence_store::effects::withdrawal_extra(row);
    super::outbox::enqueue_erasure(
        conn,
        row.account_id,
        ringfence_core::recipients::EventKind::ConsentWithdrawn,
        RedactionReason::ConsentWithdrawn.as_str(),
        calls,
        &extra,
        row.at,
    )
}

/// Records one event; for a withdrawal, begins the removal of the category's data of the
/// subject in the same transaction (`job` is the template: ids are filled in here).
pub(crate) fn record(
    conn: &Connection,
    row: &ConsentRow,
    job: Option<RedactionJob>,
) -> Result<ConsentRecorded, StoreError> {
    if let Some(call) = row.call_id {
        let found = conn
            .prepare_cached("SELECT 1 FROM calls WHERE id = ?1 AND account_id = ?2")
            .map_err(db_error)?
            .exists(params![call.to_string(), row.account_id.to_string()])
            .map_err(db_error)?;
        if !found {
            return Err(StoreError::NotFound("call"));
        }
    }
    let agency = agency_of(conn, row.account_id)?;
    let (seq, audit_seq) = insert_event(conn, row, agency)?;
    let mut recorded = ConsentRecorded {
        seq,
        audit_seq,
        job: None,
        skipped_legal_hold: 0,
    };
    let Some(mut job) = job.filter(|_| row.status == ConsentStatus::Withdrawn) else {
        if row.status == ConsentStatus::Withdrawn {
            tell_withdrawn(conn, row, &[])?;
        }
        return Ok(recorded);
    };
    let account = row.account_id.to_string();
    let bidx = row.subject_bidx.as_slice();
    // The subject's live calls and sessions.
    let mut sessions: Vec<SessionId> = Vec::new();
    let calls: Vec<(String, Option<String>, Option<String>, bool)> = match row.subject_kind {
        SubjectKind::Caller => conn
            .prepare_cached(
                "SELECT id, session_id, recording_object, legal_hold_at IS NOT NULL FROM calls WHERE account_id = ?1 AND caller_bidx = ?2 AND redacted_at IS NULL",
            ).map_err(db_error)?
            .query_map(params![account, bidx], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).map_err(db_error)?
            .collect::<Result<_, _>>().map_err(db_error)?,
        SubjectKind::Visitor => {
            sessions = conn
                .prepare_cached(
                    "SELECT id FROM sessions WHERE account_id = ?1 AND visitor_bidx = ?2 AND redacted_at IS NULL",
                ).map_err(db_error)?
                .query_map(params![account, bidx], |r| r.get::<_, String>(0)).map_err(db_error)?
                .filter_map(|r| r.ok().and_then(|s| s.parse().ok()))
                .collect();
            conn.prepare_cached(
                "SELECT c.id, c.session_id, c.recording_object, c.legal_hold_at IS NOT NULL FROM calls c JOIN sessions s ON s.id = c.session_id
                 WHERE s.account_id = ?1 AND s.visitor_bidx = ?2 AND c.redacted_at IS NULL",
            ).map_err(db_error)?
            .query_map(params![account, bidx], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).map_err(db_error)?
            .collect::<Result<_, _>>().map_err(db_error)?
        }
    };
    let category = row.category;
    for (id, session, object, held) in calls {
        if held {
            // Legal hold exempts the call (GDPR Art. 17(3)(e)); the answer counts it.
            recorded.skipped_legal_hold += 1;
            continue;
        }
        if let Ok(id) = id.parse::<CallId>() {
            job.call_ids.push(id);
        }
        if category == DataCategory::Visitor
            && let Some(s) = session.and_then(|s| s.parse::<SessionId>().ok())
        {
            sessions.push(s);
        }
        if category == DataCategory::Recording
            && let Some(o) = object
        {
            job.objects.push(o);
        }
    }
    if category == DataCategory::Visitor {
        sessions.sort();
        sessions.dedup();
        job.session_ids = sessions;
    }
    job.categories = vec![category];
    job.reason = RedactionReason::ConsentWithdrawn;
    let affected: Vec<String> = job.call_ids.iter().map(|c| c.to_string()).collect();
    tell_withdrawn(conn, row, &affected)?;
    if job.call_ids.is_empty() && job.session_ids.is_empty() {
        return Ok(recorded);
    }
    redaction::begin(conn, &job)?;
    recorded.job = Some(job);
    Ok(recorded)
}

/// The current consent state of the subjects among `subjects` in `account`, together with
/// the events recorded for `call` (ledger order).
pub(crate) fn state(
    conn: &Connection,
    account: AccountId,
    subjects: &[BlindIndex],
    call: Option<CallId>,
) -> Result<ConsentState, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT category, status FROM consents WHERE account_id = ?1 AND (subject_bidx = ?2 OR subject_bidx = ?3 OR call_id = ?4) ORDER BY seq",
    ).map_err(db_error)?;
    let none: &[u8] = &[];
    let a = subjects.first().map(|b| b.as_slice()).unwrap_or(none);
    let b = subjects.get(1).map(|b| b.as_slice()).unwrap_or(none);
    let events = stmt
        .query_map(
            params![account.to_string(), a, b, call.map(|c| c.to_string())],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
        )
        .map_err(db_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db_error)?;
    Ok(ConsentState::from_events(events.into_iter().filter_map(
        |(c, s)| Some((DataCategory::parse(&c)?, ConsentStatus::parse(&s)?)),
    )))
}

/// Whether the account has any consent event (most ingest skips the per-call lookup).
pub(crate) fn account_has_any(conn: &Connection, account: AccountId) -> Result<bool, StoreError> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM consents WHERE account_id = ?1)")
        .map_err(db_error)?
        .query_row([account.to_string()], |r| r.get(0))
        .map_err(db_error)
}

/// Inline consents sent with a call: recorded against the stored call.
pub(crate) fn record_inline(conn: &Connection, row: &ConsentRow) -> Result<(), StoreError> {
    let agency = agency_of(conn, row.account_id)?;
    insert_event(conn, row, agency).map(|_| ())
}

/// Removes the ledger entries of these subjects (their redaction); returns how many.
pub(crate) fn remove_subjects(
    conn: &Connection,
    subjects: &[(AccountId, BlindIndex)],
) -> Result<u64, StoreError> {
    let mut stmt = conn
        .prepare_cached("DELETE FROM consents WHERE account_id = ?1 AND subject_bidx = ?2")
        .map_err(db_error)?;
    let mut n = 0u64;
    for (account, bidx) in subjects {
        n += stmt
            .execute(params![account.to_string(), bidx.as_slice()])
            .map_err(db_error)? as u64;
    }
    Ok(n)
}
