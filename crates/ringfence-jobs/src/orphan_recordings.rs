//! Deletes recording files no call points at.
//!
//! An upload or a provider download writes the sealed file before the call's row points at
//! it; a crash in between leaves a file nothing refers to. It is sealed, but its call's key
//! is alive, so it is personal data kept without purpose: it is deleted once it is older than
//! a grace period much longer than any upload takes.

use std::time::Duration;

use ringfence_core::timestamp::Timestamp;
use ringfence_store::{CallLog, LogError};

/// Files younger than this are never collected: their row may still be on its way.
pub const GRACE: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OrphanRecordingReport {
    pub examined: u64,
    pub deleted: u64,
}

/// One pass over every account's recordings folder.
pub async fn collect_orphan_recordings(
    log: &CallLog,
    grace: Duration,
    now: Timestamp,
) -> Result<OrphanRecordingReport, LogError> {
    let cutoff = now.millis() - grace.as_millis() as i64;
    let mut report = OrphanRecordingReport::default();
    for account in log.store().list_accounts(None).await? {
        let old: Vec<String> = log
            .blobs()
            .list(&format!("recordings/{}", account.id))
            .await?
            .into_iter()
            .filter(|(_, written)| *written < cutoff)
            .map(|(path, _)| path)
            .collect();
        for chunk in old.chunks(500) {
            report.examined += chunk.len() as u64;
            let referenced = log.store().referenced_recordings(chunk.to_vec()).await?;
            for path in chunk.iter().filter(|p| !referenced.contains(p)) {
                log.blobs().delete(path).await?;
                report.deleted += 1;
            }
        }
    }
    if report.deleted > 0 {
        tracing::info!(
            examined = report.examined,
            deleted = report.deleted,
            "deleted recording files no call points at"
        );
    }
    Ok(report)
}
