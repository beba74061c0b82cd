//! The one error type at the HTTP edge. Every failure a client can see has a stable `code`
//! and its HTTP status; internal causes are logged by id and never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use ringfence_core::access::Denied;
use ringfence_core::call::FieldError;
use ringfence_store::{LogError, StoreError};

/// The stable error codes, each with its status. Clients match on the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidJson,
    InvalidQuery,
    InvalidCursor,
    InvalidPhoneNumber,
    InvalidField,
    MissingField,
    UnknownField,
    TooLong,
    DuplicateExternalId,
    Unauthorized,
    Forbidden,
    NotFound,
    Redacted,
    RedactionDisabled,
    PayloadTooLarge,
    HeadersTooLarge,
    UnsupportedMediaType,
    RangeNotSatisfiable,
    EmptyRecording,
    Conflict,
    ConfirmationRequired,
    LegalHold,
    ExceedsAgencyMaximum,
    ConsentRequired,
    AddressNotAllowed,
    CollectionDisabled,
    UnknownCategory,
    UnknownNoticeVersion,
    StartInFuture,
    NoticeInUse,
    InvalidSignature,
    InvalidForm,
    Unavailable,
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidJson => "invalid_json",
            Code::InvalidQuery => "invalid_query",
            Code::InvalidCursor => "invalid_cursor",
            Code::InvalidPhoneNumber => "invalid_phone_number",
            Code::InvalidField => "invalid_field",
            Code::MissingField => "missing_field",
            Code::UnknownField => "unknown_field",
            Code::TooLong => "too_long",
            Code::DuplicateExternalId => "duplicate_external_id",
            Code::Unauthorized => "unauthorized",
            Code::Forbidden => "forbidden",
            Code::NotFound => "not_found",
            Code::Redacted => "redacted",
            Code::RedactionDisabled => "redaction_disabled",
            Code::PayloadTooLarge => "payload_too_large",
            Code::HeadersTooLarge => "headers_too_large",
            Code::UnsupportedMediaType => "unsupported_media_type",
            Code::RangeNotSatisfiable => "range_not_satisfiable",
            Code::EmptyRecording => "empty_recording",
            Code::Conflict => "conflict",
            Code::ConfirmationRequired => "confirmation_required",
            Code::LegalHold => "legal_hold",
            Code::ExceedsAgencyMaximum => "exceeds_agency_maximum",
            Code::ConsentRequired => "consent_required",
            Code::AddressNotAllowed => "address_not_allowed",
            Code::CollectionDisabled => "collection_disabled",
            Code::UnknownCategory => "unknown_category",
            Code::UnknownNoticeVersion => "unknown_notice_version",
            Code::StartInFuture => "start_in_future",
            Code::NoticeInUse => "notice_in_use",
            Code::InvalidSignature => "invalid_signature",
            Code::InvalidForm => "invalid_form",
            Code::Unavailable => "unavailable",
            Code::Internal => "internal",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Code::InvalidJson | Code::InvalidQuery | Code::InvalidCursor | Code::InvalidForm => {
                StatusCode::BAD_REQUEST
            }
            Code::InvalidSignature => StatusCode::FORBIDDEN,
            Code::InvalidPhoneNumber
            | Code::InvalidField
            | Code::MissingField
            | Code::UnknownField
            | Code::TooLong
            | Code::DuplicateExternalId
            | Code::EmptyRecording => StatusCode::UNPROCESSABLE_ENTITY,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Forbidden | Code::RedactionDisabled => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::Redacted => StatusCode::GONE,
            Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Code::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            Code::Conflict | Code::ConfirmationRequired | Code::LegalHold => StatusCode::CONFLICT,
            Code::ExceedsAgencyMaximum
            | Code::ConsentRequired
            | Code::AddressNotAllowed
            | Code::CollectionDisabled
            | Code::UnknownCategory
            | Code::UnknownNoticeVersion
            | Code::StartInFuture => StatusCode::UNPROCESSABLE_ENTITY,
            Code::NoticeInUse => StatusCode::CONFLICT,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn from_field_code(code: &str) -> Code {
        match code {
            "invalid_phone_number" => Code::InvalidPhoneNumber,
            "missing_field" => Code::MissingField,
            "unknown_field" => Code::UnknownField,
            "too_long" => Code::TooLong,
            "unknown_category" => Code::UnknownCategory,
            "unknown_notice_version" => Code::UnknownNoticeVersion,
            "start_in_future" => Code::StartInFuture,
            "consent_required" => Code::ConsentRequired,
            "address_not_allowed" => Code::AddressNotAllowed,
            _ => Code::InvalidField,
        }
    }
}

/// One problem with one field of the input.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub field: String,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<ErrorDetail>,
    /// With `confirmation_required` from an agency's settings: the calls each account
    /// would lose at once (account id → count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_redact: Option<std::collections::BTreeMap<String, u64>>,
}

