//! The command-line commands. Each prints a human line, or exactly one JSON document with
//! `--json`. Errors go to stderr with exit code 1; usage errors exit 2 (clap).

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use ringfence_core::text::counted;
use serde_json::json;

use ringfence_core::DataCategory;
use ringfence_core::access::{Principal, Role, Scope};
use ringfence_core::retention::{RetentionPolicy, RetentionScope};
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, AgencyId, TokenId};
use ringfence_crypto::new_api_token;
use ringfence_store::AuditEvent;
use ringfence_store::journal::verify_journal;
use ringfence_store::{AccountRecord, AgencyRecord, TokenRecord};

use crate::app::Resources;

#[derive(Debug, Subcommand)]
pub enum AgencyCommand {
    /// Create an agency; prints its id.
    Create {
        /// The agency's name as people see it (not personal data: a business's name).
        #[arg(long)]
        name: String,
        /// Let the agency's accounts redact calls and callers.
        #[arg(long)]
        redaction_enabled: bool,
    },
    /// Change an agency's settings.
    Set {
        id: String,
        #[arg(long, value_name = "true|false")]
        redaction_enabled: Option<bool>,
        /// Longest retention (days) its accounts may use; 0 removes the limit. It caps
        /// every account, those with automatic redaction off included: a ceiling that
        /// would redact calls at once is previewed per account and needs --yes.
        #[arg(long, value_name = "N")]
        max_retention_days: Option<u32>,
        /// Apply a ceiling that would redact calls at once (after reading its preview).
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account under an agency; prints its id.
    Create {
        /// The id of the agency the account belongs to.
        #[arg(long, value_name = "ID")]
        agency: String,
        /// The account's name as people see it (the business).
        #[arg(long)]
        name: String,
    },
    /// Set an account's automatic redaction and what it collects.
    Set {
        id: String,
        /// off, 1, 30, 60, 90, or any number of days up to 3650.
        #[arg(long, value_name = "off|1|30|60|90|DAYS")]
        auto_redact: Option<String>,
        /// everyone, or gdpr: only callers in GDPR scope.
        #[arg(long, value_name = "everyone|gdpr")]
        scope: Option<String>,
        /// Earlier removal of one category, e.g. recording=30 or visitor=1 (repeatable).
        #[arg(long = "category", value_name = "CATEGORY=DAYS")]
        categories: Vec<String>,
        /// Remove the per-category schedule.
        #[arg(long)]
        clear_categories: bool,
        /// Confirm a change that would redact many calls at once.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        collection: CollectionArgs,
    },
}

/// What an account collects (each optional; unset ones stay as they are).
#[derive(Debug, Default, clap::Args)]
pub struct CollectionArgs {
    /// Keep the caller-ID name (CNAM).
    #[arg(long, value_name = "true|false")]
    pub caller_name: Option<bool>,
    /// Keep the caller's city, region, postal code and country.
    #[arg(long, value_name = "true|false")]
    pub caller_location: Option<bool>,
    /// Recording of callers in GDPR scope.
    #[arg(long, value_name = "off|announce|opt_in")]
    pub recording_gdpr: Option<String>,
    /// Recording of everyone else.
    #[arg(long, value_name = "off|announce|opt_in")]
    pub recording_other: Option<String>,
    /// Keep transcripts.
    #[arg(long, value_name = "true|false")]
    pub transcription: Option<bool>,
    /// What is kept of a visitor's IP address.
    #[arg(long, value_name = "drop|truncate|full")]
    pub visitor_ip: Option<String>,
    /// Keep user agent, referrer, landing URL, click ids and visitor id.
    #[arg(long, value_name = "true|false")]
    pub visitor_details: Option<bool>,
}

impl CollectionArgs {
    fn apply(
        &self,
        mut c: ringfence_core::collection::CollectionSettings,
    ) -> anyhow::Result<ringfence_core::collection::CollectionSettings> {
        use ringfence_core::collection::{IpPolicy, RecordingMode};
        if let Some(m) = &self.recording_gdpr {
            c.recording_gdpr = RecordingMode::parse(m)
                .context("--recording-gdpr must be off, announce or opt_in")?;
        }
        if let Some(m) = &self.recording_other {
            c.recording_other = RecordingMode::parse(m)
                .context("--recording-other must be off, announce or opt_in")?;
        }
        if let Some(p) = &self.visitor_ip {
            c.visitor_ip =
                IpPolicy::parse(p).context("--visitor-ip must be drop, truncate or full")?;
        }
        c.caller_name = self.caller_name.unwrap_or(c.caller_name);
        c.caller_location = self.caller_location.unwrap_or(c.caller_location);
        c.transcription = self.transcription.unwrap_or(c.transcription);
        c.visitor_details = self.visitor_details.unwrap_or(c.visitor_details);
        Ok(c)
    }
}

fn describe_collection(c: &ringfence_core::collection::CollectionSettings) -> serde_json::Value {
    json!({"caller_name": c.caller_name, "caller_location": c.caller_location,
           "recording_gdpr": c.recording_gdpr.as_str(), "recording_other": c.recording_other.as_str(),
           "transcription": c.transcription, "visitor_ip": c.visitor_ip.as_str(), "visitor_details": c.visitor_details})
}

/// More calls than this redacted at once by a policy change need `--yes`.
const CONFIRM_THRESHOLD: u64 = 100;

#[derive(Debug, Subcommand)]
pub enum RedactCommand {
    /// Redact one call; prints the receipt.
    Call {
        call_id: String,
        /// A short reference for the journal (ticket id); no personal data.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Redact every call and visitor session of a caller in an account; prints the receipt.
    Caller {
        /// The id of the account whose calls from the number are redacted.
        #[arg(long, value_name = "ID")]
        account: String,
        /// The caller's number, E.164.
        number: String,
        /// Redact the number's future calls on arrival too.
        #[arg(long)]
        forget: bool,
        /// Every account of the account's agency.
        #[arg(long)]
        agency_wide: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the whole hash chain; exit 1 and name the first broken entry on any alteration.
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token; prints it once (only its hash is stored).
    Create(TokenArgs),
    /// List tokens: id, role, scope, label, created, expires, revoked, last used (never the
    /// token itself).
    List(ScopeFilter),
    /// Revoke a token: refused from its next request (a running server's cache drops it
    /// within 10 seconds; a revocation through the API applies at once).
    Revoke {
        /// The token's id (from `ringfence token list`).
        id: String,
    },
}

/// `--account ID | --agency ID`: limit a list to one account, or an agency and its accounts.
#[derive(Debug, Args)]
pub struct ScopeFilter {
    /// Only those of this account.
    #[arg(long, value_name = "ID", conflicts_with = "agency")]
    pub account: Option<String>,
    /// Only those of this agency and of its accounts.
    #[arg(long, value_name = "ID")]
    pub agency: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user of the web interface. The password is read from --password-file or,
    /// without it, from the first line of standard input; never from the command line.
    Create(UserArgs),
    /// List users: id, role, scope, personal data, created, disabled, last sign-in (no
    /// addresses: they are not stored in the clear).
    List(ScopeFilter),
    /// Disable a user: it cannot sign in, and its sessions end at once.
    Disable {
        /// The user's id, or the address it signs in with.
        user: String,
    },
    /// Enable a disabled user again.
    Enable {
        /// The user's id, or the address it signs in with.
        user: String,
    },
    /// Remove a user; its sessions end at once, and the address may be added again.
    Remove {
        /// The user's id, or the address it signs in with.
        user: String,
    },
    /// Give a user a new password (from --password-file or the first line of standard
    /// input); its sessions end at once.
    ResetPassword {
        /// The user's id, or the address it signs in with.
        user: String,
        /// A file whose first line is the new password (at least 12 characters).
        #[arg(long, value_name = "FILE")]
        password_file: Option<std::path::PathBuf>,
    },
    /// Change a user's role (it must fit the user's agency or account).
    SetRole {
        /// The user's id, or the address it signs in with.
        user: String,
        /// admin, agency_admin, account_admin or analyst
        #[arg(long, value_name = "ROLE")]
        role: String,
        /// Show personal data masked to this user (analysts).
        #[arg(long)]
        no_personal_data: bool,
    },
}

#[derive(Debug, Args)]
pub struct UserArgs {
    /// The address the user signs in with.
    #[arg(long)]
    pub email: String,
    /// admin, agency_admin, account_admin or analyst
    #[arg(long)]
    pub role: String,
    #[arg(long)]
    pub agency: Option<String>,
    #[arg(long)]
    pub account: Option<String>,
    /// Show personal data masked to this user (analysts).
    #[arg(long)]
    pub no_personal_data: bool,
    /// A file whose first line is the password (at least 12 characters).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// admin, agency_admin, account_admin, analyst or ingest
    #[arg(long)]
    pub role: String,
    #[arg(long)]
    pub agency: Option<String>,
    #[arg(long)]
    pub account: Option<String>,
    /// A note on what the token is for (no personal data).
    #[arg(long)]
    pub label: Option<String>,
    /// Show personal data masked to this token (analysts).
    #[arg(long)]
    pub no_personal_data: bool,
    /// Expire the token after this many days.
    #[arg(long, value_name = "DAYS")]
    pub expires_in_days: Option<u32>,
}

fn parse_id<T: std::str::FromStr>(text: &str, what: &str) -> anyhow::Result<T> {
    text.parse().map_err(|_| {
        anyhow::anyhow!(
            "{what} is not a valid id (expected a UUID like 0190c0a0-c0a0-7000-8000-000000000000)"
        )
    })
}

fn label(name: &str, what: &str) -> anyhow::Result<String> {
    let name = name.trim();
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        bail!("{what} must be 1 to 200 printable characters");
    }
    Ok(name.to_owned())
}

pub async fn agency(
    resources: &Resources,
    command: AgencyCommand,
    as_json: bool,
) -> anyhow::Result<()> {
    let store = resources.log.store();
    match command {
        AgencyCommand::Create {
            name,
            redaction_enabled,
        } => {
            let record = AgencyRecord {
                id: AgencyId::generate(),
                name: label(&name, "--name")?,
                redaction_enabled,
                max_retention_days: None,
                created_at: Timestamp::now(),
            };
            store.create_agency(record.clone()).await?;
            print(
                as_json,
                json!({"id": record.id.to_string()}),
                &format!("created agency {}", record.id),
            );
        }
        AgencyCommand::Set {
            id,
            redaction_enabled,
            max_retention_days,
            yes,
        } => {
            let id: AgencyId = parse_id(&id, "agency id")?;
            let mut record = store
                .agency(id)
                .await?
                .with_context(|| format!("no agency {id}"))?;
            if redaction_enabled.is_none() && max_retention_days.is_none() {
                bail!("nothing to change: give --redaction-enabled and/or --max-retention-days");
            }
            if let Some(r) = redaction_enabled {
                record.redaction_enabled = r;
            }
            if let Some(days) = max_retention_days {
                if days > 3650 {
                    bail!("--max-retention-days must be at most 3650 (0 removes the limit)");
                }
                record.max_retention_days = (days > 0).then_some(days);
            }
            let before = store.agency(id).await?.and_then(|a| a.max_retention_days);
            let would_redact = ringfence_jobs::retention::ceiling_preview(
                &resources.log,
                id,
                before,
                record.max_retention_days,
                Timestamp::now(),
            )
            .await?;
            let total: u64 = would_redact.values().sum();
            let per_account: std::collections::BTreeMap<String, u64> = would_redact
                .iter()
                .map(|(a, n)| (a.to_string(), *n))
                .collect();
            if total > 0 && !yes {
                let lines: Vec<String> = would_redact
                    .iter()
                    .map(|(a, n)| format!("  account {a}: {n}"))
                    .collect();
                bail!(
                    "this ceiling would redact {total} {} at once (it caps every account, automatic redaction off or not):\n{}\nnothing changed; run it again with --yes to apply it",
                    if total == 1 { "call" } else { "calls" },
                    lines.join("\n")
                );
            }
            store.update_agency(record.clone()).await?;
            store
                .append_audit(AuditEvent {
                    actor: "cli".into(),
                    action: "agency.settings_changed".into(),
                    agency_id: Some(record.id),
                    account_id: None,
                    subject: Some(record.id.to_string()),
                    count: Some(total),
                    reason: None,
                    details: json!({"role": "admin", "after": {"redaction_enabled": record.redaction_enabled, "max_retention_days": record.max_retention_days},
                                    "would_redact": per_account, "confirmed": yes}).to_string(),
                })
                .await?;
            print(
                as_json,
                json!({"id": record.id.to_string(), "redaction_enabled": record.redaction_enabled, "max_retention_days": record.max_retention_days, "would_redact": per_account}),
                &format!(
                    "agency {} updated; {total} {} due for redaction at the next sweep",
                    record.id,
                    if total == 1 { "call is" } else { "calls are" }
                ),
            );
        }
    }
    Ok(())
}

pub async fn account(
    resources: &Resources,
    command: AccountCommand,
    as_json: bool,
) -> anyhow::Result<()> {
    let store = resources.log.store();
    match command {
        AccountCommand::Create { agency, name } => {
            let agency: AgencyId = parse_id(&agency, "--agency")?;
            store
                .agency(agency)
                .await?
                .with_context(|| format!("no agency {agency}"))?;
            let record = AccountRecord {
                twilio_auth_token: None,
                twilio_delete_recordings: false,
                twilio_account_sid: None,
                id: AccountId::generate(),
                agency_id: agency,
                name: label(&name, "--name")?,
                collection: Default::default(),
                created_at: Timestamp::now(),
                retention: RetentionPolicy::default(),
            };
            store.create_account(record.clone()).await?;
            // The blind-index key is made now, so the first call does not wait for it.
            resources.log.blind_key(record.id).await?;
            print(
                as_json,
                json!({"id": record.id.to_string()}),
                &format!("created account {}", record.id),
            );
        }
        AccountCommand::Set {
            id,
            auto_redact,
            scope,
            categories,
            clear_categories,
            yes,
            collection,
        } => {
            let id: AccountId = parse_id(&id, "account id")?;
            let mut record = store
                .account(id)
                .await?
                .with_context(|| format!("no account {id}"))?;
            let collection_before = record.collection;
            let collection_after = collection.apply(record.collection)?;
            let retention_asked = auto_redact.is_some()
                || scope.is_some()
                || !categories.is_empty()
                || clear_categories;
            let agency = store
                .agency(record.agency_id)
                .await?
                .with_context(|| format!("no agency {}", record.agency_id))?;
            let before = record.retention.clone();
            let mut policy = before.clone();
            if let Some(value) = auto_redact {
                policy.after_days = match value.as_str() {
                    "off" => None,
                    days => Some(days.parse().map_err(|_| {
                        anyhow::anyhow!(
                            "--auto-redact must be off, 1, 30, 60, 90 or a number of days"
                        )
                    })?),
                };
            }
            if let Some(scope) = scope {
                policy.scope =
                    RetentionScope::parse(&scope).context("--scope must be everyone or gdpr")?;
            }
            if clear_categories {
                policy.categories.clear();
            }
            for pair in categories {
                let (name, days) = pair
                    .split_once('=')
                    .context("--category takes CATEGORY=DAYS, e.g. recording=30")?;
                let category = DataCategory::parse(name)
                    .filter(|c| c.is_personal())
                    .with_context(|| {
                        format!("--category: {name} is not a personal data category")
                    })?;
                policy.categories.insert(
                    category,
                    days.parse()
                        .context("--category: days must be a whole number")?,
                );
            }
            policy
                .validate(agency.max_retention_days)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let newly = {
                let now = Timestamp::now();
                let was = ringfence_jobs::retention::preview(
                    &resources.log,
                    &record,
                    agency.max_retention_days,
                    now,
                )
                .await?;
                let will = ringfence_jobs::retention::preview(
                    &resources.log,
                    &AccountRecord {
                        retention: policy.clone(),
                        ..record.clone()
                    },
                    agency.max_retention_days,
                    now,
                )
                .await?;
                let total = |p: &ringfence_jobs::retention::AccountSweep| {
                    p.calls + p.categories.values().sum::<u64>()
                };
                total(&will).saturating_sub(total(&was))
            };
            if newly > CONFIRM_THRESHOLD && !yes {
                bail!(
                    "this change would redact {newly} calls at once; run it again with --yes to confirm"
                );
            }
            record.retention = policy;
            record.collection = collection_after;
            store.update_account(record.clone()).await?;
            if collection_after != collection_before {
                store
                    .append_audit(AuditEvent {
                        actor: "cli".into(),
                        action: "account.collection_changed".into(),
                        agency_id: Some(record.agency_id),
                        account_id: Some(record.id),
                        subject: Some(record.id.to_string()),
                        count: None,
                        reason: None,
                        details: json!({"role": "admin", "before": describe_collection(&collection_before), "after": describe_collection(&collection_after)}).to_string(),
                    })
                    .await?;
            }
            let describe = |p: &RetentionPolicy| json!({"after_days": p.after_days, "scope": p.scope.as_str(), "categories": p.categories_text()});
            if retention_asked {
                store
                .append_audit(AuditEvent {
                    actor: "cli".into(),
                    action: "account.retention_changed".into(),
                    agency_id: Some(record.agency_id),
                    account_id: Some(record.id),
                    subject: Some(record.id.to_string()),
                    count: Some(newly),
                    reason: None,
                    details: json!({"role": "admin", "before": describe(&before), "after": describe(&record.retention), "confirmed": yes}).to_string(),
                })
                .await?;
            }
            let p = &record.retention;
            print(
                as_json,
                json!({"id": record.id.to_string(), "auto_redact": {"after_days": p.after_days, "scope": p.scope.as_str(),
                       "categories": p.categories.iter().map(|(c, d)| (c.as_str().to_owned(), *d)).collect::<std::collections::BTreeMap<_, _>>(),
                       "effective_after_days": p.effective_after_days(agency.max_retention_days)}, "would_redact_now": newly,
                       "collection": describe_collection(&record.collection)}),
                &format!(
                    "account {} updated; {newly} calls are due for redaction now",
                    record.id
                ),
            );
        }
    }
    Ok(())
}

/// `ringfence sweep [--dry-run]`: automatic redaction now, with a progress bar.
pub async fn sweep(resources: &Resources, dry_run: bool, as_json: bool) -> anyhow::Result<()> {
    use ringfence_jobs::retention::{SweepOptions, sweep};
    resources.log.resume_redactions().await?;
    let now = Timestamp::now();
    // The total first, so the bar knows its end.
    let mut total = 0u64;
    let agencies: std::collections::BTreeMap<_, _> = resources
        .log
        .store()
        .list_agencies()
        .await?
        .into_iter()
        .map(|a| (a.id, a.max_retention_days))
        .collect();
    for account in resources.log.store().list_accounts(None).await? {
        let p = ringfence_jobs::retention::preview(
            &resources.log,
            &account,
            agencies.get(&account.agency_id).copied().flatten(),
            now,
        )
        .await?;
        total += p.calls + p.categories.values().sum::<u64>();
    }
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) && !dry_run {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(crate::telemetry::rate_style(
            "{spinner} redacting [{bar:40}] {pos}/{len} calls {rate} eta {eta}",
        ));
        Some(bar)
    } else {
        None
    };
    // Log lines print with the bar hidden, never over it.
    let _shown = bar.as_ref().map(crate::telemetry::show_bar);
    let mut done = 0u64;
    let mut last_line = std::time::Instant::now();
    let mut progress = |n: u64| {
        done += n;
        match &bar {
            Some(bar) => bar.inc(n),
            None if !dry_run && last_line.elapsed().as_secs() >= 2 => {
                eprintln!("redacted {done} of {total}");
                last_line = std::time::Instant::now();
            }
            None => {}
        }
    };
    let report = sweep(
        &resources.log,
        SweepOptions {
            now,
            batch: 2000,
            dry_run,
        },
        &mut progress,
    )
    .await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let accounts: serde_json::Map<String, serde_json::Value> = report
        .accounts
        .iter()
        .map(|(id, a)| (id.to_string(), json!({"calls": a.calls, "categories": a.categories.iter().map(|(c, n)| (c.as_str().to_owned(), *n)).collect::<std::collections::BTreeMap<_, _>>()})))
        .collect();
    let verb = if dry_run { "would redact" } else { "redacted" };
    let mut human = format!(
        "{verb} {} and removed {}",
        counted(report.total_calls(), "call", "calls"),
        counted(report.total_category_removals(), "category", "categories")
    );
    for (id, a) in &report.accounts {
        human.push_str(&format!(
            "\n  account {id}: {}",
            counted(a.calls, "call", "calls")
        ));
        for (c, n) in &a.categories {
            human.push_str(&format!(", {c} {n}"));
        }
    }
    print(
        as_json,
        json!({"dry_run": dry_run, "calls": report.total_calls(), "category_removals": report.total_category_removals(), "accounts": accounts}),
        &human,
    );
    Ok(())
}

/// `ringfence vault rotate --new-master-key-file F`, with a progress bar.
pub async fn rotate_master_key(
    resources: &Resources,
    new_key_file: &std::path::Path,
    as_json: bool,
) -> anyhow::Result<()> {
    use crate::rotate::{Progress, rotate};
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(crate::telemetry::rate_style(
            "{spinner} re-wrapping keys [{bar:40}] {pos}/{len} {rate} eta {eta}",
        ));
        bar
    });
    let _shown = bar.as_ref().map(crate::telemetry::show_bar);
    let mut progress = |p: Progress| {
        if let Some(bar) = &bar {
            match p {
                Progress::Total(n) => bar.set_length(bar.position() + n),
                Progress::Done(n) => bar.inc(n),
            }
        }
    };
    let summary = rotate(resources, new_key_file, &mut progress).await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let human = format!(
        "master key rotated{}: {} keys re-wrapped under {}; {} is now the master key file and the old key file is destroyed{}",
        summary
            .from
            .as_ref()
            .map(|f| format!(" from {f}"))
            .unwrap_or_default(),
        summary.rewrapped,
        summary.to,
        resources.config.master_key_file.display(),
        if summary.created_new_key_file {
            format!(
                "\nthe new key was made at {}: keep it apart from the data folder and its backups, or delete it",
                new_key_file.display()
            )
        } else {
            String::new()
        }
    );
    print(as_json, summary.to_json(), &human);
    Ok(())
}

