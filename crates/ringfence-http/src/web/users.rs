//! The users of an account: who may sign in to it, adding one, and taking access away
//! (disable, enable, remove, a new password, another role — through the API's handlers).
//! Users are found by a keyed hash of their e-mail address; the address itself is kept sealed
//! and opened only to name the users on this page, for the admins who manage them.

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use zeroize::Zeroizing;

use ringfence_core::access::{Permission, Role, Scope, Tenant};
use ringfence_core::{AccountId, UserId};
use ringfence_crypto::password::PasswordError;
use ringfence_store::users::NewUserError;

use super::error::{PageError, PageResult};
use super::pages::{Chrome, render};
use super::present::{self, filters};
use super::session::{WebUser, field, redirect_to};
use crate::auth::Auth;
use crate::body::JsonBody;
use crate::error::Code;
use crate::routes::{access, check_account, path_id};
use crate::state::AppState;

struct UserRow {
    id: String,
    /// The user's e-mail address (the viewer manages them), or role and short id for a user
    /// made before addresses were kept.
    name: String,
    role: String,
    personal_data: bool,
    created_at: String,
    disabled_at: Option<String>,
    last_sign_in_at: Option<String>,
    /// The signed-in user's own row: it cannot disable, remove or re-role itself.
    is_self: bool,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    chrome: Chrome,
    account_id: String,
    users: Vec<UserRow>,
    /// The answer to an addition just made (the same whether or not the address was new).
    added: bool,
    /// What the last change did.
    done: Option<&'static str>,
    /// The user whose removal is being confirmed.
    confirm_remove: Option<String>,
    /// How the user being removed is named.
    target_name: String,
}

/// The account, if this user may manage it.
async fn managed(state: &AppState, user: &WebUser, account: &str) -> PageResult<Tenant> {
    let id: AccountId = path_id(account, "account")?;
    let tenant = state.tenant(id).await?;
    check_account(&user.principal, Permission::ManageAccount, &tenant)?;
    Ok(tenant)
}

async fn page(
    state: &AppState,
    user: &WebUser,
    tenant: Tenant,
    added: bool,
    done: Option<&'static str>,
    confirm_remove: Option<String>,
) -> PageResult<Response> {
    let list = access::account_users(
        State(state.clone()),
        Auth(user.principal.clone()),
        Path(tenant.account.to_string()),
    )
    .await?
    .0;
    let me = user.user.id.to_string();
    let mut users = Vec::with_capacity(list.items.len());
    for u in list.items {
        let id: UserId = path_id(&u.id, "user")?;
        let name = match state.log.store().user(id).await? {
            Some(record) => present::user_name(state, &user.principal, &record).await?,
            None => u.id.clone(),
        };
        users.push(UserRow {
            is_self: u.id == me,
            name,
            created_at: u.created_at,
            disabled_at: u.disabled_at,
            last_sign_in_at: u.last_sign_in_at,
            id: u.id,
            role: u.role,
            personal_data: u.personal_data,
        });
    }
    let target_name = confirm_remove
        .as_ref()
        .and_then(|t| users.iter().find(|u| &u.id == t))
        .map(|u| u.name.clone())
        .unwrap_or_default();
    render(&UsersPage {
        target_name,
        chrome: Chrome::new(user, Some(tenant.account)),
        account_id: tenant.account.to_string(),
        users,
        added,
        done,
        confirm_remove,
    })
}

/// What a change did, by the code in `?done=` (a fixed set: nothing from the URL is shown).
fn done_message(code: &str) -> Option<&'static str> {
    Some(match code {
        "disabled" => "The user was disabled: they cannot sign in, and their sessions have ended.",
        "enabled" => "The user was enabled: they can sign in again.",
        "removed" => "The user was removed, and their sessions have ended.",
        "password_reset" => {
            "The user has a new password, and their sessions have ended. Hand it over yourself, through a channel other than e-mail."
        }
        "role_changed" => "The user's role was changed.",
        _ => return None,
    })
}

/// The account's users and the form to add one.
pub async fn users(
    State(state): State<AppState>,
    user: WebUser,
    Path(account): Path<String>,
    RawQuery(raw): RawQuery,
) -> PageResult<Response> {
    let tenant = managed(&state, &user, &account).await?;
    let done = serde_urlencoded::from_str::<Vec<(String, String)>>(raw.as_deref().unwrap_or(""))
        .ok()
        .and_then(|pairs| {
            pairs
                .into_iter()
                .find(|(k, _)| k == "done")
                .and_then(|(_, v)| done_message(&v))
        });
    page(&state, &user, tenant, false, done, None).await
}

/// Asks before a user is removed (nothing changes until the form it shows is sent).
pub async fn confirm_remove(
    State(state): State<AppState>,
    user: WebUser,
    Path((account, target)): Path<(String, String)>,
) -> PageResult<Response> {
    let tenant = managed(&state, &user, &account).await?;
    let target: UserId = path_id(&target, "user")?;
    page(&state, &user, tenant, false, None, Some(target.to_string())).await
}

