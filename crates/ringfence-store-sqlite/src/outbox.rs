//! Recipients and the durable outbox of their deliveries, in SQLite.
//!
//! Events are queued by the writer in the same transaction as the change they tell of (a
//! call stored, a redaction applied, a consent withdrawn), so a committed change always has
//! its deliveries and a rolled-back one never does. Erasure payloads hold ids only.

use rusqlite::{Connection, OptionalExtension, Row, params};

use ringfence_core::recipients::{DeliveryState, EventKind};
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, DeliveryId, EventId, RecipientId};

use super::audit;
use crate::db_error;
use ringfence_store::records::{
    AuditEvent, DeliveryAttempt, DeliveryQuery, DeliveryRow, DeliverySummary, RecipientRow,
};
use ringfence_store::{StoreError, effects};

pub(crate) const RECIPIENT_COLUMNS: &str =
    "id, account_id, name, url, secret, events, personal_data, created_at, updated_at, disabled_at";

pub(crate) const DELIVERY_COLUMNS: &str = "id, event_id, event, recipient_id, account_id, call_id, payload, created_at, state, attempts, next_attempt_at, last_attempt_at, last_status, last_error, done_at";

fn bad(column: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        rusqlite::types::Type::Text,
        format!("not a valid {what}").into(),
    )
}

fn parsed<T: std::str::FromStr>(r: &Row<'_>, column: usize, what: &str) -> rusqlite::Result<T> {
    r.get::<_, String>(column)?
        .parse()
        .map_err(|_| bad(column, what))
}

fn events_text(events: &[EventKind]) -> String {
    events
        .iter()
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn recipient_from(r: &Row<'_>) -> rusqlite::Result<RecipientRow> {
    let events: String = r.get(5)?;
    Ok(RecipientRow {
        id: parsed(r, 0, "recipient id")?,
        account_id: parsed(r, 1, "account id")?,
        name: r.get(2)?,
        url: r.get(3)?,
        secret: r.get(4)?,
        events: events.split(',').filter_map(EventKind::parse).collect(),
        personal_data: r.get(6)?,
        created_at: Timestamp::from_millis(r.get(7)?),
        updated_at: Timestamp::from_millis(r.get(8)?),
        disabled_at: r.get::<_, Option<i64>>(9)?.map(Timestamp::from_millis),
    })
}

pub(crate) fn delivery_from(r: &Row<'_>) -> rusqlite::Result<DeliveryRow> {
    let event: String = r.get(2)?;
    let state: String = r.get(8)?;
    let call: Option<String> = r.get(5)?;
    Ok(DeliveryRow {
        id: parsed(r, 0, "delivery id")?,
        event_id: parsed(r, 1, "event id")?,
        event: EventKind::parse(&event).ok_or_else(|| bad(2, "event"))?,
        recipient_id: parsed(r, 3, "recipient id")?,
        account_id: parsed(r, 4, "account id")?,
        call_id: match call {
            Some(c) => Some(c.parse().map_err(|_| bad(5, "call id"))?),
            None => None,
        },
        payload: r.get(6)?,
        created_at: Timestamp::from_millis(r.get(7)?),
        state: DeliveryState::parse(&state).ok_or_else(|| bad(8, "delivery state"))?,
        attempts: r.get(9)?,
        next_attempt_at: Timestamp::from_millis(r.get(10)?),
        last_attempt_at: r.get::<_, Option<i64>>(11)?.map(Timestamp::from_millis),
        last_status: r.get(12)?,
        last_error: r.get(13)?,
        done_at: r.get::<_, Option<i64>>(14)?.map(Timestamp::from_millis),
    })
}

pub(crate) fn insert_recipient(conn: &Connection, r: &RecipientRow) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO recipients ({RECIPIENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    )).map_err(db_error)?
    .execute(params![
        r.id.to_string(),
        r.account_id.to_string(),
        r.name,
        r.url,
        r.secret,
        events_text(&r.events),
        r.personal_data,
        r.created_at.millis(),
        r.updated_at.millis(),
        r.disabled_at.map(Timestamp::millis),
    ]).map_err(db_error)?;
    Ok(())
}

