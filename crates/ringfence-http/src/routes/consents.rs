//! The consent ledger and the notices its events refer to.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use ringfence_core::access::Permission;
use ringfence_core::call::{FieldError, checked_text, limits};
use ringfence_core::consent::{ConsentState, consentable};
use ringfence_core::phone::parse_e164;
use ringfence_core::{AccountId, CallId, DataCategory, Personal};
use ringfence_store::{AuditEvent, Consent, ConsentSubject, NewConsent, NoticeRow};

use super::redaction::Receipt;
use super::{check_account, path_id};
use crate::auth::Auth;
use crate::body::JsonBody;
use crate::dto::{checked_consent_parts, consent_category};
use crate::error::{ApiError, ApiResult, Code};
use crate::state::AppState;

const MAX_NOTICE_BYTES: usize = 16 * 1024;

/// Who a consent is about: a caller by number, or a web visitor by the site's visitor id.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubjectInput {
    /// E.164 (give this or `visitor_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schemas::caller_number)]
    pub caller_number: Option<String>,
    /// The visitor id, for a withheld number (give this or `caller_number`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schemas::visitor_id)]
    pub visitor_id: Option<String>,
}

/// A consent event.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"subject": {"caller_number": "+442079460123"}, "category": "recording", "status": "granted", "method": "ivr_keypress"}))]
pub struct ConsentInput {
    #[serde(deserialize_with = "crate::body::objects_only::object")]
    #[schema(schema_with = crate::schemas::consent_subject)]
    pub subject: SubjectInput,
    /// caller_identity, caller_location, recording, transcript, visitor, interaction_content
    #[schema(schema_with = crate::schemas::consent_category)]
    pub category: String,
    /// granted or withdrawn
    #[schema(schema_with = crate::schemas::consent_status)]
    pub status: String,
    /// The notice shown (optional: without it the record is weaker evidence); it must exist.
    #[schema(minimum = 1)]
    pub notice_version: Option<u32>,
    /// ivr_keypress, verbal, web_form or api
    #[schema(schema_with = crate::schemas::consent_method)]
    pub method: String,
    /// The call the choice was made in.
    pub call_id: Option<String>,
}

/// A consent event as the ledger keeps it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentOutput {
    pub id: String,
    /// Ledger order within the installation.
    pub seq: i64,
    /// Null for tokens without access to personal data, and while the subject is being redacted.
    pub subject: Option<SubjectInput>,
    /// caller or visitor
    pub subject_kind: String,
    pub category: String,
    pub status: String,
    pub notice_version: Option<u32>,
    pub method: String,
    pub at: String,
    pub call_id: Option<String>,
    pub recorded_by: String,
}

/// The answer to a consent event.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentRecordedOutput {
    #[serde(flatten)]
    pub consent: ConsentOutput,
    /// The journal entry recording the event.
    pub audit_seq: i64,
    /// For a withdrawal: what was removed of the category's data (null when there was none).
    pub removal: Option<Receipt>,
    /// Calls whose data stays because they are on legal hold.
    pub skipped_legal_hold: u64,
}

/// A page of the ledger.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentList {
    pub items: Vec<ConsentOutput>,
    pub next_cursor: Option<String>,
    /// With a subject: the current state per category (the last event of each), derived
    /// from the whole ledger of the subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<BTreeMap<String, String>>,
}

pub(crate) fn output(c: &Consent, personal_data: bool) -> ConsentOutput {
    let subject = c
        .subject
        .as_ref()
        .filter(|_| personal_data)
        .map(|s| match s {
            ConsentSubject::Caller(n) => SubjectInput {
                caller_number: Some(n.as_str().to_owned()),
                visitor_id: None,
            },
            ConsentSubject::Visitor(v) => SubjectInput {
                caller_number: None,
                visitor_id: Some(v.expose().clone()),
            },
        });
    let r = &c.row;
    ConsentOutput {
        id: r.id.clone(),
        seq: r.seq,
        subject,
        subject_kind: r.subject_kind.as_str().to_owned(),
        category: r.category.as_str().to_owned(),
        status: r.status.as_str().to_owned(),
        notice_version: r.notice_version,
        method: r.method.as_str().to_owned(),
        at: r.at.to_rfc3339(),
        call_id: r.call_id.map(|c| c.to_string()),
        recorded_by: r.recorded_by.clone(),
    }
}

