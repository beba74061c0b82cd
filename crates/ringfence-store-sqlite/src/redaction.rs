//! Redaction in SQLite: the job table, clearing the personal columns (named by the data
//! map, not by hand), and the forget list.

use rusqlite::{Connection, params};

use ringfence_core::AccountId;
use ringfence_core::call::RedactionReason;
use ringfence_core::datamap::{DataCategory, Entity, columns_of};
use ringfence_core::recipients::EventKind;
use ringfence_core::timestamp::Timestamp;
use ringfence_crypto::BlindIndex;

use super::{audit, outbox};
use crate::db_error;
use ringfence_store::records::{AuditEvent, RedactionApplied, RedactionJob};
use ringfence_store::{StoreError, effects};

use ringfence_crypto::{blind_index_from_hex as unhex, blind_index_to_hex as hex};

fn join<T: ToString>(items: &[T]) -> String {
    items.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

fn split<T: std::str::FromStr>(text: &str) -> Vec<T> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

pub(crate) fn begin(conn: &Connection, job: &RedactionJob) -> Result<(), StoreError> {
    let forget = job
        .forget
        .iter()
        .map(|(a, b)| format!("{a}:{}", hex(b)))
        .collect::<Vec<_>>()
        .join(",");
    let subjects = job
        .subjects
        .iter()
        .map(|(a, b)| format!("{a}:{}", hex(b)))
        .collect::<Vec<_>>()
        .join(",");
    let a = &job.audit;
    conn.prepare_cached(
        "INSERT INTO redaction_jobs (id, created_at, reason, call_ids, session_ids, objects, forget, audit_actor, audit_action, audit_agency, audit_account, audit_subject, audit_reason, audit_details, categories, subjects)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    ).map_err(db_error)?
    .execute(params![
        job.id,
        job.created_at.millis(),
        job.reason.as_str(),
        join(&job.call_ids),
        join(&job.session_ids),
        job.objects.join(","),
        forget,
        a.actor,
        a.action,
        a.agency_id.map(|x| x.to_string()),
        a.account_id.map(|x| x.to_string()),
        a.subject,
        a.reason,
        a.details,
        job.categories.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(","),
        subjects,
    ]).map_err(db_error)?;
    Ok(())
}

/// Begins the redaction of every call of these callers (account, blind index) in one
/// transaction: the forget-list entries are added and the callers' calls chosen in the
/// same transaction that records the job. Ingest checks the forget list inside its own
/// transaction, so a call committed before this one is chosen here and a call committed
/// after it is redacted on arrival: a `forget` can miss no call. Calls on legal hold are
/// left out and counted.
pub(crate) fn begin_callers(
    conn: &Connection,
    job: &mut RedactionJob,
    callers: &[(AccountId, BlindIndex)],
) -> Result<u64, StoreError> {
    let at = Timestamp::now();
    let mut forget = conn.prepare_cached("INSERT INTO forget_list (account_id, caller_bidx, created_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING").map_err(db_error)?;
    for (account, bidx) in &job.forget {
        forget
            .execute(params![account.to_string(), bidx.as_slice(), at.millis()])
            .map_err(db_error)?;
    }
    let mut skipped = 0u64;
    let mut select = conn
        .prepare_cached(
            "SELECT id, session_id, recording_object, legal_hold_at IS NOT NULL FROM calls
         WHERE account_id = ?1 AND caller_bidx = ?2 AND redacted_at IS NULL",
        )
        .map_err(db_error)?;
    for (account, bidx) in callers {
        let rows = select
            .query_map(params![account.to_string(), bidx.as_slice()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, bool>(3)?,
                ))
            })
            .map_err(db_error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_error)?;
        for (id, session, object, held) in rows {
            // Calls on legal hold are exempt (GDPR Art. 17(3)(e)); the receipt counts them.
            if held {
                skipped += 1;
                continue;
            }
            job.call_ids.push(
                id.parse()
                    .map_err(|_| StoreError::Backend("a call id does not parse".into()))?,
            );
            if let Some(session) = session.and_then(|s| s.parse().ok()) {
                job.session_ids.push(session);
            }
            job.objects.extend(object);
        }
    }
    job.session_ids.sort();
    job.session_ids.dedup();
    begin(conn, job)?;
    Ok(skipped)
}

