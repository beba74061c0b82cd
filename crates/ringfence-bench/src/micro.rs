//! Per-call CPU costs of the ingest path, measured one step at a time on one thread: parsing
//! the JSON, validating it (phone numbers), issuing and wrapping a data key, sealing a call's
//! personal categories. They tell where the time goes in a request.

use std::hint::black_box;
use std::time::Instant;

use ringfence_core::phone::parse_caller_number;
use ringfence_core::{CallId, SessionId};
use ringfence_crypto::{DataKey, MasterKey, seal};
use ringfence_http::dto::CallInput;
use ringfence_store::payload;

use crate::report::median;
use crate::synthetic::Calls;

#[derive(clap::Args)]
pub struct MicroArgs {
    /// Operations per measurement.
    #[arg(long, default_value_t = 20_000)]
    iterations: u64,
    /// Measurements of each step; the median is shown.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
}

/// The median time of one `op` in nanoseconds.
fn measure(args: &MicroArgs, mut op: impl FnMut(u64)) -> f64 {
    let runs: Vec<f64> = (0..args.repeat.max(1))
        .map(|_| {
            let started = Instant::now();
            for n in 0..args.iterations {
                op(n);
            }
            started.elapsed().as_nanos() as f64 / args.iterations as f64
        })
        .collect();
    median(&runs).unwrap_or(f64::NAN)
}

pub fn run(args: MicroArgs) -> anyhow::Result<()> {
    let calls = Calls::new(1024, 0.3, 0x5EED, crate::synthetic::StartTimes::Live);
    let bodies: Vec<Vec<u8>> = (0..calls.len() as u64).map(|n| calls.body(n)).collect();
    let inputs = |n: u64| -> CallInput {
        serde_json::from_slice(&bodies[n as usize % bodies.len()]).unwrap_or_default()
    };
    let domain: Vec<_> = (0..bodies.len() as u64)
        .filter_map(|n| inputs(n).into_domain("").ok())
        .collect();
    anyhow::ensure!(domain.len() == bodies.len(), "a template does not validate");
    let (master, _) = MasterKey::generate();

    let mut rows: Vec<(&str, f64)> = Vec::new();
    rows.push((
        "parse call JSON (serde_json -> CallInput)",
        measure(&args, |n| drop(black_box(inputs(n)))),
    ));
    rows.push((
        "parse + validate a call (CallInput::into_domain)",
        measure(&args, |n| {
            let _ = black_box(inputs(n).into_domain(""));
        }),
    ));
    rows.push((
        "parse one UK number, +44 20 7946 0xxx",
        measure(&args, |n| {
            let _ = black_box(parse_caller_number(&format!("+44207946{:04}", n % 1000)));
        }),
    ));
    // libphonenumber's own example numbers (its metadata's fixed-line examples) of the EU/EEA
    // states, the UK and Switzerland, one after another, as a call tracker serving callers
    // from all over Europe sees them.
    let european: Vec<String> = [
        "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT",
        "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO",
        "GB", "CH",
    ]
    .into_iter()
    .filter_map(|region| {
        let meta = phonenumber::metadata::DATABASE.by_id(region)?;
        let example = meta.descriptors().fixed_line()?.example()?;
        Some(format!("+{}{example}", meta.country_code()))
    })
    .collect();
    assert!(
        european
            .iter()
            .all(|n| parse_caller_number(n).is_ok_and(|p| p.is_some())),
        "every example number is valid"
    );
    rows.push((
        "parse one number, 32 European countries in turn",
        measure(&args, |n| {
            let _ = black_box(parse_caller_number(&european[n as usize % european.len()]));
        }),
    ));
    rows.push((
        "parse one US number, +1 415 555 01xx",
        measure(&args, |n| {
            let _ = black_box(parse_caller_number(&format!(
                "+1415555{:04}",
                100 + n % 100
            )));
        }),
    ));
    rows.push((
        "issue + wrap one data key (OS random, seal)",
        measure(&args, |_| {
            let id = CallId::generate().to_string();
            let key = DataKey::generate();
            black_box(master.wrap(&id, &key));
        }),
    ));
    rows.push((
        "seal one call's categories (4 blobs, + visitor)",
        measure(&args, |n| {
            let c = &domain[n as usize % domain.len()];
            let key = DataKey::generate();
            let id = CallId::generate().to_string();
            let aad = |col: &str| format!("call|{id}|{col}").into_bytes();
            for (col, plain) in [
                ("caller_identity", payload::encode_identity(&c.caller)),
                ("caller_location", payload::encode_location(&c.location)),
                (
                    "transcript",
                    payload::encode_transcript(c.transcript.as_ref()),
                ),
                ("interaction", payload::encode_interaction(&c.interaction)),
            ] {
                if let Some(p) = plain {
                    black_box(seal(&key, &aad(col), &p));
                }
            }
            if let Some(v) = &c.visitor {
                let key = DataKey::generate();
                let sid = SessionId::generate().to_string();
                if let Some(p) = payload::encode_visitor(v) {
                    black_box(seal(&key, format!("session|{sid}|visitor").as_bytes(), &p));
                }
            }
        }),
    ));
    println!(
        "{:<52} {:>12}",
        "step (one thread, median of runs)", "ns per op"
    );
    for (name, ns) in rows {
        println!("{name:<52} {ns:>12.0}");
    }
    Ok(())
}
