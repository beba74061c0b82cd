//! The pages. Each reads and writes through the JSON API's handler for the same thing,
//! called as a function with the signed-in user's principal: one data path, one set of rules.

use askama::Template;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use bytes::Bytes;

use ringfence_core::access::{Permission, Principal, Scope, Tenant};
use ringfence_core::{AccountId, CallId};

use super::assets::{CSS_NAME, HTMX_NAME, LOCAL_TIME_NAME};
use super::error::{PageError, PageResult};
use super::present::{People, filters, label};
use super::session::{WebUser, field};
use crate::auth::Auth;
use crate::body::JsonBody;
use crate::dto::CallOutput;
use crate::error::{ApiError, Code};
use crate::routes::accounts::{
    self, AccountSettings, AccountSettingsUpdate, AutoRedactUpdate, CollectionUpdate,
};
use crate::routes::consents::{self, NoticeOutput};
use crate::routes::recipients::{self as recipients_route, DeliveryOutput, RecipientOutput};
use crate::routes::redaction::{Receipt, RedactCallerInput};
use crate::routes::{calls, legal_hold as legal_hold_route, path_id, recordings, redaction};
use crate::state::AppState;

/// What every page's frame needs: the CSRF token for htmx and the sign-out form, who is
/// signed in, and the account the navigation points at. The navigation offers only pages
/// the role may open.
pub struct Chrome {
    pub csrf: String,
    pub role: &'static str,
    /// The signed-in user as the pages name them (their e-mail address).
    pub who: String,
    pub account: Option<String>,
    /// The role manages accounts (checklist, settings, users, journal); an analyst only
    /// reads the call log.
    pub manage: bool,
    /// The user sees more than one account (the accounts list is worth a link).
    pub many_accounts: bool,
    pub css: &'static str,
    pub htmx: &'static str,
    pub local_time: &'static str,
}

impl Chrome {
    pub fn new(user: &WebUser, account: Option<AccountId>) -> Self {
        Chrome {
            csrf: user.csrf.clone(),
            role: user.principal.role.as_str(),
            who: user.name.clone(),
            account: account.map(|a| a.to_string()),
            manage: !matches!(
                user.principal.role,
                ringfence_core::access::Role::Analyst | ringfence_core::access::Role::Ingest
            ),
            many_accounts: !matches!(user.principal.scope, Scope::Account { .. }),
            css: CSS_NAME,
            htmx: HTMX_NAME,
            local_time: LOCAL_TIME_NAME,
        }
    }
}

pub(super) fn render(template: &impl Template) -> PageResult<Response> {
    Ok(Html(template.render()?).into_response())
}

fn duration(seconds: Option<u32>) -> String {
    match seconds {
        Some(s) => format!("{}:{:02}", s / 60, s % 60),
        None => "–".into(),
    }
}

#[derive(Template)]
#[template(path = "accounts.html")]
struct AccountsPage {
    chrome: Chrome,
    accounts: Vec<(String, String)>,
    /// Agencies whose checklist roll-up the user may read.
    agencies: Vec<(String, String)>,
}

/// The accounts the user sees; straight to the call log when there is one.
pub async fn home(State(state): State<AppState>, user: WebUser) -> PageResult<Response> {
    let store = state.log.store();
    let accounts = match user.principal.scope {
        Scope::Installation => store.list_accounts(None).await?,
        Scope::Agency(agency) => store.list_accounts(Some(agency)).await?,
        Scope::Account { account, .. } => {
            return Ok(super::session::redirect_to(&format!(
                "/ui/accounts/{account}/calls"
            )));
        }
    };
    let agencies = match (user.principal.role, user.principal.scope) {
        (ringfence_core::access::Role::Admin, _) => store.list_agencies().await?,
        (ringfence_core::access::Role::AgencyAdmin, Scope::Agency(agency)) => {
            store.agency(agency).await?.into_iter().collect()
        }
        _ => Vec::new(),
    };
    render(&AccountsPage {
        chrome: Chrome::new(&user, None),
        agencies: agencies
            .into_iter()
            .map(|a| (a.id.to_string(), a.name))
            .collect(),
        accounts: accounts
            .into_iter()
            .map(|a| (a.id.to_string(), a.name))
            .collect(),
    })
}

pub(super) struct CallRowView {
    pub(super) id: String,
    pub(super) time: String,
    pub(super) source: String,
    pub(super) tracking_number: String,
    pub(super) duration: String,
    pub(super) status: String,
    pub(super) caller: String,
    pub(super) recording: bool,
    pub(super) redacted: bool,
}

