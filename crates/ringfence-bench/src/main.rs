//! Ringfence's benchmarks: ingest over HTTP measured in one run against a raw-SQLite baseline
//! (the same rows, schema, indexes and pragmas, with no encryption and no HTTP) and against
//! one commit per request — or, with `--database-url`, the same on PostgreSQL against raw SQL
//! on the same server, in databases the run makes and drops; the same single-call load on the layers below HTTP; micro-
//! measurements of the per-call CPU work; and opt-in experiments on SQLite settings that
//! Ringfence does not ship (`--what-if-*`), which a run then announces. BENCHMARKS.md at the
//! repository's root has the figures and how to read them.
//!
//! A benchmark, not a test: it reports figures and whether they meet their targets, and it
//! fails only when the server answers wrongly or loses a call.

mod baseline;
mod client;
mod cpu;
mod layers;
mod micro;
mod pg;
mod pg_baseline;
mod report;
mod server;
mod synthetic;
mod whatif;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;

use ringfence_store_postgres::DatabaseUrl;

use report::{RateTarget, RatioSpec, Results, Sample};
use server::Server;
use synthetic::Calls;

#[derive(Parser)]
#[command(
    name = "ringfence-bench",
    about = "Ringfence benchmarks against the raw-database baseline"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Ingest throughput: baselines, batches over HTTP, single calls over HTTP, one commit per request.
    Ingest(IngestArgs),
    /// Per-call CPU costs: validation, phone parsing, sealing.
    Micro(micro::MicroArgs),
    /// The single-call load sent to the layers below HTTP, to see where a request's time goes.
    Layers(layers::LayersArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Figure {
    /// Plain SQL: call and session rows in transactions of --baseline-transaction calls.
    BaselineBatch,
    /// The same, also writing the data-key rows into a second (vault) database.
    BaselineBatchVault,
    /// Ringfence over HTTP, batches of --batch calls from --batch-clients connections.
    HttpBatch,
    /// Ringfence over HTTP, single calls from --clients connections.
    HttpSingle,
    /// Plain SQL, --clients threads (on PostgreSQL, connections), every call's keys and rows
    /// each committed in a transaction of their own (vault then call log); on SQLite one
    /// writer thread per database.
    #[value(alias = "sqlite-one-commit-vault")]
    OneCommitVault,
    /// The same with the call log only.
    #[value(alias = "sqlite-one-commit")]
    OneCommit,
}

impl Figure {
    fn name(self, postgres: bool) -> &'static str {
        match (self, postgres) {
            (Figure::BaselineBatch, _) => "baseline-batch",
            (Figure::BaselineBatchVault, _) => "baseline-batch+vault",
            (Figure::HttpBatch, _) => "http-batch",
            (Figure::HttpSingle, _) => "http-single",
            (Figure::OneCommitVault, false) => "sqlite-one-commit+vault",
            (Figure::OneCommit, false) => "sqlite-one-commit",
            (Figure::OneCommitVault, true) => "pg-one-commit+vault",
            (Figure::OneCommit, true) => "pg-one-commit",
        }
    }

    const ALL: [Figure; 6] = [
        Figure::BaselineBatch,
        Figure::BaselineBatchVault,
        Figure::HttpBatch,
        Figure::HttpSingle,
        Figure::OneCommitVault,
        Figure::OneCommit,
    ];
}

