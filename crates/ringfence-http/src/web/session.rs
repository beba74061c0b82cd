//! Signing in and out, the session cookie and CSRF.
//!
//! The cookie holds 256 random bits; the store keeps only their SHA-256. A sign-in always
//! starts a new session (and ends the one the browser came with), so a session id planted
//! before sign-in never becomes a signed-in one. Sessions end after [`IDLE`] without a
//! request and [`ABSOLUTE`] after sign-in. Each session has its own CSRF token, required in
//! the `csrf` field of every form or the `X-CSRF-Token` header of every htmx request that
//! changes something; the sign-in form itself is protected by a double-submit cookie.

use askama::Template;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{COOKIE, LOCATION, RETRY_AFTER, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use ringfence_core::access::Principal;
use ringfence_core::timestamp::Timestamp;
use ringfence_crypto::password::{dummy_hash, verify_password};
use ringfence_crypto::random_bytes;
use ringfence_store::{UserRecord, WebSessionRecord};

use super::error::error_page;
use super::throttle::AttemptKeys;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "rf_session";
const LOGIN_COOKIE: &str = "rf_login";
/// A session ends after this long without a request.
pub const IDLE_MS: i64 = 2 * 3_600_000;
/// A session ends this long after sign-in, however active.
pub const ABSOLUTE_MS: i64 = 12 * 3_600_000;
/// `last_seen_at` is written at most this often.
const TOUCH_MS: i64 = 60_000;
/// Set on a browser that signed in to an address: failures made for that address from
/// elsewhere do not slow it down (OWASP's device cookies). Its value is a keyed hash of
/// the address, so it proves the browser once knew the password and reveals nothing.
const DEVICE_COOKIE: &str = "rf_device";
const DEVICE_MAX_AGE_S: i64 = 180 * 86_400;

fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

fn session_hash(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// Constant-time comparison of two tokens.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The value of cookie `name`, when the request has exactly one.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut found = None;
    for header in headers.get_all(COOKIE) {
        let Ok(text) = header.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=')
                && k == name
            {
                if found.is_some() {
                    return None;
                }
                found = Some(v.to_owned());
            }
        }
    }
    found.filter(|v| !v.is_empty() && v.len() <= 128)
}

fn cookie_header(
    state: &AppState,
    name: &str,
    value: &str,
    max_age: Option<i64>,
    strict: bool,
) -> HeaderValue {
    let secure = state
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    let mut text = format!(
        "{name}={value}; Path=/; HttpOnly; SameSite={}",
        if strict { "Strict" } else { "Lax" }
    );
    if let Some(age) = max_age {
        text.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        text.push_str("; Secure");
    }
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub fn redirect_to(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, v);
    }
    response
}

/// The signed-in user of a page request.
pub struct WebUser {
    pub principal: Principal,
    pub csrf: String,
    pub user: UserRecord,
    /// How the pages name the user to themselves: their e-mail address (opened for the
    /// page, never logged), or their role and a short id for a user made before addresses
    /// were kept.
    pub name: String,
}

impl WebUser {
    /// The fields of a state-changing form, once its CSRF token is checked: the one way a
    /// handler reads a form, so that none can forget the check.
    pub fn form(
        &self,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Vec<(String, String)>, FormRefused> {
        let form = parse_form(body)?;
        self.check_csrf(headers, &form)?;
        Ok(form)
    }

    /// Checks the CSRF token of a state-changing request: the `csrf` form field or the
    /// `X-CSRF-Token` header must equal the session's.
    fn check_csrf(
        &self,
        headers: &HeaderMap,
        form: &[(String, String)],
    ) -> Result<(), FormRefused> {
        let sent = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| {
                form.iter()
                    .find(|(k, _)| k == "csrf")
                    .map(|(_, v)| v.clone())
            });
        match sent {
            Some(token) if same(&token, &self.csrf) => Ok(()),
            _ => Err(FormRefused::Csrf),
        }
    }
}

/// Why a form was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormRefused {
    /// Missing or wrong CSRF token.
    Csrf,
    /// Not a urlencoded form.
    Unreadable,
}

impl IntoResponse for FormRefused {
    fn into_response(self) -> Response {
        match self {
            FormRefused::Csrf => error_page(
                StatusCode::FORBIDDEN,
                "csrf_failed",
                "this form was not sent from a page of this session (missing or wrong CSRF token); reload the page and try again",
                true,
            ),
            FormRefused::Unreadable => error_page(
                StatusCode::BAD_REQUEST,
                "invalid_form",
                "the form could not be read; reload the page and try again",
                false,
            ),
        }
    }
}

impl From<FormRefused> for Response {
    fn from(r: FormRefused) -> Response {
        r.into_response()
    }
}

