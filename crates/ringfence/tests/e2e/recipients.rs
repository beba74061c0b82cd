//! Recipients (GDPR Art. 19): registering them, signed deliveries through the durable
//! outbox, retries across a restart, cancellation of `call.created` on redaction, and
//! erasure notices that carry ids only. Deliveries go to a real HTTP receiver started here.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::routing::post;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use ringfence_core::AccountId;
use ringfence_core::access::Role;
use ringfence_core::recipients::RetryPolicy;
use ringfence_core::timestamp::Timestamp;
use ringfence_jobs::deliveries::{Deliverer, DeliveryReport, run_due};
use ringfence_jobs::outbound::AddressGuard;

use crate::common::*;

pub(crate) const SECRET: &str = "whsec_synthetic_0123456789abcdef";

/// What the receiver saw.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// Every request, in order: (headers we care about, raw body).
    requests: Vec<(BTreeMap<String, String>, Vec<u8>)>,
    /// Accepted deliveries per event id.
    accepted: BTreeMap<String, u32>,
    /// Requests whose signature did not verify.
    bad_signatures: u32,
    /// Requests still to fail with 503.
    fail_next: u32,
}

pub(crate) type Shared = Arc<Mutex<Seen>>;

/// The signature recipe as README documents it, implemented here from scratch:
/// hex(HMAC-SHA256(secret, t + "." + raw body)), header `t=<t>,v1=<hex>`.
fn recipe_ok(header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = Some(x.to_owned()),
            Some(("v1", x)) => v1 = Some(x.to_owned()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let Ok(ts) = t.parse::<i64>() else {
        return false;
    };
    if (Timestamp::now().millis() / 1000 - ts).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    expected == v1
}

async fn receive(State(seen): State<Shared>, headers: HeaderMap, body: Bytes) -> AxumStatus {
    let mut seen = seen.lock().unwrap();
    let pick = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let mut kept = BTreeMap::new();
    for name in [
        "ringfence-signature",
        "ringfence-event-id",
        "ringfence-event",
        "ringfence-delivery-id",
        "ringfence-attempt",
        "content-type",
    ] {
        kept.insert(name.to_owned(), pick(name));
    }
    seen.requests.push((kept, body.to_vec()));
    if !recipe_ok(&pick("ringfence-signature"), &body) {
        seen.bad_signatures += 1;
        return AxumStatus::UNAUTHORIZED;
    }
    if seen.fail_next > 0 {
        seen.fail_next -= 1;
        return AxumStatus::SERVICE_UNAVAILABLE;
    }
    *seen.accepted.entry(pick("ringfence-event-id")).or_default() += 1;
    AxumStatus::NO_CONTENT
}

/// Starts a receiver that fails its first `fail_first` requests; answers its URL.
pub(crate) async fn receiver(fail_first: u32) -> (String, Shared) {
    let seen: Shared = Arc::new(Mutex::new(Seen {
        fail_next: fail_first,
        ..Default::default()
    }));
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, seen)
}

pub(crate) fn deliverer(max_attempts: u32) -> Deliverer {
    let mut d = Deliverer::new(
        Duration::from_secs(5),
        ringfence_http::webhook_call_renderer(),
        AddressGuard {
            allow_loopback: true,
        },
    )
    .unwrap();
    d.policy = RetryPolicy {
        base: Duration::from_millis(20),
        max_delay: Duration::from_millis(40),
        max_attempts,
    };
    d
}

/// One pass of the outbox worker.
async fn pass(app: &TestApp, d: &Deliverer) -> DeliveryReport {
    run_due(&app.resources.log, d, Timestamp::now())
        .await
        .unwrap()
}

