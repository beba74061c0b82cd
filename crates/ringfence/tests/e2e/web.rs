//! The web interface over plain HTTP: sign-in, sessions, CSRF, lockout, session fixation,
//! tenant isolation by URL, masking, and the CLI that creates users.

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use ringfence_core::access::{Role, Scope};
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, AgencyId};

use crate::common::*;

pub const PASSWORD: &str = "correct horse battery staple";

pub(crate) trait WithForm {
    fn with_form(self, pairs: &[(&str, &str)]) -> Self;
}

impl WithForm for reqwest::RequestBuilder {
    fn with_form(self, pairs: &[(&str, &str)]) -> Self {
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(pairs).unwrap())
    }
}

/// A client that never follows redirects, so each answer can be inspected.
pub(crate) fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub async fn web_user(app: &TestApp, email: &str, role: Role, scope: Scope, personal_data: bool) {
    app.resources
        .log
        .create_user(
            email,
            zeroize::Zeroizing::new(PASSWORD.to_owned()),
            role,
            scope,
            personal_data,
            "test".into(),
        )
        .await
        .expect("user");
}

pub fn account_scope(agency: AgencyId, account: AccountId) -> Scope {
    Scope::Account { agency, account }
}

/// The value of cookie `name` set by a response, if any.
pub(crate) fn set_cookie(response: &reqwest::Response, name: &str) -> Option<(String, String)> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| {
            let value = v[name.len() + 1..]
                .split(';')
                .next()
                .unwrap_or("")
                .to_owned();
            (value, v.to_owned())
        })
}

/// The CSRF token of a page's forms.
pub(crate) fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a csrf field") + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

pub(crate) struct Signed {
    pub(crate) client: reqwest::Client,
    pub(crate) base: String,
    pub(crate) cookie: String,
}

impl Signed {
    pub(crate) async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .header(COOKIE, format!("rf_session={}", self.cookie))
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    pub(crate) async fn post(&self, path: &str, form: &[(&str, &str)]) -> (StatusCode, String) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header(COOKIE, format!("rf_session={}", self.cookie))
            .with_form(form)
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    /// A page's CSRF token.
    pub(crate) async fn csrf(&self) -> String {
        let (status, html) = self.get("/").await;
        assert!(
            status.is_success() || status == StatusCode::SEE_OTHER,
            "{status}"
        );
        if status == StatusCode::SEE_OTHER {
            let r = self
                .client
                .get(format!("{}/", self.base))
                .header(COOKIE, format!("rf_session={}", self.cookie))
                .send()
                .await
                .unwrap();
            let to = r.headers()[LOCATION].to_str().unwrap().to_owned();
            return csrf_of(&self.get(&to).await.1);
        }
        csrf_of(&html)
    }
}

/// Signs in through the form (with its double-submit cookie); answers the response.
pub(crate) async fn sign_in_raw(
    app: &TestApp,
    email: &str,
    password: &str,
    extra_cookie: Option<&str>,
) -> reqwest::Response {
    let client = browser();
    let page = client.get(app.url("/login")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let (login_cookie, _) = set_cookie(&page, "rf_login").expect("login cookie");
    let csrf = csrf_of(&page.text().await.unwrap());
    let mut cookies = format!("rf_login={login_cookie}");
    if let Some(extra) = extra_cookie {
        cookies.push_str("; ");
        cookies.push_str(extra);
    }
    client
        .post(app.url("/login"))
        .header(COOKIE, cookies)
        .with_form(&[
            ("csrf", csrf.as_str()),
            ("email", email),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

pub(crate) async fn sign_in(app: &TestApp, email: &str) -> Signed {
    let r = sign_in_raw(app, email, PASSWORD, None).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (cookie, _) = set_cookie(&r, "rf_session").expect("session cookie");
    Signed {
        client: browser(),
        base: app.address.clone(),
        cookie,
    }
}

#[tokio::test]
async fn a_user_signs_in_sees_the_call_log_and_signs_out() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    app.ingest(account, full_call(1)).await;
    web_user(
        &app,
        "ada@example.com",
        Role::AccountAdmin,
        account_scope(agency, account),
        true,
    )
    .await;

    let r = sign_in_raw(&app, "Ada@Example.com ", PASSWORD, None).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (cookie, header) = set_cookie(&r, "rf_session").unwrap();
    assert_eq!(cookie.len(), 43, "256 random bits, base64url");
    assert!(
        header.contains("HttpOnly") && header.contains("SameSite=Lax"),
        "{header}"
    );
    assert!(
        !header.contains("Secure"),
        "no Secure flag without TLS: {header}"
    );
    let user = Signed {
        client: browser(),
        base: app.address.clone(),
        cookie,
    };

    let home = user
        .client
        .get(app.url("/"))
        .header(COOKIE, format!("rf_session={}", user.cookie))
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        home.headers()[LOCATION],
        format!("/ui/accounts/{account}/calls").as_str()
    );

    let page = user
        .client
        .get(app.url(&format!("/ui/accounts/{account}/calls")))
        .header(COOKIE, format!("rf_session={}", user.cookie))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    assert!(
        html.contains(&uk_number(1)),
        "an account admin sees the number"
    );
    assert!(html.contains("Google Ads"), "sources read as words");

    let csrf = csrf_of(&html);
    let (status, _) = user.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _) = user.get(&format!("/ui/accounts/{account}/calls")).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "the session ended");
    app.stop().await;
}

