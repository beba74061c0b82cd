//! Erasure benchmarks: redacting a caller among a large log, and automatic redaction (the
//! sweep) against a raw-SQL baseline that clears the same columns and deletes the same key
//! rows in batches, with the same schema, indexes and pragmas — on SQLite, or with
//! `--database-url` on PostgreSQL, in databases the run makes on that server and drops.
//!
//! ```text
//! cargo run --release -p ringfence-bench --bin erasure -- redact-caller
//! cargo run --release -p ringfence-bench --bin erasure -- sweep
//! cargo run --release -p ringfence-bench --bin erasure -- sweep --database-url postgres://postgres@127.0.0.1:5432/test
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use rusqlite::params;

use ringfence::config::DatabaseLocation;
use ringfence::{Config, Resources};
use ringfence_core::call::{
    CallerIdentity, CallerLocation, InteractionContent, NewCall, RedactionReason,
};
use ringfence_core::datamap::{DataCategory, Entity, columns_of};
use ringfence_core::phone::{E164, parse_e164};
use ringfence_core::retention::RetentionPolicy;
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, AgencyId, Personal};
use ringfence_jobs::retention::{SweepOptions, sweep};
use ringfence_store::{AccountRecord, AgencyRecord, AuditEvent};
use ringfence_store_postgres::DatabaseUrl;
use ringfence_store_sqlite::Checkpointer;

#[path = "../pg.rs"]
#[allow(dead_code)]
mod pg;

use pg::Databases;

/// Carries the server's URL (credentials included) to the sweep's child process, which
/// never prints it.
const URL_VARIABLE: &str = "RINGFENCE_BENCH_DATABASE_URL";

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Redact one caller's calls scattered through a large log, several callers; median time.
    RedactCaller {
        #[arg(long, default_value_t = 1_000_000)]
        calls: usize,
        #[arg(long, default_value_t = 1_000)]
        per_caller: usize,
        #[arg(long, default_value_t = 7)]
        repeat: usize,
        /// Run on PostgreSQL: fresh databases on the server this URL names, dropped after.
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
    },
    /// Automatic redaction of overdue calls, against the raw-SQL baseline; peak memory.
    Sweep {
        #[arg(long, default_value_t = 1_000_000)]
        calls: usize,
        /// Calls (each with a recording) for the recordings run (0: no such run).
        #[arg(long, default_value_t = 20_000)]
        recordings: usize,
        /// Repetitions: each sweeps a fresh copy of the same data, baseline and Ringfence
        /// alternately; the table shows medians and ranges.
        #[arg(long, default_value_t = 1)]
        repeat: usize,
        /// How the baseline checkpoints: in a thread of its own as Ringfence's writers do
        /// (`background`), or inside its commits as SQLite does by default (`inline`).
        #[arg(long, value_enum, default_value_t = BaselineCheckpoint::Background)]
        baseline_checkpoint: BaselineCheckpoint,
        /// Run on PostgreSQL: fresh databases on the server this URL names, dropped after.
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
    },
    /// (internal) Runs one sweep in this process and prints seconds and peak memory.
    SweepChild {
        data: PathBuf,
        /// The call log's and the vault's databases on the server of the URL in the
        /// environment (PostgreSQL runs).
        #[arg(long, num_args = 2, value_names = ["LOG", "VAULT"])]
        databases: Option<Vec<String>>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum, Debug)]
enum BaselineCheckpoint {
    Background,
    Inline,
}

/// The configuration of a data folder whose databases are `postgres`'s, or its SQLite files.
fn config(data: &Path, postgres: Option<&Databases>) -> Config {
    let mut config = Config::in_folder(data);
    if let Some(dbs) = postgres {
        config.database = DatabaseLocation::Postgres(dbs.log.clone());
        config.vault = DatabaseLocation::Postgres(dbs.vault.clone());
    }
    config
}

fn e164(text: &str) -> E164 {
    parse_e164(text).expect("fiction number")
}

