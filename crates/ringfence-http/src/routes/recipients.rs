//! Recipients (GDPR Art. 19): the systems an account forwards calls to and tells of every
//! erasure, and the status of each delivery.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use ringfence_core::access::Permission;
use ringfence_core::call::{FieldError, checked_text};
use ringfence_core::net::{is_loopback_address, is_loopback_name};
use ringfence_core::recipients::{DeliveryState, EventKind};
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, DeliveryId, RecipientId};
use ringfence_jobs::outbound::AddressGuard;
use ringfence_store::{AuditEvent, DeliveryQuery, DeliveryRow, RecipientRow};

use super::{check_account, path_id};
use crate::auth::Auth;
use crate::body::JsonBody;
use crate::error::{ApiError, ApiResult, Code};
use crate::state::AppState;
use ringfence_core::access::Tenant;

const MAX_NAME: usize = 200;
const MAX_URL: usize = 2048;
const MIN_SECRET: usize = 16;
const MAX_SECRET: usize = 512;

/// A recipient to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "CRM", "url": "https://crm.example.com/hooks/ringfence", "secret": "whsec-9f8e7d6c5b4a39281706", "events": ["call.created", "call.redacted", "caller.erased", "consent.withdrawn"], "personal_data": false}))]
pub struct RecipientInput {
    #[schema(schema_with = crate::schemas::recipient_name)]
    pub name: String,
    /// `https://…` to a public host. Private, link-local, unique-local, CGNAT and other
    /// non-public addresses (or names resolving to them) are refused with
    /// `address_not_allowed`; loopback (127.0.0.0/8, ::1, localhost), also over `http://`,
    /// only where the server runs with `--allow-local-relays`.
    #[schema(schema_with = crate::schemas::recipient_url_required)]
    pub url: String,
    /// The signing secret (16 to 512 bytes, no control characters). Never shown again.
    #[schema(schema_with = crate::schemas::secret_required)]
    pub secret: String,
    /// Any of call.created, call.redacted, caller.erased, consent.withdrawn.
    #[schema(schema_with = crate::schemas::events_required)]
    pub events: Vec<String>,
    /// Whether `call.created` carries the caller's personal data (default true); false
    /// sends it masked, as an analyst without personal-data access sees it.
    pub personal_data: Option<bool>,
}

/// Changes to a recipient; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"events": ["call.redacted", "caller.erased"], "secret": "whsec-0a1b2c3d4e5f60718293"}))]
pub struct RecipientUpdate {
    #[schema(schema_with = crate::schemas::recipient_name_optional)]
    pub name: Option<String>,
    #[schema(schema_with = crate::schemas::recipient_url_optional)]
    pub url: Option<String>,
    /// A new signing secret (rotation): deliveries sent from now on are signed with it.
    #[schema(schema_with = crate::schemas::secret_optional)]
    pub secret: Option<String>,
    #[schema(schema_with = crate::schemas::events_optional)]
    pub events: Option<Vec<String>>,
    pub personal_data: Option<bool>,
}

/// A recipient, as the API shows it (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct RecipientOutput {
    pub id: String,
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    pub personal_data: bool,
    pub created_at: String,
    pub updated_at: String,
    /// Set once removed: it receives nothing more.
    pub removed_at: Option<String>,
}

