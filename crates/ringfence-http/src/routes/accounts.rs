use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use ringfence_core::access::Permission;
use ringfence_core::call::FieldError;
use ringfence_core::collection::{CollectionSettings, IpPolicy, RecordingMode};
use ringfence_core::retention::{PolicyError, RetentionPolicy, RetentionScope};
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, DataCategory};
use ringfence_store::{AccountRecord, AuditEvent};

use super::{check_account, path_id};
use crate::auth::Auth;
use crate::body::JsonBody;
use crate::error::{ApiError, ApiResult, Code};
use crate::state::AppState;

/// How many calls automatic redaction would handle right now.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionPreview {
    /// Calls that would be redacted whole.
    pub calls: u64,
    /// Calls that would lose a category, per category.
    pub categories: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AutoRedact {
    /// Days after which calls are redacted whole; null is off.
    pub after_days: Option<u32>,
    /// `everyone`, or `gdpr`: only callers in GDPR scope (unknown scope counts as in scope).
    pub scope: String,
    /// Earlier removal of single categories, in days.
    pub categories: BTreeMap<String, u32>,
    /// What applies after the agency's maximum.
    pub effective_after_days: Option<u32>,
    pub agency_max_days: Option<u32>,
    /// Dry run of the policy at this moment.
    pub preview: RetentionPreview,
}

/// What the account collects. Data a setting excludes is dropped at ingest, never written,
/// and the ingest answer lists it in `dropped`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Collection {
    /// Caller-ID name (CNAM) lookup: keep `caller_name`. Default false.
    pub caller_name: bool,
    /// Keep the caller's city, region, postal code and country. Default false.
    pub caller_location: bool,
    /// Recording of callers in GDPR scope (and of unknown scope): off, announce or opt_in. Default opt_in.
    pub recording_gdpr: String,
    /// Recording of everyone else: off, announce or opt_in. Default announce.
    pub recording_other: String,
    /// Keep transcripts. Default false.
    pub transcription: bool,
    /// drop, truncate (IPv4 /24, IPv6 /48) or full. Default truncate.
    pub visitor_ip: String,
    /// Keep user agent, referrer, landing URL, click ids and visitor id. Default true.
    pub visitor_details: bool,
}

impl From<CollectionSettings> for Collection {
    fn from(c: CollectionSettings) -> Self {
        Collection {
            caller_name: c.caller_name,
            caller_location: c.caller_location,
            recording_gdpr: c.recording_gdpr.as_str().to_owned(),
            recording_other: c.recording_other.as_str().to_owned(),
            transcription: c.transcription,
            visitor_ip: c.visitor_ip.as_str().to_owned(),
            visitor_details: c.visitor_details,
        }
    }
}

/// Any subset of the collection settings.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectionUpdate {
    pub caller_name: Option<bool>,
    pub caller_location: Option<bool>,
    #[schema(schema_with = crate::schemas::recording_mode)]
    pub recording_gdpr: Option<String>,
    #[schema(schema_with = crate::schemas::recording_mode)]
    pub recording_other: Option<String>,
    pub transcription: Option<bool>,
    #[schema(schema_with = crate::schemas::visitor_ip)]
    pub visitor_ip: Option<String>,
    pub visitor_details: Option<bool>,
}

impl CollectionUpdate {
    fn apply(self, mut c: CollectionSettings) -> Result<CollectionSettings, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mode = |name: &str, v: Option<String>, errors: &mut Vec<FieldError>| {
            v.and_then(|v| {
                let parsed = RecordingMode::parse(&v);
                if parsed.is_none() {
                    errors.push(FieldError::new(
                        format!("collection.{name}"),
                        "invalid_field",
                        "must be off, announce or opt_in",
                    ));
                }
                parsed
            })
        };
        if let Some(m) = mode("recording_gdpr", self.recording_gdpr, &mut errors) {
            c.recording_gdpr = m;
        }
        if let Some(m) = mode("recording_other", self.recording_other, &mut errors) {
            c.recording_other = m;
        }
        if let Some(v) = self.visitor_ip {
            match IpPolicy::parse(&v) {
                Some(p) => c.visitor_ip = p,
                None => errors.push(FieldError::new(
                    "collection.visitor_ip",
                    "invalid_field",
                    "must be drop, truncate or full",
                )),
            }
        }
        c.caller_name = self.caller_name.unwrap_or(c.caller_name);
        c.caller_location = self.caller_location.unwrap_or(c.caller_location);
        c.transcription = self.transcription.unwrap_or(c.transcription);
        c.visitor_details = self.visitor_details.unwrap_or(c.visitor_details);
        if errors.is_empty() {
            Ok(c)
        } else {
            Err(errors)
        }
    }
}

