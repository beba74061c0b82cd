//! WAL checkpoints outside the commit path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold: the
//! writer copies the WAL back into the database and fsyncs it while every queued request
//! waits. Here the writer only notes, after each commit, how many pages the WAL holds
//! (through the WAL hook, which replaces the automatic checkpoint), and a thread of its own
//! with its own connection copies them back (`PASSIVE`: it never blocks the writer nor
//! readers). Two bounds keep the WAL from growing without limit when the background cannot
//! catch up (a PASSIVE checkpoint can only finish when no commit lands during it): past
//! [`INLINE_PAGES`] the writer checkpoints in line as SQLite would (`RESTART`), and after a
//! reset the file is cut back to [`JOURNAL_SIZE_LIMIT`].
//!
//! A checkpoint that must truncate the WAL (after a redaction, so that no overwritten
//! ciphertext stays in it) takes the same lock as the background one, so it waits for a
//! running background checkpoint to finish instead of failing with "busy".

use std::cell::Cell;
use std::ffi::c_int;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use rusqlite::hooks::Wal;

use super::db::spawn_for;
use crate::db_error;
use ringfence_store::StoreError;

/// WAL pages after a commit that wake the background checkpoint (SQLite's own automatic
/// checkpoint threshold).
pub const WAKE_PAGES: i32 = 1000;
/// WAL pages after a commit at which the writer checkpoints in line (32 MiB of 4 KiB pages).
/// Under a load with no pause the background copy never completes, so the WAL only restarts
/// from here: a higher limit makes these stalls rarer but no shorter (each copies what came
/// since the last background copy) and lets readers search a longer WAL; measured, 8,192
/// kept the single-call p99 near what it was with checkpoints inside commits.
pub const INLINE_PAGES: i32 = 8 * 1024;
/// Shortest time between two background checkpoints: a page written by several commits in
/// that time is copied back once.
const SPACING: Duration = Duration::from_millis(100);
/// The WAL file is cut back to this size when it is reset (`journal_size_limit`).
const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

thread_local! {
    /// Pages in the WAL after the last commit on this thread (set by the WAL hook, which
    /// SQLite calls on the committing thread; taken by `after_commit`).
    static WAL_PAGES: Cell<i32> = const { Cell::new(0) };
}

fn note_wal_pages(_: &Wal, pages: c_int) -> rusqlite::Result<()> {
    WAL_PAGES.with(|p| p.set(pages));
    Ok(())
}

#[derive(Default)]
struct State {
    requested: bool,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Held while any checkpoint of this database runs, background or not.
    running: Mutex<()>,
}

