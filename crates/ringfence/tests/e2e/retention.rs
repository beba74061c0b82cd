//! Automatic redaction: policies, scopes, per-category schedules, the agency maximum, legal
//! hold, dry runs and confirmation. The worker's step is called directly.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;
use ringfence_core::AccountId;
use ringfence_core::timestamp::Timestamp;
use ringfence_jobs::retention::{SweepOptions, SweepReport, sweep};

const AGES: [u32; 6] = [120, 95, 65, 35, 5, 0];

pub(crate) fn started(days_ago: u32) -> String {
    // An hour past the day boundary, so "older than N days" is unambiguous.
    Timestamp::from_millis(Timestamp::now().millis() - i64::from(days_ago) * 86_400_000 - 3_600_000)
        .to_rfc3339()
}

/// One call per age and kind of caller: (age, kind, id). Kinds: gdpr, other, unknown.
pub(crate) async fn ingest_ages(
    app: &TestApp,
    account: AccountId,
) -> Vec<(u32, &'static str, String)> {
    let mut out = Vec::new();
    for (i, age) in AGES.iter().enumerate() {
        for (k, kind) in ["gdpr", "other", "unknown"].into_iter().enumerate() {
            let n = (i * 3 + k) as u16;
            let mut call = full_call(n);
            call["started_at"] = json!(started(*age));
            call["caller_number"] = match kind {
                "gdpr" => json!(uk_number(n)),
                "other" => json!(us_number(n)),
                _ => json!("anonymous"),
            };
            out.push((*age, kind, app.ingest(account, call).await));
        }
    }
    out
}

pub(crate) async fn set_policy(
    app: &TestApp,
    account: AccountId,
    auto_redact: Value,
) -> (StatusCode, Value) {
    app.send(
        Method::PUT,
        &app.admin,
        &format!("/api/v1/accounts/{account}/settings"),
        Some(json!({"auto_redact": auto_redact, "confirm": true})),
    )
    .await
}

pub(crate) async fn run_sweep(app: &TestApp) -> SweepReport {
    sweep(
        &app.resources.log,
        SweepOptions {
            now: Timestamp::now(),
            batch: 4,
            dry_run: false,
        },
        &mut |_| {},
    )
    .await
    .unwrap()
}

pub(crate) async fn redacted(app: &TestApp, id: &str) -> bool {
    let (_, call) = app.get(&app.admin, &format!("/api/v1/calls/{id}")).await;
    !call["redaction"].is_null()
}

#[tokio::test]
async fn each_policy_and_scope_redacts_exactly_the_calls_past_it() {
    let cases: [(Option<u32>, &str); 8] = [
        (Some(1), "everyone"),
        (Some(30), "everyone"),
        (Some(60), "everyone"),
        (Some(90), "everyone"),
        (Some(100), "everyone"),
        (None, "everyone"),
        (Some(30), "gdpr"),
        (Some(90), "gdpr"),
    ];
    for (days, scope) in cases {
        let app = TestApp::spawn().await;
        let (_, account) = app.tenant().await;
        let calls = ingest_ages(&app, account).await;
        let (status, settings) =
            set_policy(&app, account, json!({"after_days": days, "scope": scope})).await;
        assert_eq!(status, StatusCode::OK, "{settings}");
        let report = run_sweep(&app).await;
        let mut expected = 0;
        for (age, kind, id) in &calls {
            let due = days.is_some_and(|d| *age > d) && (scope == "everyone" || *kind != "other");
            expected += u64::from(due);
            assert_eq!(
                redacted(&app, id).await,
                due,
                "policy {days:?} {scope}: call aged {age} of a {kind} caller"
            );
            if due {
                let (_, call) = app.get(&app.admin, &format!("/api/v1/calls/{id}")).await;
                assert_eq!(call["redaction"]["reason"], "retention");
                assert_eq!(call["redaction"]["by"], "retention");
            }
        }
        assert_eq!(report.total_calls(), expected, "policy {days:?} {scope}");
        assert_eq!(
            run_sweep(&app).await.total_calls(),
            0,
            "a second sweep redacts nothing twice"
        );
    }
}