fn describe_collection(c: &CollectionSettings) -> serde_json::Value {
    serde_json::to_value(Collection::from(*c)).unwrap_or_default()
}

/// A write-only secret: only whether it is set is ever shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretState {
    pub set: bool,
}

/// The telephony provider's credentials.
#[derive(Debug, Serialize, ToSchema)]
pub struct Telephony {
    /// Signs Twilio's webhooks (`X-Twilio-Signature`); stored encrypted, never shown.
    pub twilio_auth_token: SecretState,
    /// After downloading a recording, ask Twilio to delete its copy. Default false.
    pub delete_provider_recordings: bool,
    /// The account's own Twilio Account SID (`AC` + 32 hex digits; not a secret). Recordings
    /// are downloaded only for callbacks naming it; unset, none is downloaded.
    pub twilio_account_sid: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TelephonyUpdate {
    /// The auth token; null removes it (webhooks are then refused).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(schema_with = crate::schemas::twilio_auth_token)]
    pub twilio_auth_token: Option<Option<String>>,
    pub delete_provider_recordings: Option<bool>,
    /// `AC` followed by 32 hex digits; null removes it (recordings are then not downloaded).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(schema_with = crate::schemas::twilio_account_sid)]
    pub twilio_account_sid: Option<Option<String>>,
}

/// Whether `sid` is a Twilio Account SID: `AC` followed by 32 hex digits.
pub fn is_twilio_account_sid(sid: &str) -> bool {
    sid.len() == 34 && sid.starts_with("AC") && sid[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The account's settings document.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountSettings {
    pub auto_redact: AutoRedact,
    pub collection: Collection,
    pub telephony: Telephony,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoRedactUpdate {
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 3650)]
    pub after_days: Option<Option<u32>>,
    #[schema(schema_with = crate::schemas::auto_redact_scope)]
    pub scope: Option<String>,
    /// Replaces the per-category schedule (days, 1 to 3650, per personal data category);
    /// `{}` removes it.
    #[schema(schema_with = crate::schemas::category_days)]
    pub categories: Option<BTreeMap<String, u32>>,
}

/// Any subset of the settings document.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"auto_redact": {"after_days": 90, "scope": "gdpr", "categories": {"recording": 30, "visitor": 1}}, "collection": {"caller_name": false, "recording_gdpr": "opt_in", "recording_other": "announce", "visitor_ip": "truncate"}, "dry_run": true}))]
pub struct AccountSettingsUpdate {
    #[serde(
        default,
        deserialize_with = "crate::body::objects_only::optional_object"
    )]
    pub auto_redact: Option<AutoRedactUpdate>,
    #[serde(
        default,
        deserialize_with = "crate::body::objects_only::optional_object"
    )]
    pub collection: Option<CollectionUpdate>,
    #[serde(
        default,
        deserialize_with = "crate::body::objects_only::optional_object"
    )]
    pub telephony: Option<TelephonyUpdate>,
    /// Required when the change would redact more calls at once than the safety threshold.
    #[serde(default)]
    pub confirm: bool,
    /// Check the change and answer the document it would give (its `preview` is the dry
    /// run of the new policy) without saving anything.
    #[serde(default)]
    pub dry_run: bool,
}

/// Tells an absent field (`None`: leave as is) from an explicit `null` (`Some(None)`: clear).
fn double_option<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

async fn account_and_max(
    state: &AppState,
    account: AccountId,
) -> ApiResult<(AccountRecord, Option<u32>)> {
    let record = state
        .log
        .store()
        .account(account)
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?;
    let agency = state
        .log
        .store()
        .agency(record.agency_id)
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?;
    Ok((record, agency.max_retention_days))
}

async fn document(
    state: &AppState,
    record: &AccountRecord,
    agency_max: Option<u32>,
) -> ApiResult<AccountSettings> {
    let preview = retention_preview(state, record, agency_max).await?;
    let p = &record.retention;
    Ok(AccountSettings {
        telephony: Telephony {
            twilio_auth_token: SecretState {
                set: record.twilio_auth_token.is_some(),
            },
            delete_provider_recordings: record.twilio_delete_recordings,
            twilio_account_sid: record.twilio_account_sid.clone(),
        },
        collection: record.collection.into(),
        auto_redact: AutoRedact {
            after_days: p.after_days,
            scope: p.scope.as_str().to_owned(),
            categories: p
                .categories
                .iter()
                .map(|(c, d)| (c.as_str().to_owned(), *d))
                .collect(),
            effective_after_days: p.effective_after_days(agency_max),
            agency_max_days: agency_max,
            preview,
        },
    })
}

