//! Experiments: SQLite settings Ringfence does not ship, applied to the server's writer
//! connections (through `SqliteDb::maintenance`) and to the baselines' alike, to measure what
//! a change to the store would buy before anyone makes it. Off unless asked for; a run with
//! any of them says so in its output.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct WhatIf {
    /// EXPERIMENT: page cache of every writer connection, in MiB (SQLite's default is 2).
    #[arg(long, value_name = "MIB")]
    pub what_if_cache_mib: Option<u32>,
    /// EXPERIMENT: no checkpoint inside a commit (`wal_autocheckpoint=0`); instead a
    /// connection of its own checkpoints the WAL every 100 ms (PASSIVE, synchronous=FULL).
    #[arg(long)]
    pub what_if_background_checkpoint: bool,
}

impl WhatIf {
    pub fn is_active(&self) -> bool {
        self.what_if_cache_mib.is_some() || self.what_if_background_checkpoint
    }

    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(mib) = self.what_if_cache_mib {
            parts.push(format!("writer cache_size {mib} MiB"));
        }
        if self.what_if_background_checkpoint {
            parts.push("checkpoints in a background connection, not in commits".to_owned());
        }
        parts.join(", ")
    }

    /// Applies the settings to a writer connection.
    pub fn apply(&self, conn: &Connection) -> rusqlite::Result<()> {
        if let Some(mib) = self.what_if_cache_mib {
            conn.pragma_update(None, "cache_size", -(i64::from(mib) * 1024))?;
        }
        if self.what_if_background_checkpoint {
            conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        }
        Ok(())
    }

    /// The background checkpointer of the database at `path`, if asked for.
    pub fn checkpointer(&self, path: &Path) -> rusqlite::Result<Option<Checkpointer>> {
        if !self.what_if_background_checkpoint {
            return Ok(None);
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bench-checkpoint".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            })
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Some(Checkpointer {
            stop,
            thread: Some(thread),
        }))
    }
}

/// A thread checkpointing one database until dropped.
pub struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