fn checklist_lines(c: &ringfence_http::routes::checklist::AccountChecklist) -> String {
    let mut out = format!("account {}: {}", c.account_id, c.status);
    for item in &c.items {
        out.push_str(&format!(
            "\n  {:<4} {}: {}",
            item.status, item.id, item.explanation
        ));
        if item.status != "pass" {
            out.push_str(&format!(" (fix: {})", item.fix));
        }
    }
    out
}

/// `ringfence checklist (--account ID | --agency ID)`: the same document as the API; one
/// line per item for people.
pub async fn checklist(
    resources: &Resources,
    account: Option<String>,
    agency: Option<String>,
    as_json: bool,
) -> anyhow::Result<()> {
    use ringfence_http::routes::checklist::{AccountChecklist, AgencyChecklistOutput};
    use ringfence_jobs::checklist::DataPaths;
    let paths = DataPaths {
        data_dir: resources.config.data.clone(),
        master_key_file: resources.config.master_key_file.clone(),
    };
    let (document, human) = match (account, agency) {
        (Some(account), None) => {
            let id: AccountId = parse_id(&account, "--account")?;
            let c: AccountChecklist =
                ringfence_jobs::checklist::account_checklist(&resources.log, id, Some(&paths))
                    .await?
                    .with_context(|| format!("no account {id}"))?
                    .into();
            (serde_json::to_value(&c)?, checklist_lines(&c))
        }
        (None, Some(agency)) => {
            let id: AgencyId = parse_id(&agency, "--agency")?;
            let a: AgencyChecklistOutput =
                ringfence_jobs::checklist::agency_checklist(&resources.log, id, Some(&paths))
                    .await?
                    .with_context(|| format!("no agency {id}"))?
                    .into();
            let mut human = format!(
                "agency {}: {} ({}, worst first)",
                a.agency_id,
                a.status,
                counted(a.accounts.len() as u64, "account", "accounts")
            );
            for c in &a.accounts {
                human.push('\n');
                human.push_str(&checklist_lines(c));
            }
            (serde_json::to_value(&a)?, human)
        }
        _ => bail!("give exactly one of --account ID or --agency ID"),
    };
    print(as_json, document, &human);
    Ok(())
}

