//! Ringfence's HTTP edge: the axum router, the wire DTOs, the one `ApiError`, bearer-token
//! authentication and the OpenAPI document.
//!
//! This is the only crate that knows the wire format. It never logs a request's URI, query
//! string or body (they may hold phone numbers): logs and metric labels carry the matched
//! route template, the status and ids.

pub mod auth;
pub mod body;
pub mod dto;
pub mod error;
pub mod export;
pub mod openapi;
pub mod routes;
pub mod schemas;
pub mod state;
pub mod web;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;

use openapi::{BearerAuth, ErrorResponses};
use utoipa_swagger_ui::SwaggerUi;

pub use error::{ApiError, Code};
pub use state::{AppState, Limits};

use routes::{
    accounts, agencies, audit, calls, consents, legal_hold, ops, recordings, redaction, sessions,
    twilio,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Ringfence", description = "Privacy-first call-tracking data platform. Errors are `{\"error\": {\"code\", \"message\", \"details\"?}}` with a stable `code`."),
    paths(
        calls::create_call, calls::create_batch, calls::list_calls, calls::get_call,
        sessions::create_session,
        recordings::put_recording, recordings::get_recording,
        redaction::redact_call, redaction::redact_caller,
        agencies::get_settings, agencies::put_settings,
        accounts::get_settings, accounts::put_settings,
        legal_hold::put_hold, legal_hold::delete_hold,
        audit::list,
        routes::checklist::account, routes::checklist::agency,
        consents::record, consents::list, consents::create_notice, consents::update_notice, consents::list_notices,
        twilio::voice, twilio::recording,
        routes::export::export_caller,
        routes::recipients::create, routes::recipients::list, routes::recipients::update, routes::recipients::remove,
        routes::recipients::deliveries, routes::recipients::retry,
        routes::access::list_tokens, routes::access::revoke_token,
        routes::access::account_users, routes::access::list_users,
        routes::access::update_user, routes::access::remove_user,
        ops::healthz, ops::readyz, ops::metrics,
    ),
    components(schemas(error::ErrorEnvelope, error::ErrorBody, error::ErrorDetail, error::Code)),
    modifiers(&BearerAuth, &ErrorResponses),
    tags((name = "calls"), (name = "sessions"), (name = "recordings"), (name = "redaction"), (name = "agencies"), (name = "accounts"), (name = "consent"), (name = "telephony"), (name = "recipients"), (name = "access", description = "tokens and users: list, revoke, disable, remove, new password, new role"), (name = "audit"), (name = "operations")),
)]
pub struct ApiDoc;

/// How a `call.created` delivery shows its call: as `GET /api/v1/calls/{id}` would, to a
/// token with or without personal-data access.
pub fn webhook_call_renderer() -> ringfence_jobs::deliveries::RenderCall {
    std::sync::Arc::new(|call, personal_data| {
        serde_json::to_value(dto::CallOutput::from_call(call, personal_data))
            .unwrap_or(serde_json::Value::Null)
    })
}

