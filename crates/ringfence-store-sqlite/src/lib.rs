//! Ringfence's embedded backend: the call log ([`SqliteStore`]) and the vault ([`SqliteVault`])
//! on SQLite, each a file of its own. One writer thread commits concurrent requests together
//! (group commit), ingest is acknowledged from a redo log, a background thread checkpoints,
//! and a few read-only connections serve reads. Opened with WAL, `synchronous=FULL` (a commit
//! is durable before it is acknowledged), `secure_delete=ON` (deleted cells are overwritten),
//! foreign keys and a busy timeout.
//!
//! It implements the traits of `ringfence-store`. Domain rules it still holds (what an ingest
//! may keep, status ordering, redaction's side effects, outbox fan-out) are being moved up so
//! that every backend obeys one copy. Its errors never carry row contents.

mod audit;
mod checkpoint;
mod consent;
mod db;
mod outbox;
mod redaction;
mod redo;
mod redo_record;
mod schema;
mod store;
mod turnstile;
mod users;
mod vault;

pub use checkpoint::Checkpointer;
pub use db::{BUSY_TIMEOUT, SqliteDb};
pub use store::SqliteStore;
pub use vault::SqliteVault;

use std::path::Path;

use ringfence_store::StoreError;
use ringfence_store::records::{AuditEntry, AuditQuery};

/// Copies the redo log of the call log at `database` into `out` for a backup, before its
/// [`snapshot`]: the calls acknowledged but not yet committed (see `redo`). Returns the
/// number of records copied; a restore replays those the snapshot lacks.
pub fn copy_redo_log(database: &Path, out: &Path) -> Result<u64, StoreError> {
    redo::copy_for_backup(database, out)
}

/// The name of the redo log of the database at `database`.
pub fn redo_log_path(database: &Path) -> std::path::PathBuf {
    redo::path_for(database)
}

/// A consistent copy of a live database (`VACUUM INTO`), taken without stopping its writers,
/// into a new file (0600, synced).
pub fn snapshot(database: &Path, out: &Path) -> Result<(), StoreError> {
    let conn = rusqlite::Connection::open_with_flags(
        database,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db_error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(db_error)?;
    // The copy is built by inserting every row into a fresh file; without secure_delete,
    // the page splits of that build leave stale copies of some rows in the pages' free
    // space, where deleting the row later (a redaction re-applied by a restore) would not
    // reach them. The target takes this connection's setting.
    conn.pragma_update(None, "secure_delete", "ON")
        .map_err(db_error)?;
    let target = out
        .to_str()
        .ok_or_else(|| StoreError::Backend("backup path is not valid UTF-8".into()))?;
    // SQLite would create the file 0644 less the umask; an empty file is a valid target.
    ringfence_store::private::create_new_file(out)
        .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", out.display())))?;
    conn.execute("VACUUM INTO ?1", [target]).map_err(db_error)?;
    std::fs::File::open(out)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::Backend(format!("cannot sync {}: {e}", out.display())))?;
    Ok(())
}

/// The journal entries after `after_seq` of the call-log database at `database`, read-only.
pub fn read_journal(database: &Path, after_seq: i64) -> Result<Vec<AuditEntry>, StoreError> {
    let conn =
        rusqlite::Connection::open_with_flags(database, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(db_error)?;
    let mut out = Vec::new();
    let mut after = after_seq;
    loop {
        let page = audit::query(
            &conn,
            &AuditQuery {
                agency_id: None,
                account_id: None,
                after_seq: Some(after),
                before_seq: None,
                limit: 1000,
            },
        )?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        out.extend(page);
    }
    Ok(out)
}

/// The last journal sequence number of the call-log database at `database` (0 when empty).
pub fn last_journal_seq(database: &Path) -> Result<i64, StoreError> {
    let conn =
        rusqlite::Connection::open_with_flags(database, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(db_error)?;
    conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM audit_log", [], |r| {
        r.get(0)
    })
    .map_err(db_error)
}

/// rusqlite's error as a store error (internal: logged, never sent to a client). A busy
/// database names the bound it waited for.
pub fn db_error(e: rusqlite::Error) -> StoreError {
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) {
        return StoreError::Backend(format!(
            "{e}: another process held the database's write lock for longer than the busy timeout ({} s)",
            BUSY_TIMEOUT.as_secs()
        ));
    }
    StoreError::Backend(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_holds_one_copy_of_each_row_so_deleting_it_leaves_none() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source.db");
        let conn = rusqlite::Connection::open(&source).unwrap();
        conn.execute_batch(
            "PRAGMA secure_delete = ON; CREATE TABLE k (id TEXT PRIMARY KEY, v BLOB)",
        )
        .unwrap();
        // Ids out of order, as the vault's are: the build of the copy splits pages mid-tree.
        let marker = |i: u32| format!("MARKER-{i:05}-").into_bytes();
        for i in 0..600u32 {
            let id = format!("{:08x}", i.wrapping_mul(2_654_435_761));
            let mut v = marker(i);
            v.resize(90, b'x');
            conn.execute(
                "INSERT INTO k (id, v) VALUES (?1, ?2)",
                rusqlite::params![id, v],
            )
            .unwrap();
        }
        drop(conn);
        let copy = dir.path().join("copy.db");
        snapshot(&source, &copy).unwrap();
        let bytes = std::fs::read(&copy).unwrap();
        let copies = |bytes: &[u8], i: u32| {
            let m = marker(i);
            bytes
                .windows(m.len())
                .filter(|w| *w == m.as_slice())
                .count()
        };
        for i in 0..600 {
            assert_eq!(
                copies(&bytes, i),
                1,
                "row {i} has stale copies in the snapshot"
            );
        }
        // Deleting some rows from the copy leaves nothing of them.
        let conn = rusqlite::Connection::open(&copy).unwrap();
        conn.execute_batch("PRAGMA secure_delete = ON").unwrap();
        conn.execute(
            "DELETE FROM k WHERE CAST(substr(v, 8, 5) AS TEXT) < '00100'",
            [],
        )
        .unwrap();
        drop(conn);
        let bytes = std::fs::read(&copy).unwrap();
        for i in 0..100 {
            assert_eq!(copies(&bytes, i), 0, "deleted row {i} still readable");
        }
        assert_eq!(copies(&bytes, 100), 1);
    }
}
