//! Small things a team meets in its first week: the CLI under `--json`, its help, the
//! export's file name, Swagger UI's headers.

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::*;

#[tokio::test]
async fn a_failing_command_under_json_prints_one_error_document_on_stdout() {
    let dir = Backing::unmigrated();
    let data = dir.path().join("data");
    let (code, out, err) = run_cli(&data, &["audit", "verify", "--json"]);
    assert_eq!(code, 1, "{out} {err}");
    let doc: Value = serde_json::from_str(out.trim()).expect("one JSON document on stdout");
    assert_eq!(doc["error"]["code"], "failed");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no Ringfence data"),
        "{doc}"
    );
    // Without --json: a line on stderr, nothing on stdout.
    let (code, out, err) = run_cli(&data, &["audit", "verify"]);
    assert_eq!(code, 1);
    assert!(out.is_empty(), "{out}");
    assert!(err.starts_with("error: no Ringfence data"), "{err}");
}

#[tokio::test]
async fn subcommand_help_keeps_global_options_apart_and_every_flag_says_what_it_is() {
    let dir = Backing::new();
    let data = dir.path().join("data");
    for args in [
        &["agency", "create", "--help"][..],
        &["account", "create", "--help"],
        &["redact", "caller", "--help"],
        &["export", "caller", "--help"],
        &["backup", "--help"],
        &["restore", "--help"],
        &["demo", "--help"],
    ] {
        let (code, out, _) = run_cli(&data, args);
        assert_eq!(code, 0, "{args:?}");
        let (own, global) = out
            .split_once("Global options:")
            .unwrap_or_else(|| panic!("{args:?}: no global heading\n{out}"));
        assert!(!own.contains("--master-key-file"), "{args:?}: {own}");
        assert!(global.contains("--master-key-file"));
        // Every flag line of the command's own options has a description after it.
        for line in own.lines().filter(|l| l.trim_start().starts_with("--")) {
            let words: Vec<&str> = line.split_whitespace().collect();
            assert!(
                words.len() >= 3 || words.iter().any(|w| w.starts_with('[')),
                "{args:?}: flag without help: {line}"
            );
        }
    }
}

#[tokio::test]
async fn human_output_of_backup_and_demo_is_not_json() {
    let dir = Backing::new();
    let data = dir.path().join("data");
    let (code, out, err) = run_cli(&data, &["demo", "--calls", "20"]);
    assert_eq!(code, 0, "{err}");
    assert!(serde_json::from_str::<Value>(out.trim()).is_err(), "{out}");
    assert!(out.contains("calls: 20") || out.contains("calls"), "{out}");
    let (code, out, _) = run_cli(&data, &["demo", "--calls", "20", "--json"]);
    assert_eq!(code, 0);
    assert!(serde_json::from_str::<Value>(out.trim()).is_ok(), "{out}");
}

#[tokio::test]
async fn exports_of_two_callers_get_different_file_names_without_the_number() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let mut names = Vec::new();
    for n in [81u16, 82] {
        app.ingest(account, full_call(n)).await;
        let number = uk_number(n);
        let response = app
            .client
            .get(app.url(&format!(
                "/api/v1/accounts/{account}/callers/{}/export",
                number.replace('+', "%2B")
            )))
            .bearer_auth(&app.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let disposition = response
            .headers()
            .get("content-disposition")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(!disposition.contains(&number[1..]), "{disposition}");
        assert!(disposition.contains(&account.to_string()), "{disposition}");
        names.push(disposition);
    }
    assert_ne!(names[0], names[1]);
}

#[tokio::test]
async fn swagger_ui_is_served_with_a_content_security_policy() {
    let app = TestApp::spawn().await;
    let response = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let csp = response
        .headers()
        .get("content-security-policy")
        .expect("a CSP")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        !csp.contains("script-src 'self' 'unsafe"),
        "no inline scripts: {csp}"
    );
}
