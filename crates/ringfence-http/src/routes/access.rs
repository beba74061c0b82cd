//! Tokens and users that can be taken away: list what the caller's scope reaches, revoke a
//! token, disable, enable or remove a user, give a user a new password or another role.
//!
//! An installation admin manages every token and user; an agency admin those of its agency
//! and of the agency's accounts; an account admin its account's; analysts and ingest tokens
//! none. A token or user outside the caller's scope is answered like one that does not
//! exist, and no one gives a role above their own (`Principal::may_grant`). The journal
//! names ids and roles only.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zeroize::Zeroizing;

use ringfence_core::access::{Denied, Principal, Role, Scope};
use ringfence_core::call::FieldError;
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, AgencyId, TokenId, UserId};
use ringfence_crypto::password::PasswordError;
use ringfence_store::users::{NewUserError, hash_new_password};
use ringfence_store::{AuditEvent, TokenRecord, UserChange, UserRecord};

use super::path_id;
use crate::auth::Auth;
use crate::body::JsonBody;
use crate::error::{ApiError, ApiResult, Code};
use crate::state::AppState;

/// A token as listed: never its secret or its hash.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "0190c0a0-c0a0-7000-8000-000000000001", "role": "analyst", "agency_id": "0190c0a0-c0a0-7000-8000-0000000000a1", "account_id": "0190c0a0-c0a0-7000-8000-0000000000b1", "personal_data": false, "label": "reporting dashboard", "created_at": "2026-03-01T09:00:00Z", "expires_at": "2026-06-01T09:00:00Z", "revoked_at": null, "last_used_at": "2026-03-02T10:15:00Z"}))]
pub struct TokenOutput {
    pub id: String,
    pub role: String,
    pub agency_id: Option<String>,
    pub account_id: Option<String>,
    pub personal_data: bool,
    pub label: Option<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    /// When it last authenticated a request (recorded at most once a minute).
    pub last_used_at: Option<String>,
}

fn scope_ids(scope: &Scope) -> (Option<AgencyId>, Option<AccountId>) {
    match *scope {
        Scope::Installation => (None, None),
        Scope::Agency(a) => (Some(a), None),
        Scope::Account { agency, account } => (Some(agency), Some(account)),
    }
}