impl From<&CallOutput> for CallRowView {
    fn from(c: &CallOutput) -> Self {
        CallRowView {
            id: c.id.clone(),
            time: c.started_at.clone(),
            source: c.source.clone().unwrap_or_default(),
            tracking_number: c.tracking_number.clone(),
            duration: duration(c.duration_s),
            status: c.status.clone().unwrap_or_default(),
            caller: c
                .caller
                .as_ref()
                .and_then(|x| x.number.clone())
                .unwrap_or_else(|| {
                    if c.redaction.is_some() {
                        "redacted".into()
                    } else {
                        "withheld".into()
                    }
                }),
            recording: c.recording.is_some(),
            redacted: c.redaction.is_some(),
        }
    }
}

/// The filters as the form shows them.
#[derive(Default)]
struct Filters {
    from: String,
    to: String,
    tracking_number: String,
    source: String,
    status: String,
    redacted: String,
    caller_number: String,
}

#[derive(Template)]
#[template(path = "calls.html")]
struct CallLogPage {
    chrome: Chrome,
    account_id: String,
    account_name: String,
    filters: Filters,
    /// Whether any filter is set.
    filtered: bool,
    /// How many calls match the filters (all pages).
    total: u64,
    /// The CSV download of the calls matching the filters.
    csv: String,
    rows: Vec<CallRowView>,
    masked: bool,
    next: Option<String>,
    statuses: &'static [&'static str],
}

const STATUSES: &[&str] = &[
    "queued",
    "initiated",
    "ringing",
    "in-progress",
    "completed",
    "busy",
    "no-answer",
    "failed",
    "canceled",
];

/// The call log's filters as the form sent them: what the form shows again, the API's
/// query, and the filters a next page or a download keeps (without the cursor).
pub(super) struct LogQuery {
    filters: Filters,
    pub(super) api: Vec<(String, String)>,
    pub(super) kept: Vec<(String, String)>,
}

/// Reads the call log's query; dates become whole days (UTC).
pub(super) fn log_query(raw: Option<&str>) -> PageResult<LogQuery> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|_| PageError::new(Code::InvalidQuery, "the filters could not be read"))?;
    let mut filters = Filters::default();
    let mut api: Vec<(String, String)> = Vec::new();
    let mut kept: Vec<(String, String)> = Vec::new();
    for (key, value) in pairs {
        let value = value.trim().to_owned();
        if key != "cursor" && !value.is_empty() {
            kept.push((key.clone(), value.clone()));
        }
        let slot = match key.as_str() {
            "from" => Some(&mut filters.from),
            "to" => Some(&mut filters.to),
            "tracking_number" => Some(&mut filters.tracking_number),
            "source" => Some(&mut filters.source),
            "status" => Some(&mut filters.status),
            "redacted" => Some(&mut filters.redacted),
            "caller_number" => Some(&mut filters.caller_number),
            _ => None,
        };
        if let Some(slot) = slot {
            *slot = value.clone();
        }
        let value = match key.as_str() {
            // A date field gives a day: from its first to its last millisecond (UTC).
            "from" if value.len() == 10 => format!("{value}T00:00:00Z"),
            "to" if value.len() == 10 => format!("{value}T23:59:59.999Z"),
            _ => value,
        };
        api.push((key, value));
    }
    Ok(LogQuery { filters, api, kept })
}

/// The call log: the API's list with the form's filters, how many calls match them, and
/// a link to download them as CSV.
pub async fn call_log(
    State(state): State<AppState>,
    user: WebUser,
    Path(account): Path<String>,
    RawQuery(raw): RawQuery,
) -> PageResult<Response> {
    let LogQuery { filters, api, kept } = log_query(raw.as_deref())?;
    let query = serde_urlencoded::to_string(&api)
        .map_err(|_| PageError::new(Code::InvalidQuery, "the filters could not be read"))?;
    let Json(list) = calls::list_calls(
        State(state.clone()),
        Auth(user.principal.clone()),
        Path(account.clone()),
        RawQuery(Some(query.clone())),
    )
    .await?;
    let total = calls::count_calls(
        State(state.clone()),
        Auth(user.principal.clone()),
        Path(account.clone()),
        RawQuery(Some(query)),
    )
    .await?;
    let account_id: AccountId = path_id(&account, "account")?;
    let account_name = state
        .log
        .store()
        .account(account_id)
        .await?
        .map(|a| a.name)
        .unwrap_or_default();
    let next = list.next_cursor.map(|cursor| {
        let mut q = kept.clone();
        q.push(("cursor".into(), cursor));
        format!(
            "/ui/accounts/{account}/calls?{}",
            serde_urlencoded::to_string(&q).unwrap_or_default()
        )
    });
    let csv = format!(
        "/ui/accounts/{account_id}/calls.csv?{}",
        serde_urlencoded::to_string(&kept).unwrap_or_default()
    );
    render(&CallLogPage {
        chrome: Chrome::new(&user, Some(account_id)),
        account_id: account_id.to_string(),
        account_name,
        filtered: !kept.is_empty(),
        filters,
        total,
        csv,
        rows: list.items.iter().map(CallRowView::from).collect(),
        masked: !user.principal.personal_data,
        next,
        statuses: STATUSES,
    })
}

