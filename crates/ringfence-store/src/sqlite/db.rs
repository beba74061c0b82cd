use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{Semaphore, oneshot};

use super::checkpoint::Checkpointer;
use crate::StoreError;

/// Most write jobs committed in one transaction.
const MAX_GROUP: usize = 1024;
const READERS: usize = 4;
/// Page cache of the writer connection, in KiB (SQLite's default is 2 MiB).
const WRITER_CACHE_KIB: i64 = 32 * 1024;

type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A write: given the connection and whether it shares the transaction with other jobs, it
/// returns how it went and what to do once the transaction has ended.
type WriteJob = Box<dyn FnOnce(&Connection, bool) -> (Outcome, Completion) + Send>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    /// Failed, and its changes are undone (or it made none).
    Failed,
    /// Failed after changing the database without a savepoint to undo it: the whole
    /// transaction must be rolled back.
    Poisoned,
}

/// What the other jobs of a transaction that a job poisoned are told.
const POISONED: &str = "another write in the same transaction failed part-way; retry";

enum Job {
    /// Runs inside the group's transaction; completes after the commit.
    Write(WriteJob),
    /// Runs alone, outside any transaction.
    Maintenance(Box<dyn FnOnce(&Connection) + Send>),
}

/// One SQLite database file: a writer thread and a pool of readers.
pub struct SqliteDb {
    path: PathBuf,
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    reader_slots: Arc<Semaphore>,
    checkpointer: Arc<Checkpointer>,
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

impl SqliteDb {
    /// Opens (creating if needed) the database at `path` and applies `migrations` in order.
    pub fn open(path: &Path, migrations: &[&str]) -> Result<Arc<Self>, StoreError> {
        let mut writer = Connection::open(path)?;
        configure(&writer)?;
        // The writer's page cache keeps the B-trees' inner pages of a large log in memory,
        // so a redaction's scattered rows cost one leaf read each, not a walk from the root.
        writer.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        migrate(&mut writer, migrations)?;
        // Checkpoints run on a thread of their own, not inside the commits that requests
        // wait for (see `checkpoint`).
        let checkpointer = Arc::new(Checkpointer::start(path)?);
        checkpointer.attach(&writer)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            configure(&reader)?;
            reader.pragma_update(None, "query_only", "ON")?;
            readers.push(reader);
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = {
            let checkpointer = checkpointer.clone();
            spawn_for(path, "writer", move || {
                write_loop(writer, rx, &checkpointer)
            })?
        };
        Ok(Arc::new(Self {
            path: path.to_owned(),
            writer: Mutex::new(Some(tx)),
            writer_thread: Mutex::new(Some(thread)),
            readers: Arc::new(Mutex::new(readers)),
            reader_slots: Arc::new(Semaphore::new(READERS)),
            checkpointer,
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in the writer's current transaction, inside a savepoint of its own: if `f`
    /// fails, only its own changes are undone. Returns once the transaction is committed.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(f, true).await
    }

    /// Like [`write`](Self::write), for a job that fails only before it has changed
    /// anything (it checks first, then writes): it runs without a savepoint of its own, so
    /// SQLite does not copy each page it touches into a statement journal. Should it fail
    /// after a change after all (a database error), the whole transaction is rolled back and
    /// every job in it fails, so nothing is half-stored either way.
    pub async fn write_checked_first<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(f, false).await
    }

    async fn submit<T, F>(&self, f: F, savepoint: bool) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T, StoreError>>();
        let job = Job::Write(Box::new(move |conn: &Connection, shared: bool| {
            // Alone in its transaction, a job needs no savepoint: if it fails, the whole
            // transaction is rolled back. (Statements inside a savepoint cost SQLite more
            // the more pages the transaction has dirtied.)
            let (result, outcome) = if shared && savepoint {
                let result = run_in_savepoint(conn, f);
                let outcome = if result.is_ok() {
                    Outcome::Done
                } else {
                    Outcome::Failed
                };
                (result, outcome)
            } else {
                let before = conn.total_changes();
                let result = catch_unwind(AssertUnwindSafe(|| f(conn)))
                    .unwrap_or_else(|_| Err(StoreError::Backend("a write panicked".into())));
                let outcome = match &result {
                    Ok(_) => Outcome::Done,
                    Err(_) if conn.total_changes() == before => Outcome::Failed,
                    Err(_) => Outcome::Poisoned,
                };
                (result, outcome)
            };
            (
                outcome,
                Box::new(move |commit: Result<(), String>| {
                    let _ = tx.send(match commit {
                        Ok(()) => result,
                        Err(e) => Err(StoreError::Backend(format!("commit failed: {e}"))),
                    });
                }) as Completion,
            )
        }));
        self.send(job)?;
        rx.await
            .map_err(|_| StoreError::Backend("the writer thread stopped".into()))?
    }

    /// Runs `f` on a read-only connection, off the async runtime.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let _permit = self
            .reader_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Backend("database is closed".into()))?;
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = readers
                .lock()
                .ok()
                .and_then(|mut r| r.pop())
                .ok_or_else(|| StoreError::Backend("no reader available".into()))?;
            let result = catch_unwind(AssertUnwindSafe(|| f(&conn)))
                .unwrap_or_else(|_| Err(StoreError::Backend("a read panicked".into())));
            if let Ok(mut r) = readers.lock() {
                r.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?
    }

