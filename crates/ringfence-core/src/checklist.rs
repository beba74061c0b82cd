//! The compliance checklist: pass / warn / fail rules, each with a one-line explanation and
//! the concrete fix, over plain facts about an account and its installation.
//!
//! The rules are pure: the facts (settings, counts of due calls, the sweep's heartbeat, the
//! journal's verification, file modes) are gathered by the caller. Facts are ids, counts,
//! settings and times only: no item ever names a caller or shows a phone number.

use crate::collection::{CollectionSettings, IpPolicy, RecordingMode};
use crate::ids::{AccountId, AgencyId};
use crate::retention::RetentionPolicy;
use crate::timestamp::Timestamp;

/// Retention longer than this many days is worth a warning.
pub const LONG_RETENTION_DAYS: u32 = 90;
/// The sweep counts as running when its last run is more recent than this.
pub const SWEEP_RECENT_MS: i64 = 10 * 60 * 1000;
/// A sweep older than this means no worker is running.
pub const SWEEP_STALE_MS: i64 = 60 * 60 * 1000;

/// An item's verdict; ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One line of the checklist. `id` is a stable API name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: &'static str,
    pub status: Status,
    pub explanation: String,
    pub fix: String,
}

/// Modes (Unix permission bits) of the data folder and the master key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderModes {
    pub data_dir: u32,
    pub master_key: u32,
}

/// A vault never rotated for longer than this fails the master-key item.
pub const MASTER_KEY_UNROTATED_FAIL_DAYS: u32 = 365;

/// The vault's master key: when the vault was made and its key last replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MasterKeyFacts {
    pub vault_created: Timestamp,
    /// When the last master-key rotation finished.
    pub last_rotated: Option<Timestamp>,
    /// A rotation has started and not finished.
    pub rotation_under_way: bool,
}

/// Facts shared by every account of the installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationFacts {
    /// When the automatic-redaction sweep last finished a run.
    pub last_sweep: Option<Timestamp>,
    /// `None` when this process does not know the local paths: the item is left out.
    pub folder: Option<FolderModes>,
    /// The journal's entry count, or the first break found.
    pub audit_chain: Result<u64, String>,
    pub master_key: MasterKeyFacts,
}

/// Facts about one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountFacts {
    pub agency_id: AgencyId,
    pub account_id: AccountId,
    /// The agency lets its accounts redact.
    pub redaction_enabled: bool,
    pub retention: RetentionPolicy,
    pub agency_max_days: Option<u32>,
    pub collection: CollectionSettings,
    /// The newest notice version of the `recording` category.
    pub recording_notice: Option<u32>,
    /// Consent events recorded without a notice version.
    pub consents_without_notice: u64,
    /// Calls (and category removals) due for automatic redaction now.
    pub due_now: u64,
    /// Those already due a day ago: the sweep is behind.
    pub due_a_day_ago: u64,
    /// Live tokens that reach the account and never expire.
    pub tokens_without_expiry: u64,
    pub recipients: RecipientFacts,
}

/// The account's recipients and the state of their outbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecipientFacts {
    /// Current (not removed) recipients.
    pub recipients: u64,
    /// Those that take at least one erasure notice.
    pub erasure_recipients: u64,
    /// Dead-lettered deliveries of any event.
    pub dead: u64,
    /// Dead-lettered erasure notices: a recipient never learnt of an erasure.
    pub dead_erasures: u64,
    /// When the oldest still-queued erasure notice was created.
    pub oldest_queued_erasure: Option<Timestamp>,
}

/// An account's checklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checklist {
    pub account_id: AccountId,
    pub status: Status,
    pub items: Vec<Item>,
    pub generated_at: Timestamp,
}

/// An agency's roll-up: its accounts' checklists, worst first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgencyChecklist {
    pub agency_id: AgencyId,
    pub status: Status,
    pub accounts: Vec<Checklist>,
}

const NOTHING_TO_DO: &str = "nothing to do";

fn item(id: &'static str, status: Status, explanation: String, fix: String) -> Item {
    Item {
        id,
        status,
        explanation,
        fix,
    }
}

