//! The one error type at the HTTP edge. Every failure a client can see has a stable `code`
//! and its HTTP status; internal causes are logged by id and never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use ringfence_core::access::Denied;
use ringfence_core::call::FieldError;
use ringfence_store::{LogError, StoreError};

/// Declares [`Code`] from one table: each variant once, with its wire code, its HTTP status
/// and a one-line description (the OpenAPI document lists them with every error response).
macro_rules! codes {
    ($($variant:ident => ($code:literal, $status:ident, $description:literal),)*) => {
        /// The stable error codes, each with its status. Clients match on the code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code {
            $(#[doc = $description] $variant,)*
        }

        impl Code {
            /// Every code, in the table's order.
            pub const ALL: &[Code] = &[$(Code::$variant,)*];

            /// The code's row of the table: wire code, status, description.
            const fn row(self) -> (&'static str, StatusCode, &'static str) {
                match self {
                    $(Code::$variant => ($code, StatusCode::$status, $description),)*
                }
            }
        }
    };
}

codes! {
    InvalidJson => ("invalid_json", BAD_REQUEST, "the body is not well-formed JSON"),
    InvalidQuery => ("invalid_query", BAD_REQUEST, "a query parameter is unknown, repeated or breaks its rule"),
    InvalidCursor => ("invalid_cursor", BAD_REQUEST, "the cursor is not one this server gave out"),
    InvalidForm => ("invalid_form", BAD_REQUEST, "the body is not a valid form encoding"),
    InvalidPhoneNumber => ("invalid_phone_number", UNPROCESSABLE_ENTITY, "a number is not valid E.164 in its country's numbering plan"),
    InvalidField => ("invalid_field", UNPROCESSABLE_ENTITY, "a field breaks its rule, or the body is not a JSON object"),
    MissingField => ("missing_field", UNPROCESSABLE_ENTITY, "a required field is missing or empty"),
    UnknownField => ("unknown_field", UNPROCESSABLE_ENTITY, "the body has a field the route does not take"),
    TooLong => ("too_long", UNPROCESSABLE_ENTITY, "a field or list is longer than its limit"),
    DuplicateExternalId => ("duplicate_external_id", UNPROCESSABLE_ENTITY, "the same external_id appears twice in one batch"),
    ExceedsAgencyMaximum => ("exceeds_agency_maximum", UNPROCESSABLE_ENTITY, "a retention period is longer than the agency's ceiling"),
    ConsentRequired => ("consent_required", UNPROCESSABLE_ENTITY, "the data may be kept only with the subject's granted consent"),
    AddressNotAllowed => ("address_not_allowed", UNPROCESSABLE_ENTITY, "the URL's host is or resolves to a non-public address"),
    CollectionDisabled => ("collection_disabled", UNPROCESSABLE_ENTITY, "the account's collection settings do not keep this data"),
    UnknownCategory => ("unknown_category", UNPROCESSABLE_ENTITY, "not a personal data category"),
    UnknownNoticeVersion => ("unknown_notice_version", UNPROCESSABLE_ENTITY, "no such notice version for this account and category"),
    StartInFuture => ("start_in_future", UNPROCESSABLE_ENTITY, "the start time is more than 5 minutes ahead of the server's clock"),
    EmptyRecording => ("empty_recording", UNPROCESSABLE_ENTITY, "the recording has no bytes"),
    Unauthorized => ("unauthorized", UNAUTHORIZED, "missing, unknown, expired or revoked bearer token"),
    Forbidden => ("forbidden", FORBIDDEN, "the token's role or scope may not do this"),
    RedactionDisabled => ("redaction_disabled", FORBIDDEN, "the account's agency has not enabled redaction"),
    InvalidSignature => ("invalid_signature", FORBIDDEN, "the webhook's signature is missing or does not match"),
    NotFound => ("not_found", NOT_FOUND, "no such resource in the token's scope"),
    MethodNotAllowed => ("method_not_allowed", METHOD_NOT_ALLOWED, "the route does not take this method"),
    Conflict => ("conflict", CONFLICT, "the resource's state does not allow this"),
    ConfirmationRequired => ("confirmation_required", CONFLICT, "the change would redact calls at once; send it again with \"confirm\": true"),
    LegalHold => ("legal_hold", CONFLICT, "the call is on legal hold"),
    NoticeInUse => ("notice_in_use", CONFLICT, "consent records refer to this notice version; create a new one"),
    Redacted => ("redacted", GONE, "the call was redacted: its personal data and recording are gone"),
    PayloadTooLarge => ("payload_too_large", PAYLOAD_TOO_LARGE, "the body is larger than the route accepts"),
    UnsupportedMediaType => ("unsupported_media_type", UNSUPPORTED_MEDIA_TYPE, "the body is not sent with the media type the route takes"),
    RangeNotSatisfiable => ("range_not_satisfiable", RANGE_NOT_SATISFIABLE, "the Range lies outside the recording"),
    HeadersTooLarge => ("headers_too_large", REQUEST_HEADER_FIELDS_TOO_LARGE, "the request's headers exceed 32 KiB in all"),
    Internal => ("internal", INTERNAL_SERVER_ERROR, "an internal failure; the operator's logs have the cause"),
    Unavailable => ("unavailable", SERVICE_UNAVAILABLE, "a backing service does not answer"),
}

impl Code {
    pub const fn as_str(self) -> &'static str {
        self.row().0
    }

    /// The status the code is answered with. A field code about a query string or a path
    /// parameter rather than a body is answered as 400 (see [`ApiError::with_status_400`]).
    pub const fn status(self) -> StatusCode {
        self.row().1
    }

    /// One line on what the code means.
    pub const fn description(self) -> &'static str {
        self.row().2
    }

    /// The code with this wire name.
    pub fn parse(code: &str) -> Option<Code> {
        Code::ALL.iter().copied().find(|c| c.as_str() == code)
    }

    /// The code of a field error: its own when the table has it with a 422 status (a field
    /// code never turns a bad input into another status), else `invalid_field`.
    fn from_field_code(code: &str) -> Code {
        Code::parse(code)
            .filter(|c| c.status() == StatusCode::UNPROCESSABLE_ENTITY)
            .unwrap_or(Code::InvalidField)
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
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
    #[schema(value_type = Code)]
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
