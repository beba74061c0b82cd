//! Storing arriving calls and sessions on PostgreSQL: the facts the admission rules need
//! (forget list, consent ledger, linked session) are read inside the transaction that stores
//! what the rules return, under the subject locks of [`crate::locks`].

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use sqlx::PgConnection;
use uuid::Uuid;

use ringfence_core::call::{CallStatus, Direction, RedactionReason};
use ringfence_core::consent::{ConsentState, ConsentStatus};
use ringfence_core::recipients::EventKind;
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, AgencyId, CallId, DataCategory, DeliveryId, EventId, SessionId};
use ringfence_crypto::BlindIndex;
use ringfence_store::StoreError;
use ringfence_store::admission;
use ringfence_store::effects;
use ringfence_store::records::{
    CallRow, ConsentRow, InsertReport, Inserted, NewCallRow, RecordingConsent, RecordingRow,
    SessionRow,
};

use crate::store::consent_state_in;
use crate::{audit, backend, locks};

/// The subjects an ingest stores (callers and visitors sent with their calls).
fn subjects_of(calls: &[NewCallRow]) -> Vec<(AccountId, BlindIndex)> {
    calls
        .iter()
        .flat_map(|new| {
            admission::consent_subjects(&new.call, new.inline_session.as_ref())
                .into_iter()
                .map(move |b| (new.call.account_id, b))
        })
        .collect()
}

/// Stores a batch in one transaction: all of it, or nothing (see `Store::insert_calls`).
///
/// The common batch (no consent events sent with it, no call linked to a stored session, no
/// account with a forget list) is stored in a fixed number of statements whatever its size:
/// one for the subject locks, one for the consent ledger, one per table for the rows
/// ([`insert_plain_batch`]). Any other goes call by call, each call seeing the events the
/// calls before it recorded.
pub(crate) async fn insert_calls(
    conn: &mut PgConnection,
    calls: &[NewCallRow],
) -> Result<InsertReport, StoreError> {
    admission::duplicate_in_batch(calls)?;
    locks::share(&mut *conn, subjects_of(calls)).await?;
    let plain = calls.iter().all(|new| {
        new.consents.is_empty() && (new.inline_session.is_some() || new.call.session_id.is_none())
    });
    if plain {
        let accounts: Vec<Uuid> = distinct_accounts(calls);
        let forgetting: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM forget_list WHERE account_id = ANY($1))",
        )
        .bind(&accounts)
        .fetch_one(&mut *conn)
        .await
        .map_err(backend)?;
        if !forgetting {
            return insert_plain_batch(conn, calls).await;
        }
    }
    insert_call_by_call(conn, calls).await
}

fn distinct_accounts(calls: &[NewCallRow]) -> Vec<Uuid> {
    let mut accounts: Vec<Uuid> = calls.iter().map(|c| c.call.account_id.as_uuid()).collect();
    accounts.sort_unstable();
    accounts.dedup();
    accounts
}

