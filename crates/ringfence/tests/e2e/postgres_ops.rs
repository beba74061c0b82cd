//! Operating Ringfence on PostgreSQL (issue 20), through the real binary on the server
//! `RINGFENCE_TEST_DATABASE_URL` names: SIGKILL of `serve` during ingest and during a large
//! caller redaction, what a redaction leaves in PostgreSQL's data directory, and
//! `ringfence replay` after a restore by `pg_dump`/`pg_restore`. Compiled into `e2e_postgres`
//! only.

use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

/// A backing on PostgreSQL, or `None` (and a line saying so) when the run has no server and
/// does not require one (`server_url` fails the test when `RINGFENCE_POSTGRES_REQUIRED=1`).
fn postgres_backing() -> Option<Backing> {
    let backing = Backing::new();
    if !backing.is_postgres() {
        println!("skipped: PostgreSQL operations need {URL_VARIABLE}");
        return None;
    }
    Some(backing)
}

const URL_VARIABLE: &str = "RINGFENCE_TEST_DATABASE_URL";

/// The URLs (with credentials) of a data folder's call log and vault.
fn database_urls(data: &Path) -> (String, String) {
    let log = postgres_call_log(data).expect("a PostgreSQL call log");
    let ringfence::config::DatabaseLocation::Postgres(vault) = config_for(data).vault else {
        panic!("the vault is not on PostgreSQL");
    };
    let mut url = url::Url::parse(&log).expect("a URL");
    url.set_path(vault.database());
    (log, url.to_string())
}

