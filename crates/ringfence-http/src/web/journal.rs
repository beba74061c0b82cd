//! The audit journal page: the API's list, newest first (same visibility rules), with people
//! named and long lists of call ids folded, and a verification of the whole hash chain against the head recorded in the vault, as `ringfence audit verify` does.

use askama::Template;
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::{Html, IntoResponse, Response};

use ringfence_store::journal::verify_journal;

use super::error::{PageError, PageResult};
use super::pages::Chrome;
use super::present::{People, filters, label};
use super::session::WebUser;
use crate::auth::Auth;
use crate::error::Code;
use crate::routes::audit::{self, AuditEntryOutput};
use crate::state::AppState;

/// One entry as the page shows it: who by name, what in words, a subject of many call ids
/// folded away behind its count.
struct EntryView {
    seq: i64,
    at: String,
    actor: String,
    action: String,
    /// A single subject, named (a user, a token) or as stored (an id).
    subject: Option<String>,
    /// The call ids of a redaction of several calls (shown as a count, ids folded).
    subject_ids: Vec<String>,
    /// The subject is a call: its page.
    subject_call: Option<String>,
    count: Option<u64>,
    reason: Option<String>,
}

#[derive(Template)]
#[template(path = "journal.html")]
struct JournalPage {
    chrome: Chrome,
    entries: Vec<EntryView>,
    /// Older entries (the page lists the newest first).
    older: Option<String>,
    /// Whether this page starts below the newest entry.
    paged: bool,
    /// `Ok((entries, last seq))` or the first break.
    verification: Result<(u64, i64), String>,
}

/// Entries per journal page.
const JOURNAL_PAGE: u32 = 50;

/// One page of the journal, newest first (the API's list in `newest_first` order, same
/// visibility rules), and the chain's verification.
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
    let mut query = vec![
        ("order", "newest_first".to_owned()),
        ("limit", JOURNAL_PAGE.to_string()),
    ];
    if let Some(c) = &cursor {
        query.push(("cursor", c.clone()));
    }
    let Json(list) = audit::list(
        State(state.clone()),
        Auth(user.principal.clone()),
        RawQuery(Some(
            serde_urlencoded::to_string(&query).unwrap_or_default(),
        )),
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
    let mut actors: Vec<&str> = Vec::new();
    for e in &list.items {
        actors.push(&e.actor);
        if let Some(s) = e.subject.as_deref()
            && (s.starts_with("user:") || s.starts_with("token:"))
        {
            actors.push(s);
        }
    }
    let people = People::resolve(&state, &user.principal, actors).await?;
    let entries = list.items.into_iter().map(|e| view(e, &people)).collect();
    let page = JournalPage {
        chrome: Chrome::new(&user, account),
        older: list.next_cursor.map(|c| {
            format!(
                "/ui/journal?{}",
                serde_urlencoded::to_string([("cursor", c)]).unwrap_or_default()
            )
        }),
        paged: cursor.is_some(),
        entries,
        verification,
    };
    Ok(Html(page.render()?).into_response())
}

fn view(e: AuditEntryOutput, people: &People) -> EntryView {
    let (subject, subject_ids) = match e.subject {
        Some(s) if s.contains(',') => (None, s.split(',').map(str::to_owned).collect()),
        Some(s) if s.starts_with("user:") || s.starts_with("token:") => {
            (Some(people.name(&s)), Vec::new())
        }
        other => (other, Vec::new()),
    };
    let subject_call = subject
        .as_deref()
        .filter(|s| e.action.starts_with("call.") && s.parse::<ringfence_core::CallId>().is_ok())
        .map(|s| format!("/ui/calls/{s}"));
    EntryView {
        subject_call,
        seq: e.seq,
        at: e.at,
        actor: people.name(&e.actor),
        action: label(&e.action),
        subject,
        subject_ids,
        count: e.count,
        reason: e.reason.as_deref().map(label),
    }
}
