//! The redo log: what makes a logged write durable before its transaction commits.
//!
//! Group commit alone still writes every B-tree page a group touches, once per group: 64
//! single calls dirty about nine scattered index pages each, so each call cost about 36 kB of
//! WAL and as much again at checkpoint, and the writer's CPU went with it. A logged write
//! (ingest) instead runs in a transaction the writer keeps open across groups; its record
//! (what its job was given: sealed blobs, ids and blind indexes, as the database stores them)
//! is appended here and `fdatasync`ed, and then the write is acknowledged. The open
//! transaction commits when it is old or large enough, before any other write or any read
//! (`SqliteDb` holds the fences), and when the database closes; each commit also records the
//! last record's sequence number in `redo_applied`, in the same transaction, and then empties
//! this file.
//!
//! After a crash, [`RedoLog::replay`] runs the records whose sequence is above `redo_applied`
//! again, in order, on the committed state they first ran on (between two commits only
//! logged writes run), in one transaction; a torn record at the end (never acknowledged: the
//! acknowledgement follows the sync) ends the log. One process at a time holds the log (an
//! exclusive file lock), so no other empties it under the writer.
//!
//! Format: records of `magic "RFR1" | seq u64 | length u32 | crc32 u32 | payload`, integers
//! little-endian, the CRC over seq, length and payload. A payload is one or more
//! `length u32 | record` entries, one per write of the group, replayed in order.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension};

use super::db::Replay;
use super::turnstile::Turnstile;
use crate::db_error;
use ringfence_store::StoreError;

const MAGIC: &[u8; 4] = b"RFR1";
const HEADER: usize = 4 + 8 + 4 + 4;

/// The table that holds the sequence number of the last record committed to the database.
pub(super) const APPLIED_TABLE: &str = "CREATE TABLE IF NOT EXISTS redo_applied (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL)";

/// The redo log of the database at `db`: the file next to it, `<name>-redo`.
pub(super) fn path_for(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_owned();
    name.push("-redo");
    db.with_file_name(name)
}

pub(super) struct RedoLog {
    /// Open and exclusively locked for as long as this process holds the log.
    file: File,
    replay: Replay,
    /// The sequence number the next record gets.
    next_seq: u64,
    /// Bytes appended since the log was last emptied.
    bytes: u64,
}

fn io(what: &str, e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("redo log: cannot {what}: {e}"))
}

/// The sequence number of the last record committed to the database (0 if none).
pub(super) fn applied_seq(conn: &Connection) -> Result<u64, StoreError> {
    let seq: Option<i64> = conn
        .prepare_cached("SELECT seq FROM redo_applied WHERE id = 1")
        .map_err(db_error)?
        .query_row([], |r| r.get(0))
        .optional()
        .map_err(db_error)?;
    Ok(seq.unwrap_or(0).max(0) as u64)
}

/// Records, inside the transaction about to commit, that the log is applied up to `seq`.
pub(super) fn mark_applied(conn: &Connection, seq: u64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO redo_applied (id, seq) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq",
    ).map_err(db_error)?
    .execute([seq as i64]).map_err(db_error)?;
    Ok(())
}

/// The records in `bytes` in order, up to the first that is torn or does not follow the one
/// before it. Sequence numbers go up by one from record to record, also across the log's
/// emptying (the first record after it follows the last one committed), so a gap can only
/// come from a copy read while the log was emptied and written again (see
/// [`copy_for_backup`]); what follows it is not taken.
fn records(bytes: &[u8]) -> Vec<(u64, &[u8])> {
    let mut out: Vec<(u64, &[u8])> = Vec::new();
    let mut at = 0usize;
    while bytes.len() - at >= HEADER {
        let head = &bytes[at..at + HEADER];
        if &head[..4] != MAGIC {
            break;
        }
        let seq = u64::from_le_bytes(head[4..12].try_into().unwrap_or_default());
        let len = u32::from_le_bytes(head[12..16].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(head[16..20].try_into().unwrap_or_default());
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        let mut h = crc32fast::Hasher::new();
        h.update(&head[4..16]);
        h.update(payload);
        if h.finalize() != crc || out.last().is_some_and(|(last, _)| seq != *last + 1) {
            break;
        }
        out.push((seq, payload));
        at += HEADER + len;
    }
    out
}

/// Copies the redo log of the database at `db`, as far as it is whole, into a new file at
/// `out` (0600, synced), without taking the log: the process serving the database may hold
/// it and go on appending and emptying it meanwhile. Returns the number of records copied.
///
/// A backup takes this copy *before* its snapshot of the database. Every record acknowledged
/// before the copy started is then either in the copy or committed before the snapshot (a
/// record leaves the log only once a commit holds it), and the snapshot's `redo_applied`
/// tells which of the copied records it lacks: replaying the copy on the restored snapshot
/// (the ordinary replay on open) applies exactly those, in order, on the committed state they
/// first ran on. A record being appended while the copy is read is torn and ends the copy;
/// it was not acknowledged yet.
pub(super) fn copy_for_backup(db: &Path, out: &Path) -> Result<u64, StoreError> {
    let bytes = match std::fs::read(path_for(db)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io("read it", e)),
    };
    let whole = records(&bytes);
    let len: usize = whole
        .iter()
        .map(|(_, payload)| HEADER + payload.len())
        .sum();
    let mut file = ringfence_store::private::create_new_file(out).map_err(|e| io("copy it", e))?;
    file.write_all(&bytes[..len])
        .and_then(|()| file.sync_all())
        .map_err(|e| io("copy it", e))?;
    Ok(whole.len() as u64)
}

