//! Ingest and read back calls through the API.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;
use ringfence_core::access::Role;

#[tokio::test]
async fn a_call_reads_back_exactly_as_it_was_sent() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let (status, created) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/calls"),
            full_call(1),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let mut created = created;
    // The ingest answer also says what was dropped: nothing, when the account collects it all.
    assert_eq!(
        created.as_object_mut().unwrap().remove("dropped"),
        Some(json!([]))
    );
    let id = created["id"].as_str().unwrap();
    let (status, call) = app.get(&app.admin, &format!("/api/v1/calls/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(call, created);
    assert_eq!(call["account_id"], account.to_string());
    assert_eq!(call["external_id"], format!("CA{:032}", 1));
    assert_eq!(call["started_at"], "2026-11-28T10:00:00Z");
    assert_eq!(call["duration_s"], 95);
    assert_eq!(call["direction"], "inbound");
    assert_eq!(call["status"], "completed");
    assert_eq!(call["tracking_number"], us_number(1));
    assert_eq!(call["source"], "google_ads");
    assert_eq!(call["campaign"], "winter-sale");
    assert_eq!(
        call["utm"],
        json!({"source": "google", "medium": "cpc", "campaign": "winter"})
    );
    assert_eq!(call["gdpr_scope"], true);
    assert_eq!(
        call["caller"],
        json!({"number": uk_number(1), "name": "Erika Mustermann", "forwarded_from": null, "city": "London", "region": "ENG", "postal_code": "EC1A 1BB", "country": "GB"})
    );
    assert_eq!(call["recording"], Value::Null);
    assert_eq!(call["transcript"], "Hello, I would like a quote.");
    assert_eq!(call["notes"], "call back tomorrow");
    assert_eq!(call["tags"], json!(["lead"]));
    let visitor = &call["visitor"];
    assert!(
        visitor["session_id"]
            .as_str()
            .is_some_and(|s| s.len() == 36),
        "{visitor}"
    );
    assert_eq!(visitor["ip"], "203.0.113.7");
    assert_eq!(visitor["user_agent"], "Mozilla/5.0 (X11; Linux x86_64)");
    assert_eq!(visitor["referrer"], "https://search.example/");
    assert_eq!(visitor["landing_url"], "https://shop.example/winter");
    assert_eq!(visitor["gclid"], "EAIaIQobChMI");
    assert_eq!(call["redaction"], Value::Null);
}

#[tokio::test]
async fn a_minimal_call_needs_only_start_and_tracking_number() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let (status, call) = app
        .post(&app.admin, &format!("/api/v1/accounts/{account}/calls"), json!({"started_at": "2026-11-28T10:00:00+01:00", "tracking_number": "+1 (415) 555-0100"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{call}");
    assert_eq!(call["started_at"], "2026-11-28T09:00:00Z");
    assert_eq!(call["tracking_number"], "+14155550100");
    assert_eq!(call["caller"]["number"], Value::Null);
    assert_eq!(call["gdpr_scope"], Value::Null);
    assert_eq!(call["visitor"], Value::Null);
    assert_eq!(call["tags"], json!([]));
}

#[tokio::test]
async fn withheld_callers_are_valid_calls_without_a_number() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    for withheld in ["anonymous", "", "+266696687", "Restricted"] {
        let mut call = full_call(2);
        call["external_id"] = json!(format!("withheld-{withheld}"));
        call["caller_number"] = json!(withheld);
        let (status, body) = app
            .post(
                &app.admin,
                &format!("/api/v1/accounts/{account}/calls"),
                call,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{withheld}: {body}");
        assert_eq!(body["caller"]["number"], Value::Null, "{withheld}");
        assert_eq!(body["gdpr_scope"], Value::Null, "{withheld}");
    }
}

#[tokio::test]
async fn gdpr_scope_follows_the_callers_region() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    for (n, number, in_scope) in [
        (1u16, uk_number(3), true),
        (2, us_number(3), false),
        (3, "+353 85 012 3456".to_owned(), true),
        (4, "+262 262 16 12 34".to_owned(), true),
        (5, "+298 301234".to_owned(), false),
    ] {
        let mut call = full_call(n);
        call["caller_number"] = json!(number);
        let (status, body) = app
            .post(
                &app.admin,
                &format!("/api/v1/accounts/{account}/calls"),
                call,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{number}: {body}");
        assert_eq!(body["gdpr_scope"], json!(in_scope), "{number}");
    }
}

#[tokio::test]
async fn redelivering_a_call_stores_it_once() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let path = format!("/api/v1/accounts/{account}/calls");
    let (first_status, first) = app.post(&app.admin, &path, full_call(7)).await;
    let mut changed = full_call(7);
    changed["notes"] = json!("a different body with the same external id");
    let (second_status, second) = app.post(&app.admin, &path, changed).await;
    assert_eq!(first_status, StatusCode::CREATED);
    assert_eq!(second_status, StatusCode::OK);
    assert_eq!(first, second, "the stored call is returned unchanged");
    let (_, list) = app.get(&app.admin, &path).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    // Concurrent duplicates converge on one call too.
    let mut handles = Vec::new();
    for _ in 0..8 {
        let client = app.client.clone();
        let url = app.url(&path);
        let token = app.admin.clone();
        handles.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&full_call(8))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }));
    }
    let mut ids = Vec::new();
    for h in handles {
        ids.push(h.await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let (_, list) = app.get(&app.admin, &path).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_batch_is_stored_whole_with_ids_in_input_order() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let calls: Vec<Value> = (0..50).map(full_call).collect();
    let (status, body) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/calls/batch"),
            json!({"calls": calls}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["created"], 50);
    let ids = body["ids"].as_array().unwrap();
    assert_eq!(ids.len(), 50);
    for (i, id) in ids.iter().enumerate().step_by(7) {
        let (_, call) = app
            .get(
                &app.admin,
                &format!("/api/v1/calls/{}", id.as_str().unwrap()),
            )
            .await;
        assert_eq!(call["external_id"], format!("CA{i:032}"));
        assert_eq!(call["caller"]["number"], uk_number(i as u16));
    }
    // The same batch again stores nothing and returns the same ids.
    let calls: Vec<Value> = (0..50).map(full_call).collect();
    let (status, again) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/calls/batch"),
            json!({"calls": calls}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["ids"], body["ids"]);
    assert_eq!(again["created"], 0);
}

#[tokio::test]
async fn an_invalid_call_rejects_its_whole_batch_and_names_each_problem() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let mut calls: Vec<Value> = (0..10).map(full_call).collect();
    calls[3]["caller_number"] = json!("+12");
    calls[7]["started_at"] = json!("yesterday");
    let (status, body) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/calls/batch"),
            json!({"calls": calls}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_phone_number");
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["calls[3].caller_number", "calls[7].started_at"]);
    let (_, list) = app
        .get(&app.admin, &format!("/api/v1/accounts/{account}/calls"))
        .await;
    assert_eq!(list["items"], json!([]), "nothing stored");
    // Two calls with one external id in one batch: a sender's bug, nothing stored.
    let calls = vec![full_call(1), full_call(1)];
    let (status, body) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/calls/batch"),
            json!({"calls": calls}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "duplicate_external_id");
    let (_, list) = app
        .get(&app.admin, &format!("/api/v1/accounts/{account}/calls"))
        .await;
    assert_eq!(list["items"], json!([]), "nothing stored");
}