/// `{"error": {...}}`
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    pub details: Vec<ErrorDetail>,
    /// Extra headers (e.g. `Content-Range` on 416).
    pub headers: Vec<(axum::http::HeaderName, String)>,
    /// A status other than the code's usual one (a bad number in a query string is a 400).
    pub status: Option<StatusCode>,
    /// See [`ErrorBody::would_redact`].
    pub would_redact: Option<std::collections::BTreeMap<String, u64>>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Vec::new(),
            headers: Vec::new(),
            status: None,
            would_redact: None,
        }
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(Code::NotFound, format!("{what} not found"))
    }

    pub fn unauthorized() -> Self {
        Self::new(
            Code::Unauthorized,
            "missing, unknown, expired or revoked bearer token; send `Authorization: Bearer <token>`",
        )
    }

    /// An internal failure: logged with an incident id, answered without its cause.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        let incident = uuid::Uuid::new_v4();
        tracing::error!(%incident, cause = %cause, "internal error");
        Self::new(
            Code::Internal,
            format!("internal error (incident {incident}); the operator's logs have the cause"),
        )
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// The same error answered as 400 (for query strings rather than bodies).
    pub fn with_status_400(mut self) -> Self {
        self.status = Some(StatusCode::BAD_REQUEST);
        self
    }

    /// The error as the single-call route answers it: the store names a call's fields by
    /// its place in a batch (`calls[0].transcript`); one posted alone has no such place.
    pub fn for_single_call(mut self) -> Self {
        const PREFIX: &str = "calls[0].";
        for detail in &mut self.details {
            if let Some(rest) = detail.field.strip_prefix(PREFIX) {
                detail.field = rest.to_owned();
            }
        }
        self.message = self.message.replace(PREFIX, "");
        self
    }

    /// Field errors with their paths; the first one gives the code.
    pub fn fields(errors: Vec<FieldError>) -> Self {
        let code = errors
            .first()
            .map(|e| Code::from_field_code(e.code))
            .unwrap_or(Code::InvalidField);
        let message = match errors.as_slice() {
            [one] => one.to_string(),
            [first, ..] => format!(
                "{first} (and {} more problems, see details)",
                errors.len() - 1
            ),
            [] => "invalid input".to_owned(),
        };
        let details = errors
            .into_iter()
            .map(|e| ErrorDetail {
                field: e.field,
                code: e.code.to_owned(),
                message: e.message,
            })
            .collect();
        Self {
            code,
            message,
            details,
            headers: Vec::new(),
            status: None,
            would_redact: None,
        }
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> Self {
        match d {
            Denied::NotFound => ApiError::not_found("resource"),
            Denied::Forbidden => {
                ApiError::new(Code::Forbidden, "this token's role may not do this")
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::AlreadyExists(what) => {
                ApiError::new(Code::Conflict, format!("{what} already exists"))
            }
            StoreError::SessionNotFound { index } => ApiError::fields(vec![FieldError::new(
                format!("calls[{index}].session_id"),
                "invalid_field",
                "no such session in this account",
            )]),
            StoreError::DuplicateInBatch { index } => {
                let mut err = ApiError::fields(vec![FieldError::new(
                    format!("calls[{index}].external_id"),
                    "duplicate_external_id",
                    "the same external_id appears twice in the batch",
                )]);
                err.code = Code::DuplicateExternalId;
                err
            }
            StoreError::ConsentRequired { index, category } => {
                let (field, message) = match category {
                    ringfence_core::DataCategory::Recording => (
                        "recording".to_owned(),
                        "this call may be recorded only with the caller's consent (the account's recording mode is opt_in, or the caller withdrew consent); record a granted recording consent first".to_owned(),
                    ),
                    other => (
                        format!("calls[{index}].transcript"),
                        format!("a granted {other} consent of the caller is required for this call (the account's recording mode for it is opt_in); send it in consents or record it first"),
                    ),
                };
                let mut err =
                    ApiError::fields(vec![FieldError::new(field, "consent_required", message)]);
                err.code = Code::ConsentRequired;
                err
            }
            StoreError::UnknownNoticeVersion { index } => {
                let field = match index {
                    Some(i) => format!("calls[{i}].consents.notice_version"),
                    None => "notice_version".to_owned(),
                };
                ApiError::fields(vec![FieldError::new(
                    field,
                    "unknown_notice_version",
                    "no such notice version for this account and category",
                )])
            }
            StoreError::NoticeInUse => ApiError::new(
                Code::NoticeInUse,
                "this notice version is referred to by consent records and cannot change; create a new version",
            ),
            StoreError::Backend(_) => ApiError::internal(&e),
        }
    }
}

impl From<LogError> for ApiError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Store(s) => s.into(),
            LogError::Redacted => ApiError::new(
                Code::Redacted,
                "the call was redacted: its personal data and recording are gone",
            ),
            LogError::RecordingTooLarge { limit } => ApiError::new(
                Code::PayloadTooLarge,
                format!("recording larger than the limit of {limit} bytes"),
            ),
            LogError::EmptyRecording => {
                ApiError::new(Code::EmptyRecording, "the recording is empty")
            }
            LogError::BodyRead => ApiError::new(
                Code::InvalidField,
                "the request body could not be read to its end",
            ),
            LogError::NoConsentSubject { index } => ApiError::fields(vec![FieldError::new(
                format!("calls[{index}].consents"),
                "invalid_field",
                "a consent needs a subject: send caller_number, or visitor.visitor_id for a withheld number",
            )]),
            other => ApiError::internal(&other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorEnvelope {
            error: ErrorBody {
                code: self.code.as_str().to_owned(),
                message: self.message,
                details: self.details,
                would_redact: self.would_redact,
            },
        };
        let mut response = (self.status.unwrap_or(self.code.status()), Json(body)).into_response();
        for (name, value) in self.headers {
            if let Ok(v) = value.parse() {
                response.headers_mut().insert(name, v);
            }
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
