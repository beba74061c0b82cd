//! Master-key rotation with the real binary: while a server on the same data folder ingests,
//! and its effect on copies of destroyed keys.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use reqwest::StatusCode;
use serde_json::{Value, json};

use ringfence_crypto::MasterKey;

use crate::common::*;

/// The vault of a data folder, read beside the processes using it: SQLite's file read-only,
/// or the PostgreSQL vault database. `?1` in `sql` stands for `param` (a test's own value).
pub(crate) fn vault_value<T: rusqlite::types::FromSql>(
    data: &Path,
    sql: &str,
    param: &str,
    postgres: fn(&str, &str) -> T,
) -> T {
    if let Some(url) = postgres_vault(data) {
        let sql = sql
            .replace("IS NOT ?1", "IS DISTINCT FROM ?1")
            .replace("?1", &format!("'{param}'"));
        return postgres(&url, &sql);
    }
    let conn = rusqlite::Connection::open_with_flags(
        data.join("vault.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    if sql.contains("?1") {
        conn.query_row(sql, [param], |r| r.get(0)).unwrap()
    } else {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }
}

pub(crate) fn vault_count(data: &Path, sql: &str, param: &str) -> i64 {
    vault_value(data, sql, param, postgres_count)
}

pub(crate) fn vault_text(data: &Path, sql: &str, param: &str) -> String {
    vault_value(data, sql, param, postgres_text)
}

pub(crate) fn active_fingerprint(data: &Path) -> String {
    vault_text(
        data,
        "SELECT fingerprint FROM master_keys WHERE state = 'active'",
        "",
    )
}

pub(crate) async fn all_calls(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    account: &str,
) -> Vec<Value> {
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

pub(crate) async fn ingest_batch(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    account: &str,
    prefix: &str,
    n: usize,
) -> Vec<String> {
    let calls: Vec<Value> = (0..n)
        .map(|i| {
            let mut c = full_call(i as u16);
            c["external_id"] = json!(format!("{prefix}-{i}"));
            c
        })
        .collect();
    let response = client
        .post(format!("{base}/api/v1/accounts/{account}/calls/batch"))
        .bearer_auth(admin)
        .json(&json!({"calls": calls}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let ids: Value = response.json().await.unwrap();
    ids["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect()
}

/// Every call reads: its caller number and transcript open.
pub(crate) fn assert_every_call_reads(calls: &[Value]) {
    for call in calls {
        assert!(call["redaction"].is_null(), "{call}");
        assert!(call["caller"]["number"].is_string(), "unreadable: {call}");
        assert!(call["transcript"].is_string(), "unreadable: {call}");
    }
}

/// Calls redacted during the rotation keep nothing personal; every other call reads.
pub(crate) fn assert_live_calls_read_and_redacted_ones_stay_redacted(
    calls: &[Value],
    redacted: &[String],
) {
    let (gone, live): (Vec<Value>, Vec<Value>) = calls
        .iter()
        .cloned()
        .partition(|c| redacted.iter().any(|id| c["id"] == json!(id)));
    assert_eq!(gone.len(), redacted.len());
    for call in &gone {
        assert!(!call["redaction"].is_null(), "{call}");
        assert!(
            call["caller"].is_null() && call["transcript"].is_null(),
            "{call}"
        );
    }
    assert_every_call_reads(&live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotating_the_master_key_while_the_server_ingests_from_concurrent_clients_leaves_every_call_readable_and_the_old_key_destroyed()
 {
    let dir = Backing::new();
    let data = dir.path().join("data");
    let logs = dir.path().join("logs");
    let (_, account) = cli_tenant(&data, true);
    let old_key_text = std::fs::read(data.join("master.key")).unwrap();
    let served = Served::start(&data, &logs, &[]);
    let admin = served.bootstrap_token.clone().unwrap();
    let base = served.address.clone();
    let client = reqwest::Client::new();
    let mut expected = 0;
    let mut first_batch = Vec::new();
    for b in 0..6 {
        let ids = ingest_batch(&client, &base, &admin, &account, &format!("b{b}"), 500).await;
        expected += ids.len();
        if b == 0 {
            first_batch = ids;
        }
    }
    let old = active_fingerprint(&data);

    // Eight clients post calls one by one until the rotation has finished.
    let rotating = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let during = Arc::new(AtomicUsize::new(0));
    let (started_tx, mut started_rx) = tokio::sync::mpsc::channel::<()>(8);
    let mut clients = Vec::new();
    for c in 0..8 {
        let (client, base, admin, account) =
            (client.clone(), base.clone(), admin.clone(), account.clone());
        let (rotating, stop, during, started) = (
            rotating.clone(),
            stop.clone(),
            during.clone(),
            started_tx.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut posted = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let mut call = full_call(posted as u16);
                call["external_id"] = json!(format!("c{c}-{posted}"));
                let was_rotating = rotating.load(Ordering::SeqCst);
                let answer = client
                    .post(format!("{base}/api/v1/accounts/{account}/calls"))
                    .bearer_auth(&admin)
                    .json(&call)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    answer.status(),
                    StatusCode::CREATED,
                    "{:?}",
                    answer.text().await
                );
                if was_rotating && rotating.load(Ordering::SeqCst) {
                    during.fetch_add(1, Ordering::SeqCst);
                }
                posted += 1;
                if posted == 1 {
                    let _ = started.send(()).await;
                }
            }
            posted
        }));
    }
    // A ninth client redacts calls one by one meanwhile: their keys are destroyed while the
    // rotation re-wraps the vault.
    let go = Arc::new(tokio::sync::Notify::new());
    let redacted_during = Arc::new(AtomicUsize::new(0));
    let redactor = {
        let (client, base, admin, stop) =
            (client.clone(), base.clone(), admin.clone(), stop.clone());
        let (go, rotating, redacted_during) =
            (go.clone(), rotating.clone(), redacted_during.clone());
        let targets = first_batch.clone();
        tokio::spawn(async move {
            go.notified().await;
            let mut redacted = Vec::new();
            for id in targets {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let answer = client
                    .post(format!("{base}/api/v1/calls/{id}/redact"))
                    .bearer_auth(&admin)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(answer.status(), StatusCode::OK, "{:?}", answer.text().await);
                if rotating.load(Ordering::SeqCst) {
                    redacted_during.fetch_add(1, Ordering::SeqCst);
                }
                redacted.push(id);
            }
            redacted
        })
    };
    drop(started_tx);
    for _ in 0..8 {
        started_rx.recv().await.unwrap();
    }
    rotating.store(true, Ordering::SeqCst);
    go.notify_one();
    let new_key_file = dir.path().join("operator").join("new.key");
    std::fs::create_dir_all(new_key_file.parent().unwrap()).unwrap();
    let (code, out, err) = {
        let data = data.clone();
        let file = new_key_file.clone();
        tokio::task::spawn_blocking(move || {
            run_cli(
                &data,
                &[
                    "vault",
                    "rotate",
                    "--new-master-key-file",
                    file.to_str().unwrap(),
                    "--json",
                ],
            )
        })
        .await
        .unwrap()
    };
    rotating.store(false, Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        expected += c.await.unwrap();
    }
    let redacted = redactor.await.unwrap();
    assert!(
        !redacted.is_empty(),
        "calls were redacted while the rotation ran"
    );
    assert_eq!(code, 0, "{out}{err}");
    let summary: Value = serde_json::from_str(out.trim()).unwrap();
    let new_key_text = std::fs::read(&new_key_file).unwrap();
    let new = MasterKey::from_file_contents(&new_key_text).unwrap();
    assert_eq!(summary["from"], json!(old));
    assert_eq!(summary["to"], json!(new.fingerprint()));
    assert_eq!(summary["created_new_key_file"], json!(true));
    assert!(summary["rewrapped"].as_u64().unwrap() >= 3000, "{summary}");
    assert!(
        during.load(Ordering::SeqCst) > 0,
        "calls were ingested while the rotation ran"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&new_key_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(data.join("master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // The new key is the data folder's; the old key file is gone, with no copy left in it.
    assert_eq!(
        std::fs::read(data.join("master.key")).unwrap(),
        new_key_text
    );
    assert!(!data.join("master.key.next").exists());
    assert!(!data.join("master.key.retired").exists());
    assert!(files_containing(&data, old_key_text.trim_ascii()).is_empty());
    let under_other = vault_count(
        &data,
        "SELECT COUNT(*) FROM data_keys WHERE master IS NOT ?1",
        &new.fingerprint(),
    );
    assert_eq!(under_other, 0, "no row is left under the old key");
    let old_state = vault_text(
        &data,
        "SELECT state FROM master_keys WHERE fingerprint = ?1",
        &old,
    );
    assert_eq!(old_state, "retired");
    for id in &redacted {
        let left = vault_count(&data, "SELECT COUNT(*) FROM data_keys WHERE id = ?1", id);
        assert_eq!(
            left, 0,
            "a key destroyed during the rotation stays destroyed"
        );
    }

    // Every call opens through the server that served throughout.
    let calls = all_calls(&client, &base, &admin, &account).await;
    assert_eq!(calls.len(), expected);
    assert_live_calls_read_and_redacted_ones_stay_redacted(&calls, &redacted);
    let (code, out, err) = run_cli(&data, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    let journal = get_json(&client, &format!("{base}/api/v1/audit?limit=500"), &admin).await;
    let rotated: Vec<&Value> = journal["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "master_key.rotated")
        .collect();
    assert_eq!(rotated.len(), 1, "{journal}");
    assert!(
        !journal.to_string().contains(
            old_key_text
                .trim_ascii()
                .escape_ascii()
                .to_string()
                .as_str()
        )
    );
    assert!(served.stop().success());

    // A server started afterwards reads everything with the new key alone.
    let served = Served::start(&data, &logs, &[]);
    let calls = all_calls(&client, &served.address, &admin, &account).await;
    assert_eq!(calls.len(), expected);
    assert_live_calls_read_and_redacted_ones_stay_redacted(&calls, &redacted);
    assert!(served.stop().success());
}

#[tokio::test]
async fn a_rotation_refuses_the_master_key_file_itself_and_a_retired_key() {
    let dir = Backing::new();
    let data = dir.path().join("data");
    cli_tenant(&data, true);
    let master = data.join("master.key");
    let (code, out, _) = run_cli(
        &data,
        &[
            "vault",
            "rotate",
            "--new-master-key-file",
            master.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 1);
    assert!(out.contains("must not be the master key file"), "{out}");
    // A copy of the current key is no new key.
    let copy = dir.path().join("same.key");
    std::fs::copy(&master, &copy).unwrap();
    let (code, out, _) = run_cli(
        &data,
        &[
            "vault",
            "rotate",
            "--new-master-key-file",
            copy.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("is the current master key"), "{out}");
    // Rotating back to a retired key is refused.
    let new = dir.path().join("new.key");
    let (code, _, err) = run_cli(
        &data,
        &[
            "vault",
            "rotate",
            "--new-master-key-file",
            new.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = run_cli(
        &data,
        &[
            "vault",
            "rotate",
            "--new-master-key-file",
            copy.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("retired"), "{out}");
    assert!(!data.join("master.key.next").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_rotation_is_finished_by_running_the_command_again() {
    use futures::FutureExt;
    let dir = Backing::new();
    let data = dir.path().join("data");
    let logs = dir.path().join("logs");
    let (_, account) = cli_tenant(&data, true);
    let served = Served::start(&data, &logs, &[]);
    let admin = served.bootstrap_token.clone().unwrap();
    let client = reqwest::Client::new();
    for b in 0..3 {
        ingest_batch(
            &client,
            &served.address,
            &admin,
            &account,
            &format!("b{b}"),
            500,
        )
        .await;
    }
    assert!(served.stop().success());
    let old = active_fingerprint(&data);

    // 1. Interrupted after the first page of re-wraps (the process dies with its work half done).
    let first = dir.path().join("first.key");
    {
        let resources = ringfence::Resources::open(&config_for(&data))
            .await
            .unwrap();
        let mut pages = 0;
        let mut die_after_a_page = |p: ringfence::rotate::Progress| {
            if let ringfence::rotate::Progress::Done(_) = p {
                pages += 1;
                assert!(pages < 2, "interrupted");
            }
        };
        let interrupted = std::panic::AssertUnwindSafe(ringfence::rotate::rotate(
            &resources,
            &first,
            &mut die_after_a_page,
        ))
        .catch_unwind()
        .await;
        assert!(interrupted.is_err());
        resources.close().await;
    }
    let under_old = vault_count(
        &data,
        "SELECT COUNT(*) FROM data_keys WHERE master = ?1",
        &old,
    );
    assert!(under_old > 0, "the rotation stopped part-way");
    assert!(data.join("master.key.next").exists());
    // A server started meanwhile opens keys under either master key.
    let served = Served::start(&data, &logs, &[]);
    let calls = all_calls(&client, &served.address, &admin, &account).await;
    assert_eq!(calls.len(), 1500);
    assert_every_call_reads(&calls);
    let (code, out, _) = run_cli(&data, &["checklist", "--account", &account, "--json"]);
    assert_eq!(code, 0);
    assert!(out.contains("has started and not finished"), "{out}");
    // Another key is refused while this rotation is under way.
    let other = dir.path().join("other.key");
    let (code, _, err) = run_cli(
        &data,
        &[
            "vault",
            "rotate",
            "--new-master-key-file",
            other.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("is under way"), "{err}");
    // Running it again, while the server serves, finishes it.
    let (code, out, err) = run_cli(
        &data,
        &[
            "vault",
            "rotate",
            "--new-master-key-file",
            first.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        std::fs::read(data.join("master.key")).unwrap(),
        std::fs::read(&first).unwrap()
    );
    assert!(!data.join("master.key.next").exists());
    let calls = all_calls(&client, &served.address, &admin, &account).await;
    assert_every_call_reads(&calls);
    assert!(served.stop().success());

    // 2. Interrupted after the vault finished, the old key file linked aside but not yet
    //    replaced: the next run swaps the files and destroys the old key.
    let second = dir.path().join("second.key");
    let (second_key, text) = MasterKey::generate();
    std::fs::write(&second, text.as_bytes()).unwrap();
    let first_text = std::fs::read(data.join("master.key")).unwrap();
    {
        let resources = ringfence::Resources::open(&config_for(&data))
            .await
            .unwrap();
        std::fs::write(data.join("master.key.next"), text.as_bytes()).unwrap();
        let vault = resources.log.vault();
        let from = vault.master_fingerprint();
        vault.begin_rotation(&second_key).await.unwrap();
        let mut after = None;
        loop {
            let page = vault.rotate_page(&second_key, after, 700).await.unwrap();
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(
            vault.finish_rotation(&from, &second_key, 0).await.unwrap(),
            0
        );
        std::fs::hard_link(data.join("master.key"), data.join("master.key.retired")).unwrap();
        resources.close().await;
    }
    let (code, out, err) = run_cli(
        &data,
        &[
            "vault",
            "rotate",
            "--new-master-key-file",
            second.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        std::fs::read(data.join("master.key")).unwrap(),
        text.as_bytes()
    );
    assert!(!data.join("master.key.next").exists());
    assert!(!data.join("master.key.retired").exists());
    assert!(files_containing(&data, first_text.trim_ascii()).is_empty());
    let served = Served::start(&data, &logs, &[]);
    let calls = all_calls(&client, &served.address, &admin, &account).await;
    assert_eq!(calls.len(), 1500);
    assert_every_call_reads(&calls);
    assert!(served.stop().success());
    let (code, out, err) = run_cli(&data, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
}
