//! Re-applying what a live journal recorded after a restored one ends.
//!
//! A call log restored from a backup lacks every redaction, removal and forget made since the
//! backup was taken, but the live installation's journal names them (call ids, session ids,
//! blind indexes: never personal data). `ringfence restore` (SQLite backups) and
//! `ringfence replay` (a database restored by PostgreSQL's own tools, `pg_restore` or
//! `pg_basebackup`) both read them here and apply them again, through the same `CallLog`
//! redaction as the original (keys destroyed first), before anything is served.
//!
//! `replay` must never trust a journal it cannot verify, nor apply one that does not continue
//! the restored database's own: it walks the source's whole hash chain and finds where the
//! two journals part. Its last entry, `replay.completed`, names the source entry it replayed
//! up to and that entry's hash, so running it again applies only what the source journaled
//! since (nothing, if nothing was): a replay is idempotent, and one interrupted before that
//! entry is simply run again (each re-application is idempotent itself).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::json;

use ringfence_core::call::RedactionReason;
use ringfence_core::{AccountId, CallId, DataCategory, SessionId};
use ringfence_store::effects::RedactionDetails;
use ringfence_store::journal::ChainWalk;
use ringfence_store::{AuditEntry, AuditEvent, AuditQuery, CallLog, Store};
use ringfence_store_postgres::{DatabaseUrl, PgStore, Schema};

use crate::app::Resources;
use crate::config::DatabaseLocation;

/// The action of the entry that ends a replay.
pub const REPLAY_COMPLETED: &str = "replay.completed";
/// The actor of every entry a replay writes.
const ACTOR: &str = "replay";

/// A removal of some categories: reason, categories, calls, sessions.
type PartialRemoval = (
    RedactionReason,
    Vec<DataCategory>,
    Vec<CallId>,
    Vec<SessionId>,
);

/// What was removed after some journal entry, as the journal tells it (ids and blind indexes
/// only).
#[derive(Debug, Default)]
pub struct JournalSince {
    /// Whole redactions: call ids grouped by reason.
    whole: Vec<(RedactionReason, Vec<CallId>)>,
    /// Removals of some categories (retention by category, consent withdrawn), in order.
    partial: Vec<PartialRemoval>,
    forget: Vec<(AccountId, [u8; 16])>,
    /// Consent subjects whose records went with a caller's redaction.
    subjects: Vec<(AccountId, [u8; 16])>,
    /// The last entry read.
    pub last: i64,
}

impl JournalSince {
    fn add_whole(&mut self, reason: RedactionReason, ids: Vec<CallId>) {
        match self.whole.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, list)) => list.extend(ids),
            None => self.whole.push((reason, ids)),
        }
    }
}

/// The redactions and removals among `entries` (those after `after_seq`, in order). An entry
/// with a redaction reason that does not read as a redaction stops it: a removal it cannot
/// read is never skipped.
pub fn removals_since(entries: &[AuditEntry], after_seq: i64) -> anyhow::Result<JournalSince> {
    let mut since = JournalSince {
        last: after_seq,
        ..Default::default()
    };
    for entry in entries.iter().filter(|e| e.seq > after_seq) {
        since.last = entry.seq;
        let Some(reason) = entry
            .event
            .reason
            .as_deref()
            .and_then(RedactionReason::parse)
        else {
            continue;
        };
        let ids = entry
            .event
            .subject
            .as_deref()
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<CallId>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| {
                anyhow::anyhow!(
                    "journal entry {} ({}) names a call id that is not one: it cannot be re-applied",
                    entry.seq,
                    entry.event.action
                )
            })?;
        // A call stored redacted on arrival names its ids; nothing else to re-apply.
        if entry.event.action == "call.redacted_on_arrival" {
            if !ids.is_empty() {
                since.add_whole(reason, ids);
            }
            continue;
        }
        // Every other entry with a redaction reason was written by a redaction: its details
        // must read as one.
        let details = RedactionDetails::parse(&entry.event.details).with_context(|| {
            format!(
                "journal entry {} ({}) cannot be re-applied",
                entry.seq, entry.event.action
            )
        })?;
        match details {
            RedactionDetails::Categories {
                categories,
                session_ids,
                ..
            } => since.partial.push((reason, categories, ids, session_ids)),
            RedactionDetails::Whole {
                forget, subjects, ..
            } => {
                if !ids.is_empty() {
                    since.add_whole(reason, ids);
                }
                since.forget.extend(forget);
                since.subjects.extend(subjects);
            }
        }
    }
    Ok(since)
}

/// What a re-application did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Reapplied {
    /// Calls redacted again (those already redacted are not counted).
    pub calls: u64,
    /// Groups of ids re-applied (one per reason, one per removal of categories).
    pub groups: usize,
}