/// Runs a PostgreSQL client program; panics with its stderr when it fails.
fn pg_tool(program: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs (postgresql-client is installed): {e}"));
    assert!(
        output.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every call of an account, page by page.
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
        out.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

/// Posts `calls` calls of `caller` as one batch (external ids `prefix-i`); their ids.
async fn batch(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    account: &str,
    prefix: &str,
    caller: &str,
    calls: usize,
) -> Vec<String> {
    let calls: Vec<Value> = (0..calls)
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
        .json(&json!({ "calls": calls }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.expect("JSON");
    body["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|id| id.as_str().expect("id").to_owned())
        .collect()
}

fn cli_json(data: &Path, args: &[&str]) -> Value {
    let (code, out, err) = run_cli(data, args);
    assert_eq!(code, 0, "ringfence {args:?} failed: {err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("JSON from {args:?}: {out}"))
}

#[tokio::test]
async fn a_replay_after_pg_restore_brings_back_every_redaction_and_forget_made_since_the_dump() {
    let Some(live) = postgres_backing() else {
        return;
    };
    let data = live.data();
    let logs = live.path().join("logs");
    let (_, account) = cli_tenant(&data, true);
    let client = reqwest::Client::new();
    let served = Served::start(&data, &logs, &[]);
    let admin = served.bootstrap_token.clone().expect("bootstrap token");
    let forgotten = uk_number(601);
    let (a, b, c) = (
        batch(
            &client,
            &served.address,
            &admin,
            &account,
            "a",
            &forgotten,
            3,
        )
        .await,
        batch(
            &client,
            &served.address,
            &admin,
            &account,
            "b",
            &uk_number(602),
            2,
        )
        .await,
        batch(
            &client,
            &served.address,
            &admin,
            &account,
            "c",
            &uk_number(603),
            2,
        )
        .await,
    );
    assert!(served.stop().success());

    // The operator's backup: the call log, then the vault (keys without rows, never rows
    // without keys), each with pg_dump.
    let (log_url, vault_url) = database_urls(&data);
    let dumps = live.path().join("dumps");
    std::fs::create_dir_all(&dumps).unwrap();
    let (log_dump, vault_dump) = (dumps.join("calls.dump"), dumps.join("vault.dump"));
    for (url, file) in [(&log_url, &log_dump), (&vault_url, &vault_dump)] {
        pg_tool(
            "pg_dump",
            &[
                "--format=custom",
                "--dbname",
                url,
                "--file",
                file.to_str().unwrap(),
            ],
        );
    }

    // After the dump: one call redacted, one caller redacted and forgotten.
    cli_json(&data, &["redact", "call", &c[0], "--json"]);
    let receipt = cli_json(
        &data,
        &[
            "redact",
            "caller",
            "--account",
            &account,
            &forgotten,
            "--forget",
            "--json",
        ],
    );
    assert_eq!(receipt["redacted_calls"], 3, "{receipt}");

    // The restore, with PostgreSQL's own tool, into two new databases.
    let restored = Backing::unmigrated();
    let restored_data = restored.data();
    let (restored_log, restored_vault) = database_urls(&restored_data);
    for (url, file) in [(&restored_log, &log_dump), (&restored_vault, &vault_dump)] {
        pg_tool(
            "pg_restore",
            &[
                "--no-owner",
                "--exit-on-error",
                "--dbname",
                url,
                file.to_str().unwrap(),
            ],
        );
    }
    // The master key is the operator's to bring: dumps never hold it.
    ringfence_store::private::create_dir(&restored_data).unwrap();
    ringfence_store::private::copy_file(
        &data.join("master.key"),
        &restored_data.join("master.key"),
    )
    .unwrap();
    let redacted_in = |url: &str| {
        postgres_count(
            url,
            "SELECT COUNT(*) FROM calls WHERE redacted_at IS NOT NULL",
        )
    };
    assert_eq!(
        redacted_in(&restored_log),
        0,
        "the dump predates the redactions"
    );
    assert_eq!(redacted_in(&log_url), 4);

    // A replay onto itself, or from a source that is not a call log, changes nothing.
    let (code, _, err) = run_cli(&restored_data, &["replay", "--journal-from", &restored_log]);
    assert_ne!(code, 0);
    assert!(err.contains("database being replayed onto"), "{err}");
    assert!(
        !err.contains("postgres@"),
        "credentials in URLs never reach messages: {err}"
    );
    let (code, _, err) = run_cli(&restored_data, &["replay", "--journal-from", &vault_url]);
    assert_ne!(code, 0);
    assert!(
        err.contains("holds no Ringfence call log") || err.contains("is empty"),
        "{err}"
    );
    assert_eq!(redacted_in(&restored_log), 0);

    let journal_before = read_journal(&restored_data).len();
    let replayed = cli_json(
        &restored_data,
        &["replay", "--journal-from", &log_url, "--json"],
    );
    assert_eq!(replayed["redactions_reapplied"], 4, "{replayed}");
    assert_eq!(replayed["up_to_date"], false, "{replayed}");
    assert!(replayed["warning"].is_null(), "the dumps pair: {replayed}");
    assert_eq!(
        replayed["replayed_after"].as_i64().unwrap(),
        journal_before as i64,
        "{replayed}"
    );

    // The calls are redacted again, their keys destroyed again in the restored vault, the
    // caller is on the forget list again; the third caller is untouched.
    let redacted_ids = |url: &str| -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for id in a.iter().chain(&b).chain(&c) {
            if postgres_count(
                url,
                &format!(
                    "SELECT COUNT(*) FROM calls WHERE id = '{id}' AND redacted_at IS NOT NULL AND caller_identity IS NULL AND transcript IS NULL"
                ),
            ) == 1
            {
                ids.push(id.clone());
            }
        }
        ids
    };
    let mut expected: Vec<String> = a.iter().chain([&c[0]]).cloned().collect();
    expected.sort();
    let mut got = redacted_ids(&restored_log);
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(redacted_ids(&log_url).len(), 4);
    for id in &expected {
        assert_eq!(
            postgres_count(
                &restored_vault,
                &format!("SELECT COUNT(*) FROM data_keys WHERE id = '{id}'")
            ),
            0,
            "the key of redacted call {id} is destroyed again"
        );
    }
    for id in b.iter().chain([&c[1]]) {
        assert_eq!(
            postgres_count(
                &restored_vault,
                &format!("SELECT COUNT(*) FROM data_keys WHERE id = '{id}'")
            ),
            1,
            "the key of live call {id} stays"
        );
    }
    assert_eq!(
        postgres_count(&restored_log, "SELECT COUNT(*) FROM forget_list"),
        1
    );
    let journal_after = read_journal(&restored_data);
    let last = journal_after.last().unwrap();
    assert_eq!(last.event.action, "replay.completed");
    assert_eq!(last.event.count, Some(4));

    // Idempotent: a second replay finds nothing new and changes nothing.
    let again = cli_json(
        &restored_data,
        &["replay", "--journal-from", &log_url, "--json"],
    );
    assert_eq!(again["up_to_date"], true, "{again}");
    assert_eq!(again["redactions_reapplied"], 0, "{again}");
    assert_eq!(read_journal(&restored_data).len(), journal_after.len());

    // The restored installation journals verify, and the forgotten caller's next call arrives
    // redacted; the others read as before.
    let (code, out, err) = run_cli(&restored_data, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    let served = Served::start(&restored_data, &restored.path().join("logs"), &[]);
    let after = batch(
        &client,
        &served.address,
        &admin,
        &account,
        "a-late",
        &forgotten,
        1,
    )
    .await;
    let call: Value = get_json(
        &client,
        &format!("{}/api/v1/calls/{}", served.address, after[0]),
        &admin,
    )
    .await;
    assert!(!call["redaction"].is_null(), "forgotten on arrival: {call}");
    let calls = all_calls(&client, &served.address, &admin, &account).await;
    assert_eq!(calls.len(), 8);
    for call in &calls {
        let id = call["id"].as_str().unwrap();
        if b.iter().any(|x| x == id) || id == c[1] {
            assert!(call["caller"]["number"].is_string(), "{call}");
        } else {
            assert!(call["caller"].is_null(), "{call}");
        }
    }
    assert!(served.stop().success());

    // Paired with the live vault instead, whose journal anchor is past the dump, the replay
    // re-applies all the same but warns that `audit verify` will not pass (the known gap).
    let third = Backing::unmigrated();
    let (third_log, _) = database_urls(&third.data());
    pg_tool(
        "pg_restore",
        &[
            "--no-owner",
            "--exit-on-error",
            "--dbname",
            &third_log,
            log_dump.to_str().unwrap(),
        ],
    );
    ringfence_store::private::create_dir(&third.data()).unwrap();
    ringfence_store::private::copy_file(&data.join("master.key"), &third.data().join("master.key"))
        .unwrap();
    let output = binary()
        .arg("--data")
        .arg(third.data())
        .env("RINGFENCE_DATABASE_URL", &third_log)
        .env("RINGFENCE_VAULT_URL", &vault_url)
        .args(["replay", "--journal-from", &log_url, "--json"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let warned: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(warned["redactions_reapplied"], 4, "{warned}");
    assert!(
        warned["warning"]
            .as_str()
            .is_some_and(|w| w.contains("journal anchor")),
        "{warned}"
    );
    assert_eq!(redacted_in(&third_log), 4);

    // A journal that does not verify is never replayed.
    postgres_execute(
        &log_url,
        "UPDATE audit_log SET actor = 'someone else' WHERE seq = 2",
    );
    let (code, _, err) = run_cli(&restored_data, &["replay", "--journal-from", &log_url]);
    assert_ne!(code, 0);
    assert!(err.contains("is broken"), "{err}");
}

/// A batch of calls posted by a client: its external ids, and the ids it was answered with
/// (`None`: no answer, the server was killed first).
struct Posted {
    externals: Vec<String>,
    callers: Vec<String>,
    ids: Option<Vec<String>>,
}

#[tokio::test]
async fn serve_killed_during_batch_ingest_from_several_clients_loses_no_acknowledged_call() {
    let Some(backing) = postgres_backing() else {
        return;
    };
    let data = backing.data();
    let logs = backing.path().join("logs");
    let (_, account) = cli_tenant(&data, true);
    let client = reqwest::Client::new();
    let mut admin = String::new();
    let mut posted: Vec<Posted> = Vec::new();
    const CLIENTS: usize = 6;
    const KILLS: usize = 3;
    for round in 0..KILLS {
        let served = Served::start(&data, &logs, &[]);
        if let Some(t) = served.bootstrap_token.clone() {
            admin = t;
        }
        // Each client posts batches of 40 calls until its requests fail; the kill comes once
        // the clients have had 4 answers each on average, while every client has one in flight.
        let acknowledged = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let (client, base, admin, account, acknowledged) = (
                client.clone(),
                served.address.clone(),
                admin.clone(),
                account.clone(),
                acknowledged.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                for b in 0.. {
                    let calls: Vec<Value> = (0..40u16)
                        .map(|i| {
                            let mut call = full_call(c as u16 * 40 + i);
                            call["external_id"] = json!(format!("k{round}-{c}-{b}-{i}"));
                            call
                        })
                        .collect();
                    let externals = calls
                        .iter()
                        .map(|x| x["external_id"].as_str().unwrap().to_owned())
                        .collect();
                    let callers = calls
                        .iter()
                        .map(|x| x["caller_number"].as_str().unwrap().to_owned())
                        .collect();
                    let answer = client
                        .post(format!("{base}/api/v1/accounts/{account}/calls/batch"))
                        .bearer_auth(&admin)
                        .json(&json!({ "calls": calls }))
                        .send()
                        .await;
                    let ids = match answer {
                        Ok(r) if r.status() == StatusCode::CREATED => match r.json::<Value>().await
                        {
                            Ok(body) => Some(
                                body["ids"]
                                    .as_array()
                                    .unwrap()
                                    .iter()
                                    .map(|x| x.as_str().unwrap().to_owned())
                                    .collect::<Vec<_>>(),
                            ),
                            Err(_) => None,
                        },
                        Ok(r) => panic!("a batch was refused: {}", r.status()),
                        Err(_) => None,
                    };
                    let answered = ids.is_some();
                    mine.push(Posted {
                        externals,
                        callers,
                        ids,
                    });
                    if !answered {
                        return mine;
                    }
                    acknowledged.add_permits(1);
                }
                mine
            }));
        }
        let _ = acknowledged
            .acquire_many(4 * CLIENTS as u32)
            .await
            .expect("the clients are answered");
        tokio::task::spawn_blocking(move || served.kill())
            .await
            .unwrap();
        for t in tasks {
            posted.extend(t.await.unwrap());
        }
    }

    let served = Served::start(&data, &logs, &[]);
    let log_url = postgres_call_log(&data).unwrap();
    let stored = |external: &str| {
        postgres_count(
            &log_url,
            &format!("SELECT COUNT(*) FROM calls WHERE external_id = '{external}'"),
        )
    };
    let mut acknowledged = 0;
    let mut unanswered_stored = 0;
    for batch in &posted {
        match &batch.ids {
            Some(ids) => {
                for ((id, external), caller) in ids.iter().zip(&batch.externals).zip(&batch.callers)
                {
                    let call: Value = get_json(
                        &client,
                        &format!("{}/api/v1/calls/{id}", served.address),
                        &admin,
                    )
                    .await;
                    assert_eq!(
                        call["external_id"],
                        json!(external),
                        "acknowledged call {id} is lost: {call}"
                    );
                    assert_eq!(call["caller"]["number"], json!(caller), "{call}");
                    assert!(call["transcript"].is_string(), "intact: {call}");
                    acknowledged += 1;
                }
            }
            None => {
                // Never answered: all of the batch is stored, or none of it.
                let found: i64 = batch.externals.iter().map(|e| stored(e)).sum();
                assert!(
                    found == 0 || found == batch.externals.len() as i64,
                    "a batch is atomic: {found} of {} stored",
                    batch.externals.len()
                );
                unanswered_stored += found;
            }
        }
    }
    println!(
        "{} batches posted, {acknowledged} calls acknowledged, {unanswered_stored} calls of unanswered batches stored",
        posted.len()
    );
    assert!(acknowledged >= KILLS * 4 * CLIENTS * 40);
    let calls = all_calls(&client, &served.address, &admin, &account).await;
    assert_eq!(
        calls.len() as i64,
        acknowledged as i64 + unanswered_stored,
        "nothing stored twice, nothing but what was posted"
    );
    assert!(
        calls.iter().all(|c| c["caller"]["number"].is_string()),
        "every call intact"
    );
    assert!(served.stop().success());
    let (code, out, err) = run_cli(&data, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
}

/// Where a kill of a caller redaction comes: as soon as its job is recorded, once the
/// vault has destroyed its keys, once the call log has committed its rows (the job ends a
/// few milliseconds later, after the vault's VACUUM and the files: this kill usually lands
/// just after it, and tests a restart after a finished redaction).
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    JobRecorded,
    KeysDestroyed,
    RowsCleared,
}

#[tokio::test]
async fn serve_killed_during_a_large_caller_redaction_finishes_it_on_restart() {
    let Some(backing) = postgres_backing() else {
        return;
    };
    let data = backing.data();
    let logs = backing.path().join("logs");
    let (_, account) = cli_tenant(&data, true);
    let client = reqwest::Client::new();
    let (log_url, vault_url) = database_urls(&data);
    const CALLS: usize = 3000;
    let points = [
        KillPoint::JobRecorded,
        KillPoint::KeysDestroyed,
        KillPoint::RowsCleared,
    ];
    let served = Served::start(&data, &logs, &[]);
    let admin = served.bootstrap_token.clone().unwrap();
    // One caller per kill, thousands of calls each, a recording on a few; and a bystander.
    let mut ids_of: Vec<Vec<String>> = Vec::new();
    for k in 0..=points.len() {
        let mut ids = Vec::new();
        for part in 0..CALLS / 1000 {
            ids.extend(
                batch(
                    &client,
                    &served.address,
                    &admin,
                    &account,
                    &format!("r{k}-{part}"),
                    &uk_number(700 + k as u16),
                    1000,
                )
                .await,
            );
        }
        for id in ids.iter().step_by(1000) {
            let status = put_audio(
                &client,
                &format!("{}/api/v1/calls/{id}/recording", served.address),
                &admin,
                vec![7u8; 20_000],
            )
            .await;
            assert_eq!(status, StatusCode::CREATED);
        }
        ids_of.push(ids);
    }
    assert!(served.stop().success());
    let keys = || postgres_count(&vault_url, "SELECT COUNT(*) FROM data_keys");
    let jobs = || postgres_count(&log_url, "SELECT COUNT(*) FROM redaction_jobs");
    let redacted = || {
        postgres_count(
            &log_url,
            "SELECT COUNT(*) FROM calls WHERE redacted_at IS NOT NULL",
        )
    };

    let mut interrupted = 0;
    for (k, point) in points.iter().enumerate() {
        let served = Served::start(&data, &logs, &[]);
        let keys_before = keys();
        let redacted_before = redacted();
        let request = {
            let (client, url, admin, number) = (
                client.clone(),
                format!(
                    "{}/api/v1/accounts/{account}/callers/redact",
                    served.address
                ),
                admin.clone(),
                uk_number(700 + k as u16),
            );
            tokio::spawn(async move {
                client
                    .post(url)
                    .bearer_auth(admin)
                    .json(&json!({"number": number}))
                    .send()
                    .await
                    .map(|r| r.status())
            })
        };
        // Watch the databases on connections of their own (each look is one short query) and
        // kill at the chosen step, or when the answer came first.
        use sqlx::Connection;
        let mut log_conn = sqlx::PgConnection::connect(&log_url).await.unwrap();
        let mut vault_conn = sqlx::PgConnection::connect(&vault_url).await.unwrap();
        loop {
            let (conn, sql, threshold) = match point {
                KillPoint::JobRecorded => (&mut log_conn, "SELECT COUNT(*) FROM redaction_jobs", 0),
                KillPoint::KeysDestroyed => (
                    &mut vault_conn,
                    "SELECT -COUNT(*) FROM data_keys",
                    -keys_before,
                ),
                KillPoint::RowsCleared => (
                    &mut log_conn,
                    "SELECT COUNT(*) FROM calls WHERE redacted_at IS NOT NULL",
                    redacted_before,
                ),
            };
            let now: i64 = sqlx::query_scalar(sql).fetch_one(conn).await.unwrap();
            if now > threshold || request.is_finished() {
                break;
            }
        }
        tokio::task::spawn_blocking(move || served.kill())
            .await
            .unwrap();
        let answered = matches!(request.await, Ok(Ok(_)));
        log_conn.close().await.ok();
        vault_conn.close().await.ok();
        let pending = jobs();
        println!(
            "kill {k} ({point:?}): answered {answered}, jobs pending {pending}, keys {} of {keys_before}, calls redacted {}",
            keys(),
            redacted()
        );
        if pending > 0 {
            interrupted += 1;
        }
    }
    assert!(
        interrupted > 0,
        "no kill came while a redaction was under way: the test did not test a crash"
    );

    // On restart the server finishes every interrupted redaction before it listens.
    let served = Served::start(&data, &logs, &[]);
    assert_eq!(
        jobs(),
        0,
        "every interrupted redaction was finished on start"
    );
    let calls = all_calls(&client, &served.address, &admin, &account).await;
    assert_eq!(calls.len(), CALLS * (points.len() + 1), "no call lost");
    for (k, ids) in ids_of.iter().enumerate() {
        let states: std::collections::BTreeSet<bool> = calls
            .iter()
            .filter(|c| ids.iter().any(|id| c["id"] == json!(id)))
            .map(|c| c["redaction"].is_null())
            .collect();
        assert_eq!(states.len(), 1, "caller {k}: some calls redacted, some not");
    }
    let recordings = data.join("recordings");
    for call in &calls {
        let id = call["id"].as_str().unwrap();
        let files = files_below(&recordings)
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(id))
            .count();
        if call["redaction"].is_null() {
            assert!(call["caller"]["number"].is_string(), "intact: {call}");
            assert!(call["transcript"].is_string(), "intact: {call}");
        } else {
            for gone in ["caller", "transcript", "visitor", "recording", "notes"] {
                assert!(call[gone].is_null(), "fully redacted: {call}");
            }
            assert_eq!(files, 0, "no recording file of redacted call {id}");
        }
    }
    // On disk too: no redacted row keeps ciphertext, no live row lost it.
    assert_eq!(
        postgres_count(
            &log_url,
            "SELECT COUNT(*) FROM calls WHERE redacted_at IS NOT NULL AND (caller_identity IS NOT NULL OR transcript IS NOT NULL OR interaction IS NOT NULL OR recording_object IS NOT NULL)"
        ),
        0
    );
    assert_eq!(
        postgres_count(
            &log_url,
            "SELECT COUNT(*) FROM calls WHERE redacted_at IS NULL AND caller_identity IS NULL"
        ),
        0
    );
    // The bystander's calls stay intact, and so do their keys.
    let bystander = &ids_of[points.len()];
    assert!(
        calls
            .iter()
            .filter(|c| bystander.iter().any(|id| c["id"] == json!(id)))
            .all(|c| c["redaction"].is_null())
    );
    assert!(redacted() >= (interrupted * CALLS) as i64);
    assert!(served.stop().success());
    let (code, out, err) = run_cli(&data, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
}

/// One value printed by `psql` (`-At`: unaligned, tuples only).
fn psql(url: &str, sql: &str) -> String {
    pg_tool("psql", &["--no-psqlrc", "-At", "-d", url, "-c", sql])
        .trim()
        .to_owned()
}

/// The files PostgreSQL keeps the test's two databases in (`base/<oid>/`), and its WAL
/// (`pg_wal/`, shared by the whole server). Reading them needs the server's user or root.
struct OnDisk {
    bases: Vec<PathBuf>,
    wal: PathBuf,
}

impl OnDisk {
    fn of(urls: &[&str]) -> OnDisk {
        let root = PathBuf::from(psql(urls[0], "SHOW data_directory"));
        let bases = urls
            .iter()
            .map(|url| {
                let oid = psql(
                    url,
                    "SELECT oid FROM pg_database WHERE datname = current_database()",
                );
                root.join("base").join(oid)
            })
            .collect::<Vec<_>>();
        let wal = root.join("pg_wal");
        for dir in bases.iter().chain([&wal]) {
            assert!(
                !files_below(dir).is_empty(),
                "{} is not readable here: the residue scan needs PostgreSQL's data directory (run as root or as postgres)",
                dir.display()
            );
        }
        OnDisk { bases, wal }
    }

    /// Makes every change so far reach the heap files (and the WAL its records).
    fn checkpoint(url: &str) {
        postgres_execute(url, "CHECKPOINT");
    }

    /// For each needle, the files (heap of the two databases, and the WAL when `wal`) holding
    /// its bytes.
    fn find_in(&self, needles: &[Vec<u8>], wal: bool) -> Vec<Vec<PathBuf>> {
        let finders: Vec<_> = needles.iter().map(memchr::memmem::Finder::new).collect();
        let mut hits = vec![Vec::new(); needles.len()];
        let wal = wal.then_some(&self.wal);
        for file in self.bases.iter().chain(wal).flat_map(|d| files_below(d)) {
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            for (i, finder) in finders.iter().enumerate() {
                if finder.find(&bytes).is_some() {
                    hits[i].push(file.clone());
                }
            }
        }
        hits
    }

    fn find(&self, needles: &[Vec<u8>]) -> Vec<Vec<PathBuf>> {
        self.find_in(needles, true)
    }
}

/// Tuples of the vault's key table (live or dead, not yet pruned) whose bytes hold `wrapped`.
fn key_tuples_holding(vault_url: &str, wrapped: &[u8]) -> i64 {
    let hex: String = wrapped.iter().map(|b| format!("{b:02x}")).collect();
    postgres_count(
        vault_url,
        &format!(
            "SELECT COUNT(*) FROM generate_series(0, (pg_relation_size('data_keys') / 8192)::int - 1) AS b,
             heap_page_items(get_raw_page('data_keys', b)) AS i
             WHERE i.lp_flags = 1 AND position(decode('{hex}', 'hex') IN i.t_data) > 0"
        ),
    )
}

#[tokio::test]
async fn on_postgres_a_redaction_leaves_no_plaintext_and_after_rotation_nothing_readable() {
    let Some(backing) = postgres_backing() else {
        return;
    };
    let data = backing.data();
    let logs = backing.path().join("logs");
    let (log_url, vault_url) = database_urls(&data);
    postgres_execute(&vault_url, "CREATE EXTENSION IF NOT EXISTS pageinspect");
    let (_, account) = cli_tenant(&data, true);
    let served = Served::start(&data, &logs, &[("RINGFENCE_LOG", "debug")]);
    let admin = served.bootstrap_token.clone().unwrap();
    let client = reqwest::Client::new();
    let base = served.address.clone();

    // Canaries in every personal field, a recording and a consent of the caller.
    let tag = ringfence_core::CallId::generate()
        .to_string()
        .replace('-', "");
    let marker = |what: &str| format!("PGCANARY{what}{tag}");
    let seed = u16::from_str_radix(&tag[tag.len() - 3..], 16).unwrap() % 1000;
    let number = uk_number(seed);
    let forwarded = uk_number((seed + 500) % 1000);
    let ip = format!("198.51.100.{}", 1 + seed % 250);
    let call = json!({
        "external_id": "pg-canary", "started_at": "2026-11-28T10:00:00Z", "tracking_number": us_number(0),
        "caller_number": number, "forwarded_from": forwarded, "caller_name": marker("NAME"),
        "caller_city": marker("CITY"), "caller_region": marker("REGION"), "caller_postal_code": marker("POSTAL"), "caller_country": "GB",
        "transcript": marker("TRANSCRIPT"), "notes": marker("NOTES"), "tags": [marker("TAG")],
        "visitor": {"ip": ip, "user_agent": marker("UA"), "referrer": format!("https://ref.example/{}", marker("REF")),
                    "landing_url": format!("https://land.example/{}", marker("LAND")), "gclid": marker("GCLID"), "fbclid": marker("FBCLID"),
                    "msclkid": marker("MSCLKID"), "visitor_id": marker("VISITORID")}
    });
    let created = post_json(
        &client,
        &format!("{base}/api/v1/accounts/{account}/calls"),
        &admin,
        &call,
    )
    .await;
    let id = created["id"].as_str().expect("created").to_owned();
    let mut audio = b"RIFF".to_vec();
    for _ in 0..2000 {
        audio.extend_from_slice(marker("AUDIO").as_bytes());
    }
    let status = put_audio(
        &client,
        &format!("{base}/api/v1/calls/{id}/recording"),
        &admin,
        audio,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let consent = post_json(
        &client,
        &format!("{base}/api/v1/accounts/{account}/consents"),
        &admin,
        &json!({"subject": {"caller_number": number}, "category": "transcript", "status": "granted", "method": "ivr_keypress", "call_id": id}),
    )
    .await;
    assert!(consent["id"].is_string(), "{consent}");
    let read: Value = get_json(&client, &format!("{base}/api/v1/calls/{id}"), &admin).await;
    assert_eq!(
        read["caller"]["name"],
        marker("NAME"),
        "stored and readable"
    );

    // The plaintext every field held: the markers (unique to this run), searched in both
    // databases' files and the WAL; the numbers (as sent and as digits) and the IP, searched
    // in both databases' files only: the WAL is the whole server's, and other programs on it
    // (a benchmark's raw baseline) may hold the same fiction numbers in the clear.
    let markers: Vec<Vec<u8>> = [
        "NAME",
        "CITY",
        "REGION",
        "POSTAL",
        "TRANSCRIPT",
        "NOTES",
        "TAG",
        "UA",
        "REF",
        "LAND",
        "GCLID",
        "FBCLID",
        "MSCLKID",
        "VISITORID",
        "AUDIO",
    ]
    .iter()
    .map(|w| marker(w).into_bytes())
    .collect();
    let shared: Vec<Vec<u8>> = vec![
        number.clone().into_bytes(),
        number.trim_start_matches('+').as_bytes().to_vec(),
        forwarded.clone().into_bytes(),
        ip.clone().into_bytes(),
    ];
    // The wrapped keys of the call, its visit and the caller's consent subject, as the vault
    // holds them now.
    let destroyed: Vec<(String, Vec<u8>)> = psql(
        &vault_url,
        "SELECT id || ' ' || encode(wrapped, 'hex') FROM data_keys WHERE purpose IN ('call', 'session', 'subject') ORDER BY id",
    )
    .lines()
    .map(|line| {
        let (id, hex) = line.rsplit_once(' ').unwrap();
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        (id.to_owned(), bytes)
    })
    .collect();
    assert_eq!(destroyed.len(), 3, "call, session and subject keys");
    let wrapped: Vec<Vec<u8>> = destroyed.iter().map(|(_, w)| w.clone()).collect();

    let disk = OnDisk::of(&[&log_url, &vault_url]);
    let scan = |when: &str| -> Vec<Vec<PathBuf>> {
        OnDisk::checkpoint(&log_url);
        for (needle, hits) in markers.iter().zip(disk.find(&markers)) {
            assert!(
                hits.is_empty(),
                "{when}: plaintext {} found in {hits:?}",
                String::from_utf8_lossy(needle)
            );
        }
        for (needle, hits) in shared.iter().zip(disk.find_in(&shared, false)) {
            assert!(
                hits.is_empty(),
                "{when}: plaintext {} found in {hits:?}",
                String::from_utf8_lossy(needle)
            );
        }
        let hits = disk.find(&wrapped);
        let (in_heap, in_wal) = hits.iter().fold((0, 0), |(h, w), files| {
            (
                h + usize::from(files.iter().any(|f| !f.starts_with(&disk.wal))),
                w + usize::from(files.iter().any(|f| f.starts_with(&disk.wal))),
            )
        });
        let tuples: i64 = wrapped
            .iter()
            .map(|w| key_tuples_holding(&vault_url, w))
            .sum();
        println!(
            "{when}: 0 plaintext values; of {} wrapped keys, {in_heap} in the vault's heap files, {in_wal} in pg_wal, {tuples} tuples holding one",
            wrapped.len()
        );
        hits
    };
    let before = scan("before redaction");
    assert!(
        before.iter().all(|files| files
            .iter()
            .any(|f| disk.bases.iter().any(|b| f.starts_with(b)))),
        "the scan sees each key in the vault's heap while it exists: {before:?}"
    );

    let receipt = post_json(
        &client,
        &format!("{base}/api/v1/accounts/{account}/callers/redact"),
        &admin,
        &json!({"number": number, "forget": true}),
    )
    .await;
    assert_eq!(receipt["redacted_calls"], 1, "{receipt}");
    // `CallLog::finish_redaction` awaits `PgVault::compact` (the heap-only VACUUM) before the
    // receipt is answered: no tuple holds a destroyed key any more.
    scan("after redaction (its VACUUM included)");
    for (id, w) in &destroyed {
        assert_eq!(
            key_tuples_holding(&vault_url, w),
            0,
            "no tuple of the vault holds destroyed key {id} once the redaction answered"
        );
        assert_eq!(
            postgres_count(
                &vault_url,
                &format!("SELECT COUNT(*) FROM data_keys WHERE id = '{id}'")
            ),
            0
        );
    }
    // What autovacuum does later (index cleanup too) removes nothing more of the keys' bytes.
    postgres_execute(&vault_url, "VACUUM data_keys");
    scan("after a full VACUUM of the key table");
    assert!(served.stop().success());

    // A master-key rotation: the live keys re-wrapped, the old master key file destroyed.
    let old_key_file = std::fs::read(data.join("master.key")).unwrap();
    let old = ringfence_crypto::MasterKey::from_file_contents(&old_key_file).unwrap();
    let new_key_file = backing.path().join("new-master.key");
    let (code, out, err) = run_cli(
        &data,
        &[
            "vault",
            "rotate",
            "--new-master-key-file",
            new_key_file.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let new =
        ringfence_crypto::MasterKey::from_file_contents(&std::fs::read(&new_key_file).unwrap())
            .unwrap();
    assert_ne!(old.fingerprint(), new.fingerprint());
    assert!(
        files_containing(&data, &old_key_file).is_empty(),
        "no file of the data folder holds the old master key"
    );
    let after = scan("after a master-key rotation");
    // Whatever copy of a destroyed key is left (WAL, free space in a page) opens with nothing
    // the installation keeps: the new master key does not unwrap it, only the old one, gone.
    for ((id, w), files) in destroyed.iter().zip(&after) {
        if files.is_empty() {
            continue;
        }
        assert!(
            new.unwrap(id, w).is_err(),
            "a copy of destroyed key {id} opens with the new master key"
        );
        assert!(
            old.unwrap(id, w).is_ok(),
            "the copy found of {id} is a wrapped key (it opens with the destroyed old master key)"
        );
    }
    let (code, out, err) = run_cli(&data, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
}