/// A role and the scope `--agency`/`--account` give it, checked against the store (tokens
/// and users alike).
async fn resolve_scope(
    resources: &Resources,
    role: &str,
    agency: Option<&str>,
    account: Option<&str>,
    no_personal_data: bool,
) -> anyhow::Result<(Role, Scope)> {
    let role = Role::parse(role).with_context(|| {
        format!(
            "--role must be one of {}",
            Role::ALL.map(Role::as_str).join(", ")
        )
    })?;
    let store = resources.log.store();
    let scope = match (agency, account) {
        (None, None) => Scope::Installation,
        (Some(agency), None) => {
            let agency: AgencyId = parse_id(agency, "--agency")?;
            store
                .agency(agency)
                .await?
                .with_context(|| format!("no agency {agency}"))?;
            Scope::Agency(agency)
        }
        (agency, Some(account)) => {
            let account: AccountId = parse_id(account, "--account")?;
            let record = store
                .account(account)
                .await?
                .with_context(|| format!("no account {account}"))?;
            if let Some(agency) = agency
                && parse_id::<AgencyId>(agency, "--agency")? != record.agency_id
            {
                bail!("account {account} does not belong to agency {agency}");
            }
            Scope::Account {
                agency: record.agency_id,
                account,
            }
        }
    };
    Principal::validate_scope(role, &scope)
        .map_err(|e| anyhow::anyhow!("{e}: use --agency or --account accordingly"))?;
    if no_personal_data && role != Role::Analyst {
        bail!("--no-personal-data applies to analysts only");
    }
    Ok((role, scope))
}

