//! Clients that meet on one database, one subject or one file: a CLI writing beside a server
//! under sustained ingest, ingest with consent while its caller is erased, a recording read
//! while its call is redacted (issue 18).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

/// Posts calls to a served binary until `stop`: even clients one at a time, odd ones in
/// batches of 50. Every answer must be 201; the ids acknowledged are pushed to `acked`.
async fn ingest_until(
    base: String,
    token: String,
    account: String,
    client_no: u32,
    acked: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) {
    let client = reqwest::Client::new();
    let mut n = 0u32;
    while !stop.load(Ordering::SeqCst) {
        let call = |i: u32| {
            let mut call = full_call((i % 100) as u16);
            call["external_id"] = json!(format!("turn-{client_no}-{i}"));
            call
        };
        let (route, body, count) = if client_no.is_multiple_of(2) {
            ("calls", call(n), 1)
        } else {
            let calls: Vec<Value> = (n..n + 50).map(call).collect();
            ("calls/batch", json!({ "calls": calls }), 50)
        };
        let response = client
            .post(format!("{base}/api/v1/accounts/{account}/{route}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        let ids: Vec<String> = match body["ids"].as_array() {
            Some(ids) => ids.iter().map(|i| i.as_str().unwrap().to_owned()).collect(),
            None => vec![body["id"].as_str().unwrap().to_owned()],
        };
        acked.lock().unwrap().extend(ids);
        n += count;
    }
}

/// The bound on a CLI command beside the busy server. Taking turns, each of a command's few
/// write transactions waits for at most one of the server's (200 ms, or one group when the
/// server sees it waiting): a command takes well under a second. Without turns it waited
/// for a moment between the server's commit and its next `BEGIN`, polling every 100 ms:
/// seconds in a debug build (3–9 s measured here), tens of seconds or the busy timeout in a
/// release build.
const CLI_BOUND: Duration = Duration::from_secs(5);

/// Enough ingest clients that calls are queued whenever the server commits: the moment it
/// lets the write lock go lasts no longer than its next `BEGIN`.
const CLIENTS: u32 = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_writes_beside_a_server_under_sustained_ingest_each_get_their_turn_within_seconds() {
    let dir = Backing::new();
    let live = dir.data();
    let logs = dir.path().join("logs");
    let (_, account) = cli_tenant(&live, true);
    let served = Served::start(&live, &logs, &[]);
    let admin = served.bootstrap_token.clone().unwrap();
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client_no| {
            tokio::spawn(ingest_until(
                served.address.clone(),
                admin.clone(),
                account.clone(),
                client_no,
                acked.clone(),
                stop.clone(),
            ))
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for round in 0..5 {
        let out = dir.path().join(format!("backup-{round}"));
        let commands: Vec<Vec<String>> = vec![
            vec!["token", "create", "--role", "admin", "--json"],
            vec!["redact", "call", "<a call>", "--json"],
            // PostgreSQL is backed up with its own tools: a check of the whole journal, read
            // beside the writer, stands in.
            if dir.is_postgres() {
                vec!["audit", "verify", "--json"]
            } else {
                vec!["backup", "--out", out.to_str().unwrap(), "--json"]
            },
        ]
        .into_iter()
        .map(|c| c.into_iter().map(str::to_owned).collect())
        .collect();
        for mut args in commands {
            // Ingest is under way as each command starts.
            let floor = acked.lock().unwrap().len() + 60;
            while acked.lock().unwrap().len() < floor {
                tokio::task::yield_now().await;
            }
            if args[0] == "redact" {
                args[2] = acked.lock().unwrap()[round * 10].clone();
            }
            let before = acked.lock().unwrap().len();
            let started = Instant::now();
            let (code, _, err) = {
                let (live, args) = (live.clone(), args.clone());
                tokio::task::spawn_blocking(move || {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    run_cli(&live, &args)
                })
                .await
                .unwrap()
            };
            let took = started.elapsed();
            println!(
                "round {round}: `{}` beside the server took {took:?}",
                args[0]
            );
            assert_eq!(
                code, 0,
                "round {round}: `{}` beside the server: {err}",
                args[0]
            );
            assert!(
                took < CLI_BOUND,
                "round {round}: `{}` waited {took:?} for its turn beside the server",
                args[0]
            );
            assert!(
                acked.lock().unwrap().len() > before,
                "round {round}: ingest went on while `{}` ran",
                args[0]
            );
            slowest = slowest.max(took);
        }
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    assert!(served.stop().success());
    println!("slowest CLI command beside the server: {slowest:?}");
}

/// Posts calls from `number` with an inline consent until `stop`; counts the answers by
/// class. A 5xx is never acceptable.
async fn post_with_consent_until(
    app_address: String,
    token: String,
    account: ringfence_core::AccountId,
    number: String,
    client_no: u32,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicU32>,
    server_errors: Arc<std::sync::Mutex<Vec<String>>>,
) {
    let client = reqwest::Client::new();
    let mut n = 0u32;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let mut call = full_call(9);
        call["caller_number"] = json!(number);
        call["external_id"] = json!(format!("consenting-{client_no}-{n}"));
        call["consents"] = json!([
            {"category": "recording", "status": "granted", "method": "ivr_keypress"},
            {"category": "transcript", "status": "granted", "method": "ivr_keypress"}
        ]);
        let response = client
            .post(format!("{app_address}/api/v1/accounts/{account}/calls"))
            .bearer_auth(&token)
            .json(&call)
            .send()
            .await
            .unwrap();
        let status = response.status();
        if status.is_server_error() {
            let body = response.text().await.unwrap_or_default();
            server_errors
                .lock()
                .unwrap()
                .push(format!("{status}: {body}"));
        } else {
            assert_eq!(status, StatusCode::CREATED, "client {client_no}, call {n}");
        }
        acknowledged.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ingest_with_consent_while_its_caller_is_erased_never_fails_and_keeps_nothing_of_them() {
    let app = TestApp::spawn().await;
    let agency = app.agency(true).await;
    let server_errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut forgets = 0u32;
    for round in 0..4u16 {
        let account = app.account(agency).await;
        let number = uk_number(520 + round);
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicU32::new(0));
        let posters: Vec<_> = (0..6u32)
            .map(|client_no| {
                tokio::spawn(post_with_consent_until(
                    app.address.clone(),
                    app.admin.clone(),
                    account,
                    number.clone(),
                    client_no,
                    stop.clone(),
                    acknowledged.clone(),
                    server_errors.clone(),
                ))
            })
            .collect();
        // Each erasure destroys the subject's key; the calls after it issue it again, and
        // another erasure can land between an issue and its read. Three erase at once, at
        // moments of their own.
        let erasers: Vec<_> = (0..3)
            .map(|_| {
                let (client, url, token) = (
                    app.client.clone(),
                    app.url(&format!("/api/v1/accounts/{account}/callers/redact")),
                    app.admin.clone(),
                );
                let (number, acknowledged) = (number.clone(), acknowledged.clone());
                tokio::spawn(async move {
                    for _ in 0..5 {
                        let floor = acknowledged.load(Ordering::Relaxed) + 12;
                        while acknowledged.load(Ordering::Relaxed) < floor {
                            tokio::task::yield_now().await;
                        }
                        let response = client
                            .post(&url)
                            .bearer_auth(&token)
                            .json(&json!({"number": number, "forget": true}))
                            .send()
                            .await
                            .unwrap();
                        let status = response.status();
                        assert_eq!(status, StatusCode::OK, "{}", response.text().await.unwrap());
                    }
                })
            })
            .collect();
        for eraser in erasers {
            eraser.await.unwrap();
            forgets += 5;
        }
        stop.store(true, Ordering::Relaxed);
        for poster in posters {
            poster.await.unwrap();
        }
        // Every call is the forgotten caller's: each is redacted, and no consent of theirs
        // is left in the ledger.
        let (status, page) = app
            .get(
                &app.admin,
                &format!("/api/v1/accounts/{account}/calls?limit=500&redacted=false"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(
            page["items"],
            json!([]),
            "round {round}: calls of an erased caller kept their data"
        );
        let (status, ledger) = app
            .get(
                &app.admin,
                &format!(
                    "/api/v1/accounts/{account}/consents?subject=%2B{}",
                    &number[1..]
                ),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{ledger}");
        assert_eq!(
            ledger["items"],
            json!([]),
            "round {round}: consents of an erased caller kept"
        );
    }
    assert!(forgets >= 60);
    let errors = server_errors.lock().unwrap();
    assert!(
        errors.is_empty(),
        "{} server errors, the first: {}",
        errors.len(),
        errors[0]
    );
}

/// A recording's bytes: position-dependent, so a shifted or repeated piece shows.
fn recording_bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i / 7) as u8).wrapping_mul(31) ^ (i as u8) ^ seed)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recording_read_while_its_call_is_redacted_is_whole_or_refused_up_front() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    // Larger than what loopback sockets and client buffers hold, so an answer paused by its
    // reader is still being read from storage when the redaction deletes the file.
    const LEN: usize = 40 << 20;
    for round in 0..2u8 {
        let call = app.ingest(account, full_call(40 + u16::from(round))).await;
        let audio = Arc::new(recording_bytes(LEN, round));
        let (status, body) = app
            .upload_recording(&app.admin, &call, audio.to_vec(), "audio/wav")
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        // Readers that have their answer's first bytes, then wait for the redaction.
        let ranges: [Option<(usize, usize)>; 4] = [
            None,
            Some((0, LEN / 2)),
            Some((LEN / 3, LEN)),
            Some((1_000_003, LEN - 999)),
        ];
        let mut paused = Vec::new();
        for range in ranges {
            let header = range.map(|(s, e)| format!("bytes={s}-{}", e - 1));
            let mut response = app
                .download_recording(&app.admin, &call, header.as_deref())
                .await;
            let expected_status = if range.is_some() {
                StatusCode::PARTIAL_CONTENT
            } else {
                StatusCode::OK
            };
            assert_eq!(response.status(), expected_status);
            let length: usize = response.headers()["content-length"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let first = response.chunk().await.unwrap().unwrap();
            paused.push((range.unwrap_or((0, LEN)), length, first.to_vec(), response));
        }
        let (status, receipt) = app
            .post(
                &app.admin,
                &format!("/api/v1/calls/{call}/redact"),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{receipt}");
        let left: Vec<_> = files_below(&app.data_dir().join("recordings"))
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(&call))
            .collect();
        assert!(left.is_empty(), "the redaction deleted the file: {left:?}");
        // Every answer that had begun is whole and right.
        for ((start, end), length, mut got, mut response) in paused {
            assert_eq!(length, end - start);
            loop {
                match response.chunk().await {
                    Ok(Some(piece)) => got.extend_from_slice(&piece),
                    Ok(None) => break,
                    Err(e) => panic!(
                        "round {round}: the answer for {start}..{end} broke off after {} of {length} bytes: {e}",
                        got.len()
                    ),
                }
            }
            assert_eq!(got.len(), length, "round {round}: {start}..{end}");
            assert!(
                got == audio[start..end],
                "round {round}: {start}..{end} is not the recording's bytes"
            );
        }
        // And an answer that begins after it is refused up front.
        for range in [None, Some("bytes=0-99")] {
            let response = app.download_recording(&app.admin, &call, range).await;
            assert_eq!(response.status(), StatusCode::GONE);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_recording_readers_and_a_redaction_see_whole_answers_or_clean_refusals() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    const LEN: usize = 3 << 20;
    let mut whole = 0u32;
    let mut refused = 0u32;
    for round in 0..6u8 {
        let call = app.ingest(account, full_call(60 + u16::from(round))).await;
        let audio = Arc::new(recording_bytes(LEN, round));
        let (status, body) = app
            .upload_recording(&app.admin, &call, audio.to_vec(), "audio/wav")
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let reads = Arc::new(AtomicU32::new(0));
        let readers: Vec<_> = (0..6usize)
            .map(|r| {
                let (client, url, token) = (
                    app.client.clone(),
                    app.url(&format!("/api/v1/calls/{call}/recording")),
                    app.admin.clone(),
                );
                let (audio, reads) = (audio.clone(), reads.clone());
                tokio::spawn(async move {
                    let (mut whole, mut refused) = (0u32, 0u32);
                    for i in 0usize.. {
                        let (start, end) = match (r + i) % 3 {
                            0 => (0, LEN),
                            1 => (LEN / 4 + i, LEN - 1),
                            _ => (70_001 * (i % 20), LEN / 2 + 11),
                        };
                        let mut request = client.get(&url).bearer_auth(&token);
                        if (start, end) != (0, LEN) {
                            request = request.header("range", format!("bytes={start}-{}", end - 1));
                        }
                        let response = request.send().await.unwrap();
                        let status = response.status();
                        if status == StatusCode::GONE || status == StatusCode::NOT_FOUND {
                            refused += 1;
                            break;
                        }
                        assert!(
                            status == StatusCode::OK || status == StatusCode::PARTIAL_CONTENT,
                            "reader {r}: {status}"
                        );
                        let length: usize = response.headers()["content-length"]
                            .to_str()
                            .unwrap()
                            .parse()
                            .unwrap();
                        let body = response.bytes().await.unwrap_or_else(|e| {
                            panic!("reader {r}: the answer for {start}..{end} broke off: {e}")
                        });
                        assert_eq!(body.len(), length, "reader {r}: {start}..{end}");
                        assert_eq!(length, end - start);
                        assert!(body[..] == audio[start..end], "reader {r}: {start}..{end}");
                        whole += 1;
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                    (whole, refused)
                })
            })
            .collect();
        while reads.load(Ordering::Relaxed) < 12 {
            tokio::task::yield_now().await;
        }
        let (status, receipt) = app
            .post(
                &app.admin,
                &format!("/api/v1/calls/{call}/redact"),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{receipt}");
        for reader in readers {
            let (w, r) = reader.await.unwrap();
            whole += w;
            refused += r;
        }
    }
    assert!(whole >= 72, "{whole} whole answers");
    assert_eq!(refused, 36, "every reader ends on a clean refusal");
}
