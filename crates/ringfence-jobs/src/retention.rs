//! Automatic redaction: every account's policy applied to its calls, in bounded batches,
//! with the crash-safe order of a redaction.
//!
//! Due calls are read from the partial index of live calls (not a table scan). Each batch is
//! one redaction job: one vault transaction, one call-log transaction. The step can be killed
//! at any moment; the next run (or `resume_redactions`) finishes the work, and nothing is
//! redacted twice because clearing only touches calls not yet redacted. Two sweeps running at
//! once (`ringfence sweep` beside `serve`) may pick the same calls; only one redacts each, and
//! only calls actually redacted are journaled and counted.

use std::collections::BTreeMap;

use ringfence_core::call::RedactionReason;
use ringfence_core::retention::RetentionScope;
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, DataCategory};
use ringfence_store::{AccountRecord, AuditEvent, CallLog, DueQuery, LogError};

/// The name the sweep's finished runs are recorded under (`Store::record_job_run`).
pub const SWEEP_JOB: &str = "retention";

/// How a sweep runs.
#[derive(Debug, Clone, Copy)]
pub struct SweepOptions {
    /// What "now" is (tests set it; the server uses the clock).
    pub now: Timestamp,
    /// Calls per batch (one redaction job each).
    pub batch: u32,
    /// Count what is due, change nothing.
    pub dry_run: bool,
}

impl SweepOptions {
    pub fn now() -> Self {
        SweepOptions {
            now: Timestamp::now(),
            batch: 2000,
            dry_run: false,
        }
    }
}

/// What a sweep did (or, dry, would do) in one account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountSweep {
    /// Calls redacted whole.
    pub calls: u64,
    /// Calls that lost a category, per category.
    pub categories: BTreeMap<DataCategory, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub accounts: BTreeMap<AccountId, AccountSweep>,
}

impl SweepReport {
    pub fn total_calls(&self) -> u64 {
        self.accounts.values().map(|a| a.calls).sum()
    }
    pub fn total_category_removals(&self) -> u64 {
        self.accounts
            .values()
            .flat_map(|a| a.categories.values())
            .sum()
    }
}

fn audit_for(account: &AccountRecord, categories: &[DataCategory]) -> AuditEvent {
    AuditEvent {
        actor: "retention".into(),
        action: if categories.is_empty() {
            "call.redacted".into()
        } else {
            "call.categories_removed".into()
        },
        agency_id: Some(account.agency_id),
        account_id: Some(account.id),
        subject: None,
        count: None,
        reason: Some(RedactionReason::Retention.as_str().into()),
        details: "{}".into(),
    }
}

/// What changing an agency's retention ceiling from `before` to `after` would redact at
/// the next sweep, per account of the agency (accounts it would not touch are left out):
/// the calls due under the new ceiling less those due already. The ceiling caps every
/// account, those whose own automatic redaction is off included, so the API, the CLI and
/// the web page preview it with this before it is applied.
pub async fn ceiling_preview(
    log: &CallLog,
    agency: ringfence_core::AgencyId,
    before: Option<u32>,
    after: Option<u32>,
    now: Timestamp,
) -> Result<BTreeMap<AccountId, u64>, LogError> {
    let mut out = BTreeMap::new();
    if before == after {
        return Ok(out);
    }
    let total = |p: &AccountSweep| p.calls + p.categories.values().sum::<u64>();
    for account in log.store().list_accounts(Some(agency)).await? {
        let was = preview(log, &account, before, now).await?;
        let will = preview(log, &account, after, now).await?;
        let newly = total(&will).saturating_sub(total(&was));
        if newly > 0 {
            out.insert(account.id, newly);
        }
    }
    Ok(out)
}

/// How many calls a sweep would handle now, per account and category (no change).
pub async fn preview(
    log: &CallLog,
    account: &AccountRecord,
    agency_max: Option<u32>,
    now: Timestamp,
) -> Result<AccountSweep, LogError> {
    let schedule = account.retention.schedule(agency_max, now);
    let gdpr_only = schedule.scope == RetentionScope::Gdpr;
    let mut out = AccountSweep::default();
    if let Some(before) = schedule.whole_before {
        out.calls = log
            .store()
            .count_due(DueQuery {
                account_id: account.id,
                before,
                gdpr_only,
                category: None,
                not_before: None,
                limit: 0,
            })
            .await?;
    }
    for (category, before) in schedule.categories {
        let n = log
            .store()
            .count_due(DueQuery {
                account_id: account.id,
                before,
                gdpr_only,
                category: Some(category),
                not_before: schedule.whole_before,
                limit: 0,
            })
            .await?;
        out.categories.insert(category, n);
    }
    Ok(out)
}

