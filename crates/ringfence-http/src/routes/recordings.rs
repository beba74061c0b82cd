use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use ringfence_core::CallId;
use ringfence_core::access::{Denied, Permission};
use ringfence_core::collection::RecordingMode;
use ringfence_store::{CallRow, RecordingConsent};

use super::path_id;
use crate::auth::Auth;
use crate::dto::RecordingOutput;
use crate::error::{ApiError, ApiResult, Code};
use crate::state::AppState;

async fn call_for(
    state: &AppState,
    principal: &ringfence_core::access::Principal,
    call: &str,
    permission: Permission,
) -> ApiResult<CallRow> {
    let id: CallId = path_id(call, "call")?;
    let row = state
        .log
        .call_row(id)
        .await?
        .ok_or_else(|| ApiError::not_found("call"))?;
    let tenant = state.tenant(row.account_id).await?;
    principal.check(permission, &tenant).map_err(|d| match d {
        Denied::NotFound => ApiError::not_found("call"),
        other => other.into(),
    })?;
    Ok(row)
}

/// A recording upload's body, for the OpenAPI document: the audio's bytes, at least one.
pub struct AudioBody;

impl utoipa::PartialSchema for AudioBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::schemas::audio().into()
    }
}

impl utoipa::ToSchema for AudioBody {}

/// Upload (or replace) a call's recording. The body is the audio itself.
#[utoipa::path(put, path = "/api/v1/calls/{call_id}/recording", tag = "recordings",
    params(("call_id" = String, Path, description = "call id")),
    request_body(content = inline(AudioBody), content_type = "audio/wav", description = "the audio bytes: any audio/ media type (audio/wav, audio/mpeg, …)"),
    responses(
        (status = 201, body = RecordingOutput),
        (status = 403, extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such call in the token's scope", extensions(("x-error-codes" = json!([Code::NotFound])))),
        (status = 410, extensions(("x-error-codes" = json!([Code::Redacted])))),
        (status = 413, extensions(("x-error-codes" = json!([Code::PayloadTooLarge])))),
        (status = 415, description = "Content-Type is not audio/*", extensions(("x-error-codes" = json!([Code::UnsupportedMediaType])))),
        (status = 422, extensions(("x-error-codes" = json!([Code::EmptyRecording, Code::CollectionDisabled, Code::ConsentRequired, Code::InvalidField])))),
    ),
    security(("bearer" = [])))]
pub async fn put_recording(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(call): Path<String>,
    request: Request,
) -> ApiResult<(StatusCode, Json<RecordingOutput>)> {
    let row = call_for(&state, &principal, &call, Permission::Ingest).await?;
    let content_type = audio_content_type(request.headers())?;
    let limit = state.limits.max_recording_bytes;
    if let Some(len) = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit
    {
        return Err(ApiError::new(
            Code::PayloadTooLarge,
            format!("recording larger than the limit of {limit} bytes"),
        ));
    }
    // The account's recording mode for this caller decides before a byte is written.
    let collection = state.collection(row.account_id).await?;
    let check = match collection.recording_mode(row.gdpr_scope) {
        RecordingMode::Off => {
            return Err(ApiError::new(
                Code::CollectionDisabled,
                "this account does not record calls of this kind (collection.recording_gdpr / recording_other is off)",
            ));
        }
        RecordingMode::Announce => RecordingConsent::UnlessWithdrawn,
        RecordingMode::OptIn => RecordingConsent::Granted,
    };
    if row.redacted_at.is_none() && !state.log.recording_allowed(&row, check).await? {
        return Err(ringfence_store::StoreError::ConsentRequired {
            index: 0,
            category: ringfence_core::DataCategory::Recording,
        }
        .into());
    }
    let body = request.into_body().into_data_stream();
    let meta = state
        .log
        .put_recording(&row, content_type, body, limit, Some(check))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(RecordingOutput {
            content_type: meta.content_type,
            bytes: meta.bytes,
            url: format!("/api/v1/calls/{}/recording", row.id),
        }),
    ))
}

fn audio_content_type(headers: &HeaderMap) -> ApiResult<String> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let valid = essence.strip_prefix("audio/").is_some_and(|sub| {
        !sub.is_empty()
            && sub.len() <= 64
            && sub
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    if !valid {
        return Err(ApiError::new(
            Code::UnsupportedMediaType,
            "send the recording with an audio Content-Type, e.g. audio/wav or audio/mpeg",
        ));
    }
    Ok(essence)
}

/// A requested byte range, resolved against the length.
#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    Full,
    Partial(u64, u64),
    Unsatisfiable,
}