/// Replaces a recipient's settings; a removed recipient's queued deliveries are cancelled.
/// Returns whether it existed in that account.
pub(crate) fn update_recipient(conn: &Connection, r: &RecipientRow) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE recipients SET name = ?3, url = ?4, secret = ?5, events = ?6, personal_data = ?7, updated_at = ?8, disabled_at = ?9
             WHERE id = ?1 AND account_id = ?2",
        ).map_err(db_error)?
        .execute(params![
            r.id.to_string(),
            r.account_id.to_string(),
            r.name,
            r.url,
            r.secret,
            events_text(&r.events),
            r.personal_data,
            r.updated_at.millis(),
            r.disabled_at.map(Timestamp::millis),
        ]).map_err(db_error)?;
    if changed > 0 && r.disabled_at.is_some() {
        conn.prepare_cached(
            "UPDATE deliveries SET state = 'cancelled', last_error = 'recipient_removed', done_at = ?2 WHERE recipient_id = ?1 AND state = 'queued'",
        ).map_err(db_error)?
        .execute(params![r.id.to_string(), r.updated_at.millis()]).map_err(db_error)?;
    }
    Ok(changed > 0)
}

/// Whether any recipient is registered at all: lets the write paths skip the outbox work
/// entirely on installations (and in transactions) that have none.
pub(crate) fn any_recipient(conn: &Connection) -> Result<bool, StoreError> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM recipients WHERE disabled_at IS NULL)")
        .map_err(db_error)?
        .query_row([], |r| r.get(0))
        .map_err(db_error)
}

/// `ids` (call ids) grouped by their account.
fn by_account(
    conn: &Connection,
    ids: &[String],
) -> Result<std::collections::BTreeMap<AccountId, Vec<String>>, StoreError> {
    let json = serde_json::to_string(ids)
        .map_err(|e| StoreError::Backend(format!("event payload: {e}")))?;
    let mut out: std::collections::BTreeMap<AccountId, Vec<String>> = Default::default();
    let rows: Vec<(String, String)> = conn
        .prepare_cached(
            "SELECT account_id, id FROM calls WHERE id IN (SELECT value FROM json_each(?1)) ORDER BY id",
        ).map_err(db_error)?
        .query_map([json], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db_error)?
        .collect::<Result<_, _>>().map_err(db_error)?;
    for (account, id) in rows {
        if let Ok(account) = account.parse() {
            out.entry(account).or_default().push(id);
        }
    }
    Ok(out)
}

/// Tells the recipients of the calls' accounts that `calls` were redacted (wholly, or the
/// `categories` named in `extra`): `caller.erased` for a caller's erasure, else
/// `call.redacted`.
pub(crate) fn tell_redacted(
    conn: &Connection,
    kind: EventKind,
    reason: &str,
    calls: &[String],
    extra: &serde_json::Map<String, serde_json::Value>,
    at: Timestamp,
) -> Result<(), StoreError> {
    if calls.is_empty() || !any_recipient(conn)? {
        return Ok(());
    }
    for (account, ids) in by_account(conn, calls)? {
        enqueue_erasure(conn, account, kind, reason, &ids, extra, at)?;
    }
    Ok(())
}

/// The recipients of `account` that take `event`.
fn subscribed(
    conn: &Connection,
    account: AccountId,
    event: EventKind,
) -> Result<Vec<String>, StoreError> {
    let ids = conn
        .prepare_cached(
            "SELECT id FROM recipients WHERE account_id = ?1 AND disabled_at IS NULL AND (',' || events || ',') LIKE ?2 ORDER BY id",
        ).map_err(db_error)?
        .query_map(
            params![account.to_string(), format!("%,{},%", event.as_str())],
            |r| r.get(0),
        ).map_err(db_error)?
        .collect::<Result<Vec<String>, _>>().map_err(db_error)?;
    Ok(ids)
}

/// One event, to be queued for each of its recipients.
struct NewEvent<'a> {
    id: EventId,
    kind: EventKind,
    account: AccountId,
    call: Option<&'a str>,
    payload: Option<&'a str>,
    at: Timestamp,
}

fn insert_delivery(conn: &Connection, e: &NewEvent<'_>, recipient: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO deliveries (id, event_id, event, recipient_id, account_id, call_id, payload, created_at, state, attempts, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', 0, ?8)",
    ).map_err(db_error)?
    .execute(params![
        DeliveryId::generate().to_string(),
        e.id.to_string(),
        e.kind.as_str(),
        recipient,
        e.account.to_string(),
        e.call,
        e.payload,
        e.at.millis(),
    ]).map_err(db_error)?;
    Ok(())
}

/// Queues a `call.created` per new call for every recipient of the account that takes it.
/// No payload: the call is rendered from its sealed row when sent.
pub(crate) fn enqueue_created(
    conn: &Connection,
    account: AccountId,
    calls: &[String],
    now: Timestamp,
) -> Result<(), StoreError> {
    if calls.is_empty() {
        return Ok(());
    }
    let recipients = subscribed(conn, account, EventKind::CallCreated)?;
    for call in calls {
        if recipients.is_empty() {
            break;
        }
        let event = NewEvent {
            id: EventId::generate(),
            kind: EventKind::CallCreated,
            account,
            call: Some(call),
            payload: None,
            at: now,
        };
        for recipient in &recipients {
            insert_delivery(conn, &event, recipient)?;
        }
    }
    Ok(())
}

