//! The users of an account: who may sign in to it, and adding one. E-mail addresses are not
//! stored in the clear (users are found by a keyed hash of theirs), so the list shows ids,
//! roles and state; the address is typed once, when the user is created.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use zeroize::Zeroizing;

use ringfence_core::AccountId;
use ringfence_core::access::{Permission, Role, Scope, Tenant};
use ringfence_crypto::password::PasswordError;
use ringfence_store::users::NewUserError;

use super::error::{PageError, PageResult};
use super::pages::{Chrome, render, when};
use super::session::{WebUser, field};
use crate::error::Code;
use crate::routes::{check_account, path_id};
use crate::state::AppState;

struct UserRow {
    id: String,
    role: &'static str,
    personal_data: bool,
    created_at: String,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    chrome: Chrome,
    account_id: String,
    users: Vec<UserRow>,
    /// The answer to an addition just made (the same whether or not the address was new).
    added: bool,
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
) -> PageResult<Response> {
    let users = state
        .log
        .store()
        .list_users()
        .await?
        .into_iter()
        .filter(|u| matches!(u.scope, Scope::Account { account, .. } if account == tenant.account))
        .map(|u| UserRow {
            id: u.id.to_string(),
            role: u.role.as_str(),
            personal_data: u.personal_data,
            created_at: when(&u.created_at.to_rfc3339()),
        })
        .collect();
    render(&UsersPage {
        chrome: Chrome::new(user, Some(tenant.account)),
        account_id: tenant.account.to_string(),
        users,
        added,
    })
}

/// The account's users and the form to add one.
pub async fn users(
    State(state): State<AppState>,
    user: WebUser,
    Path(account): Path<String>,
) -> PageResult<Response> {
    let tenant = managed(&state, &user, &account).await?;
    page(&state, &user, tenant, false).await
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
        page(&state, &user, tenant, true).await
    };
    run.await.map_err(IntoResponse::into_response)
}