/// A batch without consent events, links to stored sessions or forget lists, under its
/// subjects' shared locks (taken by the caller): the same rules as the call-by-call path,
/// applied to facts read for the whole batch at once.
async fn insert_plain_batch(
    conn: &mut PgConnection,
    calls: &[NewCallRow],
) -> Result<InsertReport, StoreError> {
    // The ledger's events of every subject of the batch, in the ledger's order; each call
    // folds those of its own subjects (no event is recorded by this batch).
    let mut ledger: HashMap<AccountId, Vec<(Vec<u8>, DataCategory, ConsentStatus)>> =
        HashMap::new();
    let mut wanted: BTreeMap<AccountId, Vec<Vec<u8>>> = BTreeMap::new();
    for (account, bidx) in subjects_of(calls) {
        wanted.entry(account).or_default().push(bidx.to_vec());
    }
    for (account, subjects) in wanted {
        let rows: Vec<(Vec<u8>, String, String)> = sqlx::query_as(
            "SELECT subject_bidx, category, status FROM consents
             WHERE account_id = $1 AND subject_bidx = ANY($2)
             ORDER BY seq",
        )
        .bind(account.as_uuid())
        .bind(&subjects)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
        let events = rows
            .into_iter()
            .map(|(bidx, category, status)| {
                Ok((
                    bidx,
                    DataCategory::parse(&category)
                        .ok_or_else(|| StoreError::Backend("consents.category: unknown".into()))?,
                    ConsentStatus::parse(&status)
                        .ok_or_else(|| StoreError::Backend("consents.status: unknown".into()))?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        ledger.insert(account, events);
    }
    let mut kept: Vec<(Cow<'_, CallRow>, Option<Cow<'_, SessionRow>>)> =
        Vec::with_capacity(calls.len());
    let mut withheld_all: Vec<Vec<DataCategory>> = Vec::with_capacity(calls.len());
    for (index, new) in calls.iter().enumerate() {
        let c = &new.call;
        let session = new.inline_session.as_ref();
        if c.redacted_at.is_some() {
            kept.push((Cow::Borrowed(c), session.map(Cow::Borrowed)));
            withheld_all.push(Vec::new());
            continue;
        }
        let subjects = admission::consent_subjects(c, session);
        let state = match ledger.get(&c.account_id) {
            Some(events) if !subjects.is_empty() => ConsentState::from_events(
                events
                    .iter()
                    .filter(|(bidx, ..)| subjects.iter().any(|s| s.as_slice() == bidx.as_slice()))
                    .map(|(_, category, status)| (*category, *status)),
            ),
            _ => Default::default(),
        };
        let admission::Consented {
            call,
            session,
            withheld,
        } = admission::apply_consent(new, c, session, state, index)?;
        kept.push((call, session));
        withheld_all.push(withheld);
    }
    // A call sent with its visit: a re-delivered call must not store the visit again, so
    // the external ids of such calls are looked up first.
    let mut known: HashMap<(AccountId, String), CallId> = HashMap::new();
    let with_visit: Vec<(Uuid, String)> = kept
        .iter()
        .filter(|(_, s)| s.is_some())
        .filter_map(|(c, _)| Some((c.account_id.as_uuid(), c.external_id.clone()?)))
        .collect();
    if !with_visit.is_empty() {
        let (accounts, externals): (Vec<Uuid>, Vec<String>) = with_visit.into_iter().unzip();
        let rows: Vec<(Uuid, String, Uuid)> = sqlx::query_as(
            "SELECT c.account_id, c.external_id, c.id
             FROM unnest($1::uuid[], $2::text[]) AS k (account_id, external_id)
             JOIN calls c ON c.account_id = k.account_id AND c.external_id = k.external_id",
        )
        .bind(&accounts)
        .bind(&externals)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
        for (account, external, id) in rows {
            known.insert(
                (AccountId::from_uuid(account), external),
                CallId::from_uuid(id),
            );
        }
    }
    let mut outcomes: Vec<Option<Inserted<CallId>>> = kept
        .iter()
        .map(|(c, s)| {
            let ext = c.external_id.as_ref()?;
            s.as_ref()?;
            known
                .get(&(c.account_id, ext.clone()))
                .map(|id| Inserted::Existing(*id))
        })
        .collect();
    for (outcome, withheld) in outcomes.iter().zip(withheld_all.iter_mut()) {
        if outcome.is_some() {
            withheld.clear();
        }
    }
    // The visits, then the calls, each table in one statement.
    let sessions: Vec<&SessionRow> = kept
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| o.is_none())
        .filter_map(|((_, s), _)| s.as_deref())
        .collect();
    let session_ids = insert_session_rows(conn, &sessions).await?;
    let mut rows: Vec<(&CallRow, Option<SessionId>)> = Vec::new();
    let mut stored_sessions = session_ids.into_iter();
    for ((c, s), outcome) in kept.iter().zip(&outcomes) {
        if outcome.is_some() {
            continue;
        }
        let session_id = match s {
            Some(_) => stored_sessions.next(),
            None => c.session_id,
        };
        rows.push((c.as_ref(), session_id));
    }
    let created = insert_call_rows(conn, &rows).await?;
    let mut created = created.into_iter();
    for ((c, _), outcome) in kept.iter().zip(outcomes.iter_mut()) {
        if outcome.is_some() {
            continue;
        }
        *outcome = Some(if created.next().unwrap_or(false) {
            Inserted::Created(c.id)
        } else {
            // A re-delivery: the external id is known (committed by another ingest, which
            // this insert waited for); nothing was stored.
            let ext = c.external_id.as_deref().unwrap_or_default();
            let existing = call_by_external(conn, c.account_id, ext)
                .await?
                .ok_or_else(|| StoreError::Backend("calls: conflicting row not found".into()))?;
            Inserted::Existing(existing)
        });
    }
    let outcomes: Vec<Inserted<CallId>> = outcomes.into_iter().flatten().collect();
    for (outcome, withheld) in outcomes.iter().zip(withheld_all.iter_mut()) {
        if !outcome.is_created() {
            withheld.clear();
        }
    }
    let now = Timestamp::now();
    for (account, ids) in admission::created_by_account(calls, &outcomes) {
        let ids: Vec<Uuid> = ids.iter().map(CallId::as_uuid).collect();
        enqueue_created(conn, account, &ids, now).await?;
    }
    Ok(InsertReport {
        outcomes,
        forgotten: Vec::new(),
        withheld: withheld_all,
    })
}

/// Inserts sessions unless their external id is known, in one statement; the id stored for
/// each, in order.
async fn insert_session_rows(
    conn: &mut PgConnection,
    sessions: &[&SessionRow],
) -> Result<Vec<SessionId>, StoreError> {
    if sessions.is_empty() {
        return Ok(Vec::new());
    }
    let mut c = SessionColumns::default();
    for s in sessions {
        c.push(s);
    }
    let created: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO sessions (id, account_id, external_id, started_at, created_at, utm_source, utm_medium, utm_campaign, visitor, gdpr_scope, visitor_bidx)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], $7::text[], $8::text[], $9::bytea[], $10::boolean[], $11::bytea[])
         ON CONFLICT (account_id, external_id) DO NOTHING
         RETURNING id",
    )
    .bind(&c.id)
    .bind(&c.account_id)
    .bind(&c.external_id)
    .bind(&c.started_at)
    .bind(&c.created_at)
    .bind(&c.utm_source)
    .bind(&c.utm_medium)
    .bind(&c.utm_campaign)
    .bind(&c.visitor)
    .bind(&c.gdpr_scope)
    .bind(&c.visitor_bidx)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    let created: std::collections::HashSet<Uuid> = created.into_iter().collect();
    let mut ids = Vec::with_capacity(sessions.len());
    for s in sessions {
        if created.contains(&s.id.as_uuid()) {
            ids.push(s.id);
            continue;
        }
        let existing: Uuid = sqlx::query_scalar(
            "SELECT id FROM sessions WHERE account_id = $1 AND external_id = $2",
        )
        .bind(s.account_id.as_uuid())
        .bind(&s.external_id)
        .fetch_one(&mut *conn)
        .await
        .map_err(backend)?;
        ids.push(SessionId::from_uuid(existing));
    }
    Ok(ids)
}