impl Shared {
    fn running(&self) -> MutexGuard<'_, ()> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The background checkpoint of one database file.
pub struct Checkpointer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// Opens a connection of its own to the database at `path` (which must exist, in WAL
    /// mode) and starts the thread that checkpoints it when woken.
    pub fn start(path: &Path) -> Result<Checkpointer, StoreError> {
        let conn = Connection::open(path).map_err(db_error)?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(db_error)?;
        // The copy into the database is fsynced before the WAL may be reused.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db_error)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            running: Mutex::new(()),
        });
        let thread = {
            let shared = shared.clone();
            spawn_for(path, "ckpt", move || run(conn, &shared))?
        };
        Ok(Checkpointer {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Makes `writer` leave checkpoints to this checkpointer: the WAL hook replaces SQLite's
    /// automatic checkpoint. Call [`after_commit`](Self::after_commit) after each commit.
    pub fn attach(&self, writer: &Connection) -> rusqlite::Result<()> {
        writer.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
        writer.wal_hook(Some(note_wal_pages));
        Ok(())
    }

    /// After a commit on `writer` (on the thread that committed): wakes the background
    /// checkpoint when the WAL has grown past [`WAKE_PAGES`], or checkpoints in line past
    /// [`INLINE_PAGES`].
    pub fn after_commit(&self, writer: &Connection) {
        let pages = WAL_PAGES.with(|p| p.replace(0));
        if pages >= INLINE_PAGES {
            let _running = self.shared.running();
            if let Err(e) = writer.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "in-line WAL checkpoint failed");
            }
        } else if pages >= WAKE_PAGES {
            let mut state = self.shared.state();
            if !state.requested {
                state.requested = true;
                self.shared.wake.notify_one();
            }
        }
    }

    /// `wal_checkpoint(TRUNCATE)` on `writer`, after any background checkpoint running,
    /// retried while readers hold old snapshots. Afterwards the WAL file is empty.
    pub fn truncate(&self, writer: &Connection) -> Result<(), StoreError> {
        let _running = self.shared.running();
        for _ in 0..50 {
            let busy: i64 = writer
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                .map_err(db_error)?;
            if busy == 0 {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(StoreError::Backend(
            "the WAL could not be truncated: readers kept it busy".into(),
        ))
    }

    /// Stops the thread (after the checkpoint it is running, if any) and closes its
    /// connection.
    pub fn stop(&self) {
        {
            let mut state = self.shared.state();
            state.stop = true;
            self.shared.wake.notify_one();
        }
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(conn: Connection, shared: &Shared) {
    let mut last: Option<Instant> = None;
    loop {
        {
            let mut state = shared.state();
            while !state.requested && !state.stop {
                state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            if state.stop {
                return;
            }
        }
        // Let commits accumulate for a while: each page is then copied back once.
        if let Some(wait) = last.and_then(|t| SPACING.checked_sub(t.elapsed())) {
            let state = shared.state();
            let (state, _) = shared
                .wake
                .wait_timeout_while(state, wait, |s| !s.stop)
                .unwrap_or_else(|p| p.into_inner());
            if state.stop {
                return;
            }
        }
        shared.state().requested = false;
        {
            let _running = shared.running();
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "background WAL checkpoint failed");
            }
        }
        last = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_len(path: &Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    fn wal_len(path: &Path) -> u64 {
        file_len(&path.with_extension("db-wal"))
    }

    /// A writer as `SqliteDb` opens one, with a table, attached to a new checkpointer.
    fn writer(dir: &Path) -> (std::path::PathBuf, Connection, Checkpointer) {
        let path = dir.join("c.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "FULL").unwrap();
        conn.execute_batch("CREATE TABLE t (x BLOB)").unwrap();
        let checkpointer = Checkpointer::start(&path).unwrap();
        checkpointer.attach(&conn).unwrap();
        (path, conn, checkpointer)
    }

    /// Commits `pages` rows of one page each.
    fn commit_pages(conn: &Connection, pages: usize) {
        conn.execute_batch("BEGIN").unwrap();
        for _ in 0..pages {
            conn.execute("INSERT INTO t VALUES (zeroblob(4000))", [])
                .unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
    }

    /// Pages reach the database file only when a checkpoint copies them back.
    fn wait_for_db_len(path: &Path, at_least: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if file_len(path) >= at_least {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn commits_leave_the_copy_to_the_background_thread() {
        let dir = tempfile::tempdir().unwrap();
        let (path, conn, checkpointer) = writer(dir.path());
        let pages = WAKE_PAGES as u64 + 200;

        commit_pages(&conn, pages as usize);
        // SQLite's automatic checkpoint would have copied the pages back inside COMMIT.
        assert!(
            file_len(&path) < 10 * 4096,
            "nothing copied back in the commit"
        );
        assert!(wal_len(&path) > pages * 4096, "the WAL holds the commit");

        checkpointer.after_commit(&conn);
        assert!(
            wait_for_db_len(&path, pages * 4096),
            "the background checkpoint copied the pages back"
        );
    }

    #[test]
    fn a_small_commit_does_not_wake_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let (path, conn, checkpointer) = writer(dir.path());
        commit_pages(&conn, 20);
        checkpointer.after_commit(&conn);
        std::thread::sleep(SPACING * 3);
        assert!(file_len(&path) < 10 * 4096, "nothing copied back");
        assert!(!checkpointer.shared.state().requested);
    }

    #[test]
    fn past_the_inline_limit_the_writer_checkpoints_before_returning() {
        let dir = tempfile::tempdir().unwrap();
        let (path, conn, checkpointer) = writer(dir.path());
        commit_pages(&conn, 20);
        // As if the hook had seen a WAL at the limit.
        WAL_PAGES.with(|p| p.set(INLINE_PAGES));
        checkpointer.after_commit(&conn);
        assert!(file_len(&path) >= 20 * 4096, "copied back in line");
        assert!(
            !checkpointer.shared.state().requested,
            "not left to the background"
        );
    }

    #[test]
    fn truncate_empties_the_wal_file() {
        let dir = tempfile::tempdir().unwrap();
        let (path, conn, checkpointer) = writer(dir.path());
        commit_pages(&conn, WAKE_PAGES as usize);
        checkpointer.after_commit(&conn);
        // Whether or not the background copy is running, truncation waits for it.
        checkpointer.truncate(&conn).unwrap();
        assert_eq!(wal_len(&path), 0);
        assert!(file_len(&path) >= WAKE_PAGES as u64 * 4096);
    }

    #[test]
    fn stop_ends_the_thread_even_while_it_waits_out_the_spacing() {
        let dir = tempfile::tempdir().unwrap();
        let (_path, conn, checkpointer) = writer(dir.path());
        for _ in 0..2 {
            commit_pages(&conn, WAKE_PAGES as usize);
            checkpointer.after_commit(&conn);
        }
        let t = Instant::now();
        checkpointer.stop();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(checkpointer.thread.lock().unwrap().is_none());
    }
}
