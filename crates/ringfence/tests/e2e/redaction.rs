//! Redaction of calls and callers, its gating, the forget list, and the audit journal.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;
use ringfence_core::access::Role;

async fn upload(app: &TestApp, call: &str, bytes: Vec<u8>) {
    assert_eq!(
        app.upload_recording(&app.admin, call, bytes, "audio/wav")
            .await
            .0,
        StatusCode::CREATED
    );
}

async fn recording_status(app: &TestApp, call: &str) -> (StatusCode, Value) {
    let response = app.download_recording(&app.admin, call, None).await;
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_redacted_call_keeps_its_facts_and_loses_everything_personal() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let id = app.ingest(account, full_call(1)).await;
    upload(&app, &id, b"RIFF-audio-bytes".repeat(100)).await;
    let (status, receipt) = app
        .post(
            &app.admin,
            &format!("/api/v1/calls/{id}/redact"),
            json!({"reason": "DSR-2026-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["redacted_calls"], 1);
    assert_eq!(
        receipt["redacted_sessions"], 1,
        "the linked visitor session goes too"
    );
    assert_eq!(receipt["call_ids"], json!([id]));
    assert!(receipt["audit_seq"].as_i64().unwrap() > 0);

    let (_, call) = app.get(&app.admin, &format!("/api/v1/calls/{id}")).await;
    for gone in [
        "caller",
        "recording",
        "transcript",
        "notes",
        "visitor",
        "gdpr_scope",
    ] {
        assert_eq!(call[gone], Value::Null, "{gone} must be gone: {call}");
    }
    assert_eq!(call["tags"], json!([]));
    assert_eq!(call["redaction"]["reason"], "manual");
    assert!(
        call["redaction"]["by"]
            .as_str()
            .unwrap()
            .starts_with("token:")
    );
    for kept in [
        "id",
        "account_id",
        "external_id",
        "started_at",
        "duration_s",
        "direction",
        "status",
        "tracking_number",
        "source",
        "campaign",
    ] {
        assert_ne!(call[kept], Value::Null, "{kept} is a call fact and stays");
    }
    assert_eq!(
        call["utm"],
        json!({"source": "google", "medium": "cpc", "campaign": "winter"})
    );

    let (status, body) = recording_status(&app, &id).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::GONE, Some("redacted"))
    );
    let upload_again = app
        .client
        .put(app.url(&format!("/api/v1/calls/{id}/recording")))
        .bearer_auth(&app.admin)
        .header("content-type", "audio/wav")
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(
        upload_again.status(),
        StatusCode::GONE,
        "a redacted call takes no new recording"
    );
    let files: Vec<_> = files_below(&app.data_dir().join("recordings"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(&id))
        .collect();
    assert!(
        files.is_empty(),
        "the recording file is destroyed: {files:?}"
    );

    // Gone from every filter, still counted by its facts.
    let path = format!("/api/v1/accounts/{account}/calls");
    let (_, by_caller) = app
        .get(
            &app.admin,
            &format!("{path}?caller_number=%2B{}", &uk_number(1)[1..]),
        )
        .await;
    assert_eq!(by_caller["items"], json!([]));
    let (_, by_source) = app
        .get(&app.admin, &format!("{path}?source=google_ads"))
        .await;
    assert_eq!(
        by_source["items"].as_array().unwrap().len(),
        1,
        "a redacted call still counts per source"
    );
    let (_, redacted) = app.get(&app.admin, &format!("{path}?redacted=true")).await;
    assert_eq!(redacted["items"][0]["id"], id);

    // Redacting again is fine and redacts nothing new.
    let (status, again) = app
        .post(&app.admin, &format!("/api/v1/calls/{id}/redact"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["redacted_calls"], 0);
    assert_eq!(again["call_ids"], json!([]));
}

#[tokio::test]
async fn redacting_a_caller_removes_all_their_calls_and_sessions_in_the_account() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let (_, other_account) = app.tenant().await;
    let mut ids = Vec::new();
    for n in 0..3u16 {
        let mut call = full_call(100 + n);
        call["caller_number"] = json!(uk_number(42));
        if n == 2 {
            call.as_object_mut().unwrap().remove("visitor");
        }
        ids.push(app.ingest(account, call).await);
    }
    let bystander = app.ingest(account, full_call(7)).await;
    let mut elsewhere = full_call(8);
    elsewhere["caller_number"] = json!(uk_number(42));
    let other_tenant = app.ingest(other_account, elsewhere).await;

    let (status, receipt) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/callers/redact"),
            json!({"number": "+44 20 7946 0042"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["redacted_calls"], 3);
    assert_eq!(receipt["redacted_sessions"], 2);
    assert_eq!(receipt["forgotten"], false);
    let mut got: Vec<String> = receipt["call_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
    for id in &ids {
        let (_, call) = app.get(&app.admin, &format!("/api/v1/calls/{id}")).await;
        assert_eq!(call["redaction"]["reason"], "caller");
    }
    let (_, untouched) = app
        .get(&app.admin, &format!("/api/v1/calls/{bystander}"))
        .await;
    assert_eq!(untouched["redaction"], Value::Null);
    let (_, other) = app
        .get(&app.admin, &format!("/api/v1/calls/{other_tenant}"))
        .await;
    assert_eq!(
        other["redaction"],
        Value::Null,
        "another account keeps its own call of the same number"
    );
    assert_eq!(other["caller"]["number"], uk_number(42));
}

#[tokio::test]
async fn an_agency_admin_can_redact_a_caller_across_the_agency_and_an_account_admin_cannot() {
    let app = TestApp::spawn().await;
    let agency = app.agency(true).await;
    let (a1, a2) = (app.account(agency).await, app.account(agency).await);
    for (i, account) in [a1, a2].into_iter().enumerate() {
        let mut call = full_call(i as u16);
        call["caller_number"] = json!(uk_number(77));
        app.ingest(account, call).await;
    }
    let account_admin = app
        .token(Role::AccountAdmin, Some(agency), Some(a1), true)
        .await;
    let (status, body) = app
        .post(
            &account_admin,
            &format!("/api/v1/accounts/{a1}/callers/redact"),
            json!({"number": uk_number(77), "scope": "agency"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let agency_admin = app.token(Role::AgencyAdmin, Some(agency), None, true).await;
    let (status, receipt) = app
        .post(
            &agency_admin,
            &format!("/api/v1/accounts/{a1}/callers/redact"),
            json!({"number": uk_number(77), "scope": "agency"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["redacted_calls"], 2);
}

#[tokio::test]
async fn redaction_is_refused_to_roles_that_may_not_and_where_the_agency_has_not_enabled_it() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let id = app.ingest(account, full_call(1)).await;
    let analyst = app
        .token(Role::Analyst, Some(agency), Some(account), true)
        .await;
    let ingest = app
        .token(Role::Ingest, Some(agency), Some(account), true)
        .await;
    for token in [&analyst, &ingest] {
        let (status, body) = app
            .post(token, &format!("/api/v1/calls/{id}/redact"), json!({}))
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("forbidden"))
        );
        let (status, _) = app
            .post(
                token,
                &format!("/api/v1/accounts/{account}/callers/redact"),
                json!({"number": uk_number(1)}),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let disabled_agency = app.agency(false).await;
    let disabled_account = app.account(disabled_agency).await;
    let locked = app.ingest(disabled_account, full_call(2)).await;
    let (status, body) = app
        .post(
            &app.admin,
            &format!("/api/v1/calls/{locked}/redact"),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("redaction_disabled"))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("redaction_enabled"),
        "the message says how to enable it"
    );
    let (status, body) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{disabled_account}/callers/redact"),
            json!({"number": uk_number(2)}),
        )
        .await;
    assert_eq!(body["error"]["code"], "redaction_disabled", "{status}");
    let (_, call) = app
        .get(&app.admin, &format!("/api/v1/calls/{locked}"))
        .await;
    assert_eq!(call["redaction"], Value::Null, "nothing was redacted");

    // The agency's admin turns it on; the change is journaled.
    let agency_admin = app
        .token(Role::AgencyAdmin, Some(disabled_agency), None, true)
        .await;
    let account_admin = app
        .token(
            Role::AccountAdmin,
            Some(disabled_agency),
            Some(disabled_account),
            true,
        )
        .await;
    let (status, _) = app
        .send(
            Method::PUT,
            &account_admin,
            &format!("/api/v1/agencies/{disabled_agency}/settings"),
            Some(json!({"redaction_enabled": true})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "an account's admin does not see its agency's settings"
    );
    let (status, settings) = app
        .send(
            Method::PUT,
            &agency_admin,
            &format!("/api/v1/agencies/{disabled_agency}/settings"),
            Some(json!({"redaction_enabled": true, "max_retention_days": 90})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{settings}");
    assert_eq!(
        settings,
        json!({"redaction_enabled": true, "max_retention_days": 90})
    );
    let (status, _) = app
        .send(
            Method::PUT,
            &agency_admin,
            &format!("/api/v1/agencies/{agency}/settings"),
            Some(json!({"redaction_enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another agency");
    let (status, body) = app
        .send(
            Method::PUT,
            &agency_admin,
            &format!("/api/v1/agencies/{disabled_agency}/settings"),
            Some(json!({"max_retention_days": 0})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_field"))
    );
    let (status, receipt) = app
        .post(
            &app.admin,
            &format!("/api/v1/calls/{locked}/redact"),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, receipt["redacted_calls"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    // A note that looks like personal data is refused: it would be journaled.
    let (status, body) = app
        .post(
            &app.admin,
            &format!("/api/v1/calls/{id}/redact"),
            json!({"reason": "caller +442079460001 asked"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_field"))
    );
}

#[tokio::test]
async fn a_forgotten_number_arrives_redacted_ever_after() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let mut call = full_call(1);
    call["caller_number"] = json!(uk_number(55));
    app.ingest(account, call.clone()).await;
    let (status, receipt) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/callers/redact"),
            json!({"number": uk_number(55), "forget": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(receipt["forgotten"], true);
    call["external_id"] = json!("later-call");
    let (status, later) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/calls"),
            call.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(later["redaction"]["reason"], "forget_list");
    assert_eq!(later["caller"], Value::Null);
    assert_eq!(later["visitor"], Value::Null);
    assert_eq!(later["transcript"], Value::Null);
    assert_eq!(
        later["source"], "google_ads",
        "the fact of the call is kept"
    );
    // In a batch too, next to a caller who is not forgotten.
    call["external_id"] = json!("batch-forgotten");
    let mut other = full_call(2);
    other["external_id"] = json!("batch-other");
    let (_, batch) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/calls/batch"),
            json!({"calls": [call, other]}),
        )
        .await;
    let (_, first) = app
        .get(
            &app.admin,
            &format!("/api/v1/calls/{}", batch["ids"][0].as_str().unwrap()),
        )
        .await;
    let (_, second) = app
        .get(
            &app.admin,
            &format!("/api/v1/calls/{}", batch["ids"][1].as_str().unwrap()),
        )
        .await;
    assert_eq!(first["redaction"]["reason"], "forget_list");
    assert_eq!(second["redaction"], Value::Null);
    let (_, journal) = app.get(&app.admin, "/api/v1/audit").await;
    let arrivals: Vec<&Value> = journal["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "call.redacted_on_arrival")
        .collect();
    assert_eq!(arrivals.len(), 2, "{journal}");
}

#[tokio::test]
async fn the_audit_journal_records_redactions_without_personal_data_and_is_scoped_to_the_reader() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let (_, other_account) = app.tenant().await;
    let id = app.ingest(account, full_call(3)).await;
    app.ingest(other_account, full_call(4)).await;
    app.post(&app.admin, &format!("/api/v1/calls/{id}/redact"), json!({}))
        .await;
    app.post(
        &app.admin,
        &format!("/api/v1/accounts/{other_account}/callers/redact"),
        json!({"number": uk_number(4)}),
    )
    .await;
    let account_admin = app
        .token(Role::AccountAdmin, Some(agency), Some(account), true)
        .await;

    let (status, all) = app.get(&app.admin, "/api/v1/audit").await;
    assert_eq!(status, StatusCode::OK);
    let text = all.to_string();
    // The numbers' digits, not a shorter run that a hash or an id in the journal may hold.
    assert!(
        !text.contains("2079460") && !text.contains("Erika"),
        "no personal data in the journal: {text}"
    );
    let actions: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"call.redacted")
            && actions.contains(&"caller.redacted")
            && actions.contains(&"token.created"),
        "{actions:?}"
    );
    let redaction = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "call.redacted")
        .unwrap();
    assert_eq!(redaction["subject"], id);
    assert_eq!(redaction["count"], 1);
    assert_eq!(redaction["details"]["redacted_sessions"], 1);

    let (_, mine) = app.get(&account_admin, "/api/v1/audit").await;
    for entry in mine["items"].as_array().unwrap() {
        assert_eq!(
            entry["account_id"],
            account.to_string(),
            "an account admin sees only its account's entries"
        );
    }
    assert!(!mine["items"].as_array().unwrap().is_empty());
    let analyst = app
        .token(Role::Analyst, Some(agency), Some(account), true)
        .await;
    assert_eq!(
        app.get(&analyst, "/api/v1/audit").await.0,
        StatusCode::FORBIDDEN
    );

    // Paging: one at a time reaches every entry once, in order.
    let seqs: Vec<i64> = all_audit(&app, 1)
        .await
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(seqs, expected);
}

// Multi-threaded: the test blocks its thread on SQL run beside the server, whose
// background tasks (key refills on PostgreSQL) must go on meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_passes_on_a_real_history_and_fails_on_each_kind_of_tampering() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    for n in 0..6u16 {
        let id = app.ingest(account, full_call(n)).await;
        app.post(&app.admin, &format!("/api/v1/calls/{id}/redact"), json!({}))
            .await;
    }
    let dir = app.stop().await;
    let data = dir.path().join("data");
    let (code, out, err) = run_cli(&data, &["audit", "verify", "--json"]);
    assert_eq!(code, 0, "{out} {err}");
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["ok"], true);
    let entries = report["entries"].as_i64().unwrap();
    assert!(entries >= 7, "{report}");

    let tamper = |sql: &str| {
        let copy = dir.copy();
        execute_on_call_log(&copy.data(), sql);
        let (code, _, err) = run_cli(&copy.data(), &["audit", "verify"]);
        (code, err)
    };
    let cases = [
        (
            "altered",
            "UPDATE audit_log SET count = 99 WHERE seq = 4",
            "entry 4",
        ),
        (
            "altered details",
            "UPDATE audit_log SET details = '{}' WHERE seq = 5",
            "entry 5",
        ),
        ("deleted", "DELETE FROM audit_log WHERE seq = 3", "entry 4"),
        (
            "reordered",
            "UPDATE audit_log SET seq = 1000000 WHERE seq = 3; UPDATE audit_log SET seq = 3 WHERE seq = 4; UPDATE audit_log SET seq = 4 WHERE seq = 1000000",
            "entry 3",
        ),
        (
            "first deleted",
            "DELETE FROM audit_log WHERE seq = 1",
            "entry 2",
        ),
        (
            "rehashed alone",
            "UPDATE audit_log SET hash = prev_hash WHERE seq = 2",
            "entry",
        ),
        (
            "last entries deleted",
            "DELETE FROM audit_log WHERE seq >= (SELECT MAX(seq) - 1 FROM audit_log)",
            "deleted",
        ),
    ];
    for (name, sql, names) in cases {
        let (code, err) = tamper(sql);
        assert_eq!(code, 1, "{name}: verify must fail");
        assert!(err.contains(names), "{name}: {err}");
    }

    // A forger who rewrites the whole chain consistently (its head row too, where the backend
    // keeps one) is caught by the head kept in the vault.
    let copy = dir.copy();
    execute_on_call_log(&copy.data(), "UPDATE audit_log SET count = 0 WHERE seq = 3");
    let mut prev = [0u8; 32];
    let mut rewrite = String::new();
    for mut entry in read_journal(&copy.data()) {
        entry.prev_hash = prev;
        entry.hash = entry.expected_hash(&prev);
        rewrite.push_str(&format!(
            "UPDATE audit_log SET prev_hash = {}, hash = {} WHERE seq = {};\n",
            bytes_literal(&copy.data(), &entry.prev_hash),
            bytes_literal(&copy.data(), &entry.hash),
            entry.seq
        ));
        if copy.is_postgres() {
            rewrite.push_str(&format!(
                "UPDATE audit_head SET hash = {} WHERE seq = {};\n",
                bytes_literal(&copy.data(), &entry.hash),
                entry.seq
            ));
        }
        prev = entry.hash;
    }
    execute_on_call_log(&copy.data(), &rewrite);
    let (code, _, err) = run_cli(&copy.data(), &["audit", "verify"]);
    assert_eq!(code, 1, "a rewritten chain must not verify");
    assert!(err.contains("rewritten"), "{err}");
}

// Multi-threaded: the test blocks its thread on SQL run beside the server, whose
// background tasks (key refills on PostgreSQL) must go on meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_the_vault_cannot_destroy_the_keys_no_row_is_cleared_and_the_job_finishes_later() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let ids = [
        app.ingest(account, full_call(1)).await,
        app.ingest(account, full_call(2)).await,
    ];
    // The vault refuses to delete keys (as a full or failing disk would).
    let data = app.data_dir();
    let postgres = app.dir.is_postgres();
    let refuse = |on: bool| {
        execute_on_vault(
            &data,
            match (on, postgres) {
                (true, false) => {
                    "CREATE TRIGGER refuse_delete BEFORE DELETE ON data_keys BEGIN SELECT RAISE(ABORT, 'refused'); END;"
                }
                (false, false) => "DROP TRIGGER refuse_delete;",
                (true, true) => {
                    "CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$;
                     CREATE TRIGGER refuse_delete BEFORE DELETE ON data_keys FOR EACH ROW EXECUTE FUNCTION refuse_delete();"
                }
                (false, true) => {
                    "DROP TRIGGER refuse_delete ON data_keys; DROP FUNCTION refuse_delete();"
                }
            },
        )
    };
    refuse(true);
    let (status, body) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/callers/redact"),
            json!({"number": uk_number(1)}),
        )
        .await;
    assert!(status.is_server_error(), "{status} {body}");
    let (status, body) = app
        .post(
            &app.admin,
            &format!("/api/v1/calls/{}/redact", ids[1]),
            json!({}),
        )
        .await;
    assert!(status.is_server_error(), "{status} {body}");
    // The call log's transaction, prepared while the vault worked, was rolled back: both
    // calls read as before, and the journal records no redaction.
    for id in &ids {
        let (status, call) = app.get(&app.admin, &format!("/api/v1/calls/{id}")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(call["redaction"].is_null(), "{call}");
        assert!(call["caller"]["number"].is_string(), "{call}");
        assert!(
            call["transcript"].is_array() || call["transcript"].is_string(),
            "{call}"
        );
    }
    let (_, journal) = app.get(&app.admin, "/api/v1/audit?limit=500").await;
    assert!(
        !journal["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"].as_str().unwrap().contains("redacted")),
        "{journal}"
    );
    // Once the vault works again, the recorded jobs are finished on the next start (as
    // `serve` does before it listens).
    refuse(false);
    let app = app.restart().await;
    app.resources.log.resume_redactions().await.unwrap();
    for id in &ids {
        let (_, call) = app.get(&app.admin, &format!("/api/v1/calls/{id}")).await;
        assert!(!call["redaction"].is_null(), "{call}");
        assert!(call["caller"].is_null(), "{call}");
    }
}