#[tokio::test]
async fn categories_go_on_their_own_schedules() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let calls = ingest_ages(&app, account).await;
    for (_, _, id) in &calls {
        let status = app
            .client
            .put(app.url(&format!("/api/v1/calls/{id}/recording")))
            .bearer_auth(&app.admin)
            .header("content-type", "audio/wav")
            .body(vec![5u8; 2000])
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, body) = set_policy(
        &app,
        account,
        json!({"after_days": 90, "categories": {"recording": 30, "visitor": 1}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["auto_redact"]["categories"],
        json!({"recording": 30, "visitor": 1})
    );
    let report = run_sweep(&app).await;
    for (age, kind, id) in &calls {
        let (_, call) = app.get(&app.admin, &format!("/api/v1/calls/{id}")).await;
        let files = files_below(&app.data_dir().join("recordings"))
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(id.as_str()))
            .count();
        let what = format!("call aged {age} ({kind}): {call}");
        if *age > 90 {
            assert_eq!(call["redaction"]["reason"], "retention", "{what}");
            assert_eq!(files, 0, "{what}");
        } else {
            assert!(call["redaction"].is_null(), "{what}");
            assert_eq!(call["transcript"], "Hello, I would like a quote.", "{what}");
            assert_eq!(call["recording"].is_null(), *age > 30, "{what}");
            assert_eq!(files, usize::from(*age <= 30), "{what}");
            assert_eq!(call["visitor"].is_null(), *age > 1, "{what}");
        }
    }
    let account_report = &report.accounts[&account];
    assert_eq!(account_report.calls, 6);
    assert_eq!(
        account_report.categories[&ringfence_core::DataCategory::Recording],
        6,
        "65 and 35 days old, three callers each"
    );
    assert_eq!(
        account_report.categories[&ringfence_core::DataCategory::Visitor],
        9
    );
}

