//! Backups that do not resurrect redacted data.
//!
//! A backup is a copy of the call log's redo log, then a consistent online snapshot of the
//! call log, then the vault, then the recordings (in that order: the redo log before the
//! snapshot, so that every call acknowledged before the backup started is in one or the
//! other; then anything written in between can only be a key without a row or a file without
//! a row, never a row without its key), plus a manifest naming the journal position it was
//! taken at. It never contains the master key. The manifest is written last, atomically,
//! once everything else is synced: it marks the backup complete, and `restore` refuses a
//! folder without it.
//!
//! A restore copies a backup into an empty data folder, the redo log beside the call log, so
//! that opening it applies the acknowledged calls the snapshot lacks; then, before anything
//! can be served, it re-applies every redaction journaled after that position in the journal
//! of the live system (`--journal-from`): the calls are redacted again, their keys destroyed,
//! their files deleted, their callers put back on forget lists (`crate::replay`, which
//! `ringfence replay` shares for databases restored by PostgreSQL's own tools).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;

use ringfence_core::timestamp::Timestamp;
use ringfence_store::AuditEvent;
use ringfence_store::private;
use ringfence_store_sqlite::{
    copy_redo_log, last_journal_seq, read_journal, redo_log_path, snapshot,
};

use crate::app::{Resources, load_existing_master_key};
use crate::config::{BlobLocation, Config, DatabaseLocation};
use crate::replay::{JournalSince, reapply, removals_since};

/// Written last: a backup without it is incomplete.
const MANIFEST: &str = "manifest.json";
/// The copy of the call log's redo log.
const REDO: &str = "ringfence.db-redo";
/// Backups that carry the redo log and are marked complete by their manifest.
const FORMAT: u32 = 2;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    format: u32,
    taken_at: String,
    /// The last journal entry the backup contains.
    audit_seq: i64,
    master_key_fingerprint: String,
    recordings: u64,
    /// Records in the copy of the redo log (acknowledged calls, some perhaps committed).
    #[serde(default)]
    redo_records: u64,
}

/// The files a backup copies. A PostgreSQL call log or vault is backed up with PostgreSQL's
/// own tools, which copy it consistently while it serves (README, "Scaling out").
fn paths(config: &Config) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    let (DatabaseLocation::Sqlite(db), DatabaseLocation::Sqlite(vault)) =
        (&config.database, &config.vault)
    else {
        bail!(
            "`ringfence backup` and `restore` copy SQLite files; back up a PostgreSQL call log and vault with pg_dump or pg_basebackup (README, \"Scaling out\")"
        );
    };
    let BlobLocation::Folder(folder) = &config.blobs;
    Ok((db.clone(), vault.clone(), folder.clone()))
}

fn is_empty_dir(dir: &Path) -> anyhow::Result<bool> {
    Ok(!dir.exists() || std::fs::read_dir(dir)?.next().is_none())
}

/// Copies the folder `from` into `to`: files 0600 and synced, folders 0700 and synced.
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<u64> {
    let mut copied = 0;
    if !from.exists() {
        return Ok(0);
    }
    private::create_dir(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copied += copy_tree(&entry.path(), &target)?;
        } else {
            // A recording deleted by a redaction while we copy is simply not in the backup.
            match private::copy_file(&entry.path(), &target) {
                Ok(_) => copied += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let _ = std::fs::remove_file(&target);
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot copy {}", entry.path().display()));
                }
            }
        }
    }
    private::sync_dir(to).with_context(|| format!("cannot sync {}", to.display()))?;
    Ok(copied)
}

/// Writes the manifest atomically (a synced temporary file renamed into place, then the
/// folder synced): it exists whole or not at all.
fn write_manifest(out: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    let temporary = out.join(format!("{MANIFEST}.partial"));
    {
        use std::io::Write;
        let mut file = private::create_new_file(&temporary)?;
        file.write_all(&serde_json::to_vec_pretty(manifest)?)?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, out.join(MANIFEST))?;
    private::sync_dir(out)?;
    Ok(())
}