fn subject_of(input: SubjectInput, field: &str) -> ApiResult<ConsentSubject> {
    match (input.caller_number, input.visitor_id) {
        (Some(number), None) => parse_e164(&number)
            .map(ConsentSubject::Caller)
            .map_err(|e| {
                ApiError::fields(vec![FieldError::new(
                    format!("{field}.caller_number"),
                    "invalid_phone_number",
                    format!("not a valid E.164 number ({e})"),
                )])
            }),
        (None, Some(visitor)) => {
            match checked_text(
                &format!("{field}.visitor_id"),
                Some(visitor),
                limits::EXTERNAL_ID,
                false,
            ) {
                Ok(Some(v)) => Ok(ConsentSubject::Visitor(Personal::new(v))),
                Ok(None) => Err(ApiError::fields(vec![FieldError::new(
                    format!("{field}.visitor_id"),
                    "invalid_field",
                    "empty",
                )])),
                Err(e) => Err(ApiError::fields(vec![e])),
            }
        }
        _ => Err(ApiError::fields(vec![FieldError::new(
            field,
            "invalid_field",
            "give exactly one of caller_number and visitor_id",
        )])),
    }
}

/// Record a consent event (append-only). A withdrawal deletes that category's data of the
/// subject everywhere in the account (recordings destroyed, fields cleared), in the same
/// crash-safe order as a redaction, and journals it with reason `consent_withdrawn`.
#[utoipa::path(post, path = "/api/v1/accounts/{account_id}/consents", tag = "consent",
    params(("account_id" = String, Path, description = "account id")),
    request_body = ConsentInput,
    responses(
        (status = 201, body = ConsentRecordedOutput),
        (status = 403, extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such account in the token's scope, or no such call", extensions(("x-error-codes" = json!([Code::NotFound])))),
        (status = 422, extensions(("x-error-codes" = json!([Code::UnknownCategory, Code::UnknownNoticeVersion, Code::InvalidPhoneNumber, Code::TooLong])))),
    ),
    security(("bearer" = [])))]
