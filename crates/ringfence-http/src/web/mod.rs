//! The web interface: server-rendered pages (askama) with htmx for partial updates, our own
//! CSS, both embedded in the binary.
//!
//! Every page acts as the signed-in user's [`Principal`](ringfence_core::access::Principal),
//! built exactly like a token's, and reads and writes through the JSON API's own handlers
//! (called as functions), so the access rules, masking and journaling are the API's. Every
//! state-changing request carries the session's CSRF token; pages are sent with a strict
//! Content-Security-Policy (no inline script or style).

mod agency;
mod assets;
mod caller;
mod checklist;
mod csv;
mod error;
mod journal;
mod pages;
mod present;
mod session;
pub mod throttle;
mod users;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

pub use session::{SESSION_COOKIE, WebUser};

use crate::state::AppState;

/// Largest form body a page accepts.
const MAX_FORM_BYTES: usize = 16 << 10;

/// The web interface's routes (merged into the application's router).
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/ui/accounts/{account_id}/calls", get(pages::call_log))
        .route("/ui/accounts/{account_id}/calls.csv", get(csv::download))
        .route("/ui/calls/{call_id}", get(pages::call_detail))
        .route("/ui/calls/{call_id}/recording", get(pages::recording))
        .route(
            "/ui/calls/{call_id}/redact",
            get(pages::confirm_redact_call).post(pages::redact_call),
        )
        .route(
            "/ui/calls/{call_id}/redact-caller",
            get(pages::confirm_redact_caller).post(pages::redact_caller),
        )
        .route("/ui/calls/{call_id}/legal-hold", post(pages::legal_hold))
        .route("/ui/calls/{call_id}/caller", get(caller::caller))
        .route(
            "/ui/calls/{call_id}/caller/export",
            post(caller::export_caller),
        )
        .route(
            "/ui/accounts/{account_id}/checklist",
            get(checklist::checklist),
        )
        .route(
            "/ui/agencies/{agency_id}/checklist",
            get(checklist::agency_checklist),
        )
        .route("/ui/accounts/{account_id}/settings", get(pages::settings))
        .route("/ui/journal", get(journal::journal))
        .route(
            "/ui/agencies/{agency_id}/settings",
            get(agency::settings).post(agency::save),
        )
        .route(
            "/ui/accounts/{account_id}/users",
            get(users::users).post(users::create_user),
        )
        .route(
            "/ui/accounts/{account_id}/users/{user_id}",
            post(users::change_user),
        )
        .route(
            "/ui/accounts/{account_id}/users/{user_id}/remove",
            get(users::confirm_remove),
        )
        .route(
            "/ui/accounts/{account_id}/settings/retention",
            post(pages::save_retention),
        )
        .route(
            "/ui/accounts/{account_id}/settings/collection",
            post(pages::save_collection),
        )
        .route(
            "/ui/accounts/{account_id}/notices",
            post(pages::create_notice),
        )
        .route(
            "/ui/accounts/{account_id}/recipients",
            post(pages::create_recipient),
        )
        .route(
            "/ui/accounts/{account_id}/recipients/{recipient_id}",
            post(pages::change_recipient),
        )
        .route(
            "/ui/accounts/{account_id}/recipients/{recipient_id}/deliveries/{delivery_id}/retry",
            post(pages::retry_delivery),
        )
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            error::with_navigation,
        ))
        .layer(middleware::from_fn(security_headers))
        .route("/assets/{name}", get(assets::asset))
}

/// Headers on every page: no script, style, frame or form target but our own.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), interest-cohort=()"),
    );
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