/// Each bad input: the status and code expected, and nothing stored.
#[tokio::test]
async fn bad_inputs_get_a_clear_4xx_with_a_stable_code_and_store_nothing() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let path = format!("/api/v1/accounts/{account}/calls");
    let with = |key: &str, value: Value| {
        let mut c = full_call(9);
        c[key] = value;
        c.to_string()
    };
    let without = |key: &str| {
        let mut c = full_call(9);
        c.as_object_mut().unwrap().remove(key);
        c.to_string()
    };
    let huge = "x".repeat(3 << 20);
    let cases: Vec<(&str, String, &str, StatusCode, &str)> = vec![
        (
            "malformed json",
            "{\"started_at\": ".into(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "not an object",
            "[1, 2]".into(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            "wrong content type",
            full_call(9).to_string(),
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "invalid caller number",
            with("caller_number", json!("+12")),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_phone_number",
        ),
        (
            "letters in a number",
            with("caller_number", json!("call me")),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_phone_number",
        ),
        (
            "invalid tracking number",
            with("tracking_number", json!("0207 946 0000")),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_phone_number",
        ),
        (
            "missing tracking number",
            without("tracking_number"),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_field",
        ),
        (
            "missing start",
            without("started_at"),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_field",
        ),
        (
            "wrong type",
            with("duration_s", json!("ninety")),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            "negative duration",
            with("duration_s", json!(-1)),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            "absurd duration",
            with("duration_s", json!(100_000_000)),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            "unknown field",
            with("caler_number", json!("+442079460000")),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_field",
        ),
        (
            "unknown status",
            with("status", json!("exploded")),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            "bad date",
            with("started_at", json!("28/11/2026")),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            "bad ip",
            with("visitor", json!({"ip": "999.1.1.1"})),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            "bad country",
            with("caller_country", json!("Germany")),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            "unknown session",
            with("session_id", json!("0190c0a0-c0a0-7000-8000-000000000000")),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            "control characters",
            with("caller_name", json!("Erika\u{0}")),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            "too many tags",
            with("tags", json!(vec!["t"; 51])),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_long",
        ),
        (
            "oversized body",
            with("transcript", json!(huge)),
            "application/json",
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (name, body, content_type, status, code) in cases {
        let response = app
            .client
            .post(app.url(&path))
            .bearer_auth(&app.admin)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let got = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(got, status, "{name}: {value}");
        assert_eq!(value["error"]["code"], code, "{name}: {value}");
        let message = value["error"]["message"].as_str().unwrap_or("");
        assert!(
            !message.contains("7946") && !message.contains("Erika"),
            "{name}: the error repeats personal data: {message}"
        );
    }
    let (_, list) = app.get(&app.admin, &path).await;
    assert_eq!(list["items"], json!([]), "nothing stored");
    // Unknown and foreign accounts.
    let (status, body) = app
        .post(
            &app.admin,
            "/api/v1/accounts/0190c0a0-c0a0-7000-8000-000000000000/calls",
            full_call(1),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, _) = app
        .post(&app.admin, "/api/v1/accounts/not-an-id/calls", full_call(1))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = app.send(Method::DELETE, &app.admin, &path, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
}

async fn ingest_series(app: &TestApp, account: ringfence_core::AccountId) -> Vec<String> {
    // 30 calls, one a day going back, alternating sources, statuses and callers.
    let calls: Vec<Value> = (0..30u16)
        .map(|i| {
            let mut c = full_call(i);
            c["started_at"] = json!(format!("2026-10-{:02}T12:00:00Z", i + 1));
            c["source"] = json!(if i % 3 == 0 {
                "facebook_ads"
            } else {
                "google_ads"
            });
            c["status"] = json!(if i % 5 == 0 { "no-answer" } else { "completed" });
            c["tracking_number"] = json!(us_number(i % 2));
            c["caller_number"] = json!(uk_number(i % 4));
            c
        })
        .collect();
    let (status, body) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/calls/batch"),
            json!({"calls": calls}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_log_lists_newest_first_with_stable_cursors() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    ingest_series(&app, account).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/accounts/{account}/calls?limit=7&cursor={c}"),
            None => format!("/api/v1/accounts/{account}/calls?limit=7"),
        };
        let (status, page) = app.get(&app.admin, &path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for item in page["items"].as_array().unwrap() {
            seen.push(item["started_at"].as_str().unwrap().to_owned());
        }
        // A call ingested mid-way that sorts first does not disturb the pages after.
        if cursor.is_none() {
            app.ingest(
                account,
                json!({"started_at": "2026-12-01T00:00:00Z", "tracking_number": us_number(0)}),
            )
            .await;
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 30);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "newest first");
}

#[tokio::test]
async fn filters_narrow_the_log() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    ingest_series(&app, account).await;
    let count = |q: String| {
        let app = &app;
        async move {
            let (status, page) = app
                .get(
                    &app.admin,
                    &format!("/api/v1/accounts/{account}/calls?limit=500&{q}"),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{q}: {page}");
            page["items"].as_array().unwrap().len()
        }
    };
    assert_eq!(count("source=facebook_ads".into()).await, 10);
    assert_eq!(count("status=no-answer".into()).await, 6);
    assert_eq!(
        count(format!(
            "tracking_number={}",
            us_number(1).replace('+', "%2B")
        ))
        .await,
        15
    );
    assert_eq!(
        count(format!(
            "caller_number={}",
            uk_number(2).replace('+', "%2B")
        ))
        .await,
        7
    );
    assert_eq!(count("caller_number=%2B442079469999".into()).await, 0);
    assert_eq!(
        count("from=2026-10-10T00:00:00Z&to=2026-10-20T00:00:00Z".into()).await,
        10
    );
    assert_eq!(count("redacted=false".into()).await, 30);
    assert_eq!(count("redacted=true".into()).await, 0);
    assert_eq!(count("source=google_ads&status=no-answer".into()).await, 4);
    for (q, code) in [
        ("limit=0", "invalid_query"),
        ("limit=501", "invalid_query"),
        ("status=exploded", "invalid_query"),
        ("redacted=maybe", "invalid_query"),
        ("from=last-week", "invalid_query"),
        ("colour=red", "invalid_query"),
        ("cursor=garbage", "invalid_cursor"),
        ("caller_number=12", "invalid_phone_number"),
        ("source=a&source=b", "invalid_query"),
    ] {
        let (status, body) = app
            .get(&app.admin, &format!("/api/v1/accounts/{account}/calls?{q}"))
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{q}: {body}"
        );
    }
}

#[tokio::test]
async fn sessions_are_stored_once_and_link_to_calls() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let session = json!({"external_id": "visit-1", "started_at": "2026-11-28T09:55:00Z", "ip": "2001:db8::7", "user_agent": "Mozilla/5.0",
                         "landing_url": "https://shop.example/", "msclkid": "m-1", "utm_source": "bing"});
    let (status, first) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/sessions"),
            session.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/sessions"),
            session,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["id"], again["id"]);
    let mut call = full_call(3);
    call.as_object_mut().unwrap().remove("visitor");
    call["session_id"] = first["id"].clone();
    let (status, call) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/calls"),
            call,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{call}");
    assert_eq!(call["visitor"]["session_id"], first["id"]);
    assert_eq!(call["visitor"]["ip"], "2001:db8::7");
    assert_eq!(call["visitor"]["msclkid"], "m-1");
    // A session of another account cannot be linked.
    let (_, other) = app.tenant().await;
    let mut foreign = full_call(4);
    foreign.as_object_mut().unwrap().remove("visitor");
    foreign["session_id"] = first["id"].clone();
    let (status, body) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{other}/calls"),
            foreign,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test]
async fn analysts_without_personal_data_see_masked_numbers_only() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let id = app.ingest(account, full_call(5)).await;
    let analyst = app
        .token(Role::Analyst, Some(agency), Some(account), false)
        .await;
    let (status, call) = app.get(&analyst, &format!("/api/v1/calls/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let masked = call["caller"]["number"].as_str().unwrap();
    assert!(
        masked.starts_with("+44") && masked.ends_with("05") && !masked.contains("7946"),
        "{masked}"
    );
    assert_eq!(call["caller"]["name"], Value::Null);
    assert_eq!(call["transcript"], Value::Null);
    assert_eq!(call["visitor"], Value::Null);
    assert_eq!(call["masked"], true);
    assert_eq!(call["source"], "google_ads", "call facts stay visible");
}

#[tokio::test]
async fn health_readiness_metrics_and_the_openapi_document_are_served() {
    let app = TestApp::spawn().await;
    let get = |path: &'static str| app.client.get(app.url(path)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), StatusCode::OK);
    assert_eq!(get("/readyz").await.unwrap().status(), StatusCode::OK);
    let (_, account) = app.tenant().await;
    app.ingest(account, full_call(1)).await;
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(metrics.contains("http_requests_total"), "{metrics}");
    // No phone number in a metric's name or labels. (Only there: a sample's value, such as
    // a sum of durations, may contain any digits, and so may an id in a label.)
    let number = full_call(1)["caller_number"].as_str().unwrap().to_owned();
    assert!(number.contains("7946"), "{number}");
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let series = line.rsplit_once(' ').map_or(line, |(series, _)| series);
        assert!(
            !series.contains(&number[1..]) && !series.contains("2079460"),
            "metrics carry no numbers: {series}"
        );
    }
    let doc: Value = get("/openapi.json").await.unwrap().json().await.unwrap();
    for path in [
        "/api/v1/accounts/{account_id}/calls",
        "/api/v1/accounts/{account_id}/calls/batch",
        "/api/v1/calls/{call_id}",
        "/api/v1/calls/{call_id}/recording",
        "/api/v1/accounts/{account_id}/sessions",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    let docs = get("/docs/").await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(
        docs.text().await.unwrap().contains("swagger"),
        "Swagger UI is served from the binary"
    );
}