/// Parses a single `bytes=` range. Several ranges are answered with the whole file, which
/// RFC 9110 allows.
fn parse_range(value: Option<&str>, len: u64) -> RangeRequest {
    let Some(value) = value else {
        return RangeRequest::Full;
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeRequest::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.is_empty(), b.is_empty()) {
        (true, false) => match b.parse::<u64>() {
            Ok(0) => return RangeRequest::Unsatisfiable,
            Ok(suffix) => (len.saturating_sub(suffix), len),
            Err(_) => return RangeRequest::Full,
        },
        (false, _) => {
            let Ok(start) = a.parse::<u64>() else {
                return RangeRequest::Full;
            };
            let end = if b.is_empty() {
                len
            } else {
                match b.parse::<u64>() {
                    Ok(e) if e >= start => e.saturating_add(1).min(len),
                    _ => return RangeRequest::Full,
                }
            };
            (start, end)
        }
        (true, true) => return RangeRequest::Full,
    };
    if range.0 >= len {
        RangeRequest::Unsatisfiable
    } else {
        RangeRequest::Partial(range.0, range.1)
    }
}

/// Play a call's recording. Supports single `Range` requests.
#[utoipa::path(get, path = "/api/v1/calls/{call_id}/recording", tag = "recordings",
    params(("call_id" = String, Path, description = "call id"), ("Range" = Option<String>, Header, description = "bytes=start-end")),
    responses(
        (status = 200, description = "the whole recording", content_type = "audio/*"),
        (status = 206, description = "the requested range", content_type = "audio/*"),
        (status = 403, description = "the role may not play recordings, or the token may not see personal data", extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such call, or it has no recording", extensions(("x-error-codes" = json!([Code::NotFound])))),
        (status = 410, extensions(("x-error-codes" = json!([Code::Redacted])))),
        (status = 416, extensions(("x-error-codes" = json!([Code::RangeNotSatisfiable])))),
    ),
    security(("bearer" = [])))]
pub async fn get_recording(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(call): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let row = call_for(&state, &principal, &call, Permission::ReadRecording).await?;
    if !principal.personal_data {
        return Err(ApiError::new(
            Code::Forbidden,
            "this token may not see personal data, recordings included",
        ));
    }
    let rec = state
        .log
        .recording(&row)
        .await?
        .ok_or_else(|| ApiError::not_found("recording"))?;
    let len = rec.meta.bytes;
    let content_type = rec.meta.content_type.clone();
    let range = parse_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        len,
    );
    let (status, start, end) = match range {
        RangeRequest::Full => (StatusCode::OK, 0, len),
        RangeRequest::Partial(s, e) => (StatusCode::PARTIAL_CONTENT, s, e),
        RangeRequest::Unsatisfiable => {
            let mut err = ApiError::new(
                Code::RangeNotSatisfiable,
                format!("the recording has {len} bytes"),
            );
            err.headers
                .push((header::CONTENT_RANGE, format!("bytes */{len}")));
            return Err(err);
        }
    };
    // The key and the recording's object are opened before the answer starts: the body is
    // then the whole range, whatever a redaction does meanwhile; one that came first is a
    // 410 (or a 404 for a recording replaced meanwhile), never a body cut short.
    let stream = state
        .log
        .read_recording(rec, start, end)
        .await?
        .ok_or_else(|| ApiError::not_found("recording"))?
        .map(|r| r.map_err(std::io::Error::other));
    let mut response = Body::from_stream(stream).into_response();
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // Personal data: never cached by a browser or proxy.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", end - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve_like_rfc_9110_says() {
        use RangeRequest::*;
        let cases = [
            (None, Full),
            (Some("bytes=0-99"), Partial(0, 100)),
            (Some("bytes=100-"), Partial(100, 1000)),
            (Some("bytes=-100"), Partial(900, 1000)),
            (Some("bytes=-5000"), Partial(0, 1000)),
            (Some("bytes=990-2000"), Partial(990, 1000)),
            (Some("bytes=1000-"), Unsatisfiable),
            (Some("bytes=-0"), Unsatisfiable),
            (Some("bytes=5-1"), Full),
            (Some("bytes=0-1,5-6"), Full),
            (Some("items=0-1"), Full),
            (Some("bytes=abc"), Full),
        ];
        for (header, expected) in cases {
            assert_eq!(parse_range(header, 1000), expected, "{header:?}");
        }
    }

    #[test]
    fn only_audio_content_types_are_accepted() {
        let mut h = HeaderMap::new();
        for (ct, ok) in [
            ("audio/wav", true),
            ("audio/mpeg; rate=8000", true),
            ("AUDIO/X-WAV", true),
            ("video/mp4", false),
            ("audio/", false),
            ("text/plain", false),
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            assert_eq!(audio_content_type(&h).is_ok(), ok, "{ct}");
        }
        h.remove(header::CONTENT_TYPE);
        assert!(audio_content_type(&h).is_err());
    }
}
