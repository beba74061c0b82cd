//! Memory of the access-request export: one caller with many calls and recordings, exported
//! through the same streaming writer the API uses, to a sink that counts bytes. Reports the
//! process's peak resident memory during the export (Linux `VmHWM`, reset just before) next
//! to the resident memory before it — the baseline of the same process holding the same data.
//!
//! `cargo run --release -p ringfence-bench --bin export -- --calls 10000 --recording-bytes 16000`

use std::io::Write;
use std::time::Instant;

use bytes::Bytes;
use clap::Parser;

use ringfence::{Config, Resources};
use ringfence_core::call::{CallerIdentity, CallerLocation, InteractionContent, NewCall};
use ringfence_core::phone::parse_e164;
use ringfence_core::retention::RetentionPolicy;
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, AgencyId, Personal};
use ringfence_store::{AccountRecord, AgencyRecord, IngestPolicy};

#[derive(Parser)]
struct Cli {
    /// Calls of the exported caller.
    #[arg(long, default_value_t = 10_000)]
    calls: usize,
    /// Bytes of each call's recording (0: no recordings).
    #[arg(long, default_value_t = 16_000)]
    recording_bytes: usize,
}

struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0 += data.len() as u64;
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let resources = runtime.block_on(Resources::open(&Config::in_folder(
        &dir.path().join("data"),
    )))?;
    let log = resources.log.clone();
    let number = parse_e164("+442079460123")?;
    let account = runtime.block_on(async {
        let agency = AgencyRecord {
            id: AgencyId::generate(),
            name: "Bench".into(),
            redaction_enabled: true,
            max_retention_days: None,
            created_at: Timestamp::now(),
        };
        log.store().create_agency(agency.clone()).await?;
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
        log.store().create_account(account.clone()).await?;
        let started = Instant::now();
        let mut made = 0;
        while made < cli.calls {
            let n = (cli.calls - made).min(1000);
            let batch: Vec<NewCall> = (made..made + n)
                .map(|i| NewCall {
                    external_id: Some(format!("x-{i}")),
                    started_at: Timestamp::from_millis(
                        Timestamp::now().millis() - i as i64 * 60_000,
                    ),
                    duration_s: Some(60),
                    direction: None,
                    status: None,
                    tracking_number: parse_e164("+14155550100").expect("valid"),
                    source: Some("google_ads".into()),
                    campaign: None,
                    utm: Default::default(),
                    caller: CallerIdentity {
                        number: Some(number.clone()),
                        name: Some(Personal::new("Test Caller".into())),
                        forwarded_from: None,
                    },
                    location: CallerLocation::default(),
                    transcript: Some(Personal::new("A transcript of a few words.".repeat(20))),
                    interaction: InteractionContent::default(),
                    session_id: None,
                    visitor: None,
                    consents: Vec::new(),
                })
                .collect();
            let ingested = log
                .ingest_calls(account.id, batch, &IngestPolicy::collect_all("bench"))
                .await?;
            if cli.recording_bytes > 0 {
                for i in ingested {
                    let row = log.call_row(i.outcome.id()).await?.expect("stored");
                    let body = futures::stream::iter(vec![Ok::<Bytes, std::io::Error>(
                        Bytes::from(vec![7u8; cli.recording_bytes]),
                    )]);
                    log.put_recording(&row, "audio/wav".into(), body, 1 << 30, None)
                        .await?;
                }
            }
            made += n;
        }
        eprintln!(
            "set up {} calls of one caller ({}-byte recordings) in {:.1} s",
            cli.calls,
            cli.recording_bytes,
            started.elapsed().as_secs_f64()
        );
        anyhow::Ok(account)
    })?;
    let rss_before = status_kib("VmRSS:");
    // Reset the peak so it measures the export alone.
    std::fs::write("/proc/self/clear_refs", "5")?;
    let started = Instant::now();
    let handle = runtime.handle().clone();
    let mut sink = Counter(0);
    let summary = ringfence_http::export::write_export(
        &log, &handle, &account, None, &number, "bench", &mut sink,
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let peak = status_kib("VmHWM:");
    println!(
        "export of {} calls, {} recordings: {:.1} MB in {:.2} s; resident before {:.1} MB, peak during {:.1} MB (target < 100 MB)",
        summary.calls,
        summary.recordings,
        sink.0 as f64 / 1e6,
        seconds,
        rss_before as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    runtime.block_on(resources.close());
    Ok(())
}