fn pass(id: &'static str, explanation: impl Into<String>) -> Item {
    item(id, Status::Pass, explanation.into(), NOTHING_TO_DO.into())
}

/// The worst status of the items (`Pass` for none).
pub fn worst(statuses: impl IntoIterator<Item = Status>) -> Status {
    statuses.into_iter().max().unwrap_or(Status::Pass)
}

/// Every item of an account's checklist, in a stable order.
pub fn account_checklist(
    a: &AccountFacts,
    installation: &InstallationFacts,
    now: Timestamp,
) -> Checklist {
    let mut items = vec![
        redaction_enabled(a),
        auto_redaction(a),
        recording_consent_gdpr(a),
        caller_id_lookup(a),
        ip_minimised(a),
        visitor_details(a),
        overdue_redactions(a),
        worker_recent(installation.last_sweep, now),
    ];
    if let Some(modes) = installation.folder {
        items.push(data_folder_permissions(modes));
    }
    items.push(master_key_rotated(a, installation.master_key, now));
    items.push(recipients(a, now));
    items.push(tokens(a));
    items.push(audit_chain(&installation.audit_chain));
    Checklist {
        account_id: a.account_id,
        status: worst(items.iter().map(|i| i.status)),
        items,
        generated_at: now,
    }
}

/// The agency's roll-up: accounts worst first (ties keep their order).
pub fn agency_checklist(agency_id: AgencyId, mut accounts: Vec<Checklist>) -> AgencyChecklist {
    accounts.sort_by_key(|c| std::cmp::Reverse(c.status));
    AgencyChecklist {
        agency_id,
        status: worst(accounts.iter().map(|c| c.status)),
        accounts,
    }
}

fn account_set(a: &AccountFacts, cli: &str, api: &str) -> String {
    format!(
        "`ringfence account set {} {cli}` or PUT /api/v1/accounts/{}/settings {api}",
        a.account_id, a.account_id
    )
}

fn redaction_enabled(a: &AccountFacts) -> Item {
    const ID: &str = "redaction_enabled";
    if a.redaction_enabled {
        return pass(ID, "the agency lets its accounts redact calls and callers");
    }
    item(
        ID,
        Status::Fail,
        "redaction is disabled for the agency: erasure requests cannot be honoured".into(),
        format!(
            "`ringfence agency set {} --redaction-enabled true` or PUT /api/v1/agencies/{}/settings {{\"redaction_enabled\": true}}",
            a.agency_id, a.agency_id
        ),
    )
}

fn auto_redaction(a: &AccountFacts) -> Item {
    const ID: &str = "auto_redaction";
    let fix = || {
        account_set(
            a,
            &format!("--auto-redact {LONG_RETENTION_DAYS}"),
            &format!("{{\"auto_redact\": {{\"after_days\": {LONG_RETENTION_DAYS}}}}}"),
        )
    };
    match a.retention.effective_after_days(a.agency_max_days) {
        None => item(
            ID,
            Status::Fail,
            "automatic redaction is off: calls are kept forever".into(),
            fix(),
        ),
        Some(days) if days > LONG_RETENTION_DAYS => item(
            ID,
            Status::Warn,
            format!("calls are kept {days} days, longer than {LONG_RETENTION_DAYS}"),
            fix(),
        ),
        Some(days) => pass(ID, format!("calls are redacted after {days} days")),
    }
}

fn recording_consent_gdpr(a: &AccountFacts) -> Item {
    const ID: &str = "recording_consent_gdpr";
    let mode = a.collection.recording_gdpr;
    let mut explanations = Vec::new();
    let mut fixes = Vec::new();
    if mode != RecordingMode::Off && a.recording_notice.is_none() {
        explanations.push(format!(
            "recording of GDPR callers is {} but no notice text is recorded",
            mode.as_str()
        ));
        fixes.push(format!(
            "POST /api/v1/accounts/{}/notices {{\"category\": \"recording\", \"text\": \"...\"}}",
            a.account_id
        ));
    }
    if a.consents_without_notice > 0 {
        explanations.push(format!(
            "{} consents were granted without a notice version: weaker evidence",
            a.consents_without_notice
        ));
        fixes.push(format!(
            "send notice_version with each consent (POST /api/v1/accounts/{}/consents)",
            a.account_id
        ));
    }
    if explanations.is_empty() {
        let explanation = match (mode, a.recording_notice) {
            (RecordingMode::Off, _) => "recording of GDPR callers is off".to_owned(),
            (m, Some(v)) => format!(
                "recording of GDPR callers is {} with notice version {v}",
                m.as_str()
            ),
            (m, None) => format!("recording of GDPR callers is {}", m.as_str()),
        };
        return pass(ID, explanation);
    }
    item(ID, Status::Warn, explanations.join("; "), fixes.join("; "))
}