/// The whole application's routes.
pub fn router(state: AppState) -> Router {
    let limits = state.limits;
    let api = Router::new()
        .route(
            "/api/v1/accounts/{account_id}/calls",
            post(calls::create_call).get(calls::list_calls),
        )
        .route(
            "/api/v1/accounts/{account_id}/calls/batch",
            post(calls::create_batch).layer(DefaultBodyLimit::max(limits.max_batch_bytes)),
        )
        .route(
            "/api/v1/accounts/{account_id}/sessions",
            post(sessions::create_session),
        )
        .route("/api/v1/calls/{call_id}", get(calls::get_call))
        .route(
            "/api/v1/calls/{call_id}/recording",
            get(recordings::get_recording)
                .put(recordings::put_recording)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/api/v1/calls/{call_id}/redact",
            post(redaction::redact_call),
        )
        .route(
            "/api/v1/accounts/{account_id}/callers/redact",
            post(redaction::redact_caller),
        )
        .route(
            "/api/v1/agencies/{agency_id}/settings",
            get(agencies::get_settings).put(agencies::put_settings),
        )
        .route("/api/v1/audit", get(audit::list))
        .route(
            "/api/v1/accounts/{account_id}/checklist",
            get(routes::checklist::account),
        )
        .route(
            "/api/v1/agencies/{agency_id}/checklist",
            get(routes::checklist::agency),
        )
        .route(
            "/api/v1/accounts/{account_id}/settings",
            get(accounts::get_settings).put(accounts::put_settings),
        )
        .route(
            "/api/v1/calls/{call_id}/legal-hold",
            axum::routing::put(legal_hold::put_hold).delete(legal_hold::delete_hold),
        )
        .route(
            "/api/v1/accounts/{account_id}/callers/{number}/export",
            get(routes::export::export_caller),
        )
        .route(
            "/api/v1/accounts/{account_id}/consents",
            post(consents::record).get(consents::list),
        )
        .route(
            "/api/v1/accounts/{account_id}/notices",
            post(consents::create_notice).get(consents::list_notices),
        )
        .route(
            "/api/v1/accounts/{account_id}/notices/{category}/{version}",
            axum::routing::put(consents::update_notice),
        )
        .route(
            "/api/v1/accounts/{account_id}/recipients",
            post(routes::recipients::create).get(routes::recipients::list),
        )
        .route(
            "/api/v1/accounts/{account_id}/recipients/{recipient_id}",
            axum::routing::put(routes::recipients::update).delete(routes::recipients::remove),
        )
        .route(
            "/api/v1/accounts/{account_id}/recipients/{recipient_id}/deliveries",
            get(routes::recipients::deliveries),
        )
        .route(
            "/api/v1/accounts/{account_id}/recipients/{recipient_id}/deliveries/{delivery_id}/retry",
            post(routes::recipients::retry),
        )
        .route("/api/v1/tokens", get(routes::access::list_tokens))
        .route(
            "/api/v1/tokens/{token_id}",
            axum::routing::delete(routes::access::revoke_token),
        )
        .route(
            "/api/v1/accounts/{account_id}/users",
            get(routes::access::account_users),
        )
        .route("/api/v1/users", get(routes::access::list_users))
        .route(
            "/api/v1/users/{user_id}",
            axum::routing::patch(routes::access::update_user).delete(routes::access::remove_user),
        )
        .route("/webhooks/twilio/{account_id}/voice", post(twilio::voice))
        .route(
            "/webhooks/twilio/{account_id}/recording",
            post(twilio::recording),
        )
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .layer(DefaultBodyLimit::max(limits.max_json_bytes))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state(state.clone());
    // web UI: the pages, merged before the API's fallback.
    let api = web::router(&state).with_state(state.clone()).merge(api);
    Router::new()
        .merge(
            Router::from(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
                .layer(middleware::map_response(docs_headers)),
        )
        .merge(api)
        .layer(middleware::from_fn(cap_headers))
        .layer(middleware::from_fn(observe))
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                ApiError::internal(&"a handler panicked").into_response()
            },
        ))
}

/// Swagger UI's headers: a CSP as strict as the pages' except for inline styles, which
/// Swagger UI's rendering sets (its scripts are files of its own, served from the binary).
async fn docs_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_SECURITY_POLICY,
        axum::http::HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    headers.insert(
        axum::http::header::X_CONTENT_TYPE_OPTIONS,
        axum::http::HeaderValue::from_static("nosniff"),
    );
    response
}

async fn not_found() -> ApiError {
    ApiError::not_found("route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        Code::MethodNotAllowed,
        "this route does not take that method",
    )
}

/// The most header bytes (names and values) a request may carry; more is a 431.
pub const MAX_HEADER_BYTES: usize = 32 << 10;

/// Refuses requests whose headers together exceed [`MAX_HEADER_BYTES`], before any
/// handler (or the token lookup) reads them.
async fn cap_headers(request: Request, next: Next) -> Response {
    let total: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if total > MAX_HEADER_BYTES {
        return ApiError::new(
            Code::HeadersTooLarge,
            format!("request headers larger than {MAX_HEADER_BYTES} bytes in all"),
        )
        .into_response();
    }
    next.run(request).await
}

/// Logs and counts each request by its route template, never its URI.
async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    tracing::info!(target: "ringfence::http", %method, route = %route, status, micros = elapsed.as_micros() as u64, "request");
    let labels = [
        ("method", method.to_string()),
        ("route", route),
        ("status", status.to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels[..2])
        .record(elapsed.as_secs_f64());
    response
}
