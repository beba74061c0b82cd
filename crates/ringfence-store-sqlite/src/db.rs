use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{Semaphore, oneshot};

use super::checkpoint::Checkpointer;
use super::redo::{self, RedoLog};
use super::turnstile::Turnstile;
use crate::db_error;
use ringfence_store::StoreError;

/// How long a connection waits for another's lock before it fails as busy.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Most write jobs committed in one transaction.
const MAX_GROUP: usize = 1024;
const READERS: usize = 4;
/// Page cache of the writer connection, in KiB (SQLite's default is 2 MiB).
const WRITER_CACHE_KIB: i64 = 32 * 1024;

type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A write: given the connection and whether it shares the transaction with other jobs, it
/// returns how it went, what to do once it is durable, and, for a logged write that
/// succeeded, its redo record (see `redo`).
type WriteJob = Box<dyn FnOnce(&Connection, bool) -> Ran + Send>;

struct Ran {
    outcome: Outcome,
    completion: Completion,
    record: Option<Vec<u8>>,
}

/// Applies one redo record again: what a logged write's job did, done on the same state.
pub type Replay = fn(&Connection, &[u8]) -> Result<(), StoreError>;

/// How long, and for how many bytes of redo log, logged writes may share the writer's open
/// transaction before it commits. Reads and other writes commit it at once.
#[derive(Debug, Clone, Copy)]
pub struct RedoLimits {
    pub max_delay: Duration,
    pub max_bytes: u64,
}