/// `ringfence backup --out DIR`, safe while the server runs.
pub async fn backup(resources: &Resources, out: &Path) -> anyhow::Result<serde_json::Value> {
    if !is_empty_dir(out)? {
        bail!(
            "{} is not empty: give a new folder for the backup",
            out.display()
        );
    }
    private::create_dir(out).with_context(|| format!("cannot create {}", out.display()))?;
    let (db, vault, folder) = paths(&resources.config)?;
    // Order matters: redo log, call log, then vault, then files (see the module's comment).
    let (audit_seq, redo_records) = {
        let out = out.to_owned();
        tokio::task::spawn_blocking(move || -> anyhow::Result<(i64, u64)> {
            let redo_records = copy_redo_log(&db, &out.join(REDO))?;
            snapshot(&db, &out.join("ringfence.db"))?;
            Ok((last_journal_seq(&out.join("ringfence.db"))?, redo_records))
        })
        .await??
    };
    {
        let out_vault = out.join("vault.db");
        tokio::task::spawn_blocking(move || snapshot(&vault, &out_vault)).await??;
    }
    let recordings = {
        let to = out.join("recordings");
        tokio::task::spawn_blocking(move || copy_tree(&folder, &to)).await??
    };
    let manifest = Manifest {
        format: FORMAT,
        taken_at: Timestamp::now().to_rfc3339(),
        audit_seq,
        master_key_fingerprint: resources.log.vault().master_fingerprint(),
        recordings,
        redo_records,
    };
    // Journaled before the manifest: a backup that could not be journaled is not complete.
    // Beside a serving process this write takes the next turn at the call log's write lock
    // (the store's turnstile: after at most one of the server's groups); the busy timeout
    // bounds a wait for a lock held otherwise, and the error names it.
    resources
        .log
        .store()
        .append_audit(AuditEvent {
            actor: "cli".into(),
            action: "backup.taken".into(),
            count: Some(recordings),
            details: json!({"audit_seq": audit_seq, "recordings": recordings}).to_string(),
            ..Default::default()
        })
        .await
        .context(
            "the backup could not be journaled in the live call log, so it is not marked complete",
        )?;
    write_manifest(out, &manifest)
        .with_context(|| format!("cannot write the backup's manifest in {}", out.display()))?;
    Ok(
        json!({"out": out.display().to_string(), "audit_seq": audit_seq, "recordings": recordings, "redo_records": redo_records, "taken_at": manifest.taken_at}),
    )
}

/// Redactions and removals journaled after the backup, read from a SQLite call log.
fn redactions_since(journal: &Path, after_seq: i64) -> anyhow::Result<JournalSince> {
    let entries = read_journal(journal, after_seq)
        .with_context(|| format!("cannot read the journal in {}", journal.display()))?;
    removals_since(&entries, after_seq)
}

/// `ringfence restore --from DIR --journal-from LIVE` into the (empty) `--data` folder.
pub async fn restore(
    config: &Config,
    from: &Path,
    journal_from: Option<&Path>,
    no_journal: bool,
) -> anyhow::Result<serde_json::Value> {
    let manifest: Manifest = match std::fs::read(from.join(MANIFEST)) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "the manifest in {} is not readable: not a complete ringfence backup",
                from.display()
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} has no {MANIFEST}: not a complete ringfence backup (a backup writes it last, so an interrupted or failed one has none); take a new backup",
            from.display()
        ),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read {}", from.join(MANIFEST).display()));
        }
    };
    if manifest.format != FORMAT {
        bail!(
            "the backup in {} has format {}, not {FORMAT}: backups of format 1 were not marked complete and lack the calls acknowledged in the 200 ms before them; restore it with the ringfence version that took it, or take a new backup",
            from.display(),
            manifest.format
        );
    }
    let (db, vault, folder) = paths(config)?;
    if db.exists() || vault.exists() {
        bail!(
            "{} already holds a call log: restore into an empty data folder",
            config.data.display()
        );
    }
    let master = load_existing_master_key(&config.master_key_file).with_context(|| {
        format!("backups never contain the master key: put the key of the backed-up installation at {} (or give --master-key-file)", config.master_key_file.display())
    })?;
    if master.fingerprint() != manifest.master_key_fingerprint {
        bail!(
            "the master key at {} is not the one the backup was taken with",
            config.master_key_file.display()
        );
    }
    let journal = match (journal_from, no_journal) {
        (Some(path), _) => {
            let path = if path.is_dir() {
                path.join("ringfence.db")
            } else {
                path.to_owned()
            };
            Some(redactions_since(&path, manifest.audit_seq)?)
        }
        (None, true) => None,
        (None, false) => bail!(
            "give --journal-from with the live data folder (or its ringfence.db) so that redactions made since the backup are applied again; --no-journal restores without them"
        ),
    };
    private::create_dir(&config.data)?;
    private::copy_file(&from.join("ringfence.db"), &db)?;
    // Opening the call log replays the acknowledged calls the snapshot lacks.
    private::copy_file(&from.join(REDO), &redo_log_path(&db))?;
    private::copy_file(&from.join("vault.db"), &vault)?;
    copy_tree(&from.join("recordings"), &folder)?;

    // Nothing is served before this finishes: restore is an offline command.
    let resources = Resources::open(config).await?;
    let mut reapplied = 0u64;
    let mut entries = 0usize;
    if let Some(since) = journal {
        let details =
            json!({"journal_after": manifest.audit_seq, "journal_until": since.last}).to_string();
        let done = reapply(&resources.log, since, "restore", &details).await?;
        reapplied = done.calls;
        entries = done.groups;
    }
    resources
        .log
        .store()
        .append_audit(AuditEvent {
            actor: "restore".into(),
            action: "restore.completed".into(),
            count: Some(reapplied),
            details: json!({"backup_taken_at": manifest.taken_at, "backup_audit_seq": manifest.audit_seq, "journal": !no_journal}).to_string(),
            ..Default::default()
        })
        .await?;
    resources.close().await;
    Ok(
        json!({"restored_from": from.display().to_string(), "backup_audit_seq": manifest.audit_seq, "redactions_reapplied": reapplied, "journal_groups": entries}),
    )
}
