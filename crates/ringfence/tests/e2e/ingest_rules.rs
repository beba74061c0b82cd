//! What an ingest may answer and accept: a re-delivery tells an ingest token nothing, start
//! times cannot escape retention by lying in the future, and a later telephony status
//! keeps the fields it leaves out.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;
use ringfence_core::access::Role;
use ringfence_core::timestamp::Timestamp;
use ringfence_crypto::twilio::twilio_signature;

const AUTH_TOKEN: &str = "rf-ingest-rules-token-01";

#[tokio::test]
async fn a_re_delivery_answers_an_ingest_token_with_the_id_and_nothing_personal() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let ingest = app
        .token(Role::Ingest, Some(agency), Some(account), true)
        .await;
    let path = format!("/api/v1/accounts/{account}/calls");
    // Stored by another system (the admin), then re-posted by someone holding only an
    // ingest token and a guessed external id.
    let id = app.ingest(account, full_call(21)).await;
    let mut guess = json!({"external_id": full_call(21)["external_id"], "started_at": "2026-11-28T10:00:00Z", "tracking_number": us_number(21)});
    let (status, answer) = app.post(&ingest, &path, guess.clone()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"id": id, "status": "already_stored"}));
    let text = answer.to_string();
    for personal in [
        "Erika",
        "London",
        "EC1A",
        "203.0.113",
        "EAIaIQ",
        "quote",
        "call back",
        &uk_number(21),
    ] {
        assert!(!text.contains(personal), "{personal} in {text}");
    }
    // A reader still gets the stored call.
    guess["external_id"] = full_call(21)["external_id"].clone();
    let (status, full) = app.post(&app.admin, &path, guess).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(full["caller"]["name"], "Erika Mustermann");
}

#[tokio::test]
async fn calls_and_visits_dated_ahead_of_the_clock_are_refused() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let far = json!({"started_at": "9999-12-31T00:00:00Z", "tracking_number": us_number(3)});
    let soon = Timestamp::from_millis(Timestamp::now().millis() + 60 * 60 * 1000).to_rfc3339();
    let within_skew = Timestamp::from_millis(Timestamp::now().millis() + 60 * 1000).to_rfc3339();
    for (path, body) in [
        (format!("/api/v1/accounts/{account}/calls"), far.clone()),
        (
            format!("/api/v1/accounts/{account}/calls"),
            json!({"started_at": soon, "tracking_number": us_number(3)}),
        ),
        (
            format!("/api/v1/accounts/{account}/calls/batch"),
            json!({"calls": [{"started_at": "2026-11-28T10:00:00Z", "tracking_number": us_number(3)}, far]}),
        ),
        (
            format!("/api/v1/accounts/{account}/sessions"),
            json!({"started_at": soon}),
        ),
    ] {
        let (status, body) = app.post(&app.admin, &path, body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {body}");
        assert_eq!(body["error"]["code"], "start_in_future", "{body}");
    }
    // Nothing of the refused batch was stored; a clock a minute fast is fine.
    let (_, list) = app
        .get(&app.admin, &format!("/api/v1/accounts/{account}/calls"))
        .await;
    assert_eq!(list["items"], json!([]));
    let before = Timestamp::now();
    let (status, stored) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/calls"),
            json!({"started_at": within_skew, "tracking_number": us_number(3)}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // Kept as its arrival: retention counts from the earlier of start and arrival.
    let kept = Timestamp::parse_rfc3339(stored["started_at"].as_str().unwrap()).unwrap();
    assert!(
        kept >= before && kept <= Timestamp::now(),
        "{stored}: started at its arrival, not a minute later"
    );
}

async fn set_twilio_token(app: &TestApp, account: ringfence_core::AccountId) {
    let (status, body) = app
        .send(
            reqwest::Method::PUT,
            &app.admin,
            &format!("/api/v1/accounts/{account}/settings"),
            Some(json!({"telephony": {"twilio_auth_token": AUTH_TOKEN}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn voice(
    app: &TestApp,
    account: ringfence_core::AccountId,
    params: &[(&str, &str)],
) -> (StatusCode, String) {
    let url = app.url(&format!("/webhooks/twilio/{account}/voice"));
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let response = app
        .client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "x-twilio-signature",
            twilio_signature(AUTH_TOKEN.as_bytes(), &url, &params),
        )
        .body(serde_urlencoded::to_string(&params).unwrap())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn a_twilio_callback_dated_ahead_of_the_clock_is_refused() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    set_twilio_token(&app, account).await;
    let to = us_number(4);
    let (status, body) = voice(
        &app,
        account,
        &[
            ("CallSid", "CA00000000000000000000000000000f01"),
            ("CallStatus", "completed"),
            ("Direction", "inbound"),
            ("To", &to),
            ("Timestamp", "Fri, 31 Dec 9999 00:00:00 +0000"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("start_in_future"), "{body}");
}

#[tokio::test]
async fn a_later_status_callback_without_the_caller_name_keeps_the_stored_name() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    set_twilio_token(&app, account).await;
    let (from, to) = (uk_number(61), us_number(5));
    let sid = "CA00000000000000000000000000000e01";
    let (status, _) = voice(
        &app,
        account,
        &[
            ("CallSid", sid),
            ("CallStatus", "ringing"),
            ("Direction", "inbound"),
            ("From", &from),
            ("To", &to),
            ("CallerName", "Test Caller"),
            ("FromCity", "London"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // Completed, without CallerName and with a postcode the first one lacked.
    let (status, _) = voice(
        &app,
        account,
        &[
            ("CallSid", sid),
            ("CallStatus", "completed"),
            ("Direction", "inbound"),
            ("From", &from),
            ("To", &to),
            ("FromZip", "EC1A 1BB"),
            ("CallDuration", "42"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, list) = app
        .get(&app.admin, &format!("/api/v1/accounts/{account}/calls"))
        .await;
    let calls: &Vec<Value> = list["items"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call["status"], "completed");
    assert_eq!(call["caller"]["name"], "Test Caller", "{call}");
    assert_eq!(call["caller"]["city"], "London", "{call}");
    assert_eq!(call["caller"]["postal_code"], "EC1A 1BB", "{call}");
    assert_eq!(call["caller"]["number"], from);
}

#[tokio::test]
async fn a_truncated_ip_is_named_in_the_ingest_answer() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let (status, body) = app
        .send(
            reqwest::Method::PUT,
            &app.admin,
            &format!("/api/v1/accounts/{account}/settings"),
            Some(json!({"collection": {"visitor_ip": "truncate"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, answer) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/calls"),
            full_call(71),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["dropped"], json!(["visitor.ip:truncated"]));
    assert_eq!(answer["visitor"]["ip"], "203.0.113.0");
}