/// Inserts calls unless their external id is known, in one statement; whether each was
/// stored, in order.
async fn insert_call_rows(
    conn: &mut PgConnection,
    rows: &[(&CallRow, Option<SessionId>)],
) -> Result<Vec<bool>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut c = CallColumns::default();
    for (row, session) in rows {
        c.push(row, *session)?;
    }
    let created: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO calls (id, account_id, external_id, started_at, created_at, duration_s, direction, status, tracking_number, source, campaign, utm_source, utm_medium, utm_campaign, gdpr_scope, caller_bidx, session_id, caller_identity, caller_location, transcript, interaction, recording_object, recording_content_type, recording_bytes, redacted_at, redaction_reason, redacted_by)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::boolean[], $16::bytea[], $17::uuid[], $18::bytea[], $19::bytea[], $20::bytea[], $21::bytea[], $22::text[], $23::text[], $24::bigint[], $25::bigint[], $26::text[], $27::text[])
         ON CONFLICT (account_id, external_id) DO NOTHING
         RETURNING id",
    )
    .bind(&c.id)
    .bind(&c.account_id)
    .bind(&c.external_id)
    .bind(&c.started_at)
    .bind(&c.created_at)
    .bind(&c.duration_s)
    .bind(&c.direction)
    .bind(&c.status)
    .bind(&c.tracking_number)
    .bind(&c.source)
    .bind(&c.campaign)
    .bind(&c.utm_source)
    .bind(&c.utm_medium)
    .bind(&c.utm_campaign)
    .bind(&c.gdpr_scope)
    .bind(&c.caller_bidx)
    .bind(&c.session_id)
    .bind(&c.caller_identity)
    .bind(&c.caller_location)
    .bind(&c.transcript)
    .bind(&c.interaction)
    .bind(&c.recording_object)
    .bind(&c.recording_content_type)
    .bind(&c.recording_bytes)
    .bind(&c.redacted_at)
    .bind(&c.redaction_reason)
    .bind(&c.redacted_by)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    let created: std::collections::HashSet<Uuid> = created.into_iter().collect();
    Ok(rows
        .iter()
        .map(|(row, _)| created.contains(&row.id.as_uuid()))
        .collect())
}