/// Splits a payload into the records of its writes.
fn entries(payload: &[u8]) -> Result<Vec<&[u8]>, StoreError> {
    let malformed = || StoreError::Backend("redo log: malformed record".into());
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < payload.len() {
        let len = payload
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or_else(malformed)? as usize;
        out.push(payload.get(at + 4..at + 4 + len).ok_or_else(malformed)?);
        at += 4 + len;
    }
    Ok(out)
}

impl RedoLog {
    /// Takes the log at `path` for this process and replays it into `conn` (see
    /// [`replay`](Self::replay)). `None` if another process holds it: that one replayed it
    /// when it took it, and its writes commit before this process can write.
    pub(super) fn open(
        path: &Path,
        conn: &Connection,
        replay: Replay,
        turnstile: &Turnstile,
    ) -> Result<Option<Self>, StoreError> {
        let mut options = OpenOptions::new();
        options.create(true).read(true).write(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(path).map_err(|e| io("open it", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(io("lock it", e)),
        }
        let mut log = Self {
            file,
            replay,
            next_seq: 1,
            bytes: 0,
        };
        log.replay(conn, turnstile)?;
        Ok(Some(log))
    }

    /// Runs again, in one transaction, the records the database does not hold yet, then
    /// empties the log. Returns the last sequence number the database holds.
    pub(super) fn replay(
        &mut self,
        conn: &Connection,
        turnstile: &Turnstile,
    ) -> Result<u64, StoreError> {
        let mut bytes = Vec::new();
        self.file
            .seek(SeekFrom::Start(0))
            .and_then(|_| self.file.read_to_end(&mut bytes))
            .map_err(|e| io("read it", e))?;
        if records(&bytes).is_empty() {
            // Nothing to apply, so no write lock to take: opening beside another writer
            // does not wait for it.
            let applied = applied_seq(conn)?;
            self.bytes = bytes.len() as u64;
            self.next_seq = applied + 1;
            self.clear()?;
            return Ok(applied);
        }
        turnstile.begin_immediate(conn)?;
        let result = (|| {
            let applied = applied_seq(conn)?;
            let mut last = applied;
            for (seq, payload) in records(&bytes) {
                if seq <= applied {
                    continue;
                }
                for entry in entries(payload)? {
                    (self.replay)(conn, entry).map_err(|e| {
                        StoreError::Backend(format!(
                            "redo log: record {seq} does not replay ({e}); was the database changed outside ringfence?"
                        ))
                    })?;
                }
                last = seq;
            }
            if last > applied {
                mark_applied(conn, last)?;
            }
            Ok(last)
        })();
        let last = match result {
            Ok(last) => {
                conn.execute_batch("COMMIT").map_err(db_error)?;
                last
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        };
        // Committed (and, with synchronous=FULL, durable): the records are redundant now.
        self.bytes = bytes.len() as u64;
        self.next_seq = last + 1;
        self.clear()?;
        Ok(last)
    }

    /// Appends one record holding `changesets` and syncs it; returns its sequence number.
    pub(super) fn append(&mut self, changesets: &[Vec<u8>]) -> Result<u64, StoreError> {
        let len: usize = changesets.iter().map(|c| 4 + c.len()).sum();
        let len32 = u32::try_from(len)
            .map_err(|_| StoreError::Backend("redo log: record over 4 GiB".into()))?;
        let seq = self.next_seq;
        let mut record = Vec::with_capacity(HEADER + len);
        record.extend_from_slice(MAGIC);
        record.extend_from_slice(&seq.to_le_bytes());
        record.extend_from_slice(&len32.to_le_bytes());
        record.extend_from_slice(&[0; 4]);
        for c in changesets {
            record.extend_from_slice(&(c.len() as u32).to_le_bytes());
            record.extend_from_slice(c);
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&record[4..16]);
        h.update(&record[HEADER..]);
        record[16..20].copy_from_slice(&h.finalize().to_le_bytes());
        self.file
            .write_all(&record)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| {
                // Whatever part reached the file is a torn record; cut it off so the next
                // append does not land after it.
                let _ = self.file.set_len(self.bytes);
                let _ = self.file.seek(SeekFrom::Start(self.bytes));
                io("append", e)
            })?;
        self.next_seq += 1;
        self.bytes += record.len() as u64;
        Ok(seq)
    }

    /// The sequence number of the last record appended (0 if none ever was).
    pub(super) fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Bytes appended since the log was last emptied.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Empties the log once the database holds every record (after a commit).
    pub(super) fn clear(&mut self) -> Result<(), StoreError> {
        if self.bytes == 0 {
            return Ok(());
        }
        self.file.set_len(0).map_err(|e| io("empty it", e))?;
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(|e| io("seek", e))?;
        self.bytes = 0;
        Ok(())
    }
}
