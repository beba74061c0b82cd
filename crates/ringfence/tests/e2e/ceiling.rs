//! An agency's retention ceiling caps every account at once, so it is previewed per account
//! and applied only when confirmed: in the API, the CLI and the web page.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, AgencyId};
use ringfence_jobs::retention::{SweepOptions, sweep};

fn started(days_ago: i64) -> String {
    Timestamp::from_millis(Timestamp::now().millis() - days_ago * 86_400_000 - 3_600_000)
        .to_rfc3339()
}

/// Three accounts: 90 days, automatic redaction off, 30 days; calls 50 days old in each
/// (two in the 30-day account are due already), and one recent call in each.
async fn three_accounts(app: &TestApp, agency: AgencyId) -> [AccountId; 3] {
    let mut accounts = Vec::new();
    for (i, after_days) in [json!(90), Value::Null, json!(30)].into_iter().enumerate() {
        let account = app.account(agency).await;
        let (status, body) = app
            .send(
                Method::PUT,
                &app.admin,
                &format!("/api/v1/accounts/{account}/settings"),
                Some(json!({"auto_redact": {"after_days": after_days}, "confirm": true})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let old = [3, 2, 2][i];
        for n in 0..=old {
            let mut call = full_call((i * 10 + n) as u16);
            call["started_at"] = json!(if n < old { started(50) } else { started(2) });
            app.ingest(account, call).await;
        }
        accounts.push(account);
    }
    [accounts[0], accounts[1], accounts[2]]
}

async fn unredacted(app: &TestApp, account: AccountId) -> usize {
    let (_, list) = app
        .get(
            &app.admin,
            &format!("/api/v1/accounts/{account}/calls?redacted=false&limit=500"),
        )
        .await;
    list["items"].as_array().unwrap().len()
}

async fn sweep_now(app: &TestApp) -> u64 {
    sweep(
        &app.resources.log,
        SweepOptions {
            now: Timestamp::now(),
            batch: 100,
            dry_run: false,
        },
        &mut |_| {},
    )
    .await
    .unwrap()
    .total_calls()
}

#[tokio::test]
async fn a_ceiling_previews_what_it_would_redact_per_account_and_applies_only_when_confirmed() {
    let app = TestApp::spawn().await;
    let agency = app.agency(true).await;
    let [ninety, off, thirty] = three_accounts(&app, agency).await;
    // The 30-day account's old calls are due anyway: the sweep takes them now.
    assert_eq!(sweep_now(&app).await, 2);
    let path = format!("/api/v1/agencies/{agency}/settings");
    let (status, body) = app
        .send(
            Method::PUT,
            &app.admin,
            &path,
            Some(json!({"max_retention_days": 40})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "confirmation_required");
    assert_eq!(
        body["error"]["would_redact"],
        json!({ninety.to_string(): 3, off.to_string(): 2}),
        "per account, the one with automatic redaction off included"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("5 calls at once in 2 accounts")
    );
    // Nothing changed: neither the setting nor, at the next sweep, any call.
    let (_, settings) = app.get(&app.admin, &path).await;
    assert_eq!(settings["max_retention_days"], Value::Null);
    assert_eq!(sweep_now(&app).await, 0);
    assert_eq!(unredacted(&app, ninety).await, 4);
    assert_eq!(unredacted(&app, off).await, 3);
    // Confirmed: applied, journaled with the counts, and the sweep redacts exactly those.
    let (status, body) = app
        .send(
            Method::PUT,
            &app.admin,
            &path,
            Some(json!({"max_retention_days": 40, "confirm": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["max_retention_days"], 40);
    let journal = all_audit(&app, 500).await;
    let entry = journal
        .iter()
        .find(|e| e["action"] == "agency.settings_changed")
        .expect("journaled");
    assert_eq!(entry["count"], 5, "{entry}");
    assert!(entry.to_string().contains("confirmed"), "{entry}");
    assert_eq!(sweep_now(&app).await, 5);
    assert_eq!(unredacted(&app, ninety).await, 1);
    assert_eq!(unredacted(&app, off).await, 1);
    assert_eq!(unredacted(&app, thirty).await, 1);
    // Loosening or removing the ceiling redacts nothing: no confirmation needed.
    let (status, _) = app
        .send(
            Method::PUT,
            &app.admin,
            &path,
            Some(json!({"max_retention_days": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_cli_previews_a_ceiling_and_applies_it_only_with_yes() {
    let app = TestApp::spawn().await;
    let agency = app.agency(true).await;
    let [ninety, off, _] = three_accounts(&app, agency).await;
    let data = app.data_dir();
    let resources_dir = app.stop().await;
    let id = agency.to_string();
    let (code, out, err) = run_cli(
        &data,
        &["agency", "set", &id, "--max-retention-days", "40", "--json"],
    );
    assert_eq!(code, 1, "{out} {err}");
    let text = format!("{out}{err}");
    assert!(text.contains(&format!("account {ninety}: 3")), "{text}");
    assert!(text.contains(&format!("account {off}: 2")), "{text}");
    assert!(text.contains("--yes"), "{text}");
    let (code, out, err) = run_cli(
        &data,
        &[
            "agency",
            "set",
            &id,
            "--max-retention-days",
            "40",
            "--yes",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out} {err}");
    let answer: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(answer["max_retention_days"], 40);
    assert_eq!(answer["would_redact"][ninety.to_string()], 3);
    drop(resources_dir);
}