/// Cancels the queued `call.created` deliveries of calls being redacted (`ids_json` is a
/// JSON array of call ids): nothing of them may leave after their erasure.
pub(crate) fn cancel_created(
    conn: &Connection,
    ids_json: &str,
    now: Timestamp,
) -> Result<u64, StoreError> {
    Ok(conn
        .prepare_cached(
            "UPDATE deliveries SET state = 'cancelled', last_error = 'call_redacted', done_at = ?2
             WHERE call_id IN (SELECT value FROM json_each(?1)) AND state = 'queued' AND event = 'call.created'",
        ).map_err(db_error)?
        .execute(params![ids_json, now.millis()]).map_err(db_error)? as u64)
}

/// Queues an erasure notice (`kind` is not `call.created`) about `calls` of `account` for
/// every recipient that takes it: ids, external ids, the reason and the time, never a
/// number (`effects::erasure_payloads`). `extra` adds fields to the event's data (categories,
/// a consent id).
pub(crate) fn enqueue_erasure(
    conn: &Connection,
    account: AccountId,
    kind: EventKind,
    reason: &str,
    calls: &[String],
    extra: &serde_json::Map<String, serde_json::Value>,
    at: Timestamp,
) -> Result<(), StoreError> {
    debug_assert!(kind.is_erasure());
    let recipients = subscribed(conn, account, kind)?;
    if recipients.is_empty() {
        return Ok(());
    }
    let listed: Vec<(String, Option<String>)> = if calls.is_empty() {
        Vec::new()
    } else {
        let ids = serde_json::to_string(calls)
            .map_err(|e| StoreError::Backend(format!("event payload: {e}")))?;
        conn.prepare_cached(
            "SELECT id, external_id FROM calls WHERE id IN (SELECT value FROM json_each(?1)) ORDER BY id",
        )
        .map_err(db_error)?
        .query_map([&ids], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(db_error)?
        .collect::<Result<_, _>>()
        .map_err(db_error)?
    };
    for payload in effects::erasure_payloads(reason, at, &listed, extra) {
        let event = NewEvent {
            id: EventId::generate(),
            kind,
            account,
            call: None,
            payload: Some(&payload),
            at,
        };
        for recipient in &recipients {
            insert_delivery(conn, &event, recipient)?;
        }
    }
    Ok(())
}

pub(crate) fn recipients(
    conn: &Connection,
    account: AccountId,
) -> Result<Vec<RecipientRow>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {RECIPIENT_COLUMNS} FROM recipients WHERE account_id = ?1 ORDER BY created_at, id"
    ))
    .map_err(db_error)?
    .query_map([account.to_string()], recipient_from)
    .map_err(db_error)?
    .collect::<Result<_, _>>()
    .map_err(db_error)
}

pub(crate) fn recipient(
    conn: &Connection,
    account: AccountId,
    id: RecipientId,
) -> Result<Option<RecipientRow>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {RECIPIENT_COLUMNS} FROM recipients WHERE id = ?1 AND account_id = ?2"
    ))
    .map_err(db_error)?
    .query_row(params![id.to_string(), account.to_string()], recipient_from)
    .optional()
    .map_err(db_error)
}

pub(crate) fn due(
    conn: &Connection,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<DeliveryRow>, StoreError> {
    conn
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE state = 'queued' AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id LIMIT ?2"
        )).map_err(db_error)?
        .query_map(params![now.millis(), limit], delivery_from).map_err(db_error)?
        .collect::<Result<_, _>>().map_err(db_error)
}

/// Records an attempt, if the delivery is still queued (a redaction may have cancelled it
/// meanwhile: the cancellation stands). Returns whether it was recorded.
pub(crate) fn finish(conn: &Connection, a: &DeliveryAttempt) -> Result<bool, StoreError> {
    let done = (a.state != DeliveryState::Queued).then_some(a.at.millis());
    let changed = conn
        .prepare_cached(
            "UPDATE deliveries SET state = ?2, attempts = attempts + 1, next_attempt_at = ?3, last_attempt_at = ?4, last_status = ?5, last_error = ?6, done_at = ?7
             WHERE id = ?1 AND state = 'queued'",
        ).map_err(db_error)?
        .execute(params![
            a.id.to_string(),
            a.state.as_str(),
            a.next_attempt_at.millis(),
            a.at.millis(),
            a.status,
            a.error,
            done,
        ]).map_err(db_error)?;
    if changed > 0
        && let Some(event) = &a.audit
    {
        audit::append(conn, event)?;
    }
    Ok(changed > 0)
}

