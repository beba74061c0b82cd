use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use ringfence_core::AccountId;
use ringfence_core::access::{Permission, Role, Scope, Tenant};
use ringfence_core::call::{FieldError, RedactionReason};
use ringfence_core::phone::parse_e164;
use ringfence_store::{AuditEvent, RedactionReceipt};

use super::{check_account, path_id};
use crate::auth::Auth;
use crate::body::{is_json, parse_json};
use crate::error::{ApiError, ApiResult, Code};
use crate::state::AppState;

/// What a redaction did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Receipt {
    pub redacted_calls: u64,
    pub redacted_sessions: u64,
    /// The calls newly redacted by this request.
    pub call_ids: Vec<String>,
    pub at: String,
    /// The journal entry that records it.
    pub audit_seq: i64,
    /// True when the number was put on the forget list: its later calls arrive redacted.
    pub forgotten: bool,
    /// Calls left untouched because they are on legal hold.
    pub skipped_legal_hold: u64,
}

impl From<RedactionReceipt> for Receipt {
    fn from(r: RedactionReceipt) -> Self {
        Receipt {
            redacted_calls: r.redacted_calls,
            redacted_sessions: r.redacted_sessions,
            call_ids: r.call_ids.iter().map(ToString::to_string).collect(),
            at: r.at.to_rfc3339(),
            audit_seq: r.audit_seq,
            forgotten: r.forgotten,
            skipped_legal_hold: r.skipped_legal_hold,
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "DSR-2026-114"}))]
pub struct RedactCallInput {
    /// A short reference for the journal (a ticket id, "erasure request"): letters, digits,
    /// spaces and `_-.:#/`, at most 64, no long digit runs. It is journaled, so it must not
    /// hold personal data.
    #[schema(schema_with = crate::schemas::note)]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"number": "+442079460123", "forget": false, "scope": "account", "reason": "erasure request DSR-2026-115"}))]
pub struct RedactCallerInput {
    /// The caller's number, E.164.
    #[schema(schema_with = crate::schemas::e164)]
    pub number: String,
    /// Also redact the number's future calls on arrival.
    #[serde(default)]
    pub forget: bool,
    /// `account` (default) or `agency`: every account of the agency (agency admins and admins).
    #[schema(schema_with = crate::schemas::redaction_scope)]
    pub scope: Option<String>,
    #[schema(schema_with = crate::schemas::note)]
    pub reason: Option<String>,
}

/// Checks a journaled note: short, from a small alphabet, and not shaped like a number.
pub(crate) fn checked_note(field: &str, note: Option<String>) -> ApiResult<Option<String>> {
    let Some(note) = note.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    let allowed = note.len() <= 64
        && note
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " _-.:#/".contains(c));
    let mut run = 0;
    let mut longest = 0;
    for c in note.chars() {
        run = if c.is_ascii_digit() { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    if !allowed || longest >= 7 {
        return Err(ApiError::fields(vec![FieldError::new(
            field,
            "invalid_field",
            "a short reference of letters, digits, spaces and _-.:#/ (at most 64, no runs of 7+ digits): it is journaled and must not hold personal data",
        )]));
    }
    Ok(Some(note))
}

/// Redaction is available only where the account's agency enabled it.
async fn check_redaction_enabled(state: &AppState, tenant: &Tenant) -> ApiResult<()> {
    let agency = state
        .log
        .store()
        .agency(tenant.agency)
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?;
    if !agency.redaction_enabled {
        return Err(ApiError::new(
            Code::RedactionDisabled,
            format!(
                "redaction is not enabled for this account's agency; an installation admin or the agency's admin can enable it (PUT /api/v1/agencies/{}/settings with {{\"redaction_enabled\": true}})",
                tenant.agency
            ),
        ));
    }
    Ok(())
}

fn optional_json<T: serde::de::DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    if !is_json(
        headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    ) {
        return Err(ApiError::new(
            Code::UnsupportedMediaType,
            "send the body as JSON with `Content-Type: application/json`",
        ));
    }
    // Optional: no body, `null`, or the object.
    parse_json::<Option<T>>(body).map(Option::unwrap_or_default)
}

/// Redact one call: its personal data, recording and linked visitor session are destroyed
/// (keys first, then ciphertext, then files); its facts and `utm` stay.
#[utoipa::path(post, path = "/api/v1/calls/{call_id}/redact", tag = "redaction",
    params(("call_id" = String, Path, description = "call id")),
    request_body(content = Option<RedactCallInput>, description = "optional: no body, null, or a JSON object",
        example = json!({"reason": "DSR-2026-114"})),
    responses(
        (status = 200, description = "redacted (or already was: counts 0)", body = Receipt),
        (status = 403, extensions(("x-error-codes" = json!([Code::Forbidden, Code::RedactionDisabled])))),
        (status = 404, description = "no such call in the token's scope", extensions(("x-error-codes" = json!([Code::NotFound])))),
        (status = 409, extensions(("x-error-codes" = json!([Code::LegalHold])))),
    ),
    security(("bearer" = [])))]