/// Sessions as one array per column.
#[derive(Default)]
struct SessionColumns {
    id: Vec<Uuid>,
    account_id: Vec<Uuid>,
    external_id: Vec<Option<String>>,
    started_at: Vec<i64>,
    created_at: Vec<i64>,
    utm_source: Vec<Option<String>>,
    utm_medium: Vec<Option<String>>,
    utm_campaign: Vec<Option<String>>,
    visitor: Vec<Option<Vec<u8>>>,
    gdpr_scope: Vec<Option<bool>>,
    visitor_bidx: Vec<Option<Vec<u8>>>,
}

impl SessionColumns {
    fn push(&mut self, s: &SessionRow) {
        self.id.push(s.id.as_uuid());
        self.account_id.push(s.account_id.as_uuid());
        self.external_id.push(s.external_id.clone());
        self.started_at.push(s.started_at.millis());
        self.created_at.push(s.created_at.millis());
        self.utm_source.push(s.utm_source.clone());
        self.utm_medium.push(s.utm_medium.clone());
        self.utm_campaign.push(s.utm_campaign.clone());
        self.visitor.push(s.visitor.clone());
        self.gdpr_scope.push(s.gdpr_scope);
        self.visitor_bidx
            .push(s.visitor_bidx.as_ref().map(|b| b.to_vec()));
    }
}

/// Calls as one array per column.
#[derive(Default)]
struct CallColumns {
    id: Vec<Uuid>,
    account_id: Vec<Uuid>,
    external_id: Vec<Option<String>>,
    started_at: Vec<i64>,
    created_at: Vec<i64>,
    duration_s: Vec<Option<i64>>,
    direction: Vec<Option<&'static str>>,
    status: Vec<Option<&'static str>>,
    tracking_number: Vec<String>,
    source: Vec<Option<String>>,
    campaign: Vec<Option<String>>,
    utm_source: Vec<Option<String>>,
    utm_medium: Vec<Option<String>>,
    utm_campaign: Vec<Option<String>>,
    gdpr_scope: Vec<Option<bool>>,
    caller_bidx: Vec<Option<Vec<u8>>>,
    session_id: Vec<Option<Uuid>>,
    caller_identity: Vec<Option<Vec<u8>>>,
    caller_location: Vec<Option<Vec<u8>>>,
    transcript: Vec<Option<Vec<u8>>>,
    interaction: Vec<Option<Vec<u8>>>,
    recording_object: Vec<Option<String>>,
    recording_content_type: Vec<Option<String>>,
    recording_bytes: Vec<Option<i64>>,
    redacted_at: Vec<Option<i64>>,
    redaction_reason: Vec<Option<&'static str>>,
    redacted_by: Vec<Option<String>>,
}

impl CallColumns {
    fn push(&mut self, c: &CallRow, session_id: Option<SessionId>) -> Result<(), StoreError> {
        let recording = c.recording.as_ref();
        self.recording_bytes.push(
            recording
                .map(|r| {
                    i64::try_from(r.bytes)
                        .map_err(|_| StoreError::Backend("recording_bytes: out of range".into()))
                })
                .transpose()?,
        );
        self.recording_object
            .push(recording.map(|r| r.object.clone()));
        self.recording_content_type
            .push(recording.map(|r| r.content_type.clone()));
        self.id.push(c.id.as_uuid());
        self.account_id.push(c.account_id.as_uuid());
        self.external_id.push(c.external_id.clone());
        self.started_at.push(c.started_at.millis());
        self.created_at.push(c.created_at.millis());
        self.duration_s.push(c.duration_s.map(i64::from));
        self.direction.push(c.direction.map(Direction::as_str));
        self.status.push(c.status.map(CallStatus::as_str));
        self.tracking_number.push(c.tracking_number.clone());
        self.source.push(c.source.clone());
        self.campaign.push(c.campaign.clone());
        self.utm_source.push(c.utm_source.clone());
        self.utm_medium.push(c.utm_medium.clone());
        self.utm_campaign.push(c.utm_campaign.clone());
        self.gdpr_scope.push(c.gdpr_scope);
        self.caller_bidx
            .push(c.caller_bidx.as_ref().map(|b| b.to_vec()));
        self.session_id.push(session_id.map(|s| s.as_uuid()));
        self.caller_identity.push(c.caller_identity.clone());
        self.caller_location.push(c.caller_location.clone());
        self.transcript.push(c.transcript.clone());
        self.interaction.push(c.interaction.clone());
        self.redacted_at.push(c.redacted_at.map(Timestamp::millis));
        self.redaction_reason
            .push(c.redaction_reason.map(RedactionReason::as_str));
        self.redacted_by.push(c.redacted_by.clone());
        Ok(())
    }
}

