//! The command-line commands. Each prints a human line, or exactly one JSON document with
//! `--json`. Errors go to stderr with exit code 1; usage errors exit 2 (clap).

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use ringfence_core::access::{Principal, Role, Scope};
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, AgencyId, TokenId};
use ringfence_crypto::new_api_token;
use ringfence_store::{AccountRecord, AgencyRecord, TokenRecord};

use crate::app::Resources;

#[derive(Debug, Subcommand)]
pub enum AgencyCommand {
    /// Create an agency; prints its id.
    Create {
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
        /// Longest retention (days) its accounts may use; 0 removes the limit.
        #[arg(long, value_name = "N")]
        max_retention_days: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account under an agency; prints its id.
    Create {
        #[arg(long)]
        agency: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token; prints it once (only its hash is stored).
    Create(TokenArgs),
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
            store.update_agency(record.clone()).await?;
            print(
                as_json,
                json!({"id": record.id.to_string(), "redaction_enabled": record.redaction_enabled, "max_retention_days": record.max_retention_days}),
                &format!("agency {} updated", record.id),
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
    let AccountCommand::Create { agency, name } = command;
    let agency: AgencyId = parse_id(&agency, "--agency")?;
    let store = resources.log.store();
    store
        .agency(agency)
        .await?
        .with_context(|| format!("no agency {agency}"))?;
    let record = AccountRecord {
        id: AccountId::generate(),
        agency_id: agency,
        name: label(&name, "--name")?,
        settings: "{}".to_owned(),
        created_at: Timestamp::now(),
    };
    store.create_account(record.clone()).await?;
    // The blind-index key is made now, so the first call does not wait for it.
    resources.log.blind_key(record.id).await?;
    print(
        as_json,
        json!({"id": record.id.to_string()}),
        &format!("created account {}", record.id),
    );
    Ok(())
}

/// Creates a token and returns `(id, token)`.
pub async fn create_token(
    resources: &Resources,
    args: &TokenArgs,
) -> anyhow::Result<(TokenId, String)> {
    let role = Role::parse(&args.role).with_context(|| {
        format!(
            "--role must be one of {}",
            Role::ALL.map(Role::as_str).join(", ")
        )
    })?;
    let store = resources.log.store();
    let scope = match (&args.agency, &args.account) {
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
                && parse_id::<AgencyId>(agency, "--agency")? != record.agency_id {
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
    if args.no_personal_data && role != Role::Analyst {
        bail!("--no-personal-data applies to analysts only");
    }
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
    };
    store.create_token(record.clone()).await?;
    Ok((record.id, token))
}

pub async fn token(
    resources: &Resources,
    command: TokenCommand,
    as_json: bool,
) -> anyhow::Result<()> {
    let TokenCommand::Create(args) = command;
    let (id, token) = create_token(resources, &args).await?;
    if as_json {
        println!("{}", json!({"id": id.to_string(), "token": token}));
    } else {
        println!("{token}");
        eprintln!("token {id} created; it is shown only this once");
    }
    Ok(())
}

pub fn print(as_json: bool, value: serde_json::Value, human: &str) {
    if as_json {
        println!("{value}");
    } else {
        println!("{human}");
    }
}
