//! Group commit for small ingests: concurrent requests of a few calls each share one
//! transaction, and so one commit and one WAL flush, as SQLite's writer groups them.
//!
//! Invariant: each request is stored all or nothing, and is answered only once what it
//! stored is committed. A group commits every request in it or none; when its transaction
//! fails (one request's bad call, two requests sending one external id), each of its
//! requests is then stored alone, in a transaction of its own, and answered with its own
//! outcome or error — never with another request's.

use std::sync::Arc;

use sqlx::postgres::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use ringfence_core::CallId;
use ringfence_store::StoreError;
use ringfence_store::records::{InsertReport, NewCallRow};

use crate::{backend, ingest};

/// Requests of at most this many calls are grouped; larger ones are stored alone.
pub(crate) const GROUPED_MAX: usize = 16;
/// The most calls a group gathers before it starts.
const GROUP_MAX_CALLS: usize = 512;
/// Groups under way at once: while one waits for its commit, the next gathers and runs.
const WORKERS: usize = 2;

struct Pending {
    calls: Vec<NewCallRow>,
    reply: oneshot::Sender<Result<InsertReport, StoreError>>,
}

/// The queue of small ingests and the workers that store them in groups.
#[derive(Clone)]
pub(crate) struct Groups {
    queue: mpsc::UnboundedSender<Pending>,
}

impl Groups {
    /// Starts the workers on the current runtime; they stop when every `Groups` is dropped.
    pub(crate) fn start(pool: PgPool) -> Groups {
        let (queue, arrivals) = mpsc::unbounded_channel();
        let arrivals = Arc::new(Mutex::new(arrivals));
        for _ in 0..WORKERS {
            tokio::spawn(work(pool.clone(), arrivals.clone()));
        }
        Groups { queue }
    }

