//! Twilio-compatible voice status callbacks: signatures, convergence, minimisation.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;
use ringfence_core::AccountId;
use ringfence_crypto::twilio::twilio_signature;
use ringfence_jobs::outbound::MediaHosts;

const AUTH_TOKEN: &str = "rf-test-auth-token-0001";

fn sid(n: u32) -> String {
    format!("CA{n:032x}")
}

/// The parameters Twilio sends with a voice status callback of an inbound call.
fn inbound(call_sid: &str, status: &str, from: &str) -> Vec<(String, String)> {
    let mut p: Vec<(&str, String)> = vec![
        ("AccountSid", "AC0123456789abcdef0123456789abcdef".into()),
        ("ApiVersion", "2010-04-01".into()),
        ("CallSid", call_sid.into()),
        ("CallStatus", status.into()),
        ("Direction", "inbound".into()),
        ("From", from.into()),
        ("Caller", from.into()),
        ("To", us_number(1)),
        ("Called", us_number(1)),
        ("CallerName", "Test Caller".into()),
        ("FromCity", "London".into()),
        ("FromState", "ENG".into()),
        ("FromZip", "EC1A 1BB".into()),
        ("FromCountry", "GB".into()),
        ("ToCity", "SAN FRANCISCO".into()),
        ("ToState", "CA".into()),
        ("ToCountry", "US".into()),
        ("StirVerstat", "TN-Validation-Passed-A".into()),
        (
            "CallToken",
            "%7B%22parentCallInfoToken%22%3A%22secret-call-token%22%7D".into(),
        ),
        ("Timestamp", "Sat, 28 Nov 2026 10:00:00 +0000".into()),
        ("SequenceNumber", "0".into()),
        ("CallbackSource", "call-progress-events".into()),
    ];
    if status == "completed" {
        p.push(("CallDuration", "95".into()));
        p.push(("Duration", "2".into()));
        p.retain(|(k, _)| *k != "Timestamp");
        p.push(("Timestamp", "Sat, 28 Nov 2026 10:01:35 +0000".into()));
    }
    p.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn encode(params: &[(String, String)]) -> String {
    serde_urlencoded::to_string(params).unwrap()
}

async fn set_token(app: &TestApp, account: AccountId) {
    let (status, body) = app
        .send(
            reqwest::Method::PUT,
            &app.admin,
            &format!("/api/v1/accounts/{account}/settings"),
            Some(json!({"telephony": {"twilio_auth_token": AUTH_TOKEN, "twilio_account_sid": provider::ACCOUNT_SID}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["telephony"]["twilio_auth_token"], json!({"set": true}));
    assert_eq!(
        body["telephony"]["twilio_account_sid"],
        provider::ACCOUNT_SID
    );
    assert!(
        !body.to_string().contains(AUTH_TOKEN),
        "the token is write-only"
    );
}

/// Posts a callback signed for the URL the client requests (Host = the test server).
async fn deliver(
    app: &TestApp,
    account: AccountId,
    params: &[(String, String)],
    signature: Option<String>,
) -> (StatusCode, String) {
    let path = format!("/webhooks/twilio/{account}/voice");
    let url = app.url(&path);
    let signature =
        signature.unwrap_or_else(|| twilio_signature(AUTH_TOKEN.as_bytes(), &url, params));
    let response = app
        .client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", signature)
        .body(encode(params))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

async fn calls_of(app: &TestApp, account: AccountId) -> Vec<Value> {
    let (_, list) = app
        .get(
            &app.admin,
            &format!("/api/v1/accounts/{account}/calls?limit=500"),
        )
        .await;
    list["items"].as_array().unwrap().clone()
}

fn without_volatile(mut call: Value) -> Value {
    for k in ["id", "created_at", "account_id"] {
        call.as_object_mut().unwrap().remove(k);
    }
    call
}

#[tokio::test]
async fn status_callbacks_build_one_call_whatever_the_order_and_repeats() {
    let app = TestApp::spawn().await;
    let (_, in_order) = app.tenant().await;
    let (_, shuffled) = app.tenant().await;
    for account in [in_order, shuffled] {
        set_token(&app, account).await;
    }
    let statuses = ["initiated", "ringing", "in-progress", "completed"];
    for status in statuses {
        let (code, body) = deliver(
            &app,
            in_order,
            &inbound(&sid(1), status, &uk_number(1)),
            None,
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{body}");
        assert!(body.contains("<Response></Response>"), "{body}");
    }
    // The same callbacks, late, repeated and reversed.
    for status in [
        "completed",
        "ringing",
        "completed",
        "initiated",
        "in-progress",
        "ringing",
    ] {
        let (code, _) = deliver(
            &app,
            shuffled,
            &inbound(&sid(1), status, &uk_number(1)),
            None,
        )
        .await;
        assert_eq!(code, StatusCode::OK);
    }
    // Before the call ends, its duration is unknown, not zero.
    let (_, ringing) = app.tenant().await;
    set_token(&app, ringing).await;
    for status in ["initiated", "ringing"] {
        deliver(
            &app,
            ringing,
            &inbound(&sid(9), status, &uk_number(9)),
            None,
        )
        .await;
    }
    let early = calls_of(&app, ringing).await.remove(0);
    assert_eq!(early["status"], "ringing");
    assert!(early["duration_s"].is_null(), "{early}");
    let a = calls_of(&app, in_order).await;
    let b = calls_of(&app, shuffled).await;
    assert_eq!((a.len(), b.len()), (1, 1), "one call per CallSid");
    assert_eq!(a[0]["status"], "completed");
    assert_eq!(a[0]["duration_s"], 95);
    assert_eq!(a[0]["started_at"], "2026-11-28T10:00:00Z");
    assert_eq!(a[0]["external_id"], sid(1));
    assert_eq!(a[0]["tracking_number"], us_number(1));
    assert_eq!(a[0]["caller"]["number"], uk_number(1));
    assert_eq!(a[0]["caller"]["name"], "Test Caller");
    assert_eq!(a[0]["caller"]["city"], "London");
    assert_eq!(a[0]["gdpr_scope"], true);
    assert_eq!(
        without_volatile(a[0].clone()),
        without_volatile(b[0].clone())
    );
}

#[tokio::test]
async fn unsigned_or_tampered_callbacks_are_refused_and_store_nothing() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let params = inbound(&sid(2), "completed", &uk_number(2));
    // No token set yet: nothing can be verified.
    let (code, body) = deliver(&app, account, &params, None).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("invalid_signature"), "{body}");
    set_token(&app, account).await;
    let url = app.url(&format!("/webhooks/twilio/{account}/voice"));
    let good = twilio_signature(AUTH_TOKEN.as_bytes(), &url, &params);
    let mut tampered = params.clone();
    tampered.iter_mut().find(|(k, _)| k == "From").unwrap().1 = uk_number(3);
    let cases: Vec<(&str, Vec<(String, String)>, Option<String>)> = vec![
        ("tampered body", tampered, Some(good.clone())),
        (
            "signed for another URL",
            params.clone(),
            Some(twilio_signature(
                AUTH_TOKEN.as_bytes(),
                &format!("{url}x"),
                &params,
            )),
        ),
        (
            "signed with another token",
            params.clone(),
            Some(twilio_signature(b"another-token", &url, &params)),
        ),
        ("garbage", params.clone(), Some("not base64 at all".into())),
    ];
    for (what, body_params, signature) in cases {
        let (code, body) = deliver(&app, account, &body_params, signature).await;
        assert_eq!(code, StatusCode::FORBIDDEN, "{what}: {body}");
        assert!(body.contains("invalid_signature"), "{what}: {body}");
    }
    let response = app
        .client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode(&params))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "missing header");
    assert!(calls_of(&app, account).await.is_empty(), "nothing stored");
    // Other bad requests.
    let response = app
        .client
        .post(&url)
        .header("content-type", "application/json")
        .header("x-twilio-signature", good.clone())
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let unknown = app.url(&format!("/webhooks/twilio/{}/voice", AccountId::generate()));
    let response = app
        .client
        .post(&unknown)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode(&params))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let no_sid: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "CallSid")
        .cloned()
        .collect();
    let (code, body) = deliver(&app, account, &no_sid, None).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body.contains("missing_field") && body.contains("CallSid"),
        "{body}"
    );
    // The real thing still works.
    let (code, _) = deliver(&app, account, &params, Some(good)).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(calls_of(&app, account).await.len(), 1);
}

