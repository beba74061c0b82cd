//! The audit journal page: the API's list (same visibility rules) and a verification of the
//! whole hash chain against the head recorded in the vault, as `ringfence audit verify` does.

use askama::Template;
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::{Html, IntoResponse, Response};

use ringfence_store::journal::verify_journal;

use super::error::{PageError, PageResult};
use super::pages::Chrome;
use super::session::WebUser;
use crate::auth::Auth;
use crate::error::Code;
use crate::routes::audit::{self, AuditEntryOutput};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "journal.html")]
struct JournalPage {
    chrome: Chrome,
    entries: Vec<AuditEntryOutput>,
    next: Option<String>,
    /// `Ok((entries, last seq))` or the first break.
    verification: Result<(u64, i64), String>,
}

/// One page of the journal (oldest first) and the chain's verification.
pub async fn journal(
    State(state): State<AppState>,
    user: WebUser,
    RawQuery(raw): RawQuery,
) -> PageResult<Response> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|_| PageError::new(Code::InvalidQuery, "the page address could not be read"))?;
    let cursor = pairs
        .iter()
        .find(|(k, _)| k == "cursor")
        .map(|(_, v)| v.clone());
    if pairs.iter().any(|(k, _)| k != "cursor") {
        return Err(PageError::new(
            Code::InvalidQuery,
            "only `cursor` is accepted",
        ));
    }
    let query = cursor
        .as_ref()
        .map(|c| serde_urlencoded::to_string([("cursor", c)]).unwrap_or_default());
    let Json(list) = audit::list(
        State(state.clone()),
        Auth(user.principal.clone()),
        RawQuery(query),
    )
    .await?;
    let anchor = state
        .log
        .vault()
        .journal_anchor()
        .await
        .map_err(|e| PageError::from(ringfence_store::LogError::from(e)))?;
    let verification = match verify_journal(state.log.store().as_ref(), anchor).await? {
        Ok(v) => Ok((v.entries, v.last_seq)),
        Err(brk) => Err(brk.to_string()),
    };
    let account = match user.principal.scope {
        ringfence_core::access::Scope::Account { account, .. } => Some(account),
        _ => None,
    };
    let page = JournalPage {
        chrome: Chrome::new(&user, account),
        next: list.next_cursor.map(|c| {
            format!(
                "/ui/journal?{}",
                serde_urlencoded::to_string([("cursor", c)]).unwrap_or_default()
            )
        }),
        entries: list.items,
        verification,
    };
    Ok(Html(page.render()?).into_response())
}