/// `account:hex,…` pairs.
fn pairs(text: &str) -> Vec<(AccountId, BlindIndex)> {
    text.split(',')
        .filter_map(|pair| {
            let (a, b) = pair.split_once(':')?;
            Some((a.parse::<AccountId>().ok()?, unhex(b)?))
        })
        .collect()
}

pub(crate) fn pending(conn: &Connection) -> Result<Vec<RedactionJob>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, created_at, reason, call_ids, session_ids, objects, forget, audit_actor, audit_action, audit_agency, audit_account, audit_subject, audit_reason, audit_details, categories, subjects
         FROM redaction_jobs ORDER BY created_at, id",
    ).map_err(db_error)?;
    let rows = stmt
        .query_map([], |r| {
            let reason: String = r.get(2)?;
            let forget: String = r.get(6)?;
            let objects: String = r.get(5)?;
            let agency: Option<String> = r.get(9)?;
            let account: Option<String> = r.get(10)?;
            let categories: String = r.get(14)?;
            let subjects: String = r.get(15)?;
            Ok(RedactionJob {
                subjects: pairs(&subjects),
                categories: categories
                    .split(',')
                    .filter_map(DataCategory::parse)
                    .collect(),
                id: r.get(0)?,
                created_at: Timestamp::from_millis(r.get(1)?),
                reason: RedactionReason::parse(&reason).unwrap_or(RedactionReason::Manual),
                call_ids: split(&r.get::<_, String>(3)?),
                session_ids: split(&r.get::<_, String>(4)?),
                objects: objects
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
                forget: pairs(&forget),
                audit: AuditEvent {
                    actor: r.get(7)?,
                    action: r.get(8)?,
                    agency_id: agency.and_then(|a| a.parse().ok()),
                    account_id: account.and_then(|a| a.parse().ok()),
                    subject: r.get(11)?,
                    count: None,
                    reason: r.get(12)?,
                    details: r.get(13)?,
                },
            })
        })
        .map_err(db_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db_error)?;
    Ok(rows)
}

/// Ids as a JSON array, for `json_each`.
fn json_ids<T: ToString>(ids: impl Iterator<Item = T>) -> String {
    let mut out = String::from("[");
    for (i, id) in ids.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(&id.to_string());
        out.push('"');
    }
    out.push(']');
    out
}

/// `known` plus the recording objects of the live calls among `ids` (a recording may have
/// arrived after the job began).
fn objects_with(conn: &Connection, ids: &str, known: &[String]) -> Result<Vec<String>, StoreError> {
    let mut objects: Vec<String> = known.to_vec();
    let mut seen: std::collections::HashSet<String> = known.iter().cloned().collect();
    let found: Vec<String> = conn
        .prepare_cached(
            "SELECT recording_object FROM calls WHERE id IN (SELECT value FROM json_each(?1)) AND redacted_at IS NULL AND recording_object IS NOT NULL",
        ).map_err(db_error)?
        .query_map([ids], |r| r.get(0)).map_err(db_error)?
        .collect::<Result<_, _>>().map_err(db_error)?;
    for object in found {
        if seen.insert(object.clone()) {
            objects.push(object);
        }
    }
    Ok(objects)
}

