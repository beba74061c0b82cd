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