/// The sweep's own dry run, in the settings document's shape.
async fn retention_preview(
    state: &AppState,
    record: &AccountRecord,
    agency_max: Option<u32>,
) -> ApiResult<RetentionPreview> {
    let due = ringfence_jobs::retention::preview(&state.log, record, agency_max, Timestamp::now())
        .await?;
    Ok(RetentionPreview {
        calls: due.calls,
        categories: due
            .categories
            .iter()
            .map(|(c, n)| (c.as_str().to_owned(), *n))
            .collect(),
    })
}

/// An account's settings, with a dry run of its automatic redaction.
#[utoipa::path(get, path = "/api/v1/accounts/{account_id}/settings", tag = "accounts",
    params(("account_id" = String, Path, description = "account id")),
    responses(
        (status = 200, body = AccountSettings),
        (status = 403, extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such account in the token's scope", extensions(("x-error-codes" = json!([Code::NotFound])))),
    ),
    security(("bearer" = [])))]
pub async fn get_settings(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(account): Path<String>,
) -> ApiResult<Json<AccountSettings>> {
    let account: AccountId = path_id(&account, "account")?;
    let tenant = state.tenant(account).await?;
    check_account(&principal, Permission::ManageAccount, &tenant)?;
    let (record, max) = account_and_max(&state, account).await?;
    Ok(Json(document(&state, &record, max).await?))
}

/// Change an account's settings (any subset); answers the whole document. A change that
/// would redact more calls at once than the safety threshold answers 409
/// `confirmation_required` with the count, unless it carries `"confirm": true`.
#[utoipa::path(put, path = "/api/v1/accounts/{account_id}/settings", tag = "accounts",
    params(("account_id" = String, Path, description = "account id")),
    request_body = AccountSettingsUpdate,
    responses(
        (status = 200, body = AccountSettings),
        (status = 403, extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such account in the token's scope", extensions(("x-error-codes" = json!([Code::NotFound])))),
        (status = 409, description = "the change would redact more calls at once than the safety threshold", extensions(("x-error-codes" = json!([Code::ConfirmationRequired])))),
        (status = 422, extensions(("x-error-codes" = json!([Code::ExceedsAgencyMaximum])))),
    ),
    security(("bearer" = [])))]
