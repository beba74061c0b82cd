//! The checklist pages: an account's items and an agency's roll-up, from the API's handlers,
//! each failing item with a link to the page and control that fixes it. (The shell commands
//! stay in `ringfence checklist`; a page points at pages.)

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;

use askama::Template;
use ringfence_core::access::{Permission, Role};
use ringfence_core::{AccountId, AgencyId};

use super::error::PageResult;
use super::pages::{Chrome, render};
use super::present::filters;
use super::session::WebUser;
use crate::auth::Auth;
use crate::routes::checklist::{self as checklist_route, ChecklistItem};
use crate::routes::path_id;
use crate::state::AppState;

/// Where a failing item is fixed: a page and the control on it, or who else fixes it.
pub(super) struct Fix {
    /// The page and the control's anchor, when the viewer may open it.
    pub(super) href: Option<String>,
    pub(super) text: String,
}

/// One item as a page shows it.
pub(super) struct ItemView {
    pub(super) id: String,
    pub(super) status: String,
    pub(super) explanation: String,
    pub(super) fix: Option<Fix>,
}

/// The page and control that fix item `id` of `account` (of `agency`), for `user`.
fn fix_for(id: &str, account: AccountId, agency: AgencyId, user: &WebUser) -> Fix {
    let settings = |anchor: &str, text: &str| Fix {
        href: Some(format!("/ui/accounts/{account}/settings#{anchor}")),
        text: text.to_owned(),
    };
    let operator = |what: &str| Fix {
        href: None,
        text: format!(
            "{what}: a task for whoever runs the server (its command-line checklist says how)."
        ),
    };
    match id {
        "redaction_enabled" => {
            if user
                .principal
                .check_agency(Permission::ManageAgency, agency)
                .is_ok()
            {
                Fix {
                    href: Some(format!("/ui/agencies/{agency}/settings#redaction_enabled")),
                    text: "Agency settings › “The agency's accounts may redact”".to_owned(),
                }
            } else {
                Fix {
                    href: None,
                    text: "Ask your agency's admin to let its accounts redact (agency settings)."
                        .to_owned(),
                }
            }
        }
        "auto_redaction" | "overdue_redactions" => settings(
            "after",
            "Settings › Automatic redaction › “Redact calls after”",
        ),
        "recording_consent_gdpr" => settings(
            "recording_gdpr",
            "Settings › Recording consent › “Callers in GDPR scope”",
        ),
        "caller_id_lookup" => settings("caller_name", "Settings › Caller › “Keep caller-ID names”"),
        "ip_minimised" => settings("visitor_ip", "Settings › Web visits › “Visitor IP address”"),
        "visitor_details" => settings(
            "visitor_details",
            "Settings › Web visits › “Keep user agent, referrer…”",
        ),
        "recipients" => settings("add-recipient", "Settings › Recipients › “Add a recipient”"),
        "notices" | "consent_notices" => {
            settings("notice-form", "Settings › Notices › “Add a new version”")
        }
        "audit_chain" if user.principal.role != Role::Analyst => Fix {
            href: Some("/ui/journal#chain".to_owned()),
            text: "Journal › chain verification".to_owned(),
        },
        "worker_recent" => operator("Keep the server and its background worker running"),
        "data_folder_permissions" => operator("Restrict the data folder's permissions"),
        "tokens" => operator("Retire unused API tokens"),
        _ => operator("See the item's explanation"),
    }
}

fn views(
    items: Vec<ChecklistItem>,
    account: AccountId,
    agency: AgencyId,
    user: &WebUser,
) -> Vec<ItemView> {
    items
        .into_iter()
        .map(|i| ItemView {
            fix: (i.status != "pass").then(|| fix_for(&i.id, account, agency, user)),
            id: i.id,
            status: i.status,
            explanation: i.explanation,
        })
        .collect()
}

#[derive(Template)]
#[template(path = "checklist.html")]
struct ChecklistPage {
    chrome: Chrome,
    status: String,
    generated_at: String,
    items: Vec<ItemView>,
}

/// The account's compliance checklist, from the API's handler.
pub async fn checklist(
    State(state): State<AppState>,
    user: WebUser,
    Path(account): Path<String>,
) -> PageResult<Response> {
    let Json(checklist) = checklist_route::account(
        State(state.clone()),
        Auth(user.principal.clone()),
        Path(account.clone()),
    )
    .await?;
    let account: AccountId = path_id(&account, "account")?;
    let tenant = state.tenant(account).await?;
    render(&ChecklistPage {
        chrome: Chrome::new(&user, Some(account)),
        status: checklist.status,
        generated_at: checklist.generated_at,
        items: views(checklist.items, account, tenant.agency, &user),
    })
}

struct AccountView {
    id: String,
    name: String,
    status: String,
    items: Vec<ItemView>,
}

#[derive(Template)]
#[template(path = "agency_checklist.html")]
struct AgencyChecklistPage {
    chrome: Chrome,
    name: String,
    status: String,
    accounts: Vec<AccountView>,
}

/// The checklists of an agency's accounts, worst first, from the API's handler; accounts
/// by name.
pub async fn agency_checklist(
    State(state): State<AppState>,
    user: WebUser,
    Path(agency): Path<String>,
) -> PageResult<Response> {
    let Json(rollup) = checklist_route::agency(
        State(state.clone()),
        Auth(user.principal.clone()),
        Path(agency.clone()),
    )
    .await?;
    let agency: AgencyId = path_id(&agency, "agency")?;
    let store = state.log.store();
    let names: std::collections::HashMap<String, String> = store
        .list_accounts(Some(agency))
        .await?
        .into_iter()
        .map(|a| (a.id.to_string(), a.name))
        .collect();
    let mut accounts = Vec::with_capacity(rollup.accounts.len());
    for a in rollup.accounts {
        let id: AccountId = path_id(&a.account_id, "account")?;
        accounts.push(AccountView {
            name: names
                .get(&a.account_id)
                .cloned()
                .unwrap_or_else(|| a.account_id.clone()),
            status: a.status,
            items: views(a.items, id, agency, &user),
            id: a.account_id,
        });
    }
    render(&AgencyChecklistPage {
        chrome: Chrome::new(&user, None),
        name: store
            .agency(agency)
            .await?
            .map(|a| a.name)
            .unwrap_or_default(),
        status: rollup.status,
        accounts,
    })
}
