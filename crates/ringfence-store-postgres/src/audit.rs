//! The audit journal on PostgreSQL: appended inside the transaction of the change it
//! records.
//!
//! Invariant: the journal stays one hash chain with any number of concurrent writers. Every
//! append first locks the chain's head row (`SELECT … FROM audit_head … FOR UPDATE`) in the
//! appending transaction, computes the entry from the head, writes the entry and moves the
//! head; a second writer waits on the row lock until the first commits (or rolls back, when
//! its entry vanishes with it), then reads the head the first one left.

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use ringfence_core::timestamp::Timestamp;
use ringfence_store::StoreError;
use ringfence_store::records::{AuditEntry, AuditEvent, AuditQuery};

use crate::backend;
use crate::store::{hash32, opt_id};

pub(crate) async fn append(conn: &mut PgConnection, event: &AuditEvent) -> Result<i64, StoreError> {
    let head =
        sqlx::query("SELECT seq, hash, at FROM audit_head WHERE chain = 'journal' FOR UPDATE")
            .fetch_one(&mut *conn)
            .await
            .map_err(backend)?;
    let last_seq: i64 = head.try_get("seq").map_err(backend)?;
    let prev = hash32(head.try_get("hash").map_err(backend)?, "audit_head.hash")?;
    let last_at: i64 = head.try_get("at").map_err(backend)?;
    // Entries never go back in time, even if a server's clock does.
    let at = Timestamp::from_millis(Timestamp::now().millis().max(last_at));
    let mut entry = AuditEntry {
        seq: last_seq + 1,
        at,
        event: event.clone(),
        prev_hash: prev,
        hash: [0; 32],
    };
    entry.hash = entry.expected_hash(&prev);
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, action, agency_id, account_id, subject, count, reason, details, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(entry.seq)
    .bind(at.millis())
    .bind(&event.actor)
    .bind(&event.action)
    .bind(event.agency_id.map(|a| a.as_uuid()))
    .bind(event.account_id.map(|a| a.as_uuid()))
    .bind(&event.subject)
    .bind(event.count.map(|c| c as i64))
    .bind(&event.reason)
    .bind(&event.details)
    .bind(prev.as_slice())
    .bind(entry.hash.as_slice())
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2, at = $3 WHERE chain = 'journal'")
        .bind(entry.seq)
        .bind(entry.hash.as_slice())
        .bind(at.millis())
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(entry.seq)
}

macro_rules! entry_columns {
    () => {
        "seq, at, actor, action, agency_id, account_id, subject, count, reason, details, prev_hash, hash"
    };
}

fn entry_from(row: &PgRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        seq: row.try_get("seq").map_err(backend)?,
        at: Timestamp::from_millis(row.try_get("at").map_err(backend)?),
        event: AuditEvent {
            actor: row.try_get("actor").map_err(backend)?,
            action: row.try_get("action").map_err(backend)?,
            agency_id: opt_id(row, "agency_id")?,
            account_id: opt_id(row, "account_id")?,
            subject: row.try_get("subject").map_err(backend)?,
            count: row
                .try_get::<Option<i64>, _>("count")
                .map_err(backend)?
                .map(|c| c as u64),
            reason: row.try_get("reason").map_err(backend)?,
            details: row.try_get("details").map_err(backend)?,
        },
        prev_hash: hash32(
            row.try_get("prev_hash").map_err(backend)?,
            "audit_log.prev_hash",
        )?,
        hash: hash32(row.try_get("hash").map_err(backend)?, "audit_log.hash")?,
    })
}

pub(crate) async fn query(
    conn: &mut PgConnection,
    q: &AuditQuery,
) -> Result<Vec<AuditEntry>, StoreError> {
    // Oldest first after a position, or newest first below one; each shape its own
    // statement (and index plan).
    let (range, order, bound) = match q.before_seq {
        Some(before) => ("seq < ", " ORDER BY seq DESC LIMIT ", before),
        None => ("seq > ", " ORDER BY seq LIMIT ", q.after_seq.unwrap_or(0)),
    };
    let mut sql = sqlx::QueryBuilder::<sqlx::Postgres>::new(concat!(
        "SELECT ",
        entry_columns!(),
        " FROM audit_log WHERE "
    ));
    match (q.agency_id, q.account_id) {
        (_, Some(account)) => {
            sql.push("account_id = ")
                .push_bind(account.as_uuid())
                .push(" AND ");
        }
        (Some(agency), None) => {
            sql.push("agency_id = ")
                .push_bind(agency.as_uuid())
                .push(" AND ");
        }
        (None, None) => {}
    }
    sql.push(range)
        .push_bind(bound)
        .push(order)
        .push_bind(i64::from(q.limit));
    let rows = sql.build().fetch_all(&mut *conn).await.map_err(backend)?;
    rows.iter().map(entry_from).collect()
}

pub(crate) async fn last(conn: &mut PgConnection) -> Result<Option<AuditEntry>, StoreError> {
    sqlx::query(concat!(
        "SELECT ",
        entry_columns!(),
        " FROM audit_log ORDER BY seq DESC LIMIT 1"
    ))
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?
    .as_ref()
    .map(entry_from)
    .transpose()
}