pub async fn put_settings(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(account): Path<String>,
    JsonBody(update): JsonBody<AccountSettingsUpdate>,
) -> ApiResult<Json<AccountSettings>> {
    let account: AccountId = path_id(&account, "account")?;
    let tenant = state.tenant(account).await?;
    check_account(&principal, Permission::ManageAccount, &tenant)?;
    let (mut record, max) = account_and_max(&state, account).await?;
    let before = record.retention.clone();
    let collection_before = record.collection;
    let mut telephony_changed = false;
    if let Some(telephony) = &update.telephony
        && let Some(delete) = telephony.delete_provider_recordings
        && delete != record.twilio_delete_recordings
    {
        record.twilio_delete_recordings = delete;
        telephony_changed = true;
    }
    if let Some(telephony) = &update.telephony
        && let Some(sid) = &telephony.twilio_account_sid
    {
        let sid = match sid.as_deref().map(str::trim) {
            None => None,
            Some(text) if is_twilio_account_sid(text) => Some(text.to_owned()),
            Some(_) => {
                return Err(ApiError::fields(vec![FieldError::new(
                    "telephony.twilio_account_sid",
                    "invalid_field",
                    "must be AC followed by 32 hex digits",
                )]));
            }
        };
        if sid != record.twilio_account_sid {
            record.twilio_account_sid = sid;
            telephony_changed = true;
        }
    }
    if let Some(telephony) = update.telephony
        && let Some(token) = telephony.twilio_auth_token
    {
        record.twilio_auth_token = match token {
            None => None,
            Some(text) => {
                let text = text.trim();
                if text.is_empty() || text.len() > 256 || text.chars().any(|c| c.is_control()) {
                    return Err(ApiError::fields(vec![FieldError::new(
                        "telephony.twilio_auth_token",
                        "invalid_field",
                        "must be 1 to 256 printable characters",
                    )]));
                }
                Some(state.log.seal_twilio_auth_token(account, text).await?)
            }
        };
        telephony_changed = true;
    }
    if let Some(update) = update.collection {
        record.collection = update.apply(record.collection).map_err(ApiError::fields)?;
    }
    if let Some(auto) = update.auto_redact {
        let mut policy = record.retention.clone();
        if let Some(days) = auto.after_days {
            policy.after_days = days;
        }
        if let Some(scope) = auto.scope {
            policy.scope = RetentionScope::parse(&scope).ok_or_else(|| {
                ApiError::fields(vec![FieldError::new(
                    "auto_redact.scope",
                    "invalid_field",
                    "must be everyone or gdpr",
                )])
            })?;
        }
        if let Some(categories) = auto.categories {
            let mut parsed = BTreeMap::new();
            for (name, days) in categories {
                let category = DataCategory::parse(&name)
                    .filter(|c| c.is_personal())
                    .ok_or_else(|| ApiError::fields(vec![FieldError::new(format!("auto_redact.categories.{name}"), "invalid_field", "not a personal data category (caller_identity, caller_location, recording, transcript, visitor, interaction_content)")]))?;
                parsed.insert(category, days);
            }
            policy.categories = parsed;
        }
        policy.validate(max).map_err(|e| {
            let message = e.to_string();
            match e {
                PolicyError::ExceedsAgencyMaximum { field, .. } => {
                    let mut err = ApiError::fields(vec![FieldError::new(
                        field,
                        "exceeds_agency_maximum",
                        message,
                    )]);
                    err.code = Code::ExceedsAgencyMaximum;
                    err
                }
                PolicyError::DaysOutOfRange { field } => {
                    ApiError::fields(vec![FieldError::new(field, "invalid_field", message)])
                }
                PolicyError::CallFacts(c) => ApiError::fields(vec![FieldError::new(
                    format!("auto_redact.categories.{c}"),
                    "invalid_field",
                    message,
                )]),
            }
        })?;
        record.retention = policy;
    }
    if update.dry_run {
        return Ok(Json(document(&state, &record, max).await?));
    }
    if record.retention != before {
        let now_due = retention_preview(
            &state,
            &AccountRecord {
                retention: before.clone(),
                ..record.clone()
            },
            max,
        )
        .await?;
        let then_due = retention_preview(&state, &record, max).await?;
        let total = |p: &RetentionPreview| p.calls + p.categories.values().sum::<u64>();
        let newly = total(&then_due).saturating_sub(total(&now_due));
        if newly > state.limits.confirm_threshold && !update.confirm {
            let mut err = ApiError::new(
                Code::ConfirmationRequired,
                format!(
                    "this change would redact {newly} calls at once (threshold {}); send it again with \"confirm\": true",
                    state.limits.confirm_threshold
                ),
            );
            err.details.push(crate::error::ErrorDetail {
                field: "confirm".into(),
                code: "confirmation_required".into(),
                message: format!("{newly}"),
            });
            return Err(err);
        }
        state.log.store().update_account(record.clone()).await?;
        let describe = |p: &RetentionPolicy| serde_json::json!({"after_days": p.after_days, "scope": p.scope.as_str(), "categories": p.categories_text()});
        state
            .log
            .store()
            .append_audit(AuditEvent {
                actor: principal.actor(),
                action: "account.retention_changed".into(),
                agency_id: Some(tenant.agency),
                account_id: Some(account),
                subject: Some(account.to_string()),
                count: Some(newly),
                reason: None,
                details: serde_json::json!({"role": principal.role.as_str(), "before": describe(&before), "after": describe(&record.retention), "confirmed": update.confirm}).to_string(),
            })
            .await?;
    }
    if telephony_changed {
        state.log.store().update_account(record.clone()).await?;
        state
            .log
            .store()
            .append_audit(AuditEvent {
                actor: principal.actor(),
                action: "account.telephony_changed".into(),
                agency_id: Some(tenant.agency),
                account_id: Some(account),
                subject: Some(account.to_string()),
                details: serde_json::json!({"role": principal.role.as_str(), "twilio_auth_token_set": record.twilio_auth_token.is_some(), "delete_provider_recordings": record.twilio_delete_recordings, "twilio_account_sid": record.twilio_account_sid}).to_string(),
                ..Default::default()
            })
            .await?;
        state.log.anchor_journal().await?;
    }
    if record.collection != collection_before {
        // Retention above already stored the record when it changed too.
        state.log.store().update_account(record.clone()).await?;
        state.collection_changed(account);
        state
            .log
            .store()
            .append_audit(AuditEvent {
                actor: principal.actor(),
                action: "account.collection_changed".into(),
                agency_id: Some(tenant.agency),
                account_id: Some(account),
                subject: Some(account.to_string()),
                count: None,
                reason: None,
                details: serde_json::json!({"role": principal.role.as_str(), "before": describe_collection(&collection_before), "after": describe_collection(&record.collection)}).to_string(),
            })
            .await?;
        state.log.anchor_journal().await?;
    }
    Ok(Json(document(&state, &record, max).await?))
}