/// Not signed in: pages go to the sign-in form, htmx requests are told to.
fn sign_in_first(parts: &Parts) -> Response {
    if parts.headers.contains_key("hx-request") {
        let mut response = StatusCode::UNAUTHORIZED.into_response();
        response
            .headers_mut()
            .insert("hx-redirect", HeaderValue::from_static("/login"));
        return response;
    }
    if parts.method == axum::http::Method::GET {
        return redirect_to("/login");
    }
    error_page(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "your session has ended; sign in again",
        false,
    )
}

/// The live session of a request's cookie and its user, looked up without changing
/// anything: `None` when there is no cookie, no such session, or it has ended (idle,
/// absolute expiry, or its user disabled).
async fn live_session(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(WebSessionRecord, UserRecord)>, Response> {
    let Some(value) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let found = state
        .log
        .store()
        .web_session(session_hash(&value))
        .await
        .map_err(|e| super::error::PageError::from(e).into_response())?;
    let now = Timestamp::now().millis();
    Ok(found.filter(|(session, user)| {
        // Disabling ends the user's sessions in the same transaction; this is the backstop.
        user.disabled_at.is_none()
            && now - session.last_seen_at.millis() <= IDLE_MS
            && now - session.created_at.millis() <= ABSOLUTE_MS
    }))
}

impl WebUser {
    async fn of(
        state: &AppState,
        session: WebSessionRecord,
        user: UserRecord,
    ) -> Result<WebUser, Response> {
        let principal = user.principal();
        let name = super::present::user_name(state, &principal, &user)
            .await
            .map_err(|e| super::error::PageError::from(e).into_response())?;
        Ok(WebUser {
            principal,
            csrf: session.csrf_token,
            name,
            user,
        })
    }

    /// The signed-in user of a request, if any, without touching the session: for pages
    /// that only need to know who is looking (an error page's navigation).
    pub async fn peek(state: &AppState, headers: &HeaderMap) -> Option<WebUser> {
        let (session, user) = live_session(state, headers).await.ok()??;
        WebUser::of(state, session, user).await.ok()
    }
}

impl FromRequestParts<AppState> for WebUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(value) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(sign_in_first(parts));
        };
        let hash = session_hash(&value);
        let found = state
            .log
            .store()
            .web_session(hash)
            .await
            .map_err(|e| super::error::PageError::from(e).into_response())?;
        let Some((session, user)) = found else {
            return Err(sign_in_first(parts));
        };
        // Disabling ends the user's sessions in the same transaction; this is the backstop.
        if user.disabled_at.is_some() {
            return Err(sign_in_first(parts));
        }
        let now = Timestamp::now().millis();
        if now - session.last_seen_at.millis() > IDLE_MS
            || now - session.created_at.millis() > ABSOLUTE_MS
        {
            let _ = state
                .log
                .store()
                .end_web_session(
                    hash,
                    Timestamp::from_millis(now - IDLE_MS),
                    Timestamp::from_millis(now - ABSOLUTE_MS),
                )
                .await;
            return Err(sign_in_first(parts));
        }
        if now - session.last_seen_at.millis() > TOUCH_MS {
            let _ = state
                .log
                .store()
                .touch_web_session(hash, Timestamp::from_millis(now))
                .await;
        }
        WebUser::of(state, session, user).await
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    message: Option<&'a str>,
}

fn login_form(state: &AppState, status: StatusCode, message: Option<&str>) -> Response {
    let csrf = random_token();
    let page = LoginPage {
        csrf: &csrf,
        message,
    };
    let mut response = match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => return super::error::PageError::from(e).into_response(),
    };
    response.headers_mut().append(
        SET_COOKIE,
        cookie_header(state, LOGIN_COOKIE, &csrf, Some(3600), true),
    );
    response
}

/// The sign-in form.
pub async fn login_page(State(state): State<AppState>) -> Response {
    login_form(&state, StatusCode::OK, None)
}

/// Form pairs of a urlencoded body; a body that is not one is a 400 page.
fn parse_form(body: &Bytes) -> Result<Vec<(String, String)>, FormRefused> {
    serde_urlencoded::from_bytes(body).map_err(|_| FormRefused::Unreadable)
}

pub fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

const WRONG: &str = "That e-mail address and password do not match a user.";