/// Disables, enables, removes a user, gives it a new password or another role: each through
/// the JSON API's handler (`PATCH`/`DELETE /api/v1/users/{id}`), then back to the list.
pub async fn change_user(
    State(state): State<AppState>,
    user: WebUser,
    Path((account, target)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let form = user.form(&headers, &body)?;
    let run = async {
        let tenant = managed(&state, &user, &account).await?;
        let target: UserId = path_id(&target, "user")?;
        // Only a user of this account is changed from this account's page.
        let listed = access::account_users(
            State(state.clone()),
            Auth(user.principal.clone()),
            Path(tenant.account.to_string()),
        )
        .await?
        .0;
        if !listed.items.iter().any(|u| u.id == target.to_string()) {
            return Err(PageError(crate::error::ApiError::not_found("user")));
        }
        let update = |disabled, role: Option<&str>, personal_data, password: Option<&str>| {
            access::UserUpdate {
                disabled,
                role: role.map(str::to_owned),
                personal_data,
                password: password.map(str::to_owned),
            }
        };
        let (change, done) = match field(&form, "action") {
            Some("disable") => (Some(update(Some(true), None, None, None)), "disabled"),
            Some("enable") => (Some(update(Some(false), None, None, None)), "enabled"),
            Some("reset_password") => {
                let password =
                    Zeroizing::new(field(&form, "password").unwrap_or_default().to_owned());
                (
                    Some(update(None, None, None, Some(password.as_str()))),
                    "password_reset",
                )
            }
            Some("set_role") => {
                let role = field(&form, "role").unwrap_or_default();
                let personal_data =
                    role != "analyst" || field(&form, "personal_data") == Some("on");
                (
                    Some(update(None, Some(role), Some(personal_data), None)),
                    "role_changed",
                )
            }
            Some("remove") if field(&form, "confirm") == Some("yes") => (None, "removed"),
            _ => {
                return Err(PageError::new(
                    Code::InvalidField,
                    "action: one of disable, enable, reset_password, set_role, remove (confirmed)",
                ));
            }
        };
        let auth = Auth(user.principal.clone());
        match change {
            Some(change) => {
                let _changed = access::update_user(
                    State(state.clone()),
                    auth,
                    Path(target.to_string()),
                    JsonBody(change),
                )
                .await?;
            }
            None => {
                access::remove_user(State(state.clone()), auth, Path(target.to_string())).await?;
            }
        }
        Ok(redirect_to(&format!(
            "/ui/accounts/{}/users?done={done}",
            tenant.account
        )))
    };
    run.await.map_err(|e: PageError| e.into_response())
}

/// Adds a user to the account: an account admin or an analyst (with or without personal
/// data), with the password the admin sets and hands over.
pub async fn create_user(
    State(state): State<AppState>,
    user: WebUser,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let form = user.form(&headers, &body)?;
    let run = async {
        let tenant = managed(&state, &user, &account).await?;
        let role = match field(&form, "role") {
            Some("account_admin") => Role::AccountAdmin,
            Some("analyst") => Role::Analyst,
            _ => {
                return Err(PageError::new(
                    Code::InvalidField,
                    "role: an account's users are account_admin or analyst",
                ));
            }
        };
        let email = field(&form, "email").unwrap_or_default();
        let password = Zeroizing::new(field(&form, "password").unwrap_or_default().to_owned());
        let personal_data = field(&form, "personal_data") == Some("on");
        let created = state
            .log
            .create_user(
                email,
                password,
                role,
                Scope::Account {
                    agency: tenant.agency,
                    account: tenant.account,
                },
                personal_data,
                user.principal.actor(),
            )
            .await;
        match created {
            Ok(_) => {}
            // An address that already has a user, here or in another tenant: answered as
            // an addition, so that an account admin cannot learn which addresses have
            // accounts elsewhere. Only the installation's admin attaches an existing user.
            Err(NewUserError::Exists) => {
                state
                    .log
                    .store()
                    .append_audit(ringfence_store::AuditEvent {
                        actor: user.principal.actor(),
                        action: "user.add_existing_address".into(),
                        agency_id: Some(tenant.agency),
                        account_id: Some(tenant.account),
                        subject: None,
                        count: None,
                        reason: None,
                        details: "{}".into(),
                    })
                    .await?;
            }
            Err(NewUserError::Password(PasswordError::Hashing)) => {
                return Err(PageError(crate::error::ApiError::internal(
                    &"password hashing failed",
                )));
            }
            Err(
                e @ (NewUserError::InvalidEmail
                | NewUserError::Password(PasswordError::Length)
                | NewUserError::Scope(_)),
            ) => return Err(PageError::new(Code::InvalidField, e.to_string())),
            Err(NewUserError::Log(e)) => return Err(e.into()),
        }
        state.log.anchor_journal().await?;
        page(&state, &user, tenant, true, None, None).await
    };
    run.await.map_err(IntoResponse::into_response)
}
