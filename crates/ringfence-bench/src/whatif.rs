//! Experiments: SQLite settings Ringfence does not ship, applied to the server's writer
//! connections (through `SqliteDb::maintenance`) and to the baselines' alike, to measure what
//! a change to the store would buy before anyone makes it. Off unless asked for; a run with
//! any of them says so in its output.

use rusqlite::Connection;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct WhatIf {
    /// EXPERIMENT: page cache of every writer connection, in MiB (SQLite's default is 2).
    #[arg(long, value_name = "MIB")]
    pub what_if_cache_mib: Option<u32>,
}

impl WhatIf {
    pub fn is_active(&self) -> bool {
        self.what_if_cache_mib.is_some()
    }

    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(mib) = self.what_if_cache_mib {
            parts.push(format!("writer cache_size {mib} MiB"));
        }
        parts.join(", ")
    }

    /// Applies the settings to a writer connection.
    pub fn apply(&self, conn: &Connection) -> rusqlite::Result<()> {
        if let Some(mib) = self.what_if_cache_mib {
            conn.pragma_update(None, "cache_size", -(i64::from(mib) * 1024))?;
        }
        Ok(())
    }
}
