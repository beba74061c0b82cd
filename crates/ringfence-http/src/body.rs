//! JSON request bodies: content type, size limit, and deserialisation errors that name the
//! field and the rule but never echo the value (it may be personal data).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, Code, ErrorDetail};

/// A JSON body parsed into `T`.
pub struct JsonBody<T>(pub T);

pub fn is_json(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return false };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if !is_json(content_type.as_deref()) {
            return Err(ApiError::new(
                Code::UnsupportedMediaType,
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    Code::PayloadTooLarge,
                    "request body larger than this route accepts",
                )
            } else {
                ApiError::new(Code::InvalidJson, "the request body could not be read")
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses JSON into `T` with errors fit for a client.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = match parsed {
        Ok(v) => v,
        Err(e) => return Err(describe(e)),
    };
    de.end().map_err(|e| {
        ApiError::new(
            Code::InvalidJson,
            format!(
                "malformed JSON: trailing characters at line {} column {}",
                e.line(),
                e.column()
            ),
        )
    })?;
    Ok(value)
}

fn describe(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if inner.is_syntax() || inner.is_eof() || inner.is_io() {
        return ApiError::new(
            Code::InvalidJson,
            format!(
                "malformed JSON at line {} column {}",
                inner.line(),
                inner.column()
            ),
        );
    }
    let raw = inner.to_string();
    let raw = raw.split(" at line ").next().unwrap_or("").to_owned();
    let (code, message, field) = classify(&raw, &path);
    let mut err = ApiError::new(code, format!("{field}: {message}"));
    err.details.push(ErrorDetail {
        field,
        code: code.as_str().to_owned(),
        message,
    });
    err
}

/// Serde's own messages quote the offending value; keep only the rule.
fn classify(raw: &str, path: &str) -> (Code, String, String) {
    let named = |prefix: &str| {
        raw.strip_prefix(prefix)
            .and_then(|r| r.split('`').nth(1))
            .map(str::to_owned)
    };
    // The path of an unknown field already ends with it; that of a missing one does not.
    let join = |name: &str| {
        if path == "." || path.is_empty() {
            name.to_owned()
        } else if path == name || path.ends_with(&format!(".{name}")) {
            path.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    if let Some(name) = named("unknown field") {
        return (
            Code::UnknownField,
            "unknown field (check the spelling against /openapi.json)".into(),
            join(&name),
        );
    }
    if let Some(name) = named("missing field") {
        return (
            Code::MissingField,
            "required field is missing".into(),
            join(&name),
        );
    }
    let field = if path == "." {
        "body".to_owned()
    } else {
        path.to_owned()
    };
    for prefix in ["invalid type: ", "invalid value: "] {
        if raw.starts_with(prefix) {
            let expected = raw.split(", expected ").nth(1).unwrap_or("another value");
            let kind = prefix.trim_end_matches(": ");
            return (
                Code::InvalidField,
                format!("{kind}, expected {expected}"),
                field,
            );
        }
    }
    if raw.starts_with("invalid length") {
        return (Code::InvalidField, "invalid length".into(), field);
    }
    (Code::InvalidField, "invalid value".into(), field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Probe {
        number: String,
        count: Option<u32>,
        inner: Option<Vec<Inner>>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        ip: String,
    }

    #[test]
    fn errors_name_the_field_and_never_the_value() {
        let cases: [(&str, Code, &str); 6] = [
            (
                r#"{"number": "+442079460123", "count": "SECRET-VALUE"}"#,
                Code::InvalidField,
                "count",
            ),
            (r#"{"number": 442079460123}"#, Code::InvalidField, "number"),
            (r#"{"count": 3}"#, Code::MissingField, "number"),
            (
                r#"{"number": "x", "SECRET-KEY-NAME": 1}"#,
                Code::UnknownField,
                "SECRET-KEY-NAME",
            ),
            (
                r#"{"number": "x", "inner": [{"ip": "a"}, {"ip": 5}]}"#,
                Code::InvalidField,
                "inner[1].ip",
            ),
            (
                r#"{"number": "x", "count": -5}"#,
                Code::InvalidField,
                "count",
            ),
        ];
        for (body, code, field) in cases {
            let err = parse_json::<Probe>(body.as_bytes()).unwrap_err();
            assert_eq!(err.code, code, "{body}");
            assert_eq!(err.details[0].field, field, "{body}");
            assert!(
                !err.message.contains("SECRET-VALUE") && !err.message.contains("442079460123"),
                "{}",
                err.message
            );
        }
    }

    #[test]
    fn malformed_json_is_a_400() {
        for body in [
            "",
            "{",
            "{\"number\": \"x\"} trailing",
            "nul",
            "{\"number\": \"x",
        ] {
            assert_eq!(
                parse_json::<Probe>(body.as_bytes()).unwrap_err().code,
                Code::InvalidJson,
                "{body}"
            );
        }
    }

    #[test]
    fn json_content_types_are_recognised() {
        for (ct, ok) in [
            (Some("application/json"), true),
            (Some("application/json; charset=utf-8"), true),
            (Some("application/vnd.x+json"), true),
            (Some("text/plain"), false),
            (None, false),
        ] {
            assert_eq!(is_json(ct), ok, "{ct:?}");
        }
    }
}