/// Whether the user may redact in this tenant, or why not (shown beside a disabled button).
async fn redaction_allowed(
    state: &AppState,
    principal: &Principal,
    tenant: &Tenant,
) -> PageResult<Result<(), String>> {
    if principal.check(Permission::Redact, tenant).is_err() {
        return Ok(Err(format!(
            "Your role ({}) may not redact; an account admin can.",
            principal.role
        )));
    }
    let agency = state
        .log
        .store()
        .agency(tenant.agency)
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?;
    if !agency.redaction_enabled {
        return Ok(Err(
            "Redaction is not enabled for this account's agency; the agency's admin can enable it in the agency settings.".into(),
        ));
    }
    Ok(Ok(()))
}

struct Field {
    label: &'static str,
    value: String,
}

fn fields(pairs: Vec<(&'static str, Option<String>)>) -> Vec<Field> {
    pairs
        .into_iter()
        .filter_map(|(label, value)| value.map(|value| Field { label, value }))
        .collect()
}

impl CallPage {
    /// A recording's size in words (`48 kB`, `1.2 MB`).
    fn size(bytes: &u64) -> String {
        match *bytes {
            b if b < 1_000 => format!("{b} bytes"),
            b if b < 1_000_000 => format!("{} kB", b / 1_000),
            b => format!("{:.1} MB", b as f64 / 1e6),
        }
    }
}

#[derive(Template)]
#[template(path = "call.html")]
struct CallPage {
    chrome: Chrome,
    call: CallOutput,
    started: String,
    duration: String,
    facts: Vec<Field>,
    identity: Vec<Field>,
    visitor: Vec<Field>,
    content: Vec<Field>,
    redaction: Result<(), String>,
    receipt: Option<Receipt>,
    /// The user may place and release legal holds (account admins and above).
    manage_hold: bool,
    /// Who redacted the call and who placed its legal hold, as the viewer may see them.
    redacted_by: Option<String>,
    held_by: Option<String>,
}

async fn call_page(
    state: &AppState,
    user: &WebUser,
    call: &str,
    receipt: Option<Receipt>,
) -> PageResult<Response> {
    let Json(c) = calls::get_call(
        State(state.clone()),
        Auth(user.principal.clone()),
        Path(call.to_owned()),
    )
    .await?;
    let account: AccountId = path_id(&c.account_id, "call")?;
    let tenant = state.tenant(account).await?;
    let redaction = redaction_allowed(state, &user.principal, &tenant).await?;
    let manage_hold = user
        .principal
        .check(Permission::ManageAccount, &tenant)
        .is_ok();
    let facts = fields(vec![
        ("Call id", Some(c.id.clone())),
        ("External id", c.external_id.clone()),
        ("Direction", c.direction.as_deref().map(label)),
        ("Status", c.status.as_deref().map(label)),
        ("Tracking number", Some(c.tracking_number.clone())),
        ("Source", c.source.as_deref().map(label)),
        ("Campaign", c.campaign.clone()),
        ("UTM source", c.utm.source.clone()),
        ("UTM medium", c.utm.medium.clone()),
        ("UTM campaign", c.utm.campaign.clone()),
        (
            "GDPR scope",
            c.gdpr_scope
                .map(|s| if s { "yes".into() } else { "no".into() }),
        ),
    ]);
    let identity = match &c.caller {
        Some(x) => fields(vec![
            ("Number", x.number.clone()),
            ("Name", x.name.clone()),
            ("Forwarded from", x.forwarded_from.clone()),
            ("City", x.city.clone()),
            ("Region", x.region.clone()),
            ("Postal code", x.postal_code.clone()),
            ("Country", x.country.clone()),
        ]),
        None => Vec::new(),
    };
    let visitor = match &c.visitor {
        Some(v) => fields(vec![
            ("Session", Some(v.session_id.clone())),
            ("IP address", v.ip.clone()),
            ("User agent", v.user_agent.clone()),
            ("Referrer", v.referrer.clone()),
            ("Landing page", v.landing_url.clone()),
            ("gclid", v.gclid.clone()),
            ("fbclid", v.fbclid.clone()),
            ("msclkid", v.msclkid.clone()),
            ("Visitor id", v.visitor_id.clone()),
        ]),
        None => Vec::new(),
    };
    let content = fields(vec![
        ("Transcript", c.transcript.clone()),
        ("Notes", c.notes.clone()),
        ("Tags", (!c.tags.is_empty()).then(|| c.tags.join(", "))),
    ]);
    let actors: Vec<&str> = c
        .redaction
        .iter()
        .map(|r| r.by.as_str())
        .chain(c.legal_hold.iter().map(|h| h.by.as_str()))
        .collect();
    let people = People::resolve(state, &user.principal, actors).await?;
    let page = CallPage {
        chrome: Chrome::new(user, Some(account)),
        redacted_by: c.redaction.as_ref().map(|r| people.name(&r.by)),
        held_by: c.legal_hold.as_ref().map(|h| people.name(&h.by)),
        started: c.started_at.clone(),
        duration: duration(c.duration_s),
        call: c,
        facts,
        identity,
        visitor,
        content,
        redaction,
        receipt,
        manage_hold,
    };
    render(&page)
}

/// Places (`reason`) or releases (`action=release`) a call's legal hold through the API's
/// own handlers, then sends the browser back to the call's page.
pub async fn legal_hold(
    State(state): State<AppState>,
    user: WebUser,
    Path(call): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let form = user.form(&headers, &body)?;
    let auth = || Auth(user.principal.clone());
    if field(&form, "action") == Some("release") {
        legal_hold_route::delete_hold(State(state.clone()), auth(), Path(call.clone()))
            .await
            .map_err(|e| PageError(e).into_response())?;
    } else {
        let reason = field(&form, "reason").unwrap_or_default().to_owned();
        let Json(_) = legal_hold_route::put_hold(
            State(state.clone()),
            auth(),
            Path(call.clone()),
            JsonBody(legal_hold_route::LegalHoldInput { reason }),
        )
        .await
        .map_err(|e| PageError(e).into_response())?;
    }
    // Back to the call's own page (post, redirect, get): a reload does not post again.
    let id: ringfence_core::CallId =
        path_id(&call, "call").map_err(|e| PageError(e).into_response())?;
    Ok(super::session::redirect_to(&format!(
        "/ui/calls/{id}#legal-hold"
    )))
}

/// One call, all its fields by category, the player and the redaction controls.
pub async fn call_detail(
    State(state): State<AppState>,
    user: WebUser,
    Path(call): Path<String>,
) -> PageResult<Response> {
    call_page(&state, &user, &call, None).await
}

/// The recording, streamed (with Range) to signed-in users allowed to hear it.
pub async fn recording(
    State(state): State<AppState>,
    user: WebUser,
    Path(call): Path<String>,
    headers: HeaderMap,
) -> PageResult<Response> {
    Ok(recordings::get_recording(State(state), Auth(user.principal), Path(call), headers).await?)
}

#[derive(Template)]
#[template(path = "confirm_call.html")]
struct ConfirmCallPage {
    chrome: Chrome,
    call_id: String,
    recording: bool,
    visitor: bool,
}

/// Checks that the user may redact this call's data; answers its tenant.
async fn redactable(state: &AppState, user: &WebUser, call: &str) -> PageResult<(CallId, Tenant)> {
    let (row, tenant) = state
        .call_for(&user.principal, call, Permission::Redact)
        .await?;
    let id = row.id;
    if let Err(why) = redaction_allowed(state, &user.principal, &tenant).await? {
        return Err(PageError::new(Code::RedactionDisabled, why));
    }
    Ok((id, tenant))
}

/// What redacting this call removes and keeps; the button that does it.
pub async fn confirm_redact_call(
    State(state): State<AppState>,
    user: WebUser,
    Path(call): Path<String>,
) -> PageResult<Response> {
    let (id, tenant) = redactable(&state, &user, &call).await?;
    let c = state
        .log
        .call(id)
        .await?
        .ok_or_else(|| ApiError::not_found("call"))?;
    render(&ConfirmCallPage {
        chrome: Chrome::new(&user, Some(tenant.account)),
        call_id: id.to_string(),
        recording: c.recording.is_some(),
        visitor: c.visitor.is_some(),
    })
}

/// Redacts the call through the API's handler; the call page shows the receipt.
pub async fn redact_call(
    State(state): State<AppState>,
    user: WebUser,
    Path(call): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    user.form(&headers, &body)?;
    let Json(receipt) = redaction::redact_call(
        State(state.clone()),
        Auth(user.principal.clone()),
        Path(call.clone()),
        HeaderMap::new(),
        Bytes::new(),
    )
    .await
    .map_err(|e| PageError(e).into_response())?;
    call_page(&state, &user, &call, Some(receipt))
        .await
        .map_err(IntoResponse::into_response)
}

#[derive(Template)]
#[template(path = "confirm_caller.html")]
struct ConfirmCallerPage {
    chrome: Chrome,
    call_id: String,
    number: String,
    live_calls: usize,
    already_redacted: usize,
    on_hold: usize,
    sessions: usize,
}

/// The caller's number of a call, for a caller redaction started from it.
async fn caller_of(state: &AppState, id: CallId) -> PageResult<ringfence_core::E164> {
    let c = state
        .log
        .call(id)
        .await?
        .ok_or_else(|| ApiError::not_found("call"))?;
    c.caller
        .and_then(|x| x.number)
        .ok_or_else(|| {
            PageError::new(
                Code::Conflict,
                "this call has no caller number (withheld or already redacted), so there is no caller to redact",
            )
        })
}

/// How many calls and sessions redacting the caller of this call touches; the button.
pub async fn confirm_redact_caller(
    State(state): State<AppState>,
    user: WebUser,
    Path(call): Path<String>,
) -> PageResult<Response> {
    let (id, tenant) = redactable(&state, &user, &call).await?;
    let number = caller_of(&state, id).await?;
    let index = state.log.blind_index(tenant.account, &number).await?;
    let rows = state
        .log
        .store()
        .calls_by_caller(tenant.account, index)
        .await?;
    let live: Vec<_> = rows
        .iter()
        .filter(|r| r.redacted_at.is_none() && r.legal_hold.is_none())
        .collect();
    let mut sessions: Vec<_> = live.iter().filter_map(|r| r.session_id).collect();
    sessions.sort();
    sessions.dedup();
    render(&ConfirmCallerPage {
        chrome: Chrome::new(&user, Some(tenant.account)),
        call_id: id.to_string(),
        number: number.as_str().to_owned(),
        live_calls: live.len(),
        already_redacted: rows.iter().filter(|r| r.redacted_at.is_some()).count(),
        on_hold: rows
            .iter()
            .filter(|r| r.redacted_at.is_none() && r.legal_hold.is_some())
            .count(),
        sessions: sessions.len(),
    })
}

/// Redacts every call and session of the call's caller in the account, through the API's
/// handler. The number comes from the call, never from the form.
pub async fn redact_caller(
    State(state): State<AppState>,
    user: WebUser,
    Path(call): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let form = user.form(&headers, &body)?;
    let (id, tenant) = redactable(&state, &user, &call)
        .await
        .map_err(IntoResponse::into_response)?;
    let number = caller_of(&state, id)
        .await
        .map_err(IntoResponse::into_response)?;
    let Json(receipt) = redaction::redact_caller(
        State(state.clone()),
        Auth(user.principal.clone()),
        Path(tenant.account.to_string()),
        JsonBody(RedactCallerInput {
            number: number.as_str().to_owned(),
            forget: field(&form, "forget") == Some("on"),
            scope: None,
            reason: None,
        }),
    )
    .await
    .map_err(|e| PageError(e).into_response())?;
    call_page(&state, &user, &call, Some(receipt))
        .await
        .map_err(IntoResponse::into_response)
}

/// A proposed automatic-redaction policy as the settings form sends it.
struct RetentionChoice {
    after: String,
    custom: String,
    scope: String,
    /// Earlier removal per personal category: (category, days as typed, empty for none).
    categories: Vec<(&'static str, String)>,
}

impl RetentionChoice {
    fn from_form(form: &[(String, String)]) -> Self {
        RetentionChoice {
            after: field(form, "after_days").unwrap_or("off").to_owned(),
            custom: field(form, "custom_days").unwrap_or("").trim().to_owned(),
            scope: field(form, "scope").unwrap_or("everyone").to_owned(),
            categories: ringfence_core::DataCategory::PERSONAL
                .iter()
                .map(|c| {
                    let name = c.as_str();
                    let typed = field(form, &format!("category_{name}")).unwrap_or("");
                    (name, typed.trim().to_owned())
                })
                .collect(),
        }
    }

    /// The per-category schedule it sets (empty boxes left out), or a clear error.
    fn category_days(&self) -> PageResult<std::collections::BTreeMap<String, u32>> {
        let mut out = std::collections::BTreeMap::new();
        for (name, typed) in &self.categories {
            if typed.is_empty() {
                continue;
            }
            let days = typed.parse::<u32>().map_err(|_| {
                PageError::new(
                    Code::InvalidField,
                    format!("{name}: a whole number of days, or empty"),
                )
            })?;
            out.insert((*name).to_owned(), days);
        }
        Ok(out)
    }

    fn from_settings(s: &AccountSettings) -> Self {
        let after = match s.auto_redact.after_days {
            None => "off".to_owned(),
            Some(d @ (1 | 30 | 60 | 90)) => d.to_string(),
            Some(_) => "custom".to_owned(),
        };
        RetentionChoice {
            custom: match (&*after, s.auto_redact.after_days) {
                ("custom", Some(d)) => d.to_string(),
                _ => String::new(),
            },
            after,
            scope: s.auto_redact.scope.clone(),
            categories: ringfence_core::DataCategory::PERSONAL
                .iter()
                .map(|c| {
                    let name = c.as_str();
                    let days = s.auto_redact.categories.get(name);
                    (name, days.map(u32::to_string).unwrap_or_default())
                })
                .collect(),
        }
    }

    /// The days it sets (`None`: off), or a clear error.
    fn days(&self) -> PageResult<Option<u32>> {
        let text = match self.after.as_str() {
            "off" => return Ok(None),
            "custom" => self.custom.as_str(),
            preset => preset,
        };
        text.parse().map(Some).map_err(|_| {
            PageError::new(
                Code::InvalidField,
                "automatic redaction: choose off, 1, 30, 60 or 90 days, or a custom whole number of days",
            )
        })
    }
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    chrome: Chrome,
    account_id: String,
    settings: AccountSettings,
    choice: RetentionChoice,
    /// After "preview": what saving would redact now.
    proposed: Option<AccountSettings>,
    /// What was just saved, said at the top of the page.
    saved: Option<&'static str>,
    recipients: Vec<RecipientView>,
    /// Every notice version, by category then version.
    notices: Vec<NoticeOutput>,
    events: &'static [&'static str],
}

/// What the settings page shows besides the settings document: the recipients and the
/// notices, through the API's own handlers.
async fn extras(
    state: &AppState,
    user: &WebUser,
    account: &str,
) -> PageResult<(Vec<RecipientView>, Vec<NoticeOutput>)> {
    let recipients = recipients_view(state, user, account).await?;
    let Json(list) = consents::list_notices(
        State(state.clone()),
        Auth(user.principal.clone()),
        Path(account.to_owned()),
    )
    .await?;
    let mut notices = list.items;
    notices.sort_by(|a, b| (&a.category, a.version).cmp(&(&b.category, b.version)));
    Ok((recipients, notices))
}

/// What the settings page shows around the settings document.
#[derive(Default)]
struct SettingsView {
    /// The document to show; fetched through the API when `None`.
    settings: Option<AccountSettings>,
    /// The form's choice; the document's own when `None`.
    choice: Option<RetentionChoice>,
    proposed: Option<AccountSettings>,
    saved: Option<&'static str>,
}

/// Renders the settings page of `account` with the API's settings, recipients and notices.
async fn show_settings(
    state: &AppState,
    user: &WebUser,
    account: &str,
    view: SettingsView,
) -> PageResult<Response> {
    let settings = match view.settings {
        Some(s) => s,
        None => {
            let Json(s) = accounts::get_settings(
                State(state.clone()),
                Auth(user.principal.clone()),
                Path(account.to_owned()),
            )
            .await?;
            s
        }
    };
    let account_id: AccountId = path_id(account, "account")?;
    let (recipients, notices) = extras(state, user, account).await?;
    render(&SettingsPage {
        chrome: Chrome::new(user, Some(account_id)),
        account_id: account_id.to_string(),
        choice: view
            .choice
            .unwrap_or_else(|| RetentionChoice::from_settings(&settings)),
        settings,
        proposed: view.proposed,
        saved: view.saved,
        recipients,
        notices,
        events: RECIPIENT_EVENTS,
    })
}

/// Puts a dead-lettered delivery back in the queue through the API's handler (journaled
/// there), then shows the settings again.
pub async fn retry_delivery(
    State(state): State<AppState>,
    user: WebUser,
    Path((account, recipient, delivery)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    user.form(&headers, &body)?;
    let run = async {
        let Json(_) = recipients_route::retry(
            State(state.clone()),
            Auth(user.principal.clone()),
            Path((account.clone(), recipient, delivery)),
        )
        .await?;
        show_settings(
            &state,
            &user,
            &account,
            SettingsView {
                saved: Some("Delivery queued again: it is sent within seconds."),
                ..Default::default()
            },
        )
        .await
    };
    run.await.map_err(IntoResponse::into_response)
}

/// Adds a notice version (the text announced or shown before consent is asked) through the
/// API's handler; versions count up per category and are immutable once a consent cites one.
pub async fn create_notice(
    State(state): State<AppState>,
    user: WebUser,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let form = user.form(&headers, &body)?;
    let run = async {
        let input = consents::NoticeInput {
            category: field(&form, "category").unwrap_or_default().to_owned(),
            text: field(&form, "text").unwrap_or_default().to_owned(),
        };
        let (_, Json(_)) = consents::create_notice(
            State(state.clone()),
            Auth(user.principal.clone()),
            Path(account.clone()),
            JsonBody(input),
        )
        .await?;
        show_settings(
            &state,
            &user,
            &account,
            SettingsView {
                saved: Some("Notice version added."),
                ..Default::default()
            },
        )
        .await
    };
    run.await.map_err(IntoResponse::into_response)
}

/// A recipient with the state of its outbox, as the settings page shows it.
struct RecipientView {
    recipient: RecipientOutput,
    /// Its most recent deliveries, newest first.
    latest: Vec<DeliveryOutput>,
    /// Dead-lettered deliveries (shown as "500+" beyond a page).
    dead: usize,
    /// The newest dead letters, each with a retry button.
    dead_latest: Vec<DeliveryOutput>,
    queued: usize,
}

/// Most dead or queued deliveries counted per recipient on the page.
const DELIVERY_PAGE: usize = 500;

/// The account's recipients and their deliveries, through the API's own handlers.
async fn recipients_view(
    state: &AppState,
    user: &WebUser,
    account: &str,
) -> PageResult<Vec<RecipientView>> {
    let Json(list) = recipients_route::list(
        State(state.clone()),
        Auth(user.principal.clone()),
        Path(account.to_owned()),
    )
    .await?;
    let mut out = Vec::with_capacity(list.items.len());
    for recipient in list.items {
        let page = |query: &str| {
            recipients_route::deliveries(
                State(state.clone()),
                Auth(user.principal.clone()),
                Path((account.to_owned(), recipient.id.clone())),
                RawQuery(Some(query.to_owned())),
            )
        };
        let Json(latest) = page("limit=5").await?;
        let Json(dead) = page(&format!("state=dead&limit={DELIVERY_PAGE}")).await?;
        let Json(queued) = page(&format!("state=queued&limit={DELIVERY_PAGE}")).await?;
        out.push(RecipientView {
            recipient,
            latest: latest.items,
            dead: dead.items.len(),
            dead_latest: dead.items.into_iter().take(20).collect(),
            queued: queued.items.len(),
        });
    }
    Ok(out)
}

impl SettingsPage {
    fn due(s: &AccountSettings) -> u64 {
        s.auto_redact.preview.calls
    }

    fn category_removals(s: &AccountSettings) -> u64 {
        s.auto_redact.preview.categories.values().sum()
    }

    fn count(n: &usize) -> String {
        if *n >= DELIVERY_PAGE {
            format!("{DELIVERY_PAGE}+")
        } else {
            n.to_string()
        }
    }
}

/// The account's settings: automatic redaction (with its dry run) and what it collects.
pub async fn settings(
    State(state): State<AppState>,
    user: WebUser,
    Path(account): Path<String>,
) -> PageResult<Response> {
    show_settings(&state, &user, &account, SettingsView::default()).await
}

/// Step one (`step=preview`) answers the dry-run count of the proposed policy through the
/// API's own `dry_run`; step two (`step=save`) saves it, confirmed.
pub async fn save_retention(
    State(state): State<AppState>,
    user: WebUser,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let form = user.form(&headers, &body)?;
    let choice = RetentionChoice::from_form(&form);
    let save = field(&form, "step") == Some("save");
    let run = async {
        let update = AccountSettingsUpdate {
            auto_redact: Some(AutoRedactUpdate {
                after_days: Some(choice.days()?),
                scope: Some(choice.scope.clone()),
                categories: Some(choice.category_days()?),
            }),
            collection: None,
            telephony: None,
            confirm: save,
            dry_run: !save,
        };
        let Json(result) = accounts::put_settings(
            State(state.clone()),
            Auth(user.principal.clone()),
            Path(account.clone()),
            JsonBody(update),
        )
        .await?;
        let view = if save {
            SettingsView {
                settings: Some(result),
                saved: Some("Automatic redaction saved."),
                ..Default::default()
            }
        } else {
            SettingsView {
                choice: Some(choice),
                proposed: Some(result),
                ..Default::default()
            }
        };
        show_settings(&state, &user, &account, view).await
    };
    run.await.map_err(IntoResponse::into_response)
}

/// Saves what the account collects (every field of the form: an unchecked box is `false`)
/// through the API's own settings handler.
pub async fn save_collection(
    State(state): State<AppState>,
    user: WebUser,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let form = user.form(&headers, &body)?;
    let run = async {
        let checked = |name: &str| Some(field(&form, name) == Some("on"));
        let chosen = |name: &str| Some(field(&form, name).unwrap_or_default().to_owned());
        let update = AccountSettingsUpdate {
            auto_redact: None,
            collection: Some(CollectionUpdate {
                caller_name: checked("caller_name"),
                caller_location: checked("caller_location"),
                recording_gdpr: chosen("recording_gdpr"),
                recording_other: chosen("recording_other"),
                transcription: checked("transcription"),
                visitor_ip: chosen("visitor_ip"),
                visitor_details: checked("visitor_details"),
            }),
            telephony: None,
            confirm: false,
            dry_run: false,
        };
        let Json(result) = accounts::put_settings(
            State(state.clone()),
            Auth(user.principal.clone()),
            Path(account.clone()),
            JsonBody(update),
        )
        .await?;
        show_settings(
            &state,
            &user,
            &account,
            SettingsView {
                settings: Some(result),
                saved: Some("What is collected saved: it applies to data arriving from now on."),
                ..Default::default()
            },
        )
        .await
    };
    run.await.map_err(IntoResponse::into_response)
}

/// The events a recipient can be sent, in the order the form lists them.
const RECIPIENT_EVENTS: &[&str] = &[
    "call.created",
    "call.redacted",
    "caller.erased",
    "consent.withdrawn",
];

/// Every value of a repeated form field (checkboxes of one name).
fn all(form: &[(String, String)], name: &str) -> Vec<String> {
    form.iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .collect()
}

/// Registers a recipient through the API's handler (its checks: a public `https://` host,
/// a secret of 16 to 512 bytes, known events), then shows the settings again.
pub async fn create_recipient(
    State(state): State<AppState>,
    user: WebUser,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let form = user.form(&headers, &body)?;
    let run = async {
        let input = recipients_route::RecipientInput {
            name: field(&form, "name").unwrap_or_default().to_owned(),
            url: field(&form, "url").unwrap_or_default().trim().to_owned(),
            secret: field(&form, "secret").unwrap_or_default().to_owned(),
            events: all(&form, "events"),
            personal_data: Some(field(&form, "personal_data") == Some("on")),
        };
        let (_, Json(_)) = recipients_route::create(
            State(state.clone()),
            Auth(user.principal.clone()),
            Path(account.clone()),
            JsonBody(input),
        )
        .await?;
        show_settings(
            &state,
            &user,
            &account,
            SettingsView {
                saved: Some("Recipient added: it is sent the events you chose from now on."),
                ..Default::default()
            },
        )
        .await
    };
    run.await.map_err(IntoResponse::into_response)
}

/// Changes (`action=update`; an empty secret keeps the current one) or removes
/// (`action=remove`) a recipient through the API's handlers, then shows the settings again.
pub async fn change_recipient(
    State(state): State<AppState>,
    user: WebUser,
    Path((account, recipient)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let form = user.form(&headers, &body)?;
    let run = async {
        let auth = Auth(user.principal.clone());
        let path = Path((account.clone(), recipient.clone()));
        let saved = match field(&form, "action") {
            Some("update") => {
                let secret = field(&form, "secret").unwrap_or_default();
                let update = recipients_route::RecipientUpdate {
                    name: Some(field(&form, "name").unwrap_or_default().to_owned()),
                    url: Some(field(&form, "url").unwrap_or_default().trim().to_owned()),
                    secret: (!secret.is_empty()).then(|| secret.to_owned()),
                    events: Some(all(&form, "events")),
                    personal_data: Some(field(&form, "personal_data") == Some("on")),
                };
                let Json(_) =
                    recipients_route::update(State(state.clone()), auth, path, JsonBody(update))
                        .await?;
                "Recipient saved."
            }
            Some("remove") => {
                let Json(_) = recipients_route::remove(State(state.clone()), auth, path).await?;
                "Recipient removed: it is sent nothing more; its delivery history stays."
            }
            _ => {
                return Err(PageError::new(
                    Code::InvalidField,
                    "action: update or remove",
                ));
            }
        };
        show_settings(
            &state,
            &user,
            &account,
            SettingsView {
                saved: Some(saved),
                ..Default::default()
            },
        )
        .await
    };
    run.await.map_err(IntoResponse::into_response)
}
