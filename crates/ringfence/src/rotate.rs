//! `ringfence vault rotate`: re-wraps every data key under a new master key, then makes it
//! the data folder's master key and destroys the old key file.
//!
//! Every step can be interrupted (a crash, Ctrl-C) and is finished by running the command
//! again with the same key file:
//! 1. the new key is written beside the master key file as its pending key (`.next`), before
//!    the vault names it, so that every process that meets a key wrapped by it finds it;
//! 2. the vault records the rotation and from then on takes only keys wrapped by the new key
//!    (serving processes reload their key files when an insert is refused);
//! 3. rows are re-wrapped page by page, each by a compare-and-set on its old wrapped bytes,
//!    so a key destroyed meanwhile stays destroyed;
//! 4. the vault retires the old key in the transaction that counts no row still under it;
//! 5. the old master key file is linked aside (`.retired`), replaced by the new key
//!    atomically, then overwritten and removed; the pending file is removed last.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::json;
use zeroize::Zeroizing;

use ringfence_crypto::{MasterKey, random_bytes};
use ringfence_store::AuditEvent;

use crate::app::{Resources, pending_key_path, retired_key_path, same_file};

/// Rows re-wrapped per transaction.
const PAGE: u32 = 500;

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationSummary {
    pub from: Option<String>,
    pub to: String,
    /// Rows this run re-wrapped.
    pub rewrapped: u64,
    /// The command made the new key file (it did not exist).
    pub created_new_key_file: bool,
    /// The vault had already finished this rotation: only the key files were left to do.
    pub resumed_after_finish: bool,
}

impl RotationSummary {
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "from": self.from,
            "to": self.to,
            "rewrapped": self.rewrapped,
            "created_new_key_file": self.created_new_key_file,
            "old_key_file_destroyed": true,
        })
    }
}

