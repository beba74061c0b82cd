//! `ringfence`: wires configuration, telemetry and commands. Nothing else lives here.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ringfence::commands::{
    self, AccountCommand, AgencyCommand, AuditCommand, RedactCommand, TokenArgs, TokenCommand,
    UserCommand,
};
use ringfence::config::{Config, DatabaseLocation, GlobalArgs};
use ringfence::{Application, Resources, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "ringfence",
    version,
    about = "Privacy-first call-tracking data platform"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    /// Print exactly one JSON document on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (creates --data on first start).
    Serve,
    /// Fill --data with realistic synthetic agencies, accounts, calls and recordings.
    Demo {
        /// How many synthetic calls to create, spread over the last 120 days.
        #[arg(long, default_value_t = 5000)]
        calls: usize,
    },
    /// Agencies.
    #[command(subcommand)]
    Agency(AgencyCommand),
    /// Accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Users of the web interface.
    #[command(subcommand)]
    User(UserCommand),
    /// Redact a call or a caller (irreversible).
    #[command(subcommand)]
    Redact(RedactCommand),
    /// The audit journal.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Export what is held about someone (an access or portability request).
    #[command(subcommand)]
    Export(commands::ExportCommand),
    /// The compliance checklist of an account, or of each account of an agency (worst first).
    Checklist {
        /// The account to check.
        #[arg(
            long,
            value_name = "ID",
            conflicts_with = "agency",
            required_unless_present = "agency"
        )]
        account: Option<String>,
        /// The agency whose accounts are checked, worst first.
        #[arg(long, value_name = "ID")]
        agency: Option<String>,
    },
    /// Run automatic redaction now, with a progress bar; prints counts per account and category.
    Sweep {
        /// Count what is due, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Take a consistent backup while the server runs (never includes the master key).
    Backup {
        /// The folder to write the backup into.
        #[arg(long, value_name = "DIR")]
        out: std::path::PathBuf,
    },
    /// The vault of data keys.
    #[command(subcommand)]
    Vault(VaultCommand),
    /// Restore a backup into an empty --data folder, re-applying every redaction journaled since.
    Restore {
        /// The backup folder `ringfence backup --out` wrote.
        #[arg(long, value_name = "DIR")]
        from: std::path::PathBuf,
        /// The live data folder (or its ringfence.db) whose journal holds the redactions since the backup.
        #[arg(long, value_name = "PATH")]
        journal_from: Option<std::path::PathBuf>,
        /// Restore without re-applying later redactions (only when no journal survives).
        #[arg(long)]
        no_journal: bool,
    },
    /// On a call log restored by PostgreSQL's own tools (pg_restore, pg_basebackup) or copied
    /// back, re-apply every redaction, removal and forget the live journal recorded after the
    /// restored one ends; run it before serving. It verifies the live journal's hash chain
    /// first, journals what it did, and running it again applies only what is new.
    #[command(
        after_help = "Example, after restoring last night's dumps into new databases:\n  ringfence replay --database-url postgres://ringfence@db/calls_restored \\\n    --vault-url postgres://ringfence@db/vault_restored --journal-from postgres://ringfence@db/calls"
    )]
    Replay {
        /// The live call log whose journal runs past the restored one: a postgres:// URL, a
        /// SQLite data folder or its ringfence.db. Only read.
        #[arg(long, value_name = "SOURCE")]
        journal_from: String,
    },
}

