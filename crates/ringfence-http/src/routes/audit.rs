use axum::Json;
use axum::extract::{RawQuery, State};
use serde::Serialize;
use utoipa::ToSchema;

use ringfence_core::access::{Role, Scope};
use ringfence_store::{AuditEntry, AuditQuery};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, Code};
use crate::state::AppState;

/// One journal entry. Ids, roles, counts and reasons only.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryOutput {
    pub seq: i64,
    pub at: String,
    /// `token:<id>`, `cli`, or a job's name.
    pub actor: String,
    pub action: String,
    pub agency_id: Option<String>,
    pub account_id: Option<String>,
    pub subject: Option<String>,
    pub count: Option<u64>,
    pub reason: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// SHA-256 of the previous entry's hash and this entry's fields (hex).
    pub hash: String,
    pub prev_hash: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub items: Vec<AuditEntryOutput>,
    pub next_cursor: Option<String>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn output(e: AuditEntry) -> AuditEntryOutput {
    AuditEntryOutput {
        seq: e.seq,
        at: e.at.to_rfc3339(),
        actor: e.event.actor,
        action: e.event.action,
        agency_id: e.event.agency_id.map(|a| a.to_string()),
        account_id: e.event.account_id.map(|a| a.to_string()),
        subject: e.event.subject,
        count: e.event.count,
        reason: e.event.reason,
        details: serde_json::from_str(&e.event.details).unwrap_or(serde_json::Value::Null),
        hash: hex(&e.hash),
        prev_hash: hex(&e.prev_hash),
    }
}

/// The audit journal, oldest first (`order=newest_first` for the latest entries first, as
/// the journal page shows them), limited to what the token may see: everything for an
/// admin, an agency's entries for its admin, an account's entries for its admin.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit",
    params(("cursor" = Option<String>, Query, pattern = "^[0-9]{1,18}$", description = "next_cursor of the previous page"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "1 to 500, default 100"), ("order" = Option<String>, Query, pattern = "^(oldest_first|newest_first)$", description = "oldest_first (default) or newest_first; a cursor continues in the order it was given in")),
    responses(
        (status = 200, body = AuditList),
        (status = 400, extensions(("x-error-codes" = json!([Code::InvalidQuery, Code::InvalidCursor])))),
        (status = 403, description = "the journal is for installation, agency and account admins", extensions(("x-error-codes" = json!([Code::Forbidden])))),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Auth(principal): Auth,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<AuditList>> {
    let (agency_id, account_id) = match (principal.role, principal.scope) {
        (Role::Admin, _) => (None, None),
        (Role::AgencyAdmin, Scope::Agency(agency)) => (Some(agency), None),
        (Role::AccountAdmin, Scope::Account { account, .. }) => (None, Some(account)),
        _ => {
            return Err(ApiError::new(
                Code::Forbidden,
                "the audit journal is for admins",
            ));
        }
    };
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|_| ApiError::new(Code::InvalidQuery, "query string is not valid URL encoding"))?;
    let mut query = AuditQuery {
        agency_id,
        account_id,
        after_seq: None,
        before_seq: None,
        limit: 100,
    };
    let mut newest_first = false;
    let mut cursor: Option<i64> = None;
    for (key, value) in pairs {
        match key.as_str() {
            "limit" => query.limit = super::page_limit(Some(&value), 100)?,
            "order" => {
                newest_first = match value.as_str() {
                    "oldest_first" => false,
                    "newest_first" => true,
                    _ => {
                        return Err(ApiError::new(
                            Code::InvalidQuery,
                            "order: oldest_first or newest_first",
                        ));
                    }
                }
            }
            "cursor" => {
                cursor = Some(
                    value
                        .parse()
                        .ok()
                        .filter(|s: &i64| *s >= 0)
                        .ok_or_else(|| {
                            ApiError::new(
                                Code::InvalidCursor,
                                "cursor is not one this server gave out",
                            )
                        })?,
                );
            }
            other => {
                return Err(ApiError::new(
                    Code::InvalidQuery,
                    format!("unknown parameter `{other}`"),
                ));
            }
        }
    }
    if newest_first {
        query.before_seq = Some(cursor.unwrap_or(i64::MAX));
    } else {
        query.after_seq = cursor;
    }
    let limit = query.limit as usize;
    let mut entries = state
        .log
        .store()
        .audit(AuditQuery {
            limit: query.limit + 1,
            ..query
        })
        .await?;
    let more = entries.len() > limit;
    entries.truncate(limit);
    let next_cursor = if more {
        entries.last().map(|e| e.seq.to_string())
    } else {
        None
    };
    Ok(Json(AuditList {
        items: entries.into_iter().map(output).collect(),
        next_cursor,
    }))
}