impl From<&TokenRecord> for TokenOutput {
    fn from(t: &TokenRecord) -> Self {
        let (agency, account) = scope_ids(&t.scope);
        Self {
            id: t.id.to_string(),
            role: t.role.as_str().into(),
            agency_id: agency.map(|a| a.to_string()),
            account_id: account.map(|a| a.to_string()),
            personal_data: t.personal_data,
            label: t.label.clone(),
            created_at: t.created_at.to_rfc3339(),
            expires_at: t.expires_at.map(Timestamp::to_rfc3339),
            revoked_at: t.revoked_at.map(Timestamp::to_rfc3339),
            last_used_at: t.last_used_at.map(Timestamp::to_rfc3339),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    pub items: Vec<TokenOutput>,
}

/// A user as listed. E-mail addresses are not stored in the clear, so there is none.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "0190c0a0-c0a0-7000-8000-000000000002", "role": "analyst", "agency_id": "0190c0a0-c0a0-7000-8000-0000000000a1", "account_id": "0190c0a0-c0a0-7000-8000-0000000000b1", "personal_data": false, "created_at": "2026-03-01T09:00:00Z", "disabled_at": null, "last_sign_in_at": "2026-03-02T08:30:00Z"}))]
pub struct UserOutput {
    pub id: String,
    pub role: String,
    pub agency_id: Option<String>,
    pub account_id: Option<String>,
    pub personal_data: bool,
    pub created_at: String,
    /// Set while the user is disabled (cannot sign in).
    pub disabled_at: Option<String>,
    pub last_sign_in_at: Option<String>,
}

impl From<&UserRecord> for UserOutput {
    fn from(u: &UserRecord) -> Self {
        let (agency, account) = scope_ids(&u.scope);
        Self {
            id: u.id.to_string(),
            role: u.role.as_str().into(),
            agency_id: agency.map(|a| a.to_string()),
            account_id: account.map(|a| a.to_string()),
            personal_data: u.personal_data,
            created_at: u.created_at.to_rfc3339(),
            disabled_at: u.disabled_at.map(Timestamp::to_rfc3339),
            last_sign_in_at: u.last_sign_in_at.map(Timestamp::to_rfc3339),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub items: Vec<UserOutput>,
}

/// Changes to a user; absent fields stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"disabled": true}))]
pub struct UserUpdate {
    /// true disables the user (ending every session at once), false enables it.
    pub disabled: Option<bool>,
    /// admin, agency_admin, account_admin or analyst; it must fit the user's scope and be
    /// no more than the caller's own role.
    #[schema(schema_with = crate::schemas::user_role)]
    pub role: Option<String>,
    /// Whether an analyst sees personal data unmasked (other roles always do).
    pub personal_data: Option<bool>,
    /// A new password (12 to 256 characters); ends every session of the user.
    #[schema(min_length = 12, max_length = 256)]
    pub password: Option<String>,
}

impl std::fmt::Debug for UserUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserUpdate")
            .field("disabled", &self.disabled)
            .field("role", &self.role)
            .field("personal_data", &self.personal_data)
            .finish_non_exhaustive()
    }
}

/// A denial on a token or user: outside the scope is "not found", like an id that does not
/// exist.
fn denied(d: Denied, what: &str) -> ApiError {
    match d {
        Denied::NotFound => ApiError::not_found(what),
        Denied::Forbidden => ApiError::new(
            Code::Forbidden,
            "only admins manage tokens and users (an account admin its account's, an agency admin its agency's)",
        ),
    }
}

/// The `?account_id` / `?agency_id` filter, checked against the caller: the scope the list
/// is limited to (the caller's own without a filter).
async fn filter_scope(
    state: &AppState,
    principal: &Principal,
    raw: Option<&str>,
) -> ApiResult<Scope> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|_| ApiError::new(Code::InvalidQuery, "the query string could not be read"))?;
    let mut account = None;
    let mut agency = None;
    for (key, value) in pairs {
        match key.as_str() {
            "account_id" => account = Some(value),
            "agency_id" => agency = Some(value),
            _ => {
                return Err(ApiError::new(
                    Code::InvalidQuery,
                    format!("{key}: unknown parameter (account_id or agency_id)"),
                ));
            }
        }
    }
    let bad_id = |what: &str| {
        ApiError::new(
            Code::InvalidQuery,
            format!("{what}: not an id (a UUID like 0190c0a0-c0a0-7000-8000-000000000000)"),
        )
    };
    let scope = match (account, agency) {
        // Both filters narrow together: the account, which must be one of the agency's.
        (Some(account), agency) => {
            let id: AccountId = account.parse().map_err(|_| bad_id("account_id"))?;
            let agency: Option<AgencyId> = agency
                .map(|a| a.parse().map_err(|_| bad_id("agency_id")))
                .transpose()?;
            let tenant = state.tenant(id).await?;
            if agency.is_some_and(|a| a != tenant.agency) {
                return Err(ApiError::not_found("account"));
            }
            Scope::Account {
                agency: tenant.agency,
                account: id,
            }
        }
        (None, Some(agency)) => {
            let id: AgencyId = agency.parse().map_err(|_| bad_id("agency_id"))?;
            if principal.covers(&Scope::Agency(id)) {
                state
                    .log
                    .store()
                    .agency(id)
                    .await?
                    .ok_or_else(|| ApiError::not_found("agency"))?;
            }
            Scope::Agency(id)
        }
        (None, None) => principal.scope,
    };
    let what = match scope {
        Scope::Account { .. } => "account",
        _ => "agency",
    };
    principal
        .check_access(&scope)
        .map_err(|d| denied(d, what))?;
    Ok(scope)
}