impl From<&RecipientRow> for RecipientOutput {
    fn from(r: &RecipientRow) -> Self {
        Self {
            id: r.id.to_string(),
            name: r.name.clone(),
            url: r.url.clone(),
            events: r.events.iter().map(|e| e.as_str().to_owned()).collect(),
            personal_data: r.personal_data,
            created_at: r.created_at.to_rfc3339(),
            updated_at: r.updated_at.to_rfc3339(),
            removed_at: r.disabled_at.map(Timestamp::to_rfc3339),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecipientList {
    pub items: Vec<RecipientOutput>,
}

/// One event's delivery to one recipient.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryOutput {
    pub id: String,
    /// The event's id: the same for every recipient and every attempt.
    pub event_id: String,
    pub event: String,
    pub call_id: Option<String>,
    /// queued, delivered, dead or cancelled
    pub state: String,
    pub attempts: u32,
    pub created_at: String,
    /// When a queued delivery is next tried.
    pub next_attempt_at: Option<String>,
    pub last_attempt_at: Option<String>,
    /// The HTTP status of the last answer.
    pub last_status: Option<u16>,
    /// Why the last attempt failed (`http_503` and the like for an HTTP answer, `unreachable`
    /// for none at all) or why it was cancelled.
    pub last_error: Option<String>,
    /// When it was delivered, dead-lettered or cancelled.
    pub done_at: Option<String>,
}

impl From<&DeliveryRow> for DeliveryOutput {
    fn from(d: &DeliveryRow) -> Self {
        Self {
            id: d.id.to_string(),
            event_id: d.event_id.to_string(),
            event: d.event.as_str().into(),
            call_id: d.call_id.map(|c| c.to_string()),
            state: d.state.as_str().into(),
            attempts: d.attempts,
            created_at: d.created_at.to_rfc3339(),
            next_attempt_at: (d.state == DeliveryState::Queued)
                .then(|| d.next_attempt_at.to_rfc3339()),
            last_attempt_at: d.last_attempt_at.map(Timestamp::to_rfc3339),
            last_status: d.last_status,
            last_error: d.last_error.clone(),
            done_at: d.done_at.map(Timestamp::to_rfc3339),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub items: Vec<DeliveryOutput>,
    pub next_cursor: Option<String>,
}

fn checked_name(name: String) -> Result<String, FieldError> {
    checked_text("name", Some(name), MAX_NAME, false)?
        .ok_or_else(|| FieldError::new("name", "missing_field", "a recipient needs a name"))
}

/// How long registering a recipient waits for its host name to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

fn not_allowed() -> FieldError {
    FieldError::new(
        "url",
        "address_not_allowed",
        "the host is or resolves to a private, loopback, link-local or otherwise non-public address",
    )
}

/// `https://` to a public host; `http://` or `https://` to loopback only where local relays
/// are enabled (`guard.allow_loopback`); no credentials or fragment in it. An IP-literal host
/// must be permitted by the guard; a name is resolved by [`checked_resolved`].
pub fn checked_url(text: &str, guard: AddressGuard) -> Result<String, FieldError> {
    let invalid = |message: &'static str| FieldError::new("url", "invalid_field", message);
    if text.len() > MAX_URL {
        return Err(FieldError::new(
            "url",
            "too_long",
            format!("longer than {MAX_URL} bytes"),
        ));
    }
    let url = url::Url::parse(text).map_err(|_| invalid("not an absolute URL"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "credentials do not belong in the URL: receivers verify the signature",
        ));
    }
    if url.fragment().is_some() {
        return Err(invalid("a webhook URL has no fragment"));
    }
    if !plain_url_text(text) {
        return Err(invalid(
            "https:// or http:// in lower case, a host name (letters, digits, hyphens; a top-level label of letters), localhost or an IP address, a port from 1 to 65535, then printable ASCII",
        ));
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => is_loopback_address(ip.into()),
        Some(url::Host::Ipv6(ip)) => is_loopback_address(ip.into()),
        Some(url::Host::Domain(d)) => is_loopback_name(d),
        None => return Err(invalid("the URL has no host")),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(invalid(
                "plain http is allowed only to a loopback relay; use https",
            ));
        }
        _ => return Err(invalid("the URL must be https")),
    }
    if !guard.permits_url(&url) {
        return Err(not_allowed());
    }
    Ok(url.to_string())
}

/// Whether a URL's text is written plainly, as the OpenAPI document's pattern says: the
/// scheme in lower case, a host that is an LDH name with a top-level label of letters or an
/// IP address in its usual notation (not `127.1` or `0x7f.1`, which URL parsers also take), a
/// port without leading zeros, and the rest printable ASCII without `#`.
fn plain_url_text(text: &str) -> bool {
    let Some(rest) = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
    else {
        return false;
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((inside, after)) = v6.split_once(']') else {
            return false;
        };
        if inside.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        // After the brackets only a port may follow.
        let port = match after {
            "" => None,
            other => Some(other.strip_prefix(':').unwrap_or(other)),
        };
        (None, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(authority), None),
        }
    };
    let host_ok = host
        .is_none_or(|h| h == "localhost" || h.parse::<std::net::Ipv4Addr>().is_ok() || ldh_name(h));
    let port_ok = port.is_none_or(|p| !p.starts_with('0') && p.parse::<u16>().is_ok_and(|n| n > 0));
    host_ok && port_ok && tail.bytes().all(|b| b.is_ascii_graphic() && b != b'#')
}

/// A host name of letters, digits and hyphens: labels of 1 to 63 that neither start nor end
/// with a hyphen, the last one letters only.
fn ldh_name(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    let last = labels.last().copied().unwrap_or("");
    labels.len() >= 2
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && last.len() >= 2
        && last.bytes().all(|b| b.is_ascii_alphabetic())
}

/// Resolves a checked URL's host name now and refuses it if any of its addresses is one the
/// guard refuses. A name that does not resolve (yet) is accepted: every delivery connects
/// only to addresses the guard permits.
async fn checked_resolved(url: &str, guard: AddressGuard) -> Result<(), FieldError> {
    let Ok(url) = url::Url::parse(url) else {
        return Ok(());
    };
    let Some(url::Host::Domain(name)) = url.host() else {
        return Ok(());
    };
    match guard.check_name(name, RESOLVE_TIMEOUT).await {
        Some(false) => Err(not_allowed()),
        _ => Ok(()),
    }
}

fn checked_secret(secret: &str) -> Result<(), FieldError> {
    if secret.len() < MIN_SECRET {
        return Err(FieldError::new(
            "secret",
            "invalid_field",
            format!("at least {MIN_SECRET} bytes"),
        ));
    }
    if secret.len() > MAX_SECRET {
        return Err(FieldError::new(
            "secret",
            "too_long",
            format!("longer than {MAX_SECRET} bytes"),
        ));
    }
    if secret.chars().any(char::is_control) {
        return Err(FieldError::new(
            "secret",
            "invalid_field",
            "contains control characters",
        ));
    }
    Ok(())
}

fn checked_events(names: &[String]) -> Result<Vec<EventKind>, FieldError> {
    if names.is_empty() {
        return Err(FieldError::new(
            "events",
            "missing_field",
            "name at least one event",
        ));
    }
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let Some(event) = EventKind::parse(name) else {
            return Err(FieldError::new(
                format!("events[{i}]"),
                "invalid_field",
                "one of call.created, call.redacted, caller.erased, consent.withdrawn",
            ));
        };
        if !out.contains(&event) {
            out.push(event);
        }
    }
    out.sort();
    Ok(out)
}

