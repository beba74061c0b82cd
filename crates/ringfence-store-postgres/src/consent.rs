//! Consent events on PostgreSQL: a withdrawal begins the removal of the category's data of
//! its subject in the transaction that records it, under the subject's exclusive lock (see
//! [`crate::locks`]), so that no ingest of the subject passes it.

use sqlx::PgConnection;
use uuid::Uuid;

use ringfence_core::call::RedactionReason;
use ringfence_core::consent::{ConsentStatus, SubjectKind};
use ringfence_core::recipients::EventKind;
use ringfence_core::{AccountId, CallId, SessionId};
use ringfence_store::StoreError;
use ringfence_store::effects::{self, CallerCall};
use ringfence_store::records::{ConsentRecorded, ConsentRow, RedactionJob};

use crate::redaction::FoundCall;
use crate::{backend, ingest, locks, redaction};

pub(crate) async fn record(
    conn: &mut PgConnection,
    row: &ConsentRow,
    job: Option<RedactionJob>,
) -> Result<ConsentRecorded, StoreError> {
    // A consent recorded against a call names one of its own account's calls: another
    // tenant's call is not found (its existence is not told either).
    if let Some(call) = row.call_id {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM calls WHERE account_id = $1 AND id = $2")
                .bind(row.account_id.as_uuid())
                .bind(call.as_uuid())
                .fetch_optional(&mut *conn)
                .await
                .map_err(backend)?;
        if found.is_none() {
            return Err(StoreError::NotFound("call"));
        }
    }
    let withdrawn = row.status == ConsentStatus::Withdrawn;
    if withdrawn {
        locks::exclusive(&mut *conn, [(row.account_id, row.subject_bidx)]).await?;
    }
    let (seq, audit_seq) = ingest::record_event(conn, row).await?;
    let mut recorded = ConsentRecorded {
        seq,
        audit_seq,
        job: None,
        skipped_legal_hold: 0,
    };
    if !withdrawn {
        return Ok(recorded);
    }
    let Some(job) = job else {
        tell_withdrawn(conn, row, &[]).await?;
        return Ok(recorded);
    };
    let account = row.account_id.as_uuid();
    let bidx = row.subject_bidx.as_slice();
    // The subject's live calls (and a visitor's live visits).
    let (rows, visits): (Vec<FoundCall>, Vec<Uuid>) = match row.subject_kind {
        SubjectKind::Caller => (
            sqlx::query_as(
                "SELECT id, session_id, recording_object, legal_hold_at IS NOT NULL FROM calls
                     WHERE account_id = $1 AND caller_bidx = $2 AND redacted_at IS NULL
                     ORDER BY started_at, id",
            )
            .bind(account)
            .bind(bidx)
            .fetch_all(&mut *conn)
            .await
            .map_err(backend)?,
            Vec::new(),
        ),
        SubjectKind::Visitor => {
            let visits = sqlx::query_scalar(
                "SELECT id FROM sessions
                     WHERE account_id = $1 AND visitor_bidx = $2 AND redacted_at IS NULL",
            )
            .bind(account)
            .bind(bidx)
            .fetch_all(&mut *conn)
            .await
            .map_err(backend)?;
            let calls = sqlx::query_as(
                    "SELECT c.id, c.session_id, c.recording_object, c.legal_hold_at IS NOT NULL
                     FROM calls c JOIN sessions s ON s.account_id = c.account_id AND s.id = c.session_id
                     WHERE s.account_id = $1 AND s.visitor_bidx = $2 AND c.redacted_at IS NULL
                     ORDER BY c.started_at, c.id",
                )
                .bind(account)
                .bind(bidx)
                .fetch_all(&mut *conn)
                .await
                .map_err(backend)?;
            (calls, visits)
        }
    };
    let calls = rows
        .into_iter()
        .map(|(id, session, recording, legal_hold)| CallerCall {
            id: CallId::from_uuid(id),
            session: session.map(SessionId::from_uuid),
            recording,
            legal_hold,
        });
    let visits = visits.into_iter().map(SessionId::from_uuid).collect();
    let withdrawal = effects::withdrawal_job(job, row, calls, visits);
    recorded.skipped_legal_hold = withdrawal.held;
    tell_withdrawn(conn, row, &withdrawal.told).await?;
    if let Some(job) = withdrawal.job {
        crate::store::insert_job(conn, &job).await?;
        recorded.job = Some(job);
    }
    Ok(recorded)
}

/// Tells the account's recipients of a withdrawal: the consent event's id, the category, the
/// kind of subject and the calls it touches (never the subject).
async fn tell_withdrawn(
    conn: &mut PgConnection,
    row: &ConsentRow,
    calls: &[String],
) -> Result<(), StoreError> {
    let ids: Vec<Uuid> = calls.iter().filter_map(|c| c.parse().ok()).collect();
    let by_account: std::collections::BTreeMap<AccountId, Vec<Uuid>> =
        [(row.account_id, ids)].into_iter().collect();
    redaction::tell(
        conn,
        EventKind::ConsentWithdrawn,
        RedactionReason::ConsentWithdrawn.as_str(),
        &by_account,
        &effects::withdrawal_extra(row),
        row.at,
    )
    .await
}
