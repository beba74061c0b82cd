//! The call log as CSV: the calls matching the page's filters, read page by page through
//! the API's own list handler (same access checks, same masking), streamed as they are read.
//!
//! Call facts go to everyone who may read the call log; the caller's number, name and
//! location only to users whose access includes personal data. Every cell is quoted, and
//! one that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab or carriage return
//! first) is prefixed with `'`, except a plain signed number such as an E.164 phone number.
//! A download with personal data is journaled (who, which account, how many calls; never the
//! filters, which can hold a number).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use ringfence_core::AccountId;

use super::error::{PageError, PageResult};
use super::pages::log_query;
use super::session::WebUser;
use crate::auth::Auth;
use crate::dto::CallOutput;
use crate::error::Code;
use crate::routes::{calls, path_id};
use crate::state::AppState;

/// Calls read per page of the download.
const CSV_PAGE: u32 = 500;

const FACT_COLUMNS: &[&str] = &[
    "call_id",
    "started_at_utc",
    "duration_s",
    "direction",
    "status",
    "tracking_number",
    "source",
    "campaign",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "recording",
    "redacted_at_utc",
    "redaction_reason",
];

const PERSONAL_COLUMNS: &[&str] = &[
    "caller_number",
    "caller_name",
    "caller_city",
    "caller_region",
    "caller_postal_code",
    "caller_country",
    "gdpr_scope",
];