/// Callers: `+44 20 7946 0xxx` and `+1 415 555 01xx`.
fn numbers() -> Vec<E164> {
    let mut out: Vec<E164> = (0..1000)
        .map(|n| e164(&format!("+44207946{n:04}")))
        .collect();
    out.extend((0..100).map(|n| e164(&format!("+1415555{:04}", 100 + n))));
    out
}

fn call(i: usize, number: E164, started_at: Timestamp, tracking: &E164) -> NewCall {
    NewCall {
        external_id: Some(format!("b-{i}")),
        started_at,
        duration_s: Some(60 + (i % 300) as u32),
        direction: None,
        status: None,
        tracking_number: tracking.clone(),
        source: Some(["google_ads", "facebook_ads", "organic"][i % 3].into()),
        campaign: Some("winter".into()),
        utm: Default::default(),
        caller: CallerIdentity {
            number: Some(number),
            name: Some(Personal::new("Joe Bloggs".into())),
            forwarded_from: None,
        },
        location: CallerLocation {
            city: Some(Personal::new("London".into())),
            region: None,
            postal_code: None,
            country: Some(Personal::new("GB".into())),
        },
        transcript: Some(Personal::new(
            "Hello, I would like a quote for a new boiler, please call me back.".into(),
        )),
        interaction: InteractionContent {
            notes: None,
            tags: Personal::new(vec!["lead".into()]),
        },
        session_id: None,
        consents: Vec::new(),
        visitor: None,
    }
}

async fn tenant(resources: &Resources) -> anyhow::Result<AccountId> {
    let agency = AgencyRecord {
        id: AgencyId::generate(),
        name: "Bench".into(),
        redaction_enabled: true,
        max_retention_days: None,
        created_at: Timestamp::now(),
    };
    resources.log.store().create_agency(agency.clone()).await?;
    let account = AccountRecord {
        twilio_auth_token: None,
        twilio_delete_recordings: false,
        twilio_account_sid: None,
        id: AccountId::generate(),
        agency_id: agency.id,
        name: "Bench".into(),
        collection: ringfence_core::collection::CollectionSettings::collect_all(),
        created_at: Timestamp::now(),
        retention: RetentionPolicy::default(),
    };
    resources
        .log
        .store()
        .create_account(account.clone())
        .await?;
    Ok(account.id)
}