/// The call-by-call path (see [`insert_calls`]), under the subject locks already taken.
async fn insert_call_by_call(
    conn: &mut PgConnection,
    calls: &[NewCallRow],
) -> Result<InsertReport, StoreError> {
    let mut outcomes = Vec::with_capacity(calls.len());
    let mut withheld_all: Vec<Vec<DataCategory>> = Vec::with_capacity(calls.len());
    let mut forgotten: Vec<(AccountId, CallId)> = Vec::new();
    // Most accounts never forget anyone: ask once per account, not once per call.
    let mut forget_lists: HashMap<AccountId, bool> = HashMap::new();
    for (index, new) in calls.iter().enumerate() {
        let mut c: Cow<'_, CallRow> = Cow::Borrowed(&new.call);
        let mut session: Option<Cow<'_, SessionRow>> =
            new.inline_session.as_ref().map(Cow::Borrowed);
        let used = match forget_lists.get(&c.account_id) {
            Some(used) => *used,
            None => {
                let used: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM forget_list WHERE account_id = $1)",
                )
                .bind(c.account_id.as_uuid())
                .fetch_one(&mut *conn)
                .await
                .map_err(backend)?;
                forget_lists.insert(c.account_id, used);
                used
            }
        };
        let mut forgotten_now = false;
        if used
            && let Some(bidx) = c.caller_bidx
            && forgotten_caller(conn, c.account_id, &bidx).await?
        {
            c = Cow::Owned(admission::forgotten_on_arrival(&c));
            session = None;
            forgotten_now = true;
        }
        let mut withheld = Vec::new();
        if c.redacted_at.is_none() {
            let subjects = admission::consent_subjects(&c, session.as_deref());
            let state = if subjects.is_empty() {
                Default::default()
            } else {
                consent_state_in(conn, c.account_id, &subjects, None).await?
            };
            let admission::Consented {
                call,
                session: kept,
                withheld: left_out,
            } = admission::apply_consent(new, &c, session.as_deref(), state, index)?;
            if !left_out.is_empty() {
                let (call, kept) = (call.into_owned(), kept.map(Cow::into_owned));
                (c, session, withheld) = (Cow::Owned(call), kept.map(Cow::Owned), left_out);
            }
        }
        // A call sent with its visit: a re-delivered call must not store the visit again,
        // so its external id is looked up first.
        if session.is_some()
            && let Some(ext) = &c.external_id
            && let Some(existing) = call_by_external(conn, c.account_id, ext).await?
        {
            outcomes.push(Inserted::Existing(existing));
            withheld_all.push(Vec::new());
            continue;
        }
        let session_id = match session.as_deref() {
            Some(s) => Some(insert_session_row(conn, s).await?.id()),
            None => {
                if let Some(linked) = c.session_id {
                    let scope: Option<Option<bool>> = sqlx::query_scalar(
                        "SELECT gdpr_scope FROM sessions WHERE account_id = $1 AND id = $2",
                    )
                    .bind(c.account_id.as_uuid())
                    .bind(linked.as_uuid())
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(backend)?;
                    let Some(scope) = scope else {
                        return Err(StoreError::SessionNotFound { index });
                    };
                    if let Some(call) = admission::linked_to_session(&c, scope) {
                        c = Cow::Owned(call);
                    }
                }
                c.session_id
            }
        };
        if !insert_call_row(conn, &c, session_id).await? {
            // A re-delivery: the external id is known (committed by another ingest, which
            // this insert waited for); nothing was stored.
            let ext = c.external_id.as_deref().unwrap_or_default();
            let existing = call_by_external(conn, c.account_id, ext)
                .await?
                .ok_or_else(|| StoreError::Backend("calls: conflicting row not found".into()))?;
            outcomes.push(Inserted::Existing(existing));
            withheld_all.push(Vec::new());
            continue;
        }
        if c.redacted_at.is_none() {
            for event in &new.consents {
                let event = ConsentRow {
                    call_id: Some(c.id),
                    ..event.clone()
                };
                record_event(conn, &event).await.map_err(|e| match e {
                    StoreError::UnknownNoticeVersion { .. } => {
                        StoreError::UnknownNoticeVersion { index: Some(index) }
                    }
                    other => other,
                })?;
            }
        }
        if forgotten_now {
            forgotten.push((c.account_id, c.id));
        }
        outcomes.push(Inserted::Created(c.id));
        withheld_all.push(withheld);
    }
    let mut by_account: BTreeMap<AccountId, Vec<CallId>> = BTreeMap::new();
    for (account, call) in &forgotten {
        by_account.entry(*account).or_default().push(*call);
    }
    for (account, ids) in by_account {
        let agency = agency_of(conn, account).await?;
        audit::append(
            conn,
            &admission::forgotten_on_arrival_event(account, agency, &ids),
        )
        .await?;
    }
    // New calls go to the account's recipients (rendered when sent, from the sealed row).
    let now = Timestamp::now();
    for (account, ids) in admission::created_by_account(calls, &outcomes) {
        let ids: Vec<Uuid> = ids.iter().map(CallId::as_uuid).collect();
        enqueue_created(conn, account, &ids, now).await?;
    }
    Ok(InsertReport {
        outcomes,
        forgotten: forgotten.into_iter().map(|(_, c)| c).collect(),
        withheld: withheld_all,
    })
}