fn caller_id_lookup(a: &AccountFacts) -> Item {
    const ID: &str = "caller_id_lookup";
    if !a.collection.caller_name {
        return pass(ID, "caller-ID names are not kept");
    }
    item(
        ID,
        Status::Warn,
        "caller-ID names are kept: justify it or turn it off".into(),
        account_set(
            a,
            "--caller-name false",
            "{\"collection\": {\"caller_name\": false}}",
        ),
    )
}

fn ip_minimised(a: &AccountFacts) -> Item {
    const ID: &str = "ip_minimised";
    match a.collection.visitor_ip {
        IpPolicy::Full => item(
            ID,
            Status::Fail,
            "visitors' full IP addresses are kept".into(),
            account_set(
                a,
                "--visitor-ip truncate",
                "{\"collection\": {\"visitor_ip\": \"truncate\"}}",
            ),
        ),
        p => pass(ID, format!("visitor IP addresses: {}", p.as_str())),
    }
}

fn visitor_details(a: &AccountFacts) -> Item {
    const ID: &str = "visitor_details";
    if !a.collection.visitor_details {
        return pass(ID, "visitor details are not kept");
    }
    item(
        ID,
        Status::Warn,
        "visitor details (user agent, referrer, click ids) are kept: minimise if attribution does not need them".into(),
        account_set(
            a,
            "--visitor-details false",
            "{\"collection\": {\"visitor_details\": false}}",
        ),
    )
}

fn overdue_redactions(a: &AccountFacts) -> Item {
    const ID: &str = "overdue_redactions";
    if a.due_now == 0 {
        return pass(ID, "no call is due for redaction");
    }
    if a.due_a_day_ago > 0 {
        return item(
            ID,
            Status::Fail,
            format!(
                "{} redactions are due, {} of them for more than a day: the sweep is behind",
                a.due_now, a.due_a_day_ago
            ),
            "start `ringfence serve` (its sweep runs every minute) or run `ringfence sweep`, and check its logs".into(),
        );
    }
    item(
        ID,
        Status::Warn,
        format!(
            "{} redactions are due now; the sweep runs every minute",
            a.due_now
        ),
        "wait for the next sweep, or run `ringfence sweep`".into(),
    )
}

fn worker_recent(last: Option<Timestamp>, now: Timestamp) -> Item {
    const ID: &str = "worker_recent";
    let fix = "start `ringfence serve`, or run `ringfence sweep`";
    let Some(last) = last else {
        return item(
            ID,
            Status::Warn,
            "the automatic-redaction sweep has never run".into(),
            fix.into(),
        );
    };
    let age = now.millis() - last.millis();
    let when = format!(
        "the automatic-redaction sweep last ran at {}",
        last.to_rfc3339()
    );
    if age < SWEEP_RECENT_MS {
        pass(ID, when)
    } else if age <= SWEEP_STALE_MS {
        item(
            ID,
            Status::Warn,
            format!("{when}, over 10 minutes ago"),
            fix.into(),
        )
    } else {
        item(
            ID,
            Status::Fail,
            format!("{when}, over an hour ago"),
            fix.into(),
        )
    }
}