/// Creates a token and returns `(id, token)`.
pub async fn create_token(
    resources: &Resources,
    args: &TokenArgs,
) -> anyhow::Result<(TokenId, String)> {
    let (role, scope) = resolve_scope(
        resources,
        &args.role,
        args.agency.as_deref(),
        args.account.as_deref(),
        args.no_personal_data,
    )
    .await?;
    let store = resources.log.store();
    let (token, hash) = new_api_token();
    let now = Timestamp::now();
    let record = TokenRecord {
        id: TokenId::generate(),
        hash,
        role,
        scope,
        personal_data: !args.no_personal_data,
        label: args
            .label
            .as_deref()
            .map(|l| label(l, "--label"))
            .transpose()?,
        created_at: now,
        expires_at: args
            .expires_in_days
            .map(|d| Timestamp::from_millis(now.millis() + i64::from(d) * 86_400_000)),
        revoked_at: None,
        last_used_at: None,
    };
    store.create_token(record.clone()).await?;
    let (agency_id, account_id) = match scope {
        Scope::Installation => (None, None),
        Scope::Agency(a) => (Some(a), None),
        Scope::Account { agency, account } => (Some(agency), Some(account)),
    };
    store
        .append_audit(AuditEvent {
            actor: "cli".into(),
            action: "token.created".into(),
            agency_id,
            account_id,
            subject: Some(format!("token:{}", record.id)),
            count: None,
            reason: None,
            details: json!({"role": role.as_str(), "personal_data": record.personal_data, "expires_at": record.expires_at.map(|t| t.to_rfc3339())}).to_string(),
        })
        .await?;
    Ok((record.id, token))
}