/// Stores a session sent on its own (see `Store::insert_session`).
pub(crate) async fn insert_session(
    conn: &mut PgConnection,
    session: SessionRow,
) -> Result<(Inserted<SessionId>, bool), StoreError> {
    let state = match session.visitor_bidx {
        Some(bidx) => {
            locks::share(&mut *conn, [(session.account_id, bidx)]).await?;
            consent_state_in(conn, session.account_id, &[bidx], None).await?
        }
        None => Default::default(),
    };
    let (session, withheld) = admission::session_on_arrival(session, &state);
    Ok((insert_session_row(conn, &session).await?, withheld))
}

async fn forgotten_caller(
    conn: &mut PgConnection,
    account: AccountId,
    bidx: &BlindIndex,
) -> Result<bool, StoreError> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM forget_list WHERE account_id = $1 AND caller_bidx = $2)",
    )
    .bind(account.as_uuid())
    .bind(bidx.as_slice())
    .fetch_one(conn)
    .await
    .map_err(backend)
}

async fn call_by_external(
    conn: &mut PgConnection,
    account: AccountId,
    external_id: &str,
) -> Result<Option<CallId>, StoreError> {
    let id: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM calls WHERE account_id = $1 AND external_id = $2")
            .bind(account.as_uuid())
            .bind(external_id)
            .fetch_optional(conn)
            .await
            .map_err(backend)?;
    Ok(id.map(CallId::from_uuid))
}

pub(crate) async fn agency_of(
    conn: &mut PgConnection,
    account: AccountId,
) -> Result<Option<AgencyId>, StoreError> {
    let agency: Option<Uuid> = sqlx::query_scalar("SELECT agency_id FROM accounts WHERE id = $1")
        .bind(account.as_uuid())
        .fetch_optional(conn)
        .await
        .map_err(backend)?;
    Ok(agency.map(AgencyId::from_uuid))
}

/// Inserts a session unless its external id is known; the id stored either way.
async fn insert_session_row(
    conn: &mut PgConnection,
    s: &SessionRow,
) -> Result<Inserted<SessionId>, StoreError> {
    let created: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO sessions (id, account_id, external_id, started_at, created_at, utm_source, utm_medium, utm_campaign, visitor, gdpr_scope, visitor_bidx)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (account_id, external_id) DO NOTHING
         RETURNING id",
    )
    .bind(s.id.as_uuid())
    .bind(s.account_id.as_uuid())
    .bind(&s.external_id)
    .bind(s.started_at.millis())
    .bind(s.created_at.millis())
    .bind(&s.utm_source)
    .bind(&s.utm_medium)
    .bind(&s.utm_campaign)
    .bind(&s.visitor)
    .bind(s.gdpr_scope)
    .bind(s.visitor_bidx.as_ref().map(|b| b.as_slice()))
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?;
    if created.is_some() {
        return Ok(Inserted::Created(s.id));
    }
    let existing: Uuid =
        sqlx::query_scalar("SELECT id FROM sessions WHERE account_id = $1 AND external_id = $2")
            .bind(s.account_id.as_uuid())
            .bind(&s.external_id)
            .fetch_one(conn)
            .await
            .map_err(backend)?;
    Ok(Inserted::Existing(SessionId::from_uuid(existing)))
}