/// `col = NULL, …` for every personal column of `entity`, from the data map.
fn personal_assignments(entity: Entity) -> String {
    let mut columns = Vec::new();
    for category in DataCategory::PERSONAL {
        columns.extend(columns_of(entity, category));
    }
    columns
        .iter()
        .map(|c| format!("{c} = NULL"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Removes some categories of calls that stay otherwise intact (automatic redaction by
/// category): their columns are cleared, their recordings listed for deletion, their visitor
/// sessions redacted. The calls' keys stay.
fn apply_categories(conn: &Connection, job: &RedactionJob) -> Result<RedactionApplied, StoreError> {
    let at = Timestamp::now();
    let mut objects: Vec<String> = job.objects.clone();
    let mut columns: Vec<&str> = Vec::new();
    for category in &job.categories {
        columns.extend(columns_of(Entity::Call, *category));
    }
    let holds = columns
        .iter()
        .map(|c| format!("{c} IS NOT NULL"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let assignments = columns
        .iter()
        .map(|c| format!("{c} = NULL"))
        .collect::<Vec<_>>()
        .join(", ");
    let ids = json_ids(job.call_ids.iter());
    if job.categories.contains(&DataCategory::Recording) {
        objects = objects_with(conn, &ids, &objects)?;
    }
    let changed: Vec<String> = conn
        .prepare_cached(&format!(
            "UPDATE calls SET {assignments} WHERE id IN (SELECT value FROM json_each(?1)) AND redacted_at IS NULL AND ({holds}) RETURNING id"
        )).map_err(db_error)?
        .query_map([&ids], |r| r.get(0)).map_err(db_error)?
        .collect::<Result<_, _>>().map_err(db_error)?;
    let mut sessions = 0u64;
    if job.categories.contains(&DataCategory::Visitor) {
        let sql = format!(
            "UPDATE sessions SET {}, redacted_at = ?2, redaction_reason = ?3 WHERE id IN (SELECT value FROM json_each(?1)) AND redacted_at IS NULL",
            personal_assignments(Entity::VisitorSession)
        );
        sessions = conn
            .prepare_cached(&sql)
            .map_err(db_error)?
            .execute(params![
                json_ids(job.session_ids.iter()),
                at.millis(),
                job.reason.as_str()
            ])
            .map_err(db_error)? as u64;
    }
    conn.prepare_cached("UPDATE redaction_jobs SET objects = ?2 WHERE id = ?1")
        .map_err(db_error)?
        .execute(params![job.id, objects.join(",")])
        .map_err(db_error)?;
    // Recipients learn which categories of which calls to remove.
    outbox::tell_redacted(
        conn,
        EventKind::CallRedacted,
        job.reason.as_str(),
        &effects::told_of_removal(job, &changed, sessions),
        &effects::categories_extra(&job.categories),
        at,
    )?;
    let calls = changed.len() as u64;
    let audit_seq = match effects::category_removal_event(job, &changed, sessions) {
        Some(event) => audit::append(conn, &event)?,
        None => 0,
    };
    Ok(RedactionApplied {
        calls,
        sessions,
        at,
        audit_seq,
        objects,
        consents: 0,
    })
}

pub(crate) fn apply(
    conn: &Connection,
    job: &RedactionJob,
    by: &str,
) -> Result<RedactionApplied, StoreError> {
    if !job.categories.is_empty() {
        return apply_categories(conn, job);
    }
    let at = Timestamp::now();
    let ids = json_ids(job.call_ids.iter());
    // Set-based statements: one statement per step, whatever the number of calls. (A
    // statement per call inside the job's savepoint costs SQLite a statement journal each,
    // and closing one grows with every page the transaction has dirtied.)
    let objects = objects_with(conn, &ids, &job.objects)?;
    // Automatic redaction takes its calls out of the sweep's index (`calls_live`) as it goes;
    // any other redaction leaves the index alone (a caller's calls are scattered through it,
    // one index page each) and the sweep retires them when it passes them.
    let swept = if job.reason == RedactionReason::Retention {
        ", swept = 1"
    } else {
        ""
    };
    let call_sql = format!(
        "UPDATE calls SET {}, redacted_at = ?2, redaction_reason = ?3, redacted_by = ?4{swept}
         WHERE id IN (SELECT value FROM json_each(?1)) AND redacted_at IS NULL RETURNING id",
        personal_assignments(Entity::Call)
    );
    let redacted_ids: Vec<String> = conn
        .prepare_cached(&call_sql)
        .map_err(db_error)?
        .query_map(params![ids, at.millis(), job.reason.as_str(), by], |r| {
            r.get(0)
        })
        .map_err(db_error)?
        .collect::<Result<_, _>>()
        .map_err(db_error)?;
    let calls = redacted_ids.len() as u64;
    // Nothing of these calls may leave now: their queued `call.created` are cancelled, and
    // their recipients are told (ids only).
    outbox::cancel_created(conn, &ids, at)?;
    let kind = effects::erasure_kind(job.reason);
    outbox::tell_redacted(
        conn,
        kind,
        job.reason.as_str(),
        &redacted_ids,
        &serde_json::Map::new(),
        at,
    )?;
    // The consent ledger entries of the subjects, and of the visitors of the sessions: the
    // journal keeps that consents existed (their events), not whose.
    let mut subjects = job.subjects.clone();
    let visitors: Vec<(String, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT account_id, visitor_bidx FROM sessions WHERE id IN (SELECT value FROM json_each(?1)) AND visitor_bidx IS NOT NULL",
        ).map_err(db_error)?
        .query_map([json_ids(job.session_ids.iter())], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db_error)?
        .collect::<Result<_, _>>().map_err(db_error)?;
    for (account, bidx) in visitors {
        if let (Ok(account), Ok(bidx)) = (account.parse::<AccountId>(), bidx.try_into()) {
            subjects.push((account, bidx));
        }
    }
    let consents = super::consent::remove_subjects(conn, &subjects)?;
    let session_sql = format!(
        "UPDATE sessions SET {}, redacted_at = ?2, redaction_reason = ?3
         WHERE id IN (SELECT value FROM json_each(?1)) AND redacted_at IS NULL",
        personal_assignments(Entity::VisitorSession)
    );
    let sessions = conn
        .prepare_cached(&session_sql)
        .map_err(db_error)?
        .execute(params![
            json_ids(job.session_ids.iter()),
            at.millis(),
            job.reason.as_str()
        ])
        .map_err(db_error)? as u64;
    let mut forget = conn.prepare_cached("INSERT INTO forget_list (account_id, caller_bidx, created_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING").map_err(db_error)?;
    for (account, bidx) in &job.forget {
        forget
            .execute(params![account.to_string(), bidx.as_slice(), at.millis()])
            .map_err(db_error)?;
    }
    // Objects found now (a recording that arrived after the job began) must be deleted too.
    conn.prepare_cached("UPDATE redaction_jobs SET objects = ?2 WHERE id = ?1")
        .map_err(db_error)?
        .execute(params![job.id, objects.join(",")])
        .map_err(db_error)?;
    // The ids of the calls redacted (never the caller) and what a restore needs.
    let event = effects::whole_redaction_event(job, &redacted_ids, sessions, consents);
    let audit_seq = audit::append(conn, &event)?;
    Ok(RedactionApplied {
        calls,
        sessions,
        at,
        audit_seq,
        objects,
        consents,
    })
}

pub(crate) fn end(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM redaction_jobs WHERE id = ?1")
        .map_err(db_error)?
        .execute([id])
        .map_err(db_error)?;
    Ok(())
}

/// The blind indexes among `bidxs` that are on the account's forget list.
pub(crate) fn forgotten(
    conn: &Connection,
    account: AccountId,
    bidxs: &[BlindIndex],
) -> Result<Vec<BlindIndex>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT 1 FROM forget_list WHERE account_id = ?1 AND caller_bidx = ?2")
        .map_err(db_error)?;
    let mut out = Vec::new();
    for b in bidxs {
        if stmt
            .exists(params![account.to_string(), b.as_slice()])
            .map_err(db_error)?
        {
            out.push(*b);
        }
    }
    Ok(out)
}