fn collect<T>(errors: &mut Vec<FieldError>, result: Result<T, FieldError>) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
}

fn journal(
    principal: &ringfence_core::access::Principal,
    tenant: &Tenant,
    action: &str,
    r: &RecipientRow,
) -> AuditEvent {
    AuditEvent {
        actor: principal.actor(),
        action: action.into(),
        agency_id: Some(tenant.agency),
        account_id: Some(tenant.account),
        subject: Some(r.id.to_string()),
        count: None,
        reason: None,
        details: format!(
            "{{\"events\":[{}],\"personal_data\":{}}}",
            r.events
                .iter()
                .map(|e| format!("\"{}\"", e.as_str()))
                .collect::<Vec<_>>()
                .join(","),
            r.personal_data
        ),
    }
}

/// Register a recipient.
#[utoipa::path(post, path = "/api/v1/accounts/{account_id}/recipients", tag = "recipients",
    params(("account_id" = String, Path, description = "account id")),
    request_body = RecipientInput,
    responses(
        (status = 201, body = RecipientOutput),
        (status = 403, extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such account in the token's scope", extensions(("x-error-codes" = json!([Code::NotFound])))),
        (status = 422, extensions(("x-error-codes" = json!([Code::TooLong, Code::AddressNotAllowed])))),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(account): Path<String>,
    JsonBody(input): JsonBody<RecipientInput>,
) -> ApiResult<(StatusCode, Json<RecipientOutput>)> {
    let account: AccountId = path_id(&account, "account")?;
    let tenant = state.tenant(account).await?;
    check_account(&principal, Permission::ManageAccount, &tenant)?;
    let mut errors = Vec::new();
    let name = collect(&mut errors, checked_name(input.name));
    let guard = state.outbound().recipient_guard();
    let mut url = collect(&mut errors, checked_url(&input.url, guard));
    if let Some(checked) = &url
        && let Err(e) = checked_resolved(checked, guard).await
    {
        errors.push(e);
        url = None;
    }
    collect(&mut errors, checked_secret(&input.secret));
    let events = collect(&mut errors, checked_events(&input.events));
    let (Some(name), Some(url), Some(events), true) = (name, url, events, errors.is_empty()) else {
        return Err(ApiError::fields(errors));
    };
    let id = RecipientId::generate();
    let secret = state
        .log
        .seal_recipient_secret(account, id, input.secret.as_bytes())
        .await?;
    let now = Timestamp::now();
    let row = RecipientRow {
        id,
        account_id: account,
        name,
        url,
        secret,
        events,
        personal_data: input.personal_data.unwrap_or(true),
        created_at: now,
        updated_at: now,
        disabled_at: None,
    };
    let event = journal(&principal, &tenant, "recipient.created", &row);
    state
        .log
        .store()
        .create_recipient(row.clone(), event)
        .await?;
    state.log.anchor_journal().await?;
    Ok((StatusCode::CREATED, Json((&row).into())))
}

async fn found(state: &AppState, account: AccountId, id: &str) -> ApiResult<RecipientRow> {
    let id: RecipientId = path_id(id, "recipient")?;
    state
        .log
        .store()
        .recipient(account, id)
        .await?
        .ok_or_else(|| ApiError::not_found("recipient"))
}

/// The account's recipients, removed ones included.
#[utoipa::path(get, path = "/api/v1/accounts/{account_id}/recipients", tag = "recipients",
    params(("account_id" = String, Path, description = "account id")),
    responses(
        (status = 200, body = RecipientList),
        (status = 403, extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such account in the token's scope", extensions(("x-error-codes" = json!([Code::NotFound])))),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(account): Path<String>,
) -> ApiResult<Json<RecipientList>> {
    let account: AccountId = path_id(&account, "account")?;
    let tenant = state.tenant(account).await?;
    check_account(&principal, Permission::ManageAccount, &tenant)?;
    let rows = state.log.store().recipients(account).await?;
    Ok(Json(RecipientList {
        items: rows.iter().map(RecipientOutput::from).collect(),
    }))
}

/// Change a recipient (name, URL, events, personal data, or a new secret).
#[utoipa::path(put, path = "/api/v1/accounts/{account_id}/recipients/{recipient_id}", tag = "recipients",
    params(("account_id" = String, Path, description = "account id"), ("recipient_id" = String, Path)),
    request_body = RecipientUpdate,
    responses(
        (status = 200, body = RecipientOutput),
        (status = 403, extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such account or recipient", extensions(("x-error-codes" = json!([Code::NotFound])))),
        (status = 409, description = "the recipient was removed", extensions(("x-error-codes" = json!([Code::Conflict])))),
        (status = 422, extensions(("x-error-codes" = json!([Code::TooLong, Code::AddressNotAllowed])))),
    ),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path((account, recipient)): Path<(String, String)>,
    JsonBody(input): JsonBody<RecipientUpdate>,
) -> ApiResult<Json<RecipientOutput>> {
    let account: AccountId = path_id(&account, "account")?;
    let tenant = state.tenant(account).await?;
    check_account(&principal, Permission::ManageAccount, &tenant)?;
    let mut row = found(&state, account, &recipient).await?;
    if row.disabled_at.is_some() {
        return Err(ApiError::new(
            Code::Conflict,
            "this recipient was removed; register a new one",
        ));
    }
    let mut errors = Vec::new();
    if let Some(name) = input
        .name
        .and_then(|n| collect(&mut errors, checked_name(n)))
    {
        row.name = name;
    }
    let guard = state.outbound().recipient_guard();
    if let Some(url) = input
        .url
        .as_deref()
        .and_then(|u| collect(&mut errors, checked_url(u, guard)))
    {
        match checked_resolved(&url, guard).await {
            Ok(()) => row.url = url,
            Err(e) => errors.push(e),
        }
    }
    if let Some(events) = input
        .events
        .as_deref()
        .and_then(|e| collect(&mut errors, checked_events(e)))
    {
        row.events = events;
    }
    if let Some(secret) = &input.secret {
        collect(&mut errors, checked_secret(secret));
    }
    if !errors.is_empty() {
        return Err(ApiError::fields(errors));
    }
    if let Some(secret) = &input.secret {
        row.secret = state
            .log
            .seal_recipient_secret(account, row.id, secret.as_bytes())
            .await?;
    }
    if let Some(personal) = input.personal_data {
        row.personal_data = personal;
    }
    row.updated_at = Timestamp::now();
    let mut event = journal(&principal, &tenant, "recipient.updated", &row);
    if input.secret.is_some() {
        event.reason = Some("secret_rotated".into());
    }
    if !state
        .log
        .store()
        .update_recipient(row.clone(), event)
        .await?
    {
        return Err(ApiError::not_found("recipient"));
    }
    state.log.anchor_journal().await?;
    Ok(Json((&row).into()))
}

/// Remove a recipient: it receives nothing more and its queued deliveries are cancelled.
/// Its delivery history stays.
#[utoipa::path(delete, path = "/api/v1/accounts/{account_id}/recipients/{recipient_id}", tag = "recipients",
    params(("account_id" = String, Path, description = "account id"), ("recipient_id" = String, Path)),
    responses(
        (status = 200, body = RecipientOutput),
        (status = 403, extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such account or recipient", extensions(("x-error-codes" = json!([Code::NotFound])))),
    ),
    security(("bearer" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path((account, recipient)): Path<(String, String)>,
) -> ApiResult<Json<RecipientOutput>> {
    let account: AccountId = path_id(&account, "account")?;
    let tenant = state.tenant(account).await?;
    check_account(&principal, Permission::ManageAccount, &tenant)?;
    let mut row = found(&state, account, &recipient).await?;
    if row.disabled_at.is_none() {
        let now = Timestamp::now();
        row.disabled_at = Some(now);
        row.updated_at = now;
        let event = journal(&principal, &tenant, "recipient.removed", &row);
        state
            .log
            .store()
            .update_recipient(row.clone(), event)
            .await?;
        state.log.anchor_journal().await?;
    }
    Ok(Json((&row).into()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveryParams {
    state: Option<String>,
    event: Option<String>,
    cursor: Option<String>,
    /// Text, checked by the lists' one rule (`page_limit`).
    limit: Option<String>,
}

/// A recipient's deliveries, newest first.
#[utoipa::path(get, path = "/api/v1/accounts/{account_id}/recipients/{recipient_id}/deliveries", tag = "recipients",
    params(("account_id" = String, Path, description = "account id"), ("recipient_id" = String, Path),
        ("state" = Option<String>, Query, pattern = "^(queued|delivered|dead|cancelled)?$", description = "queued, delivered, dead or cancelled"),
        ("event" = Option<String>, Query, pattern = "^(call\\.created|call\\.redacted|caller\\.erased|consent\\.withdrawn)?$", description = "call.created, call.redacted, caller.erased or consent.withdrawn"), ("cursor" = Option<String>, Query, pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "1 to 500, default 100")),
    responses(
        (status = 200, body = DeliveryList),
        (status = 400, extensions(("x-error-codes" = json!([Code::InvalidQuery, Code::InvalidCursor])))),
        (status = 403, extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such account or recipient", extensions(("x-error-codes" = json!([Code::NotFound])))),
    ),
    security(("bearer" = [])))]
pub async fn deliveries(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path((account, recipient)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<DeliveryList>> {
    let account: AccountId = path_id(&account, "account")?;
    let tenant = state.tenant(account).await?;
    check_account(&principal, Permission::ManageAccount, &tenant)?;
    let recipient = found(&state, account, &recipient).await?;
    let q: DeliveryParams =
        serde_urlencoded::from_str(query.as_deref().unwrap_or("")).map_err(|_| {
            ApiError::new(
                Code::InvalidQuery,
                "unknown or malformed query parameter (state, event, cursor, limit)",
            )
        })?;
    let delivery_state = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(DeliveryState::parse(s).ok_or_else(|| {
            ApiError::new(
                Code::InvalidQuery,
                "state is one of queued, delivered, dead, cancelled",
            )
        })?),
    };
    let event = match q.event.as_deref() {
        None | Some("") => None,
        Some(e) => Some(EventKind::parse(e).ok_or_else(|| {
            ApiError::new(
                Code::InvalidQuery,
                "event is one of call.created, call.redacted, caller.erased, consent.withdrawn",
            )
        })?),
    };
    let before: Option<DeliveryId> = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(
            c.parse()
                .map_err(|_| ApiError::new(Code::InvalidCursor, "malformed cursor"))?,
        ),
    };
    let limit = super::page_limit(q.limit.as_deref(), 100)?;
    let mut rows = state
        .log
        .store()
        .deliveries(DeliveryQuery {
            account_id: account,
            recipient_id: recipient.id,
            state: delivery_state,
            event,
            before,
            limit: limit + 1,
        })
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().map(|d| d.id.to_string())
    } else {
        None
    };
    Ok(Json(DeliveryList {
        items: rows.iter().map(DeliveryOutput::from).collect(),
        next_cursor,
    }))
}

/// Put a dead-lettered delivery back in the queue for a fresh round of attempts.
#[utoipa::path(post, path = "/api/v1/accounts/{account_id}/recipients/{recipient_id}/deliveries/{delivery_id}/retry", tag = "recipients",
    params(("account_id" = String, Path, description = "account id"), ("recipient_id" = String, Path), ("delivery_id" = String, Path)),
    responses(
        (status = 200, body = DeliveryOutput),
        (status = 403, extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such account, recipient or delivery", extensions(("x-error-codes" = json!([Code::NotFound])))),
        (status = 409, description = "the delivery is not dead-lettered, or its recipient was removed", extensions(("x-error-codes" = json!([Code::Conflict])))),
    ),
    security(("bearer" = [])))]
pub async fn retry(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path((account, recipient, delivery)): Path<(String, String, String)>,
) -> ApiResult<Json<DeliveryOutput>> {
    let account: AccountId = path_id(&account, "account")?;
    let tenant = state.tenant(account).await?;
    check_account(&principal, Permission::ManageAccount, &tenant)?;
    let recipient = found(&state, account, &recipient).await?;
    let delivery: DeliveryId = path_id(&delivery, "delivery")?;
    let event = AuditEvent {
        actor: principal.actor(),
        action: "delivery.retried".into(),
        agency_id: Some(tenant.agency),
        account_id: Some(account),
        subject: Some(delivery.to_string()),
        count: None,
        reason: None,
        details: format!("{{\"recipient\":\"{}\"}}", recipient.id),
    };
    match state
        .log
        .store()
        .retry_delivery(account, recipient.id, delivery, event)
        .await?
    {
        Some(row) => {
            state.log.anchor_journal().await?;
            Ok(Json((&row).into()))
        }
        None => Err(ApiError::new(
            Code::Conflict,
            "only a dead-lettered delivery of a current recipient can be retried",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_https_to_public_hosts_and_loopback_only_for_local_relays() {
        let strict = AddressGuard::default();
        let relays = AddressGuard {
            allow_loopback: true,
        };
        for ok in [
            "https://crm.example.com/hooks/ringfence",
            "https://8.8.8.8:8443/x?y=1",
            "https://[2606:4700:4700::1111]/hook",
        ] {
            assert!(checked_url(ok, strict).is_ok(), "{ok}");
            assert!(checked_url(ok, relays).is_ok(), "{ok}");
        }
        for local in [
            "http://127.0.0.1:9000/hook",
            "http://127.1.2.3/hook",
            "http://[::1]:8080/",
            "http://localhost:3000/in",
            "https://relay.localhost/in",
            "https://[::ffff:127.0.0.1]/in",
        ] {
            assert!(checked_url(local, relays).is_ok(), "{local}");
            assert_eq!(
                checked_url(local, strict).unwrap_err().code,
                "address_not_allowed",
                "{local}"
            );
        }
        for private in [
            "https://10.0.0.1/hook",
            "https://172.16.5.4/hook",
            "https://192.168.1.1/hook",
            "https://169.254.169.254/latest/meta-data/",
            "https://100.64.0.1/hook",
            "https://0.0.0.0/hook",
            "https://[fd00::1]/hook",
            "https://[fe80::1]/hook",
            "https://[::ffff:10.0.0.1]/hook",
            "https://224.0.0.1/hook",
            "https://192.0.2.10:8443/x",
        ] {
            for guard in [strict, relays] {
                assert_eq!(
                    checked_url(private, guard).unwrap_err().code,
                    "address_not_allowed",
                    "{private}"
                );
            }
        }
        for bad in [
            "http://crm.example.com/hook",
            "http://192.0.2.10/hook",
            "ftp://crm.example.com/",
            "https://user:pass@crm.example.com/",
            "https://crm.example.com/#frag",
            "crm.example.com/hook",
            "",
            "javascript:alert(1)",
            "https://x.p.f.vjq-w1k.s6.0.md*",
            "https://crm.example.com./hook",
            "HTTPS://crm.example.com/hook",
            "http://127.1/hook",
            "http://0x7f.0.0.1/hook",
            "https://crm.example.com:0443/hook",
            "https://crm.example.com:70000/hook",
            "https://crm.example.com/caf\u{e9}",
            "https://-crm.example.com/hook",
        ] {
            let err = checked_url(bad, relays).unwrap_err();
            assert_eq!(err.field, "url", "{bad}");
            assert!(
                bad.is_empty() || !err.message.contains(bad),
                "the message repeats the input"
            );
        }
        assert_eq!(
            checked_url(&format!("https://example.com/{}", "a".repeat(3000)), strict)
                .unwrap_err()
                .code,
            "too_long"
        );
    }

    #[tokio::test]
    async fn names_resolving_to_refused_addresses_are_refused() {
        let strict = AddressGuard::default();
        assert_eq!(
            checked_resolved("https://localhost/hook", strict)
                .await
                .unwrap_err()
                .code,
            "address_not_allowed"
        );
        let relays = AddressGuard {
            allow_loopback: true,
        };
        assert!(
            checked_resolved("https://localhost/hook", relays)
                .await
                .is_ok()
        );
        assert!(
            checked_resolved("https://10.0.0.1/hook", strict)
                .await
                .is_ok(),
            "literals are checked_url's"
        );
    }

    #[test]
    fn events_are_known_deduplicated_and_not_empty() {
        assert!(checked_events(&[]).is_err());
        assert!(checked_events(&["call.deleted".into()]).is_err());
        assert_eq!(
            checked_events(&[
                "caller.erased".into(),
                "call.created".into(),
                "caller.erased".into()
            ])
            .unwrap(),
            vec![EventKind::CallCreated, EventKind::CallerErased]
        );
    }

    #[test]
    fn secrets_have_a_floor_and_a_ceiling() {
        assert!(checked_secret("short").is_err());
        assert!(checked_secret(&"s".repeat(16)).is_ok());
        assert!(checked_secret(&"s".repeat(513)).is_err());
        assert!(checked_secret("0123456789abcdef\n").is_err());
    }
}