    /// Runs `f` on the writer connection outside any transaction, after the jobs queued
    /// before it are committed (WAL checkpoints, which cannot run inside a transaction).
    pub async fn maintenance<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T, StoreError>>();
        let job = Job::Maintenance(Box::new(move |conn: &Connection| {
            let result = catch_unwind(AssertUnwindSafe(|| f(conn)))
                .unwrap_or_else(|_| Err(StoreError::Backend("maintenance panicked".into())));
            let _ = tx.send(result);
        }));
        self.send(job)?;
        rx.await
            .map_err(|_| StoreError::Backend("the writer thread stopped".into()))?
    }

    /// Copies the whole WAL back into the database and truncates it to nothing, once the
    /// jobs queued before are committed (and after a background checkpoint that is
    /// running). Afterwards no page the WAL held, overwritten data included, is left in it.
    pub async fn truncate_wal(&self) -> Result<(), StoreError> {
        let checkpointer = self.checkpointer.clone();
        self.maintenance(move |conn| checkpointer.truncate(conn))
            .await
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        let sender = self
            .writer
            .lock()
            .map_err(|_| StoreError::Backend("writer lock poisoned".into()))?;
        let sender = sender
            .as_ref()
            .ok_or_else(|| StoreError::Backend("database is closed".into()))?;
        sender
            .send(job)
            .map_err(|_| StoreError::Backend("the writer thread stopped".into()))
    }

    /// Stops the writer thread after the jobs already queued are committed.
    pub fn close(&self) {
        if let Ok(mut w) = self.writer.lock() {
            w.take();
        }
        if let Ok(mut t) = self.writer_thread.lock()
            && let Some(t) = t.take()
        {
            let _ = t.join();
        }
        self.checkpointer.stop();
    }
}

impl Drop for SqliteDb {
    fn drop(&mut self) {
        self.close();
    }
}

/// Starts the thread `sqlite-{role}-{file name}` that serves the database at `path`.
pub(super) fn spawn_for(
    path: &Path,
    role: &str,
    run: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, StoreError> {
    let file = path.file_name().and_then(|n| n.to_str()).unwrap_or("db");
    std::thread::Builder::new()
        .name(format!("sqlite-{role}-{file}"))
        .spawn(run)
        .map_err(|e| StoreError::Backend(format!("cannot start the {role} thread: {e}")))
}

fn run_in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    // Prepared once per connection: a group of single calls runs these thousands of times.
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    let result = catch_unwind(AssertUnwindSafe(|| f(conn)))
        .unwrap_or_else(|_| Err(StoreError::Backend("a write panicked".into())));
    if result.is_err() {
        conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
    }
    conn.prepare_cached("RELEASE job")?.execute([])?;
    result
}

fn write_loop(conn: Connection, rx: mpsc::Receiver<Job>, checkpointer: &Checkpointer) {
    let mut next: Option<Job> = None;
    loop {
        let first = match next.take() {
            Some(job) => job,
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let first = match first {
            Job::Maintenance(run) => {
                run(&conn);
                continue;
            }
            Job::Write(job) => job,
        };
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(Job::Write(job)) => jobs.push(job),
                Ok(maintenance) => {
                    next = Some(maintenance);
                    break;
                }
                Err(_) => break,
            }
        }
        commit_group(&conn, jobs);
        checkpointer.after_commit(&conn);
    }
}

fn commit_group(conn: &Connection, jobs: Vec<WriteJob>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let message = e.to_string();
        for job in jobs {
            // Nothing may autocommit: run the job in a transaction that is rolled back.
            let _ = conn.execute_batch("BEGIN");
            let (_, completion) = job(conn, false);
            let _ = conn.execute_batch("ROLLBACK");
            completion(Err(message.clone()));
        }
        return;
    }
    let shared = jobs.len() > 1;
    let mut completions: Vec<(Outcome, Completion)> = Vec::with_capacity(jobs.len());
    for job in jobs {
        completions.push(job(conn, shared));
    }
    let all_ok = completions.iter().all(|(o, _)| *o == Outcome::Done);
    let poisoned = completions.iter().any(|(o, _)| *o == Outcome::Poisoned);
    if poisoned || (!shared && !all_ok) {
        // A job alone in its transaction failed, or one left changes it could not undo:
        // undo the transaction whole. A job that failed gets its own error; the others
        // are told to retry.
        let _ = conn.execute_batch("ROLLBACK");
        for (outcome, completion) in completions {
            completion(if outcome == Outcome::Done {
                Err(POISONED.to_owned())
            } else {
                Ok(())
            });
        }
        return;
    }
    let commit = conn.execute_batch("COMMIT").map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        e.to_string()
    });
    for (_, completion) in completions {
        completion(commit.clone());
    }
}

fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<(), StoreError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")?;
    let applied: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    for (i, sql) in migrations.iter().enumerate() {
        let version = i as i64 + 1;
        if version <= applied {
            continue;
        }
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            rusqlite::params![
                version,
                ringfence_core::timestamp::Timestamp::now().millis()
            ],
        )?;
        tx.commit()?;
    }
    if applied > migrations.len() as i64 {
        return Err(StoreError::Backend(format!(
            "the database has schema version {applied}, newer than this binary knows ({}); upgrade ringfence",
            migrations.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn open(dir: &Path) -> Arc<SqliteDb> {
        SqliteDb::open(
            &dir.join("t.db"),
            &["CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)"],
        )
        .unwrap()
    }

    fn insert(conn: &Connection, k: i64) -> Result<(), StoreError> {
        conn.execute("INSERT INTO t (k, v) VALUES (?1, 'x')", [k])?;
        Ok(())
    }

    /// Writes 2, then fails on 1, a duplicate key of the job before it.
    fn insert_2_then_duplicate_1(conn: &Connection) -> Result<(), StoreError> {
        insert(conn, 2)?;
        insert(conn, 1)
    }

    async fn keys(db: &SqliteDb) -> Vec<i64> {
        db.read(|conn| {
            let mut stmt = conn.prepare("SELECT k FROM t ORDER BY k")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<i64>, _>>()?)
        })
        .await
        .unwrap()
    }

    /// Runs `jobs` in one group: a first job holds the writer until all are queued.
    async fn in_one_group<T: Send + 'static>(
        db: &Arc<SqliteDb>,
        jobs: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>>,
    ) -> Vec<T> {
        let hold = {
            let db = db.clone();
            tokio::spawn(async move {
                db.write(|_| {
                    std::thread::sleep(Duration::from_millis(200));
                    Ok(())
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let out = futures::future::join_all(jobs).await;
        hold.await.unwrap().unwrap();
        out
    }

    /// In one group: a checked job inserting 1, the checked job `middle`, a guarded job
    /// inserting 3.
    async fn checked_between<F>(db: &Arc<SqliteDb>, middle: F) -> Vec<Result<(), StoreError>>
    where
        F: FnOnce(&Connection) -> Result<(), StoreError> + Send + 'static,
    {
        let (a, b, c) = (db.clone(), db.clone(), db.clone());
        in_one_group(
            db,
            vec![
                Box::pin(async move { a.write_checked_first(|conn| insert(conn, 1)).await }),
                Box::pin(async move { b.write_checked_first(middle).await }),
                Box::pin(async move { c.write(|conn| insert(conn, 3)).await }),
            ],
        )
        .await
    }

    #[tokio::test]
    async fn a_checked_job_that_fails_before_writing_leaves_its_group_committed() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let out = checked_between(&db, |_| Err(StoreError::Backend("refused".into()))).await;
        assert!(out[0].is_ok() && out[2].is_ok(), "{out:?}");
        assert!(matches!(&out[1], Err(StoreError::Backend(m)) if m == "refused"));
        assert_eq!(keys(&db).await, vec![1, 3]);
    }

    #[tokio::test]
    async fn a_checked_job_that_fails_after_writing_rolls_back_its_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        // The middle job writes 2, then fails on a duplicate key: no savepoint can undo the 2.
        let out = checked_between(&db, insert_2_then_duplicate_1).await;
        assert!(
            matches!(&out[1], Err(StoreError::Backend(m)) if m.contains("UNIQUE")),
            "the failing job gets its own error: {out:?}"
        );
        for other in [&out[0], &out[2]] {
            assert!(
                matches!(other, Err(StoreError::Backend(m)) if m.contains(POISONED)),
                "{out:?}"
            );
        }
        assert!(keys(&db).await.is_empty(), "nothing of the group is stored");
        // The writer goes on.
        db.write_checked_first(|conn| insert(conn, 4))
            .await
            .unwrap();
        assert_eq!(keys(&db).await, vec![4]);
    }

    #[tokio::test]
    async fn a_guarded_job_that_fails_part_way_undoes_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let (a, b) = (db.clone(), db.clone());
        let out = in_one_group(
            &db,
            vec![
                Box::pin(async move { a.write(|conn| insert(conn, 1)).await }),
                Box::pin(async move { b.write(insert_2_then_duplicate_1).await }),
            ],
        )
        .await;
        assert!(out[0].is_ok() && out[1].is_err(), "{out:?}");
        assert_eq!(keys(&db).await, vec![1]);
    }
}