#[derive(clap::Args)]
struct IngestArgs {
    /// Calls per batch run (baselines and http-batch).
    #[arg(long, default_value_t = 200_000)]
    calls: u64,
    /// Calls per HTTP batch (the server takes at most 5000).
    #[arg(long, default_value_t = 1000)]
    batch: u64,
    /// Concurrent connections sending batches.
    #[arg(long, default_value_t = 4)]
    batch_clients: usize,
    /// Concurrent connections (or threads, for sqlite-one-commit) sending single calls.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds each single-call run lasts.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Calls per transaction in the baselines.
    #[arg(long, default_value_t = 10_000)]
    baseline_transaction: u64,
    /// Repetitions of every figure; the table shows medians.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Share of calls sent with an inline visitor (stored as a session).
    #[arg(long, default_value_t = 0.3)]
    visitor_share: f64,
    /// When the calls started: in arrival order (a live feed) or at random times of one day.
    #[arg(long, value_enum, default_value_t = synthetic::StartTimes::Live)]
    start_times: synthetic::StartTimes,
    /// Worker threads of the client's runtime (the server's has 2).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Worker threads of the server's runtime.
    #[arg(long, default_value_t = 2)]
    server_threads: usize,
    /// Run only these figures (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Figure>,
    /// Run on PostgreSQL: the server this URL names (its database is only used to create and
    /// drop the run's own databases, two for each figure, vault included). Without it, SQLite.
    #[arg(long, value_name = "URL")]
    database_url: Option<DatabaseUrl>,
    /// Folder for the databases (default: the system's temporary folder); must be on the disk measured.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write the results as JSON to this file (the table is still printed).
    #[arg(long, value_name = "FILE")]
    json_file: Option<PathBuf>,
    #[command(flatten)]
    what_if: whatif::WhatIf,
}

const RATIOS: &[RatioSpec] = &[
    RatioSpec {
        name: "http-batch / baseline-batch",
        numerator: "http-batch",
        denominator: "baseline-batch",
        at_least: Some(0.4),
    },
    RatioSpec {
        name: "http-batch / baseline-batch+vault",
        numerator: "http-batch",
        denominator: "baseline-batch+vault",
        at_least: None,
    },
    RatioSpec {
        name: "http-single / sqlite-one-commit+vault",
        numerator: "http-single",
        denominator: "sqlite-one-commit+vault",
        at_least: Some(3.0),
    },
    RatioSpec {
        name: "http-single / sqlite-one-commit",
        numerator: "http-single",
        denominator: "sqlite-one-commit",
        at_least: None,
    },
];

const TARGETS: &[RateTarget] = &[
    RateTarget {
        figure: "http-batch",
        at_least: 30_000.0,
    },
    RateTarget {
        figure: "http-single",
        at_least: 10_000.0,
    },
];

/// On PostgreSQL (issue 20): against raw SQL on the same server.
const PG_RATIOS: &[RatioSpec] = &[
    RatioSpec {
        name: "http-batch / baseline-batch",
        numerator: "http-batch",
        denominator: "baseline-batch",
        at_least: Some(0.5),
    },
    RatioSpec {
        name: "http-batch / baseline-batch+vault",
        numerator: "http-batch",
        denominator: "baseline-batch+vault",
        at_least: None,
    },
    // Issue 20's baseline: each call inserted in its own transaction from 64 connections.
    RatioSpec {
        name: "http-single / pg-one-commit",
        numerator: "http-single",
        denominator: "pg-one-commit",
        at_least: Some(2.0),
    },
    RatioSpec {
        name: "http-single / pg-one-commit+vault",
        numerator: "http-single",
        denominator: "pg-one-commit+vault",
        at_least: None,
    },
];

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Ingest(args) => ingest(args),
        Command::Micro(args) => micro::run(args),
        Command::Layers(args) => layers::run(args),
    }
}

fn runtime(name: &str, threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name(name)
        .enable_all()
        .build()
        .context("cannot start a runtime")
}

/// The server and the client share the process (and the machine's cores) but not a runtime,
/// so that neither's tasks run on the other's workers.
struct Runtimes {
    server: tokio::runtime::Runtime,
    client: tokio::runtime::Runtime,
}

fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=5000).contains(&args.batch),
        "--batch must be between 1 and 5000 (the server's limit)"
    );
    anyhow::ensure!(
        args.repeat > 0 && args.clients > 0 && args.batch_clients > 0,
        "--repeat, --clients and --batch-clients must be positive"
    );
    anyhow::ensure!(
        args.database_url.is_none() || !args.what_if.is_active(),
        "the --what-if-* settings are SQLite's: not with --database-url"
    );
    let postgres = args.database_url.is_some();
    let (ratios, targets) = match postgres {
        true => (PG_RATIOS, &[][..]),
        false => (RATIOS, TARGETS),
    };
    let figures: Vec<Figure> = if args.only.is_empty() {
        Figure::ALL.to_vec()
    } else {
        Figure::ALL
            .into_iter()
            .filter(|f| args.only.contains(f))
            .collect()
    };
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let calls = Arc::new(Calls::new(
        1024,
        args.visitor_share,
        0x5EED,
        args.start_times,
    ));
    let (mean_bytes, share) = calls.describe();
    eprintln!(
        "ringfence-bench ingest: {} cores, {} calls per batch run, batches of {} from {} clients, {} single-call clients for {} s, {} repetitions; {} B per call JSON, {:.0}% with a visitor; data in {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        args.calls,
        args.batch,
        args.batch_clients,
        args.clients,
        args.seconds,
        args.repeat,
        mean_bytes,
        share * 100.0,
        dir.display()
    );
    let rt = Runtimes {
        server: runtime("server", args.server_threads)?,
        client: runtime("client", args.client_threads)?,
    };
    let server_settings = match &args.database_url {
        Some(url) => {
            let settings = rt.server.block_on(pg::describe_server(url))?;
            eprintln!("  PostgreSQL at {url}: {settings}");
            Some(settings)
        }
        None => None,
    };
    let mut results = Results::default();
    // Figures interleave within each repetition so that a noisy spell hits all of them.
    for rep in 1..=args.repeat {
        settle();
        let probe = fsync_probe(&dir, 300)?;
        eprintln!(
            "  [{rep}/{}] {:<24} {:>9.0} fsyncs/s (p50 {:.2} ms, p99 {:.2} ms, load average {})",
            args.repeat,
            "disk: write 4 KiB + fsync",
            probe.rate(),
            probe.p50_ms.unwrap_or(f64::NAN),
            probe.p99_ms.unwrap_or(f64::NAN),
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .split_whitespace()
                .next()
                .unwrap_or("?")
        );
        results.add("disk: 4 KiB write+fsync", probe);
        for &figure in &figures {
            let sample = match run_figure(figure, &args, &rt, &calls, &dir) {
                Ok(sample) => sample,
                Err(e) => {
                    // Whatever databases the failed figure left on the server.
                    if let Some(url) = &args.database_url {
                        rt.server.block_on(pg::drop_all_of_this_process(url));
                    }
                    return Err(e.context(format!("{} (repetition {rep})", figure.name(postgres))));
                }
            };
            eprintln!(
                "  [{rep}/{}] {:<24} {:>9.0} calls/s  ({} calls in {:.2} s{})",
                args.repeat,
                figure.name(postgres),
                sample.rate(),
                sample.calls,
                sample.seconds,
                match (sample.p50_ms, sample.p99_ms) {
                    (Some(p50), Some(p99)) => format!(", p50 {p50:.2} ms, p99 {p99:.2} ms"),
                    _ => String::new(),
                }
            );
            results.add(figure.name(postgres), sample);
        }
    }
    let mut out = results.to_json(ratios, targets);
    out["settings"] = json!({
        "calls": args.calls, "batch": args.batch, "batch_clients": args.batch_clients, "clients": args.clients,
        "seconds": args.seconds, "baseline_transaction": args.baseline_transaction, "repeat": args.repeat,
        "visitor_share": share, "mean_call_json_bytes": mean_bytes, "client_threads": args.client_threads,
        "server_threads": args.server_threads, "start_times": format!("{:?}", args.start_times),
        "what_if": args.what_if.is_active().then(|| args.what_if.describe()),
        "database": match &args.database_url { Some(url) => url.to_string(), None => "sqlite".to_owned() },
        "postgres_settings": server_settings,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "date": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
    });
    if let Some(path) = &args.json_file {
        std::fs::write(path, serde_json::to_string_pretty(&out)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        if args.what_if.is_active() {
            println!(
                "EXPERIMENT, not the shipped configuration: {}",
                args.what_if.describe()
            );
        }
        if let (Some(url), Some(settings)) = (&args.database_url, &server_settings) {
            println!("PostgreSQL at {url}: {settings}");
        }
        print!("{}", results.table(ratios, targets));
    }
    Ok(())
}