/// Inserts a call unless its external id is known; whether it was stored.
async fn insert_call_row(
    conn: &mut PgConnection,
    c: &CallRow,
    session_id: Option<SessionId>,
) -> Result<bool, StoreError> {
    let recording = c.recording.as_ref();
    let bytes = recording
        .map(|r| {
            i64::try_from(r.bytes)
                .map_err(|_| StoreError::Backend("recording_bytes: out of range".into()))
        })
        .transpose()?;
    let n = sqlx::query(
        "INSERT INTO calls (id, account_id, external_id, started_at, created_at, duration_s, direction, status, tracking_number, source, campaign, utm_source, utm_medium, utm_campaign, gdpr_scope, caller_bidx, session_id, caller_identity, caller_location, transcript, interaction, recording_object, recording_content_type, recording_bytes, redacted_at, redaction_reason, redacted_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27)
         ON CONFLICT (account_id, external_id) DO NOTHING",
    )
    .bind(c.id.as_uuid())
    .bind(c.account_id.as_uuid())
    .bind(&c.external_id)
    .bind(c.started_at.millis())
    .bind(c.created_at.millis())
    .bind(c.duration_s.map(i64::from))
    .bind(c.direction.map(Direction::as_str))
    .bind(c.status.map(CallStatus::as_str))
    .bind(&c.tracking_number)
    .bind(&c.source)
    .bind(&c.campaign)
    .bind(&c.utm_source)
    .bind(&c.utm_medium)
    .bind(&c.utm_campaign)
    .bind(c.gdpr_scope)
    .bind(c.caller_bidx.as_ref().map(|b| b.as_slice()))
    .bind(session_id.map(|s| s.as_uuid()))
    .bind(&c.caller_identity)
    .bind(&c.caller_location)
    .bind(&c.transcript)
    .bind(&c.interaction)
    .bind(recording.map(|r| r.object.as_str()))
    .bind(recording.map(|r| r.content_type.as_str()))
    .bind(bytes)
    .bind(c.redacted_at.map(Timestamp::millis))
    .bind(c.redaction_reason.map(RedactionReason::as_str))
    .bind(&c.redacted_by)
    .execute(conn)
    .await
    .map_err(backend)?;
    Ok(n.rows_affected() == 1)
}

/// Appends one consent event to the ledger and journals it (the notice version it names
/// becomes immutable); the ledger's order and the journal's.
pub(crate) async fn record_event(
    conn: &mut PgConnection,
    row: &ConsentRow,
) -> Result<(i64, i64), StoreError> {
    if let Some(version) = row.notice_version {
        let found = sqlx::query(
            "UPDATE notices SET used_at = COALESCE(used_at, $4)
             WHERE account_id = $1 AND category = $2 AND version = $3",
        )
        .bind(row.account_id.as_uuid())
        .bind(row.category.as_str())
        .bind(i64::from(version))
        .bind(row.at.millis())
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
        if found.rows_affected() == 0 {
            return Err(StoreError::UnknownNoticeVersion { index: None });
        }
    }
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO consents (account_id, id, subject_kind, subject_bidx, subject, category, status, notice_version, method, at, call_id, recorded_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         RETURNING seq",
    )
    .bind(row.account_id.as_uuid())
    .bind(&row.id)
    .bind(row.subject_kind.as_str())
    .bind(row.subject_bidx.as_slice())
    .bind(&row.subject)
    .bind(row.category.as_str())
    .bind(row.status.as_str())
    .bind(row.notice_version.map(i64::from))
    .bind(row.method.as_str())
    .bind(row.at.millis())
    .bind(row.call_id.map(|c| c.as_uuid()))
    .bind(&row.recorded_by)
    .fetch_one(&mut *conn)
    .await
    .map_err(crate::exists_or_backend("consent event"))?;
    let agency = agency_of(conn, row.account_id).await?;
    let audit_seq = audit::append(conn, &effects::consent_recorded_event(row, agency, seq)).await?;
    Ok((seq, audit_seq))
}