/// Marks a queued delivery cancelled without an attempt (its call was redacted before it
/// could be rendered).
pub(crate) fn cancel(
    conn: &Connection,
    id: DeliveryId,
    why: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "UPDATE deliveries SET state = 'cancelled', last_error = ?2, done_at = ?3 WHERE id = ?1 AND state = 'queued'",
        ).map_err(db_error)?
        .execute(params![id.to_string(), why, now.millis()]).map_err(db_error)?
        > 0)
}

pub(crate) fn list(conn: &Connection, q: &DeliveryQuery) -> Result<Vec<DeliveryRow>, StoreError> {
    conn
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries
             WHERE recipient_id = ?1 AND account_id = ?2 AND (?3 IS NULL OR state = ?3) AND (?4 IS NULL OR event = ?4) AND (?5 IS NULL OR id < ?5)
             ORDER BY id DESC LIMIT ?6"
        )).map_err(db_error)?
        .query_map(
            params![
                q.recipient_id.to_string(),
                q.account_id.to_string(),
                q.state.map(DeliveryState::as_str),
                q.event.map(EventKind::as_str),
                q.before.map(|d| d.to_string()),
                q.limit,
            ],
            delivery_from,
        ).map_err(db_error)?
        .collect::<Result<_, _>>().map_err(db_error)
}

/// Puts a dead-lettered delivery back in the queue for a fresh round of attempts.
pub(crate) fn requeue(
    conn: &Connection,
    account: AccountId,
    recipient: RecipientId,
    id: DeliveryId,
    now: Timestamp,
    event: &AuditEvent,
) -> Result<Option<DeliveryRow>, StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE deliveries SET state = 'queued', attempts = 0, next_attempt_at = ?4, done_at = NULL
             WHERE id = ?1 AND recipient_id = ?2 AND account_id = ?3 AND state = 'dead'
               AND EXISTS (SELECT 1 FROM recipients r WHERE r.id = ?2 AND r.disabled_at IS NULL)",
        ).map_err(db_error)?
        .execute(params![
            id.to_string(),
            recipient.to_string(),
            account.to_string(),
            now.millis()
        ]).map_err(db_error)?;
    if changed == 0 {
        return Ok(None);
    }
    audit::append(conn, event)?;
    conn.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?1"
    ))
    .map_err(db_error)?
    .query_row([id.to_string()], delivery_from)
    .optional()
    .map_err(db_error)
}

pub(crate) fn summary(
    conn: &Connection,
    account: AccountId,
) -> Result<DeliverySummary, StoreError> {
    let mut out = DeliverySummary::default();
    for r in recipients(conn, account)? {
        if r.disabled_at.is_some() {
            continue;
        }
        out.recipients += 1;
        if r.events.iter().any(|e| e.is_erasure()) {
            out.erasure_recipients += 1;
        }
    }
    let (queued, dead, dead_erasures, oldest): (i64, i64, i64, Option<i64>) = conn
        .prepare_cached(
            "SELECT
                COALESCE(SUM(state = 'queued'), 0),
                COALESCE(SUM(state = 'dead'), 0),
                COALESCE(SUM(state = 'dead' AND event <> 'call.created'), 0),
                MIN(CASE WHEN state = 'queued' AND event <> 'call.created' THEN created_at END)
             FROM deliveries WHERE account_id = ?1 AND state IN ('queued', 'dead')",
        )
        .map_err(db_error)?
        .query_row([account.to_string()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .map_err(db_error)?;
    out.queued = queued as u64;
    out.dead = dead as u64;
    out.dead_erasures = dead_erasures as u64;
    out.oldest_queued_erasure = oldest.map(Timestamp::from_millis);
    Ok(out)
}

/// The recipients each of `calls` was delivered to (`call.created` answered 2xx), by name.
pub(crate) fn delivered_to(
    conn: &Connection,
    calls_json: &str,
) -> Result<Vec<(String, String, String)>, StoreError> {
    conn
        .prepare_cached(
            "SELECT d.call_id, r.id, r.name FROM deliveries d JOIN recipients r ON r.id = d.recipient_id
             WHERE d.call_id IN (SELECT value FROM json_each(?1)) AND d.state = 'delivered' AND d.event = 'call.created'
             ORDER BY d.call_id, r.id",
        ).map_err(db_error)?
        .query_map([calls_json], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).map_err(db_error)?
        .collect::<Result<_, _>>().map_err(db_error)
}