/// The disk's durable-write latency right now: `count` 4 KiB writes, each followed by
/// `fdatasync`, as a WAL commit does. One commit per request can go no faster than this.
fn fsync_probe(dir: &std::path::Path, count: u32) -> anyhow::Result<Sample> {
    use std::io::Write as _;
    let mut file = tempfile::tempfile_in(dir)?;
    let page = [0x5Au8; 4096];
    let mut latencies = Vec::with_capacity(count as usize);
    let started = std::time::Instant::now();
    for _ in 0..count {
        let t0 = std::time::Instant::now();
        file.write_all(&page)?;
        file.sync_data()?;
        latencies.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
    }
    Ok(Sample::new(
        u64::from(count),
        u64::from(count),
        started.elapsed().as_secs_f64(),
        &mut latencies,
    ))
}

/// Lets the disk finish writing back what the previous figure left, so that each figure
/// starts from a quiet disk.
fn settle() {
    let _ = std::process::Command::new("sync").status();
    std::thread::sleep(Duration::from_millis(500));
}

fn run_figure(
    figure: Figure,
    args: &IngestArgs,
    rt: &Runtimes,
    calls: &Arc<Calls>,
    dir: &std::path::Path,
) -> anyhow::Result<Sample> {
    settle();
    if let Some(url) = &args.database_url {
        return run_pg_figure(figure, url, args, rt, calls, dir);
    }
    match figure {
        Figure::BaselineBatch | Figure::BaselineBatchVault => {
            let folder = tempfile::Builder::new()
                .prefix("ringfence-baseline-")
                .tempdir_in(dir)?;
            let log = baseline::CallLogDb::create(folder.path(), calls, &args.what_if)?;
            let vault = if figure == Figure::BaselineBatchVault {
                Some(baseline::VaultDb::create(
                    folder.path(),
                    &log,
                    &args.what_if,
                )?)
            } else {
                None
            };
            let elapsed = baseline::insert_batches(
                &log,
                vault.as_ref(),
                calls,
                args.calls,
                args.baseline_transaction,
            )?;
            let stored = log.count_calls()?;
            anyhow::ensure!(
                stored == args.calls,
                "the baseline stored {stored} of {} calls",
                args.calls
            );
            Ok(Sample::new(
                args.calls,
                args.calls.div_ceil(args.baseline_transaction),
                elapsed.as_secs_f64(),
                &mut [],
            ))
        }
        Figure::OneCommit | Figure::OneCommitVault => {
            let folder = tempfile::Builder::new()
                .prefix("ringfence-baseline-")
                .tempdir_in(dir)?;
            let log = baseline::CallLogDb::create(folder.path(), calls, &args.what_if)?;
            let vault = if figure == Figure::OneCommitVault {
                Some(baseline::VaultDb::create(
                    folder.path(),
                    &log,
                    &args.what_if,
                )?)
            } else {
                None
            };
            let mut m =
                baseline::commit_per_call(log, vault, calls.clone(), args.clients, args.seconds)?;
            Ok(Sample::new(
                m.calls,
                m.calls,
                m.elapsed.as_secs_f64(),
                &mut m.latencies_us,
            ))
        }
        Figure::HttpBatch | Figure::HttpSingle => http_figure(figure, None, args, rt, calls, dir),
    }
}

