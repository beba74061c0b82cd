//! The real binary: commands, exit codes, JSON output, serving, shutdown.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

fn json_of(stdout: &str) -> Value {
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one JSON document: {stdout}");
    serde_json::from_str(lines[0]).expect("valid JSON")
}

#[test]
fn cli_commands_create_tenants_and_tokens_and_print_json() {
    let dir = Backing::new();
    let data = dir.path().join("data");
    let (code, out, err) = run_cli(
        &data,
        &["agency", "create", "--name", "Acme Agency", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let agency = json_of(&out)["id"].as_str().unwrap().to_owned();
    let (code, out, err) = run_cli(
        &data,
        &[
            "account",
            "create",
            "--agency",
            &agency,
            "--name",
            "Acme Plumbing",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let account = json_of(&out)["id"].as_str().unwrap().to_owned();
    let (code, out, err) = run_cli(
        &data,
        &[
            "token",
            "create",
            "--role",
            "ingest",
            "--account",
            &account,
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let token = json_of(&out);
    assert!(token["token"].as_str().unwrap().starts_with("rf_"));
    assert_eq!(token["id"].as_str().unwrap().len(), 36);
    let (code, out, _) = run_cli(
        &data,
        &[
            "agency",
            "set",
            &agency,
            "--redaction-enabled",
            "true",
            "--max-retention-days",
            "90",
            "--json",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(
        json_of(&out),
        json!({"id": agency, "redaction_enabled": true, "max_retention_days": 90, "would_redact": {}})
    );

    // Errors: exit 1, a message on stderr, nothing on stdout, nothing created.
    for args in [
        vec!["token", "create", "--role", "emperor"],
        vec![
            "token",
            "create",
            "--role",
            "account_admin",
            "--agency",
            &agency,
        ],
        vec!["token", "create", "--role", "admin", "--account", &account],
        vec![
            "token",
            "create",
            "--role",
            "analyst",
            "--account",
            "0190c0a0-c0a0-7000-8000-000000000000",
        ],
        vec!["account", "create", "--agency", "not-an-id", "--name", "x"],
        vec!["account", "create", "--agency", &agency, "--name", ""],
        vec!["agency", "set", &agency],
    ] {
        let (code, out, err) = run_cli(&data, &args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
    }
    // Usage errors: exit 2.
    for args in [
        vec!["agency", "create"],
        vec!["frobnicate"],
        vec!["agency", "create", "--name", "x", "--colour", "red"],
    ] {
        assert_eq!(run_cli(&data, &args).0, 2, "{args:?}");
    }
    let mode = std::fs::metadata(data.join("master.key")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        mode.permissions().mode() & 0o777,
        0o600,
        "the master key is private"
    );
}

#[test]
fn settings_come_from_a_file_overridden_by_environment_and_flags() {
    // Where a setting comes from, shown with the default (SQLite) locations on either run.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ringfence.toml");
    std::fs::write(
        &config,
        format!("data = \"{}\"\n", dir.path().join("from-file").display()),
    )
    .unwrap();
    let out = binary()
        .args([
            "--config",
            config.to_str().unwrap(),
            "agency",
            "create",
            "--name",
            "A",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(dir.path().join("from-file/ringfence.db").exists());
    let out = binary()
        .args([
            "--config",
            config.to_str().unwrap(),
            "agency",
            "create",
            "--name",
            "A",
        ])
        .env("RINGFENCE_DATA", dir.path().join("from-env"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(dir.path().join("from-env/ringfence.db").exists());
    std::fs::write(&config, "dta = \"typo\"\n").unwrap();
    let out = binary()
        .args([
            "--config",
            config.to_str().unwrap(),
            "agency",
            "create",
            "--name",
            "A",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "unknown keys are an error");
}

#[tokio::test]
async fn serve_prints_a_bootstrap_token_once_and_shuts_down_without_losing_acknowledged_calls() {
    let dir = Backing::new();
    let data = dir.path().join("data");
    let logs = dir.path().join("logs");
    let served = Served::start(&data, &logs, &[]);
    let admin = served
        .bootstrap_token
        .clone()
        .expect("bootstrap token printed on first start");
    let (code, out, _) = run_cli(&data, &["agency", "create", "--name", "A", "--json"]);
    assert_eq!(code, 0);
    let agency = json_of(&out)["id"].as_str().unwrap().to_owned();
    let (_, out, _) = run_cli(
        &data,
        &[
            "account", "create", "--agency", &agency, "--name", "B", "--json",
        ],
    );
    let account = json_of(&out)["id"].as_str().unwrap().to_owned();

    // Calls in flight while the server is told to stop: every 201 must survive.
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/accounts/{account}/calls", served.address);
    let mut tasks = Vec::new();
    for i in 0..200u16 {
        let (client, url, admin) = (client.clone(), url.clone(), admin.clone());
        tasks.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(admin)
                .json(&full_call(i))
                .send()
                .await
                .ok()?;
            (response.status() == StatusCode::CREATED).then_some(i)
        }));
    }
    let status = tokio::task::spawn_blocking(move || served.stop())
        .await
        .unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    let mut acknowledged = Vec::new();
    for t in tasks {
        if let Some(i) = t.await.unwrap() {
            acknowledged.push(i);
        }
    }

    let served = Served::start(&data, &logs, &[]);
    assert!(
        served.bootstrap_token.is_none(),
        "the bootstrap token is printed only on first start"
    );
    let mut found = 0;
    for i in &acknowledged {
        let list: Value = client
            .get(format!(
                "{url}?limit=1&caller_number=%2B{}",
                &uk_number(*i)[1..]
            ))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        found += usize::from(!list["items"].as_array().unwrap().is_empty());
    }
    assert_eq!(
        found,
        acknowledged.len(),
        "every acknowledged call survived the shutdown"
    );
    let status = served.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn commands_on_stored_data_refuse_a_folder_without_any_and_create_nothing() {
    let dir = Backing::unmigrated();
    let data = dir.path().join("data");
    for args in [
        &["audit", "verify"][..],
        &["sweep", "--dry-run"],
        &["backup", "--out", dir.path().join("b").to_str().unwrap()],
    ] {
        let (code, _, err) = run_cli(&data, args);
        assert_ne!(code, 0, "{args:?}");
        let refusal = if dir.is_postgres() {
            "no Ringfence data in postgres://"
        } else {
            "no Ringfence data at"
        };
        assert!(err.contains(refusal), "{args:?}: {err}");
        assert!(!data.exists(), "{args:?} created the folder");
    }
    // Once `serve` (here: a command that creates) has made it, they run.
    let (code, _, err) = run_cli(&data, &["agency", "create", "--name", "A"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run_cli(&data, &["audit", "verify"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("intact") || err.contains("intact"),
        "{out} {err}"
    );
}

#[tokio::test]
async fn the_cli_redacts_through_the_apis_rules_refusing_a_note_with_personal_data_and_a_held_call()
{
    let dir = Backing::new();
    let data = dir.path().join("data");
    let logs = dir.path().join("logs");
    let (_, account) = cli_tenant(&data, true);
    let served = Served::start(&data, &logs, &[]);
    let admin = served.bootstrap_token.clone().unwrap();
    let client = reqwest::Client::new();
    let base = served.address.clone();
    let mut ids = Vec::new();
    for n in 0..2u16 {
        let created: Value = post_json(
            &client,
            &format!("{base}/api/v1/accounts/{account}/calls"),
            &admin,
            &full_call(n),
        )
        .await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let held = client
        .put(format!("{base}/api/v1/calls/{}/legal-hold", ids[1]))
        .bearer_auth(&admin)
        .json(&json!({"reason": "case 7"}))
        .send()
        .await
        .unwrap()
        .status();
    assert!(held.is_success(), "{held}");
    assert!(served.stop().success());

    // The API refuses an e-mail address as a journal note; the command line did not.
    let (code, out, _) = run_cli(
        &data,
        &[
            "redact",
            "call",
            &ids[0],
            "--reason",
            "asked by someone@example.com",
            "--json",
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(json_of(&out)["error"]["code"], "invalid_field", "{out}");
    // A call on legal hold is refused as the API refuses it.
    let (code, out, _) = run_cli(&data, &["redact", "call", &ids[1], "--json"]);
    assert_eq!(code, 1);
    assert_eq!(json_of(&out)["error"]["code"], "legal_hold", "{out}");
    // Nothing was redacted by either: the first call is redacted now, once.
    let (code, out, err) = run_cli(
        &data,
        &["redact", "call", &ids[0], "--reason", "ticket 42", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let receipt = json_of(&out);
    assert_eq!(receipt["redacted_calls"], 1, "{receipt}");
    assert_eq!(receipt["call_ids"], json!([ids[0].clone()]));
    let journal = read_journal(&data);
    let redactions: Vec<_> = journal
        .iter()
        .filter(|e| e.event.action == "call.redacted")
        .collect();
    assert_eq!(redactions.len(), 1);
    assert_eq!(redactions[0].event.actor, "cli");
    assert!(redactions[0].event.details.contains("ticket 42"));
}
