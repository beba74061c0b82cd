//! Where a single call's time goes: the same 64-client load as `http-single`, sent to each
//! layer below HTTP in turn, in the server's own process and runtime.
//!
//! - `vault-insert`: one data-key row per call through the vault's group-commit writer.
//! - `ingest`: `CallLog::ingest_calls` with one call: sealing, the vault commit, the call-log
//!   commit. What a 201 waits for, less HTTP, JSON and validation.
//! - `ingest+read-back`: the same, then `CallLog::call`, as the handler did to answer until it
//!   answered from what it had just sealed: what reading a call back costs the pipeline.
//!
//! Comparing them with `http-single` splits a request's latency and the server's capacity
//! between the database writes, the read-back and the HTTP edge.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use ringfence_core::call::NewCall;
use ringfence_crypto::KeyPurpose;
use ringfence_http::dto::CallInput;

use crate::report::{Results, Sample};
use crate::server::Server;
use crate::synthetic::Calls;

#[derive(clap::Args)]
pub struct LayersArgs {
    /// Concurrent callers.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds each layer runs.
    #[arg(long, default_value_t = 8.0)]
    seconds: f64,
    /// Repetitions; the table shows medians.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Worker threads of the server's runtime.
    #[arg(long, default_value_t = 2)]
    server_threads: usize,
    #[command(flatten)]
    what_if: crate::whatif::WhatIf,
    /// Folder for the databases (default: the system's temporary folder).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Run on PostgreSQL: fresh databases on the server this URL names, dropped after.
    #[arg(long, value_name = "URL")]
    database_url: Option<ringfence_store_postgres::DatabaseUrl>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Layer {
    VaultInsert,
    Ingest,
    IngestReadBack,
}

impl Layer {
    fn name(self) -> &'static str {
        match self {
            Layer::VaultInsert => "vault-insert",
            Layer::Ingest => "ingest",
            Layer::IngestReadBack => "ingest+read-back",
        }
    }
}

pub fn run(args: LayersArgs) -> anyhow::Result<()> {
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let calls = Arc::new(Calls::new(
        1024,
        0.3,
        0x5EED,
        crate::synthetic::StartTimes::Live,
    ));
    let templates: Arc<Vec<NewCall>> = Arc::new(
        (0..calls.len())
            .map(|i| {
                let body = calls.body(i as u64);
                let input: CallInput = serde_json::from_slice(&body)?;
                input
                    .into_domain("")
                    .map_err(|e| anyhow::anyhow!("template {i} rejected: {} errors", e.len()))
            })
            .collect::<anyhow::Result<_>>()?,
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.server_threads.max(1))
        .thread_name("server")
        .enable_all()
        .build()?;
    let mut results = Results::default();
    for rep in 1..=args.repeat {
        for layer in [Layer::VaultInsert, Layer::Ingest, Layer::IngestReadBack] {
            let (stored, elapsed, mut latencies) = rt.block_on(run_layer(
                layer,
                &dir,
                templates.clone(),
                calls.clone(),
                &args,
            ))?;
            let sample = Sample::new(stored, stored, elapsed.as_secs_f64(), &mut latencies);
            eprintln!(
                "  [{rep}/{}] {:<18} {:>9.0} calls/s  p50 {:.2} ms  p99 {:.2} ms",
                args.repeat,
                layer.name(),
                sample.rate(),
                sample.p50_ms.unwrap_or(f64::NAN),
                sample.p99_ms.unwrap_or(f64::NAN)
            );
            results.add(layer.name(), sample);
        }
    }
    if args.what_if.is_active() {
        println!(
            "EXPERIMENT, not the shipped configuration: {}",
            args.what_if.describe()
        );
    }
    print!("{}", results.table(&[], &[]));
    Ok(())
}

async fn run_layer(
    layer: Layer,
    dir: &std::path::Path,
    templates: Arc<Vec<NewCall>>,
    starts: Arc<Calls>,
    args: &LayersArgs,
) -> anyhow::Result<(u64, Duration, Vec<u32>)> {
    let (what_if, postgres, clients) = (&args.what_if, args.database_url.as_ref(), args.clients);
    let run_for = Duration::from_secs_f64(args.seconds);
    let server = Server::start(dir, what_if, postgres).await?;
    let log = server.log().clone();
    let account = server.account;
    // The account's blind-index key, made once as the first call would.
    log.blind_key(account).await?;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + run_for;
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (log, next, templates, starts) =
            (log.clone(), next.clone(), templates.clone(), starts.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let mut call = templates[n as usize % templates.len()].clone();
                call.external_id = Some(Calls::external_id(n));
                if let Some(at) = starts.started_at_millis(n) {
                    call.started_at = ringfence_core::timestamp::Timestamp::from_millis(at);
                }
                let t0 = Instant::now();
                match layer {
                    Layer::VaultInsert => {
                        let (_, record) = log.vault().issue(
                            format!("bench-{n}"),
                            account.to_string(),
                            KeyPurpose::Call,
                        );
                        log.vault().insert(vec![record]).await?;
                    }
                    Layer::Ingest | Layer::IngestReadBack => {
                        let outcome = log
                            .ingest_calls(
                                account,
                                vec![call],
                                &ringfence_store::IngestPolicy::collect_all("bench"),
                            )
                            .await?;
                        let id = outcome.first().context("no outcome")?.outcome.id();
                        if layer == Layer::IngestReadBack {
                            log.call(id)
                                .await?
                                .context("the stored call is not found")?;
                        }
                    }
                }
                latencies.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    server.stop().await?;
    Ok((latencies.len() as u64, elapsed, latencies))
}