pub async fn record(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(account): Path<String>,
    JsonBody(input): JsonBody<ConsentInput>,
) -> ApiResult<(StatusCode, Json<ConsentRecordedOutput>)> {
    let account: AccountId = path_id(&account, "account")?;
    let tenant = state.tenant(account).await?;
    check_account(&principal, Permission::Ingest, &tenant)?;
    let parts = checked_consent_parts(
        "",
        &input.category,
        &input.status,
        &input.method,
        input.notice_version,
    )
    .map_err(ApiError::fields)?;
    let subject = subject_of(input.subject, "subject")?;
    let call_id = match input.call_id.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            text.parse::<CallId>()
                .map_err(|_| ApiError::not_found("call"))?,
        ),
    };
    let outcome = state
        .log
        .record_consent(
            account,
            Some(tenant.agency),
            NewConsent {
                subject: subject.clone(),
                category: parts.category,
                status: parts.status,
                notice_version: parts.notice_version,
                method: parts.method,
                call_id,
            },
            principal.actor(),
        )
        .await?;
    let consent = Consent {
        row: outcome.consent,
        subject: Some(subject),
    };
    Ok((
        StatusCode::CREATED,
        Json(ConsentRecordedOutput {
            consent: output(&consent, principal.personal_data),
            audit_seq: outcome.audit_seq,
            removal: outcome.removal.map(Receipt::from),
            skipped_legal_hold: outcome.skipped_legal_hold,
        }),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// A caller number (starting with `+`) or a visitor id.
    subject: Option<String>,
    caller_number: Option<String>,
    visitor_id: Option<String>,
    cursor: Option<String>,
    /// Text, checked by the lists' one rule (`page_limit`).
    limit: Option<String>,
}

/// List consent events in ledger order, optionally of one subject (`?subject=` a caller
/// number or a visitor id; or `?caller_number=` / `?visitor_id=`), with its current state.
#[utoipa::path(get, path = "/api/v1/accounts/{account_id}/consents", tag = "consent",
    params(("account_id" = String, Path, description = "account id"),
        ("subject" = Option<String>, Query, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$", max_length = 128, description = "a caller number (E.164) or a visitor id; `caller_number=` or `visitor_id=` (one of them, without `subject`) are accepted too"),
        ("cursor" = Option<String>, Query, pattern = "^(-?[0-9]{1,18})?$", description = "next_cursor of the previous page"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "1 to 500, default 100")),
    responses(
        (status = 200, body = ConsentList),
        (status = 400, description = "a query parameter breaks its rule (a subject is answered as 400 with the field code it breaks)", extensions(("x-error-codes" = json!([Code::InvalidQuery, Code::InvalidCursor, Code::InvalidPhoneNumber, Code::InvalidField, Code::TooLong])))),
        (status = 403, description = "the role may not read the ledger, or looks a subject up without access to personal data", extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such account in the token's scope", extensions(("x-error-codes" = json!([Code::NotFound])))),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(account): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<ConsentList>> {
    let account: AccountId = path_id(&account, "account")?;
    let tenant = state.tenant(account).await?;
    check_account(&principal, Permission::ReadCalls, &tenant)?;
    let q: ListQuery = serde_urlencoded::from_str(query.as_deref().unwrap_or("")).map_err(|_| {
        ApiError::new(
            crate::error::Code::InvalidQuery,
            "unknown or malformed query parameter (subject, caller_number, visitor_id, cursor, limit)",
        )
    })?;
    let subject_input = match (q.subject, q.caller_number, q.visitor_id) {
        (None, None, None) => None,
        (Some(s), None, None) if s.trim_start().starts_with('+') => Some(SubjectInput {
            caller_number: Some(s),
            visitor_id: None,
        }),
        (Some(s), None, None) => Some(SubjectInput {
            caller_number: None,
            visitor_id: Some(s),
        }),
        (None, number, visitor) => Some(SubjectInput {
            caller_number: number,
            visitor_id: visitor,
        }),
        _ => {
            return Err(ApiError::new(
                crate::error::Code::InvalidQuery,
                "give subject, or one of caller_number and visitor_id",
            ));
        }
    };
    let subject = match subject_input {
        Some(s) => Some(subject_of(s, "subject").map_err(ApiError::with_status_400)?),
        None => None,
    };
    // Looking a subject up by number is a personal-data query.
    if subject.is_some() && !principal.personal_data {
        return Err(ApiError::new(
            crate::error::Code::Forbidden,
            "this token may not look up consent by subject",
        ));
    }
    let after: Option<i64> =
        match q.cursor.as_deref() {
            None | Some("") => None,
            Some(c) => Some(c.parse().map_err(|_| {
                ApiError::new(crate::error::Code::InvalidCursor, "malformed cursor")
            })?),
        };
    let limit = super::page_limit(q.limit.as_deref(), 100)?;
    let mut items = state
        .log
        .consents(account, subject.as_ref(), after, limit + 1)
        .await?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = if more {
        items.last().map(|c| c.row.seq.to_string())
    } else {
        None
    };
    let state_map = match &subject {
        Some(s) => {
            // The state is derived from every event of the subject, not only this page.
            let all = state.log.consents(account, Some(s), None, u32::MAX).await?;
            let derived =
                ConsentState::from_events(all.iter().map(|c| (c.row.category, c.row.status)));
            Some(
                derived
                    .entries()
                    .into_iter()
                    .map(|(c, s)| (c.as_str().to_owned(), s.as_str().to_owned()))
                    .collect(),
            )
        }
        None => None,
    };
    Ok(Json(ConsentList {
        items: items
            .iter()
            .map(|c| output(c, principal.personal_data))
            .collect(),
        next_cursor,
        state: state_map,
    }))
}

/// A notice version.
#[derive(Debug, Serialize, ToSchema)]
pub struct NoticeOutput {
    pub category: String,
    pub version: u32,
    pub text: String,
    pub created_at: String,
    /// Once a consent event refers to it the version is immutable.
    pub used: bool,
    pub used_at: Option<String>,
}

impl From<NoticeRow> for NoticeOutput {
    fn from(n: NoticeRow) -> Self {
        NoticeOutput {
            category: n.category.as_str().to_owned(),
            version: n.version,
            text: n.text,
            created_at: n.created_at.to_rfc3339(),
            used: n.used_at.is_some(),
            used_at: n.used_at.map(|t| t.to_rfc3339()),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"category": "recording", "text": "Calls are recorded for training and quality. Press 1 to agree, 2 to continue without recording."}))]
pub struct NoticeInput {
    #[schema(schema_with = crate::schemas::consent_category)]
    pub category: String,
    /// The text of the announcement or web notice (no personal data): 1 to 16 KiB, not
    /// blank, no control characters but tab and line breaks.
    #[schema(schema_with = crate::schemas::notice_text)]
    pub text: String,
}

/// A notice's category, in its path: a category consent can be asked for.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum NoticeCategory {
    CallerIdentity,
    CallerLocation,
    Recording,
    Transcript,
    Visitor,
    InteractionContent,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"text": "Calls are recorded for training and quality for up to 30 days. Press 1 to agree, 2 to continue without recording."}))]