/// Applies `since` to `log`, journaling each step as `<actor>.removal_reapplied`,
/// `<actor>.redaction_reapplied` and `<actor>.forget_list_reapplied` with `details`. Each
/// step is idempotent: calls already redacted stay as they are, keys already destroyed stay
/// destroyed, forget-list entries already there stay single.
pub async fn reapply(
    log: &CallLog,
    since: JournalSince,
    actor: &str,
    details: &str,
) -> anyhow::Result<Reapplied> {
    let mut done = Reapplied::default();
    // Removals of categories first, in journal order; then whole redactions, which
    // supersede them.
    for (reason, categories, ids, sessions) in since.partial {
        done.groups += 1;
        log.remove_categories_by_ids(
            ids,
            sessions,
            categories,
            reason,
            AuditEvent {
                actor: actor.into(),
                action: format!("{actor}.removal_reapplied"),
                reason: Some(reason.as_str().into()),
                details: details.into(),
                ..Default::default()
            },
        )
        .await?;
    }
    let mut forget = Some(since.forget);
    let mut subjects = Some(since.subjects);
    for (reason, ids) in since.whole {
        done.groups += 1;
        let receipt = log
            .redact_by_ids(
                ids,
                forget.take().unwrap_or_default(),
                subjects.take().unwrap_or_default(),
                reason,
                AuditEvent {
                    actor: actor.into(),
                    action: format!("{actor}.redaction_reapplied"),
                    reason: Some(reason.as_str().into()),
                    details: details.into(),
                    ..Default::default()
                },
            )
            .await?;
        done.calls += receipt.redacted_calls;
    }
    let forget = forget.unwrap_or_default();
    let subjects = subjects.unwrap_or_default();
    if !forget.is_empty() || !subjects.is_empty() {
        log.redact_by_ids(
            Vec::new(),
            forget,
            subjects,
            RedactionReason::ForgetList,
            AuditEvent {
                actor: actor.into(),
                action: format!("{actor}.forget_list_reapplied"),
                reason: Some(RedactionReason::ForgetList.as_str().into()),
                details: "{}".into(),
                ..Default::default()
            },
        )
        .await?;
    }
    Ok(done)
}

/// The call log whose journal a replay reads: a PostgreSQL database or a SQLite file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalSource {
    Postgres(DatabaseUrl),
    Sqlite(PathBuf),
}

impl JournalSource {
    /// `postgres://…` (or `postgresql://…`), `sqlite://PATH`, or a path: a data folder (its
    /// `ringfence.db`) or a call-log file.
    pub fn parse(text: &str) -> anyhow::Result<JournalSource> {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            let url: DatabaseUrl = text
                .parse()
                .map_err(|e| anyhow::anyhow!("--journal-from: {e}"))?;
            return Ok(JournalSource::Postgres(url));
        }
        let path = Path::new(
            text.strip_prefix("sqlite://")
                .or_else(|| text.strip_prefix("sqlite:"))
                .unwrap_or(text),
        );
        let file = if path.is_dir() {
            path.join("ringfence.db")
        } else {
            path.to_owned()
        };
        if !file.is_file() {
            bail!(
                "--journal-from: no call log at {} (give the live call log: a postgres:// URL, a data folder or its ringfence.db)",
                file.display()
            );
        }
        Ok(JournalSource::Sqlite(file))
    }

    /// How the source is named in messages (a URL without its credentials).
    pub fn describe(&self) -> String {
        match self {
            JournalSource::Postgres(url) => url.to_string(),
            JournalSource::Sqlite(path) => path.display().to_string(),
        }
    }

    /// The whole journal, oldest first. Reads only: a SQLite file is opened read-only, and a
    /// PostgreSQL database that holds no call log is refused before anything is written to it.
    pub async fn read(&self) -> anyhow::Result<Vec<AuditEntry>> {
        match self {
            JournalSource::Sqlite(path) => {
                let path = path.clone();
                let entries = tokio::task::spawn_blocking(move || {
                    ringfence_store_sqlite::read_journal(&path, 0)
                })
                .await??;
                Ok(entries)
            }
            JournalSource::Postgres(url) => {
                anyhow::ensure!(
                    ringfence_store_postgres::is_initialised(url, Schema::CallLog).await?,
                    "--journal-from {url} holds no Ringfence call log"
                );
                let store = PgStore::open(url, 2)
                    .await
                    .with_context(|| format!("cannot open the call log {url}"))?;
                let entries = read_whole_journal(&store).await;
                store.close().await;
                entries
            }
        }
    }
}