/// Reads the new key file, or creates it (0600, never overwriting) when it does not exist.
fn read_or_create_key_file(path: &Path) -> anyhow::Result<(MasterKey, Zeroizing<Vec<u8>>, bool)> {
    match std::fs::read(path) {
        Ok(contents) => {
            let contents = Zeroizing::new(contents);
            let key = MasterKey::from_file_contents(&contents)
                .with_context(|| format!("--new-master-key-file {}", path.display()))?;
            Ok((key, contents, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (key, text) = MasterKey::generate();
            let mut file = ringfence_store::private::create_new_file(path)
                .with_context(|| format!("cannot create the new key file {}", path.display()))?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            sync_parent(path)?;
            Ok((key, Zeroizing::new(text.as_bytes().to_vec()), true))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn sync_parent(path: &Path) -> anyhow::Result<()> {
    let dir = parent(path);
    ringfence_store::private::sync_dir(&dir)
        .with_context(|| format!("cannot sync the folder {}", dir.display()))
}

/// Writes `contents` to `path` atomically: a 0600 temporary file, fsync, rename, fsync of
/// the folder.
fn write_atomically(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    let tmp = PathBuf::from(name);
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", tmp.display())),
    }
    let mut file = ringfence_store::private::create_new_file(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    sync_parent(path)
}

/// Overwrites the file in place with random bytes, syncs, removes it and syncs the folder.
/// What this can promise depends on the file system and the disk (see ARCHITECTURE.md).
fn destroy_file(path: &Path) -> anyhow::Result<()> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len() as usize;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {} to overwrite it", path.display()))?;
    let mut left = len;
    while left > 0 {
        let chunk: [u8; 64] = random_bytes();
        let n = left.min(chunk.len());
        file.write_all(&chunk[..n])?;
        left -= n;
    }
    file.sync_all()?;
    drop(file);
    std::fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))?;
    sync_parent(path)
}

/// Makes the new key the master key file and destroys the old one; each step is skipped
/// when a previous, interrupted run did it.
fn install_new_key(master: &Path, new: &MasterKey, contents: &[u8]) -> anyhow::Result<()> {
    let retired = retired_key_path(master);
    let current = std::fs::read(master)
        .map(Zeroizing::new)
        .with_context(|| format!("cannot read the master key file {}", master.display()))?;
    let installed =
        MasterKey::from_file_contents(&current).is_ok_and(|k| k.fingerprint() == new.fingerprint());
    if !installed {
        // The old key keeps a name until it is overwritten, whatever happens in between.
        if !retired.exists() {
            std::fs::hard_link(master, &retired).with_context(|| {
                format!("cannot link {} to {}", master.display(), retired.display())
            })?;
            sync_parent(master)?;
        }
        write_atomically(master, contents)?;
    }
    if retired.exists() {
        destroy_file(&retired)?;
    }
    let pending = pending_key_path(master);
    match std::fs::remove_file(&pending) {
        Ok(()) => sync_parent(&pending)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", pending.display())),
    }
    Ok(())
}

/// Makes the pending key file hold `new` (it may hold it already, from an interrupted run).
fn write_pending_key(master: &Path, new: &MasterKey, contents: &[u8]) -> anyhow::Result<()> {
    let pending = pending_key_path(master);
    match std::fs::read(&pending) {
        Ok(existing) => {
            let existing = Zeroizing::new(existing);
            match MasterKey::from_file_contents(&existing) {
                Ok(k) if k.fingerprint() == new.fingerprint() => return Ok(()),
                Ok(k) => bail!(
                    "{} holds another pending master key ({}): finish that rotation first, with `ringfence vault rotate --new-master-key-file {}`",
                    pending.display(),
                    k.fingerprint(),
                    pending.display()
                ),
                // Left half-written by nothing this command does (it writes atomically).
                Err(_) => bail!("{} is not a master key file", pending.display()),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", pending.display())),
    }
    write_atomically(&pending, contents)
}

async fn journal(
    resources: &Resources,
    action: &str,
    details: serde_json::Value,
    count: Option<u64>,
) -> anyhow::Result<()> {
    resources
        .log
        .store()
        .append_audit(AuditEvent {
            actor: "cli".into(),
            action: action.into(),
            agency_id: None,
            account_id: None,
            subject: None,
            count,
            reason: None,
            details: details.to_string(),
        })
        .await?;
    Ok(())
}

/// Runs (or finishes) the rotation to the key in `new_key_file`; `progress` is told how many
/// rows are left at the start, then each page's rows.
pub async fn rotate(
    resources: &Resources,
    new_key_file: &Path,
    progress: &mut dyn FnMut(Progress),
) -> anyhow::Result<RotationSummary> {
    let master_file = &resources.config.master_key_file;
    for (name, taken) in [
        ("the master key file", master_file.clone()),
        ("the pending key file", pending_key_path(master_file)),
        ("the retired key file", retired_key_path(master_file)),
    ] {
        if same_file(new_key_file, &taken) {
            bail!(
                "--new-master-key-file must not be {name} ({}): give a path of its own",
                taken.display()
            );
        }
    }
    let (new, contents, created) = read_or_create_key_file(new_key_file)?;
    let vault = resources.log.vault();
    let status = vault.master_key_status().await?;
    let files_left = || {
        let installed = std::fs::read(master_file)
            .ok()
            .map(Zeroizing::new)
            .and_then(|c| MasterKey::from_file_contents(&c).ok())
            .is_some_and(|k| k.fingerprint() == new.fingerprint());
        !installed
            || pending_key_path(master_file).exists()
            || retired_key_path(master_file).exists()
    };
    if status.active() == Some(new.fingerprint().as_str())
        && status
            .last_rotation
            .as_ref()
            .is_some_and(|r| r.to == new.fingerprint())
        && files_left()
    {
        // The vault finished this rotation; a crash came before the files were swapped (and
        // perhaps before it was journaled: this entry says a second run completed it).
        let from = status.last_rotation.map(|r| r.from);
        journal(
            resources,
            "master_key.rotation_files_completed",
            json!({"from": from, "to": new.fingerprint()}),
            None,
        )
        .await?;
        install_new_key(master_file, &new, &contents)?;
        return Ok(RotationSummary {
            from,
            to: new.fingerprint(),
            rewrapped: 0,
            created_new_key_file: created,
            resumed_after_finish: true,
        });
    }
    let from = status
        .active()
        .context("the vault has no active master key")?
        .to_owned();
    if from == new.fingerprint() {
        bail!(
            "the key in {} is the current master key: give a new key file (a path that does not exist yet makes one)",
            new_key_file.display()
        );
    }
    if status.keys.iter().any(|k| {
        k.fingerprint == new.fingerprint() && k.state == ringfence_crypto::MasterKeyState::Retired
    }) {
        bail!(
            "the key in {} was this vault's master key before and was retired: make a new one (a path that does not exist yet)",
            new_key_file.display()
        );
    }
    if let Some(next) = status.next()
        && next != new.fingerprint()
    {
        bail!(
            "a rotation to the master key {next} is under way: finish it with `ringfence vault rotate --new-master-key-file {}`",
            pending_key_path(master_file).display()
        );
    }
    let resumed = status.next().is_some();
    write_pending_key(master_file, &new, &contents)?;
    let left = vault.begin_rotation(&new).await?;
    journal(
        resources,
        if resumed {
            "master_key.rotation_resumed"
        } else {
            "master_key.rotation_started"
        },
        json!({"from": from, "to": new.fingerprint()}),
        Some(left),
    )
    .await?;
    progress(Progress::Total(left));
    let mut rewrapped = 0u64;
    loop {
        let mut after = None;
        loop {
            let page = vault.rotate_page(&new, after, PAGE).await?;
            rewrapped += page.rewrapped;
            progress(Progress::Done(page.seen));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        // Rows a process inserted just before the rotation began, under the old key, may
        // have committed behind the pass: another pass takes them.
        let left = vault.finish_rotation(&from, &new, rewrapped).await?;
        if left == 0 {
            break;
        }
        progress(Progress::Total(left));
    }
    journal(
        resources,
        "master_key.rotated",
        json!({"from": from, "to": new.fingerprint()}),
        Some(rewrapped),
    )
    .await?;
    install_new_key(master_file, &new, &contents)?;
    tracing::info!(from = %from, to = %new.fingerprint(), rewrapped, "master key rotated; the old key file is destroyed");
    Ok(RotationSummary {
        from: Some(from),
        to: new.fingerprint(),
        rewrapped,
        created_new_key_file: created,
        resumed_after_finish: false,
    })
}

/// What [`rotate`] reports as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Rows still to re-wrap (at the start, and when another pass is needed).
    Total(u64),
    /// Rows handled by a page.
    Done(u64),
}