/// One CSV cell: quoted, and defused where a spreadsheet would read a formula.
pub(super) fn cell(value: &str) -> String {
    let first = value.trim_start_matches([' ', '"']).chars().next();
    let formula = matches!(first, Some('=' | '+' | '-' | '@' | '\t' | '\r'))
        || value.starts_with(['\t', '\r']);
    let plain_number = {
        let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
        !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && digits.bytes().filter(|b| *b == b'.').count() <= 1
    };
    let safe = if formula && !plain_number {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    format!("\"{}\"", safe.replace('"', "\"\""))
}

fn line(cells: impl IntoIterator<Item = String>) -> String {
    let mut out = cells.into_iter().collect::<Vec<_>>().join(",");
    out.push_str("\r\n");
    out
}

fn row(c: &CallOutput, personal: bool) -> String {
    let text = |v: &Option<String>| cell(v.as_deref().unwrap_or(""));
    let mut cells = vec![
        cell(&c.id),
        cell(&c.started_at),
        cell(&c.duration_s.map(|d| d.to_string()).unwrap_or_default()),
        text(&c.direction),
        text(&c.status),
        cell(&c.tracking_number),
        text(&c.source),
        text(&c.campaign),
        text(&c.utm.source),
        text(&c.utm.medium),
        text(&c.utm.campaign),
        cell(if c.recording.is_some() { "yes" } else { "no" }),
        cell(c.redaction.as_ref().map_or("", |r| r.at.as_str())),
        cell(c.redaction.as_ref().map_or("", |r| r.reason.as_str())),
    ];
    if personal {
        let caller = c.caller.as_ref();
        let field = |f: fn(&crate::dto::CallerOutput) -> &Option<String>| {
            cell(caller.and_then(|x| f(x).as_deref()).unwrap_or(""))
        };
        cells.extend([
            field(|x| &x.number),
            field(|x| &x.name),
            field(|x| &x.city),
            field(|x| &x.region),
            field(|x| &x.postal_code),
            field(|x| &x.country),
            cell(match c.gdpr_scope {
                Some(true) => "yes",
                Some(false) => "no",
                None => "",
            }),
        ]);
    }
    line(cells)
}

/// Everything after the first page, read as the client takes it.
struct Rest {
    state: AppState,
    user_principal: ringfence_core::access::Principal,
    account: String,
    api: Vec<(String, String)>,
    cursor: Option<String>,
    personal: bool,
}

impl Rest {
    async fn next_page(mut self) -> Option<(Result<String, std::io::Error>, Rest)> {
        let cursor = self.cursor.take()?;
        let mut q = self.api.clone();
        q.push(("cursor".into(), cursor));
        let list = calls::list_calls(
            State(self.state.clone()),
            Auth(self.user_principal.clone()),
            Path(self.account.clone()),
            RawQuery(Some(serde_urlencoded::to_string(&q).unwrap_or_default())),
        )
        .await;
        match list {
            Ok(Json(list)) => {
                let body: String = list.items.iter().map(|c| row(c, self.personal)).collect();
                self.cursor = list.next_cursor;
                Some((Ok(body), self))
            }
            Err(e) => {
                tracing::warn!(code = e.code.as_str(), "call log download ended early");
                Some((
                    Err(std::io::Error::other("the call log could not be read")),
                    self,
                ))
            }
        }
    }
}

/// `GET /ui/accounts/{account_id}/calls.csv?<the call log's filters>`.
pub async fn download(
    State(state): State<AppState>,
    user: WebUser,
    Path(account): Path<String>,
    RawQuery(raw): RawQuery,
) -> PageResult<Response> {
    let query = log_query(raw.as_deref())?;
    let mut api: Vec<(String, String)> = query
        .api
        .into_iter()
        .filter(|(k, _)| k != "cursor" && k != "limit")
        .collect();
    api.push(("limit".into(), CSV_PAGE.to_string()));
    let encoded = serde_urlencoded::to_string(&api)
        .map_err(|_| PageError::new(Code::InvalidQuery, "the filters could not be read"))?;
    // The first page before answering: access and validation fail as a page, not mid-file.
    let Json(first) = calls::list_calls(
        State(state.clone()),
        Auth(user.principal.clone()),
        Path(account.clone()),
        RawQuery(Some(encoded.clone())),
    )
    .await?;
    let account_id: AccountId = path_id(&account, "account")?;
    let tenant = state.tenant(account_id).await?;
    let personal = user.principal.personal_data;
    if personal {
        let total = calls::count_calls(
            State(state.clone()),
            Auth(user.principal.clone()),
            Path(account.clone()),
            RawQuery(Some(encoded)),
        )
        .await?;
        state
            .log
            .store()
            .append_audit(ringfence_store::AuditEvent {
                actor: user.principal.actor(),
                action: "calls.downloaded".into(),
                agency_id: Some(tenant.agency),
                account_id: Some(tenant.account),
                subject: None,
                count: Some(total),
                reason: None,
                details: serde_json::json!({"format": "csv", "personal_data": true}).to_string(),
            })
            .await?;
    }
    let mut head: Vec<String> = FACT_COLUMNS.iter().map(|c| cell(c)).collect();
    if personal {
        head.extend(PERSONAL_COLUMNS.iter().map(|c| cell(c)));
    }
    let mut start = line(head);
    start.extend(first.items.iter().map(|c| row(c, personal)));
    let rest = Rest {
        state,
        user_principal: user.principal.clone(),
        account,
        api,
        cursor: first.next_cursor,
        personal,
    };
    let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(start) })
        .chain(futures::stream::unfold(rest, Rest::next_page));
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    let name = format!(
        "attachment; filename=\"ringfence-calls-{}{}.csv\"",
        account_id,
        if personal { "" } else { "-facts" }
    );
    if let Ok(v) = HeaderValue::from_str(&name) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::cell;

    #[test]
    fn cells_that_a_spreadsheet_would_run_are_defused_and_numbers_are_left_alone() {
        for (value, expected) in [
            ("google_ads", "\"google_ads\""),
            ("=HYPERLINK(\"x\")", "\"'=HYPERLINK(\"\"x\"\")\""),
            ("+cmd|' /C calc'!A0", "\"'+cmd|' /C calc'!A0\""),
            ("-2+3", "\"'-2+3\""),
            ("@SUM(A1)", "\"'@SUM(A1)\""),
            ("\tx", "\"'\tx\""),
            (" =1+1", "\"' =1+1\""),
            ("+442079460123", "\"+442079460123\""),
            ("-12.5", "\"-12.5\""),
            ("", "\"\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
        ] {
            assert_eq!(cell(value), expected, "{value:?}");
        }
    }
}