/// Passes until nothing is queued (or `max` passes), sleeping past each backoff.
pub(crate) async fn drain(app: &TestApp, d: &Deliverer, max: u32) {
    for _ in 0..max {
        let report = pass(app, d).await;
        let due_later = app
            .resources
            .log
            .store()
            .due_deliveries(Timestamp::from_millis(i64::MAX / 2), 1)
            .await
            .unwrap();
        if due_later.is_empty() && report.retried == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the outbox did not drain");
}

pub(crate) async fn register(
    app: &TestApp,
    account: AccountId,
    url: &str,
    events: &[&str],
) -> String {
    let (status, body) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/recipients"),
            json!({"name": "CRM", "url": url, "secret": SECRET, "events": events}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body.get("secret").is_none(), "the secret is never shown");
    body["id"].as_str().unwrap().to_owned()
}

async fn deliveries(app: &TestApp, account: AccountId, recipient: &str, query: &str) -> Vec<Value> {
    let (status, body) = app
        .get(
            &app.admin,
            &format!("/api/v1/accounts/{account}/recipients/{recipient}/deliveries{query}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"].as_array().unwrap().clone()
}

fn bodies_of(seen: &Shared, event: &str) -> Vec<Value> {
    let seen = seen.lock().unwrap();
    let mut out: Vec<Value> = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    for (headers, body) in &seen.requests {
        if headers["ringfence-event"] == event && ids.insert(headers["ringfence-event-id"].clone())
        {
            out.push(serde_json::from_slice(body).unwrap());
        }
    }
    out
}

#[tokio::test]
async fn a_receiver_failing_five_times_gets_each_event_once_even_across_a_restart() {
    let app = TestApp::spawn_with_local_relays().await;
    let (_, account) = app.tenant().await;
    let (url, seen) = receiver(5).await;
    let recipient = register(
        &app,
        account,
        &url,
        &[
            "call.created",
            "call.redacted",
            "caller.erased",
            "consent.withdrawn",
        ],
    )
    .await;
    let a = app.ingest(account, full_call(1)).await;
    let b = app.ingest(account, full_call(2)).await;
    let d = deliverer(10);

    // Two passes: four failed attempts so far (two events), nothing accepted.
    pass(&app, &d).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    pass(&app, &d).await;
    assert!(seen.lock().unwrap().accepted.is_empty());
    let queued = deliveries(&app, account, &recipient, "?state=queued").await;
    assert_eq!(queued.len(), 2, "{queued:?}");
    assert!(queued.iter().all(|q| q["last_error"] == "http_503"));

    // A restart: the outbox is in the database, nothing is lost.
    let app = app.restart().await;
    drain(&app, &d, 40).await;

    {
        let seen_now = seen.lock().unwrap();
        assert_eq!(seen_now.bad_signatures, 0, "every signature verifies");
        assert_eq!(seen_now.accepted.len(), 2, "{:?}", seen_now.accepted);
        assert!(
            seen_now.accepted.values().all(|n| *n == 1),
            "exactly once each"
        );
        assert_eq!(
            seen_now.requests.len(),
            7,
            "5 failures, then one success each"
        );
        // Every attempt of one event carries the same event id and body.
        let mut by_event: BTreeMap<String, Vec<&Vec<u8>>> = BTreeMap::new();
        for (headers, body) in &seen_now.requests {
            assert_eq!(headers["content-type"], "application/json");
            by_event
                .entry(headers["ringfence-event-id"].clone())
                .or_default()
                .push(body);
        }
        for bodies in by_event.values() {
            assert!(bodies.windows(2).all(|w| w[0] == w[1]));
        }
    }

    let created = bodies_of(&seen, "call.created");
    let mut ids: Vec<&str> = created
        .iter()
        .map(|e| e["data"]["id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut expected = vec![a.as_str(), b.as_str()];
    expected.sort();
    assert_eq!(ids, expected);
    for event in &created {
        assert_eq!(event["type"], "call.created");
        assert_eq!(event["account_id"], account.to_string());
        // A CRM receives the call as the API shows it, caller included.
        assert!(
            event["data"]["caller"]["number"]
                .as_str()
                .unwrap()
                .starts_with("+44207946")
        );
    }

    let delivered = deliveries(&app, account, &recipient, "?state=delivered").await;
    assert_eq!(delivered.len(), 2);
    let attempts: u32 = delivered
        .iter()
        .map(|d| d["attempts"].as_u64().unwrap() as u32)
        .sum();
    assert_eq!(attempts, 7);
    assert!(delivered.iter().all(|d| d["last_status"] == 204));
    // Nothing more goes out once delivered.
    assert_eq!(pass(&app, &d).await, DeliveryReport::default());
    app.stop().await;
}

fn digits(number: &str) -> String {
    number.chars().filter(char::is_ascii_digit).collect()
}

#[tokio::test]
async fn nothing_of_a_redacted_call_leaves_and_erasure_notices_carry_ids_only() {
    let app = TestApp::spawn_with_local_relays().await;
    let (_, account) = app.tenant().await;
    let (url, seen) = receiver(0).await;
    let recipient = register(
        &app,
        account,
        &url,
        &[
            "call.created",
            "call.redacted",
            "caller.erased",
            "consent.withdrawn",
        ],
    )
    .await;
    let number = uk_number(42);
    let mut of_caller = Vec::new();
    for n in 0..3u16 {
        let mut call = full_call(10 + n);
        call["caller_number"] = json!(number);
        of_caller.push(app.ingest(account, call).await);
    }
    let bystander = app.ingest(account, full_call(77)).await;

    // Before the worker runs: one call redacted, then the whole caller.
    let (status, _) = app
        .post(
            &app.admin,
            &format!("/api/v1/calls/{}/redact", of_caller[0]),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, receipt) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/callers/redact"),
            json!({"number": number}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    // A withdrawal by another caller.
    let (status, body) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/consents"),
            json!({"subject": {"caller_number": uk_number(77)}, "category": "transcript", "status": "withdrawn", "method": "verbal"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let consent_id = body["id"].as_str().unwrap().to_owned();

    let cancelled = deliveries(&app, account, &recipient, "?state=cancelled").await;
    let mut cancelled_calls: Vec<&str> = cancelled
        .iter()
        .map(|d| d["call_id"].as_str().unwrap())
        .collect();
    cancelled_calls.sort();
    let mut expected: Vec<&str> = of_caller.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(
        cancelled_calls, expected,
        "the redacted calls' call.created are cancelled"
    );
    assert!(
        cancelled
            .iter()
            .all(|d| d["last_error"] == "call_redacted" && d["attempts"] == 0)
    );

    app.resources.log.resume_redactions().await.unwrap();
    drain(&app, &deliverer(5), 20).await;

    // call.created: only the bystander's call left.
    let created = bodies_of(&seen, "call.created");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["data"]["id"], bystander);
    // Nothing sent carries the erased caller's number, in any spelling.
    {
        let seen = seen.lock().unwrap();
        for (_, body) in &seen.requests {
            let text = String::from_utf8_lossy(body);
            assert!(!text.contains(&digits(&number)), "{text}");
            assert!(!text.contains("7946 0042"), "{text}");
        }
    }
    let redacted = bodies_of(&seen, "call.redacted");
    let calls_of = |e: &Value| -> Vec<String> {
        e["data"]["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let manual: Vec<&Value> = redacted
        .iter()
        .filter(|e| e["data"]["reason"] == "manual")
        .collect();
    assert_eq!(manual.len(), 1);
    assert_eq!(calls_of(manual[0]), vec![of_caller[0].clone()]);
    assert_eq!(
        manual[0]["data"]["calls"][0]["external_id"],
        full_call(10)["external_id"]
    );
    let erased = bodies_of(&seen, "caller.erased");
    assert_eq!(erased.len(), 1);
    let mut erased_ids = calls_of(&erased[0]);
    erased_ids.sort();
    let mut rest: Vec<String> = of_caller[1..].to_vec();
    rest.sort();
    assert_eq!(erased_ids, rest);
    assert_eq!(erased[0]["data"]["reason"], "caller");
    assert!(erased[0]["data"]["at"].as_str().is_some());
    // Erasure notices hold ids, reason and time: no caller, no number fields at all.
    for event in redacted.iter().chain(&erased) {
        let data = event["data"].as_object().unwrap();
        for key in data.keys() {
            assert!(
                ["reason", "at", "calls", "categories", "part", "parts"].contains(&key.as_str()),
                "unexpected field {key}"
            );
        }
    }
    let withdrawn = bodies_of(&seen, "consent.withdrawn");
    assert_eq!(withdrawn.len(), 1);
    assert_eq!(withdrawn[0]["data"]["consent_id"], consent_id);
    assert_eq!(withdrawn[0]["data"]["category"], "transcript");
    assert_eq!(withdrawn[0]["data"]["subject_kind"], "caller");
    assert_eq!(calls_of(&withdrawn[0]), vec![bystander.clone()]);
    assert!(!withdrawn[0].to_string().contains(&digits(&uk_number(77))));
    // The withdrawal's removal of the transcript is told as a category redaction.
    let removal: Vec<&Value> = redacted
        .iter()
        .filter(|e| e["data"]["reason"] == "consent_withdrawn")
        .collect();
    assert_eq!(removal.len(), 1);
    assert_eq!(removal[0]["data"]["categories"], json!(["transcript"]));
    assert_eq!(calls_of(removal[0]), vec![bystander.clone()]);
    app.stop().await;
}

#[tokio::test]
async fn dropped_fields_never_leave_and_masked_recipients_get_no_personal_data() {
    let app = TestApp::spawn_with_local_relays().await;
    let (_, account) = app.tenant().await;
    // The account stops collecting transcripts and caller names.
    let (status, body) = app
        .send(
            reqwest::Method::PUT,
            &app.admin,
            &format!("/api/v1/accounts/{account}/settings"),
            Some(json!({"collection": {"transcription": false, "caller_name": false}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (url, seen) = receiver(0).await;
    register(&app, account, &url, &["call.created"]).await;
    let (status, body) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/recipients"),
            json!({"name": "BI", "url": url, "secret": SECRET, "events": ["call.created"], "personal_data": false}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["personal_data"], false);
    let id = app.ingest(account, full_call(5)).await;
    drain(&app, &deliverer(3), 10).await;
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.requests.len(), 2);
        let mut masked = 0;
        for (_, body) in &seen.requests {
            let text = String::from_utf8_lossy(body);
            assert!(text.contains(&id));
            assert!(!text.contains("Erika"), "a dropped name never leaves");
            assert!(
                !text.contains("a quote"),
                "a dropped transcript never leaves"
            );
            if !text.contains(&digits(&uk_number(5))) {
                masked += 1;
            }
        }
        assert_eq!(masked, 1, "the BI recipient gets the caller masked");
    }
    app.stop().await;
}

#[tokio::test]
async fn dead_letters_can_be_retried_and_removal_cancels_what_is_queued() {
    let app = TestApp::spawn_with_local_relays().await;
    let (_, account) = app.tenant().await;
    let (url, seen) = receiver(3).await;
    let recipient = register(&app, account, &url, &["call.created", "call.redacted"]).await;
    app.ingest(account, full_call(1)).await;
    let d = deliverer(2);
    drain(&app, &d, 10).await;
    let dead = deliveries(&app, account, &recipient, "?state=dead").await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["attempts"], 2);
    assert_eq!(dead[0]["last_status"], 503);
    let audit = all_audit(&app, 500).await;
    assert!(
        audit
            .iter()
            .any(|e| e["action"] == "delivery.dead_lettered" && e["subject"] == dead[0]["id"])
    );

    let retry = format!(
        "/api/v1/accounts/{account}/recipients/{recipient}/deliveries/{}/retry",
        dead[0]["id"].as_str().unwrap()
    );
    let (status, body) = app.post(&app.admin, &retry, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "queued");
    assert_eq!(body["attempts"], 0);
    // Only a dead delivery can be retried.
    let (status, body) = app.post(&app.admin, &retry, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    drain(&app, &d, 10).await;
    assert_eq!(seen.lock().unwrap().accepted.len(), 1);

    // Removing the recipient cancels what is queued for it and stops new events.
    app.ingest(account, full_call(2)).await;
    let (status, body) = app
        .send(
            reqwest::Method::DELETE,
            &app.admin,
            &format!("/api/v1/accounts/{account}/recipients/{recipient}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["removed_at"].is_string());
    app.ingest(account, full_call(3)).await;
    let all = deliveries(&app, account, &recipient, "").await;
    assert_eq!(all.len(), 2, "nothing is queued for a removed recipient");
    assert_eq!(all[0]["state"], "cancelled");
    assert_eq!(all[0]["last_error"], "recipient_removed");
    assert_eq!(pass(&app, &d).await, DeliveryReport::default());
    app.stop().await;
}

#[tokio::test]
async fn bad_recipients_wrong_roles_and_other_tenants_are_refused() {
    let app = TestApp::spawn_with_local_relays().await;
    let (agency, account) = app.tenant().await;
    let (other_agency, other) = app.tenant().await;
    let path = format!("/api/v1/accounts/{account}/recipients");
    let good = json!({"name": "CRM", "url": "https://crm.example.com/hook", "secret": SECRET, "events": ["caller.erased"]});
    for (change, field) in [
        (json!({"url": "http://crm.example.com/hook"}), "url"),
        (json!({"url": "https://user:pw@crm.example.com/"}), "url"),
        (json!({"url": "not a url"}), "url"),
        (json!({"secret": "short"}), "secret"),
        (json!({"events": []}), "events"),
        (json!({"events": ["call.deleted"]}), "events[0]"),
        (json!({"name": ""}), "name"),
    ] {
        let mut body = good.clone();
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, answer) = app.post(&app.admin, &path, body).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{change}: {answer}"
        );
        let details = answer["error"]["details"].to_string();
        assert!(details.contains(field), "{change}: {answer}");
        assert!(!answer.to_string().contains(SECRET));
    }
    let (status, answer) = app
        .post(&app.admin, &path, json!({"name": "x", "url": "https://a.example/", "secret": SECRET, "events": ["call.created"], "extra": 1}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["code"], "unknown_field");
    assert_eq!(
        app.resources
            .log
            .store()
            .recipients(account)
            .await
            .unwrap()
            .len(),
        0,
        "nothing half-stored"
    );

    let (status, created) = app.post(&app.admin, &path, good.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    let rid = created["id"].as_str().unwrap();
    // Roles: analysts and ingest tokens may not manage recipients.
    for role in [Role::Analyst, Role::Ingest] {
        let token = app.token(role, Some(agency), Some(account), true).await;
        let (status, _) = app.get(&token, &path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{role}");
        let (status, _) = app.post(&token, &path, good.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{role}");
    }
    // Another tenant's admin sees neither the account nor the recipient.
    let foreign = app
        .token(Role::AccountAdmin, Some(other_agency), Some(other), true)
        .await;
    let (status, _) = app.get(&foreign, &path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .get(
            &app.admin,
            &format!("/api/v1/accounts/{other}/recipients/{rid}/deliveries"),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a recipient of another account"
    );
    let (status, _) = app
        .get(
            &app.admin,
            &format!("/api/v1/accounts/{account}/recipients/not-an-id/deliveries"),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = app
        .get(
            &app.admin,
            &format!("/api/v1/accounts/{account}/recipients/{rid}/deliveries?state=lost"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_query");

    // Changing it: a rotated secret, fewer events.
    let (status, body) = app
        .send(
            reqwest::Method::PUT,
            &app.admin,
            &format!("{path}/{rid}"),
            Some(json!({"secret": "another_synthetic_secret_42", "events": ["call.redacted", "caller.erased"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["events"], json!(["call.redacted", "caller.erased"]));
    let (_, list) = app.get(&app.admin, &path).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains("synthetic_secret"));
    // The secret is sealed: not in the database file in the clear.
    app.resources.log.store().compact().await.unwrap();
    assert!(files_containing(&app.data_dir(), b"another_synthetic_secret_42").is_empty());
    assert!(files_containing(&app.data_dir(), SECRET.as_bytes()).is_empty());
    app.stop().await;
}

async fn recipients_item(app: &TestApp, account: AccountId) -> (String, String) {
    let (status, doc) = app
        .get(&app.admin, &format!("/api/v1/accounts/{account}/checklist"))
        .await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    let item = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "recipients")
        .unwrap()
        .clone();
    (
        item["status"].as_str().unwrap().to_owned(),
        item["explanation"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn the_checklist_follows_recipients_and_their_dead_letters() {
    let app = TestApp::spawn_with_local_relays().await;
    let (_, account) = app.tenant().await;
    assert_eq!(recipients_item(&app, account).await.0, "warn");
    // The receiver is down for one request: the one attempt an erasure notice gets here.
    let (url, seen) = receiver(1).await;
    let rid = register(&app, account, &url, &["call.created"]).await;
    let (status, says) = recipients_item(&app, account).await;
    assert_eq!(status, "warn");
    assert!(says.contains("no erasure"), "{says}");
    let (code, _) = app
        .send(
            reqwest::Method::PUT,
            &app.admin,
            &format!("/api/v1/accounts/{account}/recipients/{rid}"),
            Some(json!({"events": ["call.created", "call.redacted"]})),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(recipients_item(&app, account).await.0, "pass");

    // An erasure notice that never gets through fails the item.
    let id = app.ingest(account, full_call(3)).await;
    app.post(&app.admin, &format!("/api/v1/calls/{id}/redact"), json!({}))
        .await;
    drain(&app, &deliverer(1), 10).await;
    let (status, says) = recipients_item(&app, account).await;
    assert_eq!(status, "fail", "{says}");
    assert!(
        says.contains("1 erasure notices were dead-lettered"),
        "{says}"
    );
    // Retried once the receiver is back: the item passes again.
    let dead = deliveries(&app, account, &rid, "?state=dead").await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["event"], "call.redacted");
    let (code, _) = app
        .post(
            &app.admin,
            &format!(
                "/api/v1/accounts/{account}/recipients/{rid}/deliveries/{}/retry",
                dead[0]["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    drain(&app, &deliverer(1), 10).await;
    assert_eq!(recipients_item(&app, account).await.0, "pass");
    assert_eq!(seen.lock().unwrap().accepted.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn recipients_on_private_link_local_or_unique_local_addresses_are_refused() {
    let trap = Trap::start(TrapAnswer::Close).await;
    let p = trap.port;
    // The default: no local relays.
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let path = format!("/api/v1/accounts/{account}/recipients");
    let refused = [
        "https://10.0.0.1/hook".to_owned(),
        "https://172.16.0.1/hook".into(),
        "https://192.168.1.20/hook".into(),
        "https://169.254.169.254/latest/meta-data/".into(),
        "https://100.64.0.1/hook".into(),
        "https://0.0.0.0/hook".into(),
        "https://224.0.0.1/hook".into(),
        "https://[fd00::1]/hook".into(),
        "https://[fe80::1]/hook".into(),
        "https://[::ffff:10.0.0.1]/hook".into(),
        "https://[::ffff:127.0.0.1]/hook".into(),
        format!("https://127.0.0.1:{p}/hook"),
        format!("http://127.0.0.1:{p}/hook"),
        format!("http://[::1]:{p}/hook"),
        format!("http://localhost:{p}/hook"),
        "https://localhost/hook".into(),
    ];
    for url in &refused {
        let (status, answer) = app
            .post(
                &app.admin,
                &path,
                json!({"name": "CRM", "url": url, "secret": SECRET, "events": ["caller.erased"]}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {answer}");
        assert_eq!(answer["error"]["code"], "address_not_allowed", "{url}");
        assert_eq!(answer["error"]["details"][0]["field"], "url", "{url}");
    }
    assert!(
        app.resources
            .log
            .store()
            .recipients(account)
            .await
            .unwrap()
            .is_empty(),
        "nothing stored"
    );
    // Nor can a registered recipient be moved there.
    let id = register(
        &app,
        account,
        "https://crm.example.com/hook",
        &["caller.erased"],
    )
    .await;
    for url in &refused[..3] {
        let (status, answer) = app
            .send(
                reqwest::Method::PUT,
                &app.admin,
                &format!("{path}/{id}"),
                Some(json!({"url": url})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {answer}");
        assert_eq!(answer["error"]["code"], "address_not_allowed");
    }
    let (_, list) = app.get(&app.admin, &path).await;
    assert_eq!(list["items"][0]["url"], "https://crm.example.com/hook");
    // With local relays enabled, loopback is accepted; the other ranges stay refused.
    let relays = TestApp::spawn_with_local_relays().await;
    let (_, account) = relays.tenant().await;
    register(
        &relays,
        account,
        &format!("http://127.0.0.1:{p}/hook"),
        &["caller.erased"],
    )
    .await;
    for url in &refused[..10] {
        let (status, answer) = relays
            .post(
                &relays.admin,
                &format!("/api/v1/accounts/{account}/recipients"),
                json!({"name": "CRM", "url": url, "secret": SECRET, "events": ["caller.erased"]}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {answer}");
        assert_eq!(answer["error"]["code"], "address_not_allowed", "{url}");
    }
    assert_eq!(trap.connections(), 0, "registering connects to nothing");
}

#[tokio::test]
async fn a_delivery_without_an_http_answer_fails_the_same_way_whatever_listens() {
    let app = TestApp::spawn_with_local_relays().await;
    let (_, account) = app.tenant().await;
    let closed = closed_port().await;
    let refusing = Trap::start(TrapAnswer::Close).await;
    let silent = Trap::start(TrapAnswer::Silent).await;
    let garbage = Trap::start(TrapAnswer::Raw("SSH-2.0-OpenSSH_9.6\r\n".into())).await;
    let busy = Trap::start(TrapAnswer::Raw(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
    ))
    .await;
    let mut recipients = Vec::new();
    for port in [closed, refusing.port, silent.port, garbage.port, busy.port] {
        let url = format!("http://127.0.0.1:{port}/hook");
        recipients.push(register(&app, account, &url, &["call.created"]).await);
    }
    app.ingest(account, full_call(7)).await;
    let mut d = Deliverer::new(
        Duration::from_secs(1),
        ringfence_http::webhook_call_renderer(),
        AddressGuard {
            allow_loopback: true,
        },
    )
    .unwrap();
    d.policy.max_attempts = 5;
    assert_eq!(pass(&app, &d).await.retried, 5);
    let mut errors = Vec::new();
    for id in &recipients {
        let items = deliveries(&app, account, id, "").await;
        errors.push(items[0]["last_error"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        errors,
        [
            "unreachable",
            "unreachable",
            "unreachable",
            "unreachable",
            "http_503"
        ],
        "a closed port, a refusing, a silent and a non-HTTP listener look alike"
    );
    // Re-checked when sending: a worker without local relays connects to none of them.
    let seen = [
        refusing.connections(),
        silent.connections(),
        busy.connections(),
    ];
    let strict = Deliverer::new(
        Duration::from_secs(1),
        ringfence_http::webhook_call_renderer(),
        AddressGuard::default(),
    )
    .unwrap();
    let later = Timestamp::from_millis(Timestamp::now().millis() + 86_400_000);
    let report = run_due(&app.resources.log, &strict, later).await.unwrap();
    assert_eq!(report.retried, 5, "{report:?}");
    assert_eq!(
        [
            refusing.connections(),
            silent.connections(),
            busy.connections()
        ],
        seen,
        "no connection was made"
    );
    let items = deliveries(&app, account, &recipients[4], "").await;
    assert_eq!(items[0]["last_error"], "unreachable");
    assert_eq!(items[0]["attempts"], 2);
}