/// Ingests `count` calls through the call log; `caller_of(i)` picks each call's number.
async fn fill(
    resources: &Resources,
    account: AccountId,
    count: usize,
    days_ago: u32,
    caller_of: impl Fn(usize) -> E164,
) -> anyhow::Result<()> {
    let tracking = e164("+14155550100");
    let base = Timestamp::now().minus_days(days_ago);
    let started = Instant::now();
    let mut made = 0;
    while made < count {
        let n = (count - made).min(5000);
        let batch: Vec<NewCall> = (made..made + n)
            .map(|i| {
                call(
                    i,
                    caller_of(i),
                    Timestamp::from_millis(base.millis() - (i as i64 % 3_000_000)),
                    &tracking,
                )
            })
            .collect();
        resources
            .log
            .ingest_calls(
                account,
                batch,
                &ringfence_store::IngestPolicy::collect_all("bench"),
            )
            .await?;
        made += n;
        if made % 100_000 == 0 {
            eprintln!(
                "  ingested {made} calls ({:.0}/s)",
                made as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn redact_caller_bench(
    calls: usize,
    per_caller: usize,
    repeat: usize,
    postgres: Option<&DatabaseUrl>,
) -> anyhow::Result<()> {
    let dbs = match postgres {
        Some(url) => {
            eprintln!("PostgreSQL at {url}: {}", pg::describe_server(url).await?);
            Some(Databases::create(url, None).await?)
        }
        None => None,
    };
    let measured = redact_caller_on(calls, per_caller, repeat, dbs.as_ref()).await;
    if let Some(dbs) = dbs {
        dbs.drop().await;
    }
    measured
}

async fn redact_caller_on(
    calls: usize,
    per_caller: usize,
    repeat: usize,
    postgres: Option<&Databases>,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let resources = Resources::open(&config(&dir.path().join("data"), postgres)).await?;
    let account = tenant(&resources).await?;
    let others = numbers();
    // Target callers from a range no other call uses; each spread evenly through the log.
    let targets: Vec<E164> = (0..repeat)
        .map(|k| e164(&format!("+1212555{:04}", 100 + k)))
        .collect();
    let stride = calls / per_caller;
    eprintln!("filling {calls} calls ({repeat} callers x {per_caller} scattered among them)");
    // Each block of `stride` calls holds one call of each target, at its first offsets.
    fill(&resources, account, calls, 10, |i| {
        let offset = i % stride;
        if offset < targets.len() && i / stride < per_caller {
            targets[offset].clone()
        } else {
            others[i % others.len()].clone()
        }
    })
    .await?;
    let mut times = Vec::new();
    for (k, number) in targets.iter().enumerate() {
        let audit = AuditEvent {
            actor: "bench".into(),
            action: "caller.redacted".into(),
            account_id: Some(account),
            reason: Some(RedactionReason::Caller.as_str().into()),
            details: "{}".into(),
            ..Default::default()
        };
        let started = Instant::now();
        let receipt = resources
            .log
            .redact_caller(&[account], number, false, audit)
            .await?;
        let took = started.elapsed();
        anyhow::ensure!(
            receipt.redacted_calls == per_caller as u64,
            "caller {k}: redacted {} calls, expected {per_caller}",
            receipt.redacted_calls
        );
        eprintln!(
            "  caller {k}: {} calls in {:.1} ms",
            receipt.redacted_calls,
            took.as_secs_f64() * 1000.0
        );
        times.push(took);
    }
    let m = median(times.clone());
    // Issue 20 sets PostgreSQL's target at 200 ms (a redaction's rows go over the network).
    let target_ms = if postgres.is_some() { 200 } else { 100 };
    println!(
        "redact-caller: {per_caller} calls among {calls}: median {:.1} ms, min {:.1} ms, max {:.1} ms over {repeat} callers (target < {target_ms} ms: {})",
        m.as_secs_f64() * 1000.0,
        times.iter().min().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        times.iter().max().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        if m < Duration::from_millis(target_ms) {
            "met"
        } else {
            "NOT met"
        }
    );
    resources.close().await;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Runs the sweep in a fresh process so that its peak memory is the sweep's alone.
fn sweep_in_child(data: &Path, postgres: Option<&Databases>) -> anyhow::Result<(f64, u64, f64)> {
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command.arg("sweep-child").arg(data);
    if let Some(dbs) = postgres {
        let url = CHILD_URL
            .get()
            .context("no server URL for the sweep child")?;
        command
            .env(URL_VARIABLE, url)
            .arg("--databases")
            .arg(dbs.log.database())
            .arg(dbs.vault.database());
    }
    let out = command.stderr(std::process::Stdio::inherit()).output()?;
    anyhow::ensure!(out.status.success(), "sweep child failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok((
        v["seconds"].as_f64().unwrap_or(0.0),
        v["calls"].as_u64().unwrap_or(0),
        v["peak_rss_mb"].as_f64().unwrap_or(0.0),
    ))
}

async fn sweep_child(data: &Path, databases: Option<Vec<String>>) -> anyhow::Result<()> {
    let mut config = Config::in_folder(data);
    if let Some(names) = databases {
        let server: DatabaseUrl = std::env::var(URL_VARIABLE)
            .context("the sweep child needs the server's URL in its environment")?
            .parse()?;
        anyhow::ensure!(names.len() == 2, "--databases takes two names");
        config.database = DatabaseLocation::Postgres(server.with_database(&names[0]));
        config.vault = DatabaseLocation::Postgres(server.with_database(&names[1]));
    }
    let resources = Resources::open(&config).await?;
    let started = Instant::now();
    let report = sweep(&resources.log, SweepOptions::now(), &mut |_| {}).await?;
    let seconds = started.elapsed().as_secs_f64();
    resources.close().await;
    println!(
        "{}",
        serde_json::json!({"seconds": seconds, "calls": report.total_calls(), "peak_rss_mb": peak_rss_mb()})
    );
    Ok(())
}

/// The baseline: the same clearing with plain SQL, same pragmas, batches of 2,000.
fn baseline_sweep(
    data: &Path,
    account: AccountId,
    checkpoint: BaselineCheckpoint,
) -> anyhow::Result<(f64, u64)> {
    let open = |p: PathBuf| -> anyhow::Result<rusqlite::Connection> {
        let c = rusqlite::Connection::open(p)?;
        c.pragma_update(None, "journal_mode", "WAL")?;
        c.pragma_update(None, "synchronous", "FULL")?;
        c.pragma_update(None, "secure_delete", "ON")?;
        c.pragma_update(None, "foreign_keys", "ON")?;
        Ok(c)
    };
    let mut log = open(data.join("ringfence.db"))?;
    let mut vault = open(data.join("vault.db"))?;
    // Checkpoints as Ringfence's writers have them: in a thread of their own (or, to compare,
    // SQLite's automatic checkpoint inside the commit that crosses 1,000 pages).
    let checkpointers = match checkpoint {
        BaselineCheckpoint::Background => {
            let log_checkpoints = Checkpointer::start(&data.join("ringfence.db"))?;
            log_checkpoints.attach(&log)?;
            let vault_checkpoints = Checkpointer::start(&data.join("vault.db"))?;
            vault_checkpoints.attach(&vault)?;
            Some((log_checkpoints, vault_checkpoints))
        }
        BaselineCheckpoint::Inline => None,
    };
    let mut columns = Vec::new();
    for c in DataCategory::PERSONAL {
        columns.extend(columns_of(Entity::Call, c));
    }
    let clear = columns
        .iter()
        .map(|c| format!("{c} = NULL"))
        .collect::<Vec<_>>()
        .join(", ");
    let cutoff = Timestamp::now().minus_days(30).millis();
    let started = Instant::now();
    let mut total = 0u64;
    loop {
        let tx = log.transaction()?;
        let ids: Vec<String> = {
            let mut stmt = tx.prepare_cached("SELECT id FROM calls WHERE account_id = ?1 AND swept IS NULL AND legal_hold_at IS NULL AND started_at < ?2 AND redacted_at IS NULL ORDER BY started_at LIMIT 2000")?;
            stmt.query_map(params![account.to_string(), cutoff], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        if ids.is_empty() {
            break;
        }
        {
            let mut update = tx.prepare_cached(&format!("UPDATE calls SET {clear}, redacted_at = ?2, redaction_reason = 'retention', redacted_by = 'retention', swept = 1 WHERE id = ?1"))?;
            for id in &ids {
                update.execute(params![id, Timestamp::now().millis()])?;
            }
        }
        tx.commit()?;
        if let Some((log_checkpoints, _)) = &checkpointers {
            log_checkpoints.after_commit(&log);
        }
        let vtx = vault.transaction()?;
        {
            let mut delete = vtx.prepare_cached("DELETE FROM data_keys WHERE id = ?1")?;
            for id in &ids {
                delete.execute([id])?;
            }
        }
        vtx.commit()?;
        if let Some((_, vault_checkpoints)) = &checkpointers {
            vault_checkpoints.after_commit(&vault);
        }
        total += ids.len() as u64;
    }
    Ok((started.elapsed().as_secs_f64(), total))
}

/// Fills a data folder with `calls` calls 40 days old, in an account that redacts after 30
/// days; with `recordings`, each call gets a recording of 8,000 bytes.
async fn overdue_folder(
    data: &Path,
    postgres: Option<&Databases>,
    calls: usize,
    recordings: bool,
) -> anyhow::Result<AccountId> {
    let resources = Resources::open(&config(data, postgres)).await?;
    let account = tenant(&resources).await?;
    let others = numbers();
    eprintln!("filling {calls} overdue calls");
    fill(&resources, account, calls, 40, |i| {
        others[i % others.len()].clone()
    })
    .await?;
    if recordings {
        eprintln!("uploading {calls} recordings");
        let rows = resources
            .log
            .store()
            .calls(ringfence_store::CallQuery {
                account_id: account,
                from: None,
                to: None,
                tracking_number: None,
                source: None,
                status: None,
                redacted: None,
                caller_bidx: None,
                after: None,
                limit: calls as u32,
            })
            .await?;
        for row in rows {
            let body = futures::stream::iter(vec![Ok::<bytes::Bytes, std::io::Error>(
                bytes::Bytes::from(vec![1u8; 8000]),
            )]);
            resources
                .log
                .put_recording(&row, "audio/wav".into(), body, 1 << 20, None)
                .await?;
        }
    }
    let mut record = resources
        .log
        .store()
        .account(account)
        .await?
        .context("account")?;
    record.retention.after_days = Some(30);
    resources.log.store().update_account(record).await?;
    resources.close().await;
    Ok(account)
}

fn median_f64(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn range_f64(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(*x), hi.max(*x))
        })
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// What the repetitions of `sweep` measured.
struct SweepFigures {
    rate: Vec<f64>,
    baseline: Vec<f64>,
    ratio: Vec<f64>,
    rss: Vec<f64>,
    recordings_rate: Vec<f64>,
    recordings_rss: Vec<f64>,
}

/// A repetition's fresh copy of the filled data: a folder (the master key), and on
/// PostgreSQL copies of the seed's databases.
struct Copy {
    folder: PathBuf,
    databases: Option<Databases>,
}

/// Copies the seed folder (and databases) to `folder`.
async fn copy_seed(
    seed: &Path,
    seed_databases: Option<&Databases>,
    folder: PathBuf,
) -> anyhow::Result<Copy> {
    copy_dir(seed, &folder)?;
    let databases = match seed_databases {
        Some(dbs) => Some(Databases::create(dbs.server(), Some(dbs)).await?),
        None => None,
    };
    Ok(Copy { folder, databases })
}

impl Copy {
    async fn remove(self) -> anyhow::Result<()> {
        std::fs::remove_dir_all(&self.folder)?;
        if let Some(dbs) = self.databases {
            dbs.drop().await;
        }
        Ok(())
    }
}

async fn sweep_bench(
    calls: usize,
    recordings: usize,
    repeat: usize,
    checkpoint: BaselineCheckpoint,
    postgres: Option<&DatabaseUrl>,
) -> anyhow::Result<()> {
    anyhow::ensure!(repeat > 0, "--repeat must be positive");
    if let Some(url) = postgres {
        eprintln!("PostgreSQL at {url}: {}", pg::describe_server(url).await?);
    }
    let measured = sweep_runs(calls, recordings, repeat, checkpoint, postgres).await;
    // Every database this process made, whether the runs finished or not.
    if let Some(url) = postgres {
        pg::drop_all_of_this_process(url).await;
    }
    print_sweep(calls, recordings, repeat, &measured?);
    Ok(())
}

async fn sweep_runs(
    calls: usize,
    recordings: usize,
    repeat: usize,
    checkpoint: BaselineCheckpoint,
    postgres: Option<&DatabaseUrl>,
) -> anyhow::Result<SweepFigures> {
    let dir = tempfile::tempdir()?;
    let seed = dir.path().join("seed");
    let seed_dbs = match postgres {
        Some(url) => Some(Databases::create(url, None).await?),
        None => None,
    };
    let account = overdue_folder(&seed, seed_dbs.as_ref(), calls, false).await?;
    let seed_recordings = dir.path().join("seed-recordings");
    let seed_recordings_dbs = match postgres {
        Some(url) if recordings > 0 => Some(Databases::create(url, None).await?),
        _ => None,
    };
    if recordings > 0 {
        overdue_folder(
            &seed_recordings,
            seed_recordings_dbs.as_ref(),
            recordings,
            true,
        )
        .await?;
    }
    let mut f = SweepFigures {
        rate: Vec::new(),
        baseline: Vec::new(),
        ratio: Vec::new(),
        rss: Vec::new(),
        recordings_rate: Vec::new(),
        recordings_rss: Vec::new(),
    };
    for k in 0..repeat {
        // Each repetition sweeps fresh copies; the baseline goes first in even ones, so
        // that neither always runs on a warmer page cache.
        let base = copy_seed(&seed, seed_dbs.as_ref(), dir.path().join("baseline")).await?;
        let data = copy_seed(&seed, seed_dbs.as_ref(), dir.path().join("data")).await?;
        let run_baseline = async || -> anyhow::Result<f64> {
            let (secs, n) = match &base.databases {
                Some(dbs) => baseline_sweep_pg(dbs, account).await?,
                None => baseline_sweep(&base.folder, account, checkpoint)?,
            };
            anyhow::ensure!(n == calls as u64, "baseline cleared {n}");
            Ok(calls as f64 / secs)
        };
        let run_sweep = || -> anyhow::Result<(f64, f64)> {
            let (secs, n, rss) = sweep_in_child(&data.folder, data.databases.as_ref())?;
            anyhow::ensure!(n == calls as u64, "sweep redacted {n}");
            Ok((calls as f64 / secs, rss))
        };
        let (b_rate, (r_rate, rss)) = if k % 2 == 0 {
            let b = run_baseline().await?;
            (b, run_sweep()?)
        } else {
            let r = run_sweep()?;
            (run_baseline().await?, r)
        };
        base.remove().await?;
        data.remove().await?;
        eprintln!(
            "  repetition {}: sweep {r_rate:.0} calls/s, baseline {b_rate:.0} calls/s, ratio {:.2}, peak {rss:.0} MB",
            k + 1,
            r_rate / b_rate
        );
        f.rate.push(r_rate);
        f.baseline.push(b_rate);
        f.ratio.push(r_rate / b_rate);
        f.rss.push(rss);
        if recordings > 0 {
            let data2 = copy_seed(
                &seed_recordings,
                seed_recordings_dbs.as_ref(),
                dir.path().join("data-recordings"),
            )
            .await?;
            let (secs, n, rss) = sweep_in_child(&data2.folder, data2.databases.as_ref())?;
            anyhow::ensure!(n == recordings as u64, "sweep with recordings redacted {n}");
            data2.remove().await?;
            eprintln!(
                "  repetition {}: with recordings {:.0} calls/s, peak {rss:.0} MB",
                k + 1,
                n as f64 / secs
            );
            f.recordings_rate.push(n as f64 / secs);
            f.recordings_rss.push(rss);
        }
    }
    Ok(f)
}

/// The baseline on PostgreSQL: the same clearing with plain SQL, batches of 2,000 calls, each
/// batch one `UPDATE … WHERE id = ANY(…)` committed, then one `DELETE` of its keys in the
/// vault's database.
async fn baseline_sweep_pg(dbs: &Databases, account: AccountId) -> anyhow::Result<(f64, u64)> {
    use sqlx::{AssertSqlSafe, Connection};
    let sql = |e: sqlx::Error| anyhow::anyhow!(ringfence_store_postgres::describe_error(&e));
    let mut log = dbs.log.connect().await?;
    let mut vault = dbs.vault.connect().await?;
    let mut columns = Vec::new();
    for c in DataCategory::PERSONAL {
        columns.extend(columns_of(Entity::Call, c));
    }
    let clear = columns
        .iter()
        .map(|c| format!("{c} = NULL"))
        .collect::<Vec<_>>()
        .join(", ");
    let update = format!(
        "UPDATE calls SET {clear}, redacted_at = $3, redaction_reason = 'retention', redacted_by = 'retention', swept = true WHERE account_id = $1 AND id = ANY($2)"
    );
    let cutoff = Timestamp::now().minus_days(30).millis();
    let started = Instant::now();
    let mut total = 0u64;
    loop {
        let mut tx = log.begin().await.map_err(sql)?;
        let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM calls WHERE account_id = $1 AND swept IS NULL AND legal_hold_at IS NULL AND started_at < $2 AND redacted_at IS NULL ORDER BY started_at LIMIT 2000")
            .bind(account.as_uuid())
            .bind(cutoff)
            .fetch_all(&mut *tx)
            .await
            .map_err(sql)?;
        if ids.is_empty() {
            break;
        }
        sqlx::query(AssertSqlSafe(update.clone()))
            .bind(account.as_uuid())
            .bind(&ids)
            .bind(Timestamp::now().millis())
            .execute(&mut *tx)
            .await
            .map_err(sql)?;
        tx.commit().await.map_err(sql)?;
        let keys: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
        sqlx::query("DELETE FROM data_keys WHERE id = ANY($1)")
            .bind(&keys)
            .execute(&mut vault)
            .await
            .map_err(sql)?;
        total += ids.len() as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = log.close().await;
    let _ = vault.close().await;
    Ok((seconds, total))
}

fn print_sweep(calls: usize, recordings: usize, repeat: usize, f: &SweepFigures) {
    let (rate, base, ratio, rss) = (
        median_f64(&f.rate),
        median_f64(&f.baseline),
        median_f64(&f.ratio),
        median_f64(&f.rss),
    );
    let (rlo, rhi) = range_f64(&f.ratio);
    println!(
        "sweep, {calls} overdue calls without recordings (median of {repeat}): ringfence {rate:.0} calls/s, baseline {base:.0} calls/s, ratio {ratio:.2} ({rlo:.2}-{rhi:.2}); peak memory {rss:.0} MB"
    );
    println!(
        "  targets: >= 20000 calls/s ({}), >= 0.7 of baseline ({}), < 150 MB ({})",
        met(rate >= 20_000.0),
        met(ratio >= 0.7),
        met(rss < 150.0)
    );
    if recordings > 0 {
        let (rate, rss) = (
            median_f64(&f.recordings_rate),
            median_f64(&f.recordings_rss),
        );
        let (lo, hi) = range_f64(&f.recordings_rate);
        println!(
            "sweep, {recordings} overdue calls with a recording each (median of {repeat}): {rate:.0} calls/s ({lo:.0}-{hi:.0}), peak memory {rss:.0} MB (target >= 10000 calls/s: {})",
            met(rate >= 10_000.0)
        );
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // RUST_LOG=ringfence_store=debug shows each redaction's steps (ids and timings only).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::RedactCaller {
                calls,
                per_caller,
                repeat,
                database_url,
            } => {
                let url = server_url(database_url)?;
                redact_caller_bench(calls, per_caller, repeat, url.as_ref()).await
            }
            Command::Sweep {
                calls,
                recordings,
                repeat,
                baseline_checkpoint,
                database_url,
            } => {
                let url = server_url(database_url)?;
                sweep_bench(calls, recordings, repeat, baseline_checkpoint, url.as_ref()).await
            }
            Command::SweepChild { data, databases } => sweep_child(&data, databases).await,
        }
    })
}

/// Parses `--database-url` and hands its text to the sweep's child processes through the
/// environment (never their command line, which `ps` shows).
fn server_url(text: Option<String>) -> anyhow::Result<Option<DatabaseUrl>> {
    let Some(text) = text else { return Ok(None) };
    let url: DatabaseUrl = text.parse().context("--database-url")?;
    CHILD_URL.set(text).ok();
    Ok(Some(url))
}

/// The server URL's text for the sweep's child processes.
static CHILD_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
