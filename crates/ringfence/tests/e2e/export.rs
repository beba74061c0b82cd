//! The access and portability export: one streamed ZIP per caller, validated against the
//! shipped schema.

use std::io::Read;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;
use ringfence_core::access::Role;

fn schema() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../schemas/export-v1.schema.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

struct Archive {
    files: std::collections::BTreeMap<String, Vec<u8>>,
    raw: Vec<u8>,
}

async fn export(app: &TestApp, token: &str, account: &str, number: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!(
            "/api/v1/accounts/{account}/callers/%2B{}/export",
            &number[1..]
        )))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

fn unzip(raw: Vec<u8>) -> Archive {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(raw.clone())).expect("a valid ZIP");
    let mut files = std::collections::BTreeMap::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        files.insert(f.name().unwrap().to_string(), bytes);
    }
    Archive { files, raw }
}

#[tokio::test]
async fn a_callers_export_holds_everything_about_them_and_nothing_of_anyone_else() {
    let app = TestApp::spawn_with_local_relays().await;
    let (_, account) = app.tenant().await;
    let accounts = format!("/api/v1/accounts/{account}");
    let (_, notice) = app
        .post(
            &app.admin,
            &format!("{accounts}/notices"),
            json!({"category": "recording", "text": "Calls are recorded for training."}),
        )
        .await;
    assert_eq!(notice["version"], 1);
    // The subject: three calls, two recordings, a visit linked by session, a consent; one
    // call later redacted.
    let (_, session) = app
        .post(&app.admin, &format!("{accounts}/sessions"), json!({"started_at": "2026-11-28T09:58:00Z", "ip": "203.0.113.5", "landing_url": "https://shop.example/a"}))
        .await;
    // A CRM receives the account's calls: the export names it for each call it received.
    let (hook, _) = crate::recipients::receiver(0).await;
    let crm = crate::recipients::register(&app, account, &hook, &["call.created"]).await;
    let mut ids = Vec::new();
    for n in [1u16, 1001, 2001] {
        let mut call = full_call(n);
        if n == 1001 {
            call.as_object_mut().unwrap().remove("visitor");
            call["session_id"] = session["id"].clone();
        }
        ids.push(app.ingest(account, call).await);
    }
    crate::recipients::drain(&app, &crate::recipients::deliverer(3), 10).await;
    for (i, id) in ids.iter().enumerate().take(2) {
        let (status, _) = app
            .upload_recording(&app.admin, id, vec![i as u8 + 1; 3000], "audio/wav")
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, _) = app
        .post(&app.admin, &format!("{accounts}/consents"), json!({"subject": {"caller_number": uk_number(1)}, "category": "recording", "status": "granted", "notice_version": 1, "method": "ivr_keypress", "call_id": ids[0]}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = app
        .post(
            &app.admin,
            &format!("/api/v1/calls/{}/redact", ids[2]),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Someone else, in the same account.
    let mut other = full_call(2);
    other["caller_name"] = json!("Somebody Else");
    let other_id = app.ingest(account, other).await;
    app.upload_recording(&app.admin, &other_id, vec![9u8; 3000], "audio/wav")
        .await;
    app.post(&app.admin, &format!("{accounts}/consents"), json!({"subject": {"caller_number": uk_number(2)}, "category": "recording", "status": "granted", "method": "api"})).await;

    let response = export(&app, &app.admin, &account.to_string(), &uk_number(1)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/zip");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let archive = unzip(response.bytes().await.unwrap().to_vec());
    let names: Vec<&String> = archive.files.keys().collect();
    assert_eq!(
        names,
        [
            "README.txt".to_owned(),
            "data.json".to_owned(),
            format!("recordings/{}.wav", ids[0]),
            format!("recordings/{}.wav", ids[1]),
        ]
        .iter()
        .collect::<Vec<_>>()
    );
    assert_eq!(
        archive.files[&format!("recordings/{}.wav", ids[0])],
        vec![1u8; 3000]
    );
    assert_eq!(
        archive.files[&format!("recordings/{}.wav", ids[1])],
        vec![2u8; 3000]
    );
    let data: Value = serde_json::from_slice(&archive.files["data.json"]).unwrap();
    let validator = jsonschema::validator_for(&schema()).expect("the schema compiles");
    let problems: Vec<String> = validator
        .iter_errors(&data)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        problems.is_empty(),
        "data.json does not follow its schema: {problems:#?}"
    );

    let exported: Vec<&str> = data["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    // The redacted call no longer links to the number at all (its blind index is gone with
    // the rest of the caller's identity): it is not the caller's data any more.
    assert_eq!(exported.len(), 2);
    for id in &ids[..2] {
        assert!(exported.contains(&id.as_str()), "{id} missing");
    }
    assert!(!exported.contains(&ids[2].as_str()));
    let call = |id: &str| {
        data["calls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(call(&ids[0])["caller"]["name"], "Erika Mustermann");
    for id in &ids[..2] {
        assert_eq!(call(id)["recipients"], json!([{"id": crm, "name": "CRM"}]));
    }
    assert_eq!(
        call(&ids[0])["recording_file"],
        format!("recordings/{}.wav", ids[0])
    );
    let sessions = data["visitor_sessions"].as_array().unwrap();
    assert_eq!(
        sessions.len(),
        2,
        "the inline visit of the first call and the linked one"
    );
    assert!(
        sessions
            .iter()
            .any(|s| s["landing_url"] == "https://shop.example/a")
    );
    assert_eq!(data["consents"].as_array().unwrap().len(), 1);
    assert_eq!(data["consents"][0]["notice_version"], 1);
    assert_eq!(
        data["notices"],
        json!([{"category": "recording", "version": 1, "text": "Calls are recorded for training.", "created_at": data["notices"][0]["created_at"]}])
    );
    assert!(data["data_categories"].as_array().unwrap().len() == 7);
    assert!(String::from_utf8_lossy(&archive.files["README.txt"]).contains("data.json"));
    // Nothing of the other caller.
    let text = String::from_utf8_lossy(&archive.raw);
    assert!(
        !text.contains(&other_id)
            && !text.contains("Somebody Else")
            && !text.contains(&uk_number(2)[3..])
    );
    assert!(
        !archive
            .raw
            .windows(3000)
            .any(|w| w == vec![9u8; 3000].as_slice())
    );

    // Journaled, without the number.
    let journal = all_audit(&app, 200).await;
    let entry = journal
        .iter()
        .find(|e| e["action"] == "caller.exported")
        .expect("journaled");
    assert_eq!(entry["count"], 2);
    assert!(!entry.to_string().contains(&uk_number(1)[3..]), "{entry}");
}

#[tokio::test]
async fn exports_are_for_account_admins_with_personal_data_only() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let (_, other) = app.tenant().await;
    app.ingest(account, full_call(5)).await;
    let a = account.to_string();
    let cases = [
        (
            app.token(Role::AccountAdmin, Some(agency), Some(account), true)
                .await,
            StatusCode::OK,
        ),
        (
            app.token(Role::AgencyAdmin, Some(agency), None, true).await,
            StatusCode::OK,
        ),
        (
            app.token(Role::Analyst, Some(agency), Some(account), false)
                .await,
            StatusCode::FORBIDDEN,
        ),
        (
            app.token(Role::Analyst, Some(agency), Some(account), true)
                .await,
            StatusCode::FORBIDDEN,
        ),
        (
            app.token(Role::Ingest, Some(agency), Some(account), true)
                .await,
            StatusCode::FORBIDDEN,
        ),
        (
            app.token(Role::AccountAdmin, None, Some(other), true).await,
            StatusCode::NOT_FOUND,
        ),
    ];
    for (i, (token, expected)) in cases.iter().enumerate() {
        let response = export(&app, token, &a, &uk_number(5)).await;
        assert_eq!(response.status(), *expected, "case {i}");
    }
    let response = app
        .client
        .get(app.url(&format!("/api/v1/accounts/{a}/callers/12345/export")))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // A number with nothing held: a valid, empty export.
    let response = export(&app, &app.admin, &a, &uk_number(6)).await;
    let archive = unzip(response.bytes().await.unwrap().to_vec());
    let data: Value = serde_json::from_slice(&archive.files["data.json"]).unwrap();
    assert_eq!(
        (data["calls"].clone(), data["consents"].clone()),
        (json!([]), json!([]))
    );
}

#[tokio::test]
async fn the_cli_writes_the_same_export_to_a_private_file() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let id = app.ingest(account, full_call(8)).await;
    app.upload_recording(&app.admin, &id, vec![3u8; 2000], "audio/wav")
        .await;
    let out = app.dir.path().join("export.zip");
    let a = account.to_string();
    let number = uk_number(8);
    let args = [
        "export",
        "caller",
        "--account",
        &a,
        &number,
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    let (code, stdout, stderr) = run_cli(&app.data_dir(), &args);
    assert_eq!(code, 0, "{stderr}");
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        (summary["calls"].as_u64(), summary["recordings"].as_u64()),
        (Some(1), Some(1))
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let archive = unzip(std::fs::read(&out).unwrap());
    let data: Value = serde_json::from_slice(&archive.files["data.json"]).unwrap();
    assert_eq!(data["calls"][0]["id"], id.as_str());
    assert!(
        jsonschema::validator_for(&schema())
            .unwrap()
            .is_valid(&data)
    );
    // Never over an existing file; a bad number names no value.
    let (code, _, stderr) = run_cli(&app.data_dir(), &args);
    assert_eq!(code, 1, "{stderr}");
    let (code, _, stderr) = run_cli(
        &app.data_dir(),
        &[
            "export",
            "caller",
            "--account",
            &a,
            "+4420794",
            "--out",
            app.dir.path().join("x.zip").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1);
    assert!(!stderr.contains("+4420794"), "{stderr}");
    assert!(!app.dir.path().join("x.zip").exists());
}