fn data_folder_permissions(modes: FolderModes) -> Item {
    const ID: &str = "data_folder_permissions";
    let mut problems = Vec::new();
    if modes.master_key & 0o077 != 0 {
        problems.push(format!(
            "the master key file has mode {:o}, not 600",
            modes.master_key & 0o777
        ));
    }
    if modes.data_dir & 0o007 != 0 {
        problems.push(format!(
            "the data folder has mode {:o}: other users can reach it",
            modes.data_dir & 0o777
        ));
    }
    if problems.is_empty() {
        return pass(
            ID,
            "the master key file and the data folder are private to their owner",
        );
    }
    item(
        ID,
        Status::Fail,
        problems.join("; "),
        "on the server: `chmod 600 <master key file> && chmod 700 <data folder>`".into(),
    )
}

/// The longest any of the account's data is kept before automatic redaction, in days;
/// `None` when some of it is kept forever.
fn longest_retention_days(a: &AccountFacts) -> Option<u32> {
    // Categories removed earlier than the whole call never outlive it.
    a.retention.effective_after_days(a.agency_max_days)
}

const DAY_MS: i64 = 24 * 3600 * 1000;

fn master_key_rotated(a: &AccountFacts, key: MasterKeyFacts, now: Timestamp) -> Item {
    const ID: &str = "master_key_rotated";
    let fix = "on the server: `ringfence vault rotate --new-master-key-file <new key file>` (it makes the file when it does not exist; serving continues)";
    if key.rotation_under_way {
        return item(
            ID,
            Status::Warn,
            "a master-key rotation has started and not finished: the old master key file is still needed".into(),
            "run `ringfence vault rotate --new-master-key-file <the same new key file>` again; it resumes where it stopped".into(),
        );
    }
    let since = key.last_rotated.unwrap_or(key.vault_created);
    let age_days = (now.millis() - since.millis()).max(0) / DAY_MS;
    let longest = longest_retention_days(a);
    let bound = longest.unwrap_or(MASTER_KEY_UNROTATED_FAIL_DAYS);
    let within = match longest {
        Some(days) => format!("the account's longest retention of {days} days"),
        None => {
            format!("{MASTER_KEY_UNROTATED_FAIL_DAYS} days (the account keeps some data forever)")
        }
    };
    match key.last_rotated {
        None if age_days > i64::from(MASTER_KEY_UNROTATED_FAIL_DAYS) => item(
            ID,
            Status::Fail,
            format!(
                "the master key has never been rotated in the {age_days} days since the vault was created: copies of every key destroyed since (backups, free pages) still open with it"
            ),
            fix.into(),
        ),
        _ if age_days > i64::from(bound) => item(
            ID,
            Status::Warn,
            format!(
                "the master key is {age_days} days old, longer than {within}: copies of keys destroyed since it was made still open with it"
            ),
            fix.into(),
        ),
        Some(_) => pass(
            ID,
            format!("the master key was rotated {age_days} days ago, within {within}"),
        ),
        None => pass(
            ID,
            format!(
                "the vault was created {age_days} days ago; the master key is due a rotation within {within}"
            ),
        ),
    }
}

/// An erasure notice queued longer than this is late (retries last about two days).
const LATE_ERASURE_MS: i64 = 24 * 3600 * 1000;

