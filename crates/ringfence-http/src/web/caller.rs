//! The caller page: everything about the number of a call — its calls, their visitor
//! sessions, its consent history — with export and redaction. The number is taken from the
//! call on the server, so it never appears in a URL (and so in no history or log).

use askama::Template;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use bytes::Bytes;

use ringfence_core::AccountId;
use ringfence_core::access::Permission;

use super::error::{PageError, PageResult};
use super::pages::{CallRowView, Chrome};
use super::present::filters;
use super::session::WebUser;
use crate::auth::Auth;
use crate::error::{ApiError, Code};
use crate::routes::consents::{self, ConsentOutput};
use crate::routes::{calls, export};
use crate::state::AppState;

/// The call's account and caller number, for a user who may see personal data there.
async fn caller_of_call(
    state: &AppState,
    user: &WebUser,
    call: &str,
) -> PageResult<(AccountId, String)> {
    let (row, tenant) = state
        .call_for(&user.principal, call, Permission::ReadCalls)
        .await?;
    let id = row.id;
    if !user.principal.personal_data {
        return Err(PageError::new(
            Code::Forbidden,
            "the caller page shows personal data, which your access does not include",
        ));
    }
    let c = state
        .log
        .call(id)
        .await?
        .ok_or_else(|| ApiError::not_found("call"))?;
    let number = c.caller.and_then(|x| x.number).ok_or_else(|| {
        PageError::new(
            Code::Conflict,
            "this call has no caller number (withheld or redacted)",
        )
    })?;
    Ok((tenant.account, number.as_str().to_owned()))
}

#[derive(Template)]
#[template(path = "caller.html")]
struct CallerPage {
    chrome: Chrome,
    call_id: String,
    number: String,
    calls: Vec<CallRowView>,
    more_calls: bool,
    sessions: Vec<String>,
    consents: Vec<ConsentOutput>,
    state: Vec<(String, String)>,
    may_export: bool,
}

/// Everything about the caller of a call, through the API's list and consent handlers.
pub async fn caller(
    State(state): State<AppState>,
    user: WebUser,
    Path(call): Path<String>,
) -> PageResult<Response> {
    let (account, number) = caller_of_call(&state, &user, &call).await?;
    let query = serde_urlencoded::to_string([("caller_number", number.as_str()), ("limit", "200")])
        .unwrap_or_default();
    let Json(list) = calls::list_calls(
        State(state.clone()),
        Auth(user.principal.clone()),
        Path(account.to_string()),
        RawQuery(Some(query)),
    )
    .await?;
    let query = serde_urlencoded::to_string([("subject", number.as_str()), ("limit", "500")])
        .unwrap_or_default();
    let Json(ledger) = consents::list(
        State(state.clone()),
        Auth(user.principal.clone()),
        Path(account.to_string()),
        RawQuery(Some(query)),
    )
    .await?;
    let mut sessions: Vec<String> = list
        .items
        .iter()
        .filter_map(|c| c.visitor.as_ref().map(|v| v.session_id.clone()))
        .collect();
    sessions.sort();
    sessions.dedup();
    let tenant = state.tenant(account).await?;
    let page = CallerPage {
        chrome: Chrome::new(&user, Some(account)),
        call_id: call,
        number,
        calls: list.items.iter().map(CallRowView::from).collect(),
        more_calls: list.next_cursor.is_some(),
        sessions,
        consents: ledger.items,
        state: ledger.state.unwrap_or_default().into_iter().collect(),
        may_export: user
            .principal
            .check(Permission::ManageAccount, &tenant)
            .is_ok(),
    };
    Ok(Html(page.render()?).into_response())
}

/// The access-request ZIP of the call's caller, from the API's export (journaled there).
pub async fn export_caller(
    State(state): State<AppState>,
    user: WebUser,
    Path(call): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    user.form(&headers, &body)?;
    let (account, number) = caller_of_call(&state, &user, &call)
        .await
        .map_err(IntoResponse::into_response)?;
    export::export_caller(
        State(state),
        Auth(user.principal),
        Path((account.to_string(), number)),
    )
    .await
    .map_err(|e| PageError(e).into_response())
}