pub async fn redact_call(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(call): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Receipt>> {
    let (row, tenant) = state
        .call_for(&principal, &call, Permission::Redact)
        .await?;
    let id = row.id;
    check_redaction_enabled(&state, &tenant).await?;
    if let Some(hold) = &row.legal_hold {
        return Err(ApiError::new(
            Code::LegalHold,
            format!(
                "the call is on legal hold ({}); release the hold first (DELETE /api/v1/calls/{id}/legal-hold)",
                hold.reason
            ),
        ));
    }
    let input: RedactCallInput = optional_json(&headers, &body)?;
    let note = checked_note("reason", input.reason)?;
    let audit = AuditEvent {
        actor: principal.actor(),
        action: "call.redacted".into(),
        agency_id: Some(tenant.agency),
        account_id: Some(tenant.account),
        subject: Some(id.to_string()),
        count: None,
        reason: Some(RedactionReason::Manual.as_str().into()),
        details: match note {
            Some(n) => serde_json::json!({"role": principal.role.as_str(), "note": n}).to_string(),
            None => serde_json::json!({"role": principal.role.as_str()}).to_string(),
        },
    };
    let receipt = state
        .log
        .redact_calls(vec![row], RedactionReason::Manual, audit)
        .await?;
    metrics::counter!("ringfence_calls_redacted_total", "reason" => "manual")
        .increment(receipt.redacted_calls);
    Ok(Json(receipt.into()))
}

/// Redact a caller: every call and visitor session of the number in the account (or, with
/// `scope: agency`, in every account of the agency), found through the blind index.
#[utoipa::path(post, path = "/api/v1/accounts/{account_id}/callers/redact", tag = "redaction",
    params(("account_id" = String, Path, description = "account id")),
    request_body = RedactCallerInput,
    responses(
        (status = 200, body = Receipt),
        (status = 403, extensions(("x-error-codes" = json!([Code::Forbidden, Code::RedactionDisabled])))),
        (status = 404, description = "no such account in the token's scope", extensions(("x-error-codes" = json!([Code::NotFound])))),
        (status = 422, extensions(("x-error-codes" = json!([Code::InvalidPhoneNumber])))),
    ),
    security(("bearer" = [])))]
pub async fn redact_caller(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(account): Path<String>,
    crate::body::JsonBody(input): crate::body::JsonBody<RedactCallerInput>,
) -> ApiResult<Json<Receipt>> {
    let account: AccountId = path_id(&account, "account")?;
    let tenant = state.tenant(account).await?;
    check_account(&principal, Permission::Redact, &tenant)?;
    check_redaction_enabled(&state, &tenant).await?;
    let number = parse_e164(&input.number).map_err(|e| {
        ApiError::fields(vec![FieldError::new(
            "number",
            "invalid_phone_number",
            format!("not a valid E.164 number ({e})"),
        )])
    })?;
    let note = checked_note("reason", input.reason)?;
    let agency_wide = match input.scope.as_deref() {
        None | Some("account") => false,
        Some("agency") => true,
        Some(_) => {
            return Err(ApiError::fields(vec![FieldError::new(
                "scope",
                "invalid_field",
                "must be account or agency",
            )]));
        }
    };
    let accounts: Vec<AccountId> = if agency_wide {
        let allowed = principal.role == Role::Admin
            || matches!(principal.scope, Scope::Agency(a) if a == tenant.agency && principal.role == Role::AgencyAdmin);
        if !allowed {
            return Err(ApiError::new(
                Code::Forbidden,
                "only an admin or the agency's admin may redact a caller across the agency",
            ));
        }
        state
            .log
            .store()
            .list_accounts(Some(tenant.agency))
            .await?
            .into_iter()
            .map(|a| a.id)
            .collect()
    } else {
        vec![account]
    };
    let mut details = serde_json::json!({"role": principal.role.as_str(), "scope": if agency_wide { "agency" } else { "account" }, "forget_requested": input.forget, "accounts": accounts.len()});
    if let Some(n) = note {
        details["note"] = serde_json::Value::String(n);
    }
    let audit = AuditEvent {
        actor: principal.actor(),
        action: "caller.redacted".into(),
        agency_id: Some(tenant.agency),
        account_id: Some(tenant.account),
        // Never the number: the journal names the caller by nothing at all.
        subject: None,
        count: None,
        reason: Some(RedactionReason::Caller.as_str().into()),
        details: details.to_string(),
    };
    let receipt = state
        .log
        .redact_caller(&accounts, &number, input.forget, audit)
        .await?;
    metrics::counter!("ringfence_calls_redacted_total", "reason" => "caller")
        .increment(receipt.redacted_calls);
    Ok(Json(receipt.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_notes_are_short_references_without_personal_data() {
        for ok in [
            "DSR-2026-114",
            "erasure request",
            "ticket #4411",
            "ref: ABC/12",
        ] {
            assert_eq!(
                checked_note("reason", Some(ok.into())).unwrap(),
                Some(ok.to_owned()),
                "{ok}"
            );
        }
        for bad in [
            "+442079460123",
            "caller 02079460123 asked",
            "erika@example.org",
            "x".repeat(65).as_str(),
            "naïve",
        ] {
            assert!(checked_note("reason", Some(bad.into())).is_err(), "{bad}");
        }
        assert_eq!(checked_note("reason", Some("  ".into())).unwrap(), None);
    }
}
