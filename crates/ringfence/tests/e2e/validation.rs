//! What the API refuses at its edge: bodies of the wrong shape, page sizes out of range,
//! oversized headers. Each is a 4xx with a stable code, and nothing changes.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::TestApp;

async fn put(app: &TestApp, path: &str, body: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .put(app.url(path))
        .bearer_auth(&app.admin)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_settings_body_that_is_an_array_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let agency_path = format!("/api/v1/agencies/{agency}/settings");
    let (status, body) = put(&app, &agency_path, r#"{"max_retention_days": 365}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, before) = app.get(&app.admin, &agency_path).await;
    assert_eq!(before["redaction_enabled"], true, "{before}");

    // Serde fills a struct from an array of its fields in order: these cleared the ceiling
    // and turned redaction off.
    for array in ["[null, null]", "[false]", " [false, 30]", "[]"] {
        let (status, body) = put(&app, &agency_path, array).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{array}: {body}");
        assert_eq!(body["error"]["code"], "invalid_field", "{array}: {body}");
        assert_eq!(body["error"]["details"][0]["field"], "body", "{array}");
    }
    let (_, after) = app.get(&app.admin, &agency_path).await;
    assert_eq!(after, before, "nothing of the refused bodies was applied");

    let account_path = format!("/api/v1/accounts/{account}/settings");
    let (_, before) = app.get(&app.admin, &account_path).await;
    let (status, body) = put(&app, &account_path, "[null, null, null, null]").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_field");
    let (_, after) = app.get(&app.admin, &account_path).await;
    assert_eq!(after, before);

    // Every other JSON body is an object too.
    let (status, body) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/calls"),
            json!([
                "2026-11-28T10:00:00Z",
                null,
                null,
                null,
                null,
                "+14155550100"
            ]),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "body");
}

#[tokio::test]
async fn every_list_refuses_a_limit_outside_1_to_500_and_none_clamps_it() {
    // The recipient is a local relay.
    let app = TestApp::spawn_with_local_relays().await;
    let (_, account) = app.tenant().await;
    let (status, recipient) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/recipients"),
            json!({"name": "CRM", "url": "http://127.0.0.1:9/hook",
                   "secret": "a-long-enough-test-secret", "events": ["call.created"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{recipient}");
    let recipient = recipient["id"].as_str().unwrap();
    let lists = [
        format!("/api/v1/accounts/{account}/calls"),
        format!("/api/v1/accounts/{account}/consents"),
        format!("/api/v1/accounts/{account}/recipients/{recipient}/deliveries"),
        "/api/v1/audit".to_owned(),
    ];
    for list in &lists {
        for limit in ["2147483648", "4294967296", "0", "501", "-1", "ten"] {
            let (status, body) = app.get(&app.admin, &format!("{list}?limit={limit}")).await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{list}?limit={limit}: {body}"
            );
            assert_eq!(body["error"]["code"], "invalid_query", "{list}: {body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("1 to 500"),
                "{list}: {body}"
            );
        }
        for limit in ["1", "500"] {
            let (status, body) = app.get(&app.admin, &format!("{list}?limit={limit}")).await;
            assert_eq!(status, StatusCode::OK, "{list}?limit={limit}: {body}");
        }
    }
}

#[tokio::test]
async fn a_request_with_200_kb_of_headers_is_answered_431() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let path = format!("/api/v1/accounts/{account}/calls");
    let response = app
        .client
        .get(app.url(&path))
        .bearer_auth(&app.admin)
        .header("x-padding", "a".repeat(200 << 10))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "headers_too_large", "{body}");
    // Spread over many headers, the total counts.
    let mut request = app.client.get(app.url(&path)).bearer_auth(&app.admin);
    for i in 0..50 {
        request = request.header(format!("x-padding-{i}"), "b".repeat(1 << 10));
    }
    let response = request.send().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    // Ordinary headers pass.
    let (status, _) = app.get(&app.admin, &path).await;
    assert_eq!(status, StatusCode::OK);
}