/// The sweep step: applies every account's policy. `progress` is told each batch's size.
pub async fn sweep(
    log: &CallLog,
    options: SweepOptions,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<SweepReport, LogError> {
    let mut report = SweepReport::default();
    let agencies: BTreeMap<_, _> = log
        .store()
        .list_agencies()
        .await?
        .into_iter()
        .map(|a| (a.id, a.max_retention_days))
        .collect();
    for account in log.store().list_accounts(None).await? {
        let agency_max = agencies.get(&account.agency_id).copied().flatten();
        if account.retention.is_off() && agency_max.is_none() {
            continue;
        }
        let swept = if options.dry_run {
            let p = preview(log, &account, agency_max, options.now).await?;
            progress(p.calls + p.categories.values().sum::<u64>());
            p
        } else {
            sweep_account(log, &account, agency_max, options, progress).await?
        };
        if swept != AccountSweep::default() {
            report.accounts.insert(account.id, swept);
        }
        if !options.dry_run {
            let left =
                preview(log, &account, agency_max, Timestamp::now().max(options.now)).await?;
            metrics::gauge!("ringfence_calls_overdue", "account" => account.id.to_string())
                .set(left.calls as f64);
        }
    }
    if !options.dry_run {
        let finished = Timestamp::now();
        metrics::gauge!("ringfence_sweep_last_success_timestamp_seconds")
            .set(finished.millis() as f64 / 1000.0);
        // The checklist's heartbeat: the clock's time, not `options.now`, which tests move.
        log.store()
            .record_job_run(SWEEP_JOB.into(), finished)
            .await?;
        // Once for the whole sweep, not after each batch: the call log's WAL truncated and
        // the journal anchored.
        if report != SweepReport::default() {
            log.finish_sweep().await?;
        }
    }
    Ok(report)
}

async fn sweep_account(
    log: &CallLog,
    account: &AccountRecord,
    agency_max: Option<u32>,
    options: SweepOptions,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<AccountSweep, LogError> {
    let schedule = account.retention.schedule(agency_max, options.now);
    let gdpr_only = schedule.scope == RetentionScope::Gdpr;
    let mut out = AccountSweep::default();
    // Whole calls first: a call due whole needs no category step before it.
    let mut steps: Vec<(Option<DataCategory>, Timestamp)> = Vec::new();
    if let Some(before) = schedule.whole_before {
        steps.push((None, before));
    }
    steps.extend(schedule.categories.iter().map(|(c, t)| (Some(*c), *t)));
    for &(category, before) in &steps {
        let mut idle_batches = 0;
        loop {
            let rows = log
                .store()
                .due_calls(DueQuery {
                    account_id: account.id,
                    before,
                    gdpr_only,
                    category,
                    not_before: if category.is_some() {
                        schedule.whole_before
                    } else {
                        None
                    },
                    limit: options.batch,
                })
                .await?;
            if rows.is_empty() {
                break;
            }
            let n = rows.len() as u64;
            let done = match category {
                None => {
                    log.redact_calls(rows, RedactionReason::Retention, audit_for(account, &[]))
                        .await?
                        .redacted_calls
                }
                Some(c) => {
                    log.remove_categories(
                        rows,
                        vec![c],
                        RedactionReason::Retention,
                        audit_for(account, &[c]),
                    )
                    .await?
                    .redacted_calls
                }
            };
            match category {
                None => {
                    out.calls += done;
                    metrics::counter!("ringfence_calls_redacted_total", "reason" => "retention")
                        .increment(done);
                }
                Some(c) => {
                    *out.categories.entry(c).or_default() += done;
                    metrics::counter!("ringfence_categories_removed_total", "category" => c.as_str()).increment(done);
                }
            }
            progress(n);
            // Another sweep took these calls first: carry on, but never spin.
            idle_batches = if done == 0 { idle_batches + 1 } else { 0 };
            if idle_batches > 3 {
                break;
            }
            // Let the API's requests through between batches.
            tokio::task::yield_now().await;
        }
    }
    // Calls redacted otherwise (by hand, by caller, on withdrawal) stay in the sweep's index
    // until a sweep passes them; these ones it has passed, so the next sweep need not.
    if let Some(latest) = steps.iter().map(|(_, before)| *before).max() {
        log.store().retire_redacted(account.id, latest).await?;
    }
    if out != AccountSweep::default() {
        tracing::info!(account = %account.id, calls = out.calls, category_removals = out.categories.values().sum::<u64>(), "automatic redaction");
    }
    Ok(out)
}