#[derive(Debug, Subcommand)]
enum VaultCommand {
    /// Re-wrap every data key under a new master key while the server runs, make it the master
    /// key file and destroy the old one. Run it again to finish one that was interrupted.
    Rotate {
        /// The new master key file: made (0600) if it does not exist. It stays with you as a
        /// copy of the new key; the data folder gets its own.
        #[arg(long, value_name = "FILE")]
        new_master_key_file: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    // Every file and folder this process creates is its owner's alone (0600/0700), from
    // the moment it exists: temporary files of the object store and SQLite's included.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    let config = match Config::resolve(&cli.global) {
        Ok(c) => c,
        Err(e) => {
            commands::print_error(cli.json, "invalid_configuration", &format!("{e:#}"));
            return ExitCode::from(2);
        }
    };
    telemetry::init_logs(&config.log, config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            commands::print_error(
                cli.json,
                "internal",
                &format!("cannot start the runtime: {e}"),
            );
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config, cli.json)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            commands::print_error(cli.json, commands::error_code(&e), &format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config, json: bool) -> anyhow::Result<()> {
    // Restore must not create a data folder or a master key before it has checked them.
    if let Command::Restore {
        from,
        journal_from,
        no_journal,
    } = &command
    {
        let summary =
            ringfence::backup::restore(&config, from, journal_from.as_deref(), *no_journal).await?;
        commands::print(json, summary.clone(), &commands::human(&summary));
        return Ok(());
    }
    // Commands that read or change what is already stored never start an empty folder: run
    // in the wrong directory, `audit verify` would otherwise report an empty journal intact.
    let needs_data = matches!(
        command,
        Command::Redact(_)
            | Command::Audit(_)
            | Command::Export(_)
            | Command::Checklist { .. }
            | Command::Sweep { .. }
            | Command::Backup { .. }
            | Command::Vault(_)
            | Command::Replay { .. }
    );
    if needs_data {
        match &config.database {
            DatabaseLocation::Sqlite(call_log) => anyhow::ensure!(
                call_log.exists(),
                "no Ringfence data at {}: pass --data (or set RINGFENCE_DATA) to the folder `serve` uses",
                config.data.display()
            ),
            DatabaseLocation::Postgres(url) => anyhow::ensure!(
                ringfence_store_postgres::is_initialised(
                    url,
                    ringfence_store_postgres::Schema::CallLog
                )
                .await?,
                "no Ringfence data in {url} (no call log was ever opened there): pass the --database-url that `serve` uses"
            ),
        }
    }
    let resources = Resources::open(&config).await?;
    let result = match command {
        Command::Serve => serve(&resources).await,
        Command::Demo { calls } => {
            let summary = ringfence::demo::run_demo(&resources, calls, !json).await?;
            commands::print(json, summary.clone(), &commands::human(&summary));
            Ok(())
        }
        Command::Agency(c) => commands::agency(&resources, c, json).await,
        Command::Account(c) => commands::account(&resources, c, json).await,
        Command::Token(c) => commands::token(&resources, c, json).await,
        Command::User(c) => commands::user(&resources, c, json).await,
        Command::Redact(c) => commands::redact(&resources, c, json).await,
        Command::Audit(c) => commands::audit(&resources, c, json).await,
        Command::Export(c) => commands::export(&resources, c, json).await,
        Command::Checklist { account, agency } => {
            commands::checklist(&resources, account, agency, json).await
        }
        Command::Sweep { dry_run } => commands::sweep(&resources, dry_run, json).await,
        Command::Backup { out } => match ringfence::backup::backup(&resources, &out).await {
            Ok(summary) => {
                commands::print(json, summary.clone(), &commands::human(&summary));
                Ok(())
            }
            Err(e) => Err(e),
        },
        Command::Vault(VaultCommand::Rotate {
            new_master_key_file,
        }) => commands::rotate_master_key(&resources, &new_master_key_file, json).await,
        Command::Replay { journal_from } => ringfence::replay::replay(&resources, &journal_from)
            .await
            .map(|summary| commands::print(json, summary.clone(), &commands::human(&summary))),
        Command::Restore { .. } => unreachable!("handled above"),
    };
    // Whatever the command journaled, the journal's head is recorded apart from it.
    if let Err(e) = resources.log.anchor_journal().await {
        tracing::warn!(cause = %e, "could not record the journal's head");
    }
    // Keys issued ahead of need open nothing once the process ends.
    resources.log.key_pool().release().await;
    resources.close().await;
    result
}

async fn serve(resources: &Resources) -> anyhow::Result<()> {
    if resources.log.store().token_count().await? == 0 {
        let args = TokenArgs {
            role: "admin".into(),
            agency: None,
            account: None,
            label: Some("bootstrap".into()),
            no_personal_data: false,
            expires_in_days: None,
        };
        let (id, token) = commands::create_token(resources, &args).await?;
        println!("Bootstrap admin token (shown once, keep it safe): {token}");
        tracing::info!(token_id = %id, "created the bootstrap admin token");
    }
    let resumed = resources.log.resume_redactions().await?;
    if resumed > 0 {
        tracing::info!(jobs = resumed, "finished redactions interrupted by a crash");
    }
    let shutdown = shutdown_signal()?;
    let app = Application::build(resources).await?;
    tracing::info!(address = %app.address(), "serving");
    println!("Ringfence listening on http://{}", app.address());
    let (stop_jobs, jobs_stopped) = tokio::sync::watch::channel(false);
    let log = resources.log.clone();
    let jobs = tokio::spawn(ringfence_jobs::scheduler::run_every(
        "orphan_keys",
        std::time::Duration::from_secs(3600),
        jobs_stopped,
        move || {
            let log = log.clone();
            async move {
                let now = ringfence_core::timestamp::Timestamp::now();
                ringfence_jobs::collect_orphan_keys(&log, ringfence_jobs::orphan_keys::GRACE, now)
                    .await?;
                ringfence_jobs::orphan_recordings::collect_orphan_recordings(
                    &log,
                    ringfence_jobs::orphan_recordings::GRACE,
                    now,
                )
                .await
                .map(|_| ())
            }
        },
    ));
    let log = resources.log.clone();
    let repair = tokio::spawn(ringfence_jobs::scheduler::run_every(
        "resume_redactions",
        std::time::Duration::from_secs(60),
        stop_jobs.subscribe(),
        move || {
            let log = log.clone();
            async move {
                log.resume_redactions().await?;
                // Picks up a rotation's pending key, and drops a key a rotation retired.
                log.vault().reload().await?;
                log.anchor_journal().await
            }
        },
    ));
    let log = resources.log.clone();
    let sweeper = tokio::spawn(ringfence_jobs::scheduler::run_every(
        "retention",
        std::time::Duration::from_secs(resources.config.sweep_interval_secs),
        stop_jobs.subscribe(),
        move || {
            let log = log.clone();
            async move {
                ringfence_jobs::retention::sweep(
                    &log,
                    ringfence_jobs::retention::SweepOptions::now(),
                    &mut |_| {},
                )
                .await
                .map(|_| ())
            }
        },
    ));
    let log = resources.log.clone();
    let downloader = ringfence_jobs::downloads::Downloader::new(
        std::time::Duration::from_secs(60),
        resources.config.max_recording_bytes,
        resources.config.twilio_media.clone(),
    )?;
    let downloads = tokio::spawn(ringfence_jobs::scheduler::run_every(
        "recording_downloads",
        std::time::Duration::from_secs(2),
        stop_jobs.subscribe(),
        move || {
            let log = log.clone();
            let downloader = downloader.clone();
            async move {
                ringfence_jobs::downloads::run_due(
                    &log,
                    &downloader,
                    ringfence_core::timestamp::Timestamp::now(),
                )
                .await
                .map(|_| ())
            }
        },
    ));
    let log = resources.log.clone();
    let deliverer = ringfence_jobs::deliveries::Deliverer::new(
        std::time::Duration::from_secs(15),
        ringfence_http::webhook_call_renderer(),
        ringfence_jobs::outbound::AddressGuard {
            allow_loopback: resources.config.allow_local_relays,
        },
    )?;
    let deliveries = tokio::spawn(ringfence_jobs::scheduler::run_every(
        "deliveries",
        std::time::Duration::from_secs(1),
        stop_jobs.subscribe(),
        move || {
            let log = log.clone();
            let deliverer = deliverer.clone();
            async move {
                ringfence_jobs::deliveries::run_due(
                    &log,
                    &deliverer,
                    ringfence_core::timestamp::Timestamp::now(),
                )
                .await
                .map(|_| ())
            }
        },
    ));
    app.run_until(shutdown).await?;
    let _ = stop_jobs.send(true);
    let _ = deliveries.await;
    let _ = downloads.await;
    let _ = sweeper.await;
    let _ = jobs.await;
    let _ = repair.await;
    tracing::info!("stopped; every acknowledged write is committed");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed before this returns, so a
/// signal that arrives as soon as the server says it is listening is not missed.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("interrupted (SIGINT): shutting down"),
                _ = terminate.recv() => tracing::info!("terminated (SIGTERM): shutting down"),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async move {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
