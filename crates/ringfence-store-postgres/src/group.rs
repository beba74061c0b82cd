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
}