/// Does `filter` (a scope the caller covers) take in something of scope `scope`?
fn within(filter: &Scope, scope: &Scope) -> bool {
    match (filter, scope) {
        (Scope::Installation, _) => true,
        (Scope::Agency(a), Scope::Agency(b)) => a == b,
        (Scope::Agency(a), Scope::Account { agency, .. }) => a == agency,
        (Scope::Account { account: a, .. }, Scope::Account { account: b, .. }) => a == b,
        _ => false,
    }
}

/// The tokens the caller may manage, revoked and expired ones included (never a secret).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "access",
    params(
        ("account_id" = Option<String>, Query, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "only the tokens of this account (with agency_id too: it must be one of the agency's)"),
        ("agency_id" = Option<String>, Query, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "only the tokens of this agency and its accounts"),
    ),
    responses(
        (status = 200, body = TokenList),
        (status = 400, description = "an unknown parameter, or an id that does not parse", extensions(("x-error-codes" = json!([Code::InvalidQuery])))),
        (status = 403, description = "analysts and ingest tokens manage no tokens", extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such account or agency in the token's scope", extensions(("x-error-codes" = json!([Code::NotFound])))),
    ),
    security(("bearer" = [])))]
pub async fn list_tokens(
    State(state): State<AppState>,
    Auth(principal): Auth,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<TokenList>> {
    let scope = filter_scope(&state, &principal, raw.as_deref()).await?;
    let items = state
        .log
        .store()
        .list_tokens()
        .await?
        .iter()
        .filter(|t| within(&scope, &t.scope) && principal.covers(&t.scope))
        .map(TokenOutput::from)
        .collect();
    Ok(Json(TokenList { items }))
}

/// Revokes a token: refused from the very next request, here at once (this process's
/// token cache drops it), by other processes within the cache's 10 seconds.
#[utoipa::path(delete, path = "/api/v1/tokens/{token_id}", tag = "access",
    params(("token_id" = String, Path, description = "token id")),
    responses(
        (status = 204, description = "revoked (also when it was revoked already)"),
        (status = 403, description = "analysts and ingest tokens revoke nothing", extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such token in the token's scope", extensions(("x-error-codes" = json!([Code::NotFound])))),
    ),
    security(("bearer" = [])))]
pub async fn revoke_token(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(token): Path<String>,
) -> ApiResult<StatusCode> {
    let id: TokenId = path_id(&token, "token")?;
    let record = state
        .log
        .store()
        .token(id)
        .await?
        .ok_or_else(|| ApiError::not_found("token"))?;
    principal
        .check_access(&record.scope)
        .map_err(|d| denied(d, "token"))?;
    let (agency_id, account_id) = scope_ids(&record.scope);
    let event = AuditEvent {
        actor: principal.actor(),
        action: "token.revoked".into(),
        agency_id,
        account_id,
        subject: Some(format!("token:{id}")),
        count: None,
        reason: None,
        details: serde_json::json!({"role": record.role.as_str()}).to_string(),
    };
    let revoked = state
        .log
        .store()
        .revoke_token(id, Timestamp::now(), event)
        .await;
    // Dropped whatever the outcome: a cached copy must not outlive a revocation.
    state.token_revoked(id);
    if revoked? {
        tracing::info!(token_id = %id, "token revoked");
        state.log.anchor_journal().await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn list_users_in(
    state: &AppState,
    principal: &Principal,
    scope: &Scope,
) -> ApiResult<Vec<UserOutput>> {
    Ok(state
        .log
        .store()
        .list_users()
        .await?
        .iter()
        .filter(|u| within(scope, &u.scope) && principal.covers(&u.scope))
        .map(UserOutput::from)
        .collect())
}

/// The users of an account (those who sign in to it; agency users are listed by
/// `GET /api/v1/users?agency_id=`).
#[utoipa::path(get, path = "/api/v1/accounts/{account_id}/users", tag = "access",
    params(("account_id" = String, Path, description = "account id")),
    responses(
        (status = 200, body = UserList),
        (status = 403, description = "analysts and ingest tokens list no users", extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such account in the token's scope", extensions(("x-error-codes" = json!([Code::NotFound])))),
    ),
    security(("bearer" = [])))]
pub async fn account_users(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(account): Path<String>,
) -> ApiResult<Json<UserList>> {
    let id: AccountId = path_id(&account, "account")?;
    let tenant = state.tenant(id).await?;
    let scope = Scope::Account {
        agency: tenant.agency,
        account: id,
    };
    principal
        .check_access(&scope)
        .map_err(|d| denied(d, "account"))?;
    let items = list_users_in(&state, &principal, &scope).await?;
    Ok(Json(UserList { items }))
}

/// The users the caller may manage, optionally of one account or agency (with its accounts).
#[utoipa::path(get, path = "/api/v1/users", tag = "access",
    params(
        ("account_id" = Option<String>, Query, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "only the users of this account (with agency_id too: it must be one of the agency's)"),
        ("agency_id" = Option<String>, Query, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "only the users of this agency and its accounts"),
    ),
    responses(
        (status = 200, body = UserList),
        (status = 400, description = "an unknown parameter, or an id that does not parse", extensions(("x-error-codes" = json!([Code::InvalidQuery])))),
        (status = 403, description = "analysts and ingest tokens list no users", extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such account or agency in the token's scope", extensions(("x-error-codes" = json!([Code::NotFound])))),
    ),
    security(("bearer" = [])))]
