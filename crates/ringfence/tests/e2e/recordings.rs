//! Recordings: upload, playback with ranges, limits.

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::*;
use ringfence_core::access::Role;

/// Audio-like bytes that are not all alike, so a wrong offset shows.
fn audio(len: usize) -> Vec<u8> {
    let mut out = b"RIFF".to_vec();
    let mut x: u32 = 0x1234_5678;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.push((x & 0xff) as u8);
    }
    out
}

#[tokio::test]
async fn a_recording_plays_back_whole_and_by_range() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let call = app.ingest(account, full_call(1)).await;
    let bytes = audio(300_000);
    let (status, body) = app
        .upload_recording(&app.admin, &call, bytes.clone(), "audio/wav")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["bytes"], 300_000);
    assert_eq!(body["content_type"], "audio/wav");
    let (_, detail) = app.get(&app.admin, &format!("/api/v1/calls/{call}")).await;
    assert_eq!(
        detail["recording"]["url"],
        format!("/api/v1/calls/{call}/recording")
    );
    assert_eq!(detail["recording"]["bytes"], 300_000);

    let whole = app.download_recording(&app.admin, &call, None).await;
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.headers()["content-type"], "audio/wav");
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(whole.headers()["cache-control"], "no-store");
    assert_eq!(whole.bytes().await.unwrap().to_vec(), bytes);

    let len = bytes.len();
    for (range, start, end) in [
        ("bytes=0-99", 0, 100),
        ("bytes=65530-65545", 65530, 65546),
        ("bytes=131072-", 131072, len),
        ("bytes=-1000", len - 1000, len),
        ("bytes=299999-400000", 299_999, len),
    ] {
        let response = app.download_recording(&app.admin, &call, Some(range)).await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            response.headers()["content-range"],
            format!("bytes {start}-{}/{len}", end - 1).as_str(),
            "{range}"
        );
        assert_eq!(
            response.bytes().await.unwrap().to_vec(),
            bytes[start..end].to_vec(),
            "{range}"
        );
    }
    let response = app
        .download_recording(&app.admin, &call, Some("bytes=300000-"))
        .await;
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(response.headers()["content-range"], "bytes */300000");
}

#[tokio::test]
async fn uploading_again_replaces_the_recording_and_its_file() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let call = app.ingest(account, full_call(2)).await;
    assert_eq!(
        app.upload_recording(&app.admin, &call, audio(10_000), "audio/wav")
            .await
            .0,
        StatusCode::CREATED
    );
    assert_eq!(
        app.upload_recording(&app.admin, &call, audio(5_000), "audio/mpeg")
            .await
            .0,
        StatusCode::CREATED
    );
    let response = app.download_recording(&app.admin, &call, None).await;
    assert_eq!(response.headers()["content-type"], "audio/mpeg");
    assert_eq!(response.bytes().await.unwrap().len(), 5_000);
    let files: Vec<_> = files_below(&app.data_dir().join("recordings"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rfrec"))
        .collect();
    assert_eq!(files.len(), 1, "the replaced file is deleted: {files:?}");
}

#[tokio::test]
async fn bad_recording_uploads_are_refused_and_store_nothing() {
    let app = TestApp::spawn_with(|c| c.max_recording_bytes = 100_000).await;
    let (agency, account) = app.tenant().await;
    let call = app.ingest(account, full_call(3)).await;
    let (other_agency, other_account) = app.tenant().await;
    let foreign = app.ingest(other_account, full_call(4)).await;
    let _ = other_agency;
    let analyst = app
        .token(Role::Analyst, Some(agency), Some(account), true)
        .await;
    let cases: Vec<(&str, String, Vec<u8>, &str, String, StatusCode, &str)> = vec![
        (
            "not audio",
            call.clone(),
            audio(100),
            "text/plain",
            app.admin.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "no content type",
            call.clone(),
            audio(100),
            "",
            app.admin.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "empty",
            call.clone(),
            Vec::new(),
            "audio/wav",
            app.admin.clone(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_recording",
        ),
        (
            "too large",
            call.clone(),
            audio(100_001),
            "audio/wav",
            app.admin.clone(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "unknown call",
            "0190c0a0-c0a0-7000-8000-000000000000".into(),
            audio(100),
            "audio/wav",
            app.admin.clone(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "analyst may not upload",
            call.clone(),
            audio(100),
            "audio/wav",
            analyst.clone(),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
    ];
    for (name, target, body, content_type, token, status, code) in cases {
        let mut request = app
            .client
            .put(app.url(&format!("/api/v1/calls/{target}/recording")))
            .bearer_auth(&token)
            .body(body);
        if !content_type.is_empty() {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        let got = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(
            (got, value["error"]["code"].as_str()),
            (status, Some(code)),
            "{name}: {value}"
        );
    }
    let (_, detail) = app.get(&app.admin, &format!("/api/v1/calls/{call}")).await;
    assert_eq!(detail["recording"], Value::Null, "nothing stored");
    assert!(
        files_below(&app.data_dir().join("recordings")).is_empty(),
        "no file left behind"
    );
    let token_a = app
        .token(Role::AccountAdmin, Some(agency), Some(account), true)
        .await;
    let (status, _) = app
        .upload_recording(&token_a, &foreign, audio(100), "audio/wav")
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another tenant's call does not exist for this token"
    );
    assert_eq!(
        app.download_recording(&app.admin, &call, None)
            .await
            .status(),
        StatusCode::NOT_FOUND,
        "no recording yet"
    );
}

#[tokio::test]
async fn recording_files_no_call_points_at_are_collected_after_the_grace_period() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let call = app.ingest(account, full_call(7)).await;
    let (status, _) = app
        .upload_recording(&app.admin, &call, audio(5000), "audio/wav")
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // A file whose row never arrived, as after a crash between the two writes.
    let orphan = format!("recordings/{account}/{call}.crashed.rfrec");
    let mut upload = app.resources.log.blobs().upload(&orphan).await.unwrap();
    upload.write(b"sealed bytes").await.unwrap();
    upload.finish().await.unwrap();
    let files = || files_below(&app.data_dir().join("recordings")).len();
    assert_eq!(files(), 2);
    use ringfence_jobs::orphan_recordings::{GRACE, collect_orphan_recordings};
    let now = ringfence_core::timestamp::Timestamp::now();
    let young = collect_orphan_recordings(&app.resources.log, GRACE, now)
        .await
        .unwrap();
    assert_eq!(young.deleted, 0, "young files are left alone");
    let later = ringfence_core::timestamp::Timestamp::from_millis(now.millis() + 1000);
    let report = collect_orphan_recordings(&app.resources.log, std::time::Duration::ZERO, later)
        .await
        .unwrap();
    assert_eq!((report.examined, report.deleted), (2, 1), "{report:?}");
    assert_eq!(files(), 1);
    let played = app.download_recording(&app.admin, &call, None).await;
    assert_eq!(played.bytes().await.unwrap().to_vec(), audio(5000));
}