#[tokio::test]
async fn the_agency_maximum_applies_and_accounts_may_only_tighten_it() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let calls = ingest_ages(&app, account).await;
    // The ceiling would redact calls at once (this account's automatic redaction is off):
    // previewed first, applied when confirmed.
    let (status, body) = app
        .send(
            Method::PUT,
            &app.admin,
            &format!("/api/v1/agencies/{agency}/settings"),
            Some(json!({"max_retention_days": 60})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body["error"]["would_redact"],
        json!({account.to_string(): 9})
    );
    let (status, _) = app
        .send(
            Method::PUT,
            &app.admin,
            &format!("/api/v1/agencies/{agency}/settings"),
            Some(json!({"max_retention_days": 60, "confirm": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = set_policy(&app, account, json!({"after_days": 90})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("exceeds_agency_maximum")
        ),
        "{body}"
    );
    let (_, settings) = app
        .get(&app.admin, &format!("/api/v1/accounts/{account}/settings"))
        .await;
    assert_eq!(settings["auto_redact"]["after_days"], Value::Null);
    assert_eq!(
        settings["auto_redact"]["effective_after_days"], 60,
        "the maximum applies to an account that set nothing"
    );
    assert_eq!(
        settings["auto_redact"]["preview"]["calls"], 9,
        "120, 95 and 65 days old"
    );
    run_sweep(&app).await;
    for (age, _, id) in &calls {
        assert_eq!(redacted(&app, id).await, *age > 60, "age {age}");
    }
    let (status, _) = set_policy(&app, account, json!({"after_days": 30})).await;
    assert_eq!(status, StatusCode::OK, "tightening is fine");
    run_sweep(&app).await;
    for (age, _, id) in &calls {
        assert_eq!(redacted(&app, id).await, *age > 30, "age {age}");
    }
}

#[tokio::test]
async fn a_call_on_legal_hold_is_exempt_until_released() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let calls = ingest_ages(&app, account).await;
    let held = calls[0].2.clone();
    let (status, hold) = app
        .send(
            Method::PUT,
            &app.admin,
            &format!("/api/v1/calls/{held}/legal-hold"),
            Some(json!({"reason": "case 2026-CV-17"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{hold}");
    let (_, call) = app.get(&app.admin, &format!("/api/v1/calls/{held}")).await;
    assert_eq!(call["legal_hold"]["reason"], "case 2026-CV-17");
    set_policy(&app, account, json!({"after_days": 30})).await;
    run_sweep(&app).await;
    assert!(
        !redacted(&app, &held).await,
        "held calls are exempt from automatic redaction"
    );
    let (status, body) = app
        .post(
            &app.admin,
            &format!("/api/v1/calls/{held}/redact"),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("legal_hold"))
    );
    let (_, receipt) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/callers/redact"),
            json!({"number": uk_number(0)}),
        )
        .await;
    assert_eq!(receipt["skipped_legal_hold"], 1, "{receipt}");
    assert!(!redacted(&app, &held).await);
    let (status, body) = app
        .send(
            Method::PUT,
            &app.admin,
            &format!("/api/v1/calls/{held}/legal-hold"),
            Some(json!({"reason": "Erika +442079460000"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = app
        .send(
            Method::DELETE,
            &app.admin,
            &format!("/api/v1/calls/{held}/legal-hold"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    run_sweep(&app).await;
    assert!(
        redacted(&app, &held).await,
        "released, it is redacted at the next sweep"
    );
    let (_, journal) = app.get(&app.admin, "/api/v1/audit?limit=500").await;
    let actions: Vec<&str> = journal["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"call.legal_hold_set")
            && actions.contains(&"call.legal_hold_released")
            && actions.contains(&"account.retention_changed"),
        "{actions:?}"
    );
}

#[tokio::test]
async fn a_dry_run_counts_and_changes_nothing_and_large_changes_need_confirming() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let calls: Vec<Value> = (0..150u16)
        .map(|i| {
            let mut c = full_call(i);
            c["started_at"] = json!(started(200));
            c
        })
        .collect();
    let (status, _) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/calls/batch"),
            json!({"calls": calls}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = app
        .send(
            Method::PUT,
            &app.admin,
            &format!("/api/v1/accounts/{account}/settings"),
            Some(json!({"auto_redact": {"after_days": 90}})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("confirmation_required")),
        "{body}"
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("150"),
        "{body}"
    );
    let (_, settings) = app
        .get(&app.admin, &format!("/api/v1/accounts/{account}/settings"))
        .await;
    assert_eq!(
        settings["auto_redact"]["after_days"],
        Value::Null,
        "nothing changed without confirmation"
    );
    let (status, settings) = set_policy(&app, account, json!({"after_days": 90})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(settings["auto_redact"]["preview"]["calls"], 150);
    let dry = sweep(
        &app.resources.log,
        SweepOptions {
            now: Timestamp::now(),
            batch: 10,
            dry_run: true,
        },
        &mut |_| {},
    )
    .await
    .unwrap();
    assert_eq!(dry.total_calls(), 150);
    let (_, list) = app
        .get(
            &app.admin,
            &format!("/api/v1/accounts/{account}/calls?redacted=true"),
        )
        .await;
    assert_eq!(list["items"], json!([]), "a dry run changes nothing");
    // The command line: dry run, then the real thing, with counts per account.
    let dir = app.stop().await;
    let data = dir.path().join("data");
    let (code, out, err) = run_cli(&data, &["sweep", "--dry-run", "--json"]);
    assert_eq!(code, 0, "{err}");
    let dry: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(dry["calls"], 150);
    assert_eq!(dry["accounts"][account.to_string()]["calls"], 150);
    let (code, out, err) = run_cli(&data, &["sweep", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).unwrap()["calls"],
        150
    );
    let (_, out, _) = run_cli(&data, &["sweep", "--json"]);
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).unwrap()["calls"],
        0
    );
    // `account set` asks for --yes the same way.
    let (code, _, err) = run_cli(
        &data,
        &[
            "account",
            "set",
            &account.to_string(),
            "--auto-redact",
            "off",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run_cli(
        &data,
        &[
            "account",
            "set",
            &account.to_string(),
            "--auto-redact",
            "30",
            "--category",
            "recording=7",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).unwrap()["auto_redact"]["after_days"],
        30
    );
    let (code, _, _) = run_cli(
        &data,
        &["account", "set", &account.to_string(), "--auto-redact", "0"],
    );
    assert_eq!(code, 1);
    let (code, _, _) = run_cli(
        &data,
        &[
            "account",
            "set",
            &account.to_string(),
            "--category",
            "call_facts=1",
        ],
    );
    assert_eq!(code, 1);
}

#[tokio::test]
async fn two_sweeps_at_once_never_redact_a_call_twice_and_metrics_tell_what_happened() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let calls: Vec<Value> = (0..2000u16)
        .map(|i| {
            let mut c = full_call(i);
            c["external_id"] = json!(format!("twice-{i}"));
            c["started_at"] = json!(started(45));
            c
        })
        .collect();
    for chunk in calls.chunks(1000) {
        let (status, _) = app
            .post(
                &app.admin,
                &format!("/api/v1/accounts/{account}/calls/batch"),
                json!({"calls": chunk}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    set_policy(&app, account, json!({"after_days": 30})).await;
    let log = &app.resources.log;
    let options = SweepOptions {
        now: Timestamp::now(),
        batch: 64,
        dry_run: false,
    };
    let (mut quiet_a, mut quiet_b) = (|_| {}, |_| {});
    let (a, b) = tokio::join!(
        sweep(log, options, &mut quiet_a),
        sweep(log, options, &mut quiet_b)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        a.total_calls() + b.total_calls(),
        2000,
        "between them, each call once"
    );
    let mut seen = std::collections::HashSet::new();
    let mut journaled = 0;
    for entry in all_audit(&app, 500).await {
        if entry["actor"] == "retention" {
            journaled += entry["count"].as_u64().unwrap();
            for id in entry["subject"]
                .as_str()
                .unwrap_or("")
                .split(',')
                .filter(|s| !s.is_empty())
            {
                assert!(seen.insert(id.to_owned()), "{id} journaled twice");
            }
        }
    }
    assert_eq!(journaled, 2000);
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("ringfence_calls_redacted_total{reason=\"retention\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "ringfence_calls_overdue{{account=\"{account}\"}} 0"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("ringfence_sweep_last_success_timestamp_seconds"),
        "{metrics}"
    );
}

// Multi-threaded: the test blocks its thread on SQL run beside the server, whose
// background tasks (key refills on PostgreSQL) must go on meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_redacted_by_hand_are_left_to_the_sweep_which_skips_them_and_retires_them() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let calls = ingest_ages(&app, account).await;
    // Two calls past the policy below (120 and 95 days old) and a young one (5 days).
    let by_hand = [calls[0].2.clone(), calls[4].2.clone(), calls[13].2.clone()];
    assert_eq!(
        [calls[0].0, calls[4].0, calls[13].0],
        [120, 95, 5],
        "test data"
    );
    for id in &by_hand {
        let (status, body) = app
            .post(&app.admin, &format!("/api/v1/calls/{id}/redact"), json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let db = app.data_dir().join("ringfence.db");
    let postgres = postgres_call_log(&app.data_dir());
    let count = |sql: &str| -> i64 {
        if let Some(url) = &postgres {
            return postgres_count(url, &sql.replace("?1", &format!("'{account}'")));
        }
        let conn =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap();
        conn.query_row(sql, [account.to_string()], |r| r.get(0))
            .unwrap()
    };
    let in_index = "SELECT COUNT(*) FROM calls WHERE account_id = ?1 AND redacted_at IS NOT NULL AND swept IS NULL AND legal_hold_at IS NULL";
    assert_eq!(
        count(in_index),
        3,
        "a redaction by hand leaves the index alone"
    );

    set_policy(&app, account, json!({"after_days": 30})).await;
    // Past 30 days: 4 ages x 3 callers, of which 2 are redacted already.
    let dry = sweep(
        &app.resources.log,
        SweepOptions {
            now: Timestamp::now(),
            batch: 4,
            dry_run: true,
        },
        &mut |_| {},
    )
    .await
    .unwrap();
    assert_eq!(dry.accounts[&account].calls, 10, "{dry:?}");
    let report = run_sweep(&app).await;
    assert_eq!(report.accounts[&account].calls, 10, "{report:?}");
    for (age, _, id) in &calls {
        let (_, call) = app.get(&app.admin, &format!("/api/v1/calls/{id}")).await;
        let expected = if by_hand.contains(id) {
            Some("manual")
        } else if *age > 30 {
            Some("retention")
        } else {
            None
        };
        assert_eq!(
            call["redaction"]["reason"].as_str(),
            expected,
            "{age} days: {call}"
        );
    }
    // The sweep retired the calls it passed: only the young one redacted by hand is still
    // in its index, and no live call left it.
    assert_eq!(count(in_index), 1);
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM calls WHERE account_id = ?1 AND redacted_at IS NULL AND swept IS NOT NULL"
        ),
        0
    );
    let again = run_sweep(&app).await;
    assert!(
        !again.accounts.contains_key(&account),
        "nothing left to do: {again:?}"
    );
}
