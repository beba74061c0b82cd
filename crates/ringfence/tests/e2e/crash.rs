//! Crash safety: SIGKILL at many points of a redaction; after a restart every call is either
//! intact or fully redacted, and no recording file of a redacted call remains.

use ringfence_store::IngestPolicy;
use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

fn setup(data: &Path) -> String {
    cli_tenant(data, true).1
}

/// Ingests `calls` calls of caller `caller` (external ids `prefix-i`), a recording on every tenth.
async fn ingest_caller(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    account: &str,
    prefix: &str,
    caller: &str,
    calls: usize,
) {
    let batch: Vec<Value> = (0..calls)
        .map(|i| {
            let mut c = full_call(i as u16);
            c["external_id"] = json!(format!("{prefix}-{i}"));
            c["caller_number"] = json!(caller);
            c
        })
        .collect();
    let response = client
        .post(format!("{base}/api/v1/accounts/{account}/calls/batch"))
        .bearer_auth(admin)
        .json(&json!({"calls": batch}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let ids: Value = response.json().await.unwrap();
    for id in ids["ids"].as_array().unwrap().iter().step_by(10) {
        let status = client
            .put(format!(
                "{base}/api/v1/calls/{}/recording",
                id.as_str().unwrap()
            ))
            .bearer_auth(admin)
            .header("content-type", "audio/wav")
            .body(vec![7u8; 70_000])
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::CREATED);
    }
}

async fn all_calls(client: &reqwest::Client, base: &str, admin: &str, account: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let page: Value = get_json(
            client,
            &format!("{base}/api/v1/accounts/{account}/calls?limit=500{cursor}"),
            admin,
        )
        .await;
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

/// Every call is intact (its caller and recording readable) or fully redacted (nothing
/// personal, recording gone, file deleted). Returns (intact, redacted).
async fn check_each_call(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    data: &Path,
    calls: &[Value],
) -> (usize, usize) {
    let (mut intact, mut redacted) = (0, 0);
    for call in calls {
        let id = call["id"].as_str().unwrap();
        let recording = client
            .get(format!("{base}/api/v1/calls/{id}/recording"))
            .bearer_auth(admin)
            .send()
            .await
            .unwrap()
            .status();
        let files = files_below(&data.join("recordings"))
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(id))
            .count();
        if call["redaction"].is_null() {
            assert!(
                call["caller"]["number"].is_string(),
                "an unredacted call must be readable: {call}"
            );
            assert!(call["transcript"].is_string(), "{call}");
            if call["recording"].is_object() {
                assert_eq!(recording, StatusCode::OK, "{id}");
                assert_eq!(files, 1, "{id}");
            }
            intact += 1;
        } else {
            for gone in ["caller", "transcript", "visitor", "recording", "notes"] {
                assert!(
                    call[gone].is_null(),
                    "a redacted call keeps nothing personal: {call}"
                );
            }
            assert_eq!(recording, StatusCode::GONE, "{id}");
            assert_eq!(
                files, 0,
                "no recording file of a redacted call may remain: {id}"
            );
            redacted += 1;
        }
    }
    (intact, redacted)
}

fn pending_jobs(data: &Path) -> i64 {
    let conn = rusqlite::Connection::open_with_flags(
        data.join("ringfence.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    conn.query_row("SELECT COUNT(*) FROM redaction_jobs", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn a_caller_redaction_killed_at_any_point_leaves_each_call_intact_or_fully_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let logs = dir.path().join("logs");
    let account = setup(&data);
    let client = reqwest::Client::new();
    let served = Served::start(&data, &logs, &[]);
    let admin = served.bootstrap_token.clone().unwrap();
    const KILLS: usize = 14;
    for k in 0..=KILLS {
        ingest_caller(
            &client,
            &served.address,
            &admin,
            &account,
            &format!("c{k}"),
            &uk_number(100 + k as u16),
            150,
        )
        .await;
    }
    assert!(served.stop().success());

    // How long a whole redaction takes here, so the kills spread over all of it.
    let started = std::time::Instant::now();
    let (code, _, err) = run_cli(
        &data,
        &[
            "redact",
            "caller",
            "--account",
            &account,
            &uk_number(100 + KILLS as u16),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let whole = started.elapsed().as_millis() as u64;
    // Spread over 1.5 times that, the last one well after it (a busy machine may run a
    // redaction slower than the measured one).
    let delays_ms: Vec<u64> = (0..KILLS as u64)
        .map(|i| {
            if i + 1 == KILLS as u64 {
                whole * 3
            } else {
                i * whole * 15 / 10 / KILLS as u64
            }
        })
        .collect();

    // One killed redaction per caller, each at a different moment.
    for (k, delay) in delays_ms.iter().enumerate() {
        let mut child = binary()
            .arg("--data")
            .arg(&data)
            .args([
                "redact",
                "caller",
                "--account",
                &account,
                &uk_number(100 + k as u16),
            ])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(*delay));
        let _ = child.kill();
        let _ = child.wait();
    }

    // On restart the server finishes what was interrupted before it serves.
    let served = Served::start(&data, &logs, &[]);
    assert_eq!(
        pending_jobs(&data),
        0,
        "every interrupted redaction was finished on start"
    );
    let calls = all_calls(&client, &served.address, &admin, &account).await;
    assert_eq!(calls.len(), 150 * (KILLS + 1));
    let (intact, redacted) = check_each_call(&client, &served.address, &admin, &data, &calls).await;
    // A caller's redaction is one job: all of a caller's calls share one fate.
    for k in 0..delays_ms.len() {
        let prefix = format!("c{k}-");
        let states: std::collections::BTreeSet<bool> = calls
            .iter()
            .filter(|c| c["external_id"].as_str().unwrap().starts_with(&prefix))
            .map(|c| c["redaction"].is_null())
            .collect();
        assert_eq!(states.len(), 1, "caller {k}: some calls redacted, some not");
    }
    assert!(
        redacted > 150,
        "some kills came late enough to redact (intact {intact}, redacted {redacted}, kills over {whole} ms)"
    );
    assert!(
        intact > 0,
        "some kills came early enough to leave calls intact (intact {intact}, redacted {redacted}, kills over {whole} ms)"
    );
    // Each redaction was journaled once, however often it was resumed.
    let journal: Value = get_json(
        &client,
        &format!("{}/api/v1/audit?limit=500", served.address),
        &admin,
    )
    .await;
    let caller_entries = journal["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "caller.redacted" && e["count"].as_u64().unwrap_or(0) > 0)
        .count();
    assert_eq!(caller_entries * 150, redacted, "{journal}");
    assert!(served.stop().success());
    let (code, _, err) = run_cli(&data, &["audit", "verify"]);
    assert_eq!(code, 0, "{err}");
}

#[tokio::test]
async fn a_server_killed_during_many_call_redactions_restarts_with_each_call_intact_or_fully_redacted()
 {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let logs = dir.path().join("logs");
    let account = setup(&data);
    let client = reqwest::Client::new();
    let mut admin = String::new();
    let mut total = 0;
    for (round, delay) in [5u64, 20, 60].into_iter().enumerate() {
        let served = Served::start(&data, &logs, &[]);
        if let Some(t) = served.bootstrap_token.clone() {
            admin = t;
        }
        ingest_caller(
            &client,
            &served.address,
            &admin,
            &account,
            &format!("r{round}"),
            &uk_number(round as u16),
            200,
        )
        .await;
        total += 200;
        let calls = all_calls(&client, &served.address, &admin, &account).await;
        let targets: Vec<String> = calls
            .iter()
            .filter(|c| {
                c["external_id"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("r{round}-"))
            })
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect();
        let mut tasks = Vec::new();
        for id in targets {
            let (client, base, admin) = (client.clone(), served.address.clone(), admin.clone());
            tasks.push(tokio::spawn(async move {
                let _ = client
                    .post(format!("{base}/api/v1/calls/{id}/redact"))
                    .bearer_auth(admin)
                    .send()
                    .await;
            }));
        }
        tokio::time::sleep(Duration::from_millis(delay)).await;
        tokio::task::spawn_blocking(move || served.kill())
            .await
            .unwrap();
        for t in tasks {
            let _ = t.await;
        }
    }
    let served = Served::start(&data, &logs, &[]);
    assert_eq!(pending_jobs(&data), 0);
    let calls = all_calls(&client, &served.address, &admin, &account).await;
    assert_eq!(calls.len(), total);
    check_each_call(&client, &served.address, &admin, &data, &calls).await;
    assert!(served.stop().success());
}

/// Calls straight into the call log (no HTTP), to build a large log quickly.
async fn bulk_ingest(
    resources: &ringfence::Resources,
    account: ringfence_core::AccountId,
    count: usize,
    days_ago: u32,
    offset: usize,
) {
    use ringfence_core::call::{CallerIdentity, NewCall};
    use ringfence_core::phone::parse_e164;
    use ringfence_core::timestamp::Timestamp;
    let tracking = parse_e164(&us_number(0)).unwrap();
    let numbers: Vec<_> = (0..1000u16)
        .map(|n| parse_e164(&uk_number(n)).unwrap())
        .collect();
    let start = Timestamp::now().minus_days(days_ago);
    let mut made = 0;
    while made < count {
        let n = (count - made).min(5000);
        let batch: Vec<NewCall> = (made..made + n)
            .map(|i| NewCall {
                external_id: Some(format!("bulk-{}", offset + i)),
                started_at: Timestamp::from_millis(start.millis() - (i as i64 % 86_400) * 1000),
                duration_s: Some(60),
                direction: None,
                status: None,
                tracking_number: tracking.clone(),
                source: Some("google_ads".into()),
                campaign: None,
                utm: Default::default(),
                caller: CallerIdentity {
                    number: Some(numbers[i % 1000].clone()),
                    name: None,
                    forwarded_from: None,
                },
                location: Default::default(),
                transcript: None,
                interaction: Default::default(),
                session_id: None,
                visitor: None,
                consents: Vec::new(),
            })
            .collect();
        resources
            .log
            .ingest_calls(account, batch, &IngestPolicy::collect_all("test"))
            .await
            .unwrap();
        made += n;
    }
}

#[tokio::test]
async fn a_sweep_killed_midway_finishes_on_the_next_run_redacting_each_overdue_call_exactly_once() {
    const OVERDUE: usize = 200_000;
    const RECENT: usize = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let account = setup(&data);
    let account_id: ringfence_core::AccountId = account.parse().unwrap();
    {
        let resources = ringfence::Resources::open(&ringfence::Config::in_folder(&data))
            .await
            .unwrap();
        bulk_ingest(&resources, account_id, OVERDUE, 40, 0).await;
        bulk_ingest(&resources, account_id, RECENT, 10, OVERDUE).await;
        resources.close().await;
    }
    let (code, _, err) = run_cli(
        &data,
        &["account", "set", &account, "--auto-redact", "30", "--yes"],
    );
    assert_eq!(code, 0, "{err}");

    // Kill the sweep twice, at different moments, then let it finish.
    for delay in [700u64, 1500] {
        let mut child = binary()
            .arg("--data")
            .arg(&data)
            .args(["sweep"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
    }
    let conn = rusqlite::Connection::open_with_flags(
        data.join("ringfence.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    let before_finish = count("SELECT COUNT(*) FROM calls WHERE redacted_at IS NOT NULL");
    assert!(
        before_finish < OVERDUE as i64,
        "the kills came before the sweep was done ({before_finish})"
    );
    let (code, out, err) = run_cli(&data, &["sweep", "--json"]);
    assert_eq!(code, 0, "{err}");
    let last: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(
        last["calls"].as_i64().unwrap() <= OVERDUE as i64 - before_finish,
        "{last}"
    );

    assert_eq!(
        count("SELECT COUNT(*) FROM calls WHERE redacted_at IS NOT NULL"),
        OVERDUE as i64,
        "every overdue call is redacted"
    );
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM calls WHERE redacted_at IS NOT NULL AND CAST(substr(external_id, 6) AS INTEGER) >= 200000"
        ),
        0,
        "no call redacted early"
    );
    assert_eq!(count("SELECT COUNT(*) FROM redaction_jobs"), 0);
    // Exactly once: the journal's counts add up to the number of calls, and no call id is
    // named by two entries.
    let journaled = count(
        "SELECT COALESCE(SUM(count), 0) FROM audit_log WHERE actor = 'retention' AND action = 'call.redacted'",
    );
    assert_eq!(journaled, OVERDUE as i64);
    let mut stmt = conn
        .prepare(
            "SELECT subject FROM audit_log WHERE actor = 'retention' AND action = 'call.redacted'",
        )
        .unwrap();
    let mut seen = std::collections::HashSet::new();
    for subject in stmt.query_map([], |r| r.get::<_, String>(0)).unwrap() {
        for id in subject.unwrap().split(',').filter(|s| !s.is_empty()) {
            assert!(seen.insert(id.to_owned()), "call {id} journaled twice");
        }
    }
    assert_eq!(seen.len(), OVERDUE);
    let keys = rusqlite::Connection::open_with_flags(
        data.join("vault.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let call_keys: i64 = keys
        .query_row(
            "SELECT COUNT(*) FROM data_keys WHERE purpose = 'call'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        call_keys, RECENT as i64,
        "only the recent calls keep their keys"
    );
    let (code, _, err) = run_cli(&data, &["audit", "verify"]);
    assert_eq!(code, 0, "{err}");
}

/// The size of the call log's redo log (`ringfence.db-redo`) in `data`.
fn redo_log_size(data: &Path) -> u64 {
    files_below(data)
        .iter()
        .filter(|f| f.to_string_lossy().ends_with("-redo"))
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum()
}

#[tokio::test]
async fn calls_acknowledged_just_before_a_sigkill_are_all_there_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let logs = dir.path().join("logs");
    let account = setup(&data);
    let client = reqwest::Client::new();
    let mut admin = String::new();
    // (id, external id, caller number) of every call answered 201.
    let mut acknowledged: Vec<(String, String, Value)> = Vec::new();
    let mut replays = 0;
    for round in 0..3u16 {
        let served = Served::start(&data, &logs, &[]);
        if let Some(t) = served.bootstrap_token.clone() {
            admin = t;
        }
        // Single calls from 16 connections and two batches, all at once; SIGKILL right
        // after the last answer, before the open transaction's own commit (200 ms).
        let mut tasks = Vec::new();
        let target = (
            client.clone(),
            served.address.clone(),
            admin.clone(),
            account.clone(),
        );
        for conn in 0..16u16 {
            let (client, base, admin, account) = target.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for i in 0..8u16 {
                    let mut call = full_call(conn * 8 + i);
                    let external = format!("k{round}-{conn}-{i}");
                    call["external_id"] = json!(external);
                    let caller = call["caller_number"].clone();
                    let response = client
                        .post(format!("{base}/api/v1/accounts/{account}/calls"))
                        .bearer_auth(&admin)
                        .json(&call)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), StatusCode::CREATED);
                    let body: Value = response.json().await.unwrap();
                    got.push((body["id"].as_str().unwrap().to_owned(), external, caller));
                }
                got
            }));
        }
        for b in 0..2u16 {
            let (client, base, admin, account) = target.clone();
            tasks.push(tokio::spawn(async move {
                let calls: Vec<Value> = (0..100u16)
                    .map(|i| {
                        let mut c = full_call(i);
                        c["external_id"] = json!(format!("kb{round}-{b}-{i}"));
                        c
                    })
                    .collect();
                let response = client
                    .post(format!("{base}/api/v1/accounts/{account}/calls/batch"))
                    .bearer_auth(&admin)
                    .json(&json!({ "calls": calls }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::CREATED);
                let body: Value = response.json().await.unwrap();
                body["ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .zip(&calls)
                    .map(|(id, c)| {
                        (
                            id.as_str().unwrap().to_owned(),
                            c["external_id"].as_str().unwrap().to_owned(),
                            c["caller_number"].clone(),
                        )
                    })
                    .collect::<Vec<_>>()
            }));
        }
        for t in tasks {
            acknowledged.extend(t.await.unwrap());
        }
        tokio::task::spawn_blocking(move || served.kill())
            .await
            .unwrap();
        if redo_log_size(&data) > 0 {
            replays += 1;
        }
    }
    assert!(
        replays > 0,
        "every kill found the log empty: the test did not reach a crash with writes to replay"
    );
    let served = Served::start(&data, &logs, &[]);
    assert_eq!(redo_log_size(&data), 0, "replayed on start");
    for (id, external, caller) in &acknowledged {
        let response = client
            .get(format!("{}/api/v1/calls/{id}", served.address))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "acknowledged call {id} is lost"
        );
        let call: Value = response.json().await.unwrap();
        assert_eq!(call["external_id"], json!(external));
        assert_eq!(&call["caller"]["number"], caller);
    }
    let all = all_calls(&client, &served.address, &admin, &account).await;
    assert_eq!(all.len(), acknowledged.len(), "nothing stored twice");
    // A re-delivery after the restart is recognised.
    let (id, external, _) = &acknowledged[0];
    let mut again = full_call(0);
    again["external_id"] = json!(external);
    let response = client
        .post(format!(
            "{}/api/v1/accounts/{account}/calls",
            served.address
        ))
        .bearer_auth(&admin)
        .json(&again)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["id"], json!(id));
    assert!(served.stop().success());
}