/// The API's handlers, called as the operator: the command line changes tokens and users
/// through the same checks and journal entries as the API.
fn api(resources: &Resources) -> (ringfence_http::AppState, ringfence_http::auth::Auth) {
    (
        ringfence_http::AppState::new(
            resources.log.clone(),
            ringfence_http::Limits::STANDARD,
            None,
        ),
        ringfence_http::auth::Auth(Principal::operator()),
    )
}

/// The API's answer as the command's failure, with the API's stable code under `--json`.
fn api_error(e: ringfence_http::ApiError) -> anyhow::Error {
    CliError {
        code: e.code.as_str(),
        message: format!("{} ({})", e.message, e.code.as_str()),
    }
    .into()
}

/// The query string of `--account` / `--agency`.
fn filter_query(filter: &ScopeFilter) -> anyhow::Result<Option<String>> {
    Ok(match (&filter.account, &filter.agency) {
        (Some(a), _) => Some(format!(
            "account_id={}",
            parse_id::<AccountId>(a, "--account")?
        )),
        (None, Some(a)) => Some(format!(
            "agency_id={}",
            parse_id::<AgencyId>(a, "--agency")?
        )),
        (None, None) => None,
    })
}

fn scope_text(agency: &Option<String>, account: &Option<String>) -> String {
    match (agency, account) {
        (_, Some(account)) => format!("account {account}"),
        (Some(agency), None) => format!("agency {agency}"),
        (None, None) => "installation".into(),
    }
}