pub async fn list_users(
    State(state): State<AppState>,
    Auth(principal): Auth,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<UserList>> {
    let scope = filter_scope(&state, &principal, raw.as_deref()).await?;
    let items = list_users_in(&state, &principal, &scope).await?;
    Ok(Json(UserList { items }))
}

/// The user, if the caller may manage it.
async fn managed_user(state: &AppState, principal: &Principal, id: &str) -> ApiResult<UserRecord> {
    let id: UserId = path_id(id, "user")?;
    let user = state
        .log
        .store()
        .user(id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    principal
        .check_access(&user.scope)
        .map_err(|d| denied(d, "user"))?;
    Ok(user)
}

fn own_user(principal: &Principal, user: &UserRecord, what: &str) -> ApiResult<()> {
    if principal.user_id == Some(user.id) {
        return Err(ApiError::new(
            Code::Conflict,
            format!("you cannot {what} your own user; another admin can"),
        ));
    }
    Ok(())
}

fn event(principal: &Principal, user: &UserRecord, action: &str, details: String) -> AuditEvent {
    let (agency_id, account_id) = scope_ids(&user.scope);
    AuditEvent {
        actor: principal.actor(),
        action: action.into(),
        agency_id,
        account_id,
        subject: Some(format!("user:{}", user.id)),
        count: None,
        reason: None,
        details,
    }
}

/// Disables or enables a user, changes its role, or gives it a new password. Disabling
/// and a new password end every session of the user at once.
#[utoipa::path(patch, path = "/api/v1/users/{user_id}", tag = "access",
    params(("user_id" = String, Path, description = "user id")),
    request_body = UserUpdate,
    responses(
        (status = 200, body = UserOutput),
        (status = 403, description = "the role manages no users, or the role asked for is above its own", extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such user in the token's scope", extensions(("x-error-codes" = json!([Code::NotFound])))),
        (status = 409, description = "disabling or changing the role of one's own user", extensions(("x-error-codes" = json!([Code::Conflict])))),
    ),
    security(("bearer" = [])))]
pub async fn update_user(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(user): Path<String>,
    JsonBody(input): JsonBody<UserUpdate>,
) -> ApiResult<Json<UserOutput>> {
    let user = managed_user(&state, &principal, &user).await?;
    if input.disabled.is_none()
        && input.role.is_none()
        && input.personal_data.is_none()
        && input.password.is_none()
    {
        return Err(ApiError::fields(vec![FieldError::new(
            "disabled",
            "missing_field",
            "name at least one of disabled, role, personal_data, password",
        )]));
    }
    let mut change = UserChange::default();
    let mut events = Vec::new();
    if let Some(disabled) = input.disabled
        && disabled != user.disabled_at.is_some()
    {
        if disabled {
            own_user(&principal, &user, "disable")?;
        }
        change.disabled = Some(disabled.then(Timestamp::now));
        let action = if disabled {
            "user.disabled"
        } else {
            "user.enabled"
        };
        events.push(event(&principal, &user, action, "{}".into()));
    }
    let role = match input.role.as_deref() {
        None => user.role,
        Some(name) => match Role::parse(name) {
            Some(role) if role != Role::Ingest => role,
            _ => {
                return Err(ApiError::fields(vec![FieldError::new(
                    "role",
                    "invalid_field",
                    "one of admin, agency_admin, account_admin, analyst",
                )]));
            }
        },
    };
    let personal_data = match input.personal_data {
        Some(false) if role != Role::Analyst => {
            return Err(ApiError::fields(vec![FieldError::new(
                "personal_data",
                "invalid_field",
                "only analysts can have personal data masked",
            )]));
        }
        Some(p) => p,
        None => user.personal_data || role != Role::Analyst,
    };
    if role != user.role || personal_data != user.personal_data {
        own_user(&principal, &user, "change the role of")?;
        if role != user.role {
            Principal::validate_scope(role, &user.scope).map_err(|e| {
                ApiError::fields(vec![FieldError::new(
                    "role",
                    "invalid_field",
                    format!("{e}: this user's scope fits another role"),
                )])
            })?;
            principal
                .may_grant(role, &user.scope)
                .map_err(|d| denied(d, "user"))?;
        }
        change.role = Some(role);
        change.personal_data = Some(personal_data);
        events.push(event(
            &principal,
            &user,
            "user.role_changed",
            serde_json::json!({"from": user.role.as_str(), "to": role.as_str(), "personal_data": personal_data}).to_string(),
        ));
    }
    if let Some(password) = input.password {
        change.password_hash = Some(match hash_new_password(Zeroizing::new(password)).await {
            Ok(hash) => hash,
            Err(NewUserError::Password(PasswordError::Length)) => {
                return Err(ApiError::fields(vec![FieldError::new(
                    "password",
                    "invalid_field",
                    PasswordError::Length.to_string(),
                )]));
            }
            Err(e) => return Err(ApiError::internal(&e)),
        });
        events.push(event(&principal, &user, "user.password_reset", "{}".into()));
    }
    if events.is_empty() {
        return Ok(Json((&user).into()));
    }
    let updated = state
        .log
        .store()
        .update_user(user.id, change, events)
        .await?;
    tracing::info!(user_id = %user.id, "user changed");
    state.log.anchor_journal().await?;
    Ok(Json((&updated).into()))
}

/// Removes a user: every session of theirs ends at once, and the address may be added again.
#[utoipa::path(delete, path = "/api/v1/users/{user_id}", tag = "access",
    params(("user_id" = String, Path, description = "user id")),
    responses(
        (status = 204, description = "removed"),
        (status = 403, description = "the role manages no users", extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such user in the token's scope", extensions(("x-error-codes" = json!([Code::NotFound])))),
        (status = 409, description = "removing one's own user", extensions(("x-error-codes" = json!([Code::Conflict])))),
    ),
    security(("bearer" = [])))]
pub async fn remove_user(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(user): Path<String>,
) -> ApiResult<StatusCode> {
    let user = managed_user(&state, &principal, &user).await?;
    own_user(&principal, &user, "remove")?;
    let removed = event(
        &principal,
        &user,
        "user.removed",
        serde_json::json!({"role": user.role.as_str()}).to_string(),
    );
    state.log.store().remove_user(user.id, removed).await?;
    tracing::info!(user_id = %user.id, "user removed");
    state.log.anchor_journal().await?;
    Ok(StatusCode::NO_CONTENT)
}
