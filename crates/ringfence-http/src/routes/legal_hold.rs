use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use ringfence_core::CallId;
use ringfence_core::access::Permission;
use ringfence_core::call::{FieldError, LegalHold};
use ringfence_core::timestamp::Timestamp;
use ringfence_store::AuditEvent;

use super::redaction::checked_note;
use crate::auth::Auth;
use crate::body::JsonBody;
use crate::dto::LegalHoldOutput;
use crate::error::{ApiError, ApiResult, Code};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "case 2026-114 litigation hold"}))]
pub struct LegalHoldInput {
    /// A reference for the record (case number, ticket): letters, digits, spaces and
    /// `_-.:#/`, at most 64; journaled, so no personal data.
    #[schema(schema_with = crate::schemas::hold_reason)]
    pub reason: String,
}

async fn held_call(
    state: &AppState,
    principal: &ringfence_core::access::Principal,
    call: &str,
) -> ApiResult<(
    CallId,
    ringfence_core::access::Tenant,
    ringfence_store::CallRow,
)> {
    let (row, tenant) = state
        .call_for(principal, call, Permission::ManageAccount)
        .await?;
    Ok((row.id, tenant, row))
}

/// Put a call on legal hold: automatic redaction and redaction requests leave it alone until
/// the hold is released. Journaled.
#[utoipa::path(put, path = "/api/v1/calls/{call_id}/legal-hold", tag = "redaction",
    params(("call_id" = String, Path, description = "call id")),
    request_body = LegalHoldInput,
    responses(
        (status = 200, body = LegalHoldOutput),
        (status = 403, extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such call in the token's scope", extensions(("x-error-codes" = json!([Code::NotFound])))),
        (status = 410, description = "the call was redacted: there is nothing left to hold", extensions(("x-error-codes" = json!([Code::Redacted])))),
    ),
    security(("bearer" = [])))]
pub async fn put_hold(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(call): Path<String>,
    JsonBody(input): JsonBody<LegalHoldInput>,
) -> ApiResult<Json<LegalHoldOutput>> {
    let (id, tenant, row) = held_call(&state, &principal, &call).await?;
    if row.redacted_at.is_some() {
        return Err(ApiError::new(
            Code::Redacted,
            "the call was redacted: there is nothing left to hold",
        ));
    }
    let reason = checked_note("reason", Some(input.reason))?.ok_or_else(|| {
        ApiError::fields(vec![FieldError::new(
            "reason",
            "missing_field",
            "a legal hold needs a reason",
        )])
    })?;
    let by = principal.actor();
    let hold = LegalHold {
        at: Timestamp::now(),
        reason: reason.clone(),
        by: by.clone(),
    };
    let event = AuditEvent {
        actor: by,
        action: "call.legal_hold_set".into(),
        agency_id: Some(tenant.agency),
        account_id: Some(tenant.account),
        subject: Some(id.to_string()),
        count: Some(1),
        reason: None,
        details: serde_json::json!({"role": principal.role.as_str(), "note": reason}).to_string(),
    };
    state
        .log
        .store()
        .set_legal_hold(id, Some(hold.clone()), event)
        .await?;
    Ok(Json(LegalHoldOutput {
        at: hold.at.to_rfc3339(),
        reason: hold.reason,
        by: hold.by,
    }))
}

/// Release a call's legal hold. Journaled.
#[utoipa::path(delete, path = "/api/v1/calls/{call_id}/legal-hold", tag = "redaction",
    params(("call_id" = String, Path, description = "call id")),
    responses(
        (status = 204),
        (status = 403, extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such call in the token's scope", extensions(("x-error-codes" = json!([Code::NotFound])))),
    ),
    security(("bearer" = [])))]
pub async fn delete_hold(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(call): Path<String>,
) -> ApiResult<StatusCode> {
    let (id, tenant, row) = held_call(&state, &principal, &call).await?;
    if row.legal_hold.is_none() {
        return Ok(StatusCode::NO_CONTENT);
    }
    let event = AuditEvent {
        actor: principal.actor(),
        action: "call.legal_hold_released".into(),
        agency_id: Some(tenant.agency),
        account_id: Some(tenant.account),
        subject: Some(id.to_string()),
        count: Some(1),
        reason: None,
        details: serde_json::json!({"role": principal.role.as_str()}).to_string(),
    };
    state.log.store().set_legal_hold(id, None, event).await?;
    Ok(StatusCode::NO_CONTENT)
}
