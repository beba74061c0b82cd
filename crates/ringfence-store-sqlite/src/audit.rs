//! The audit journal in SQLite: appended inside the writer's transaction, so an entry is
//! committed together with the change it records.

use rusqlite::{Connection, OptionalExtension, Row, params};

use ringfence_core::timestamp::Timestamp;
use ringfence_crypto::audit::GENESIS;

use crate::db_error;
use ringfence_store::StoreError;
use ringfence_store::records::{AuditEntry, AuditEvent, AuditQuery};

pub(crate) fn append(conn: &Connection, event: &AuditEvent) -> Result<i64, StoreError> {
    let last: Option<(i64, Vec<u8>, i64)> = conn
        .prepare_cached("SELECT seq, hash, at FROM audit_log ORDER BY seq DESC LIMIT 1")
        .map_err(db_error)?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
        .map_err(db_error)?;
    let (seq, prev, last_at) = match last {
        Some((seq, hash, at)) => (
            seq + 1,
            hash.try_into()
                .map_err(|_| StoreError::Backend("audit hash of the wrong size".into()))?,
            at,
        ),
        None => (1, GENESIS, 0),
    };
    // Entries never go back in time, even if the clock does.
    let at = Timestamp::from_millis(Timestamp::now().millis().max(last_at));
    let mut entry = AuditEntry {
        seq,
        at,
        event: event.clone(),
        prev_hash: prev,
        hash: [0; 32],
    };
    entry.hash = entry.expected_hash(&prev);
    conn.prepare_cached(
        "INSERT INTO audit_log (seq, at, actor, action, agency_id, account_id, subject, count, reason, details, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    ).map_err(db_error)?
    .execute(params![
        seq,
        at.millis(),
        event.actor,
        event.action,
        event.agency_id.map(|a| a.to_string()),
        event.account_id.map(|a| a.to_string()),
        event.subject,
        event.count.map(|c| c as i64),
        event.reason,
        event.details,
        prev.as_slice(),
        entry.hash.as_slice(),
    ]).map_err(db_error)?;
    Ok(seq)
}

fn entry_from(row: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    let hash = |v: Vec<u8>| v.try_into().unwrap_or([0u8; 32]);
    let agency: Option<String> = row.get(4)?;
    let account: Option<String> = row.get(5)?;
    Ok(AuditEntry {
        seq: row.get(0)?,
        at: Timestamp::from_millis(row.get(1)?),
        event: AuditEvent {
            actor: row.get(2)?,
            action: row.get(3)?,
            agency_id: agency.and_then(|a| a.parse().ok()),
            account_id: account.and_then(|a| a.parse().ok()),
            subject: row.get(6)?,
            count: row.get::<_, Option<i64>>(7)?.map(|c| c as u64),
            reason: row.get(8)?,
            details: row.get(9)?,
        },
        prev_hash: hash(row.get(10)?),
        hash: hash(row.get(11)?),
    })
}

pub(crate) fn query(conn: &Connection, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
    let columns = "seq, at, actor, action, agency_id, account_id, subject, count, reason, details, prev_hash, hash";
    // Oldest first after a position, or newest first below one.
    let (range, order, bound) = match q.before_seq {
        Some(before) => ("seq < ?", "DESC", before),
        None => ("seq > ?", "ASC", q.after_seq.unwrap_or(0)),
    };
    let limit = i64::from(q.limit);
    let (tenant, tenant_id) = match (q.agency_id, q.account_id) {
        (_, Some(account)) => ("account_id = ? AND ", Some(account.to_string())),
        (Some(agency), None) => ("agency_id = ? AND ", Some(agency.to_string())),
        (None, None) => ("", None),
    };
    let sql = format!(
        "SELECT {columns} FROM audit_log WHERE {tenant}{range} ORDER BY seq {order} LIMIT ?"
    );
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    if let Some(id) = tenant_id {
        args.push(id.into());
    }
    args.push(bound.into());
    args.push(limit.into());
    let rows = conn
        .prepare_cached(&sql)
        .map_err(db_error)?
        .query_map(rusqlite::params_from_iter(args), entry_from)
        .map_err(db_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db_error)?;
    Ok(rows)
}

pub(crate) fn last(conn: &Connection) -> Result<Option<AuditEntry>, StoreError> {
    conn
        .prepare_cached("SELECT seq, at, actor, action, agency_id, account_id, subject, count, reason, details, prev_hash, hash FROM audit_log ORDER BY seq DESC LIMIT 1").map_err(db_error)?
        .query_row([], entry_from)
        .optional().map_err(db_error)
}