pub struct NoticeUpdate {
    #[schema(schema_with = crate::schemas::notice_text)]
    pub text: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NoticeList {
    pub items: Vec<NoticeOutput>,
    pub next_cursor: Option<String>,
}

fn category_of(name: &str, field: &str) -> ApiResult<DataCategory> {
    consent_category(name, field).map_err(|e| ApiError::fields(vec![e]))
}

fn notice_text(text: String) -> ApiResult<String> {
    match checked_text("text", Some(text), MAX_NOTICE_BYTES, true) {
        Ok(Some(t)) => Ok(t),
        Ok(None) => Err(ApiError::fields(vec![FieldError::new(
            "text",
            "missing_field",
            "the notice text is empty",
        )])),
        Err(e) => Err(ApiError::fields(vec![e])),
    }
}

/// Add a notice version for a category (versions count up from 1 per account and category).
#[utoipa::path(post, path = "/api/v1/accounts/{account_id}/notices", tag = "consent",
    params(("account_id" = String, Path, description = "account id")),
    request_body = NoticeInput,
    responses(
        (status = 201, body = NoticeOutput),
        (status = 403, extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such account in the token's scope", extensions(("x-error-codes" = json!([Code::NotFound])))),
        (status = 422, extensions(("x-error-codes" = json!([Code::UnknownCategory, Code::TooLong])))),
    ),
    security(("bearer" = [])))]
pub async fn create_notice(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(account): Path<String>,
    JsonBody(input): JsonBody<NoticeInput>,
) -> ApiResult<(StatusCode, Json<NoticeOutput>)> {
    let account: AccountId = path_id(&account, "account")?;
    let tenant = state.tenant(account).await?;
    check_account(&principal, Permission::ManageAccount, &tenant)?;
    let category = category_of(&input.category, "category")?;
    let text = notice_text(input.text)?;
    let notice = state
        .log
        .store()
        .create_notice(
            account,
            category,
            text,
            AuditEvent {
                actor: principal.actor(),
                action: "notice.created".into(),
                agency_id: Some(tenant.agency),
                account_id: Some(account),
                subject: Some(account.to_string()),
                ..Default::default()
            },
        )
        .await?;
    state.log.anchor_journal().await?;
    Ok((StatusCode::CREATED, Json(notice.into())))
}

/// Change the text of a notice version that no consent refers to yet (409 `notice_in_use`
/// otherwise: create a new version).
#[utoipa::path(put, path = "/api/v1/accounts/{account_id}/notices/{category}/{version}", tag = "consent",
    params(("account_id" = String, Path, description = "account id"), ("category" = inline(NoticeCategory), Path), ("version" = u32, Path, minimum = 1)),
    request_body = NoticeUpdate,
    responses(
        (status = 200, body = NoticeOutput),
        (status = 403, extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such account, category or notice version", extensions(("x-error-codes" = json!([Code::NotFound])))),
        (status = 409, extensions(("x-error-codes" = json!([Code::NoticeInUse])))),
        (status = 422, extensions(("x-error-codes" = json!([Code::TooLong])))),
    ),
    security(("bearer" = [])))]
pub async fn update_notice(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path((account, category, version)): Path<(String, String, String)>,
    JsonBody(input): JsonBody<NoticeUpdate>,
) -> ApiResult<Json<NoticeOutput>> {
    let account: AccountId = path_id(&account, "account")?;
    let tenant = state.tenant(account).await?;
    check_account(&principal, Permission::ManageAccount, &tenant)?;
    let category = DataCategory::parse(&category)
        .filter(|c| consentable(*c))
        .ok_or_else(|| ApiError::not_found("notice"))?;
    let version: u32 = version.parse().map_err(|_| ApiError::not_found("notice"))?;
    let text = notice_text(input.text)?;
    let notice = state
        .log
        .store()
        .update_notice(
            account,
            category,
            version,
            text,
            AuditEvent {
                actor: principal.actor(),
                action: "notice.changed".into(),
                agency_id: Some(tenant.agency),
                account_id: Some(account),
                subject: Some(account.to_string()),
                ..Default::default()
            },
        )
        .await?;
    state.log.anchor_journal().await?;
    Ok(Json(notice.into()))
}

/// The account's notices, by category and version.
#[utoipa::path(get, path = "/api/v1/accounts/{account_id}/notices", tag = "consent",
    params(("account_id" = String, Path, description = "account id")),
    responses(
        (status = 200, body = NoticeList),
        (status = 403, extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such account in the token's scope", extensions(("x-error-codes" = json!([Code::NotFound])))),
    ),
    security(("bearer" = [])))]
pub async fn list_notices(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(account): Path<String>,
) -> ApiResult<Json<NoticeList>> {
    let account: AccountId = path_id(&account, "account")?;
    let tenant = state.tenant(account).await?;
    check_account(&principal, Permission::ReadCalls, &tenant)?;
    let notices = state.log.store().notices(account).await?;
    Ok(Json(NoticeList {
        items: notices.into_iter().map(NoticeOutput::from).collect(),
        next_cursor: None,
    }))
}