fn recipients(a: &AccountFacts, now: Timestamp) -> Item {
    const ID: &str = "recipients";
    let r = a.recipients;
    let register = format!(
        "register each system calls are forwarded to: POST /api/v1/accounts/{}/recipients {{\"name\", \"url\", \"secret\", \"events\": [\"call.redacted\", \"caller.erased\", \"consent.withdrawn\"]}}",
        a.account_id
    );
    let dead_letters = format!(
        "fix the receiver, then list GET /api/v1/accounts/{}/recipients/{{id}}/deliveries?state=dead and POST …/deliveries/{{delivery_id}}/retry for each",
        a.account_id
    );
    if r.dead_erasures > 0 {
        return item(
            ID,
            Status::Fail,
            format!(
                "{} erasure notices were dead-lettered: a recipient was never told of an erasure (Art. 19)",
                r.dead_erasures
            ),
            dead_letters,
        );
    }
    if r.recipients == 0 {
        return item(
            ID,
            Status::Warn,
            "no recipients are registered: systems that receive this account's calls are not told of erasures".into(),
            register,
        );
    }
    if r.erasure_recipients == 0 {
        return item(
            ID,
            Status::Warn,
            format!(
                "{} {} no erasure notices (call.redacted, caller.erased, consent.withdrawn)",
                crate::text::counted(r.recipients, "recipient", "recipients"),
                if r.recipients == 1 { "takes" } else { "take" }
            ),
            format!(
                "add the erasure events to each: PUT /api/v1/accounts/{}/recipients/{{id}} {{\"events\": [\"call.created\", \"call.redacted\", \"caller.erased\", \"consent.withdrawn\"]}}",
                a.account_id
            ),
        );
    }
    if let Some(oldest) = r.oldest_queued_erasure
        && now.millis() - oldest.millis() > LATE_ERASURE_MS
    {
        return item(
            ID,
            Status::Warn,
            "an erasure notice has been retried for more than a day: a recipient is failing".into(),
            format!(
                "check the failing receiver: GET /api/v1/accounts/{}/recipients/{{id}}/deliveries?state=queued shows its last error",
                a.account_id
            ),
        );
    }
    if r.dead > 0 {
        return item(
            ID,
            Status::Warn,
            format!(
                "{} dead-lettered",
                crate::text::counted(r.dead, "call delivery was", "call deliveries were")
            ),
            dead_letters,
        );
    }
    pass(
        ID,
        format!(
            "{} told of erasures and no notice is dead-lettered",
            crate::text::counted(r.erasure_recipients, "recipient is", "recipients are")
        ),
    )
}

fn tokens(a: &AccountFacts) -> Item {
    const ID: &str = "tokens";
    if a.tokens_without_expiry == 0 {
        return pass(ID, "every token that reaches this account expires");
    }
    item(
        ID,
        Status::Warn,
        format!(
            "{} tokens that reach this account never expire",
            a.tokens_without_expiry
        ),
        "issue tokens that expire (`ringfence token create ... --expires-in-days 90`) and revoke the others (`ringfence token list --account ID`, then `ringfence token revoke TOKEN_ID`)".into(),
    )
}