/// Queues a `call.created` per new call for every recipient of the account that takes it.
/// No payload: the call is rendered from its sealed row when sent.
async fn enqueue_created(
    conn: &mut PgConnection,
    account: AccountId,
    calls: &[Uuid],
    now: Timestamp,
) -> Result<(), StoreError> {
    let recipients: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM recipients
         WHERE account_id = $1 AND disabled_at IS NULL AND $2 = ANY (events)
         ORDER BY id",
    )
    .bind(account.as_uuid())
    .bind(EventKind::CallCreated.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    if recipients.is_empty() {
        return Ok(());
    }
    // One event per call, one delivery per recipient of it.
    let mut ids = Vec::new();
    let mut events = Vec::new();
    let mut to = Vec::new();
    let mut of = Vec::new();
    for call in calls {
        let event = EventId::generate().as_uuid();
        for recipient in &recipients {
            ids.push(DeliveryId::generate().as_uuid());
            events.push(event);
            to.push(*recipient);
            of.push(*call);
        }
    }
    sqlx::query(
        "INSERT INTO deliveries (account_id, id, event_id, event, recipient_id, call_id, payload, created_at, state, attempts, next_attempt_at)
         SELECT $1, d.id, d.event_id, $2, d.recipient_id, d.call_id, NULL, $3, 'queued', 0, $3
         FROM unnest($4::uuid[], $5::uuid[], $6::uuid[], $7::uuid[]) AS d (id, event_id, recipient_id, call_id)",
    )
    .bind(account.as_uuid())
    .bind(EventKind::CallCreated.as_str())
    .bind(now.millis())
    .bind(&ids)
    .bind(&events)
    .bind(&to)
    .bind(&of)
    .execute(conn)
    .await
    .map_err(backend)?;
    Ok(())
}

/// Sets (or clears) a call's recording; returns the one it replaced. The subjects' shared
/// locks are taken before the call's row, so a recording consent withdrawn at the same moment
/// either sees the recording (and removes it) or is seen by this check.
pub(crate) async fn set_recording(
    conn: &mut PgConnection,
    call: CallId,
    recording: Option<RecordingRow>,
    check: Option<RecordingConsent>,
) -> Result<Option<RecordingRow>, StoreError> {
    const CURRENT: &str =
        "SELECT c.account_id, c.recording_object, c.recording_content_type, c.recording_bytes,
                c.redacted_at IS NOT NULL AS redacted, c.caller_bidx, s.visitor_bidx
         FROM calls c LEFT JOIN sessions s ON s.account_id = c.account_id AND s.id = c.session_id
         WHERE c.id = $1";
    type Current = (
        Uuid,
        Option<String>,
        Option<String>,
        Option<i64>,
        bool,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
    );
    let subjects = |row: &Current| -> Result<Vec<BlindIndex>, StoreError> {
        [&row.5, &row.6]
            .into_iter()
            .flatten()
            .map(|b| {
                BlindIndex::try_from(b.as_slice())
                    .map_err(|_| StoreError::Backend("blind index: wrong length".into()))
            })
            .collect()
    };
    let attaching = recording.is_some();
    if attaching && check.is_some() {
        let seen: Option<Current> = sqlx::query_as(CURRENT)
            .bind(call.as_uuid())
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?;
        let seen = seen.ok_or(StoreError::NotFound("call"))?;
        let account = AccountId::from_uuid(seen.0);
        locks::share(
            &mut *conn,
            subjects(&seen)?.into_iter().map(|b| (account, b)),
        )
        .await?;
    }
    let current: Current =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{CURRENT} FOR UPDATE OF c")))
            .bind(call.as_uuid())
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?
            .ok_or(StoreError::NotFound("call"))?;
    let account = AccountId::from_uuid(current.0);
    if attaching {
        let state = match check {
            Some(_) if !current.4 => {
                consent_state_in(conn, account, &subjects(&current)?, Some(call)).await?
            }
            _ => Default::default(),
        };
        admission::recording_allowed(current.4, check, &state)?;
    }
    let bytes = recording
        .as_ref()
        .map(|r| {
            i64::try_from(r.bytes)
                .map_err(|_| StoreError::Backend("recording_bytes: out of range".into()))
        })
        .transpose()?;
    sqlx::query(
        "UPDATE calls SET recording_object = $3, recording_content_type = $4, recording_bytes = $5
         WHERE account_id = $1 AND id = $2",
    )
    .bind(account.as_uuid())
    .bind(call.as_uuid())
    .bind(recording.as_ref().map(|r| r.object.as_str()))
    .bind(recording.as_ref().map(|r| r.content_type.as_str()))
    .bind(bytes)
    .execute(conn)
    .await
    .map_err(backend)?;
    let (_, object, content_type, previous_bytes, ..) = current;
    object
        .map(|object| {
            Ok(RecordingRow {
                object,
                content_type: content_type.unwrap_or_default(),
                bytes: previous_bytes
                    .map(|b| {
                        u64::try_from(b).map_err(|_| {
                            StoreError::Backend("recording_bytes: out of range".into())
                        })
                    })
                    .transpose()?
                    .unwrap_or(0),
            })
        })
        .transpose()
}