#[tokio::test]
async fn a_signature_computed_independently_validates_behind_a_public_url() {
    let app = TestApp::spawn_with(|c| c.public_url = Some("https://calls.example".into())).await;
    let (_, account) = app.tenant().await;
    set_token(&app, account).await;
    let params = inbound(&sid(3), "ringing", &uk_number(3));
    let public = format!("https://calls.example/webhooks/twilio/{account}/voice");
    // Python's hmac, not ours.
    let script = "import sys,hmac,hashlib,base64,urllib.parse\n\
        token,url,body=sys.argv[1],sys.argv[2],sys.argv[3]\n\
        p=urllib.parse.parse_qsl(body,keep_blank_values=True)\n\
        s=url+''.join(k+v for k,v in sorted(p))\n\
        print(base64.b64encode(hmac.new(token.encode(),s.encode(),hashlib.sha1).digest()).decode())";
    let out = std::process::Command::new("python3")
        .args(["-c", script, AUTH_TOKEN, &public, &encode(&params)])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signature = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(
        signature,
        twilio_signature(AUTH_TOKEN.as_bytes(), &public, &params)
    );
    let (code, body) = deliver(&app, account, &params, Some(signature)).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    // Signed for the address the server was reached at, it no longer validates.
    let (code, _) = deliver(
        &app,
        account,
        &inbound(&sid(4), "ringing", &uk_number(4)),
        None,
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn withheld_international_legacy_and_minimised_callers() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    set_token(&app, account).await;
    for (n, from) in [(10u32, "anonymous"), (11, "+266696687")] {
        let (code, _) = deliver(&app, account, &inbound(&sid(n), "completed", from), None).await;
        assert_eq!(code, StatusCode::OK);
    }
    // An international caller (UK, to a US number) is in GDPR scope; a US one is not.
    let (code, _) = deliver(
        &app,
        account,
        &inbound(&sid(12), "completed", &uk_number(12)),
        None,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = deliver(
        &app,
        account,
        &inbound(&sid(13), "completed", &us_number(13)),
        None,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    // Only the legacy names.
    let legacy: Vec<(String, String)> = inbound(&sid(14), "completed", &uk_number(14))
        .into_iter()
        .filter(|(k, _)| {
            ![
                "From",
                "To",
                "FromCity",
                "FromState",
                "FromZip",
                "FromCountry",
            ]
            .contains(&k.as_str())
        })
        .chain([("CallerCity".to_owned(), "Leeds".to_owned())])
        .collect();
    let (code, body) = deliver(&app, account, &legacy, None).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let calls = calls_of(&app, account).await;
    let by_sid = |n: u32| {
        calls
            .iter()
            .find(|c| c["external_id"] == sid(n))
            .unwrap()
            .clone()
    };
    for n in [10, 11] {
        let c = by_sid(n);
        assert!(c["caller"]["number"].is_null(), "{c}");
        assert!(c["gdpr_scope"].is_null());
    }
    assert_eq!(by_sid(12)["gdpr_scope"], true);
    assert_eq!(by_sid(13)["gdpr_scope"], false);
    assert_eq!(by_sid(14)["caller"]["number"], uk_number(14));
    assert_eq!(by_sid(14)["caller"]["city"], "Leeds");
    assert_eq!(by_sid(14)["tracking_number"], us_number(1));

    // An account with the default collection settings keeps neither name nor location.
    let (_, minimal) = app.tenant().await;
    set_token(&app, minimal).await;
    let (status, _) = app
        .send(
            reqwest::Method::PUT,
            &app.admin,
            &format!("/api/v1/accounts/{minimal}/settings"),
            Some(json!({"collection": {"caller_name": false, "caller_location": false}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (code, _) = deliver(
        &app,
        minimal,
        &inbound(&sid(20), "completed", &uk_number(20)),
        None,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let c = calls_of(&app, minimal).await.remove(0);
    assert_eq!(c["caller"]["number"], uk_number(20));
    assert!(
        c["caller"]["name"].is_null()
            && c["caller"]["city"].is_null()
            && c["caller"]["country"].is_null(),
        "{c}"
    );
    // A caller who withdrew consent to their location does not get it back by the next callback.
    let (_, withdrawn) = app.tenant().await;
    set_token(&app, withdrawn).await;
    deliver(
        &app,
        withdrawn,
        &inbound(&sid(21), "ringing", &uk_number(21)),
        None,
    )
    .await;
    let (status, _) = app
        .post(&app.admin, &format!("/api/v1/accounts/{withdrawn}/consents"),
              json!({"subject": {"caller_number": uk_number(21)}, "category": "caller_location", "status": "withdrawn", "method": "verbal"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    deliver(
        &app,
        withdrawn,
        &inbound(&sid(21), "completed", &uk_number(21)),
        None,
    )
    .await;
    let c = calls_of(&app, withdrawn).await.remove(0);
    assert_eq!(c["status"], "completed");
    assert!(c["caller"]["city"].is_null(), "{c}");
}

#[tokio::test]
async fn webhook_data_never_reaches_a_file_in_plaintext() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    set_token(&app, account).await;
    let tag = ringfence_core::CallId::generate()
        .to_string()
        .replace('-', "");
    let marker = |w: &str| format!("CANARY{w}{tag}");
    let mut params = inbound(&sid(30), "completed", &uk_number(30));
    for (k, v) in params.iter_mut() {
        match k.as_str() {
            "CallerName" => *v = marker("NAME"),
            "FromCity" => *v = marker("CITY"),
            "FromZip" => *v = marker("ZIP"),
            "CallToken" => *v = marker("CALLTOKEN"),
            _ => {}
        }
    }
    params.push(("SomeFutureParameter".into(), marker("UNKNOWN")));
    let (code, body) = deliver(&app, account, &params, None).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let stored = calls_of(&app, account).await.remove(0);
    assert_eq!(
        stored["caller"]["name"],
        marker("NAME"),
        "stored and readable through the API"
    );
    app.resources.log.store().compact().await.unwrap();
    for needle in [
        marker("NAME"),
        marker("CITY"),
        marker("ZIP"),
        marker("CALLTOKEN"),
        marker("UNKNOWN"),
        AUTH_TOKEN.to_owned(),
    ] {
        let hits = files_containing(&app.data_dir(), needle.as_bytes());
        assert!(hits.is_empty(), "{needle} found in {hits:?}");
    }
    let digits = &uk_number(30)[1..];
    assert!(files_containing(&app.data_dir(), digits.as_bytes()).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Recording status callbacks and the download worker, against a provider served by the test.

mod provider {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;

    pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";

    #[derive(Default)]
    pub struct Seen {
        pub gets: BTreeMap<String, u32>,
        pub deletes: Vec<String>,
        pub bad_auth: u32,
    }

    #[derive(Clone)]
    struct Provider {
        seen: Arc<Mutex<Seen>>,
        audio: Arc<Vec<u8>>,
        password: String,
    }

    fn authorized(p: &Provider, headers: &HeaderMap) -> bool {
        use base64::Engine;
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{ACCOUNT_SID}:{}", p.password))
        );
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            == Some(expected.as_str())
    }

    async fn fetch(
        State(p): State<Provider>,
        Path(name): Path<String>,
        headers: HeaderMap,
    ) -> Response {
        let count = {
            let mut seen = p.seen.lock().unwrap();
            let c = seen.gets.entry(name.clone()).or_default();
            *c += 1;
            *c
        };
        if !authorized(&p, &headers) {
            p.seen.lock().unwrap().bad_auth += 1;
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let wav = |bytes: Vec<u8>| ([(header::CONTENT_TYPE, "audio/x-wav")], bytes).into_response();
        match name.as_str() {
            "missing" => StatusCode::NOT_FOUND.into_response(),
            "slow" => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                wav(p.audio.to_vec())
            }
            "huge" => wav(vec![7u8; 20_000]),
            "endless" => {
                // No length announced: the limit must stop it mid-stream.
                let chunks = futures::stream::iter(
                    (0..100).map(|_| Ok::<_, std::io::Error>(vec![9u8; 1000])),
                );
                (
                    [(header::CONTENT_TYPE, "audio/wav")],
                    Body::from_stream(chunks),
                )
                    .into_response()
            }
            "flaky" if count <= 2 => StatusCode::SERVICE_UNAVAILABLE.into_response(),
            _ => wav(p.audio.to_vec()),
        }
    }

    async fn delete(
        State(p): State<Provider>,
        Path(name): Path<String>,
        headers: HeaderMap,
    ) -> StatusCode {
        if !authorized(&p, &headers) {
            return StatusCode::UNAUTHORIZED;
        }
        p.seen.lock().unwrap().deletes.push(name);
        StatusCode::NO_CONTENT
    }

    /// Starts the provider; answers its base URL and what it saw.
    pub async fn start(audio: Vec<u8>, password: &str) -> (String, Arc<Mutex<Seen>>) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let state = Provider {
            seen: seen.clone(),
            audio: Arc::new(audio),
            password: password.to_owned(),
        };
        let app = Router::new()
            .route("/rec/{name}", get(fetch).delete(delete))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (base, seen)
    }
}

fn recording_params(call: &str, recording: &str, url: &str, status: &str) -> Vec<(String, String)> {
    [
        ("AccountSid", provider::ACCOUNT_SID),
        ("CallSid", call),
        ("RecordingSid", recording),
        ("RecordingUrl", url),
        ("RecordingStatus", status),
        ("RecordingDuration", "95"),
        ("RecordingChannels", "1"),
        ("RecordingSource", "DialVerb"),
        ("RecordingTrack", "both"),
        ("RecordingStartTime", "Sat, 28 Nov 2026 10:00:00 +0000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

async fn deliver_recording(
    app: &TestApp,
    account: AccountId,
    params: &[(String, String)],
) -> (StatusCode, String) {
    let url = app.url(&format!("/webhooks/twilio/{account}/recording"));
    let response = app
        .client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "x-twilio-signature",
            twilio_signature(AUTH_TOKEN.as_bytes(), &url, params),
        )
        .body(encode(params))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

/// Twilio's media hosts, plus the test provider on 127.0.0.1 with local fetching enabled
/// (`--twilio-media-hosts …,127.0.0.1 --allow-local-fetch`).
fn local_media() -> MediaHosts {
    let mut media = MediaHosts::default();
    media.hosts.push("127.0.0.1".into());
    media.allow_local = true;
    media
}

/// A server that takes recording URLs on the local test provider.
async fn provider_app() -> TestApp {
    TestApp::spawn_with(|c| c.twilio_media = local_media()).await
}

fn downloader(media: MediaHosts) -> ringfence_jobs::downloads::Downloader {
    let mut d = ringfence_jobs::downloads::Downloader::new(
        std::time::Duration::from_secs(1),
        10_000,
        media,
    )
    .unwrap();
    d.max_attempts = 3;
    d.backoff = std::time::Duration::from_secs(60);
    d
}

/// Runs the worker as if `seconds` had passed, so retries come due.
async fn work(app: &TestApp, seconds: i64) -> ringfence_jobs::downloads::DownloadReport {
    work_with(app, seconds, local_media()).await
}

async fn work_with(
    app: &TestApp,
    seconds: i64,
    media: MediaHosts,
) -> ringfence_jobs::downloads::DownloadReport {
    let now = ringfence_core::timestamp::Timestamp::from_millis(
        ringfence_core::timestamp::Timestamp::now().millis() + seconds * 1000,
    );
    ringfence_jobs::downloads::run_due(&app.resources.log, &downloader(media), now)
        .await
        .unwrap()
}

async fn state_of(app: &TestApp, account: AccountId, recording: &str) -> (String, String) {
    let jobs = app.resources.log.store().downloads(account).await.unwrap();
    let job = jobs
        .iter()
        .find(|j| j.recording_sid == recording)
        .expect("queued");
    (job.state.clone(), job.outcome.clone().unwrap_or_default())
}

#[tokio::test]
async fn completed_recordings_are_downloaded_sealed_and_the_providers_copy_deleted() {
    let app = provider_app().await;
    let (_, account) = app.tenant().await;
    set_token(&app, account).await;
    let (status, _) = app
        .send(
            reqwest::Method::PUT,
            &app.admin,
            &format!("/api/v1/accounts/{account}/settings"),
            Some(json!({"telephony": {"delete_provider_recordings": true}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let audio = {
        let mut a = b"RIFF".to_vec();
        while a.len() < 4000 {
            a.extend_from_slice(b"CANARY-PROVIDER-AUDIO-");
        }
        a
    };
    let (base, seen) = provider::start(audio.clone(), AUTH_TOKEN).await;
    deliver(
        &app,
        account,
        &inbound(&sid(40), "completed", &uk_number(40)),
        None,
    )
    .await;
    let ok = format!("{base}/rec/ok");
    // In progress: nothing queued. Completed, twice: queued once.
    let (code, _) = deliver_recording(
        &app,
        account,
        &recording_params(&sid(40), "RE40", &ok, "in-progress"),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        app.resources
            .log
            .store()
            .downloads(account)
            .await
            .unwrap()
            .is_empty()
    );
    for _ in 0..2 {
        let (code, body) = deliver_recording(
            &app,
            account,
            &recording_params(&sid(40), "RE40", &ok, "completed"),
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{body}");
    }
    assert_eq!(
        app.resources
            .log
            .store()
            .downloads(account)
            .await
            .unwrap()
            .len(),
        1
    );
    let report = work(&app, 0).await;
    assert_eq!(report.downloaded, 1, "{report:?}");
    assert_eq!(
        state_of(&app, account, "RE40").await,
        ("done".into(), "stored; the provider's copy deleted".into())
    );
    let call = calls_of(&app, account).await.remove(0);
    assert_eq!(call["recording"]["bytes"], audio.len());
    assert_eq!(call["recording"]["content_type"], "audio/x-wav");
    let played = app
        .download_recording(&app.admin, call["id"].as_str().unwrap(), None)
        .await;
    assert_eq!(played.bytes().await.unwrap().to_vec(), audio);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.deletes, ["ok"]);
        assert_eq!(
            seen.bad_auth, 0,
            "basic auth with the account's credentials"
        );
    }
    // Nothing more to do; the journal tells what happened.
    assert_eq!(work(&app, 10).await, Default::default());
    let journal = all_audit(&app, 200).await;
    assert!(
        journal
            .iter()
            .any(|e| e["action"] == "recording.downloaded" && e["subject"] == "RE40")
    );
    app.resources.log.store().compact().await.unwrap();
    assert!(files_containing(&app.data_dir(), b"CANARY-PROVIDER-AUDIO-").is_empty());
}

#[tokio::test]
async fn failures_retry_with_backoff_and_end_cleanly() {
    let app = provider_app().await;
    let (_, account) = app.tenant().await;
    set_token(&app, account).await;
    let (base, seen) = provider::start(b"RIFF-flaky-audio".to_vec(), AUTH_TOKEN).await;
    for (n, name) in [
        (50u32, "slow"),
        (51, "missing"),
        (52, "huge"),
        (53, "endless"),
        (54, "flaky"),
    ] {
        deliver(
            &app,
            account,
            &inbound(&sid(n), "completed", &uk_number(n as u16)),
            None,
        )
        .await;
        let (code, body) = deliver_recording(
            &app,
            account,
            &recording_params(
                &sid(n),
                &format!("RE{n}"),
                &format!("{base}/rec/{name}"),
                "completed",
            ),
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{body}");
    }
    // First pass: the oversized ones fail at once; the others are retried.
    let first = work(&app, 0).await;
    assert_eq!((first.failed, first.retried), (2, 3), "{first:?}");
    assert_eq!(
        state_of(&app, account, "RE50").await,
        ("pending".into(), "the provider timed out".into())
    );
    assert_eq!(
        state_of(&app, account, "RE51").await,
        (
            "pending".into(),
            "the provider answered 404 Not Found".into()
        )
    );
    assert_eq!(state_of(&app, account, "RE52").await.0, "failed");
    assert_eq!(state_of(&app, account, "RE53").await.0, "failed");
    // Not due again before the backoff.
    assert_eq!(work(&app, 0).await, Default::default());
    // Second pass (after the 60 s backoff): flaky fails once more; third pass (after the
    // doubled 120 s): it works.
    work(&app, 61).await;
    let third = work(&app, 200).await;
    assert_eq!(third.downloaded, 1, "{third:?}");
    assert_eq!(state_of(&app, account, "RE54").await.0, "done");
    assert_eq!(seen.lock().unwrap().gets["flaky"], 3);
    // The slow and missing ones gave up after 3 attempts.
    assert_eq!(state_of(&app, account, "RE50").await.0, "failed");
    assert_eq!(state_of(&app, account, "RE51").await.0, "failed");
    assert_eq!(seen.lock().unwrap().gets["missing"], 3);
    // Failed downloads left no recording and no file behind.
    let calls = calls_of(&app, account).await;
    let with_recording: Vec<_> = calls.iter().filter(|c| !c["recording"].is_null()).collect();
    assert_eq!(with_recording.len(), 1);
    assert_eq!(files_below(&app.data_dir().join("recordings")).len(), 1);
}

#[tokio::test]
async fn recordings_that_may_not_be_kept_are_never_downloaded() {
    let app = provider_app().await;
    let (_, account) = app.tenant().await;
    set_token(&app, account).await;
    let (status, _) = app
        .send(
            reqwest::Method::PUT,
            &app.admin,
            &format!("/api/v1/accounts/{account}/settings"),
            Some(json!({"collection": {"recording_gdpr": "opt_in", "recording_other": "off"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (base, seen) = provider::start(b"RIFF-consent-audio".to_vec(), AUTH_TOKEN).await;
    // A UK caller without consent, a US caller under "off", and a UK caller who consented.
    deliver(
        &app,
        account,
        &inbound(&sid(60), "completed", &uk_number(60)),
        None,
    )
    .await;
    deliver(
        &app,
        account,
        &inbound(&sid(61), "completed", &us_number(61)),
        None,
    )
    .await;
    let mut consenting = inbound(&sid(62), "completed", &uk_number(62));
    consenting.push(("Digits".into(), "1".into()));
    deliver(&app, account, &consenting, None).await;
    let (status, _) = app
        .post(&app.admin, &format!("/api/v1/accounts/{account}/consents"),
              json!({"subject": {"caller_number": uk_number(62)}, "category": "recording", "status": "granted", "method": "ivr_keypress"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for (n, name) in [(60u32, "no-consent"), (61, "off"), (62, "consented")] {
        deliver_recording(
            &app,
            account,
            &recording_params(
                &sid(n),
                &format!("RE{n}"),
                &format!("{base}/rec/{name}"),
                "completed",
            ),
        )
        .await;
    }
    // The recording callback can overtake the call: the download waits for it.
    deliver_recording(
        &app,
        account,
        &recording_params(&sid(63), "RE63", &format!("{base}/rec/late"), "completed"),
    )
    .await;
    let report = work(&app, 0).await;
    assert_eq!(
        (report.downloaded, report.skipped, report.retried),
        (1, 2, 1),
        "{report:?}"
    );
    assert_eq!(
        state_of(&app, account, "RE60").await,
        (
            "skipped".into(),
            "the caller has not consented to recording".into()
        )
    );
    assert_eq!(
        state_of(&app, account, "RE61").await,
        (
            "skipped".into(),
            "the account does not record such calls".into()
        )
    );
    assert_eq!(
        state_of(&app, account, "RE63").await,
        ("pending".into(), "the call has not arrived yet".into())
    );
    {
        let seen = seen.lock().unwrap();
        assert!(
            !seen.gets.contains_key("no-consent") && !seen.gets.contains_key("off"),
            "never fetched: {:?}",
            seen.gets
        );
        assert_eq!(seen.gets["consented"], 1);
    }
    let mut us = inbound(&sid(63), "completed", &us_number(63));
    us.retain(|(k, _)| k != "CallerName");
    deliver(&app, account, &us, None).await;
    // US callers are "off" here: now that the call is known, it is skipped, still unfetched.
    work(&app, 61).await;
    assert_eq!(state_of(&app, account, "RE63").await.0, "skipped");
    assert!(!seen.lock().unwrap().gets.contains_key("late"));
}

#[tokio::test]
async fn bad_recording_callbacks_and_wrong_credentials() {
    let app = provider_app().await;
    let (_, account) = app.tenant().await;
    set_token(&app, account).await;
    let (code, body) = deliver_recording(
        &app,
        account,
        &recording_params(&sid(70), "RE70", "http://example.com/rec", "completed"),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("RecordingUrl"), "{body}");
    let mut no_sid = recording_params(
        &sid(70),
        "RE70",
        "https://api.twilio.com/rec/RE70",
        "completed",
    );
    no_sid.retain(|(k, _)| k != "RecordingSid");
    let (code, body) = deliver_recording(&app, account, &no_sid).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let url = app.url(&format!("/webhooks/twilio/{account}/recording"));
    let response = app
        .client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode(&recording_params(
            &sid(70),
            "RE70",
            "https://api.twilio.com/rec/RE70",
            "completed",
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        app.resources
            .log
            .store()
            .downloads(account)
            .await
            .unwrap()
            .is_empty(),
        "nothing queued"
    );
    // The provider refuses our credentials: no point retrying.
    let (base, seen) = provider::start(b"RIFF".to_vec(), "a-different-token").await;
    deliver(
        &app,
        account,
        &inbound(&sid(71), "completed", &uk_number(71)),
        None,
    )
    .await;
    deliver_recording(
        &app,
        account,
        &recording_params(&sid(71), "RE71", &format!("{base}/rec/ok"), "completed"),
    )
    .await;
    let report = work(&app, 0).await;
    assert_eq!(report.failed, 1, "{report:?}");
    assert_eq!(
        state_of(&app, account, "RE71").await,
        (
            "failed".into(),
            "the provider refused the credentials (401 Unauthorized)".into()
        )
    );
    assert_eq!(seen.lock().unwrap().bad_auth, 1);
}

#[tokio::test]
async fn every_final_status_is_stored_as_sent() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    set_token(&app, account).await;
    let finals = ["completed", "busy", "no-answer", "canceled", "failed"];
    for (i, status) in finals.iter().enumerate() {
        let n = 80 + i as u32;
        for step in ["queued", "initiated", "ringing", status] {
            let mut params = inbound(&sid(n), step, &uk_number(n as u16));
            if step != "completed" {
                params.retain(|(k, _)| k != "CallDuration");
            }
            let (code, body) = deliver(&app, account, &params, None).await;
            assert_eq!(code, StatusCode::OK, "{status}/{step}: {body}");
        }
    }
    let calls = calls_of(&app, account).await;
    assert_eq!(calls.len(), finals.len());
    for (i, status) in finals.iter().enumerate() {
        let call = calls
            .iter()
            .find(|c| c["external_id"] == sid(80 + i as u32))
            .unwrap();
        assert_eq!(call["status"], *status);
        // A late "ringing" never undoes a final status.
        let (code, _) = deliver(
            &app,
            account,
            &inbound(&sid(80 + i as u32), "ringing", &uk_number(80 + i as u16)),
            None,
        )
        .await;
        assert_eq!(code, StatusCode::OK);
    }
    for (i, status) in finals.iter().enumerate() {
        let call = calls_of(&app, account)
            .await
            .into_iter()
            .find(|c| c["external_id"] == sid(80 + i as u32))
            .unwrap();
        assert_eq!(call["status"], *status);
    }
}

/// What the test provider's trap answers: a small recording.
fn wav_answer() -> TrapAnswer {
    TrapAnswer::Raw(
        "HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\nContent-Length: 8\r\nConnection: close\r\n\r\nRIFFtrap"
            .into(),
    )
}

/// Queues a download straight in the store, as a callback accepted before the rules (or
/// before a settings change) would have.
async fn queue_directly(app: &TestApp, account: AccountId, recording: &str, url: &str, sid: &str) {
    let now = ringfence_core::timestamp::Timestamp::now();
    app.resources
        .log
        .store()
        .enqueue_download(ringfence_store::DownloadJob {
            id: uuid::Uuid::now_v7().to_string(),
            account_id: account,
            call_sid: self::sid(95),
            recording_sid: recording.into(),
            url: url.into(),
            provider_account: sid.into(),
            state: "pending".into(),
            attempts: 0,
            next_attempt_at: now,
            outcome: None,
            created_at: now,
        })
        .await
        .unwrap();
}

fn with_account_sid(mut params: Vec<(String, String)>, sid: &str) -> Vec<(String, String)> {
    for (k, v) in &mut params {
        if k == "AccountSid" {
            *v = sid.into();
        }
    }
    params
}

const OTHER_ACCOUNT_SID: &str = "ACfedcba9876543210fedcba9876543210";

#[tokio::test]
async fn recording_urls_off_the_media_hosts_or_on_local_addresses_are_refused_and_never_fetched() {
    let trap = Trap::start(wav_answer()).await;
    // Loopback is listed, but local fetching is off: it is refused like any other place.
    let mut media = MediaHosts::default();
    media.hosts.extend(["127.0.0.1".into(), "localhost".into()]);
    let app = TestApp::spawn_with({
        let media = media.clone();
        move |c| c.twilio_media = media
    })
    .await;
    let (_, account) = app.tenant().await;
    set_token(&app, account).await;
    deliver(
        &app,
        account,
        &inbound(&sid(95), "completed", &uk_number(95)),
        None,
    )
    .await;
    let p = trap.port;
    for url in [
        format!("http://127.0.0.1:{p}/rec/RE95"),
        format!("https://127.0.0.1:{p}/rec/RE95"),
        format!("https://localhost:{p}/rec/RE95"),
        format!("http://[::1]:{p}/rec/RE95"),
        format!("http://[::ffff:127.0.0.1]:{p}/rec/RE95"),
        "https://10.0.0.1/rec/RE95".into(),
        "https://169.254.169.254/latest/meta-data/".into(),
        "https://[fd00::1]/rec/RE95".into(),
        "https://recordings.example.com/rec/RE95".into(),
        "https://api.twilio.com.example.com/rec/RE95".into(),
    ] {
        let (code, body) = deliver_recording(
            &app,
            account,
            &recording_params(&sid(95), "RE95", &url, "completed"),
        )
        .await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
        assert!(body.contains("RecordingUrl"), "{url}: {body}");
    }
    assert!(
        app.resources
            .log
            .store()
            .downloads(account)
            .await
            .unwrap()
            .is_empty(),
        "nothing queued"
    );
    // A job already queued for such a URL is refused by the worker before any request.
    queue_directly(
        &app,
        account,
        "RE96",
        &format!("http://127.0.0.1:{p}/rec/RE96"),
        provider::ACCOUNT_SID,
    )
    .await;
    let report = work_with(&app, 0, media).await;
    assert_eq!(report.failed, 1, "{report:?}");
    assert_eq!(
        state_of(&app, account, "RE96").await,
        (
            "failed".into(),
            "the recording URL is not on an allowed media host".into()
        )
    );
    assert_eq!(trap.connections(), 0, "nothing reached the listener");
    assert_eq!(trap.authorizations(), 0);
}

#[tokio::test]
async fn a_redirect_off_the_media_hosts_is_not_followed() {
    let target = Trap::start(wav_answer()).await;
    let redirector = Trap::start(TrapAnswer::Raw(format!(
        "HTTP/1.1 302 Found\r\nLocation: http://localhost:{}/rec/RE97\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        target.port
    )))
    .await;
    let app = provider_app().await;
    let (_, account) = app.tenant().await;
    set_token(&app, account).await;
    deliver(
        &app,
        account,
        &inbound(&sid(97), "completed", &uk_number(97)),
        None,
    )
    .await;
    let url = format!("http://127.0.0.1:{}/rec/RE97", redirector.port);
    let (code, body) = deliver_recording(
        &app,
        account,
        &recording_params(&sid(97), "RE97", &url, "completed"),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let report = work(&app, 0).await;
    assert_eq!(report.failed, 1, "{report:?}");
    assert_eq!(
        state_of(&app, account, "RE97").await,
        (
            "failed".into(),
            "the provider redirected off the allowed media hosts".into()
        )
    );
    assert_eq!(redirector.connections(), 1);
    assert_eq!(
        redirector.authorizations(),
        1,
        "the credentials went to the listed host"
    );
    assert_eq!(target.connections(), 0, "the redirect was not followed");
    assert!(calls_of(&app, account).await[0]["recording"].is_null());
}

#[tokio::test]
async fn the_auth_token_is_sent_only_for_the_accounts_own_account_sid() {
    let trap = Trap::start(wav_answer()).await;
    let app = provider_app().await;
    let (_, account) = app.tenant().await;
    let settings = format!("/api/v1/accounts/{account}/settings");
    // The auth token alone: callbacks are still checked, but nothing is downloaded.
    let (status, body) = app
        .send(
            reqwest::Method::PUT,
            &app.admin,
            &settings,
            Some(json!({"telephony": {"twilio_auth_token": AUTH_TOKEN}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["telephony"]["twilio_account_sid"].is_null());
    deliver(
        &app,
        account,
        &inbound(&sid(98), "completed", &uk_number(98)),
        None,
    )
    .await;
    let url = format!("http://127.0.0.1:{}/rec/RE98", trap.port);
    let (code, body) = deliver_recording(
        &app,
        account,
        &recording_params(&sid(98), "RE98", &url, "completed"),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(work(&app, 0).await.failed, 1);
    assert_eq!(
        state_of(&app, account, "RE98").await,
        (
            "failed".into(),
            "the account has no Twilio Account SID".into()
        )
    );
    // A job queued meanwhile for another Account SID.
    queue_directly(&app, account, "RE99", &url, OTHER_ACCOUNT_SID).await;
    // The SID is validated.
    for bad in [
        "AC123",
        "XX0123456789abcdef0123456789abcdef",
        "ACg123456789abcdef0123456789abcdef",
        "AC0123456789abcdef0123456789abcdef0",
    ] {
        let (status, body) = app
            .send(
                reqwest::Method::PUT,
                &app.admin,
                &settings,
                Some(json!({"telephony": {"twilio_account_sid": bad}})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert!(body.to_string().contains("telephony.twilio_account_sid"));
    }
    let (status, body) = app
        .send(
            reqwest::Method::PUT,
            &app.admin,
            &settings,
            Some(json!({"telephony": {"twilio_account_sid": provider::ACCOUNT_SID}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["telephony"]["twilio_account_sid"],
        provider::ACCOUNT_SID
    );
    // A callback naming another SID is refused and queues nothing.
    let (code, body) = deliver_recording(
        &app,
        account,
        &with_account_sid(
            recording_params(&sid(98), "RE100", &url, "completed"),
            OTHER_ACCOUNT_SID,
        ),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("AccountSid"), "{body}");
    // The job queued for the other SID is refused by the worker.
    assert_eq!(work(&app, 0).await.failed, 1);
    assert_eq!(
        state_of(&app, account, "RE99").await,
        (
            "failed".into(),
            "the callback's AccountSid is not the account's".into()
        )
    );
    let jobs = app.resources.log.store().downloads(account).await.unwrap();
    assert_eq!(jobs.len(), 2, "RE100 was never queued");
    assert_eq!(trap.connections(), 0, "nothing reached the listener");
    assert_eq!(trap.authorizations(), 0, "no credential was sent");
}
