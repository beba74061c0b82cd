//! Races between a decision and the writes it governs: a caller forgotten while calls from
//! them keep arriving through every ingest path.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;
use ringfence_core::AccountId;
use ringfence_crypto::twilio::twilio_signature;

const AUTH_TOKEN: &str = "rf-race-auth-token-0001";

/// One poster: calls from `number` through one ingest path until `stop`, counting what was
/// acknowledged.
async fn post_until(
    address: String,
    token: String,
    account: AccountId,
    number: String,
    path: &'static str,
    client_no: u32,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicU32>,
) {
    let client = reqwest::Client::new();
    let mut n = 0u32;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let external = format!("race-{client_no}-{n}");
        let mut call = full_call(7);
        call["caller_number"] = json!(number);
        call["external_id"] = json!(external);
        let status = match path {
            "single" => client
                .post(format!("{address}/api/v1/accounts/{account}/calls"))
                .bearer_auth(&token)
                .json(&call)
                .send()
                .await
                .unwrap()
                .status(),
            "batch" => {
                let mut second = call.clone();
                second["external_id"] = json!(format!("{external}-b"));
                client
                    .post(format!("{address}/api/v1/accounts/{account}/calls/batch"))
                    .bearer_auth(&token)
                    .json(&json!({"calls": [call, second]}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
            _ => {
                let url = format!("{address}/webhooks/twilio/{account}/voice");
                let params: Vec<(String, String)> = [
                    (
                        "AccountSid",
                        "AC0123456789abcdef0123456789abcdef".to_owned(),
                    ),
                    ("CallSid", format!("CA{client_no:08x}{n:024x}")),
                    ("CallStatus", "completed".to_owned()),
                    ("Direction", "inbound".to_owned()),
                    ("From", number.clone()),
                    ("To", us_number(1)),
                    ("CallerName", "Race Caller".to_owned()),
                    ("FromCity", "London".to_owned()),
                    ("CallDuration", "30".to_owned()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
                let signature = twilio_signature(AUTH_TOKEN.as_bytes(), &url, &params);
                client
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("x-twilio-signature", signature)
                    .body(serde_urlencoded::to_string(&params).unwrap())
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
        };
        assert!(status.is_success(), "{path} answered {status}");
        acknowledged.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every call of the account, all pages.
async fn every_call(app: &TestApp, account: AccountId) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/accounts/{account}/calls?limit=500&cursor={c}"),
            None => format!("/api/v1/accounts/{account}/calls?limit=500"),
        };
        let (status, page) = app.get(&app.admin, &path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forgotten_caller_keeps_no_call_that_arrived_while_the_forget_ran() {
    let app = TestApp::spawn().await;
    let agency = app.agency(true).await;
    let mut unredacted_total = 0usize;
    let mut arrived_during = 0u32;
    for round in 0..10u16 {
        let account = app.account(agency).await;
        let (status, body) = app
            .send(
                reqwest::Method::PUT,
                &app.admin,
                &format!("/api/v1/accounts/{account}/settings"),
                Some(json!({"telephony": {"twilio_auth_token": AUTH_TOKEN}})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let number = uk_number(300 + round);
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicU32::new(0));
        let posters: Vec<_> = ["single", "batch", "twilio", "single"]
            .into_iter()
            .enumerate()
            .map(|(i, path)| {
                tokio::spawn(post_until(
                    app.address.clone(),
                    app.admin.clone(),
                    account,
                    number.clone(),
                    path,
                    i as u32,
                    stop.clone(),
                    acknowledged.clone(),
                ))
            })
            .collect();
        // Let calls flow, then forget the caller while they keep coming.
        while acknowledged.load(Ordering::Relaxed) < 40 {
            tokio::task::yield_now().await;
        }
        let before = acknowledged.load(Ordering::Relaxed);
        let (status, receipt) = app
            .post(
                &app.admin,
                &format!("/api/v1/accounts/{account}/callers/redact"),
                json!({"number": number, "forget": true}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{receipt}");
        arrived_during += acknowledged.load(Ordering::Relaxed) - before;
        // And some more after it.
        let after = acknowledged.load(Ordering::Relaxed);
        while acknowledged.load(Ordering::Relaxed) < after + 20 {
            tokio::task::yield_now().await;
        }
        stop.store(true, Ordering::Relaxed);
        for poster in posters {
            poster.await.unwrap();
        }
        let calls = every_call(&app, account).await;
        assert!(calls.len() >= 60, "round {round}: {} calls", calls.len());
        let unredacted: Vec<&Value> = calls.iter().filter(|c| c["redaction"].is_null()).collect();
        unredacted_total += unredacted.len();
        // Nor does the number find any of them.
        let (_, found) = app
            .get(
                &app.admin,
                &format!(
                    "/api/v1/accounts/{account}/calls?caller_number={}",
                    number.replace('+', "%2B")
                ),
            )
            .await;
        assert_eq!(found["items"], json!([]), "round {round}");
    }
    assert!(
        arrived_during > 0,
        "no call arrived while a forget ran: the test proves nothing"
    );
    assert_eq!(unredacted_total, 0, "calls of a forgotten caller kept");
}