fn audit_chain(chain: &Result<u64, String>) -> Item {
    const ID: &str = "audit_chain";
    match chain {
        Ok(entries) => pass(ID, format!("the audit journal verifies ({entries} entries)")),
        Err(broken) => item(
            ID,
            Status::Fail,
            format!("the audit journal does not verify: {broken}"),
            "run `ringfence audit verify`, find who changed the journal, and restore it from a backup (`ringfence restore`)".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn all_pass() -> (AccountFacts, InstallationFacts) {
        let account = AccountFacts {
            agency_id: AgencyId::generate(),
            account_id: AccountId::generate(),
            redaction_enabled: true,
            retention: RetentionPolicy {
                after_days: Some(30),
                ..Default::default()
            },
            agency_max_days: None,
            collection: CollectionSettings {
                visitor_details: false,
                ..CollectionSettings::default()
            },
            recording_notice: Some(1),
            consents_without_notice: 0,
            due_now: 0,
            due_a_day_ago: 0,
            tokens_without_expiry: 0,
            recipients: RecipientFacts {
                recipients: 1,
                erasure_recipients: 1,
                ..Default::default()
            },
        };
        let installation = InstallationFacts {
            last_sweep: Some(Timestamp::from_millis(NOW - 60_000)),
            folder: Some(FolderModes {
                data_dir: 0o700,
                master_key: 0o600,
            }),
            audit_chain: Ok(12),
            master_key: MasterKeyFacts {
                vault_created: Timestamp::from_millis(NOW - 400 * DAY_MS),
                last_rotated: Some(Timestamp::from_millis(NOW - 10 * DAY_MS)),
                rotation_under_way: false,
            },
        };
        (account, installation)
    }

    #[test]
    fn a_well_kept_account_passes_every_item() {
        let (a, i) = all_pass();
        let c = account_checklist(&a, &i, Timestamp::from_millis(NOW));
        let ids: Vec<_> = c.items.iter().map(|i| i.id).collect();
        assert_eq!(
            ids,
            [
                "redaction_enabled",
                "auto_redaction",
                "recording_consent_gdpr",
                "caller_id_lookup",
                "ip_minimised",
                "visitor_details",
                "overdue_redactions",
                "worker_recent",
                "data_folder_permissions",
                "master_key_rotated",
                "recipients",
                "tokens",
                "audit_chain"
            ]
        );
        for item in &c.items {
            assert_eq!(item.status, Status::Pass, "{item:?}");
            assert_eq!(item.fix, NOTHING_TO_DO);
        }
        assert_eq!(c.status, Status::Pass);
    }

    type Flip = fn(&mut AccountFacts, &mut InstallationFacts);

    #[test]
    fn each_flipped_fact_changes_exactly_its_item() {
        let cases: &[(&str, Flip, &str, Status, &str)] = &[
            (
                "redaction off",
                |a, _| a.redaction_enabled = false,
                "redaction_enabled",
                Status::Fail,
                "disabled",
            ),
            (
                "no retention",
                |a, _| a.retention.after_days = None,
                "auto_redaction",
                Status::Fail,
                "off",
            ),
            (
                "120 days",
                |a, _| a.retention.after_days = Some(120),
                "auto_redaction",
                Status::Warn,
                "120 days",
            ),
            (
                "90 days",
                |a, _| a.retention.after_days = Some(90),
                "auto_redaction",
                Status::Pass,
                "90 days",
            ),
            (
                "agency max imposes 60",
                |a, _| {
                    a.retention.after_days = None;
                    a.agency_max_days = Some(60)
                },
                "auto_redaction",
                Status::Pass,
                "60 days",
            ),
            (
                "agency max caps 365",
                |a, _| {
                    a.retention.after_days = Some(365);
                    a.agency_max_days = Some(180)
                },
                "auto_redaction",
                Status::Warn,
                "180 days",
            ),
            (
                "opt-in without notice",
                |a, _| a.recording_notice = None,
                "recording_consent_gdpr",
                Status::Warn,
                "no notice text",
            ),
            (
                "announce without notice",
                |a, _| {
                    a.collection.recording_gdpr = RecordingMode::Announce;
                    a.recording_notice = None
                },
                "recording_consent_gdpr",
                Status::Warn,
                "announce",
            ),
            (
                "off without notice",
                |a, _| {
                    a.collection.recording_gdpr = RecordingMode::Off;
                    a.recording_notice = None
                },
                "recording_consent_gdpr",
                Status::Pass,
                "off",
            ),
            (
                "consents without notice",
                |a, _| a.consents_without_notice = 3,
                "recording_consent_gdpr",
                Status::Warn,
                "3 consents were granted without a notice version",
            ),
            (
                "caller name kept",
                |a, _| a.collection.caller_name = true,
                "caller_id_lookup",
                Status::Warn,
                "justify it",
            ),
            (
                "full ip",
                |a, _| a.collection.visitor_ip = IpPolicy::Full,
                "ip_minimised",
                Status::Fail,
                "full IP",
            ),
            (
                "ip dropped",
                |a, _| a.collection.visitor_ip = IpPolicy::Drop,
                "ip_minimised",
                Status::Pass,
                "drop",
            ),
            (
                "visitor details kept",
                |a, _| a.collection.visitor_details = true,
                "visitor_details",
                Status::Warn,
                "minimise",
            ),
            (
                "calls due",
                |a, _| a.due_now = 7,
                "overdue_redactions",
                Status::Warn,
                "7 redactions",
            ),
            (
                "calls overdue",
                |a, _| {
                    a.due_now = 7;
                    a.due_a_day_ago = 2
                },
                "overdue_redactions",
                Status::Fail,
                "behind",
            ),
            (
                "sweep never ran",
                |_, i| i.last_sweep = None,
                "worker_recent",
                Status::Warn,
                "never run",
            ),
            (
                "sweep 30 minutes ago",
                |_, i| i.last_sweep = Some(Timestamp::from_millis(NOW - 30 * 60_000)),
                "worker_recent",
                Status::Warn,
                "10 minutes",
            ),
            (
                "sweep 2 hours ago",
                |_, i| i.last_sweep = Some(Timestamp::from_millis(NOW - 120 * 60_000)),
                "worker_recent",
                Status::Fail,
                "an hour",
            ),
            (
                "key readable by group",
                |_, i| {
                    i.folder = Some(FolderModes {
                        data_dir: 0o700,
                        master_key: 0o640,
                    })
                },
                "data_folder_permissions",
                Status::Fail,
                "640",
            ),
            (
                "folder open to others",
                |_, i| {
                    i.folder = Some(FolderModes {
                        data_dir: 0o755,
                        master_key: 0o600,
                    })
                },
                "data_folder_permissions",
                Status::Fail,
                "755",
            ),
            (
                "read-only key",
                |_, i| {
                    i.folder = Some(FolderModes {
                        data_dir: 0o750,
                        master_key: 0o400,
                    })
                },
                "data_folder_permissions",
                Status::Pass,
                "private",
            ),
            (
                "tokens without expiry",
                |a, _| a.tokens_without_expiry = 2,
                "tokens",
                Status::Warn,
                "2 tokens",
            ),
            (
                "journal broken",
                |_, i| i.audit_chain = Err("entry 4: altered".into()),
                "audit_chain",
                Status::Fail,
                "entry 4",
            ),
            (
                "no recipients",
                |a, _| a.recipients = RecipientFacts::default(),
                "recipients",
                Status::Warn,
                "no recipients",
            ),
            (
                "recipients without erasure events",
                |a, _| a.recipients.erasure_recipients = 0,
                "recipients",
                Status::Warn,
                "no erasure notices",
            ),
            (
                "a dead erasure notice",
                |a, _| {
                    a.recipients.dead = 1;
                    a.recipients.dead_erasures = 1;
                },
                "recipients",
                Status::Fail,
                "dead-lettered",
            ),
            (
                "a dead call delivery",
                |a, _| a.recipients.dead = 2,
                "recipients",
                Status::Warn,
                "2 call deliveries",
            ),
            (
                "an erasure notice late",
                |a, _| {
                    a.recipients.oldest_queued_erasure =
                        Some(Timestamp::from_millis(NOW - LATE_ERASURE_MS - 1))
                },
                "recipients",
                Status::Warn,
                "more than a day",
            ),
            (
                "an erasure notice queued a moment ago",
                |a, _| {
                    a.recipients.oldest_queued_erasure = Some(Timestamp::from_millis(NOW - 1000))
                },
                "recipients",
                Status::Pass,
                "no notice is dead-lettered",
            ),
        ];
        let now = Timestamp::from_millis(NOW);
        for (name, flip, id, expected, says) in cases {
            let (mut a, mut i) = all_pass();
            flip(&mut a, &mut i);
            let c = account_checklist(&a, &i, now);
            for item in &c.items {
                if item.id == *id {
                    assert_eq!(item.status, *expected, "{name}: {item:?}");
                    assert!(item.explanation.contains(says), "{name}: {item:?}");
                    assert!(!item.explanation.contains('\n'), "{name}: one line");
                    assert_eq!(
                        item.fix == NOTHING_TO_DO,
                        *expected == Status::Pass,
                        "{name}: {item:?}"
                    );
                } else {
                    assert_eq!(item.status, Status::Pass, "{name} changed {item:?}");
                }
            }
            assert_eq!(c.status, *expected, "{name}");
        }
    }

    #[test]
    fn the_master_key_is_due_a_rotation_within_the_longest_retention_and_fails_unrotated_after_a_year()
     {
        let now = Timestamp::from_millis(NOW);
        let days_ago = |d: i64| Timestamp::from_millis(NOW - d * DAY_MS);
        // (case, retention days, vault age, last rotation age, under way, status, words)
        type Case = (
            &'static str,
            Option<u32>,
            i64,
            Option<i64>,
            bool,
            Status,
            &'static str,
        );
        let cases: &[Case] = &[
            (
                "rotated recently",
                Some(30),
                400,
                Some(10),
                false,
                Status::Pass,
                "rotated 10 days ago",
            ),
            (
                "rotated on the last day",
                Some(30),
                400,
                Some(30),
                false,
                Status::Pass,
                "within the account's longest retention of 30 days",
            ),
            (
                "rotated before the retention",
                Some(30),
                400,
                Some(31),
                false,
                Status::Warn,
                "31 days old, longer than the account's longest retention of 30 days",
            ),
            (
                "young vault, never rotated",
                Some(90),
                20,
                None,
                false,
                Status::Pass,
                "created 20 days ago",
            ),
            (
                "never rotated past retention",
                Some(30),
                200,
                None,
                false,
                Status::Warn,
                "200 days old",
            ),
            (
                "never rotated for a year",
                Some(30),
                366,
                None,
                false,
                Status::Fail,
                "never been rotated in the 366 days",
            ),
            (
                "never rotated, kept forever, under a year",
                None,
                300,
                None,
                false,
                Status::Pass,
                "keeps some data forever",
            ),
            (
                "rotated, kept forever, over a year ago",
                None,
                900,
                Some(400),
                false,
                Status::Warn,
                "400 days old",
            ),
            (
                "a rotation under way",
                Some(30),
                400,
                Some(10),
                true,
                Status::Warn,
                "has started and not finished",
            ),
        ];
        for (name, retention, vault_age, rotated_age, under_way, status, words) in cases {
            let (mut a, mut i) = all_pass();
            a.retention.after_days = *retention;
            i.master_key = MasterKeyFacts {
                vault_created: days_ago(*vault_age),
                last_rotated: rotated_age.map(days_ago),
                rotation_under_way: *under_way,
            };
            let c = account_checklist(&a, &i, now);
            let it = c
                .items
                .iter()
                .find(|x| x.id == "master_key_rotated")
                .unwrap();
            assert_eq!(it.status, *status, "{name}: {it:?}");
            assert!(it.explanation.contains(words), "{name}: {it:?}");
            if *status == Status::Pass {
                assert_eq!(it.fix, NOTHING_TO_DO, "{name}");
            } else {
                assert!(
                    it.fix
                        .contains("ringfence vault rotate --new-master-key-file"),
                    "{name}: {it:?}"
                );
            }
        }
    }

    #[test]
    fn fixes_name_the_tenant_they_apply_to() {
        let (mut a, i) = all_pass();
        a.redaction_enabled = false;
        a.collection.visitor_ip = IpPolicy::Full;
        let c = account_checklist(&a, &i, Timestamp::from_millis(NOW));
        let fix = |id: &str| c.items.iter().find(|x| x.id == id).unwrap().fix.clone();
        assert!(fix("redaction_enabled").contains(&format!(
            "ringfence agency set {} --redaction-enabled true",
            a.agency_id
        )));
        assert!(fix("ip_minimised").contains(&format!(
            "ringfence account set {} --visitor-ip truncate",
            a.account_id
        )));
        assert_eq!(c.status, Status::Fail);
    }

    #[test]
    fn unknown_folder_modes_leave_the_item_out() {
        let (a, mut i) = all_pass();
        i.folder = None;
        let c = account_checklist(&a, &i, Timestamp::from_millis(NOW));
        assert!(c.items.iter().all(|x| x.id != "data_folder_permissions"));
    }

    #[test]
    fn the_agency_roll_up_puts_the_worst_accounts_first() {
        let now = Timestamp::from_millis(NOW);
        let (good, i) = all_pass();
        let (mut warned, _) = all_pass();
        warned.collection.caller_name = true;
        let (mut failed, _) = all_pass();
        failed.collection.visitor_ip = IpPolicy::Full;
        let lists: Vec<_> = [&good, &warned, &failed]
            .into_iter()
            .map(|a| account_checklist(a, &i, now))
            .collect();
        let agency = agency_checklist(good.agency_id, lists);
        let order: Vec<_> = agency.accounts.iter().map(|c| c.account_id).collect();
        assert_eq!(
            order,
            [failed.account_id, warned.account_id, good.account_id]
        );
        assert_eq!(agency.status, Status::Fail);
        assert_eq!(
            agency_checklist(good.agency_id, Vec::new()).status,
            Status::Pass
        );
    }
}