fn or_dash(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("-")
}

pub async fn token(
    resources: &Resources,
    command: TokenCommand,
    as_json: bool,
) -> anyhow::Result<()> {
    use axum::extract::{Path, RawQuery, State};
    use ringfence_http::routes::access;
    match command {
        TokenCommand::Create(args) => {
            let (id, token) = create_token(resources, &args).await?;
            if as_json {
                println!("{}", json!({"id": id.to_string(), "token": token}));
            } else {
                println!("{token}");
                eprintln!("token {id} created; it is shown only this once");
            }
        }
        TokenCommand::List(filter) => {
            let (state, auth) = api(resources);
            let list = access::list_tokens(State(state), auth, RawQuery(filter_query(&filter)?))
                .await
                .map_err(api_error)?
                .0;
            let mut human = format!(
                "{} token{}",
                list.items.len(),
                if list.items.len() == 1 { "" } else { "s" }
            );
            for t in &list.items {
                let state = match (&t.revoked_at, &t.expires_at) {
                    (Some(at), _) => format!("revoked {at}"),
                    (None, Some(at)) => format!("expires {at}"),
                    (None, None) => "never expires".into(),
                };
                human.push_str(&format!(
                    "\n{}  {}  {}  {}  created {}  {}  last used {}",
                    t.id,
                    t.role,
                    scope_text(&t.agency_id, &t.account_id),
                    t.label.as_deref().unwrap_or("(no label)"),
                    t.created_at,
                    state,
                    or_dash(&t.last_used_at),
                ));
            }
            print(as_json, serde_json::to_value(&list)?, &human);
        }
        TokenCommand::Revoke { id } => {
            let (state, auth) = api(resources);
            access::revoke_token(State(state), auth, Path(id.clone()))
                .await
                .map_err(api_error)?;
            print(
                as_json,
                json!({"id": id, "revoked": true}),
                &format!(
                    "token {id} revoked; a running server refuses it within 10 seconds (at once when revoked through its API)"
                ),
            );
        }
    }
    Ok(())
}

/// A user's id from an id or the address the user signs in with (through the keyed index).
async fn user_id(resources: &Resources, user: &str) -> anyhow::Result<String> {
    if user.parse::<ringfence_core::UserId>().is_ok() {
        return Ok(user.to_owned());
    }
    if !user.contains('@') {
        bail!("give a user id (a UUID) or the address the user signs in with");
    }
    let index = resources.log.user_index(user).await?;
    let found = resources
        .log
        .store()
        .user_by_email_index(index)
        .await?
        .context("no user signs in with that address")?;
    Ok(found.id.to_string())
}

fn read_password(file: Option<&std::path::Path>) -> anyhow::Result<zeroize::Zeroizing<String>> {
    match file {
        Some(path) => {
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(path).context("reading --password-file")?,
            );
            Ok(first_line(&text))
        }
        None => {
            let mut text = zeroize::Zeroizing::new(String::new());
            std::io::stdin()
                .read_line(&mut text)
                .context("reading the password from standard input")?;
            Ok(first_line(&text))
        }
    }
}

/// Changes a user through `PATCH /api/v1/users/{id}`'s handler; prints the user.
async fn change_user(
    resources: &Resources,
    user: &str,
    update: ringfence_http::routes::access::UserUpdate,
    done: &str,
    as_json: bool,
) -> anyhow::Result<()> {
    use axum::extract::{Path, State};
    let id = user_id(resources, user).await?;
    let (state, auth) = api(resources);
    let out = ringfence_http::routes::access::update_user(
        State(state),
        auth,
        Path(id.clone()),
        ringfence_http::body::JsonBody(update),
    )
    .await
    .map_err(api_error)?
    .0;
    print(
        as_json,
        serde_json::to_value(&out)?,
        &format!("user {id} {done} (role {})", out.role),
    );
    Ok(())
}

/// The first line of `text`, without its line ending.
fn first_line(text: &str) -> zeroize::Zeroizing<String> {
    zeroize::Zeroizing::new(text.lines().next().unwrap_or("").to_owned())
}

