//! The turnstile: turns at a database's write lock, fair between processes.
//!
//! SQLite gives its write lock to whoever asks at the right moment: a connection that finds
//! it taken sleeps in its busy handler (1 ms, then longer, up to 100 ms a time) and asks
//! again. `serve`'s writer asks again right after each commit, so a CLI process writing the
//! same database beside a server under sustained ingest slept through every opening and
//! waited tens of seconds, or failed as busy after the busy timeout.
//!
//! Every write transaction of every process now begins through the turnstile, a file next
//! to the database (`<name>-turn`, never removed): take it (`flock`, exclusive, blocking),
//! `BEGIN IMMEDIATE` (which waits in the busy handler for the write lock, bounded by the
//! busy timeout), release it. A writer that is about to begin therefore holds the turnstile
//! until it holds the write lock, and no other writer can begin before it: the one that
//! holds the write lock now finishes its transaction and must queue behind it for its next.
//! A truncating checkpoint (after a redaction), which takes the write lock as well, holds the
//! turnstile while it runs.
//! A process that dies while it holds the turnstile releases it with its file descriptor
//! (the kernel drops the lock), so a crash cannot wedge the others.
//!
//! `serve`'s writer also looks at the turnstile between the groups of an open logged
//! transaction (see `db`): taken means another writer waits for the write lock, so the
//! transaction commits at once instead of at its 200 ms deadline.
//!
//! Cost: two `flock` calls per transaction, and one more pair per group while a logged
//! transaction is open; a group's `fdatasync` costs a thousand times that.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use ringfence_store::StoreError;

/// The turnstile of the database at `db`: the file next to it, `<name>-turn`.
pub(super) fn path_for(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_owned();
    name.push("-turn");
    db.with_file_name(name)
}

/// One opening of a database's turnstile. Locks belong to this opening (`flock` locks an
/// open file description): two in one process exclude each other as two processes do.
pub(super) struct Turnstile {
    file: File,
}

fn io(what: &str, e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("turnstile: cannot {what}: {e}"))
}

impl Turnstile {
    /// Opens (creating it 0600 if missing) the turnstile of the database at `db`.
    pub(super) fn open(db: &Path) -> Result<Self, StoreError> {
        let path = path_for(db);
        let mut options = OpenOptions::new();
        options.create(true).read(true).write(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(&path).map_err(|e| io("open it", e))?;
        Ok(Self { file })
    }

    /// Begins a write transaction on `conn` (`BEGIN IMMEDIATE`) in turn: waits for the
    /// writers that came before, then for the write lock (the busy timeout bounds that
    /// wait and names itself in the error), and lets the next writer in once it holds it.
    pub(super) fn begin_immediate(&self, conn: &Connection) -> Result<(), StoreError> {
        self.file.lock().map_err(|e| io("take it", e))?;
        let begun = conn
            .prepare_cached("BEGIN IMMEDIATE")
            .and_then(|mut s| s.execute([]))
            .map(|_| ())
            .map_err(crate::db_error);
        // Released whatever happened: holding the write lock, or having given up on it.
        // (Unlocking a descriptor this process holds does not fail in practice; should it,
        // closing the descriptor would be the only release, so say so loudly.)
        if let Err(e) = self.file.unlock() {
            tracing::error!(error = %e, "the turnstile could not be released");
        }
        begun
    }

    /// Runs `f`, which takes the write lock otherwise than by `BEGIN IMMEDIATE` (a
    /// truncating checkpoint), holding the turnstile throughout.
    pub(super) fn in_turn<T>(
        &self,
        f: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.file.lock().map_err(|e| io("take it", e))?;
        let result = f();
        if let Err(e) = self.file.unlock() {
            tracing::error!(error = %e, "the turnstile could not be released");
        }
        result
    }

    /// Whether another writer is waiting for the write lock, as far as the turnstile tells:
    /// it holds the turnstile. (Taken for an instant to look, which at worst delays a
    /// writer arriving in that instant by as much.)
    pub(super) fn someone_waits(&self) -> bool {
        match self.file.try_lock() {
            Ok(()) => {
                let _ = self.file.unlock();
                false
            }
            Err(TryLockError::WouldBlock) => true,
            Err(TryLockError::Error(_)) => false,
        }
    }
}
