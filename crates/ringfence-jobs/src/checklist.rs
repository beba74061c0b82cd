//! Gathers the compliance checklist's facts from the stores (and, when this process knows
//! them, the modes of the data folder and master key file); the rules themselves are
//! `ringfence_core::checklist`. The API and the command line both call these functions.
//!
//! Only counts, settings, ids and times are read here: no sealed field is ever opened.

use std::path::PathBuf;

use ringfence_core::access::Scope;
use ringfence_core::checklist::{
    self, AccountFacts, AgencyChecklist, Checklist, FolderModes, InstallationFacts, MasterKeyFacts,
    RecipientFacts,
};
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, AgencyId, DataCategory};
use ringfence_store::journal::verify_journal;
use ringfence_store::{AccountRecord, AgencyRecord, CallLog, LogError, TokenRecord};

use crate::retention::{AccountSweep, SWEEP_JOB, preview};

/// Where the installation keeps its data on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPaths {
    pub data_dir: PathBuf,
    pub master_key_file: PathBuf,
}

/// Facts shared by every account: computed once per checklist, even for a whole agency.
struct Shared {
    installation: InstallationFacts,
    tokens: Vec<TokenRecord>,
    now: Timestamp,
}

async fn shared(log: &CallLog, paths: Option<&DataPaths>) -> Result<Shared, LogError> {
    let now = Timestamp::now();
    let last_sweep = log
        .store()
        .job_runs()
        .await?
        .into_iter()
        .find(|(name, _)| name == SWEEP_JOB)
        .map(|(_, at)| at);
    let anchor = log.vault().journal_anchor().await?;
    let audit_chain = verify_journal(log.store().as_ref(), anchor)
        .await?
        .map(|v| v.entries)
        .map_err(|broken| broken.to_string());
    let keys = log.vault().master_key_status().await?;
    let master_key = MasterKeyFacts {
        vault_created: Timestamp::from_millis(keys.created_at_millis),
        last_rotated: keys.last_rotated_millis().map(Timestamp::from_millis),
        rotation_under_way: keys.next().is_some(),
    };
    let folder = match paths {
        Some(p) => folder_modes(p).await,
        None => None,
    };
    Ok(Shared {
        installation: InstallationFacts {
            last_sweep,
            folder,
            audit_chain,
            master_key,
        },
        tokens: log.store().list_tokens().await?,
        now,
    })
}

#[cfg(unix)]
async fn folder_modes(paths: &DataPaths) -> Option<FolderModes> {
    use std::os::unix::fs::PermissionsExt;
    let data_dir = tokio::fs::metadata(&paths.data_dir).await.ok()?;
    let master_key = tokio::fs::metadata(&paths.master_key_file).await.ok()?;
    Some(FolderModes {
        data_dir: data_dir.permissions().mode(),
        master_key: master_key.permissions().mode(),
    })
}

/// Without Unix modes there is nothing honest to report: the item is left out.
#[cfg(not(unix))]
async fn folder_modes(_: &DataPaths) -> Option<FolderModes> {
    None
}

fn total(sweep: &AccountSweep) -> u64 {
    sweep.calls + sweep.categories.values().sum::<u64>()
}

fn reaches(token: &TokenRecord, account: &AccountRecord) -> bool {
    match token.scope {
        Scope::Installation => true,
        Scope::Agency(agency) => agency == account.agency_id,
        Scope::Account { account: id, .. } => id == account.id,
    }
}

async fn account_facts(
    log: &CallLog,
    account: &AccountRecord,
    agency: &AgencyRecord,
    shared: &Shared,
) -> Result<AccountFacts, LogError> {
    let store = log.store();
    let recording_notice = store
        .notices(account.id)
        .await?
        .into_iter()
        .filter(|n| n.category == DataCategory::Recording)
        .map(|n| n.version)
        .max();
    let mut consents_without_notice = 0u64;
    let mut after_seq = None;
    loop {
        let page = store.consents(account.id, None, after_seq, 1000).await?;
        let Some(last) = page.last() else { break };
        after_seq = Some(last.seq);
        consents_without_notice += page
            .iter()
            .filter(|c| c.status.weak_without_notice(c.notice_version))
            .count() as u64;
    }
    let agency_max = agency.max_retention_days;
    let due_now = total(&preview(log, account, agency_max, shared.now).await?);
    let due_a_day_ago = if due_now == 0 {
        0
    } else {
        total(&preview(log, account, agency_max, shared.now.minus_days(1)).await?)
    };
    let tokens_without_expiry = shared
        .tokens
        .iter()
        .filter(|t| t.revoked_at.is_none() && t.expires_at.is_none() && reaches(t, account))
        .count() as u64;
    let outbox = store.delivery_summary(account.id).await?;
    Ok(AccountFacts {
        agency_id: agency.id,
        account_id: account.id,
        redaction_enabled: agency.redaction_enabled,
        retention: account.retention.clone(),
        agency_max_days: agency_max,
        collection: account.collection,
        recording_notice,
        consents_without_notice,
        due_now,
        due_a_day_ago,
        tokens_without_expiry,
        recipients: RecipientFacts {
            recipients: outbox.recipients,
            erasure_recipients: outbox.erasure_recipients,
            dead: outbox.dead,
            dead_erasures: outbox.dead_erasures,
            oldest_queued_erasure: outbox.oldest_queued_erasure,
        },
    })
}

/// An account's checklist; `None` when the account does not exist.
pub async fn account_checklist(
    log: &CallLog,
    account: AccountId,
    paths: Option<&DataPaths>,
) -> Result<Option<Checklist>, LogError> {
    let Some(account) = log.store().account(account).await? else {
        return Ok(None);
    };
    let Some(agency) = log.store().agency(account.agency_id).await? else {
        return Ok(None);
    };
    let shared = shared(log, paths).await?;
    let facts = account_facts(log, &account, &agency, &shared).await?;
    Ok(Some(checklist::account_checklist(
        &facts,
        &shared.installation,
        shared.now,
    )))
}

/// An agency's roll-up, its accounts worst first; `None` when the agency does not exist.
pub async fn agency_checklist(
    log: &CallLog,
    agency: AgencyId,
    paths: Option<&DataPaths>,
) -> Result<Option<AgencyChecklist>, LogError> {
    let Some(agency) = log.store().agency(agency).await? else {
        return Ok(None);
    };
    let shared = shared(log, paths).await?;
    let mut accounts = Vec::new();
    for account in log.store().list_accounts(Some(agency.id)).await? {
        let facts = account_facts(log, &account, &agency, &shared).await?;
        accounts.push(checklist::account_checklist(
            &facts,
            &shared.installation,
            shared.now,
        ));
    }
    Ok(Some(checklist::agency_checklist(agency.id, accounts)))
}
