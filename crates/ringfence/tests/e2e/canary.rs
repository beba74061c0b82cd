//! The canary: personal data sent with unique markers must never appear in plaintext in any
//! file Ringfence writes — call log, WAL, vault, recordings, logs.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn no_personal_data_reaches_any_file_in_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let logs = data.join("logs");
    // Debug logging everywhere: the logs must still hold ids only.
    let served = Served::start(&data, &logs, &[("RINGFENCE_LOG", "debug")]);
    let admin = served.bootstrap_token.clone().unwrap();
    let (_, account) = cli_tenant(&data, false);

    let tag = ringfence_core::CallId::generate()
        .to_string()
        .replace('-', "");
    let marker = |what: &str| format!("CANARY{what}{tag}");
    // Numbers and addresses must be valid, so they are unique picks from the fiction ranges.
    let seed = u16::from_str_radix(&tag[tag.len() - 3..], 16).unwrap() % 1000;
    let number = uk_number(seed);
    let forwarded = uk_number((seed + 500) % 1000);
    let ip = format!("203.0.113.{}", 1 + seed % 250);
    let ipv6 = format!("2001:db8::{:x}", 0x1000 + seed);
    let call = json!({
        "external_id": "canary-1", "started_at": "2026-11-28T10:00:00Z", "tracking_number": us_number(0),
        "caller_number": number, "forwarded_from": forwarded, "caller_name": marker("NAME"),
        "caller_city": marker("CITY"), "caller_region": marker("REGION"), "caller_postal_code": marker("POSTAL"), "caller_country": "GB",
        "transcript": marker("TRANSCRIPT"), "notes": marker("NOTES"), "tags": [marker("TAG")],
        "visitor": {"ip": ip, "user_agent": marker("UA"), "referrer": format!("https://ref.example/{}", marker("REF")),
                    "landing_url": format!("https://land.example/{}", marker("LAND")), "gclid": marker("GCLID"), "fbclid": marker("FBCLID"),
                    "msclkid": marker("MSCLKID"), "visitor_id": marker("VISITORID")}
    });
    let client = reqwest::Client::new();
    let base = served.address.clone();
    let created: Value = post_json(
        &client,
        &format!("{base}/api/v1/accounts/{account}/calls"),
        &admin,
        &call,
    )
    .await;
    let id = created["id"].as_str().expect("created").to_owned();
    let session = json!({"external_id": "canary-session", "started_at": "2026-11-28T09:00:00Z", "ip": ipv6, "user_agent": marker("SESSIONUA")});
    let status = client
        .post(format!("{base}/api/v1/accounts/{account}/sessions"))
        .bearer_auth(&admin)
        .json(&session)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::CREATED);
    let mut audio = b"RIFF".to_vec();
    for _ in 0..2000 {
        audio.extend_from_slice(marker("AUDIO").as_bytes());
    }
    let status = put_audio(
        &client,
        &format!("{base}/api/v1/calls/{id}/recording"),
        &admin,
        audio.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    // Reads, filters and a failing request go through the logs too.
    let read: Value = get_json(&client, &format!("{base}/api/v1/calls/{id}"), &admin).await;
    assert_eq!(
        read["caller"]["name"],
        marker("NAME"),
        "the markers are stored and readable through the API"
    );
    let played = client
        .get(format!("{base}/api/v1/calls/{id}/recording"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(played.to_vec(), audio);
    let listed: Value = get_json(
        &client,
        &format!(
            "{base}/api/v1/accounts/{account}/calls?caller_number=%2B{}",
            &number[1..]
        ),
        &admin,
    )
    .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    let mut bad = call.clone();
    bad["caller_number"] = json!(format!("{number}999"));
    let status = client
        .post(format!("{base}/api/v1/accounts/{account}/calls"))
        .bearer_auth(&admin)
        .json(&bad)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // The consent ledger: subjects by number and by visitor id, a withdrawal, lookups.
    let consents = format!("{base}/api/v1/accounts/{account}/consents");
    for body in [
        json!({"subject": {"caller_number": number}, "category": "transcript", "status": "granted", "method": "ivr_keypress", "call_id": id}),
        json!({"subject": {"visitor_id": marker("CONSENTVISITOR")}, "category": "visitor", "status": "granted", "method": "web_form"}),
        json!({"subject": {"caller_number": number}, "category": "interaction_content", "status": "withdrawn", "method": "verbal"}),
    ] {
        let answer = post_json(&client, &consents, &admin, &body).await;
        assert!(answer["id"].is_string(), "{answer}");
    }
    let ledger = get_json(
        &client,
        &format!("{consents}?subject=%2B{}", &number[1..]),
        &admin,
    )
    .await;
    assert_eq!(ledger["items"].as_array().unwrap().len(), 2, "{ledger}");
    let ledger = get_json(
        &client,
        &format!("{consents}?visitor_id={}", marker("CONSENTVISITOR")),
        &admin,
    )
    .await;
    assert_eq!(ledger["state"]["visitor"], "granted", "{ledger}");

    let digits = number.trim_start_matches('+').to_owned();
    let needles: Vec<String> = [
        "NAME",
        "CITY",
        "REGION",
        "POSTAL",
        "TRANSCRIPT",
        "NOTES",
        "TAG",
        "UA",
        "REF",
        "LAND",
        "GCLID",
        "FBCLID",
        "MSCLKID",
        "VISITORID",
        "SESSIONUA",
        "AUDIO",
        "CONSENTVISITOR",
    ]
    .iter()
    .map(|w| marker(w))
    .chain([
        number.clone(),
        digits,
        forwarded.clone(),
        ip.clone(),
        ipv6.clone(),
    ])
    .collect();
    let scan = |when: &str| {
        let files = files_below(dir.path());
        if when == "while serving" {
            assert!(
                files.iter().any(|f| f.ends_with("ringfence.db-wal")),
                "the scan covers the WAL: {files:?}"
            );
        }
        assert!(
            files
                .iter()
                .any(|f| f.extension().is_some_and(|e| e == "rfrec")),
            "the scan covers recordings"
        );
        assert!(
            files
                .iter()
                .any(|f| f.to_string_lossy().contains("stderr-")),
            "the scan covers the logs"
        );
        for needle in &needles {
            let hits = files_containing(dir.path(), needle.as_bytes());
            assert!(
                hits.is_empty(),
                "{when}: a personal value was found in plaintext in {hits:?}"
            );
        }
    };
    scan("while serving");
    assert!(served.stop().success());
    scan("after shutdown");
    let log = std::fs::read_to_string(
        files_below(&logs)
            .into_iter()
            .find(|f| f.to_string_lossy().contains("stderr-"))
            .unwrap(),
    )
    .unwrap();
    assert!(
        log.contains(&id) || log.contains("route="),
        "the logs do say what happened, by id and route"
    );
}

#[tokio::test]
async fn after_redaction_no_trace_of_the_caller_or_their_keys_remains_on_disk() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let tag = ringfence_core::CallId::generate()
        .to_string()
        .replace('-', "");
    let marker = |what: &str| format!("REDACTED{what}{tag}");
    let number = uk_number(321);
    let mut ids = Vec::new();
    for n in 0..3 {
        let call = json!({
            "external_id": format!("canary-{n}"), "started_at": "2026-11-28T10:00:00Z", "tracking_number": us_number(0),
            "caller_number": number, "caller_name": marker("NAME"), "caller_city": marker("CITY"), "transcript": marker("TRANSCRIPT"),
            "notes": marker("NOTES"), "tags": [marker("TAG")],
            "visitor": {"ip": "198.51.100.77", "user_agent": marker("UA"), "gclid": marker("GCLID")}
        });
        let id = app.ingest(account, call).await;
        let mut audio = b"RIFF".to_vec();
        for _ in 0..3000 {
            audio.extend_from_slice(marker("AUDIO").as_bytes());
        }
        let status = app
            .client
            .put(app.url(&format!("/api/v1/calls/{id}/recording")))
            .bearer_auth(&app.admin)
            .header("content-type", "audio/wav")
            .body(audio)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::CREATED);
        ids.push(id);
    }
    // The wrapped keys as the vault holds them, to look for them afterwards.
    let vault = rusqlite::Connection::open_with_flags(
        app.data_dir().join("vault.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut wrapped: Vec<Vec<u8>> = Vec::new();
    for id in &ids {
        wrapped.push(
            vault
                .query_row("SELECT wrapped FROM data_keys WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .unwrap(),
        );
    }
    let (_, call) = app
        .get(&app.admin, &format!("/api/v1/calls/{}", ids[0]))
        .await;
    let session = call["visitor"]["session_id"].as_str().unwrap().to_owned();
    wrapped.push(
        vault
            .query_row(
                "SELECT wrapped FROM data_keys WHERE id = ?1",
                [&session],
                |r| r.get(0),
            )
            .unwrap(),
    );
    drop(vault);
    for key in &wrapped {
        assert!(
            !files_containing(&app.data_dir(), key).is_empty(),
            "the scan can see a key while it exists"
        );
    }

    let (status, receipt) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/callers/redact"),
            json!({"number": number}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["redacted_calls"], 3);
    assert_eq!(receipt["redacted_sessions"], 3);

    let data = app.data_dir();
    let scan = |when: &str| {
        for w in [
            "NAME",
            "CITY",
            "TRANSCRIPT",
            "NOTES",
            "TAG",
            "UA",
            "GCLID",
            "AUDIO",
        ] {
            let hits = files_containing(&data, marker(w).as_bytes());
            assert!(hits.is_empty(), "{when}: {w} found in {hits:?}");
        }
        for (i, key) in wrapped.iter().enumerate() {
            let hits = files_containing(&data, key);
            assert!(
                hits.is_empty(),
                "{when}: destroyed key {i} still in {hits:?}"
            );
            let hits = files_containing(&data, &key[..24]);
            assert!(
                hits.is_empty(),
                "{when}: part of destroyed key {i} still in {hits:?}"
            );
        }
        for id in &ids {
            let files: Vec<_> = files_below(&data.join("recordings"))
                .into_iter()
                .filter(|p| p.to_string_lossy().contains(id.as_str()))
                .collect();
            assert!(
                files.is_empty(),
                "{when}: a recording of a redacted call remains: {files:?}"
            );
        }
    };
    scan("while serving");
    let dir = app.stop().await;
    let _ = &dir;
    scan("after shutdown");
}