    /// Stores `calls` in the next group; answers once that group has committed.
    pub(crate) async fn insert(&self, calls: Vec<NewCallRow>) -> Result<InsertReport, StoreError> {
        let stopped = || StoreError::Backend("the ingest group workers stopped".into());
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending { calls, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn work(pool: PgPool, arrivals: Arc<Mutex<mpsc::UnboundedReceiver<Pending>>>) {
    loop {
        let mut group = Vec::new();
        {
            let mut arrivals = arrivals.lock().await;
            let Some(first) = arrivals.recv().await else {
                return;
            };
            let mut calls = first.calls.len();
            group.push(first);
            while calls < GROUP_MAX_CALLS {
                match arrivals.try_recv() {
                    Ok(next) => {
                        calls += next.calls.len();
                        group.push(next);
                    }
                    Err(_) => break,
                }
            }
        }
        run(&pool, group).await;
    }
}

/// Stores one batch in a transaction of its own.
pub(crate) async fn insert_alone(
    pool: &PgPool,
    calls: &[NewCallRow],
) -> Result<InsertReport, StoreError> {
    let mut tx = pool.begin().await.map_err(backend)?;
    // Any error rolls the whole batch back with the transaction.
    let report = ingest::insert_calls(&mut tx, calls).await?;
    tx.commit().await.map_err(backend)?;
    Ok(report)
}

async fn run(pool: &PgPool, mut group: Vec<Pending>) {
    if group.len() == 1 {
        let Pending { calls, reply } = group.remove(0);
        let _ = reply.send(insert_alone(pool, &calls).await);
        return;
    }
    let lengths: Vec<usize> = group.iter().map(|p| p.calls.len()).collect();
    let all: Vec<NewCallRow> = group
        .iter_mut()
        .flat_map(|p| std::mem::take(&mut p.calls))
        .collect();
    match insert_alone(pool, &all).await {
        Ok(report) => {
            for (pending, report) in group.into_iter().zip(split(report, &lengths)) {
                let _ = pending.reply.send(Ok(report));
            }
        }
        Err(_) => {
            // Each request alone: its own outcome, or its own error with its own indexes.
            let mut all = all.into_iter();
            for (pending, length) in group.into_iter().zip(lengths) {
                let calls: Vec<NewCallRow> = all.by_ref().take(length).collect();
                let _ = pending.reply.send(insert_alone(pool, &calls).await);
            }
        }
    }
}

/// One group's report cut into its requests' reports.
fn split(report: InsertReport, lengths: &[usize]) -> Vec<InsertReport> {
    let InsertReport {
        outcomes,
        forgotten,
        withheld,
    } = report;
    let mut outcomes = outcomes.into_iter();
    let mut withheld = withheld.into_iter();
    lengths
        .iter()
        .map(|&length| {
            let outcomes: Vec<_> = outcomes.by_ref().take(length).collect();
            let mine: Vec<CallId> = forgotten
                .iter()
                .filter(|id| outcomes.iter().any(|o| o.is_created() && o.id() == **id))
                .copied()
                .collect();
            InsertReport {
                outcomes,
                forgotten: mine,
                withheld: withheld.by_ref().take(length).collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_core::DataCategory;
    use ringfence_store::records::Inserted;

    #[test]
    fn a_groups_report_is_cut_at_each_requests_calls() {
        let ids: Vec<CallId> = (0..5).map(|_| CallId::generate()).collect();
        let report = InsertReport {
            outcomes: vec![
                Inserted::Created(ids[0]),
                Inserted::Existing(ids[1]),
                Inserted::Created(ids[2]),
                Inserted::Created(ids[3]),
                Inserted::Created(ids[4]),
            ],
            forgotten: vec![ids[2], ids[4]],
            withheld: vec![
                vec![],
                vec![],
                vec![DataCategory::Transcript],
                vec![],
                vec![],
            ],
        };
        let parts = split(report, &[2, 1, 2]);
        assert_eq!(parts.len(), 3);
        assert_eq!(
            parts[0].outcomes,
            vec![Inserted::Created(ids[0]), Inserted::Existing(ids[1])]
        );
        assert!(parts[0].forgotten.is_empty());
        assert_eq!(parts[1].outcomes, vec![Inserted::Created(ids[2])]);
        assert_eq!(parts[1].forgotten, vec![ids[2]]);
        assert_eq!(parts[1].withheld, vec![vec![DataCategory::Transcript]]);
        assert_eq!(parts[2].forgotten, vec![ids[4]]);
        assert_eq!(parts[2].withheld.len(), 2);
    }

    mod on_postgres {
        //! Against a real server, when `RINGFENCE_TEST_DATABASE_URL` names one (as the store
        //! stories): each test in a database of its own, dropped after.

        use std::sync::Arc;

        use ringfence_core::timestamp::Timestamp;
        use ringfence_core::{AccountId, AgencyId, CallId, SessionId};
        use ringfence_store::records::{
            AccountRecord, AgencyRecord, CallRow, Inserted, NewCallRow,
        };
        use ringfence_store::{Store, StoreError};
        use sqlx::{AssertSqlSafe, Connection};

        use crate::{DatabaseUrl, PgStore};

        async fn database(label: &str) -> Option<(DatabaseUrl, DatabaseUrl)> {
            let server: DatabaseUrl = std::env::var("RINGFENCE_TEST_DATABASE_URL")
                .ok()?
                .parse()
                .expect("RINGFENCE_TEST_DATABASE_URL is a postgres:// URL");
            let name = format!("ringfence_group_{label}_{}", std::process::id());
            let mut conn = server.connect().await.expect("server");
            for sql in [
                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                format!("CREATE DATABASE {name}"),
            ] {
                sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .expect("create the test database");
            }
            let _ = conn.close().await;
            Some((server.clone(), server.with_database(&name)))
        }

        async fn drop_database(server: &DatabaseUrl, db: &DatabaseUrl) {
            let mut conn = server.connect().await.expect("server");
            sqlx::raw_sql(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                db.database()
            )))
            .execute(&mut conn)
            .await
            .expect("drop the test database");
            let _ = conn.close().await;
        }

        async fn tenant(store: &PgStore) -> AccountId {
            let agency = AgencyRecord {
                id: AgencyId::generate(),
                name: "Agency".into(),
                redaction_enabled: true,
                max_retention_days: None,
                created_at: Timestamp::now(),
            };
            store.create_agency(agency.clone()).await.expect("agency");
            let account = AccountRecord {
                id: AccountId::generate(),
                agency_id: agency.id,
                name: "Account".into(),
                collection: ringfence_core::collection::CollectionSettings::collect_all(),
                twilio_auth_token: None,
                twilio_delete_recordings: false,
                twilio_account_sid: None,
                created_at: Timestamp::now(),
                retention: Default::default(),
            };
            store
                .create_account(account.clone())
                .await
                .expect("account");
            account.id
        }

        /// A call of `account` from caller `n` (a blind index standing for +44 20 7946 0nnn).
        fn call(account: AccountId, external: &str, n: u8) -> NewCallRow {
            NewCallRow {
                call: CallRow {
                    id: CallId::generate(),
                    account_id: account,
                    external_id: Some(external.to_owned()),
                    started_at: Timestamp::now(),
                    created_at: Timestamp::now(),
                    duration_s: Some(30),
                    direction: None,
                    status: None,
                    tracking_number: "+14155550100".into(),
                    source: None,
                    campaign: None,
                    utm_source: None,
                    utm_medium: None,
                    utm_campaign: None,
                    gdpr_scope: Some(true),
                    caller_bidx: Some([n; 16]),
                    session_id: None,
                    caller_identity: Some(vec![n; 48]),
                    caller_location: None,
                    transcript: None,
                    interaction: None,
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

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn forty_eight_concurrent_small_ingests_each_get_their_own_outcome_when_some_share_a_group_with_a_bad_one()
         {
            let Some((server, db)) = database("outcomes").await else {
                return;
            };
            let store = Arc::new(PgStore::open(&db, 8).await.expect("open"));
            let account = tenant(&store).await;
            // 48 requests at once: most store a new call; every eighth links its call to a
            // visit that does not exist (refused: `SessionNotFound`); pairs send one external
            // id twice (one is stored, the other finds it).
            let mut tasks = Vec::new();
            for i in 0..48u8 {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    let external = match i % 8 {
                        6 | 7 => format!("CA-pair-{}", i / 8),
                        _ => format!("CA-{i}"),
                    };
                    let mut new = call(account, &external, i);
                    if i % 8 == 5 {
                        new.call.session_id = Some(SessionId::generate());
                    }
                    let id = new.call.id;
                    (i, id, store.insert_calls(vec![new]).await)
                }));
            }
            let mut pairs: std::collections::BTreeMap<u8, Vec<Inserted<CallId>>> =
                Default::default();
            for task in tasks {
                let (i, id, result) = task.await.expect("task");
                match i % 8 {
                    5 => assert!(
                        matches!(result, Err(StoreError::SessionNotFound { index: 0 })),
                        "request {i}: {result:?}"
                    ),
                    6 | 7 => {
                        let report = result.expect("a re-delivery is no error");
                        assert_eq!(report.outcomes.len(), 1);
                        pairs.entry(i / 8).or_default().push(report.outcomes[0]);
                    }
                    _ => {
                        let report = result.expect("stored");
                        assert_eq!(report.outcomes, vec![Inserted::Created(id)], "request {i}");
                        assert_eq!(report.withheld, vec![Vec::new()]);
                    }
                }
            }
            for (pair, outcomes) in &pairs {
                let created: Vec<_> = outcomes.iter().filter(|o| o.is_created()).collect();
                assert_eq!(created.len(), 1, "pair {pair}: {outcomes:?}");
                assert!(
                    outcomes.iter().all(|o| o.id() == created[0].id()),
                    "pair {pair}: both answers name the stored call"
                );
            }
            // 30 new calls and 6 of the pairs: nothing of a refused request is stored.
            let mut conn = db.connect().await.expect("connect");
            let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM calls")
                .fetch_one(&mut conn)
                .await
                .expect("count");
            assert_eq!(stored, 36);
            let _ = conn.close().await;
            store.close().await;
            drop_database(&server, &db).await;
        }
    }
}
