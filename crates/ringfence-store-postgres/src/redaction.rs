//! Redaction on PostgreSQL: a caller's redaction begun under the subject locks (see
//! [`crate::locks`]), and a job's rows cleared — the columns named by the data map, the
//! events, payloads and journal entry decided by `ringfence_store::effects` — in one
//! transaction that commits only once the vault says the keys are gone.

use std::collections::BTreeMap;

// The dynamic statements below are built from the data map's column names only, never
// from input.
use sqlx::{AssertSqlSafe, PgConnection};
use uuid::Uuid;

use ringfence_core::call::RedactionReason;
use ringfence_core::datamap::{DataCategory, Entity, columns_of_all, personal_columns};
use ringfence_core::recipients::EventKind;
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, CallId, DeliveryId, EventId, SessionId};
use ringfence_crypto::BlindIndex;
use ringfence_store::StoreError;
use ringfence_store::effects::{self, CallerCall};
use ringfence_store::records::{KeysDestroyed, RedactionApplied, RedactionJob};

use crate::{audit, backend, locks};

/// A live call of a subject as read for a job: id, session, recording, on legal hold.
pub(crate) type FoundCall = (Uuid, Option<Uuid>, Option<String>, bool);

/// `col = NULL, …` for `columns`.
fn cleared(columns: &[&str]) -> String {
    columns
        .iter()
        .map(|c| format!("{c} = NULL"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn uuids<T: Copy>(ids: &[T], as_uuid: impl Fn(&T) -> Uuid) -> Vec<Uuid> {
    ids.iter().map(as_uuid).collect()
}

/// Chooses the live calls of `callers`, adds the forget-list entries and records the job, all
/// under the callers' exclusive subject locks: an ingest of these callers committed before is
/// chosen here, one after sees the forget list (see [`crate::locks`]).
pub(crate) async fn begin_callers(
    conn: &mut PgConnection,
    job: &mut RedactionJob,
    callers: &[(AccountId, BlindIndex)],
) -> Result<u64, StoreError> {
    locks::exclusive(&mut *conn, callers.iter().chain(&job.forget).copied()).await?;
    let at = Timestamp::now();
    add_to_forget_list(conn, &job.forget, at).await?;
    let mut held = 0u64;
    for (account, bidx) in callers {
        let rows: Vec<FoundCall> = sqlx::query_as(
            "SELECT id, session_id, recording_object, legal_hold_at IS NOT NULL FROM calls
             WHERE account_id = $1 AND caller_bidx = $2 AND redacted_at IS NULL
             ORDER BY started_at, id",
        )
        .bind(account.as_uuid())
        .bind(bidx.as_slice())
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
        held += effects::choose_caller_calls(
            job,
            rows.into_iter()
                .map(|(id, session, recording, legal_hold)| CallerCall {
                    id: CallId::from_uuid(id),
                    session: session.map(SessionId::from_uuid),
                    recording,
                    legal_hold,
                }),
        );
    }
    crate::store::insert_job(conn, job).await?;
    Ok(held)
}

async fn add_to_forget_list(
    conn: &mut PgConnection,
    forget: &[(AccountId, BlindIndex)],
    at: Timestamp,
) -> Result<(), StoreError> {
    if forget.is_empty() {
        return Ok(());
    }
    let accounts: Vec<Uuid> = forget.iter().map(|(a, _)| a.as_uuid()).collect();
    let bidxs: Vec<Vec<u8>> = forget.iter().map(|(_, b)| b.to_vec()).collect();
    sqlx::query(
        "INSERT INTO forget_list (account_id, caller_bidx, created_at)
         SELECT a, b, $3 FROM unnest($1::uuid[], $2::bytea[]) AS f (a, b)
         ON CONFLICT DO NOTHING",
    )
    .bind(&accounts)
    .bind(&bidxs)
    .bind(at.millis())
    .execute(conn)
    .await
    .map_err(backend)?;
    Ok(())
}

/// Applies the job in `conn`'s transaction and waits for the vault: the caller commits only
/// when this returns `Ok`.
pub(crate) async fn apply(
    conn: &mut PgConnection,
    job: &RedactionJob,
    by: &str,
    keys_gone: KeysDestroyed,
) -> Result<RedactionApplied, StoreError> {
    let applied = if job.categories.is_empty() {
        apply_whole(conn, job, by).await?
    } else {
        apply_categories(conn, job).await?
    };
    // The statements ran while the vault destroyed the keys; the transaction commits only
    // once they are destroyed.
    let destroyed = tokio::task::spawn_blocking(move || keys_gone.wait_blocking())
        .await
        .unwrap_or(false);
    if !destroyed {
        return Err(StoreError::Backend(
            "the vault did not destroy the keys: the rows stay as they were".into(),
        ));
    }
    Ok(applied)
}

/// `known` plus the recordings of the live calls among `ids` (a recording may have arrived
/// after the job began).
async fn objects_with(
    conn: &mut PgConnection,
    ids: &[Uuid],
    known: &[String],
) -> Result<Vec<String>, StoreError> {
    let found: Vec<String> = sqlx::query_scalar(
        "SELECT recording_object FROM calls
         WHERE id = ANY ($1) AND redacted_at IS NULL AND recording_object IS NOT NULL
         ORDER BY recording_object",
    )
    .bind(ids)
    .fetch_all(conn)
    .await
    .map_err(backend)?;
    let mut objects = known.to_vec();
    for object in found {
        if !objects.contains(&object) {
            objects.push(object);
        }
    }
    Ok(objects)
}

async fn apply_whole(
    conn: &mut PgConnection,
    job: &RedactionJob,
    by: &str,
) -> Result<RedactionApplied, StoreError> {
    let at = Timestamp::now();
    let ids = uuids(&job.call_ids, CallId::as_uuid);
    let session_ids = uuids(&job.session_ids, SessionId::as_uuid);
    let objects = objects_with(conn, &ids, &job.objects).await?;
    // Automatic redaction takes its calls out of the sweep's index as it goes (see
    // `calls_live`); the sweep retires other redacted calls when it passes them.
    let swept = if job.reason == RedactionReason::Retention {
        ", swept = true"
    } else {
        ""
    };
    let redacted: Vec<(Uuid, Uuid)> = sqlx::query_as(AssertSqlSafe(format!(
        "UPDATE calls SET {}, redacted_at = $2, redaction_reason = $3, redacted_by = $4{swept}
         WHERE id = ANY ($1) AND redacted_at IS NULL
         RETURNING account_id, id",
        cleared(&personal_columns(Entity::Call))
    )))
    .bind(&ids)
    .bind(at.millis())
    .bind(job.reason.as_str())
    .bind(by)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    let mut redacted_ids: Vec<String> = redacted.iter().map(|(_, id)| id.to_string()).collect();
    redacted_ids.sort();
    // Nothing of these calls may leave now: their queued `call.created` are cancelled, and
    // their recipients are told (ids only).
    sqlx::query(
        "UPDATE deliveries SET state = 'cancelled', last_error = 'call_redacted', done_at = $2
         WHERE call_id = ANY ($1) AND state = 'queued' AND event = 'call.created'",
    )
    .bind(&ids)
    .bind(at.millis())
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    tell(
        conn,
        effects::erasure_kind(job.reason),
        job.reason.as_str(),
        &ids_by_account(&redacted),
        &serde_json::Map::new(),
        at,
    )
    .await?;
    // The consent ledger entries of the subjects and of the sessions' visitors: the journal
    // keeps that consents existed (their events), not whose.
    let mut accounts: Vec<Uuid> = job.subjects.iter().map(|(a, _)| a.as_uuid()).collect();
    let mut bidxs: Vec<Vec<u8>> = job.subjects.iter().map(|(_, b)| b.to_vec()).collect();
    let visitors: Vec<(Uuid, Vec<u8>)> = sqlx::query_as(
        "SELECT account_id, visitor_bidx FROM sessions WHERE id = ANY ($1) AND visitor_bidx IS NOT NULL",
    )
    .bind(&session_ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    for (account, bidx) in visitors {
        accounts.push(account);
        bidxs.push(bidx);
    }
    let consents = sqlx::query(
        "DELETE FROM consents c USING unnest($1::uuid[], $2::bytea[]) AS s (a, b)
         WHERE c.account_id = s.a AND c.subject_bidx = s.b",
    )
    .bind(&accounts)
    .bind(&bidxs)
    .execute(&mut *conn)
    .await
    .map_err(backend)?
    .rows_affected();
    let sessions = redact_sessions(conn, &session_ids, job.reason, at).await?;
    add_to_forget_list(conn, &job.forget, at).await?;
    // Objects found now (a recording that arrived after the job began) must be deleted too.
    set_objects(conn, &job.id, &objects).await?;
    let event = effects::whole_redaction_event(job, &redacted_ids, sessions, consents);
    let audit_seq = audit::append(conn, &event).await?;
    Ok(RedactionApplied {
        calls: redacted.len() as u64,
        sessions,
        at,
        audit_seq,
        objects,
        consents,
    })
}

/// Removes some categories of calls that stay otherwise intact; their keys stay.
async fn apply_categories(
    conn: &mut PgConnection,
    job: &RedactionJob,
) -> Result<RedactionApplied, StoreError> {
    let at = Timestamp::now();
    let ids = uuids(&job.call_ids, CallId::as_uuid);
    let mut objects = job.objects.clone();
    if job.categories.contains(&DataCategory::Recording) {
        objects = objects_with(conn, &ids, &objects).await?;
    }
    let columns = columns_of_all(Entity::Call, &job.categories);
    let changed: Vec<(Uuid, Uuid)> = if columns.is_empty() {
        Vec::new()
    } else {
        let holds = columns
            .iter()
            .map(|c| format!("{c} IS NOT NULL"))
            .collect::<Vec<_>>()
            .join(" OR ");
        sqlx::query_as(AssertSqlSafe(format!(
            "UPDATE calls SET {} WHERE id = ANY ($1) AND redacted_at IS NULL AND ({holds})
             RETURNING account_id, id",
            cleared(&columns)
        )))
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?
    };
    let mut changed_ids: Vec<String> = changed.iter().map(|(_, id)| id.to_string()).collect();
    changed_ids.sort();
    let sessions = if job.categories.contains(&DataCategory::Visitor) {
        let session_ids = uuids(&job.session_ids, SessionId::as_uuid);
        redact_sessions(conn, &session_ids, job.reason, at).await?
    } else {
        0
    };
    set_objects(conn, &job.id, &objects).await?;
    // Recipients learn which categories of which calls to remove.
    let told = effects::told_of_removal(job, &changed_ids, sessions);
    let told: Vec<Uuid> = told.iter().filter_map(|id| id.parse().ok()).collect();
    let accounts: Vec<(Uuid, Uuid)> =
        sqlx::query_as("SELECT account_id, id FROM calls WHERE id = ANY ($1)")
            .bind(&told)
            .fetch_all(&mut *conn)
            .await
            .map_err(backend)?;
    tell(
        conn,
        EventKind::CallRedacted,
        job.reason.as_str(),
        &ids_by_account(&accounts),
        &effects::categories_extra(&job.categories),
        at,
    )
    .await?;
    let audit_seq = match effects::category_removal_event(job, &changed_ids, sessions) {
        Some(event) => audit::append(conn, &event).await?,
        None => 0,
    };
    Ok(RedactionApplied {
        calls: changed.len() as u64,
        sessions,
        at,
        audit_seq,
        objects,
        consents: 0,
    })
}

async fn redact_sessions(
    conn: &mut PgConnection,
    ids: &[Uuid],
    reason: RedactionReason,
    at: Timestamp,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(AssertSqlSafe(format!(
        "UPDATE sessions SET {}, redacted_at = $2, redaction_reason = $3
         WHERE id = ANY ($1) AND redacted_at IS NULL",
        cleared(&personal_columns(Entity::VisitorSession))
    )))
    .bind(ids)
    .bind(at.millis())
    .bind(reason.as_str())
    .execute(conn)
    .await
    .map_err(backend)?
    .rows_affected())
}

async fn set_objects(
    conn: &mut PgConnection,
    job: &str,
    objects: &[String],
) -> Result<(), StoreError> {
    sqlx::query("UPDATE redaction_jobs SET objects = $2 WHERE id = $1")
        .bind(job)
        .bind(objects)
        .execute(conn)
        .await
        .map_err(backend)?;
    Ok(())
}

/// (account, call) pairs as call ids per account, each list in id order.
fn ids_by_account(pairs: &[(Uuid, Uuid)]) -> BTreeMap<AccountId, Vec<Uuid>> {
    let mut out: BTreeMap<AccountId, Vec<Uuid>> = BTreeMap::new();
    for (account, id) in pairs {
        out.entry(AccountId::from_uuid(*account))
            .or_default()
            .push(*id);
    }
    for ids in out.values_mut() {
        ids.sort();
    }
    out
}

/// Queues an erasure notice (`kind` is not `call.created`) about the calls of each account
/// for every recipient of it that takes the event: the payloads are
/// `effects::erasure_payloads` (ids and external ids, never a number).
pub(crate) async fn tell(
    conn: &mut PgConnection,
    kind: EventKind,
    reason: &str,
    calls: &BTreeMap<AccountId, Vec<Uuid>>,
    extra: &serde_json::Map<String, serde_json::Value>,
    at: Timestamp,
) -> Result<(), StoreError> {
    debug_assert!(kind.is_erasure());
    for (account, ids) in calls {
        let recipients: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM recipients
             WHERE account_id = $1 AND disabled_at IS NULL AND $2 = ANY (events)
             ORDER BY id",
        )
        .bind(account.as_uuid())
        .bind(kind.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
        if recipients.is_empty() {
            continue;
        }
        let listed: Vec<(Uuid, Option<String>)> = sqlx::query_as(
            "SELECT id, external_id FROM calls WHERE account_id = $1 AND id = ANY ($2) ORDER BY id",
        )
        .bind(account.as_uuid())
        .bind(ids)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
        let listed: Vec<(String, Option<String>)> = listed
            .into_iter()
            .map(|(id, ext)| (id.to_string(), ext))
            .collect();
        for payload in effects::erasure_payloads(reason, at, &listed, extra) {
            let event = EventId::generate().as_uuid();
            for recipient in &recipients {
                sqlx::query(
                    "INSERT INTO deliveries (account_id, id, event_id, event, recipient_id, call_id, payload, created_at, state, attempts, next_attempt_at)
                     VALUES ($1, $2, $3, $4, $5, NULL, $6, $7, 'queued', 0, $7)",
                )
                .bind(account.as_uuid())
                .bind(DeliveryId::generate().as_uuid())
                .bind(event)
                .bind(kind.as_str())
                .bind(recipient)
                .bind(&payload)
                .bind(at.millis())
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            }
        }
    }
    Ok(())
}
