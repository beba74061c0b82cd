//! Backups taken while serving, and restores that re-apply every later redaction.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn a_restore_brings_back_redacted_calls_redacted_and_leaves_nothing_readable_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let backup = dir.path().join("backup");
    let restored = dir.path().join("restored");
    let logs = dir.path().join("logs");
    let (_, account) = cli_tenant(&live, true);
    let served = Served::start(&live, &logs, &[]);
    let admin = served.bootstrap_token.clone().unwrap();
    let client = reqwest::Client::new();
    let base = served.address.clone();
    let mut ids = Vec::new();
    for n in 0..6u16 {
        let mut call = full_call(n);
        call["caller_number"] = json!(uk_number(if n < 3 { 11 } else { 20 + n }));
        let created: Value = post_json(
            &client,
            &format!("{base}/api/v1/accounts/{account}/calls"),
            &admin,
            &call,
        )
        .await;
        let id = created["id"].as_str().unwrap().to_owned();
        let status = client
            .put(format!("{base}/api/v1/calls/{id}/recording"))
            .bearer_auth(&admin)
            .header("content-type", "audio/wav")
            .body(vec![n as u8; 90_000])
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::CREATED);
        ids.push(id);
    }

    // The backup is taken while the server runs.
    let (code, out, err) = run_cli(
        &live,
        &["backup", "--out", backup.to_str().unwrap(), "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let summary: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary["recordings"], 6);
    assert!(
        !backup.join("master.key").exists(),
        "a backup never contains the master key"
    );

    // After the backup: a caller (calls 0..3) is redacted and forgotten, and call 4 alone.
    let receipt: Value = client
        .post(format!("{base}/api/v1/accounts/{account}/callers/redact"))
        .bearer_auth(&admin)
        .json(&json!({"number": uk_number(11), "forget": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(receipt["redacted_calls"], 3);
    let status = client
        .post(format!("{base}/api/v1/calls/{}/redact", ids[4]))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
    assert!(served.stop().success());

    // The keys the backup still holds for the calls redacted since.
    let vault = rusqlite::Connection::open(backup.join("vault.db")).unwrap();
    let redacted: Vec<&String> = vec![&ids[0], &ids[1], &ids[2], &ids[4]];
    let wrapped: Vec<Vec<u8>> = redacted
        .iter()
        .map(|id| {
            vault
                .query_row(
                    "SELECT wrapped FROM data_keys WHERE id = ?1",
                    [id.as_str()],
                    |r| r.get(0),
                )
                .unwrap()
        })
        .collect();
    drop(vault);

    // Refusals: no journal named, no master key, a folder in use.
    let (code, _, err) = run_cli(&restored, &["restore", "--from", backup.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        !restored.join("ringfence.db").exists(),
        "nothing restored without the journal"
    );
    let (code, _, err) = run_cli(
        &restored,
        &[
            "restore",
            "--from",
            backup.to_str().unwrap(),
            "--journal-from",
            live.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("master key"), "{err}");
    std::fs::create_dir_all(&restored).unwrap();
    std::fs::copy(live.join("master.key"), restored.join("master.key")).unwrap();
    let (code, _, _) = run_cli(
        &live,
        &[
            "restore",
            "--from",
            backup.to_str().unwrap(),
            "--journal-from",
            live.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "a folder holding a call log is never overwritten");

    let (code, out, err) = run_cli(
        &restored,
        &[
            "restore",
            "--from",
            backup.to_str().unwrap(),
            "--journal-from",
            live.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let summary: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary["redactions_reapplied"], 4, "{summary}");

    // Nothing readable of the redacted calls is left in the restored folder.
    for (i, key) in wrapped.iter().enumerate() {
        let hits = files_containing(&restored, key);
        assert!(hits.is_empty(), "destroyed key {i} readable in {hits:?}");
    }
    for id in &redacted {
        let files: Vec<_> = files_below(&restored.join("recordings"))
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(id.as_str()))
            .collect();
        assert!(files.is_empty(), "recording of {id} restored: {files:?}");
    }

    let served = Served::start(&restored, &logs, &[]);
    let base = served.address.clone();
    for (i, id) in ids.iter().enumerate() {
        let call: Value = get_json(&client, &format!("{base}/api/v1/calls/{id}"), &admin).await;
        let recording = client
            .get(format!("{base}/api/v1/calls/{id}/recording"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        if [0, 1, 2, 4].contains(&i) {
            assert!(
                !call["redaction"].is_null(),
                "call {i} comes back redacted: {call}"
            );
            assert!(call["caller"].is_null());
            assert_eq!(recording.status(), StatusCode::GONE);
        } else {
            assert!(call["redaction"].is_null(), "call {i} is intact: {call}");
            assert_eq!(call["caller"]["number"], uk_number(20 + i as u16));
            assert_eq!(
                recording.bytes().await.unwrap().to_vec(),
                vec![i as u8; 90_000]
            );
        }
    }
    // The forget list came back too.
    let mut later = full_call(9);
    later["external_id"] = json!("after-restore");
    later["caller_number"] = json!(uk_number(11));
    let created: Value = post_json(
        &client,
        &format!("{base}/api/v1/accounts/{account}/calls"),
        &admin,
        &later,
    )
    .await;
    assert_eq!(created["redaction"]["reason"], "forget_list", "{created}");
    assert!(served.stop().success());
    let (code, _, err) = run_cli(&restored, &["audit", "verify"]);
    assert_eq!(code, 0, "{err}");
}

#[tokio::test]
async fn a_restore_removes_again_what_consent_withdrawals_removed_and_the_consents_of_redacted_callers()
 {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let backup = dir.path().join("backup");
    let restored = dir.path().join("restored");
    let logs = dir.path().join("logs");
    let (_, account) = cli_tenant(&live, true);
    let served = Served::start(&live, &logs, &[]);
    let admin = served.bootstrap_token.clone().unwrap();
    let client = reqwest::Client::new();
    let base = served.address.clone();
    let mut ids = Vec::new();
    // Call 0: caller 31, who will withdraw recording consent. Call 1: caller 32, who grants
    // it and is then redacted. Call 2: caller 33, untouched.
    for n in 0..3u16 {
        let mut call = full_call(n);
        call["caller_number"] = json!(uk_number(31 + n));
        let created = post_json(
            &client,
            &format!("{base}/api/v1/accounts/{account}/calls"),
            &admin,
            &call,
        )
        .await;
        let id = created["id"].as_str().unwrap().to_owned();
        let status = put_audio(
            &client,
            &format!("{base}/api/v1/calls/{id}/recording"),
            &admin,
            vec![n as u8 + 1; 5000],
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        ids.push(id);
    }
    let consents = format!("{base}/api/v1/accounts/{account}/consents");
    post_json(&client, &consents, &admin, &json!({"subject": {"caller_number": uk_number(32)}, "category": "recording", "status": "granted", "method": "verbal"})).await;
    let (code, _, err) = run_cli(&live, &["backup", "--out", backup.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");

    // After the backup: caller 31 withdraws recording consent; caller 32 is redacted.
    let withdrawn = post_json(&client, &consents, &admin, &json!({"subject": {"caller_number": uk_number(31)}, "category": "recording", "status": "withdrawn", "method": "verbal"})).await;
    assert_eq!(withdrawn["removal"]["redacted_calls"], 1, "{withdrawn}");
    post_json(
        &client,
        &format!("{base}/api/v1/accounts/{account}/callers/redact"),
        &admin,
        &json!({"number": uk_number(32)}),
    )
    .await;
    assert!(served.stop().success());

    std::fs::create_dir_all(&restored).unwrap();
    std::fs::copy(live.join("master.key"), restored.join("master.key")).unwrap();
    let (code, _, err) = run_cli(
        &restored,
        &[
            "restore",
            "--from",
            backup.to_str().unwrap(),
            "--journal-from",
            live.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let served = Served::start(&restored, &logs, &[]);
    let base = served.address.clone();
    let urls: Vec<String> = ids
        .iter()
        .map(|id| format!("{base}/api/v1/calls/{id}"))
        .collect();
    let call = |i: usize| get_json(&client, &urls[i], &admin);
    let first = call(0).await;
    assert!(
        first["redaction"].is_null(),
        "a withdrawal removes a category, never the call: {first}"
    );
    assert!(
        first["recording"].is_null(),
        "the withdrawn recording stays gone: {first}"
    );
    assert_eq!(first["caller"]["number"], uk_number(31));
    assert!(!call(1).await["redaction"].is_null());
    assert_eq!(call(2).await["recording"]["bytes"], 5000);
    let ledger = get_json(
        &client,
        &format!("{base}/api/v1/accounts/{account}/consents"),
        &admin,
    )
    .await;
    let subjects: Vec<String> = ledger["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c["subject"]["caller_number"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert!(
        !subjects.contains(&uk_number(32)),
        "the redacted caller's consents stay gone: {ledger}"
    );
    assert!(served.stop().success());
    let (code, _, err) = run_cli(&restored, &["audit", "verify"]);
    assert_eq!(code, 0, "{err}");
}

/// Posts single calls to `base` until `stop` is set; every id answered 201 goes to `acked`
/// as soon as the answer arrives.
async fn ingest_until(
    client: reqwest::Client,
    base: String,
    admin: String,
    account: String,
    client_no: u16,
    acked: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let mut n = 0u32;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let call = |i: u32| {
            let mut call = full_call((i % 100) as u16);
            call["external_id"] = json!(format!("load-{client_no}-{i}"));
            call
        };
        // Even clients post single calls, odd ones batches of 50.
        let (route, body, count) = if client_no.is_multiple_of(2) {
            ("calls", call(n), 1)
        } else {
            let calls: Vec<Value> = (n..n + 50).map(call).collect();
            ("calls/batch", json!({ "calls": calls }), 50)
        };
        let response = client
            .post(format!("{base}/api/v1/accounts/{account}/{route}"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        let ids: Vec<String> = match body["ids"].as_array() {
            Some(ids) => ids
                .iter()
                .map(|id| id.as_str().unwrap().to_owned())
                .collect(),
            None => vec![body["id"].as_str().unwrap().to_owned()],
        };
        acked.lock().unwrap().extend(ids);
        n += count;
    }
}

/// The ids of the calls in the call log at `db`.
fn stored_call_ids(db: &std::path::Path) -> std::collections::HashSet<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut statement = conn.prepare("SELECT id FROM calls").unwrap();
    statement
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_taken_under_sustained_ingest_succeed_and_restore_every_call_acknowledged_before_they_started()
 {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let logs = dir.path().join("logs");
    let (_, account) = cli_tenant(&live, true);
    let served = Served::start(&live, &logs, &[]);
    let admin = served.bootstrap_token.clone().unwrap();
    let client = reqwest::Client::new();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client_no in 0..6u16 {
        clients.push(tokio::spawn(ingest_until(
            client.clone(),
            served.address.clone(),
            admin.clone(),
            account.clone(),
            client_no,
            acked.clone(),
            stop.clone(),
        )));
    }
    // (backup folder, the calls acknowledged before its command started)
    let mut backups: Vec<(std::path::PathBuf, Vec<String>)> = Vec::new();
    for round in 0..4 {
        // Ingest is under way before each backup starts.
        let floor = acked.lock().unwrap().len() + 50;
        while acked.lock().unwrap().len() < floor {
            tokio::task::yield_now().await;
        }
        let out = dir.path().join(format!("backup-{round}"));
        let before = acked.lock().unwrap().clone();
        let (code, _, err) = {
            let (live, out) = (live.clone(), out.clone());
            tokio::task::spawn_blocking(move || {
                run_cli(&live, &["backup", "--out", out.to_str().unwrap()])
            })
            .await
            .unwrap()
        };
        assert_eq!(code, 0, "backup {round} under load failed: {err}");
        assert!(
            acked.lock().unwrap().len() > before.len(),
            "ingest went on while backup {round} ran"
        );
        backups.push((out, before));
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    assert!(served.stop().success());

    for (round, (backup, before)) in backups.iter().enumerate() {
        let restored = dir.path().join(format!("restored-{round}"));
        std::fs::create_dir_all(&restored).unwrap();
        std::fs::copy(live.join("master.key"), restored.join("master.key")).unwrap();
        let (code, _, err) = run_cli(
            &restored,
            &[
                "restore",
                "--from",
                backup.to_str().unwrap(),
                "--journal-from",
                live.to_str().unwrap(),
            ],
        );
        assert_eq!(code, 0, "{err}");
        let stored = stored_call_ids(&restored.join("ringfence.db"));
        let missing = before.iter().filter(|id| !stored.contains(*id)).count();
        assert_eq!(
            missing,
            0,
            "backup {round}: {missing} of {} calls acknowledged before it started are not in its restore",
            before.len()
        );
    }
}

#[tokio::test]
async fn a_backup_that_fails_before_its_end_is_not_marked_complete_and_restore_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let backup = dir.path().join("backup");
    let restored = dir.path().join("restored");
    cli_tenant(&live, true);
    // Another process holds the call log's write lock for longer than the backup waits:
    // the snapshots (reads) go through, journaling the backup cannot.
    let holder = rusqlite::Connection::open(live.join("ringfence.db")).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (code, _, err) = run_cli(&live, &["backup", "--out", backup.to_str().unwrap()]);
    holder.execute_batch("ROLLBACK").unwrap();
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("not marked complete") && err.contains("busy timeout (10 s)"),
        "the failure names its cause and the bound: {err}"
    );
    assert!(
        backup.join("ringfence.db").exists(),
        "the test must fail after the copies were made"
    );

    std::fs::create_dir_all(&restored).unwrap();
    std::fs::copy(live.join("master.key"), restored.join("master.key")).unwrap();
    let restore = |from: &std::path::Path| {
        run_cli(
            &restored,
            &[
                "restore",
                "--from",
                from.to_str().unwrap(),
                "--journal-from",
                live.to_str().unwrap(),
            ],
        )
    };
    let (code, _, err) = restore(&backup);
    assert_eq!(code, 1, "an incomplete backup restores: {err}");
    assert!(err.contains("not a complete ringfence backup"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&restored)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec!["master.key"], "nothing written to the target");

    // A complete backup whose manifest is cut short (an interruption while writing it) is
    // refused too.
    let whole = dir.path().join("whole");
    let (code, _, err) = run_cli(&live, &["backup", "--out", whole.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let manifest = std::fs::read(whole.join("manifest.json")).unwrap();
    std::fs::write(whole.join("manifest.json"), &manifest[..manifest.len() / 2]).unwrap();
    let (code, _, err) = restore(&whole);
    assert_eq!(code, 1, "{err}");
    assert!(!restored.join("ringfence.db").exists());
    std::fs::write(whole.join("manifest.json"), &manifest).unwrap();
    let (code, _, err) = restore(&whole);
    assert_eq!(code, 0, "{err}");
}

#[cfg(unix)]
#[tokio::test]
async fn every_file_of_the_data_folder_and_of_a_backup_is_0600_and_every_folder_0700_even_in_folders_made_0755_beforehand()
 {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let backup = dir.path().join("backup");
    let restored = dir.path().join("restored");
    let logs = dir.path().join("logs");
    for folder in [&live, &backup, &restored] {
        std::fs::create_dir(folder).unwrap();
        std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (_, account) = cli_tenant(&live, true);
    let served = Served::start(&live, &logs, &[]);
    let admin = served.bootstrap_token.clone().unwrap();
    let client = reqwest::Client::new();
    let base = served.address.clone();
    let created = post_json(
        &client,
        &format!("{base}/api/v1/accounts/{account}/calls"),
        &admin,
        &full_call(1),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let status = put_audio(
        &client,
        &format!("{base}/api/v1/calls/{id}/recording"),
        &admin,
        vec![7; 5000],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (code, _, err) = run_cli(&live, &["backup", "--out", backup.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(served.stop().success());
    std::fs::copy(live.join("master.key"), restored.join("master.key")).unwrap();
    let (code, _, err) = run_cli(
        &restored,
        &[
            "restore",
            "--from",
            backup.to_str().unwrap(),
            "--journal-from",
            live.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");

    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let mut wrong = Vec::new();
    let mut files = 0;
    for root in [&live, &backup, &restored] {
        let mut stack = vec![root.clone()];
        while let Some(folder) = stack.pop() {
            if mode(&folder) != 0o700 {
                wrong.push(format!("{} {:o}", folder.display(), mode(&folder)));
            }
            for entry in std::fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    files += 1;
                    if mode(&path) != 0o600 {
                        wrong.push(format!("{} {:o}", path.display(), mode(&path)));
                    }
                }
            }
        }
    }
    assert!(
        files_below(&backup.join("recordings")).len() == 1 && files > 10,
        "the walk saw the recordings and the databases ({files} files)"
    );
    assert!(wrong.is_empty(), "not private: {wrong:#?}");
}
