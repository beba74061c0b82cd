//! The compliance checklist of an account, and its agency's roll-up. The facts are gathered
//! by `ringfence_jobs::checklist` and judged by `ringfence_core::checklist`; this module is
//! the wire format, shared with the command line.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use ringfence_core::access::Permission;
use ringfence_core::checklist::{AgencyChecklist, Checklist, Item};
use ringfence_core::{AccountId, AgencyId};

use super::{check_account, path_id};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, Code};
use crate::state::AppState;

/// One item: a stable `id`, its verdict, why, and what to do.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChecklistItem {
    /// A stable name, e.g. `auto_redaction`.
    pub id: String,
    /// `pass`, `warn` or `fail`.
    pub status: String,
    /// One line.
    pub explanation: String,
    /// The API call or command that fixes it (`nothing to do` when it passes).
    pub fix: String,
}

/// An account's checklist, computed now from its settings and the live state.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountChecklist {
    pub account_id: String,
    /// The worst status of the items.
    pub status: String,
    pub items: Vec<ChecklistItem>,
    pub generated_at: String,
}

/// An agency's roll-up: each account's checklist, worst first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgencyChecklistOutput {
    pub agency_id: String,
    /// The worst status of its accounts.
    pub status: String,
    pub accounts: Vec<AccountChecklist>,
}

fn item(i: Item) -> ChecklistItem {
    ChecklistItem {
        id: i.id.to_owned(),
        status: i.status.as_str().to_owned(),
        explanation: i.explanation,
        fix: i.fix,
    }
}

impl From<Checklist> for AccountChecklist {
    fn from(c: Checklist) -> Self {
        AccountChecklist {
            account_id: c.account_id.to_string(),
            status: c.status.as_str().to_owned(),
            items: c.items.into_iter().map(item).collect(),
            generated_at: c.generated_at.to_rfc3339(),
        }
    }
}

impl From<AgencyChecklist> for AgencyChecklistOutput {
    fn from(a: AgencyChecklist) -> Self {
        AgencyChecklistOutput {
            agency_id: a.agency_id.to_string(),
            status: a.status.as_str().to_owned(),
            accounts: a.accounts.into_iter().map(AccountChecklist::from).collect(),
        }
    }
}

/// An account's compliance checklist (account, agency and installation admins).
#[utoipa::path(get, path = "/api/v1/accounts/{account_id}/checklist", tag = "accounts",
    params(("account_id" = String, Path, description = "account id")),
    responses(
        (status = 200, body = AccountChecklist),
        (status = 403, extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such account in the token's scope", extensions(("x-error-codes" = json!([Code::NotFound])))),
    ),
    security(("bearer" = [])))]
pub async fn account(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(account): Path<String>,
) -> ApiResult<Json<AccountChecklist>> {
    let account: AccountId = path_id(&account, "account")?;
    let tenant = state.tenant(account).await?;
    check_account(&principal, Permission::ManageAccount, &tenant)?;
    let checklist =
        ringfence_jobs::checklist::account_checklist(&state.log, account, state.data_paths())
            .await?
            .ok_or_else(|| ApiError::not_found("account"))?;
    Ok(Json(checklist.into()))
}

/// The checklists of an agency's accounts, worst first (agency and installation admins).
#[utoipa::path(get, path = "/api/v1/agencies/{agency_id}/checklist", tag = "agencies",
    params(("agency_id" = String, Path, description = "agency id")),
    responses(
        (status = 200, body = AgencyChecklistOutput),
        (status = 403, extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such agency in the token's scope", extensions(("x-error-codes" = json!([Code::NotFound])))),
    ),
    security(("bearer" = [])))]
pub async fn agency(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(agency): Path<String>,
) -> ApiResult<Json<AgencyChecklistOutput>> {
    let agency: AgencyId = path_id(&agency, "agency")?;
    if !principal.sees_agency(agency) {
        return Err(ApiError::not_found("agency"));
    }
    principal.check_agency(Permission::ManageAgency, agency)?;
    let checklist =
        ringfence_jobs::checklist::agency_checklist(&state.log, agency, state.data_paths())
            .await?
            .ok_or_else(|| ApiError::not_found("agency"))?;
    Ok(Json(checklist.into()))
}
