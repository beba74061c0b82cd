use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use ringfence_core::AgencyId;
use ringfence_core::access::Permission;
use ringfence_core::call::FieldError;
use ringfence_store::{AgencyRecord, AuditEvent};

use super::path_id;
use crate::auth::Auth;
use crate::body::JsonBody;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
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
pub struct AgencySettingsUpdate {
    pub redaction_enabled: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 3650)]
    pub max_retention_days: Option<Option<u32>>,
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
    responses((status = 200, body = AgencySettings), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
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
#[utoipa::path(put, path = "/api/v1/agencies/{agency_id}/settings", tag = "agencies",
    params(("agency_id" = String, Path, description = "agency id")),
    request_body = AgencySettingsUpdate,
    responses((status = 200, body = AgencySettings), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
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
            count: None,
            reason: None,
            details: serde_json::json!({"role": principal.role.as_str(), "before": before, "after": after}).to_string(),
        })
        .await?;
    Ok(Json(after))
}