impl Default for RedoLimits {
    fn default() -> Self {
        Self {
            max_delay: Duration::from_millis(200),
            max_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Where logged writes stand: acknowledged (in the redo log) and committed (in the database).
#[derive(Default)]
struct Progress {
    acked: AtomicU64,
    committed: AtomicU64,
    /// Set when a commit failed and the redo log could not be applied either: the database no
    /// longer holds what was acknowledged until it is opened again.
    broken: Mutex<Option<String>>,
}

impl Progress {
    fn broken(&self) -> Option<String> {
        self.broken.lock().ok().and_then(|b| b.clone())
    }
}

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
    /// Shared with the writer thread (see `turnstile`).
    turnstile: Arc<Turnstile>,
    progress: Arc<Progress>,
    /// Whether logged writes go through a redo log (else they commit like any write).
    logged: bool,
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// What a failed statement of the writer tells its jobs (a busy database names the bound).
fn describe(e: rusqlite::Error) -> String {
    store_message(crate::db_error(e))
}

fn store_message(e: StoreError) -> String {
    match e {
        StoreError::Backend(message) => message,
        other => other.to_string(),
    }
}

/// Creates the database file 0600 if it is missing (SQLite would make it 0644 less the
/// umask, and gives its `-wal` and `-shm` files the database file's mode), and restricts
/// the files of an existing one.
fn restrict_files(path: &Path) -> Result<(), StoreError> {
    let failed = |e: std::io::Error| {
        StoreError::Backend(format!(
            "cannot restrict {} to its owner: {e}",
            path.display()
        ))
    };
    match ringfence_store::private::create_new_file(path) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(failed(e)),
    }
    for suffix in ["", "-wal", "-shm", "-redo", "-turn"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        match ringfence_store::private::restrict_file(Path::new(&name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(failed(e)),
        }
    }
    Ok(())
}

impl SqliteDb {
    /// Opens (creating if needed) the database at `path` and applies `migrations` in order.
    /// Every write commits before it is acknowledged.
    pub fn open(path: &Path, migrations: &[&str]) -> Result<Arc<Self>, StoreError> {
        Self::open_with(path, migrations, None)
    }

    /// Like [`open`](Self::open), with a redo log next to the file for
    /// [`write_logged`](Self::write_logged): the acknowledged writes a crash left out of the
    /// database are applied here with `replay`, before anything else runs. The log belongs
    /// to one process at a time (a file lock); a second process that opens the database
    /// while another holds it works without one, committing every write.
    pub fn open_logged(
        path: &Path,
        migrations: &[&str],
        limits: RedoLimits,
        replay: Replay,
    ) -> Result<Arc<Self>, StoreError> {
        Self::open_with(path, migrations, Some((limits, replay)))
    }

    fn open_with(
        path: &Path,
        migrations: &[&str],
        redo_log: Option<(RedoLimits, Replay)>,
    ) -> Result<Arc<Self>, StoreError> {
        restrict_files(path)?;
        // Every write transaction of this database, in any process, begins through it.
        let turnstile = Arc::new(Turnstile::open(path)?);
        let writer = Connection::open(path).map_err(db_error)?;
        configure(&writer).map_err(db_error)?;
        // The writer's page cache keeps the B-trees' inner pages of a large log in memory,
        // so a redaction's scattered rows cost one leaf read each, not a walk from the root.
        writer
            .pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
            .map_err(db_error)?;
        migrate(&writer, migrations, &turnstile)?;
        let progress = Arc::new(Progress::default());
        let redo = match redo_log {
            Some((limits, replay)) => {
                create_if_missing(&writer, &turnstile, "redo_applied", redo::APPLIED_TABLE)?;
                RedoLog::open(&redo::path_for(path), &writer, replay, &turnstile)?.map(|log| {
                    progress.acked.store(log.last_seq(), Ordering::SeqCst);
                    progress.committed.store(log.last_seq(), Ordering::SeqCst);
                    (log, limits)
                })
            }
            None => None,
        };
        let logged = redo.is_some();
        // Checkpoints run on a thread of their own, not inside the commits that requests
        // wait for (see `checkpoint`).
        let checkpointer = Arc::new(Checkpointer::start(path)?);
        checkpointer.attach(&writer).map_err(db_error)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(db_error)?;
            configure(&reader).map_err(db_error)?;
            reader
                .pragma_update(None, "query_only", "ON")
                .map_err(db_error)?;
            readers.push(reader);
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = {
            let checkpointer = checkpointer.clone();
            let progress = progress.clone();
            let turnstile = turnstile.clone();
            spawn_for(path, "writer", move || {
                Writer {
                    conn: writer,
                    turnstile,
                    checkpointer,
                    progress,
                    redo,
                    open: false,
                    since: None,
                }
                .run(rx)
            })?
        };
        Ok(Arc::new(Self {
            path: path.to_owned(),
            writer: Mutex::new(Some(tx)),
            writer_thread: Mutex::new(Some(thread)),
            readers: Arc::new(Mutex::new(readers)),
            reader_slots: Arc::new(Semaphore::new(READERS)),
            checkpointer,
            turnstile,
            progress,
            logged,
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
        self.submit(move |c| f(c).map(|t| (t, None)), true).await
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
        self.submit(move |c| f(c).map(|t| (t, None)), false).await
    }

    /// Like [`write`](Self::write), acknowledged once the redo record `f` returns with its
    /// result is synced to the redo log rather than once the transaction commits (on a
    /// database opened with [`open_logged`](Self::open_logged) that holds its log; else the
    /// same as `write`). The open's `replay` given the record must do exactly what `f` did.
    /// Reads still see the write: a read commits the open transaction first.
    pub async fn write_logged<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<(T, Vec<u8>), StoreError> + Send + 'static,
    {
        let logged = self.logged;
        self.submit(move |c| f(c).map(|(t, r)| (t, logged.then_some(r))), true)
            .await
    }

    /// [`write_checked_first`](Self::write_checked_first), logged as
    /// [`write_logged`](Self::write_logged) is.
    pub async fn write_logged_checked_first<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<(T, Vec<u8>), StoreError> + Send + 'static,
    {
        let logged = self.logged;
        self.submit(move |c| f(c).map(|(t, r)| (t, logged.then_some(r))), false)
            .await
    }

    /// Queues `f`, which returns its result and, for a logged write, its redo record.
    async fn submit<T, F>(&self, f: F, savepoint: bool) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<(T, Option<Vec<u8>>), StoreError> + Send + 'static,
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
            // Only what was done is replayed.
            let (result, record) = match result {
                Ok((t, record)) => (Ok(t), record),
                Err(e) => (Err(e), None),
            };
            Ran {
                outcome,
                completion: Box::new(move |commit: Result<(), String>| {
                    let _ = tx.send(match commit {
                        Ok(()) => result,
                        Err(e) => Err(StoreError::Backend(format!("commit failed: {e}"))),
                    });
                }),
                record,
            }
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
        self.settle().await?;
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

    /// Commits the writer's open transaction if it holds acknowledged logged writes, so that
    /// what follows sees every write acknowledged before this call.
    async fn settle(&self) -> Result<(), StoreError> {
        let acked = self.progress.acked.load(Ordering::SeqCst);
        if self.progress.committed.load(Ordering::SeqCst) >= acked {
            return Ok(());
        }
        let progress = self.progress.clone();
        self.maintenance(move |_| match progress.broken() {
            Some(message) => Err(StoreError::Backend(message)),
            None => Ok(()),
        })
        .await
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
    /// The checkpoint takes the database's write lock like a transaction, so it goes through
    /// the turnstile too: beside a busy server it gets the next turn instead of polling.
    pub async fn truncate_wal(&self) -> Result<(), StoreError> {
        let (checkpointer, turnstile) = (self.checkpointer.clone(), self.turnstile.clone());
        self.maintenance(move |conn| turnstile.in_turn(|| checkpointer.truncate(conn)))
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
    conn.prepare_cached("SAVEPOINT job")
        .map_err(db_error)?
        .execute([])
        .map_err(db_error)?;
    let result = catch_unwind(AssertUnwindSafe(|| f(conn)))
        .unwrap_or_else(|_| Err(StoreError::Backend("a write panicked".into())));
    if result.is_err() {
        conn.prepare_cached("ROLLBACK TO job")
            .map_err(db_error)?
            .execute([])
            .map_err(db_error)?;
    }
    conn.prepare_cached("RELEASE job")
        .map_err(db_error)?
        .execute([])
        .map_err(db_error)?;
    result
}

/// The writer thread's state. Its transaction is open between groups exactly when it holds
/// logged writes that are acknowledged (in the redo log) and not committed yet.
struct Writer {
    conn: Connection,
    /// Every transaction of this writer begins through it (see `turnstile`).
    turnstile: Arc<Turnstile>,
    checkpointer: Arc<Checkpointer>,
    progress: Arc<Progress>,
    redo: Option<(RedoLog, RedoLimits)>,
    open: bool,
    /// When the first write of the open transaction was acknowledged.
    since: Option<Instant>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Job>) {
        let mut next: Option<Job> = None;
        loop {
            let first = match next.take() {
                Some(job) => job,
                None => match self.deadline() {
                    Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now()))
                    {
                        Ok(job) => job,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            self.commit_quietly();
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => {
                            self.commit_quietly();
                            return;
                        }
                    },
                    None => match rx.recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    },
                },
            };
            let first = match first {
                Job::Maintenance(run) => {
                    self.commit_quietly();
                    run(&self.conn);
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
            self.group(jobs);
        }
    }

    /// When the open transaction must commit, if one is open.
    fn deadline(&self) -> Option<Instant> {
        let (_, limits) = self.redo.as_ref()?;
        Some(self.since? + limits.max_delay)
    }

    fn group(&mut self, jobs: Vec<WriteJob>) {
        let message = self.progress.broken().or_else(|| {
            if self.open {
                return None;
            }
            match self.turnstile.begin_immediate(&self.conn) {
                Ok(()) => {
                    self.open = true;
                    None
                }
                Err(e) => Some(store_message(e)),
            }
        });
        if let Some(message) = message {
            for job in jobs {
                // Nothing may autocommit: run the job in a transaction that is rolled back.
                let _ = self.conn.execute_batch("BEGIN");
                let ran = job(&self.conn, false);
                let _ = self.conn.execute_batch("ROLLBACK");
                (ran.completion)(Err(message.clone()));
            }
            return;
        }
        let pending = self.since.is_some();
        let shared = jobs.len() > 1;
        let mut ran: Vec<Ran> = Vec::with_capacity(jobs.len());
        for job in jobs {
            ran.push(job(&self.conn, shared));
        }
        let all_ok = ran.iter().all(|r| r.outcome == Outcome::Done);
        let poisoned = ran.iter().any(|r| r.outcome == Outcome::Poisoned);
        if poisoned || (!shared && !all_ok) {
            // A job left changes it could not undo: undo the group whole. (A job alone in
            // its group that failed changed nothing; only an otherwise empty transaction is
            // ended.) A job that failed gets its own error; the others are told to retry.
            if poisoned || !pending {
                self.undo_group();
            }
            for r in ran {
                (r.completion)(if r.outcome == Outcome::Done {
                    Err(POISONED.to_owned())
                } else {
                    Ok(())
                });
            }
            return;
        }
        let logged = self.redo.is_some()
            && ran
                .iter()
                .all(|r| r.outcome != Outcome::Done || r.record.is_some());
        if !logged {
            let commit = self.commit_open();
            for r in ran {
                (r.completion)(commit.clone());
            }
            return;
        }
        let records: Vec<Vec<u8>> = ran.iter_mut().filter_map(|r| r.record.take()).collect();
        let appended = match (&mut self.redo, records.is_empty()) {
            (Some((log, _)), false) => log.append(&records).map(Some),
            _ => Ok(None),
        };
        match appended {
            Ok(seq) => {
                if let Some(seq) = seq {
                    self.progress.acked.store(seq, Ordering::SeqCst);
                    self.since.get_or_insert_with(Instant::now);
                } else if !pending {
                    // Nothing changed and nothing waits: end the transaction.
                    self.commit_quietly();
                }
                for r in ran {
                    (r.completion)(Ok(()));
                }
                let full = self
                    .redo
                    .as_ref()
                    .is_some_and(|(log, limits)| log.bytes() >= limits.max_bytes);
                // Another writer (another process) waiting at the turnstile gets the write
                // lock after this group, not after the deadline.
                if full
                    || self.deadline().is_some_and(|at| Instant::now() >= at)
                    || (self.open && self.turnstile.someone_waits())
                {
                    self.commit_quietly();
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "redo log append failed; the group is undone");
                self.undo_group();
                let message = e.to_string();
                for r in ran {
                    (r.completion)(Err(message.clone()));
                }
            }
        }
    }

    /// Undoes the current group by rolling the transaction back. The acknowledged writes
    /// that shared it (rare: only a database error undoes a group) are applied again from
    /// the redo log and committed. No savepoint marks the group's start: under one, SQLite
    /// copies every page the group touches into a statement journal.
    fn undo_group(&mut self) {
        let _ = self.conn.execute_batch("ROLLBACK");
        self.open = false;
        if self.since.take().is_some() {
            let last = self.redo.as_ref().map_or(0, |(log, _)| log.last_seq());
            self.recover(last, "a write failed part-way after acknowledged ones");
        }
    }

    /// Commits the open transaction, if any, with the redo log's position in it; then the
    /// log is emptied. Should the commit fail, the acknowledged writes are applied again
    /// from the log; if that fails too, the database stops taking writes and reads.
    fn commit_open(&mut self) -> Result<(), String> {
        if !self.open {
            return Ok(());
        }
        let pending = self.since.take().is_some();
        let last = self.redo.as_ref().map_or(0, |(log, _)| log.last_seq());
        let marked = if pending {
            redo::mark_applied(&self.conn, last).map_err(|e| e.to_string())
        } else {
            Ok(())
        };
        let commit = marked.and_then(|()| {
            self.conn.execute_batch("COMMIT").map_err(|e| {
                let _ = self.conn.execute_batch("ROLLBACK");
                describe(e)
            })
        });
        self.open = false;
        match &commit {
            Ok(()) => {
                if pending {
                    self.progress.committed.store(last, Ordering::SeqCst);
                    if let Some((log, _)) = self.redo.as_mut()
                        && let Err(e) = log.clear()
                    {
                        // Harmless: a later replay skips what the database already holds.
                        tracing::warn!(error = %e, "redo log could not be emptied");
                    }
                }
                self.checkpointer.after_commit(&self.conn);
            }
            Err(e) if pending => self.recover(last, &format!("commit failed: {e}")),
            Err(_) => {}
        }
        commit
    }

    /// [`commit_open`](Self::commit_open) where no job waits for the outcome: a failure is
    /// handled inside (the log is applied again).
    fn commit_quietly(&mut self) {
        let _ = self.commit_open();
    }

    /// After the acknowledged writes were rolled back (`why`): applies the redo log again,
    /// from what the database holds, up to `last`.
    fn recover(&mut self, last: u64, why: &str) {
        tracing::error!(reason = %why, "acknowledged writes rolled back; applying the redo log again");
        let replayed = match self.redo.as_mut() {
            Some((log, _)) => log.replay(&self.conn, &self.turnstile).and_then(|applied| {
                if applied < last {
                    Err(StoreError::Backend(format!(
                        "the redo log holds writes up to {applied}, not {last}"
                    )))
                } else {
                    Ok(applied)
                }
            }),
            None => return,
        };
        match replayed {
            Ok(applied) => {
                self.progress.committed.store(applied, Ordering::SeqCst);
                self.checkpointer.after_commit(&self.conn);
            }
            Err(e) => {
                tracing::error!(error = %e, "the redo log could not be applied; writes and reads stop until the database is opened again");
                if let Ok(mut broken) = self.progress.broken.lock() {
                    *broken = Some(
                        "the database could not commit acknowledged writes; restart ringfence"
                            .to_owned(),
                    );
                }
            }
        }
    }
}

fn table_exists(conn: &Connection, table: &str) -> Result<bool, StoreError> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1)",
        [table],
        |r| r.get::<_, bool>(0),
    )
    .map_err(db_error)
}

/// Creates `table` with `ddl` (a `CREATE TABLE IF NOT EXISTS`) in a transaction begun in
/// turn, if it is missing.
fn create_if_missing(
    conn: &Connection,
    turnstile: &Turnstile,
    table: &str,
    ddl: &str,
) -> Result<(), StoreError> {
    if table_exists(conn, table)? {
        return Ok(());
    }
    turnstile.begin_immediate(conn)?;
    match conn.execute_batch(ddl) {
        Ok(()) => conn.execute_batch("COMMIT").map_err(db_error),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(db_error(e))
        }
    }
}

fn migrate(
    conn: &Connection,
    migrations: &[&str],
    turnstile: &Turnstile,
) -> Result<(), StoreError> {
    let applied_version = |conn: &Connection| -> Result<i64, StoreError> {
        conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(db_error)
    };
    let has_history = table_exists(conn, "schema_migrations")?;
    // Nothing to apply takes no write lock: opening beside a busy writer does not wait.
    let applied = if has_history {
        applied_version(conn)?
    } else {
        0
    };
    if applied > migrations.len() as i64 {
        return Err(StoreError::Backend(format!(
            "the database has schema version {applied}, newer than this binary knows ({}); upgrade ringfence",
            migrations.len()
        )));
    }
    if has_history && applied == migrations.len() as i64 {
        return Ok(());
    }
    // One transaction, begun in turn; the history is read again inside it, so two
    // processes opening a new database at once apply each migration once.
    turnstile.begin_immediate(conn)?;
    let result = (|| {
        conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)").map_err(db_error)?;
        let applied = applied_version(conn)?;
        for (i, sql) in migrations.iter().enumerate() {
            let version = i as i64 + 1;
            if version <= applied {
                continue;
            }
            conn.execute_batch(sql).map_err(db_error)?;
            conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                rusqlite::params![
                    version,
                    ringfence_core::timestamp::Timestamp::now().millis()
                ],
            )
            .map_err(db_error)?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT").map_err(db_error),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
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
        conn.execute("INSERT INTO t (k, v) VALUES (?1, 'x')", [k])
            .map_err(db_error)?;
        Ok(())
    }

    /// Writes 2, then fails on 1, a duplicate key of the job before it.
    fn insert_2_then_duplicate_1(conn: &Connection) -> Result<(), StoreError> {
        insert(conn, 2)?;
        insert(conn, 1)
    }

    async fn keys(db: &SqliteDb) -> Vec<i64> {
        db.read(|conn| {
            let mut stmt = conn
                .prepare("SELECT k FROM t ORDER BY k")
                .map_err(db_error)?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(db_error)?;
            rows.collect::<Result<Vec<i64>, _>>().map_err(db_error)
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

    // The redo log.

    /// A redo record of the test table: the key to insert.
    fn replay_insert(conn: &Connection, record: &[u8]) -> Result<(), StoreError> {
        let k = i64::from_le_bytes(
            record
                .try_into()
                .map_err(|_| StoreError::Backend("bad".into()))?,
        );
        insert(conn, k)
    }

    /// Logged writes wait an hour to commit unless something asks.
    fn open_logged(path: &Path) -> Arc<SqliteDb> {
        let limits = RedoLimits {
            max_delay: Duration::from_secs(3600),
            max_bytes: u64::MAX,
        };
        SqliteDb::open_logged(
            path,
            &["CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)"],
            limits,
            replay_insert,
        )
        .unwrap()
    }

    async fn insert_logged(db: &SqliteDb, k: i64) -> Result<(), StoreError> {
        db.write_logged(move |conn| insert(conn, k).map(|()| ((), k.to_le_bytes().to_vec())))
            .await
    }

    /// What a crash at this moment would leave on disk: the database, its WAL and its redo
    /// log, copied to `to` (the open transaction's changes are in none of the first two).
    fn crash_image(from: &Path, to: &Path) -> PathBuf {
        std::fs::create_dir_all(to).unwrap();
        for name in ["t.db", "t.db-wal", "t.db-redo"] {
            if from.join(name).exists() {
                std::fs::copy(from.join(name), to.join(name)).unwrap();
            }
        }
        to.join("t.db")
    }

    fn committed_keys(path: &Path) -> Vec<i64> {
        let conn = Connection::open(path).unwrap();
        let mut stmt = conn.prepare("SELECT k FROM t ORDER BY k").unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<Vec<i64>, _>>()
            .unwrap()
    }

    #[tokio::test]
    async fn acknowledged_logged_writes_wait_uncommitted_and_survive_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_logged(&dir.path().join("t.db"));
        for k in 1..=3 {
            insert_logged(&db, k).await.unwrap();
        }
        // A failed logged write leaves nothing to replay.
        assert!(insert_logged(&db, 2).await.is_err());
        let image = crash_image(dir.path(), &dir.path().join("crash"));
        assert!(
            committed_keys(&image).is_empty(),
            "acknowledged, not committed: the test must not pass without the log"
        );
        assert!(
            std::fs::metadata(dir.path().join("crash/t.db-redo"))
                .unwrap()
                .len()
                > 0
        );
        let recovered = open_logged(&image);
        assert_eq!(keys(&recovered).await, vec![1, 2, 3]);
        assert_eq!(
            std::fs::metadata(dir.path().join("crash/t.db-redo"))
                .unwrap()
                .len(),
            0,
            "replayed and committed, the log is emptied"
        );
        // It goes on from there, and a second crash image holds both generations.
        insert_logged(&recovered, 4).await.unwrap();
        let again = crash_image(&dir.path().join("crash"), &dir.path().join("crash2"));
        drop(recovered);
        assert_eq!(keys(&open_logged(&again)).await, vec![1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn a_read_sees_every_write_acknowledged_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = open_logged(&path);
        insert_logged(&db, 1).await.unwrap();
        assert!(committed_keys(&path).is_empty());
        assert_eq!(keys(&db).await, vec![1], "the read committed the log first");
        assert_eq!(committed_keys(&path), vec![1]);
        // An ordinary write commits what waits with it.
        insert_logged(&db, 2).await.unwrap();
        db.write(|conn| insert(conn, 3)).await.unwrap();
        assert_eq!(committed_keys(&path), vec![1, 2, 3]);
        // So does closing.
        insert_logged(&db, 4).await.unwrap();
        db.close();
        assert_eq!(committed_keys(&path), vec![1, 2, 3, 4]);
        assert_eq!(
            std::fs::metadata(dir.path().join("t.db-redo"))
                .unwrap()
                .len(),
            0
        );
    }

    #[tokio::test]
    async fn logged_writes_commit_on_their_own_after_the_delay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let limits = RedoLimits {
            max_delay: Duration::from_millis(50),
            max_bytes: u64::MAX,
        };
        let db = SqliteDb::open_logged(
            &path,
            &["CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)"],
            limits,
            replay_insert,
        )
        .unwrap();
        insert_logged(&db, 1).await.unwrap();
        let mut waited = 0;
        while committed_keys(&path).is_empty() {
            assert!(waited < 100, "not committed after 5 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += 1;
        }
        assert_eq!(committed_keys(&path), vec![1]);
    }

    #[tokio::test]
    async fn a_log_left_behind_after_its_commit_is_not_replayed_twice_and_a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = open_logged(&path);
        insert_logged(&db, 1).await.unwrap();
        insert_logged(&db, 2).await.unwrap();
        let log = std::fs::read(dir.path().join("t.db-redo")).unwrap();
        assert!(!log.is_empty());
        db.close();
        drop(db);
        // A crash between the commit and emptying the log, and a record cut short after it.
        let mut stale = log.clone();
        stale.extend_from_slice(&log[..log.len() / 2 + 1]);
        std::fs::write(dir.path().join("t.db-redo"), &stale).unwrap();
        let db = open_logged(&path);
        assert_eq!(
            keys(&db).await,
            vec![1, 2],
            "nothing applied twice (a duplicate key would fail the open)"
        );
        insert_logged(&db, 3).await.unwrap();
        drop(db);
        assert_eq!(committed_keys(&path), vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn a_second_opener_of_a_logged_database_commits_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let first = open_logged(&path);
        let second = open_logged(&path);
        insert_logged(&second, 1).await.unwrap();
        assert_eq!(
            committed_keys(&path),
            vec![1],
            "the second holds no log: it committed"
        );
        insert_logged(&first, 2).await.unwrap();
        assert_eq!(committed_keys(&path), vec![1]);
        assert_eq!(keys(&first).await, vec![1, 2]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_second_writer_gets_its_turn_beside_a_logged_writer_that_never_pauses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        // Its open transaction would wait an hour to commit: only the turnstile ends it.
        let serving = open_logged(&path);
        let beside = open_logged(&path);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..4i64)
            .map(|w| {
                let (db, stop) = (serving.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut k = 1_000_000 * (w + 1);
                    let mut written = 0u32;
                    while !stop.load(Ordering::Relaxed) {
                        insert_logged(&db, k).await.unwrap();
                        k += 1;
                        written += 1;
                    }
                    written
                })
            })
            .collect();
        for k in 1..=5 {
            // Ingest is under way each time the second writer asks.
            let floor = serving.progress.acked.load(Ordering::SeqCst) + 20;
            while serving.progress.acked.load(Ordering::SeqCst) < floor {
                tokio::task::yield_now().await;
            }
            beside
                .write(move |conn| insert(conn, k))
                .await
                .unwrap_or_else(|e| panic!("write {k} beside the logged writer: {e}"));
        }
        stop.store(true, Ordering::Relaxed);
        let mut written = 0;
        for w in writers {
            written += w.await.unwrap();
        }
        assert!(written >= 100, "the logged writer kept writing: {written}");
        assert_eq!(
            committed_keys(&path)
                .into_iter()
                .filter(|k| *k <= 5)
                .collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn a_writer_waiting_at_the_turnstile_is_seen_and_a_dead_holder_releases_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let first = Turnstile::open(&path).unwrap();
        let second = Turnstile::open(&path).unwrap();
        assert!(!first.someone_waits());
        {
            let holder = std::fs::File::options()
                .read(true)
                .write(true)
                .open(crate::turnstile::path_for(&path))
                .unwrap();
            holder.lock().unwrap();
            assert!(first.someone_waits() && second.someone_waits());
            // The holder's descriptor closes (as a process's do when it dies).
        }
        assert!(!first.someone_waits());
    }

    #[tokio::test]
    async fn a_write_failing_part_way_after_acknowledged_ones_leaves_those_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = open_logged(&path);
        insert_logged(&db, 1).await.unwrap();
        // Writes 2, then fails on 1: no savepoint can undo the 2, so the transaction is
        // rolled back, 1 with it, and 1 is applied again from the log.
        let failed = db
            .write_logged_checked_first(|conn| {
                insert_2_then_duplicate_1(conn).map(|()| ((), 2i64.to_le_bytes().to_vec()))
            })
            .await;
        assert!(
            matches!(&failed, Err(StoreError::Backend(m)) if m.contains("UNIQUE")),
            "{failed:?}"
        );
        assert_eq!(committed_keys(&path), vec![1], "replayed and committed");
        insert_logged(&db, 3).await.unwrap();
        assert_eq!(keys(&db).await, vec![1, 3]);
        drop(db);
        assert_eq!(keys(&open_logged(&path)).await, vec![1, 3]);
    }
}