/// Every journal entry of `store`, oldest first.
async fn read_whole_journal(store: &dyn Store) -> anyhow::Result<Vec<AuditEntry>> {
    let mut entries: Vec<AuditEntry> = Vec::new();
    loop {
        let page = store
            .audit(AuditQuery {
                agency_id: None,
                account_id: None,
                after_seq: Some(entries.last().map_or(0, |e| e.seq)),
                before_seq: None,
                limit: 1000,
            })
            .await?;
        if page.is_empty() {
            return Ok(entries);
        }
        entries.extend(page);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the replay starts in the source's journal: after the last entry the two journals
/// share, or after the source entry a completed replay named (whose hash must still be the
/// source's: the same installation, not another one).
fn replay_start(restored: &[AuditEntry], source: &[AuditEntry]) -> anyhow::Result<i64> {
    let common = restored
        .iter()
        .zip(source)
        .take_while(|(r, s)| r.seq == s.seq && r.hash == s.hash)
        .count();
    if common == 0 && !restored.is_empty() && !source.is_empty() {
        bail!(
            "the source's journal and the restored database's differ from their first entry: they are not the same installation's"
        );
    }
    let marker = restored[common..]
        .iter()
        .rev()
        .find(|e| e.event.actor == ACTOR && e.event.action == REPLAY_COMPLETED);
    if let Some(marker) = marker {
        let details: serde_json::Value = serde_json::from_str(&marker.event.details)
            .with_context(|| format!("journal entry {} ({REPLAY_COMPLETED})", marker.seq))?;
        let (Some(until), Some(hash)) = (
            details["source_until"].as_i64(),
            details["source_head"].as_str(),
        ) else {
            bail!(
                "journal entry {} ({REPLAY_COMPLETED}) does not name the source entry it replayed to",
                marker.seq
            );
        };
        let continues = until == 0
            || source
                .get(usize::try_from(until - 1).unwrap_or(usize::MAX))
                .is_some_and(|e| e.seq == until && hex(&e.hash) == hash);
        if !continues {
            bail!(
                "an earlier replay (journal entry {}) read the source up to its entry {until}, which this source does not hold as it was: give the same live call log",
                marker.seq
            );
        }
        return Ok(until);
    }
    if common == source.len() && restored.len() > common {
        bail!(
            "the source's journal ends at entry {}, before the restored database's (entry {}): give the live call log, whose journal runs past the restored one",
            source.last().map_or(0, |e| e.seq),
            restored.last().map_or(0, |e| e.seq)
        );
    }
    Ok(restored.get(common.wrapping_sub(1)).map_or(0, |e| e.seq))
}

/// `ringfence replay --journal-from SOURCE` on the (restored) call log of `resources`.
pub async fn replay(resources: &Resources, source_text: &str) -> anyhow::Result<serde_json::Value> {
    let source = JournalSource::parse(source_text)?;
    let same = match (&source, &resources.config.database) {
        (JournalSource::Postgres(a), DatabaseLocation::Postgres(b)) => a == b,
        (JournalSource::Sqlite(a), DatabaseLocation::Sqlite(b)) => crate::app::same_file(a, b),
        _ => false,
    };
    if same {
        bail!(
            "--journal-from names the database being replayed onto ({}): give the live call log",
            source.describe()
        );
    }
    let entries = source.read().await?;
    if entries.is_empty() {
        bail!(
            "the journal of {} is empty: not a live call log (give the one `serve` uses)",
            source.describe()
        );
    }
    let mut walk = ChainWalk::default();
    for entry in &entries {
        walk.step(entry, None).map_err(|broken| {
            anyhow::anyhow!(
                "the journal of {} is broken ({broken}): a replay applies only a journal whose chain holds (`ringfence audit verify` there says more)",
                source.describe()
            )
        })?;
    }
    let head = walk
        .finish(None)
        .map_err(|broken| anyhow::anyhow!("the journal of {}: {broken}", source.describe()))?;
    let store = resources.log.store();
    let restored = read_whole_journal(store.as_ref()).await?;
    let start = replay_start(&restored, &entries)?;
    let restored_last = restored.last().map_or(0, |e| e.seq);
    // The vault's anchor only moves forward: one past the restored journal stays there, and
    // `audit verify` will say so (ARCHITECTURE.md, `replay`: the known gap).
    let anchor = resources.log.vault().journal_anchor().await?;
    let anchor_ahead = anchor.is_some_and(|(seq, hash)| {
        usize::try_from(seq - 1)
            .ok()
            .and_then(|i| restored.get(i))
            .is_none_or(|e| e.hash != hash)
    });
    let warning = anchor_ahead.then(|| {
        let message = "the vault's journal anchor is past the restored call log's journal (a vault newer than the call log's dump): `audit verify` will report the journal truncated or rewritten; restore the vault's dump taken with the call log's";
        tracing::warn!("{message}");
        message
    });
    if head.last_seq <= start {
        return Ok(json!({
            "journal_from": source.describe(),
            "source_last_seq": head.last_seq,
            "replayed_after": start,
            "up_to_date": true,
            "redactions_reapplied": 0,
            "journal_groups": 0,
            "restored_last_seq": restored_last,
            "warning": warning,
        }));
    }
    let since = removals_since(&entries, start)?;
    let details = json!({"journal_after": start, "journal_until": head.last_seq}).to_string();
    let done = reapply(&resources.log, since, ACTOR, &details).await?;
    let completed = store
        .append_audit(AuditEvent {
            actor: ACTOR.into(),
            action: REPLAY_COMPLETED.into(),
            count: Some(done.calls),
            details: json!({
                "source_from": start,
                "source_until": head.last_seq,
                "source_head": hex(&head.head),
                "groups": done.groups,
            })
            .to_string(),
            ..Default::default()
        })
        .await?;
    Ok(json!({
        "journal_from": source.describe(),
        "source_last_seq": head.last_seq,
        "replayed_after": start,
        "up_to_date": false,
        "redactions_reapplied": done.calls,
        "journal_groups": done.groups,
        "restored_last_seq": restored_last,
        "audit_seq": completed,
        "warning": warning,
    }))
}