pub async fn user(
    resources: &Resources,
    command: UserCommand,
    as_json: bool,
) -> anyhow::Result<()> {
    use ringfence_http::routes::access::UserUpdate;
    let update = UserUpdate {
        disabled: None,
        role: None,
        personal_data: None,
        password: None,
    };
    let args = match command {
        UserCommand::Create(args) => args,
        UserCommand::List(filter) => return list_users(resources, &filter, as_json).await,
        UserCommand::Disable { user } => {
            let update = UserUpdate {
                disabled: Some(true),
                ..update
            };
            return change_user(
                resources,
                &user,
                update,
                "disabled; its sessions ended",
                as_json,
            )
            .await;
        }
        UserCommand::Enable { user } => {
            let update = UserUpdate {
                disabled: Some(false),
                ..update
            };
            return change_user(resources, &user, update, "enabled", as_json).await;
        }
        UserCommand::Remove { user } => {
            use axum::extract::{Path, State};
            let id = user_id(resources, &user).await?;
            let (state, auth) = api(resources);
            ringfence_http::routes::access::remove_user(State(state), auth, Path(id.clone()))
                .await
                .map_err(api_error)?;
            print(
                as_json,
                json!({"id": id, "removed": true}),
                &format!("user {id} removed; its sessions ended"),
            );
            return Ok(());
        }
        UserCommand::ResetPassword {
            user,
            password_file,
        } => {
            let password = read_password(password_file.as_deref())?;
            let update = UserUpdate {
                password: Some(password.as_str().to_owned()),
                ..update
            };
            return change_user(
                resources,
                &user,
                update,
                "has a new password; its sessions ended",
                as_json,
            )
            .await;
        }
        UserCommand::SetRole {
            user,
            role,
            no_personal_data,
        } => {
            let update = UserUpdate {
                role: Some(role),
                personal_data: no_personal_data.then_some(false),
                ..update
            };
            return change_user(resources, &user, update, "changed", as_json).await;
        }
    };
    let password = read_password(args.password_file.as_deref())?;
    let (role, scope) = resolve_scope(
        resources,
        &args.role,
        args.agency.as_deref(),
        args.account.as_deref(),
        args.no_personal_data,
    )
    .await?;
    if role == Role::Ingest {
        bail!(
            "ingest is for API tokens; a user needs admin, agency_admin, account_admin or analyst"
        );
    }
    let user = resources
        .log
        .create_user(
            &args.email,
            password,
            role,
            scope,
            !args.no_personal_data,
            "cli".into(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!(user_id = %user.id, role = role.as_str(), "created a web user");
    print(
        as_json,
        json!({"id": user.id.to_string(), "role": role.as_str()}),
        &format!(
            "user {} created ({role}); they can sign in at /login",
            user.id
        ),
    );
    Ok(())
}

/// A command's failure: under `--json` one document `{"error": {"code", "message"}}` on
/// stdout (as the API answers), otherwise `error: message` on stderr.
pub fn print_error(as_json: bool, code: &str, message: &str) {
    if as_json {
        println!("{}", json!({"error": {"code": code, "message": message}}));
    } else {
        eprintln!("error: {message}");
    }
}

/// A failure with a stable code for `--json` (`bail!` gives `failed`).
#[derive(Debug)]
pub struct CliError {
    pub code: &'static str,
    pub message: String,
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// The stable code of a command's failure.
pub fn error_code(e: &anyhow::Error) -> &'static str {
    if let Some(c) = e.downcast_ref::<CliError>() {
        return c.code;
    }
    if e.downcast_ref::<std::io::Error>().is_some() {
        return "io_error";
    }
    "failed"
}

/// A JSON document as indented `key: value` lines, for people (with `--json` the document
/// itself is printed).
pub fn human(value: &serde_json::Value) -> String {
    fn walk(value: &serde_json::Value, indent: usize, out: &mut String) {
        let pad = "  ".repeat(indent);
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match v {
                        serde_json::Value::Object(m) if !m.is_empty() => {
                            out.push_str(&format!("{pad}{}:\n", k.replace('_', " ")));
                            walk(v, indent + 1, out);
                        }
                        serde_json::Value::Array(a) if a.iter().any(|x| x.is_object()) => {
                            out.push_str(&format!("{pad}{}:\n", k.replace('_', " ")));
                            for item in a {
                                walk(item, indent + 1, out);
                                out.push('\n');
                            }
                        }
                        _ => {
                            out.push_str(&format!("{pad}{}: {}\n", k.replace('_', " "), scalar(v)))
                        }
                    }
                }
            }
            other => out.push_str(&format!("{pad}{}\n", scalar(other))),
        }
    }
    fn scalar(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "-".to_owned(),
            serde_json::Value::Array(a) => a.iter().map(scalar).collect::<Vec<_>>().join(", "),
            other => other.to_string(),
        }
    }
    let mut out = String::new();
    walk(value, 0, &mut out);
    out.trim_end().to_owned()
}

async fn list_users(
    resources: &Resources,
    filter: &ScopeFilter,
    as_json: bool,
) -> anyhow::Result<()> {
    use axum::extract::{RawQuery, State};
    let (state, auth) = api(resources);
    let list = ringfence_http::routes::access::list_users(
        State(state),
        auth,
        RawQuery(filter_query(filter)?),
    )
    .await
    .map_err(api_error)?
    .0;
    let mut human = format!(
        "{} user{}",
        list.items.len(),
        if list.items.len() == 1 { "" } else { "s" }
    );
    for u in &list.items {
        human.push_str(&format!(
            "\n{}  {}  {}  personal data {}  created {}  {}  last sign-in {}",
            u.id,
            u.role,
            scope_text(&u.agency_id, &u.account_id),
            if u.personal_data { "shown" } else { "masked" },
            u.created_at,
            match &u.disabled_at {
                Some(at) => format!("disabled {at}"),
                None => "active".into(),
            },
            or_dash(&u.last_sign_in_at),
        ));
    }
    print(as_json, serde_json::to_value(&list)?, &human);
    Ok(())
}

pub fn print(as_json: bool, value: serde_json::Value, human: &str) {
    if as_json {
        println!("{value}");
    } else {
        println!("{human}");
    }
}