/// A sign-in attempt from loopback address `127.0.0.<host>` (each its own client to the
/// throttle), with extra cookies.
async fn sign_in_from(
    app: &TestApp,
    host: u8,
    email: &str,
    password: &str,
    extra_cookie: Option<&str>,
) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(std::net::IpAddr::from([127, 0, 0, host]))
        .build()
        .unwrap();
    let page = client.get(app.url("/login")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let (login_cookie, _) = set_cookie(&page, "rf_login").expect("login cookie");
    let csrf = csrf_of(&page.text().await.unwrap());
    let mut cookies = format!("rf_login={login_cookie}");
    if let Some(extra) = extra_cookie {
        cookies.push_str("; ");
        cookies.push_str(extra);
    }
    client
        .post(app.url("/login"))
        .header(COOKIE, cookies)
        .with_form(&[
            ("csrf", csrf.as_str()),
            ("email", email),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

/// The status and the page without its per-request CSRF token.
pub(crate) async fn answer_of(r: reqwest::Response) -> (StatusCode, Option<String>, String) {
    let status = r.status();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let html = r.text().await.unwrap();
    let csrf = csrf_of(&html);
    (status, retry, html.replace(&csrf, "CSRF"))
}

#[tokio::test]
async fn known_and_unknown_addresses_get_the_same_answers_as_failures_slow_them_down() {
    // Delays of a minute and more, so none runs out while the test looks at it.
    let app = TestApp::spawn_with(|c| c.sign_in_first_delay_ms = 60_000).await;
    let (agency, account) = app.tenant().await;
    web_user(
        &app,
        "bob@example.com",
        Role::AccountAdmin,
        account_scope(agency, account),
        true,
    )
    .await;
    // The same sequence of wrong passwords against an address with a user (from one
    // client) and one without (from another): answer for answer the same, including when
    // the delays begin.
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..6 {
        known.push(
            answer_of(sign_in_from(&app, 11, "bob@example.com", "not the password", None).await)
                .await,
        );
        unknown.push(
            answer_of(sign_in_from(&app, 12, "nobody@example.com", "not the password", None).await)
                .await,
        );
    }
    assert_eq!(known, unknown);
    let statuses: Vec<StatusCode> = known.iter().map(|(s, _, _)| *s).collect();
    assert_eq!(
        &statuses[..4],
        &[StatusCode::UNPROCESSABLE_ENTITY; 4],
        "three free failures, then a delay"
    );
    assert_eq!(statuses[4], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
    let (_, retry, html) = &known[4];
    assert_eq!(retry.as_deref(), Some("60"));
    assert!(html.contains("try again in 60 seconds"), "{html}");
    assert!(
        !html.contains("bob@example.com") && !html.contains("locked"),
        "no address echoed, no lock"
    );
    app.stop().await;
}

#[tokio::test]
async fn failures_made_elsewhere_never_lock_the_owner_out() {
    // Delays of a minute and more (caps: the address alone 30 minutes, here standing for
    // half a minute), so none runs out while the test looks at it.
    let app = TestApp::spawn_with(|c| c.sign_in_first_delay_ms = 60_000).await;
    let (agency, account) = app.tenant().await;
    web_user(
        &app,
        "bob@example.com",
        Role::AccountAdmin,
        account_scope(agency, account),
        true,
    )
    .await;
    // Bob signs in once from his browser, which keeps its device cookie.
    let first = sign_in_from(&app, 21, "bob@example.com", PASSWORD, None).await;
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let (device, _) = set_cookie(&first, "rf_device").expect("device cookie");
    // An attacker from eight clients makes 24 wrong guesses at his address: after ten the
    // address is slowed down wherever the guesses come from.
    let mut throttled = 0;
    for host in 30..38 {
        for _ in 0..3 {
            let r = sign_in_from(&app, host, "bob@example.com", "guess", None).await;
            match r.status() {
                StatusCode::UNPROCESSABLE_ENTITY => {}
                StatusCode::TOO_MANY_REQUESTS => throttled += 1,
                other => panic!("{other}"),
            }
        }
    }
    assert_eq!(
        throttled, 13,
        "eleven failures counted, then every guess waits"
    );
    // From a browser without the cookie the wait is at most the address's cap (half a
    // minute with the standard delays), never a lock;
    let r = sign_in_from(&app, 23, "bob@example.com", PASSWORD, None).await;
    let (status, retry, _) = answer_of(r).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!(
        (1..=30 * 60).contains(&retry),
        "waits {retry} s: at most the address's cap (30 first delays)"
    );
    // and the right password gets Bob in at once from his browser, even from a new
    // network address.
    let r = sign_in_from(
        &app,
        22,
        "bob@example.com",
        PASSWORD,
        Some(&format!("rf_device={device}")),
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "the owner's browser gets in"
    );
    assert!(set_cookie(&r, "rf_session").is_some());
    app.stop().await;
}

#[tokio::test]
async fn forms_without_the_sessions_csrf_token_are_refused_and_change_nothing() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let call = app.ingest(account, full_call(2)).await;
    web_user(
        &app,
        "carol@example.com",
        Role::AccountAdmin,
        account_scope(agency, account),
        true,
    )
    .await;

    // The sign-in form itself: no double-submit cookie, or a different one.
    let client = browser();
    let r = client
        .post(app.url("/login"))
        .with_form(&[
            ("csrf", "forged"),
            ("email", "carol@example.com"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("csrf_failed"));
    let r = client
        .post(app.url("/login"))
        .header(COOKIE, "rf_login=one-value")
        .with_form(&[
            ("csrf", "another-value"),
            ("email", "carol@example.com"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let user = sign_in(&app, "carol@example.com").await;
    let path = format!("/ui/calls/{call}/redact");
    for form in [vec![], vec![("csrf", "wrong-token")]] {
        let (status, html) = user.post(&path, &form).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{html}");
        assert!(html.contains("csrf_failed") && html.contains("<h1>"));
    }
    let (_, call_json) = app.get(&app.admin, &format!("/api/v1/calls/{call}")).await;
    assert!(call_json["redaction"].is_null(), "nothing was redacted");
    let (status, _) = user.post("/logout", &[]).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "another site cannot sign a user out"
    );

    // The htmx way: the token in the X-CSRF-Token header.
    let csrf = user.csrf().await;
    let r = user
        .client
        .post(app.url(&path))
        .header(COOKIE, format!("rf_session={}", user.cookie))
        .header("x-csrf-token", csrf)
        .header("hx-request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("Redaction done"));
    let (_, call_json) = app.get(&app.admin, &format!("/api/v1/calls/{call}")).await;
    assert_eq!(call_json["redaction"]["reason"], "manual");
    assert!(
        call_json["redaction"]["by"]
            .as_str()
            .unwrap()
            .starts_with("user:")
    );
    app.stop().await;
}

#[tokio::test]
async fn a_session_id_planted_before_sign_in_never_becomes_a_signed_in_session() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    web_user(
        &app,
        "dan@example.com",
        Role::AccountAdmin,
        account_scope(agency, account),
        true,
    )
    .await;
    web_user(
        &app,
        "erin@example.com",
        Role::AccountAdmin,
        account_scope(agency, account),
        true,
    )
    .await;

    let planted = "attacker-chosen-session-value-0000000000000";
    let r = sign_in_raw(
        &app,
        "dan@example.com",
        PASSWORD,
        Some(&format!("rf_session={planted}")),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (fresh, _) = set_cookie(&r, "rf_session").unwrap();
    assert_ne!(fresh, planted);
    let attacker = Signed {
        client: browser(),
        base: app.address.clone(),
        cookie: planted.into(),
    };
    let (status, _) = attacker.get(&format!("/ui/accounts/{account}/calls")).await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "the planted id is not signed in"
    );

    // Signing in again from a signed-in browser ends the previous session.
    let r = sign_in_raw(
        &app,
        "erin@example.com",
        PASSWORD,
        Some(&format!("rf_session={fresh}")),
    )
    .await;
    let (second, _) = set_cookie(&r, "rf_session").unwrap();
    assert_ne!(second, fresh);
    let old = Signed {
        client: browser(),
        base: app.address.clone(),
        cookie: fresh,
    };
    assert_eq!(
        old.get(&format!("/ui/accounts/{account}/calls")).await.0,
        StatusCode::SEE_OTHER
    );
    let new = Signed {
        client: browser(),
        base: app.address.clone(),
        cookie: second,
    };
    assert_eq!(
        new.get(&format!("/ui/accounts/{account}/calls")).await.0,
        StatusCode::OK
    );
    app.stop().await;
}

#[tokio::test]
async fn another_tenants_ids_in_the_url_answer_not_found_and_change_nothing() {
    let app = TestApp::spawn().await;
    let (agency, mine) = app.tenant().await;
    let (their_agency, theirs) = app.tenant().await;
    let their_call = app.ingest(theirs, full_call(3)).await;
    app.upload_recording(
        &app.admin,
        &their_call,
        b"RIFF0000WAVEfmt ".to_vec(),
        "audio/wav",
    )
    .await;
    web_user(
        &app,
        "fay@example.com",
        Role::AccountAdmin,
        account_scope(agency, mine),
        true,
    )
    .await;
    let user = sign_in(&app, "fay@example.com").await;
    let csrf = user.csrf().await;

    for path in [
        format!("/ui/accounts/{theirs}/calls"),
        format!("/ui/accounts/{theirs}/checklist"),
        format!("/ui/calls/{their_call}"),
        format!("/ui/calls/{their_call}/recording"),
        format!("/ui/calls/{their_call}/redact"),
        format!("/ui/calls/{their_call}/redact-caller"),
        format!("/ui/calls/{their_call}/caller"),
        format!("/ui/accounts/{theirs}/settings"),
        format!("/ui/accounts/{theirs}/users"),
        format!("/ui/agencies/{their_agency}/settings"),
        format!("/ui/agencies/{their_agency}/checklist"),
        "/ui/calls/not-an-id".to_owned(),
        format!("/ui/accounts/{}/calls", AccountId::generate()),
    ] {
        let (status, html) = user.get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(html.contains("not_found"), "{path}: {html}");
    }
    let forms: [(String, Vec<(&str, &str)>); 9] = [
        (format!("/ui/calls/{their_call}/redact"), vec![]),
        (format!("/ui/calls/{their_call}/redact-caller"), vec![]),
        (
            format!("/ui/calls/{their_call}/legal-hold"),
            vec![("reason", "CASE-1")],
        ),
        (format!("/ui/calls/{their_call}/caller/export"), vec![]),
        (
            format!("/ui/accounts/{theirs}/settings/retention"),
            vec![("after_days", "1"), ("step", "save")],
        ),
        (
            format!("/ui/accounts/{theirs}/settings/collection"),
            vec![
                ("recording_gdpr", "off"),
                ("recording_other", "off"),
                ("visitor_ip", "drop"),
            ],
        ),
        (
            format!("/ui/accounts/{theirs}/notices"),
            vec![("category", "recording"), ("text", "x")],
        ),
        (
            format!("/ui/accounts/{theirs}/users"),
            vec![
                ("email", "eve@example.com"),
                ("password", PASSWORD),
                ("role", "analyst"),
            ],
        ),
        (
            format!("/ui/agencies/{their_agency}/settings"),
            vec![("max_retention_days", "1")],
        ),
    ];
    for (path, fields) in forms {
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend(fields);
        let (status, _) = user.post(&path, &form).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (_, call_json) = app
        .get(&app.admin, &format!("/api/v1/calls/{their_call}"))
        .await;
    assert!(call_json["redaction"].is_null());
    assert!(call_json["legal_hold"].is_null());
    let (_, settings) = app
        .get(&app.admin, &format!("/api/v1/accounts/{theirs}/settings"))
        .await;
    assert!(settings["auto_redact"]["after_days"].is_null());
    assert_eq!(settings["collection"]["visitor_ip"], "full");
    let (_, notices) = app
        .get(&app.admin, &format!("/api/v1/accounts/{theirs}/notices"))
        .await;
    assert_eq!(notices["items"], json!([]));
    let (_, agency_settings) = app
        .get(
            &app.admin,
            &format!("/api/v1/agencies/{their_agency}/settings"),
        )
        .await;
    assert!(agency_settings["max_retention_days"].is_null());
    app.stop().await;
}

#[tokio::test]
async fn an_analyst_without_personal_data_cannot_find_calls_by_a_number() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    app.ingest(account, full_call(41)).await;
    let number = uk_number(41).replace('+', "%2B");
    let masked = app
        .token(Role::Analyst, Some(agency), Some(account), false)
        .await;
    let path = format!("/api/v1/accounts/{account}/calls?caller_number={number}");
    let (status, body) = app.get(&masked, &path).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    // Nor for a number that never called: the answer tells nothing either way.
    let never = uk_number(942).replace('+', "%2B");
    let (status, _) = app
        .get(
            &masked,
            &format!("/api/v1/accounts/{account}/calls?caller_number={never}"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // With personal data the filter works.
    let full = app
        .token(Role::Analyst, Some(agency), Some(account), true)
        .await;
    let (status, body) = app.get(&full, &path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    // The web call log offers no number filter to such a user, and refuses one in the URL.
    web_user(
        &app,
        "mia@example.com",
        Role::Analyst,
        account_scope(agency, account),
        false,
    )
    .await;
    let user = sign_in(&app, "mia@example.com").await;
    let (status, html) = user.get(&format!("/ui/accounts/{account}/calls")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("name=\"caller_number\""), "{html}");
    let (status, _) = user
        .get(&format!(
            "/ui/accounts/{account}/calls?caller_number={number}"
        ))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    app.stop().await;
}

#[tokio::test]
async fn an_analyst_without_personal_data_sees_masked_numbers_and_no_redaction() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let call = app.ingest(account, full_call(4)).await;
    web_user(
        &app,
        "gus@example.com",
        Role::Analyst,
        account_scope(agency, account),
        false,
    )
    .await;
    let user = sign_in(&app, "gus@example.com").await;

    let (status, html) = user.get(&format!("/ui/accounts/{account}/calls")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains(&uk_number(4)), "the number is masked");
    assert!(html.contains("masked"));
    let (status, html) = user.get(&format!("/ui/calls/{call}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains(&uk_number(4)) && !html.contains("Erika"));
    assert!(!html.contains("id=\"redact-call\""), "no redact button");
    assert!(
        html.contains("may not redact"),
        "the disabled button says why"
    );
    let (status, _) = user.get(&format!("/ui/calls/{call}/redact")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let csrf = csrf_of(&html);
    let (status, _) = user
        .post(&format!("/ui/calls/{call}/redact"), &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = user.get(&format!("/ui/accounts/{account}/checklist")).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the checklist is for admins, as in the API"
    );
    app.stop().await;
}

#[tokio::test]
async fn redaction_is_disabled_with_an_explanation_where_the_agency_has_not_enabled_it() {
    let app = TestApp::spawn().await;
    let agency = app.agency(false).await;
    let account = app.account(agency).await;
    let call = app.ingest(account, full_call(5)).await;
    web_user(
        &app,
        "hal@example.com",
        Role::AccountAdmin,
        account_scope(agency, account),
        true,
    )
    .await;
    let user = sign_in(&app, "hal@example.com").await;
    let (_, html) = user.get(&format!("/ui/calls/{call}")).await;
    assert!(html.contains("disabled") && html.contains("not enabled for this account"));
    let (status, html) = user.get(&format!("/ui/calls/{call}/redact")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("redaction_disabled"));
    app.stop().await;
}

#[tokio::test]
async fn a_caller_redaction_says_how_many_calls_it_touches_then_redacts_them() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let mut same_caller = Vec::new();
    for n in 0..3u16 {
        let mut call = full_call(10 + n);
        call["caller_number"] = json!(uk_number(77));
        call["visitor"] = serde_json::Value::Null;
        same_caller.push(app.ingest(account, call).await);
    }
    let other = app.ingest(account, full_call(20)).await;
    web_user(
        &app,
        "ivy@example.com",
        Role::AccountAdmin,
        account_scope(agency, account),
        true,
    )
    .await;
    let user = sign_in(&app, "ivy@example.com").await;
    let (status, html) = user
        .get(&format!("/ui/calls/{}/redact-caller", same_caller[0]))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("<strong id=\"caller-count\">3 call(s)</strong>"),
        "{html}"
    );
    let csrf = csrf_of(&html);
    let (status, html) = user
        .post(
            &format!("/ui/calls/{}/redact-caller", same_caller[0]),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("3 call(s)"), "{html}");
    for id in &same_caller {
        let (_, c) = app.get(&app.admin, &format!("/api/v1/calls/{id}")).await;
        assert_eq!(c["redaction"]["reason"], "caller");
    }
    let (_, c) = app.get(&app.admin, &format!("/api/v1/calls/{other}")).await;
    assert!(c["redaction"].is_null());
    app.stop().await;
}

#[tokio::test]
async fn pages_answer_sign_in_first_without_a_session_and_assets_are_cached() {
    let app = TestApp::spawn().await;
    let (_, account) = app.tenant().await;
    let client = browser();
    let r = client
        .get(app.url(&format!("/ui/accounts/{account}/calls")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/login");
    let r = client
        .get(app.url(&format!("/ui/accounts/{account}/calls")))
        .header("hx-request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["hx-redirect"], "/login");
    let r = client
        .get(app.url("/assets/htmx-2.0.11.min.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let r = client.get(app.url("/assets/nope.js")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // A huge form is refused before it is read.
    let r = client
        .post(app.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![b'a'; 1 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    app.stop().await;
}

#[test]
fn the_cli_creates_a_user_from_a_password_file_and_refuses_a_short_password() {
    let dir = Backing::new();
    let data = dir.path().join("data");
    let (code, out, err) = run_cli(
        &data,
        &["agency", "create", "--name", "Acme Agency", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let agency: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let agency = agency["id"].as_str().unwrap().to_owned();
    let file = dir.path().join("password");
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    let (code, out, err) = run_cli(
        &data,
        &[
            "user",
            "create",
            "--email",
            "jo@example.org",
            "--role",
            "agency_admin",
            "--agency",
            &agency,
            "--password-file",
            file.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"role\":\"agency_admin\""), "{out}");
    assert!(
        !out.contains("jo@example.org") && !err.contains("jo@example.org"),
        "the address is not printed"
    );
    assert!(!err.contains(PASSWORD) && !out.contains(PASSWORD));
    let (code, _, err) = run_cli(
        &data,
        &[
            "user",
            "create",
            "--email",
            "jo@example.org",
            "--role",
            "agency_admin",
            "--agency",
            &agency,
            "--password-file",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    std::fs::write(&file, "short\n").unwrap();
    let (code, _, err) = run_cli(
        &data,
        &[
            "user",
            "create",
            "--email",
            "kim@example.org",
            "--role",
            "agency_admin",
            "--agency",
            &agency,
            "--password-file",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("at least 12"), "{err}");
}

#[tokio::test]
async fn automatic_redaction_shows_the_dry_run_count_before_it_is_saved() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    for n in 0..3u16 {
        let mut call = full_call(40 + n);
        call["started_at"] = json!("2026-10-01T10:00:00Z");
        app.ingest(account, call).await;
    }
    web_user(
        &app,
        "lee@example.com",
        Role::AccountAdmin,
        account_scope(agency, account),
        true,
    )
    .await;
    web_user(
        &app,
        "max@example.com",
        Role::Analyst,
        account_scope(agency, account),
        true,
    )
    .await;
    let user = sign_in(&app, "lee@example.com").await;
    let (status, html) = user.get(&format!("/ui/accounts/{account}/settings")).await;
    assert_eq!(status, StatusCode::OK);
    let csrf = csrf_of(&html);
    let path = format!("/ui/accounts/{account}/settings/retention");
    let (status, html) = user
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("after_days", "1"),
                ("scope", "everyone"),
                ("step", "preview"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("<strong id=\"dry-run-count\">3</strong>"),
        "{html}"
    );
    let (_, settings) = app
        .get(&app.admin, &format!("/api/v1/accounts/{account}/settings"))
        .await;
    assert!(settings["auto_redact"]["after_days"].is_null());
    for bad in [
        vec![("after_days", "custom"), ("custom_days", "0")],
        vec![("after_days", "custom"), ("custom_days", "lots")],
        vec![("after_days", "30"), ("scope", "mars")],
    ] {
        let mut form = vec![("csrf", csrf.as_str()), ("step", "save")];
        form.extend(bad.iter().copied());
        let (status, html) = user.post(&path, &form).await;
        assert!(status.is_client_error(), "{bad:?}: {status}");
        assert!(html.contains("invalid_field"), "{html}");
    }
    let (status, html) = user
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("after_days", "custom"),
                ("custom_days", "45"),
                ("scope", "gdpr"),
                ("step", "save"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("id=\"saved\""));
    let (_, settings) = app
        .get(&app.admin, &format!("/api/v1/accounts/{account}/settings"))
        .await;
    assert_eq!(settings["auto_redact"]["after_days"], 45);
    assert_eq!(settings["auto_redact"]["scope"], "gdpr");
    let (status, _) = user
        .post(&path, &[("after_days", "1"), ("step", "save")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF token");

    let analyst = sign_in(&app, "max@example.com").await;
    let (status, _) = analyst
        .get(&format!("/ui/accounts/{account}/settings"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    app.stop().await;
}

#[tokio::test]
async fn the_demo_prints_users_who_can_sign_in_and_its_pages_answer() {
    let app = TestApp::spawn().await;
    let summary = ringfence::demo::run_demo(&app.resources, 2000, false)
        .await
        .expect("demo");
    let users = summary["sign_in"]["users"].as_array().expect("users");
    assert_eq!(users.len(), 3, "{summary}");
    let admin = users
        .iter()
        .find(|u| u["email"] == "demo-admin@example.com")
        .expect("the demo admin");
    let password = admin["password"].as_str().expect("a password");
    assert!(password.len() >= 12);
    let r = sign_in_raw(&app, "demo-admin@example.com", password, None).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (cookie, _) = set_cookie(&r, "rf_session").unwrap();
    let user = Signed {
        client: browser(),
        base: app.address.clone(),
        cookie,
    };
    let account = summary["accounts"][0]["id"].as_str().unwrap().to_owned();
    let (_, log) = user.get(&format!("/ui/accounts/{account}/calls")).await;
    let start = log.find("/ui/calls/").expect("a call link") + "/ui/calls/".len();
    let call = log[start..start + 36].to_owned();
    for path in [
        format!("/ui/accounts/{account}/calls"),
        format!("/ui/accounts/{account}/calls?redacted=false&source=google_ads"),
        format!("/ui/calls/{call}"),
        format!("/ui/calls/{call}/redact-caller"),
        format!("/ui/accounts/{account}/checklist"),
        format!("/ui/accounts/{account}/settings"),
    ] {
        // Speed is the pages benchmark's (`--bin pages`, BENCHMARKS.md), not a test's.
        let (status, _) = user.get(&path).await;
        assert!(
            status == StatusCode::OK || status == StatusCode::CONFLICT,
            "{path}: {status}"
        );
    }
    // A second demo run keeps the users and their passwords.
    let again = ringfence::demo::run_demo(&app.resources, 2000, false)
        .await
        .expect("demo");
    assert!(again["sign_in"]["users"][0]["password"].is_null());
    app.stop().await;
}

#[tokio::test]
async fn the_journal_page_lists_the_users_actions_and_verifies_the_chain() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let (_, other) = app.tenant().await;
    let call = app.ingest(account, full_call(50)).await;
    let their_call = app.ingest(other, full_call(51)).await;
    app.post(
        &app.admin,
        &format!("/api/v1/calls/{their_call}/redact"),
        json!({}),
    )
    .await;
    web_user(
        &app,
        "ned@example.com",
        Role::AccountAdmin,
        account_scope(agency, account),
        true,
    )
    .await;
    web_user(
        &app,
        "oz@example.com",
        Role::Analyst,
        account_scope(agency, account),
        true,
    )
    .await;
    let user = sign_in(&app, "ned@example.com").await;
    let csrf = user.csrf().await;
    let (status, _) = user
        .post(&format!("/ui/calls/{call}/redact"), &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, html) = user.get("/ui/journal").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Chain verified"), "{html}");
    assert!(
        html.contains("Call redacted") && html.contains(&call),
        "{html}"
    );
    assert!(
        !html.contains(&their_call),
        "another account's entries are not shown"
    );
    let (status, _) = user.get("/ui/journal?cursor=-4").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = user.get("/ui/journal?limit=3").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let analyst = sign_in(&app, "oz@example.com").await;
    assert_eq!(analyst.get("/ui/journal").await.0, StatusCode::FORBIDDEN);
    app.stop().await;
}

#[tokio::test]
async fn the_caller_page_shows_a_numbers_calls_and_consents_and_exports_them() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let mut ids = Vec::new();
    for n in 0..2u16 {
        let mut call = full_call(60 + n);
        call["caller_number"] = json!(uk_number(66));
        ids.push(app.ingest(account, call).await);
    }
    let other = app.ingest(account, full_call(62)).await;
    let (status, body) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/consents"),
            json!({"subject": {"caller_number": uk_number(66)}, "category": "recording", "status": "granted", "method": "ivr_keypress"}),
        )
        .await;
    assert!(status.is_success(), "{body}");
    web_user(
        &app,
        "pat@example.com",
        Role::AccountAdmin,
        account_scope(agency, account),
        true,
    )
    .await;
    web_user(
        &app,
        "quinn@example.com",
        Role::Analyst,
        account_scope(agency, account),
        false,
    )
    .await;
    let user = sign_in(&app, "pat@example.com").await;

    let (status, html) = user.get(&format!("/ui/calls/{}/caller", ids[0])).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains(&uk_number(66)));
    assert!(html.contains(&ids[0]) && html.contains(&ids[1]));
    assert!(
        !html.contains(&other),
        "another caller's call is not listed"
    );
    assert!(html.contains("IVR key press") && html.contains("Granted"));

    let csrf = csrf_of(&html);
    let (status, _) = user
        .post(&format!("/ui/calls/{}/caller/export", ids[0]), &[])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF token");
    let r = user
        .client
        .post(app.url(&format!("/ui/calls/{}/caller/export", ids[0])))
        .header(COOKIE, format!("rf_session={}", user.cookie))
        .with_form(&[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/zip");
    let zip = r.bytes().await.unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip.to_vec())).unwrap();
    let mut data = String::new();
    std::io::Read::read_to_string(&mut archive.by_name("data.json").unwrap(), &mut data).unwrap();
    assert!(data.contains(&ids[0]) && data.contains(&ids[1]) && !data.contains(&other));

    let analyst = sign_in(&app, "quinn@example.com").await;
    let (status, html) = analyst.get(&format!("/ui/calls/{}/caller", ids[0])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!html.contains(&uk_number(66)));
    app.stop().await;
}

#[tokio::test]
async fn an_agency_admin_reads_the_roll_up_of_its_accounts_and_not_another_agencys() {
    let app = TestApp::spawn().await;
    let (agency, first) = app.tenant().await;
    let second = app.account(agency).await;
    let (other_agency, _) = app.tenant().await;
    web_user(
        &app,
        "rae@example.com",
        Role::AgencyAdmin,
        Scope::Agency(agency),
        true,
    )
    .await;
    web_user(
        &app,
        "sam@example.com",
        Role::AccountAdmin,
        account_scope(agency, first),
        true,
    )
    .await;
    let user = sign_in(&app, "rae@example.com").await;
    let (status, home) = user.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(home.contains(&format!("/ui/agencies/{agency}/checklist")));
    let (status, html) = user.get(&format!("/ui/agencies/{agency}/checklist")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(&first.to_string()) && html.contains(&second.to_string()));
    assert!(html.contains("id=\"agency-overall\""));
    let (status, _) = user
        .get(&format!("/ui/agencies/{other_agency}/checklist"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let account_admin = sign_in(&app, "sam@example.com").await;
    let (status, _) = account_admin
        .get(&format!("/ui/agencies/{agency}/checklist"))
        .await;
    assert!(
        status == StatusCode::NOT_FOUND || status == StatusCode::FORBIDDEN,
        "{status}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_settings_page_shows_recipients_and_their_dead_letters() {
    let app = TestApp::spawn_with_local_relays().await;
    let (agency, account) = app.tenant().await;
    web_user(
        &app,
        "ria@example.com",
        Role::AccountAdmin,
        account_scope(agency, account),
        true,
    )
    .await;
    let user = sign_in(&app, "ria@example.com").await;
    let page = format!("/ui/accounts/{account}/settings");
    let (status, html) = user.get(&page).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("id=\"no-recipients\""), "{html}");

    // A receiver that refuses the one attempt each delivery gets here: a dead letter.
    let (url, _) = crate::recipients::receiver(1).await;
    crate::recipients::register(&app, account, &url, &["call.created", "caller.erased"]).await;
    app.ingest(account, full_call(9)).await;
    crate::recipients::drain(&app, &crate::recipients::deliverer(1), 5).await;
    let (status, html) = user.get(&page).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("id=\"no-recipients\""));
    assert!(html.contains(">CRM<"), "the recipient's name");
    assert!(html.contains("Call received, Caller erased"));
    assert!(html.contains("<dd class=\"dead-count\">1 —"), "{html}");
    assert!(html.contains("<td>Dead</td>") && html.contains("<td>http_503</td>"));
    // The secret is never on a page.
    assert!(!html.contains(crate::recipients::SECRET));

    // Retry the dead letter from the page (the receiver is back): delivered on the next pass.
    let start = html.find("/deliveries/").expect("a retry form") + "/deliveries/".len();
    let delivery = html[start..start + 36].to_owned();
    let recipient_start = html.find("/recipients/").unwrap() + "/recipients/".len();
    let recipient = html[recipient_start..recipient_start + 36].to_owned();
    let retry =
        format!("/ui/accounts/{account}/recipients/{recipient}/deliveries/{delivery}/retry");
    let (status, _) = user.post(&retry, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "CSRF");
    let csrf = csrf_of(&html);
    let (status, html) = user.post(&retry, &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Delivery queued again"));
    assert!(html.contains("<dd class=\"dead-count\">0</dd>"), "{html}");
    let (status, _) = user.post(&retry, &[("csrf", &csrf)]).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "only a dead letter can be retried"
    );
    crate::recipients::drain(&app, &crate::recipients::deliverer(1), 5).await;
    let (_, html) = user.get(&page).await;
    assert!(html.contains("<td>Delivered</td>"), "{html}");
    app.stop().await;
}

#[tokio::test]
async fn an_account_admin_places_and_releases_a_legal_hold_and_an_analyst_cannot() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let call = app.ingest(account, full_call(11)).await;
    for (email, role) in [
        ("hana@example.com", Role::AccountAdmin),
        ("ivo@example.com", Role::Analyst),
    ] {
        web_user(&app, email, role, account_scope(agency, account), true).await;
    }
    let admin = sign_in(&app, "hana@example.com").await;
    let page = format!("/ui/calls/{call}");
    let hold = format!("/ui/calls/{call}/legal-hold");
    let (_, html) = admin.get(&page).await;
    assert!(html.contains("id=\"place-hold\""));
    let csrf = csrf_of(&html);
    let api_hold = || async {
        app.get(&app.admin, &format!("/api/v1/calls/{call}"))
            .await
            .1["legal_hold"]
            .clone()
    };

    // Without the CSRF token, or with a reason that could hold personal data: nothing changes.
    let (status, _) = admin.post(&hold, &[("reason", "CASE-17")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = admin
        .post(
            &hold,
            &[("csrf", &csrf), ("reason", "ask erika@example.com")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        !body.contains("erika@example.com"),
        "the value is not repeated"
    );
    assert!(api_hold().await.is_null());

    let (status, _) = admin
        .post(&hold, &[("csrf", &csrf), ("reason", "CASE-2026/17")])
        .await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "back to the call's page, not left on the form's URL"
    );
    let (_, html) = admin.get(&page).await;
    assert!(html.contains("id=\"legal-hold\"") && html.contains("CASE-2026/17"));
    assert!(html.contains("id=\"release-hold\""));
    assert!(
        !html.contains("id=\"redact-call\""),
        "a held call cannot be redacted"
    );
    assert_eq!(api_hold().await["reason"], "CASE-2026/17");

    // An analyst sees the hold but neither form, and cannot post one.
    let analyst = sign_in(&app, "ivo@example.com").await;
    let (_, html) = analyst.get(&page).await;
    assert!(html.contains("id=\"legal-hold\""));
    assert!(!html.contains("id=\"hold-form\""));
    let analyst_csrf = csrf_of(&html);
    let (status, _) = analyst
        .post(&hold, &[("csrf", &analyst_csrf), ("action", "release")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(api_hold().await["reason"], "CASE-2026/17");

    let (status, _) = admin
        .post(&hold, &[("csrf", &csrf), ("action", "release")])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, html) = admin.get(&page).await;
    assert!(!html.contains("id=\"legal-hold\""));
    assert!(html.contains("id=\"redact-call\""));
    assert!(api_hold().await.is_null());
    let journal = all_audit(&app, 500).await;
    for action in ["call.legal_hold_set", "call.legal_hold_released"] {
        assert!(
            journal.iter().any(|e| e["action"] == action),
            "{action} journaled"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn an_account_admin_changes_what_is_collected_and_it_applies_to_new_calls() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    web_user(
        &app,
        "jo@example.com",
        Role::AccountAdmin,
        account_scope(agency, account),
        true,
    )
    .await;
    let user = sign_in(&app, "jo@example.com").await;
    let page = format!("/ui/accounts/{account}/settings");
    let save = format!("/ui/accounts/{account}/settings/collection");
    let (_, html) = user.get(&page).await;
    assert!(html.contains("id=\"collection-form\""));
    let csrf = csrf_of(&html);
    let collection = || async {
        app.get(&app.admin, &format!("/api/v1/accounts/{account}/settings"))
            .await
            .1["collection"]
            .clone()
    };
    let before = collection().await;

    // A value the form never offers: refused, nothing saved.
    let (status, body) = user
        .post(
            &save,
            &[
                ("csrf", &csrf),
                ("recording_gdpr", "opt_in"),
                ("recording_other", "announce"),
                ("visitor_ip", "everything"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(collection().await, before);

    // Unchecked boxes are sent as absent: names, locations and transcripts off.
    let (status, html) = user
        .post(
            &save,
            &[
                ("csrf", &csrf),
                ("recording_gdpr", "off"),
                ("recording_other", "opt_in"),
                ("visitor_ip", "drop"),
                ("visitor_details", "on"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("What is collected saved"));
    assert_eq!(
        collection().await,
        json!({"caller_name": false, "caller_location": false, "recording_gdpr": "off",
               "recording_other": "opt_in", "transcription": false, "visitor_ip": "drop",
               "visitor_details": true})
    );
    let (_, answer) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/calls"),
            full_call(21),
        )
        .await;
    let dropped = answer["dropped"].to_string();
    for field in ["caller_name", "transcript", "visitor.ip"] {
        assert!(dropped.contains(field), "{field} not dropped: {dropped}");
    }
    // The change is journaled by the API's handler, with the user as its actor.
    let journal = all_audit(&app, 500).await;
    assert!(journal.iter().any(|e| {
        e["actor"].as_str().unwrap_or("").starts_with("user:")
            && e["action"] == "account.collection_changed"
    }));
    app.stop().await;
}

#[tokio::test]
async fn an_account_admin_adds_an_analyst_who_then_signs_in_with_masked_numbers() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let (other_agency, other) = app.tenant().await;
    let call = app.ingest(account, full_call(31)).await;
    web_user(
        &app,
        "kim@example.com",
        Role::AccountAdmin,
        account_scope(agency, account),
        true,
    )
    .await;
    let admin = sign_in(&app, "kim@example.com").await;
    let path = format!("/ui/accounts/{account}/users");
    let (status, html) = admin.get(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("id=\"add-user\""));
    assert!(
        html.contains("kim@example.com"),
        "the admin who manages the user sees the address (sealed at rest)"
    );
    let csrf = csrf_of(&html);
    let add = |email: &'static str, password: &'static str, role: &'static str| {
        let csrf = csrf.clone();
        let admin = &admin;
        let path = path.clone();
        async move {
            admin
                .post(
                    &path,
                    &[
                        ("csrf", csrf.as_str()),
                        ("email", email),
                        ("password", password),
                        ("role", role),
                    ],
                )
                .await
        }
    };
    let (status, body) = add("not-an-address", PASSWORD, "analyst").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!body.contains("not-an-address"));
    let (status, _) = add("lou@example.com", "short", "analyst").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = add("lou@example.com", PASSWORD, "admin").await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "no installation admins from here"
    );
    let (status, _) = admin
        .post(
            &path,
            &[
                ("email", "lou@example.com"),
                ("password", PASSWORD),
                ("role", "analyst"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "CSRF");

    let (status, html) = add("lou@example.com", PASSWORD, "analyst").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("id=\"created\""));
    assert!(html.contains("<td>Analyst</td><td>masked</td>"), "{html}");
    assert!(
        html.contains("lou@example.com"),
        "the new user is listed by address"
    );
    // An address that has a user already, here (whatever its case) or in another tenant,
    // is answered exactly like a new one, and no second user is made.
    web_user(
        &app,
        "zed@example.com",
        Role::Analyst,
        account_scope(other_agency, other),
        false,
    )
    .await;
    let strip = |html: &str| html.replace(&csrf_of(html), "CSRF");
    let (status, again) = add("Lou@Example.com", PASSWORD, "analyst").await;
    assert_eq!(status, StatusCode::OK);
    let (status, elsewhere) = add("zed@example.com", PASSWORD, "analyst").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        strip(&again),
        strip(&elsewhere),
        "the same answer whether or not the address is taken"
    );
    assert!(
        !again.contains("409") && !again.to_lowercase().contains("already exists"),
        "{again}"
    );
    assert_eq!(
        again.matches("<td>Analyst</td>").count(),
        1,
        "one user per address, whatever its case"
    );

    // The new analyst signs in, sees the call masked, and may not manage users.
    let analyst = sign_in(&app, "lou@example.com").await;
    let (_, html) = analyst.get(&format!("/ui/calls/{call}")).await;
    assert!(
        !html.contains(&uk_number(31)[3..]),
        "masked for an analyst without personal data"
    );
    let (status, _) = analyst.get(&path).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Another account's users page is not there for this admin.
    let (status, _) = admin.get(&format!("/ui/accounts/{other}/users")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let journal = all_audit(&app, 500).await;
    let created: Vec<&serde_json::Value> = journal
        .iter()
        .filter(|e| {
            e["action"] == "user.created" && e["actor"].as_str().unwrap_or("").starts_with("user:")
        })
        .collect();
    assert_eq!(created.len(), 1);
    assert!(
        !journal
            .iter()
            .any(|e| e.to_string().contains("lou@example.com"))
    );
    app.stop().await;
}

#[tokio::test]
async fn the_agency_page_previews_a_ceiling_per_account_before_it_redacts_anything() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    for n in 0..3u16 {
        let mut call = full_call(n);
        call["started_at"] =
            json!(Timestamp::from_millis(Timestamp::now().millis() - 50 * 86_400_000).to_rfc3339());
        app.ingest(account, call).await;
    }
    web_user(
        &app,
        "ada@example.com",
        Role::AgencyAdmin,
        Scope::Agency(agency),
        true,
    )
    .await;
    let boss = sign_in(&app, "ada@example.com").await;
    let path = format!("/ui/agencies/{agency}/settings");
    let (_, html) = boss.get(&path).await;
    let csrf = csrf_of(&html);
    let form = [
        ("csrf", csrf.as_str()),
        ("redaction_enabled", "on"),
        ("max_retention_days", "30"),
    ];
    let (status, html) = boss.post(&path, &form).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("id=\"ceiling-preview\""), "{html}");
    assert!(html.contains("<strong>3</strong> calls"), "{html}");
    assert!(html.contains("<td>3</td>"), "the account's row: {html}");
    assert!(!html.contains("id=\"saved\""));
    let settings = app
        .get(&app.admin, &format!("/api/v1/agencies/{agency}/settings"))
        .await
        .1;
    assert_eq!(
        settings["max_retention_days"],
        Value::Null,
        "nothing changed yet"
    );
    // The confirmation form applies it.
    let confirm = [
        ("csrf", csrf.as_str()),
        ("redaction_enabled", "on"),
        ("max_retention_days", "30"),
        ("confirm", "yes"),
    ];
    let (status, html) = boss.post(&path, &confirm).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("id=\"saved\""), "{html}");
    let settings = app
        .get(&app.admin, &format!("/api/v1/agencies/{agency}/settings"))
        .await
        .1;
    assert_eq!(settings["max_retention_days"], 30);
    app.stop().await;
}

#[tokio::test]
async fn an_agency_admin_changes_the_agency_settings_and_its_accounts_follow() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let (other_agency, _) = app.tenant().await;
    let call = app.ingest(account, full_call(41)).await;
    web_user(
        &app,
        "ada@example.com",
        Role::AgencyAdmin,
        Scope::Agency(agency),
        true,
    )
    .await;
    web_user(
        &app,
        "ben@example.com",
        Role::AccountAdmin,
        account_scope(agency, account),
        true,
    )
    .await;
    let boss = sign_in(&app, "ada@example.com").await;
    let path = format!("/ui/agencies/{agency}/settings");
    let (status, html) = boss.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(&path), "linked from the accounts page");
    let (status, html) = boss.get(&path).await;
    assert_eq!(status, StatusCode::OK);
    let csrf = csrf_of(&html);
    let settings = || async {
        app.get(&app.admin, &format!("/api/v1/agencies/{agency}/settings"))
            .await
            .1
    };

    let (status, _) = boss
        .post(&path, &[("csrf", &csrf), ("max_retention_days", "soon")])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(settings().await["redaction_enabled"], true);
    let (status, _) = boss.post(&path, &[("max_retention_days", "60")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "CSRF");

    // Redaction off (box unchecked), at most 60 days.
    let (status, html) = boss
        .post(&path, &[("csrf", &csrf), ("max_retention_days", "60")])
        .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("id=\"saved\""));
    assert_eq!(
        settings().await,
        json!({"redaction_enabled": false, "max_retention_days": 60})
    );
    // The account's admin now finds redaction disabled, with the reason.
    let admin = sign_in(&app, "ben@example.com").await;
    let (_, html) = admin.get(&format!("/ui/calls/{call}")).await;
    assert!(html.contains("id=\"why-no-redact\""));
    // It may not change the agency, nor see another agency's settings.
    // (An account's users see their agency only through their account: not found.)
    let (status, _) = admin.get(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = boss
        .get(&format!("/ui/agencies/{other_agency}/settings"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Back on, no limit.
    let (status, _) = boss
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("redaction_enabled", "on"),
                ("max_retention_days", ""),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        settings().await,
        json!({"redaction_enabled": true, "max_retention_days": null})
    );
    app.stop().await;
}

#[tokio::test]
async fn notices_get_new_versions_from_the_settings_page() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    web_user(
        &app,
        "noa@example.com",
        Role::AccountAdmin,
        account_scope(agency, account),
        true,
    )
    .await;
    let user = sign_in(&app, "noa@example.com").await;
    let (_, html) = user.get(&format!("/ui/accounts/{account}/settings")).await;
    assert!(html.contains("id=\"no-notices\""));
    let csrf = csrf_of(&html);
    let path = format!("/ui/accounts/{account}/notices");
    let (status, _) = user
        .post(
            &path,
            &[("csrf", &csrf), ("category", "recording"), ("text", "")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = user
        .post(
            &path,
            &[("csrf", &csrf), ("category", "mood"), ("text", "Hello")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = user
        .post(
            &path,
            &[("category", "recording"), ("text", "Calls are recorded.")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "CSRF");
    for text in ["Calls are recorded.", "Calls are recorded for training."] {
        let (status, html) = user
            .post(
                &path,
                &[("csrf", &csrf), ("category", "recording"), ("text", text)],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(html.contains("Notice version added."));
        assert!(html.contains(text));
    }
    let (_, notices) = app
        .get(&app.admin, &format!("/api/v1/accounts/{account}/notices"))
        .await;
    let versions: Vec<(String, u64)> = notices["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["text"].as_str().unwrap().to_owned(),
                n["version"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        versions,
        vec![
            ("Calls are recorded.".to_owned(), 1),
            ("Calls are recorded for training.".to_owned(), 2)
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn per_category_retention_is_previewed_then_saved_from_the_settings_page() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    for n in 0..2u16 {
        let mut call = full_call(50 + n);
        call["started_at"] = json!("2026-10-01T10:00:00Z");
        app.ingest(account, call).await;
    }
    web_user(
        &app,
        "ola@example.com",
        Role::AccountAdmin,
        account_scope(agency, account),
        true,
    )
    .await;
    let user = sign_in(&app, "ola@example.com").await;
    let (_, html) = user.get(&format!("/ui/accounts/{account}/settings")).await;
    assert!(html.contains("id=\"category_recording\""));
    let csrf = csrf_of(&html);
    let path = format!("/ui/accounts/{account}/settings/retention");
    let (status, html) = user
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("after_days", "off"),
                ("scope", "everyone"),
                ("category_transcript", "many"),
                ("step", "preview"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    // Transcripts after 7 days: both calls (older than that) would lose theirs now.
    let form = [
        ("csrf", csrf.as_str()),
        ("after_days", "off"),
        ("scope", "everyone"),
        ("category_transcript", "7"),
        ("category_recording", ""),
    ];
    let mut preview = form.to_vec();
    preview.push(("step", "preview"));
    let (status, html) = user.post(&path, &preview).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("remove single categories from 2 more"),
        "{html}"
    );
    assert!(html.contains("name=\"category_transcript\" value=\"7\""));
    let (_, settings) = app
        .get(&app.admin, &format!("/api/v1/accounts/{account}/settings"))
        .await;
    assert_eq!(settings["auto_redact"]["categories"], json!({}));
    let mut save = form.to_vec();
    save.push(("step", "save"));
    let (status, html) = user.post(&path, &save).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let (_, settings) = app
        .get(&app.admin, &format!("/api/v1/accounts/{account}/settings"))
        .await;
    assert_eq!(
        settings["auto_redact"]["categories"],
        json!({"transcript": 7})
    );
    assert!(settings["auto_redact"]["after_days"].is_null());
    app.stop().await;
}

#[tokio::test]
async fn an_account_admin_disables_re_roles_resets_and_removes_a_user_from_the_users_page() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let scope = account_scope(agency, account);
    web_user(&app, "max@example.com", Role::AccountAdmin, scope, true).await;
    let bob = app
        .resources
        .log
        .create_user(
            "bob@example.com",
            zeroize::Zeroizing::new(PASSWORD.to_owned()),
            Role::Analyst,
            scope,
            false,
            "test".into(),
        )
        .await
        .unwrap()
        .id
        .to_string();
    let admin = sign_in(&app, "max@example.com").await;
    let bobs = sign_in(&app, "bob@example.com").await;
    let users = format!("/ui/accounts/{account}/users");
    let change = format!("/ui/accounts/{account}/users/{bob}");
    let (status, html) = admin.get(&users).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(&format!("id=\"user-{bob}\"")), "{html}");
    assert!(html.contains("(you)"), "the admin's own row is marked");
    assert_eq!(
        html.matches("class=\"disable\"").count(),
        1,
        "no disable button on one's own row"
    );
    let csrf = csrf_of(&html);
    let go = |action: &'static str, extra: &'static [(&'static str, &'static str)]| {
        let csrf = csrf.clone();
        let (admin, change) = (&admin, change.clone());
        async move {
            let mut form = vec![("csrf", csrf.as_str()), ("action", action)];
            form.extend_from_slice(extra);
            let r = admin
                .client
                .post(format!("{}{change}", admin.base))
                .header(COOKIE, format!("rf_session={}", admin.cookie))
                .with_form(&form)
                .send()
                .await
                .unwrap();
            let to = r
                .headers()
                .get(LOCATION)
                .map(|v| v.to_str().unwrap().to_owned());
            (r.status(), to)
        }
    };

    // Without the session's CSRF token nothing changes.
    let (status, _) = admin.post(&change, &[("action", "disable")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        bobs.get(&format!("/ui/accounts/{account}/calls")).await.0,
        StatusCode::OK
    );

    let (status, to) = go("disable", &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        to.as_deref(),
        Some(format!("{users}?done=disabled").as_str())
    );
    assert_eq!(
        bobs.get(&format!("/ui/accounts/{account}/calls")).await.0,
        StatusCode::SEE_OTHER,
        "bob's open session ends at once"
    );
    let (_, html) = admin.get(&format!("{users}?done=disabled")).await;
    assert!(
        html.contains("id=\"done\"") && html.contains("disabled since"),
        "{html}"
    );
    assert_eq!(go("enable", &[]).await.0, StatusCode::SEE_OTHER);

    assert_eq!(
        go("set_role", &[("role", "account_admin")]).await.0,
        StatusCode::SEE_OTHER
    );
    let (_, html) = admin.get(&users).await;
    assert_eq!(html.matches("<td>Account admin</td>").count(), 2, "{html}");
    assert_eq!(
        go("set_role", &[("role", "agency_admin")]).await.0,
        StatusCode::UNPROCESSABLE_ENTITY,
        "no role above an account's from this page"
    );

    assert_eq!(
        go("reset_password", &[("password", "a brand new passphrase")])
            .await
            .0,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        sign_in_raw(&app, "bob@example.com", "a brand new passphrase", None)
            .await
            .status(),
        StatusCode::SEE_OTHER
    );

    // Removing asks first; the unconfirmed form removes nothing.
    let (status, html) = admin.get(&format!("{change}/remove")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("id=\"remove-confirmed\""), "{html}");
    assert_eq!(go("remove", &[]).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        admin
            .get(&users)
            .await
            .1
            .contains(&format!("id=\"user-{bob}\""))
    );
    let (status, to) = go("remove", &[("confirm", "yes")]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        to.as_deref(),
        Some(format!("{users}?done=removed").as_str())
    );
    let (_, html) = admin.get(&users).await;
    assert!(!html.contains(&format!("id=\"user-{bob}\"")));

    // The admin cannot disable itself, even by posting the form by hand.
    let me = app
        .resources
        .log
        .store()
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .find(|u| u.role == Role::AccountAdmin)
        .unwrap()
        .id;
    let (status, _) = admin
        .post(
            &format!("/ui/accounts/{account}/users/{me}"),
            &[("csrf", csrf.as_str()), ("action", "disable")],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(admin.get(&users).await.0, StatusCode::OK);
    app.stop().await;
}
