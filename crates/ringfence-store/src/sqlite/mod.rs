//! SQLite: one writer thread that commits concurrent requests together (group commit), and
//! a few read-only connections. Opened with WAL, `synchronous=FULL` (a commit is durable
//! before it is acknowledged), `secure_delete=ON` (deleted cells are overwritten), foreign
//! keys and a busy timeout.

mod audit;
mod checkpoint;
mod consent;
mod db;
mod outbox;
mod redaction;
mod schema;
mod store;
mod users;
mod vault;

pub use checkpoint::Checkpointer;
pub use db::SqliteDb;
pub use store::SqliteStore;
pub use vault::SqliteVault;

use std::path::Path;

use crate::StoreError;
use crate::records::{AuditEntry, AuditQuery};

/// A consistent copy of a live database (`VACUUM INTO`), taken without stopping its writers.
pub fn snapshot(database: &Path, out: &Path) -> Result<(), StoreError> {
    let conn = rusqlite::Connection::open_with_flags(
        database,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    let target = out
        .to_str()
        .ok_or_else(|| StoreError::Backend("backup path is not valid UTF-8".into()))?;
    conn.execute("VACUUM INTO ?1", [target])?;
    Ok(())
}

/// The journal entries after `after_seq` of the call-log database at `database`, read-only.
pub fn read_journal(database: &Path, after_seq: i64) -> Result<Vec<AuditEntry>, StoreError> {
    let conn = rusqlite::Connection::open_with_flags(
        database,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let mut out = Vec::new();
    let mut after = after_seq;
    loop {
        let page = audit::query(
            &conn,
            &AuditQuery {
                agency_id: None,
                account_id: None,
                after_seq: Some(after),
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
    let conn = rusqlite::Connection::open_with_flags(
        database,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    Ok(
        conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM audit_log", [], |r| {
            r.get(0)
        })?,
    )
}

pub use redaction::unhex as blind_index_from_hex;