/// Checks the e-mail and password; on success starts a fresh session.
///
/// Failed sign-ins slow further attempts down (`ringfence_core::throttle`): the same work
/// and the same answers whether or not the address has a user, and no lock: the owner,
/// from a browser that signed in before, is never held back by failures made elsewhere,
/// and from any other client waits at most half a minute.
pub async fn login(
    State(state): State<AppState>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match parse_form(&body) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let expected = cookie(&headers, LOGIN_COOKIE);
    let sent = field(&form, "csrf");
    if !matches!((expected.as_deref(), sent), (Some(a), Some(b)) if same(a, b)) {
        return error_page(
            StatusCode::FORBIDDEN,
            "csrf_failed",
            "the sign-in form was not sent from this site's sign-in page (missing or wrong CSRF token); open /login again",
            false,
        );
    }
    let email = field(&form, "email").unwrap_or("").to_owned();
    let password = zeroize::Zeroizing::new(field(&form, "password").unwrap_or("").to_owned());
    if email.is_empty() || password.is_empty() || email.len() > 254 || password.len() > 1024 {
        return login_form(&state, StatusCode::UNPROCESSABLE_ENTITY, Some(WRONG));
    }
    let (index, device) = match (
        state.log.user_index(&email).await,
        state.log.user_index(&format!("device:{email}")).await,
    ) {
        (Ok(index), Ok(device)) => (index, hex(&device)),
        (Err(e), _) | (_, Err(e)) => return super::error::PageError::from(e).into_response(),
    };
    let client = extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let keys = AttemptKeys::new(&index, client);
    let trusted = cookie(&headers, DEVICE_COOKIE).is_some_and(|c| same(&c, &device));
    let now = Timestamp::now();
    let wait = state.sign_in_throttle.wait_ms(&keys, trusted, now);
    if wait > 0 {
        // Nothing is looked up or verified: the answer is the same for every address.
        let seconds = (wait + 999) / 1000;
        tracing::info!(wait_s = seconds, "sign-in throttled");
        let message = format!(
            "Too many failed sign-ins from here or for this address: try again in {seconds} seconds."
        );
        let mut response = login_form(&state, StatusCode::TOO_MANY_REQUESTS, Some(&message));
        if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(RETRY_AFTER, v);
        }
        return response;
    }
    let user = match state.log.store().user_by_email_index(index).await {
        Ok(u) => u,
        Err(e) => return super::error::PageError::from(e).into_response(),
    };
    let stored = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| dummy_hash().to_owned());
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &stored))
        .await
        .unwrap_or(false);
    // A disabled user is answered exactly like a wrong password, and counts as a failure.
    let Some(user) = user.clone().filter(|u| ok && u.disabled_at.is_none()) else {
        state.sign_in_throttle.failed(&keys, now);
        match &user {
            Some(u) => tracing::info!(user_id = %u.id, "sign-in failed"),
            None => tracing::info!("sign-in failed"),
        }
        return login_form(&state, StatusCode::UNPROCESSABLE_ENTITY, Some(WRONG));
    };
    state.sign_in_throttle.succeeded(&keys);
    let value = random_token();
    let session = WebSessionRecord {
        hash: session_hash(&value),
        user_id: user.id,
        csrf_token: random_token(),
        created_at: now,
        last_seen_at: now,
    };
    let replaces = cookie(&headers, SESSION_COOKIE).map(|v| session_hash(&v));
    if let Err(e) = state.log.store().start_web_session(session, replaces).await {
        return super::error::PageError::from(e).into_response();
    }
    tracing::info!(user_id = %user.id, "signed in");
    let mut response = redirect_to("/");
    response.headers_mut().append(
        SET_COOKIE,
        cookie_header(&state, SESSION_COOKIE, &value, None, false),
    );
    response.headers_mut().append(
        SET_COOKIE,
        cookie_header(&state, LOGIN_COOKIE, "", Some(0), true),
    );
    response.headers_mut().append(
        SET_COOKIE,
        cookie_header(&state, DEVICE_COOKIE, &device, Some(DEVICE_MAX_AGE_S), true),
    );
    response
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Ends the session (CSRF-checked, so another site cannot sign a user out).
pub async fn logout(
    State(state): State<AppState>,
    user: WebUser,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = user.form(&headers, &body) {
        return r.into_response();
    }
    if let Some(value) = cookie(&headers, SESSION_COOKIE) {
        let now = Timestamp::now().millis();
        if let Err(e) = state
            .log
            .store()
            .end_web_session(
                session_hash(&value),
                Timestamp::from_millis(now - IDLE_MS),
                Timestamp::from_millis(now - ABSOLUTE_MS),
            )
            .await
        {
            return super::error::PageError::from(e).into_response();
        }
    }
    tracing::info!(user_id = %user.user.id, "signed out");
    let mut response = redirect_to("/login");
    response.headers_mut().append(
        SET_COOKIE,
        cookie_header(&state, SESSION_COOKIE, "", Some(0), false),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_only_when_given_once() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_static("a=1; rf_session=abc; b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE).as_deref(), Some("abc"));
        headers.append(COOKIE, HeaderValue::from_static("rf_session=def"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), None);
        assert_eq!(cookie(&HeaderMap::new(), SESSION_COOKIE), None);
    }

    #[test]
    fn tokens_compare_only_when_equal() {
        let t = random_token();
        assert_eq!(t.len(), 43);
        assert!(same(&t, &t.clone()));
        assert!(!same(&t, &random_token()));
        assert!(!same(&t, &t[..42]));
    }
}
