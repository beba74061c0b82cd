//! Consent per type of data and collecting only what is needed: collection settings, the
//! consent ledger and its notices, enforcement at ingest, withdrawal, scope from the visit.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;
use ringfence_core::AccountId;
use ringfence_core::access::Role;
use ringfence_core::collection::CollectionSettings;

/// Puts `collection` (any subset) on the account; returns the whole settings document.
async fn set_collection(app: &TestApp, account: AccountId, collection: Value) -> Value {
    let (status, body) = app
        .send(
            reqwest::Method::PUT,
            &app.admin,
            &format!("/api/v1/accounts/{account}/settings"),
            Some(json!({ "collection": collection })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn post_call(app: &TestApp, account: AccountId, call: Value) -> (StatusCode, Value) {
    app.post(
        &app.admin,
        &format!("/api/v1/accounts/{account}/calls"),
        call,
    )
    .await
}

async fn consent(app: &TestApp, account: AccountId, body: Value) -> (StatusCode, Value) {
    app.post(
        &app.admin,
        &format!("/api/v1/accounts/{account}/consents"),
        body,
    )
    .await
}

fn dropped(body: &Value) -> Vec<String> {
    body["dropped"]
        .as_array()
        .unwrap_or_else(|| panic!("no dropped list in {body}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn recording_files(app: &TestApp) -> usize {
    files_below(&app.data_dir().join("recordings")).len()
}

/// An account created without settings, as `ringfence account create` makes it.
async fn default_account(app: &TestApp) -> AccountId {
    let agency = app.agency(true).await;
    let account = app.account(agency).await;
    let mut record = app
        .resources
        .log
        .store()
        .account(account)
        .await
        .unwrap()
        .unwrap();
    record.collection = CollectionSettings::default();
    app.resources
        .log
        .store()
        .update_account(record)
        .await
        .unwrap();
    account
}

#[tokio::test]
async fn defaults_keep_only_what_attribution_needs_and_say_what_was_dropped() {
    let app = TestApp::spawn().await;
    let account = default_account(&app).await;
    let (_, settings) = app
        .get(&app.admin, &format!("/api/v1/accounts/{account}/settings"))
        .await;
    assert_eq!(
        settings["collection"],
        json!({"caller_name": false, "caller_location": false, "recording_gdpr": "opt_in",
               "recording_other": "announce", "transcription": false, "visitor_ip": "truncate",
               "visitor_details": true})
    );
    let (status, body) = post_call(&app, account, full_call(1)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        dropped(&body),
        [
            "caller_name",
            "caller_city",
            "caller_region",
            "caller_postal_code",
            "caller_country",
            "transcript",
            "visitor.ip:truncated"
        ]
    );
    let id = body["id"].as_str().unwrap();
    let (_, stored) = app.get(&app.admin, &format!("/api/v1/calls/{id}")).await;
    assert_eq!(stored["caller"]["number"], uk_number(1));
    assert!(stored["caller"]["name"].is_null() && stored["caller"]["city"].is_null());
    assert!(stored["transcript"].is_null());
    assert_eq!(stored["visitor"]["ip"], "203.0.113.0");
    assert_eq!(stored["visitor"]["gclid"], "EAIaIQobChMI");
    assert!(
        stored.get("dropped").is_none(),
        "only ingest answers say dropped"
    );
    // What was dropped is nowhere on disk, not even sealed: the bytes never reached a file.
    app.resources.log.store().compact().await.unwrap();
    for needle in ["Erika Mustermann", "EC1A 1BB", "I would like a quote"] {
        assert!(
            files_containing(&app.data_dir(), needle.as_bytes()).is_empty(),
            "{needle}"
        );
    }
}

#[tokio::test]
async fn every_collection_setting_stores_or_drops_what_it_says() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    // (settings, visitor ip sent, dropped expected, stored ip expected)
    let cases: Vec<(Value, &str, Vec<&str>, Option<&str>)> = vec![
        (
            json!({"caller_name": false}),
            "203.0.113.7",
            vec!["caller_name"],
            Some("203.0.113.7"),
        ),
        (
            json!({"caller_name": true, "caller_location": false}),
            "203.0.113.7",
            vec![
                "caller_city",
                "caller_region",
                "caller_postal_code",
                "caller_country",
            ],
            Some("203.0.113.7"),
        ),
        (
            json!({"caller_location": true, "transcription": false}),
            "203.0.113.7",
            vec!["transcript"],
            Some("203.0.113.7"),
        ),
        (
            json!({"transcription": true, "visitor_ip": "drop"}),
            "203.0.113.7",
            vec!["visitor.ip"],
            None,
        ),
        (
            json!({"visitor_ip": "truncate"}),
            "203.0.113.77",
            vec!["visitor.ip:truncated"],
            Some("203.0.113.0"),
        ),
        (
            json!({"visitor_ip": "truncate"}),
            "2001:db8:abcd:12:1:2:3:4",
            vec!["visitor.ip:truncated"],
            Some("2001:db8:abcd::"),
        ),
        (
            json!({"visitor_ip": "full"}),
            "2001:db8:abcd:12:1:2:3:4",
            vec![],
            Some("2001:db8:abcd:12:1:2:3:4"),
        ),
        (
            json!({"visitor_details": false}),
            "198.51.100.4",
            vec![
                "visitor.user_agent",
                "visitor.referrer",
                "visitor.landing_url",
                "visitor.gclid",
            ],
            Some("198.51.100.4"),
        ),
    ];
    for (i, (settings, ip, expected, stored_ip)) in cases.into_iter().enumerate() {
        set_collection(&app, account, settings.clone()).await;
        let mut call = full_call(100 + i as u16);
        call["visitor"]["ip"] = json!(ip);
        let (status, body) = post_call(&app, account, call).await;
        assert_eq!(status, StatusCode::CREATED, "{settings}: {body}");
        assert_eq!(dropped(&body), expected, "{settings}");
        let id = body["id"].as_str().unwrap();
        let (_, stored) = app.get(&app.admin, &format!("/api/v1/calls/{id}")).await;
        assert_eq!(stored["visitor"]["ip"].as_str(), stored_ip, "{settings}");
        for name in &expected {
            let path: Vec<&str> = match *name {
                "caller_name" => vec!["caller", "name"],
                "caller_city" => vec!["caller", "city"],
                "caller_region" => vec!["caller", "region"],
                "caller_postal_code" => vec!["caller", "postal_code"],
                "caller_country" => vec!["caller", "country"],
                "transcript" => vec!["transcript"],
                other => vec!["visitor", other.trim_start_matches("visitor.")],
            };
            let value = path.iter().fold(&stored, |v, k| &v[*k]);
            assert!(value.is_null(), "{settings}: {name} was stored");
        }
    }
    // The batch answer says it per call.
    set_collection(
        &app,
        account,
        json!({"caller_name": false, "visitor_details": true}),
    )
    .await;
    let mut anonymous = full_call(200);
    anonymous.as_object_mut().unwrap().remove("caller_name");
    let (status, body) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/calls/batch"),
            json!({"calls": [full_call(201), anonymous]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["dropped"], json!([["caller_name"], []]));
    // Bad values are refused whole.
    let (status, body) = app
        .send(
            reqwest::Method::PUT,
            &app.admin,
            &format!("/api/v1/accounts/{account}/settings"),
            Some(json!({"collection": {"visitor_ip": "hash", "caller_name": true}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["error"]["details"][0]["field"],
        "collection.visitor_ip"
    );
    let (_, settings) = app
        .get(&app.admin, &format!("/api/v1/accounts/{account}/settings"))
        .await;
    assert_eq!(
        settings["collection"]["caller_name"], false,
        "nothing half-stored"
    );
    // Changes are journaled, with both versions and no personal data.
    let changes: Vec<Value> = all_audit(&app, 200)
        .await
        .into_iter()
        .filter(|e| e["action"] == "account.collection_changed")
        .collect();
    assert!(changes.len() >= 8, "{}", changes.len());
}

#[tokio::test]
async fn recordings_follow_the_mode_of_the_callers_scope() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let audio = b"RIFF-consent-test-audio".to_vec();
    let uk = app.ingest(account, full_call(1)).await;
    let mut us_call = full_call(2);
    us_call["caller_number"] = json!(us_number(2));
    let us = app.ingest(account, us_call).await;

    set_collection(
        &app,
        account,
        json!({"recording_gdpr": "off", "recording_other": "announce"}),
    )
    .await;
    let (status, body) = app
        .upload_recording(&app.admin, &uk, audio.clone(), "audio/wav")
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "collection_disabled");
    assert_eq!(recording_files(&app), 0);
    let (status, _) = app
        .upload_recording(&app.admin, &us, audio.clone(), "audio/wav")
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "announce records everyone else"
    );

    set_collection(&app, account, json!({"recording_gdpr": "opt_in"})).await;
    let (status, body) = app
        .upload_recording(&app.admin, &uk, audio.clone(), "audio/wav")
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "consent_required");
    assert_eq!(
        recording_files(&app),
        1,
        "nothing of the refused upload was written"
    );
    let (_, detail) = app.get(&app.admin, &format!("/api/v1/calls/{uk}")).await;
    assert!(detail["recording"].is_null());

    // A consent of another category does not count.
    let (status, _) = consent(&app, account, json!({"subject": {"caller_number": uk_number(1)}, "category": "transcript", "status": "granted", "method": "ivr_keypress"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = app
        .upload_recording(&app.admin, &uk, audio.clone(), "audio/wav")
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = consent(&app, account, json!({"subject": {"caller_number": uk_number(1)}, "category": "recording", "status": "granted", "method": "ivr_keypress", "call_id": uk})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app
        .upload_recording(&app.admin, &uk, audio.clone(), "audio/wav")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // An IVR posts the call and the keypress at once.
    let mut inline = full_call(3);
    inline["consents"] = json!([
        {"category": "recording", "status": "granted", "method": "ivr_keypress"},
        {"category": "transcript", "status": "granted", "method": "ivr_keypress"}
    ]);
    let inline = app.ingest(account, inline).await;
    let (status, body) = app
        .upload_recording(&app.admin, &inline, audio.clone(), "audio/wav")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, ledger) = app
        .get(
            &app.admin,
            &format!(
                "/api/v1/accounts/{account}/consents?subject=%2B{}",
                &uk_number(3)[1..]
            ),
        )
        .await;
    assert_eq!(ledger["items"][0]["call_id"], inline.as_str());
    assert_eq!(ledger["items"][0]["method"], "ivr_keypress");
    assert_eq!(
        ledger["state"],
        json!({"recording": "granted", "transcript": "granted"})
    );
}

#[tokio::test]
async fn transcripts_under_opt_in_need_a_granted_consent_and_nothing_is_stored_without() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    set_collection(
        &app,
        account,
        json!({"transcription": true, "recording_gdpr": "opt_in"}),
    )
    .await;
    let (status, body) = post_call(&app, account, full_call(1)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "consent_required");
    // A call posted alone has no place in a batch: the field is `transcript`.
    assert_eq!(body["error"]["details"][0]["field"], "transcript", "{body}");
    assert!(
        !body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("calls["),
        "{body}"
    );
    let (status, body) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/calls/batch"),
            json!({"calls": [
                {"started_at": "2026-11-28T10:00:00Z", "tracking_number": us_number(1), "external_id": "ok-1"},
                full_call(2)
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "calls[1].transcript");
    let (_, list) = app
        .get(&app.admin, &format!("/api/v1/accounts/{account}/calls"))
        .await;
    assert_eq!(list["items"], json!([]), "nothing of the batch was stored");
    let (_, ledger) = app
        .get(&app.admin, &format!("/api/v1/accounts/{account}/consents"))
        .await;
    assert_eq!(ledger["items"], json!([]));

    // With the consent inline, the transcript is kept.
    let mut with_consent = full_call(3);
    with_consent["consents"] =
        json!([{"category": "transcript", "status": "granted", "method": "verbal"}]);
    let (status, body) = post_call(&app, account, with_consent).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["transcript"], "Hello, I would like a quote.");
    // A US caller is under `announce`: no consent needed.
    let mut us = full_call(4);
    us["caller_number"] = json!(us_number(4));
    let (status, _) = post_call(&app, account, us).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn the_ledger_derives_state_and_notices_freeze_once_used() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let notices = format!("/api/v1/accounts/{account}/notices");
    let (status, v1) = app
        .post(&app.admin, &notices, json!({"category": "recording", "text": "Calls are recorded for training. Press 1 to agree."}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v1}");
    assert_eq!(
        (v1["version"].as_u64(), v1["used"].as_bool()),
        (Some(1), Some(false))
    );
    // Unused: its text may still be corrected.
    let (status, body) = app
        .send(
            reqwest::Method::PUT,
            &app.admin,
            &format!("{notices}/recording/1"),
            Some(json!({"text": "Calls are recorded for training and quality. Press 1 to agree."})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let number = uk_number(7);
    let subject = json!({"caller_number": number});
    for status_text in ["granted", "withdrawn", "granted"] {
        let (status, body) = consent(&app, account, json!({"subject": subject, "category": "recording", "status": status_text, "notice_version": 1, "method": "ivr_keypress"})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["status"], status_text);
        assert_eq!(body["subject"]["caller_number"], number.as_str());
    }
    let (status, body) = consent(&app, account, json!({"subject": subject, "category": "visitor", "status": "withdrawn", "method": "web_form"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let query = format!(
        "/api/v1/accounts/{account}/consents?caller_number=%2B{}",
        &number[1..]
    );
    let (_, ledger) = app.get(&app.admin, &query).await;
    let items = ledger["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    let seqs: Vec<i64> = items.iter().map(|i| i["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "ledger order");
    assert_eq!(
        ledger["state"],
        json!({"recording": "granted", "visitor": "withdrawn"})
    );
    // Paging by cursor walks the same events.
    let (_, page) = app.get(&app.admin, &format!("{query}&limit=3")).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = app
        .get(&app.admin, &format!("{query}&limit=3&cursor={cursor}"))
        .await;
    assert_eq!(rest["items"][0]["seq"], items[3]["seq"]);
    assert!(rest["next_cursor"].is_null());
    // Another subject's state is its own.
    let (_, other) = app
        .get(
            &app.admin,
            &format!(
                "/api/v1/accounts/{account}/consents?subject=%2B{}",
                &uk_number(8)[1..]
            ),
        )
        .await;
    assert_eq!(
        (other["items"].clone(), other["state"].clone()),
        (json!([]), json!({}))
    );

    // Used: immutable. A new version is the way to change it.
    let (status, body) = app
        .send(
            reqwest::Method::PUT,
            &app.admin,
            &format!("{notices}/recording/1"),
            Some(json!({"text": "changed"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "notice_in_use");
    let (_, v2) = app
        .post(
            &app.admin,
            &notices,
            json!({"category": "recording", "text": "Version two."}),
        )
        .await;
    assert_eq!(v2["version"], 2);
    let (_, listed) = app.get(&app.admin, &notices).await;
    let listed = listed["items"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["used"], true);
    assert_eq!(
        listed[0]["text"],
        "Calls are recorded for training and quality. Press 1 to agree."
    );
    assert_eq!(listed[1]["used"], false);

    // The journal records each event, never whose it is.
    let journal = all_audit(&app, 200).await;
    let events: Vec<&Value> = journal
        .iter()
        .filter(|e| e["action"].as_str().unwrap_or("").starts_with("consent."))
        .collect();
    assert_eq!(events.len(), 4);
    let text = serde_json::to_string(&journal).unwrap();
    assert!(!text.contains(&number[3..]), "the journal names no subject");
    // An analyst may read the ledger, masked, and may not look a subject up.
    let analyst = app.token(Role::Analyst, None, Some(account), false).await;
    let (status, masked) = app
        .get(&analyst, &format!("/api/v1/accounts/{account}/consents"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(masked["items"][0]["subject"].is_null());
    let (status, _) = app.get(&analyst, &query).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn withdrawal_removes_the_category_everywhere_and_leaves_no_trace() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let marker = b"RIFF-withdrawn-recording-marker".to_vec();
    let mut calls = Vec::new();
    for n in [1u16, 1001] {
        // Same caller (uk_number wraps at 1000), two calls.
        let id = app.ingest(account, full_call(n)).await;
        let (status, _) = app
            .upload_recording(&app.admin, &id, marker.clone(), "audio/wav")
            .await;
        assert_eq!(status, StatusCode::CREATED);
        calls.push(id);
    }
    let other = app.ingest(account, full_call(2)).await;
    app.upload_recording(&app.admin, &other, marker.clone(), "audio/wav")
        .await;
    assert_eq!(recording_files(&app), 3);

    let (status, body) = consent(&app, account, json!({"subject": {"caller_number": uk_number(1)}, "category": "recording", "status": "withdrawn", "method": "verbal"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["removal"]["redacted_calls"], 2, "{body}");
    assert_eq!(
        recording_files(&app),
        1,
        "both recordings of the caller are gone"
    );
    for id in &calls {
        let (_, detail) = app.get(&app.admin, &format!("/api/v1/calls/{id}")).await;
        assert!(detail["recording"].is_null());
        assert_eq!(
            detail["caller"]["number"],
            uk_number(1),
            "only the category goes"
        );
        assert_eq!(detail["transcript"], "Hello, I would like a quote.");
        assert!(detail["redaction"].is_null());
    }
    let (_, kept) = app.get(&app.admin, &format!("/api/v1/calls/{other}")).await;
    assert_eq!(kept["recording"]["bytes"], marker.len());
    // Journaled with its reason.
    let journal = all_audit(&app, 200).await;
    let removal = journal
        .iter()
        .find(|e| e["action"] == "consent.data_removed")
        .expect("journaled");
    assert_eq!(removal["reason"], "consent_withdrawn");
    assert_eq!(removal["count"], 2);
    // Later recordings of the caller are refused, even under `announce`.
    let (status, body) = app
        .upload_recording(&app.admin, &calls[0], marker.clone(), "audio/wav")
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // Withdrawing location clears it, and later calls arrive without it.
    let (status, body) = consent(&app, account, json!({"subject": {"caller_number": uk_number(1)}, "category": "caller_location", "status": "withdrawn", "method": "api"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, detail) = app
        .get(&app.admin, &format!("/api/v1/calls/{}", calls[1]))
        .await;
    assert!(detail["caller"]["city"].is_null() && detail["caller"]["postal_code"].is_null());
    let (status, body) = post_call(&app, account, full_call(2001)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(dropped(&body), ["caller_location"]);
    assert!(body["caller"]["city"].is_null(), "{body}");

    // The canary: no readable trace of what was withdrawn anywhere Ringfence wrote.
    app.resources.log.store().compact().await.unwrap();
    for needle in [&marker[..], b"EC1A 1BB"] {
        assert!(files_containing(&app.data_dir(), needle).is_empty());
    }
}

#[tokio::test]
async fn a_visitor_withdraws_by_visitor_id() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let (status, session) = app
        .post(&app.admin, &format!("/api/v1/accounts/{account}/sessions"), json!({"started_at": "2026-11-28T09:58:00Z", "ip": "198.51.100.20", "visitor_id": "rf1.0123456789abcdef", "landing_url": "https://shop.example/"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let mut call = full_call(5);
    call.as_object_mut().unwrap().remove("visitor");
    call["session_id"] = session["id"].clone();
    let id = app.ingest(account, call).await;
    let (_, before) = app.get(&app.admin, &format!("/api/v1/calls/{id}")).await;
    assert_eq!(before["visitor"]["landing_url"], "https://shop.example/");
    let (status, body) = consent(&app, account, json!({"subject": {"visitor_id": "rf1.0123456789abcdef"}, "category": "visitor", "status": "withdrawn", "method": "web_form"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["removal"]["redacted_sessions"], 1, "{body}");
    let (_, after) = app.get(&app.admin, &format!("/api/v1/calls/{id}")).await;
    assert!(after["visitor"].is_null(), "{after}");
    assert_eq!(after["caller"]["number"], uk_number(5));
    // A later visit of the same visitor arrives without its details.
    let (status, again) = app
        .post(&app.admin, &format!("/api/v1/accounts/{account}/sessions"), json!({"started_at": "2026-11-29T09:58:00Z", "ip": "198.51.100.20", "visitor_id": "rf1.0123456789abcdef"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(again["dropped"], json!(["visitor"]));
}

#[tokio::test]
async fn redacting_a_caller_removes_their_consent_records_but_the_journal_keeps_that_they_existed()
{
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    app.ingest(account, full_call(9)).await;
    let (status, _) = consent(&app, account, json!({"subject": {"caller_number": uk_number(9)}, "category": "recording", "status": "granted", "method": "ivr_keypress"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/callers/redact"),
            json!({"number": uk_number(9)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, ledger) = app
        .get(&app.admin, &format!("/api/v1/accounts/{account}/consents"))
        .await;
    assert_eq!(ledger["items"], json!([]));
    let journal = all_audit(&app, 200).await;
    assert!(journal.iter().any(|e| e["action"] == "consent.granted"));
    let redaction = journal
        .iter()
        .find(|e| e["action"] == "caller.redacted")
        .expect("journaled");
    assert!(
        redaction["details"]
            .to_string()
            .contains("consents_removed"),
        "{redaction}"
    );
    let (code, out, _) = run_cli(&app.data_dir(), &["audit", "verify"]);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
async fn bad_consent_input_is_refused_with_a_code_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let (_, other_account) = app.tenant().await;
    let foreign_call = app.ingest(other_account, full_call(3)).await;
    let subject = json!({"caller_number": uk_number(1)});
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!({"subject": subject, "category": "everything", "status": "granted", "method": "api"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_category",
        ),
        (
            json!({"subject": subject, "category": "call_facts", "status": "granted", "method": "api"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_category",
        ),
        (
            json!({"subject": subject, "category": "recording", "status": "granted", "method": "api", "notice_version": 7}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_notice_version",
        ),
        (
            json!({"subject": subject, "category": "recording", "status": "granted", "method": "api", "notice_version": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_notice_version",
        ),
        (
            json!({"subject": subject, "category": "recording", "status": "granted", "method": "api", "call_id": foreign_call}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            json!({"subject": subject, "category": "recording", "status": "maybe", "method": "api"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({"subject": subject, "category": "recording", "status": "granted", "method": "telepathy"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({"subject": {"caller_number": "+12"}, "category": "recording", "status": "granted", "method": "api"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_phone_number",
        ),
        (
            json!({"subject": {"caller_number": uk_number(1), "visitor_id": "v"}, "category": "recording", "status": "granted", "method": "api"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({"subject": {}, "category": "recording", "status": "granted", "method": "api"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({"subject": subject, "category": "recording", "status": "granted", "method": "api", "extra": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_field",
        ),
    ];
    for (body, status, code) in cases {
        let (got, answer) = consent(&app, account, body.clone()).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
        assert!(
            !answer.to_string().contains(&uk_number(1)[3..]),
            "errors never repeat the subject"
        );
    }
    // Another tenant's account, and roles that may not.
    let foreign_admin = app
        .token(Role::AccountAdmin, None, Some(other_account), true)
        .await;
    let (status, _) = app
        .post(&foreign_admin, &format!("/api/v1/accounts/{account}/consents"), json!({"subject": subject, "category": "recording", "status": "granted", "method": "api"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let analyst = app.token(Role::Analyst, None, Some(account), true).await;
    let (status, _) = app
        .post(&analyst, &format!("/api/v1/accounts/{account}/consents"), json!({"subject": subject, "category": "recording", "status": "granted", "method": "api"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/notices"),
            json!({"category": "weather", "text": "x"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_category"))
    );
    // Inline consents with a bad part refuse the call.
    let mut call = full_call(4);
    call["consents"] = json!([{"category": "recording", "status": "granted", "method": "ivr_keypress", "notice_version": 3}]);
    let (status, body) = post_call(&app, account, call).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("unknown_notice_version")
        ),
        "{body}"
    );
    let mut withheld = json!({"started_at": "2026-11-28T10:00:00Z", "tracking_number": us_number(1), "caller_number": "anonymous"});
    withheld["consents"] =
        json!([{"category": "recording", "status": "granted", "method": "ivr_keypress"}]);
    let (status, body) = post_call(&app, account, withheld).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_field")),
        "{body}"
    );
    // Nothing reached the ledger or the call log.
    let (_, ledger) = app
        .get(&app.admin, &format!("/api/v1/accounts/{account}/consents"))
        .await;
    assert_eq!(ledger["items"], json!([]));
    let (_, list) = app
        .get(&app.admin, &format!("/api/v1/accounts/{account}/calls"))
        .await;
    assert_eq!(list["items"], json!([]));
}

/// A server whose IP-to-country data maps the documentation ranges to countries.
async fn app_with_geo() -> TestApp {
    let entries: Vec<(std::net::IpAddr, u8, &str)> = vec![
        ("192.0.2.0".parse().unwrap(), 24, "DE"),
        ("198.51.100.0".parse().unwrap(), 24, "US"),
        ("2001:db8:1::".parse().unwrap(), 48, "FR"),
        ("2001:db8:2::".parse().unwrap(), 48, "CA"),
    ];
    let bytes = ringfence_geo::testing::mmdb_bytes(&entries);
    let file = std::env::temp_dir().join(format!("rf-geo-{}.mmdb", uuid_like()));
    std::fs::write(&file, bytes).unwrap();
    TestApp::spawn_with(move |c| {
        c.geoip = Some(ringfence::config::GeoIpLocation {
            path: file,
            explicit: true,
        });
    })
    .await
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test]
async fn the_visits_country_counts_toward_gdpr_scope() {
    let app = app_with_geo().await;
    let (_, account) = app.tenant().await;
    // (caller number, visitor ip, expected scope, expected stored country)
    let cases: Vec<(Option<String>, &str, Option<bool>, Option<&str>)> = vec![
        (Some(us_number(1)), "192.0.2.10", Some(true), Some("DE")),
        (Some(us_number(2)), "198.51.100.10", Some(false), Some("US")),
        (Some(us_number(3)), "203.0.113.10", Some(false), None),
        (None, "192.0.2.11", Some(true), Some("DE")),
        (None, "2001:db8:2::5", Some(false), Some("CA")),
        (None, "203.0.113.11", None, None),
        (
            Some(us_number(4)),
            "2001:db8:1:0:1:2:3:4",
            Some(true),
            Some("FR"),
        ),
        (Some(uk_number(5)), "198.51.100.11", Some(true), Some("US")),
    ];
    for (i, (number, ip, scope, country)) in cases.into_iter().enumerate() {
        let mut call = json!({"started_at": "2026-11-28T10:00:00Z", "tracking_number": us_number(9), "external_id": format!("geo-{i}"),
                              "visitor": {"ip": ip, "landing_url": "https://shop.example/"}});
        if let Some(n) = &number {
            call["caller_number"] = json!(n);
        }
        let (status, body) = post_call(&app, account, call).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["gdpr_scope"].as_bool(), scope, "{ip}: {body}");
        assert_eq!(body["visitor"]["country"].as_str(), country, "{ip}");
        let (_, stored) = app
            .get(
                &app.admin,
                &format!("/api/v1/calls/{}", body["id"].as_str().unwrap()),
            )
            .await;
        assert_eq!(stored["gdpr_scope"].as_bool(), scope, "{ip}");
    }
    // Looked up before the IP is dropped: only the country stays.
    set_collection(&app, account, json!({"visitor_ip": "drop"})).await;
    let (status, body) = post_call(&app, account, json!({"started_at": "2026-11-28T10:00:00Z", "tracking_number": us_number(9),
        "caller_number": us_number(6), "visitor": {"ip": "192.0.2.99", "landing_url": "https://shop.example/"}})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        (
            body["gdpr_scope"].as_bool(),
            body["visitor"]["country"].as_str()
        ),
        (Some(true), Some("DE"))
    );
    assert!(body["visitor"]["ip"].is_null());
    assert_eq!(dropped(&body), ["visitor.ip"]);
    // A session posted first lends its country to the call that links it.
    let (_, session) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/sessions"),
            json!({"started_at": "2026-11-28T09:00:00Z", "ip": "192.0.2.50"}),
        )
        .await;
    let (status, body) = post_call(
        &app,
        account,
        json!({"started_at": "2026-11-28T10:00:00Z", "tracking_number": us_number(9),
        "caller_number": us_number(7), "session_id": session["id"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["gdpr_scope"], true);
    // And the scope decides the recording mode: a US number visiting from DE is opted in.
    set_collection(
        &app,
        account,
        json!({"recording_gdpr": "opt_in", "recording_other": "announce"}),
    )
    .await;
    let (status, answer) = app
        .upload_recording(
            &app.admin,
            body["id"].as_str().unwrap(),
            b"RIFF-geo".to_vec(),
            "audio/wav",
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("consent_required"))
    );
}