fn receipt_json(r: &ringfence_http::routes::redaction::Receipt) -> serde_json::Value {
    json!({
        "redacted_calls": r.redacted_calls,
        "redacted_sessions": r.redacted_sessions,
        "call_ids": r.call_ids,
        "at": r.at,
        "audit_seq": r.audit_seq,
        "forgotten": r.forgotten,
        "skipped_legal_hold": r.skipped_legal_hold,
    })
}

pub async fn redact(
    resources: &Resources,
    command: RedactCommand,
    as_json: bool,
) -> anyhow::Result<()> {
    use axum::extract::{Path, State};
    use ringfence_http::routes::redaction;
    // A redaction a crash interrupted is finished before anything else.
    resources.log.resume_redactions().await?;
    // The API's handlers, as the operator: the same checks (redaction enabled, legal hold,
    // a journal note without personal data) and the same journal entries as the API.
    let (state, auth) = api(resources);
    let receipt = match command {
        RedactCommand::Call { call_id, reason } => {
            let mut headers = axum::http::HeaderMap::new();
            headers.insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            );
            let body = json!({ "reason": reason }).to_string();
            redaction::redact_call(
                State(state),
                auth,
                Path(call_id),
                headers,
                bytes::Bytes::from(body),
            )
            .await
            .map_err(api_error)?
            .0
        }
        RedactCommand::Caller {
            account,
            number,
            forget,
            agency_wide,
        } => {
            let input = redaction::RedactCallerInput {
                number,
                forget,
                scope: Some(if agency_wide { "agency" } else { "account" }.into()),
                reason: None,
            };
            redaction::redact_caller(
                State(state),
                auth,
                Path(account),
                ringfence_http::body::JsonBody(input),
            )
            .await
            .map_err(api_error)?
            .0
        }
    };
    print(
        as_json,
        receipt_json(&receipt),
        &format!(
            "redacted {} and {} (journal entry {}){}",
            counted(receipt.redacted_calls, "call", "calls"),
            counted(receipt.redacted_sessions, "session", "sessions"),
            receipt.audit_seq,
            if receipt.forgotten {
                "; the number is on the forget list"
            } else {
                ""
            }
        ),
    );
    Ok(())
}

pub async fn audit(
    resources: &Resources,
    command: AuditCommand,
    as_json: bool,
) -> anyhow::Result<()> {
    let AuditCommand::Verify = command;
    let anchor = resources.log.vault().journal_anchor().await?;
    match verify_journal(resources.log.store().as_ref(), anchor).await? {
        Ok(v) => {
            let head: String = v.head.iter().map(|b| format!("{b:02x}")).collect();
            print(
                as_json,
                json!({"ok": true, "entries": v.entries, "last_seq": v.last_seq, "head": head}),
                &format!("audit journal intact: {} entries, head {head}", v.entries),
            );
            Ok(())
        }
        Err(broken) => {
            if as_json {
                println!("{}", json!({"ok": false, "error": broken.to_string()}));
            }
            bail!("audit journal broken: {broken}")
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Everything held about a caller in an account, as one ZIP (data.json, recordings,
    /// README.txt). The file is created with mode 0600 and must not exist yet.
    Caller {
        /// The id of the account whose data about the caller is exported.
        #[arg(long, value_name = "ID")]
        account: String,
        /// E.164, e.g. +442079460123.
        number: String,
        /// The archive to write (created with mode 0600; must not exist yet).
        #[arg(long, value_name = "FILE.zip")]
        out: std::path::PathBuf,
    },
}

/// `ringfence export caller --account ID NUMBER --out FILE.zip`.
pub async fn export(
    resources: &Resources,
    command: ExportCommand,
    as_json: bool,
) -> anyhow::Result<()> {
    let ExportCommand::Caller {
        account,
        number,
        out,
    } = command;
    let account: AccountId = parse_id(&account, "--account")?;
    // The number is personal data: the error names the rule, never the value.
    let number = ringfence_core::phone::parse_e164(&number)
        .map_err(|e| anyhow::anyhow!("NUMBER is not a valid E.164 number ({e})"))?;
    let store = resources.log.store();
    let record = store
        .account(account)
        .await?
        .with_context(|| format!("no account {account}"))?;
    let agency_max = store
        .agency(record.agency_id)
        .await?
        .and_then(|a| a.max_retention_days);
    // Personal data: readable by its owner only, and never over an existing file.
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&out)
            .with_context(|| format!("cannot create {} (it must not exist yet)", out.display()))?
    };
    let log = resources.log.clone();
    let handle = tokio::runtime::Handle::current();
    let path = out.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut writer = std::io::BufWriter::new(file);
        let summary = ringfence_http::export::write_export(
            &log,
            &handle,
            &record,
            agency_max,
            &number,
            "cli",
            &mut writer,
        )?;
        std::io::Write::flush(&mut writer)?;
        writer
            .into_inner()
            .map_err(|e| anyhow::anyhow!("writing the archive: {}", e.error()))?
            .sync_all()?;
        anyhow::Ok(summary)
    })
    .await?;
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            // No partial archive is left behind.
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
    };
    print(
        as_json,
        json!({"out": out.display().to_string(), "calls": summary.calls, "sessions": summary.sessions,
               "consents": summary.consents, "recordings": summary.recordings}),
        &format!(
            "wrote {}: {}, {}, {}, {}",
            out.display(),
            counted(summary.calls as u64, "call", "calls"),
            counted(summary.sessions as u64, "session", "sessions"),
            counted(summary.consents as u64, "consent", "consents"),
            counted(summary.recordings as u64, "recording", "recordings")
        ),
    );
    Ok(())
}