/// A figure on PostgreSQL: the baselines write into fresh databases of the server the URL
/// names, as the server measured does.
fn run_pg_figure(
    figure: Figure,
    url: &DatabaseUrl,
    args: &IngestArgs,
    rt: &Runtimes,
    calls: &Arc<Calls>,
    dir: &std::path::Path,
) -> anyhow::Result<Sample> {
    let baseline = match figure {
        Figure::HttpBatch | Figure::HttpSingle => {
            return http_figure(figure, Some(url), args, rt, calls, dir);
        }
        _ => rt
            .server
            .block_on(pg_baseline::PgBaseline::create(url, calls))?,
    };
    let measured = rt.server.block_on(async {
        match figure {
            Figure::BaselineBatch | Figure::BaselineBatchVault => {
                let elapsed = baseline
                    .insert_batches(
                        calls,
                        args.calls,
                        args.baseline_transaction,
                        figure == Figure::BaselineBatchVault,
                    )
                    .await?;
                let stored = baseline.count_calls().await?;
                anyhow::ensure!(
                    stored == args.calls,
                    "the baseline stored {stored} of {} calls",
                    args.calls
                );
                Ok(Sample::new(
                    args.calls,
                    args.calls.div_ceil(args.baseline_transaction),
                    elapsed.as_secs_f64(),
                    &mut [],
                ))
            }
            _ => {
                let mut m = baseline
                    .commit_per_call(
                        calls.clone(),
                        args.clients,
                        args.seconds,
                        figure == Figure::OneCommitVault,
                    )
                    .await?;
                Ok(Sample::new(
                    m.calls,
                    m.calls,
                    m.elapsed.as_secs_f64(),
                    &mut m.latencies_us,
                ))
            }
        }
    });
    rt.server.block_on(baseline.drop());
    measured
}

/// Ringfence over HTTP, on SQLite files in `dir` or on fresh databases of `postgres`.
fn http_figure(
    figure: Figure,
    postgres: Option<&DatabaseUrl>,
    args: &IngestArgs,
    rt: &Runtimes,
    calls: &Arc<Calls>,
    dir: &std::path::Path,
) -> anyhow::Result<Sample> {
    let name = figure.name(postgres.is_some());
    let server = rt
        .server
        .block_on(Server::start(dir, &args.what_if, postgres))?;
    let target = client::Target::new(server.address, &server.token, &server.account.to_string());
    // Call numbers start above the warm-up call's.
    let mut cpu_before = None;
    let load = rt.client.block_on(async {
        client::warm_up(&target, calls, 0).await?;
        cpu_before = Some(cpu::snapshot());
        match figure {
            Figure::HttpBatch => {
                client::batches(
                    &target,
                    calls.clone(),
                    args.batch_clients,
                    args.calls,
                    args.batch,
                    1,
                )
                .await
            }
            _ => {
                client::single_calls(
                    &target,
                    calls.clone(),
                    args.clients,
                    Duration::from_secs_f64(args.seconds),
                    1,
                )
                .await
            }
        }
    });
    let cpu_after = cpu::snapshot();
    let stored = rt.server.block_on(server.stop())?;
    let mut load = load?;
    if let Some(before) = &cpu_before {
        eprintln!(
            "      {name}: {} (the load generator's threads included{})",
            cpu::per_call(before, &cpu_after, load.calls),
            if postgres.is_some() {
                "; PostgreSQL's own processes are not counted"
            } else {
                ""
            }
        );
    }
    // Every 201 must be a call in the database after shutdown.
    anyhow::ensure!(
        stored == load.calls + 1,
        "the server answered 201 for {} calls but its database holds {}",
        load.calls + 1,
        stored
    );
    Ok(Sample::new(
        load.calls,
        load.requests,
        load.elapsed.as_secs_f64(),
        &mut load.latencies_us,
    ))
}
