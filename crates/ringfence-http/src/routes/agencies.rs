use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use ringfence_core::AgencyId;
use ringfence_core::access::Permission;
use ringfence_core::call::FieldError;
use ringfence_core::timestamp::Timestamp;
use ringfence_store::{AgencyRecord, AuditEvent};

use super::path_id;
use crate::auth::Auth;
use crate::body::JsonBody;
use crate::error::{ApiError, ApiResult, Code};
use crate::state::AppState;

/// An agency's settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgencySettings {
    /// Whether the agency's accounts may redact calls and callers.
    pub redaction_enabled: bool,
    /// Longest retention (days) its accounts may use; null for no limit.
    pub max_retention_days: Option<u32>,
}

/// Any subset of the settings; `max_retention_days: null` removes the limit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"redaction_enabled": true, "max_retention_days": 365}))]
pub struct AgencySettingsUpdate {
    pub redaction_enabled: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 3650)]
    pub max_retention_days: Option<Option<u32>>,
    /// A ceiling that would redact calls at once is applied only with `true`; without it
    /// the answer is 409 `confirmation_required` with `would_redact` per account.
    #[serde(default)]
    pub confirm: bool,
}

/// Tells a missing field (`None`) from an explicit null (`Some(None)`).
fn double_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    Option::<u32>::deserialize(d).map(Some)
}

fn settings_of(a: &AgencyRecord) -> AgencySettings {
    AgencySettings {
        redaction_enabled: a.redaction_enabled,
        max_retention_days: a.max_retention_days,
    }
}

async fn agency_for(
    state: &AppState,
    principal: &ringfence_core::access::Principal,
    id: &str,
) -> ApiResult<AgencyRecord> {
    let id: AgencyId = path_id(id, "agency")?;
    if !principal.sees_agency(id) {
        return Err(ApiError::not_found("agency"));
    }
    state
        .log
        .store()
        .agency(id)
        .await?
        .ok_or_else(|| ApiError::not_found("agency"))
}

/// An agency's settings (admins and the agency's admins).
#[utoipa::path(get, path = "/api/v1/agencies/{agency_id}/settings", tag = "agencies",
    params(("agency_id" = String, Path, description = "agency id")),
    responses(
        (status = 200, body = AgencySettings),
        (status = 403, extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such agency in the token's scope", extensions(("x-error-codes" = json!([Code::NotFound])))),
    ),
    security(("bearer" = [])))]
pub async fn get_settings(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(agency): Path<String>,
) -> ApiResult<Json<AgencySettings>> {
    let record = agency_for(&state, &principal, &agency).await?;
    principal.check_agency(Permission::ManageAgency, record.id)?;
    Ok(Json(settings_of(&record)))
}

/// Change an agency's settings; journaled.
///
/// A retention ceiling caps every account of the agency, including those whose own
/// automatic redaction is off. One that would make calls due at once is refused with 409
/// `confirmation_required` and `error.would_redact` (account id → calls) until it is sent
/// again with `"confirm": true`; the journal entry records the counts confirmed.
#[utoipa::path(put, path = "/api/v1/agencies/{agency_id}/settings", tag = "agencies",
    params(("agency_id" = String, Path, description = "agency id")),
    request_body = AgencySettingsUpdate,
    responses(
        (status = 200, body = AgencySettings),
        (status = 403, extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such agency in the token's scope", extensions(("x-error-codes" = json!([Code::NotFound])))),
        (status = 409, description = "the ceiling would redact calls at once: `error.would_redact` has the count per account", extensions(("x-error-codes" = json!([Code::ConfirmationRequired])))),
    ),
    security(("bearer" = [])))]
pub async fn put_settings(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(agency): Path<String>,
    JsonBody(update): JsonBody<AgencySettingsUpdate>,
) -> ApiResult<Json<AgencySettings>> {
    let mut record = agency_for(&state, &principal, &agency).await?;
    principal.check_agency(Permission::ManageAgency, record.id)?;
    let before = settings_of(&record);
    if let Some(enabled) = update.redaction_enabled {
        record.redaction_enabled = enabled;
    }
    if let Some(days) = update.max_retention_days {
        if days.is_some_and(|d| !(1..=3650).contains(&d)) {
            return Err(ApiError::fields(vec![FieldError::new(
                "max_retention_days",
                "invalid_field",
                "must be between 1 and 3650, or null for no limit",
            )]));
        }
        record.max_retention_days = days;
    }
    let would_redact = ringfence_jobs::retention::ceiling_preview(
        &state.log,
        record.id,
        before.max_retention_days,
        record.max_retention_days,
        Timestamp::now(),
    )
    .await?;
    let total: u64 = would_redact.values().sum();
    if total > 0 && !update.confirm {
        let mut err = ApiError::new(
            Code::ConfirmationRequired,
            format!(
                "this ceiling would redact {total} {} at once in {} {}; send it again with \"confirm\": true",
                plural(total, "call", "calls"),
                would_redact.len(),
                plural(would_redact.len() as u64, "account", "accounts"),
            ),
        );
        err.would_redact = Some(
            would_redact
                .iter()
                .map(|(a, n)| (a.to_string(), *n))
                .collect(),
        );
        return Err(err);
    }
    state.log.store().update_agency(record.clone()).await?;
    let after = settings_of(&record);
    state
        .log
        .store()
        .append_audit(AuditEvent {
            actor: principal.actor(),
            action: "agency.settings_changed".into(),
            agency_id: Some(record.id),
            account_id: None,
            subject: Some(record.id.to_string()),
            count: Some(total),
            reason: None,
            details: serde_json::json!({"role": principal.role.as_str(), "before": before, "after": after,
                "would_redact": would_redact.iter().map(|(a, n)| (a.to_string(), *n)).collect::<std::collections::BTreeMap<_, _>>(),
                "confirmed": update.confirm}).to_string(),
        })
        .await?;
    Ok(Json(after))
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}
