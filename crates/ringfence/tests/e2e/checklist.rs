//! The compliance checklist: each setting and piece of live state flipped through the API
//! (or the worker's step, or the file system), and the item seen to change; roles; the
//! agency roll-up's order; the command line's document.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;
use ringfence_core::access::Role;
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, AgencyId};
use ringfence_jobs::retention::{SweepOptions, sweep};

async fn checklist(app: &TestApp, account: AccountId) -> Value {
    let (status, body) = app
        .get(&app.admin, &format!("/api/v1/accounts/{account}/checklist"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn item<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("no item {id} in {doc}"))
}

async fn status_of(app: &TestApp, account: AccountId, id: &str) -> (String, Value) {
    let doc = checklist(app, account).await;
    let it = item(&doc, id).clone();
    (it["status"].as_str().expect("status").to_owned(), it)
}

async fn put_account(app: &TestApp, account: AccountId, body: Value) {
    let (status, answer) = app
        .send(
            Method::PUT,
            &app.admin,
            &format!("/api/v1/accounts/{account}/settings"),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

async fn put_agency(app: &TestApp, agency: AgencyId, body: Value) {
    let (status, answer) = app
        .send(
            Method::PUT,
            &app.admin,
            &format!("/api/v1/agencies/{agency}/settings"),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

async fn run_sweep(app: &TestApp) {
    sweep(&app.resources.log, SweepOptions::now(), &mut |_| {})
        .await
        .expect("sweep");
}

fn days_ago(days: i64) -> String {
    Timestamp::from_millis(Timestamp::now().millis() - days * 86_400_000 - 3_600_000).to_rfc3339()
}

#[tokio::test]
async fn the_document_has_every_item_with_a_status_explanation_and_fix() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let doc = checklist(&app, account).await;
    assert_eq!(doc["account_id"], account.to_string());
    assert!(Timestamp::parse_rfc3339(doc["generated_at"].as_str().unwrap()).is_ok());
    let ids: Vec<&str> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "redaction_enabled",
            "auto_redaction",
            "recording_consent_gdpr",
            "caller_id_lookup",
            "ip_minimised",
            "visitor_details",
            "overdue_redactions",
            "worker_recent",
            "data_folder_permissions",
            "master_key_rotated",
            "recipients",
            "tokens",
            "audit_chain"
        ]
    );
    let mut worst = "pass";
    for it in doc["items"].as_array().unwrap() {
        let status = it["status"].as_str().unwrap();
        assert!(["pass", "warn", "fail"].contains(&status), "{it}");
        assert!(!it["explanation"].as_str().unwrap().is_empty());
        assert!(!it["fix"].as_str().unwrap().is_empty());
        if status == "fail" || (status == "warn" && worst == "pass") {
            worst = status;
        }
    }
    assert_eq!(doc["status"], worst);
    // The test account collects everything: IP kept in full fails.
    assert_eq!(doc["status"], "fail");
}

#[tokio::test]
async fn settings_flips_change_their_items() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;

    assert_eq!(
        status_of(&app, account, "redaction_enabled").await.0,
        "pass"
    );
    put_agency(&app, agency, json!({"redaction_enabled": false})).await;
    let (status, it) = status_of(&app, account, "redaction_enabled").await;
    assert_eq!(status, "fail");
    assert!(it["fix"].as_str().unwrap().contains(&format!(
        "ringfence agency set {agency} --redaction-enabled true"
    )));
    put_agency(&app, agency, json!({"redaction_enabled": true})).await;
    assert_eq!(
        status_of(&app, account, "redaction_enabled").await.0,
        "pass"
    );

    assert_eq!(status_of(&app, account, "auto_redaction").await.0, "fail");
    for (days, expected) in [(120, "warn"), (30, "pass"), (90, "pass"), (91, "warn")] {
        put_account(
            &app,
            account,
            json!({"auto_redact": {"after_days": days}, "confirm": true}),
        )
        .await;
        assert_eq!(
            status_of(&app, account, "auto_redaction").await.0,
            expected,
            "{days} days"
        );
    }
    put_account(&app, account, json!({"auto_redact": {"after_days": null}})).await;
    assert_eq!(status_of(&app, account, "auto_redaction").await.0, "fail");
    // The agency's maximum imposes retention even when the account set none.
    put_agency(&app, agency, json!({"max_retention_days": 60})).await;
    let (status, it) = status_of(&app, account, "auto_redaction").await;
    assert_eq!(status, "pass", "{it}");
    assert!(it["explanation"].as_str().unwrap().contains("60 days"));

    for (setting, id, on, on_status, off, off_status) in [
        (
            "caller_name",
            "caller_id_lookup",
            json!(true),
            "warn",
            json!(false),
            "pass",
        ),
        (
            "visitor_ip",
            "ip_minimised",
            json!("full"),
            "fail",
            json!("truncate"),
            "pass",
        ),
        (
            "visitor_details",
            "visitor_details",
            json!(true),
            "warn",
            json!(false),
            "pass",
        ),
    ] {
        put_account(&app, account, json!({"collection": {setting: on}})).await;
        assert_eq!(status_of(&app, account, id).await.0, on_status, "{setting}");
        put_account(&app, account, json!({"collection": {setting: off}})).await;
        assert_eq!(
            status_of(&app, account, id).await.0,
            off_status,
            "{setting}"
        );
    }
    put_account(&app, account, json!({"collection": {"visitor_ip": "drop"}})).await;
    assert_eq!(status_of(&app, account, "ip_minimised").await.0, "pass");
}

#[tokio::test]
async fn recording_consent_needs_a_notice_and_consents_with_its_version() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let id = "recording_consent_gdpr";
    // The test account announces recordings and has no notice.
    let (status, it) = status_of(&app, account, id).await;
    assert_eq!(status, "warn");
    assert!(
        it["explanation"]
            .as_str()
            .unwrap()
            .contains("no notice text"),
        "{it}"
    );
    put_account(
        &app,
        account,
        json!({"collection": {"recording_gdpr": "off"}}),
    )
    .await;
    assert_eq!(status_of(&app, account, id).await.0, "pass");
    put_account(
        &app,
        account,
        json!({"collection": {"recording_gdpr": "opt_in"}}),
    )
    .await;
    assert_eq!(status_of(&app, account, id).await.0, "warn");

    let notices = format!("/api/v1/accounts/{account}/notices");
    let (status, body) = app
        .post(&app.admin, &notices, json!({"category": "recording", "text": "Calls are recorded for training. Press 1 to agree."}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, it) = status_of(&app, account, id).await;
    assert_eq!(status, "pass", "{it}");

    let consents = format!("/api/v1/accounts/{account}/consents");
    let (status, body) = app
        .post(&app.admin, &consents, json!({"subject": {"caller_number": uk_number(1)}, "category": "recording", "status": "granted", "method": "api", "notice_version": 1}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(status_of(&app, account, id).await.0, "pass");
    // A withdrawal needs no notice version: it is not weaker evidence.
    let (status, body) = app
        .post(&app.admin, &consents, json!({"subject": {"caller_number": uk_number(1)}, "category": "recording", "status": "withdrawn", "method": "api"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, it) = status_of(&app, account, id).await;
    assert_eq!(status, "pass", "{it}");
    for n in [2, 3] {
        let (status, body) = app
            .post(&app.admin, &consents, json!({"subject": {"caller_number": uk_number(n)}, "category": "recording", "status": "granted", "method": "api"}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, it) = status_of(&app, account, id).await;
    assert_eq!(status, "warn");
    let explanation = it["explanation"].as_str().unwrap();
    assert!(explanation.contains("2 consents were granted"), "{it}");
    assert!(!explanation.contains("7946"), "no number in the checklist");
}

#[tokio::test]
async fn overdue_calls_warn_then_fail_and_the_sweep_clears_them() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let id = "overdue_redactions";
    put_account(&app, account, json!({"auto_redact": {"after_days": 30}})).await;
    let mut recent = full_call(1);
    recent["started_at"] = json!(days_ago(10));
    app.ingest(account, recent).await;
    assert_eq!(status_of(&app, account, id).await.0, "pass");

    // Due since a few hours: the sweep has not had its turn yet.
    let mut due = full_call(2);
    due["started_at"] = json!(
        Timestamp::from_millis(Timestamp::now().millis() - 30 * 86_400_000 - 3_600_000)
            .to_rfc3339()
    );
    app.ingest(account, due).await;
    let (status, it) = status_of(&app, account, id).await;
    assert_eq!(status, "warn", "{it}");
    assert!(
        it["explanation"].as_str().unwrap().contains("1 redactions"),
        "{it}"
    );

    // Due for years: the worker is behind.
    let mut old = full_call(3);
    old["started_at"] = json!("2020-01-01T00:00:00Z");
    app.ingest(account, old).await;
    let (status, it) = status_of(&app, account, id).await;
    assert_eq!(status, "fail", "{it}");
    assert!(
        it["explanation"].as_str().unwrap().contains("2 redactions"),
        "{it}"
    );

    run_sweep(&app).await;
    assert_eq!(status_of(&app, account, id).await.0, "pass");
}

#[tokio::test]
async fn the_worker_item_follows_the_sweeps_heartbeat() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let (status, it) = status_of(&app, account, "worker_recent").await;
    assert_eq!(status, "warn", "{it}");
    assert!(it["explanation"].as_str().unwrap().contains("never run"));

    // A dry run is not a run.
    sweep(
        &app.resources.log,
        SweepOptions {
            dry_run: true,
            ..SweepOptions::now()
        },
        &mut |_| {},
    )
    .await
    .unwrap();
    assert_eq!(status_of(&app, account, "worker_recent").await.0, "warn");

    run_sweep(&app).await;
    assert_eq!(status_of(&app, account, "worker_recent").await.0, "pass");

    let store = app.resources.log.store();
    let now = Timestamp::now().millis();
    store
        .record_job_run("retention".into(), Timestamp::from_millis(now + 1))
        .await
        .unwrap();
    // Older runs never move the heartbeat back.
    store
        .record_job_run("retention".into(), Timestamp::from_millis(now - 86_400_000))
        .await
        .unwrap();
    assert_eq!(status_of(&app, account, "worker_recent").await.0, "pass");
}

#[tokio::test]
async fn stale_heartbeats_warn_then_fail() {
    for (minutes_ago, expected) in [(30, "warn"), (120, "fail")] {
        let app = TestApp::spawn().await;
        let (_, account) = app.tenant().await;
        app.resources
            .log
            .store()
            .record_job_run(
                "retention".into(),
                Timestamp::from_millis(Timestamp::now().millis() - minutes_ago * 60_000),
            )
            .await
            .unwrap();
        assert_eq!(
            status_of(&app, account, "worker_recent").await.0,
            expected,
            "{minutes_ago} minutes"
        );
    }
}

#[tokio::test]
async fn tokens_without_expiry_are_counted_per_account() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let (_, other) = app.tenant().await;
    // The installation admin's token reaches every account.
    let (status, it) = status_of(&app, account, "tokens").await;
    assert_eq!(status, "warn");
    assert!(
        it["explanation"].as_str().unwrap().starts_with("1 tokens"),
        "{it}"
    );
    app.token(Role::Analyst, Some(agency), Some(account), false)
        .await;
    app.token(Role::AgencyAdmin, Some(agency), None, true).await;
    let (_, it) = status_of(&app, account, "tokens").await;
    assert!(
        it["explanation"].as_str().unwrap().starts_with("3 tokens"),
        "{it}"
    );
    let (_, it) = status_of(&app, other, "tokens").await;
    assert!(
        it["explanation"].as_str().unwrap().starts_with("1 tokens"),
        "{it}"
    );
    // A token that expires is not counted.
    let args = ringfence::commands::TokenArgs {
        role: "analyst".into(),
        agency: None,
        account: Some(other.to_string()),
        label: None,
        no_personal_data: true,
        expires_in_days: Some(30),
    };
    ringfence::commands::create_token(&app.resources, &args)
        .await
        .unwrap();
    let (_, it) = status_of(&app, other, "tokens").await;
    assert!(
        it["explanation"].as_str().unwrap().starts_with("1 tokens"),
        "{it}"
    );
}

// Multi-threaded: the test blocks its thread on SQL run beside the server, whose
// background tasks (key refills on PostgreSQL) must go on meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_modes_and_the_audit_chain_are_checked() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    put_agency(&app, agency, json!({"redaction_enabled": true})).await;
    let (status, it) = status_of(&app, account, "audit_chain").await;
    assert_eq!(status, "pass", "{it}");
    assert_eq!(
        status_of(&app, account, "data_folder_permissions").await.0,
        "pass"
    );

    let data = app.data_dir();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (status, it) = status_of(&app, account, "data_folder_permissions").await;
    assert_eq!(status, "fail", "{it}");
    assert!(it["explanation"].as_str().unwrap().contains("755"));
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let key = app.resources.config.master_key_file.clone();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        status_of(&app, account, "data_folder_permissions").await.0,
        "fail"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        status_of(&app, account, "data_folder_permissions").await.0,
        "pass"
    );

    // An altered journal entry breaks the chain.
    execute_on_call_log(
        &data,
        "UPDATE audit_log SET action = 'tampered' WHERE seq = 1",
    );
    let (status, it) = status_of(&app, account, "audit_chain").await;
    assert_eq!(status, "fail", "{it}");
}

#[tokio::test]
async fn roles_and_tenants_are_checked() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let (other_agency, other) = app.tenant().await;
    let path = format!("/api/v1/accounts/{account}/checklist");
    let agency_path = format!("/api/v1/agencies/{agency}/checklist");

    let analyst = app
        .token(Role::Analyst, Some(agency), Some(account), true)
        .await;
    assert_eq!(app.get(&analyst, &path).await.0, StatusCode::FORBIDDEN);
    let account_admin = app
        .token(Role::AccountAdmin, Some(agency), Some(account), true)
        .await;
    assert_eq!(app.get(&account_admin, &path).await.0, StatusCode::OK);
    // An account admin does not see its agency's roll-up.
    assert_eq!(
        app.get(&account_admin, &agency_path).await.0,
        StatusCode::NOT_FOUND
    );
    let agency_analyst = app.token(Role::Analyst, Some(agency), None, true).await;
    assert_eq!(
        app.get(&agency_analyst, &agency_path).await.0,
        StatusCode::FORBIDDEN
    );
    let agency_admin = app.token(Role::AgencyAdmin, Some(agency), None, true).await;
    assert_eq!(app.get(&agency_admin, &path).await.0, StatusCode::OK);
    assert_eq!(app.get(&agency_admin, &agency_path).await.0, StatusCode::OK);

    let foreign = app
        .token(Role::AgencyAdmin, Some(other_agency), None, true)
        .await;
    let (status, body) = app.get(&foreign, &path).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(
        app.get(&foreign, &agency_path).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&foreign, &format!("/api/v1/accounts/{other}/checklist"))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        app.get(
            &app.admin,
            &format!("/api/v1/accounts/{}/checklist", AccountId::generate())
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&app.admin, "/api/v1/agencies/not-an-id/checklist")
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_agency_roll_up_lists_its_accounts_worst_first() {
    let app = TestApp::spawn().await;
    let agency = app.agency(true).await;
    let failing = app.account(agency).await; // collects full IP addresses
    let warning = app.account(agency).await;
    let elsewhere = app.account(app.agency(true).await).await;
    put_account(
        &app,
        warning,
        json!({"auto_redact": {"after_days": 30}, "collection": {"visitor_ip": "truncate"}}),
    )
    .await;
    let (status, doc) = app
        .get(&app.admin, &format!("/api/v1/agencies/{agency}/checklist"))
        .await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["agency_id"], agency.to_string());
    let accounts = doc["accounts"].as_array().unwrap();
    let order: Vec<(&str, &str)> = accounts
        .iter()
        .map(|a| {
            (
                a["account_id"].as_str().unwrap(),
                a["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            (failing.to_string().as_str(), "fail"),
            (warning.to_string().as_str(), "warn")
        ]
    );
    assert!(!doc.to_string().contains(&elsewhere.to_string()));
    assert_eq!(doc["status"], "fail");
    // Each account's document is the account route's.
    assert_eq!(accounts[1]["items"].as_array().unwrap().len(), 13);
}

#[test]
fn the_cli_prints_the_same_document() {
    let dir = Backing::new();
    let data = dir.path().join("data");
    let (agency, account) = cli_tenant(&data, true);
    let (code, out, err) = run_cli(&data, &["checklist", "--account", &account, "--json"]);
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(out.trim()).expect("one JSON document");
    assert_eq!(doc["account_id"], account);
    assert_eq!(doc["items"].as_array().unwrap().len(), 13);
    assert_eq!(item(&doc, "ip_minimised")["status"], "fail");
    assert_eq!(item(&doc, "data_folder_permissions")["status"], "pass");

    let (code, out, err) = run_cli(&data, &["checklist", "--agency", &agency, "--json"]);
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(out.trim()).expect("one JSON document");
    assert_eq!(doc["accounts"][0]["account_id"], account);

    let (code, out, err) = run_cli(&data, &["checklist", "--account", &account]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().count(),
        14,
        "a header and one line per item: {out}"
    );
    assert!(out.contains("fail ip_minimised"), "{out}");

    let (code, _, _) = run_cli(&data, &["checklist"]);
    assert_eq!(code, 2, "one of --account or --agency is required");
    let (code, _, err) = run_cli(
        &data,
        &["checklist", "--account", &AccountId::generate().to_string()],
    );
    assert_eq!(code, 1);
    assert!(err.contains("no account"), "{err}");
}
