//! What only the SQLite backend has: its files' write-ahead log, and `ringfence backup`'s copies
//! of them. (The PostgreSQL run leaves this module out; its counterparts are in
//! `postgres_ops`: residue in the data directory and WAL, and `ringfence replay` after
//! pg_restore.)

use reqwest::StatusCode;
use serde_json::{Value, json};

use ringfence_core::timestamp::Timestamp;
use ringfence_crypto::MasterKey;
use ringfence_jobs::retention::{SweepOptions, sweep};

use crate::common::*;
use crate::retention::{ingest_ages, redacted, set_policy};
use crate::vault::*;

#[tokio::test]
async fn after_a_rotation_a_backed_up_copy_of_a_destroyed_key_opens_with_nothing_the_data_folder_holds()
 {
    let dir = Backing::new();
    let data = dir.path().join("data");
    let logs = dir.path().join("logs");
    let (_, account) = cli_tenant(&data, true);
    let served = Served::start(&data, &logs, &[]);
    let admin = served.bootstrap_token.clone().unwrap();
    let client = reqwest::Client::new();
    let ids = ingest_batch(&client, &served.address, &admin, &account, "k", 20).await;
    assert!(served.stop().success());

    // A backup of the vault holds every key, the one about to be destroyed included.
    let copy = dir.path().join("vault-copy.db");
    let (code, _, err) = run_cli(
        &data,
        &[
            "backup",
            "--out",
            dir.path().join("backup").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    std::fs::copy(dir.path().join("backup").join("vault.db"), &copy).unwrap();
    let destroyed = ids[0].clone();
    let (code, _, err) = run_cli(&data, &["redact", "call", &destroyed]);
    assert_eq!(code, 0, "{err}");
    let stored: (Vec<u8>, String) = rusqlite::Connection::open(&copy)
        .unwrap()
        .query_row(
            "SELECT wrapped, master FROM data_keys WHERE id = ?1",
            [&destroyed],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let folder_keys = || -> Vec<MasterKey> {
        files_below(&data)
            .into_iter()
            .filter_map(|p| MasterKey::from_file_contents(&std::fs::read(p).ok()?).ok())
            .collect()
    };
    // Before the rotation the data folder's key opens the copy: the check below can fail.
    let before = folder_keys();
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].fingerprint(), stored.1);
    assert!(before[0].unwrap(&destroyed, &stored.0).is_ok());

    let new_key_file = dir.path().join("new.key");
    let (code, out, err) = run_cli(
        &data,
        &[
            "vault",
            "rotate",
            "--new-master-key-file",
            new_key_file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run_cli(&data, &["checklist", "--account", &account, "--json"]);
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(out.trim()).unwrap();
    let rotated = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "master_key_rotated")
        .unwrap();
    assert_eq!(rotated["status"], "pass", "{rotated}");
    assert!(
        rotated["explanation"]
            .as_str()
            .unwrap()
            .contains("rotated 0 days ago"),
        "{rotated}"
    );
    let after = folder_keys();
    assert_eq!(after.len(), 1, "the data folder holds the new key alone");
    assert!(
        after
            .iter()
            .all(|k| k.unwrap(&destroyed, &stored.0).is_err()),
        "the backed-up wrapped key of a destroyed call opens with nothing the data folder holds"
    );

    // Every live call still reads.
    let served = Served::start(&data, &logs, &[]);
    let calls = all_calls(&client, &served.address, &admin, &account).await;
    assert_eq!(calls.len(), 20);
    let live: Vec<Value> = calls
        .into_iter()
        .filter(|c| c["id"] != json!(destroyed))
        .collect();
    assert_eq!(live.len(), 19);
    assert_every_call_reads(&live);
    assert!(served.stop().success());
}

/// Bytes in the call log's WAL file (0 when it was truncated or is absent).
fn call_log_wal_bytes(app: &TestApp) -> u64 {
    std::fs::metadata(app.data_dir().join("ringfence.db-wal")).map_or(0, |m| m.len())
}

#[tokio::test]
async fn a_sweep_truncates_the_call_logs_wal_once_when_it_ends_not_after_each_batch() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let calls = ingest_ages(&app, account).await;
    let (status, settings) = set_policy(
        &app,
        account,
        json!({"after_days": 30, "scope": "everyone"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{settings}");
    let due = calls.iter().filter(|(age, _, _)| *age > 30).count();
    // Batches of 4: the due calls take several, and each batch reports before the next.
    let mut wal_after_batch = Vec::new();
    let report = sweep(
        &app.resources.log,
        SweepOptions {
            now: Timestamp::now(),
            batch: 4,
            dry_run: false,
        },
        &mut |_| wal_after_batch.push(call_log_wal_bytes(&app)),
    )
    .await
    .unwrap();
    assert_eq!(report.total_calls(), due as u64);
    assert!(wal_after_batch.len() >= 3, "batches: {wal_after_batch:?}");
    // Truncating after each batch copied the WAL back in line while the next batch waited:
    // the batches now leave their pages to the background checkpoint...
    assert!(
        wal_after_batch.iter().all(|bytes| *bytes > 0),
        "the WAL after each batch: {wal_after_batch:?}"
    );
    // ...and the sweep truncates it once it has redacted them all.
    assert_eq!(call_log_wal_bytes(&app), 0, "the WAL after the sweep");
    for (age, _, id) in &calls {
        assert_eq!(redacted(&app, id).await, *age > 30, "call aged {age}");
    }
}
