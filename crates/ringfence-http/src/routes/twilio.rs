//! Twilio-compatible webhooks: voice status callbacks, authenticated by the account's auth
//! token (`X-Twilio-Signature`), minimised and consent-checked like any ingest.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use ringfence_core::AccountId;
use ringfence_core::call::{
    CallStatus, CallerIdentity, CallerLocation, Direction, FieldError, InteractionContent, NewCall,
    Utm, checked_country, checked_personal, checked_text, limits,
};
use ringfence_core::phone::{parse_caller_number, parse_e164};
use ringfence_core::timestamp::Timestamp;
use ringfence_crypto::twilio::verify_twilio_signature;
use ringfence_store::{AccountRecord, IngestPolicy};

use super::path_id;
use crate::error::{ApiError, ApiResult, Code};
use crate::state::AppState;

/// What Twilio expects back from a status callback: an empty TwiML document.
const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

/// The form parameters of a webhook, in the order sent.
struct Form(Vec<(String, String)>);

impl Form {
    /// The first non-empty value among `names` (current name first, then legacy aliases).
    fn get(&self, names: &[&str]) -> Option<String> {
        names.iter().find_map(|name| {
            self.0
                .iter()
                .find(|(k, v)| k == name && !v.trim().is_empty())
                .map(|(_, v)| v.clone())
        })
    }
}

fn empty_twiml() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        EMPTY_TWIML,
    )
        .into_response()
}

fn invalid_signature(message: &str) -> ApiError {
    ApiError::new(Code::InvalidSignature, message.to_owned())
}

/// Checks the content type, parses the form and validates the signature against the account's
/// auth token. Nothing is read from the form before the signature holds. Answers the form
/// and the account's record.
async fn authenticated_form(
    state: &AppState,
    account: AccountId,
    headers: &HeaderMap,
    uri: &Uri,
    body: &Bytes,
) -> ApiResult<(Form, AccountRecord)> {
    let record = state
        .log
        .store()
        .account(account)
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if content_type != "application/x-www-form-urlencoded" {
        return Err(ApiError::new(
            Code::UnsupportedMediaType,
            "send the webhook as application/x-www-form-urlencoded",
        ));
    }
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|_| ApiError::new(Code::InvalidForm, "the body is not a valid form encoding"))?;
    let Some(token) = state.log.twilio_auth_token(&record).await? else {
        return Err(invalid_signature(
            "this account has no Twilio auth token: set telephony.twilio_auth_token in its settings",
        ));
    };
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| invalid_signature("X-Twilio-Signature is missing"))?;
    let path = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or_else(|| uri.path());
    // The URL Twilio requested: the configured public URL, else the Host it asked for.
    let candidates: Vec<String> = match &state.public_url {
        Some(base) => vec![format!("{}{path}", base.trim_end_matches('/'))],
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            vec![
                format!("https://{host}{path}"),
                format!("http://{host}{path}"),
            ]
        }
    };
    if !candidates
        .iter()
        .any(|url| verify_twilio_signature(&token, url, &params, signature))
    {
        return Err(invalid_signature(
            "X-Twilio-Signature does not match this request (check the account's auth token and --public-url)",
        ));
    }
    Ok((Form(params), record))
}

/// The call a voice status callback describes. Required: `CallSid` and a valid tracking
/// number (`To` for inbound calls, `From` for outbound ones). The other party's number may be
/// withheld (`anonymous`, Twilio's `+266696687`…); one that is not a phone number (a SIP or
/// client address) is kept as withheld. Unknown keys are ignored, never stored.
fn voice_call(form: &Form) -> Result<NewCall, Vec<FieldError>> {
    let mut errors = Vec::new();
    let sid = match form.get(&["CallSid"]) {
        Some(sid) if sid.len() <= 64 && sid.chars().all(|c| c.is_ascii_alphanumeric()) => Some(sid),
        Some(_) => {
            errors.push(FieldError::new("CallSid", "invalid_field", "not a call id"));
            None
        }
        None => {
            errors.push(FieldError::new("CallSid", "missing_field", "required"));
            None
        }
    };
    let direction = form.get(&["Direction"]).and_then(|d| Direction::parse(&d));
    let outbound = direction == Some(Direction::Outbound);
    // The business's number is `To` on inbound calls and `From` on outbound ones.
    let (ours, theirs, prefix, legacy) = if outbound {
        (["From", "Caller"], ["To", "Called"], "To", "Called")
    } else {
        (["To", "Called"], ["From", "Caller"], "From", "Caller")
    };
    let tracking = match form.get(&ours) {
        Some(n) => match parse_e164(&n) {
            Ok(n) => Some(n),
            Err(e) => {
                errors.push(FieldError::new(
                    ours[0],
                    "invalid_phone_number",
                    format!("not a valid E.164 number ({e})"),
                ));
                None
            }
        },
        None => {
            errors.push(FieldError::new(ours[0], "missing_field", "required"));
            None
        }
    };
    let number = form
        .get(&theirs)
        .and_then(|n| parse_caller_number(&n).ok().flatten());
    let forwarded_from = form
        .get(&["ForwardedFrom"])
        .and_then(|n| parse_caller_number(&n).ok().flatten());
    let personal = |field: &str, value: Option<String>, max: usize| {
        checked_personal(field, value, max, false).ok().flatten()
    };
    let part =
        |suffix: &str| form.get(&[&format!("{prefix}{suffix}"), &format!("{legacy}{suffix}")]);
    let location = CallerLocation {
        city: personal("FromCity", part("City"), limits::LOCATION_PART),
        region: personal("FromState", part("State"), limits::LOCATION_PART),
        postal_code: personal("FromZip", part("Zip"), limits::LOCATION_PART),
        country: checked_country("FromCountry", part("Country"))
            .ok()
            .flatten(),
    };
    let caller = CallerIdentity {
        number,
        name: personal("CallerName", form.get(&["CallerName"]), limits::NAME),
        forwarded_from,
    };
    let duration_s = form
        .get(&["CallDuration"])
        .and_then(|d| d.trim().parse::<u32>().ok())
        .filter(|d| *d <= limits::DURATION_S);
    let status = form
        .get(&["CallStatus"])
        .and_then(|s| CallStatus::parse(&s));
    // The call started at the callback's time less its duration (Twilio's `Timestamp` is
    // RFC 2822); stores keep the earliest start any callback implies.
    let now = Timestamp::now();
    let at = form
        .get(&["Timestamp"])
        .and_then(|t| Timestamp::parse_rfc2822(&t))
        .unwrap_or(now);
    // A date ahead of the clock would keep the call out of retention.
    if at.is_beyond_skew_of(now) {
        errors.push(FieldError::new(
            "Timestamp",
            "start_in_future",
            "more than 5 minutes ahead of the server's clock",
        ));
    }
    let started_at =
        Timestamp::from_millis(at.millis() - i64::from(duration_s.unwrap_or(0)) * 1000)
            .as_start_arriving_at(now);
    match (sid, tracking, errors.is_empty()) {
        (Some(sid), Some(tracking_number), true) => Ok(NewCall {
            external_id: checked_text("CallSid", Some(sid), limits::EXTERNAL_ID, false)
                .ok()
                .flatten(),
            started_at,
            duration_s,
            direction,
            status,
            tracking_number,
            source: None,
            campaign: None,
            utm: Utm::default(),
            caller,
            location,
            transcript: None,
            interaction: InteractionContent::default(),
            session_id: None,
            visitor: None,
            consents: Vec::new(),
        }),
        _ => Err(errors),
    }
}

/// Twilio voice status callback (form-encoded, signed with the account's auth token).
///
/// Each status of a call (`initiated`, `ringing`, `in-progress`, `completed`…) updates the
/// one call of its `CallSid`; statuses only move forward, so repeated and out-of-order
/// deliveries converge. The account's collection settings and the caller's withdrawn consents
/// apply before anything is written. Answers an empty TwiML document.
#[utoipa::path(post, path = "/webhooks/twilio/{account_id}/voice", tag = "telephony",
    params(("account_id" = String, Path, description = "account id")),
    request_body(content = std::collections::BTreeMap<String, String>, content_type = "application/x-www-form-urlencoded", description = "Twilio's status callback parameters",
        example = json!({"AccountSid": "AC0123456789abcdef0123456789abcdef", "CallSid": "CA5f0c2e8b7d9a41c6b8e2f4a6c8d0e1f2", "From": "+442079460123", "To": "+14155550100", "Direction": "inbound", "CallStatus": "completed", "CallDuration": "95", "FromCity": "London", "FromCountry": "GB"})),
    responses(
        (status = 200, description = "stored; empty TwiML", content_type = "text/xml"),
        (status = 400, extensions(("x-error-codes" = json!([Code::InvalidForm])))),
        (status = 403, extensions(("x-error-codes" = json!([Code::InvalidSignature])))),
        (status = 404, description = "no such account", extensions(("x-error-codes" = json!([Code::NotFound])))),
        (status = 415, description = "the body is not application/x-www-form-urlencoded", extensions(("x-error-codes" = json!([Code::UnsupportedMediaType])))),
        (status = 422, description = "CallSid or the tracking number missing or invalid", extensions(("x-error-codes" = json!([Code::InvalidField, Code::MissingField, Code::InvalidPhoneNumber, Code::StartInFuture, Code::TooLong, Code::ConsentRequired])))),
    ))]
pub async fn voice(
    State(state): State<AppState>,
    Path(account): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let account: AccountId = path_id(&account, "account")?;
    let (form, _) = authenticated_form(&state, account, &headers, &uri, &body).await?;
    let call = voice_call(&form).map_err(ApiError::fields)?;
    let policy = IngestPolicy {
        collection: state.collection(account).await?,
        actor: "twilio".into(),
    };
    let (id, created, _) = state.log.ingest_status(account, call, &policy).await?;
    metrics::counter!("ringfence_calls_ingested_total").increment(u64::from(created));
    tracing::debug!(call = %id, created, "voice status callback");
    Ok(empty_twiml())
}

/// Twilio recording status callback (form-encoded, signed).
///
/// On `completed`, the recording is queued for download (durably; retried with backoff); the
/// worker checks the account's recording mode and the caller's consent before fetching a byte,
/// so a recording that may not be kept is never downloaded. Other statuses store nothing.
/// Repeated deliveries of a `RecordingSid` queue it once.
#[utoipa::path(post, path = "/webhooks/twilio/{account_id}/recording", tag = "telephony",
    params(("account_id" = String, Path, description = "account id")),
    request_body(content = std::collections::BTreeMap<String, String>, content_type = "application/x-www-form-urlencoded", description = "Twilio's recording status callback parameters",
        example = json!({"AccountSid": "AC0123456789abcdef0123456789abcdef", "CallSid": "CA5f0c2e8b7d9a41c6b8e2f4a6c8d0e1f2", "RecordingSid": "RE0123456789abcdef0123456789abcdef", "RecordingUrl": "https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Recordings/RE0123456789abcdef0123456789abcdef", "RecordingStatus": "completed", "RecordingDuration": "95", "RecordingChannels": "1"})),
    responses(
        (status = 200, description = "queued (or nothing to do); empty TwiML", content_type = "text/xml"),
        (status = 400, extensions(("x-error-codes" = json!([Code::InvalidForm])))),
        (status = 403, extensions(("x-error-codes" = json!([Code::InvalidSignature])))),
        (status = 404, description = "no such account", extensions(("x-error-codes" = json!([Code::NotFound])))),
        (status = 415, description = "the body is not application/x-www-form-urlencoded", extensions(("x-error-codes" = json!([Code::UnsupportedMediaType])))),
        (status = 422, description = "RecordingSid, CallSid, AccountSid or RecordingUrl missing or invalid: the URL must be https on a configured Twilio media host, the AccountSid the account's own", extensions(("x-error-codes" = json!([Code::InvalidField, Code::MissingField])))),
    ))]
pub async fn recording(
    State(state): State<AppState>,
    Path(account): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let account: AccountId = path_id(&account, "account")?;
    let (form, record) = authenticated_form(&state, account, &headers, &uri, &body).await?;
    let mut errors = Vec::new();
    let mut id_of = |name: &str| match form.get(&[name]) {
        Some(v) if v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric()) => Some(v),
        Some(_) => {
            errors.push(FieldError::new(name, "invalid_field", "not a provider id"));
            None
        }
        None => {
            errors.push(FieldError::new(name, "missing_field", "required"));
            None
        }
    };
    let recording_sid = id_of("RecordingSid");
    let call_sid = id_of("CallSid");
    let provider_account = id_of("AccountSid");
    // Checked here and again by the worker, which sends the auth token only to these hosts
    // and only for the account's own SID.
    if let (Some(sid), Some(own)) = (&provider_account, &record.twilio_account_sid)
        && sid != own
    {
        errors.push(FieldError::new(
            "AccountSid",
            "invalid_field",
            "not this account's Twilio Account SID",
        ));
    }
    let url = match form.get(&["RecordingUrl"]) {
        Some(u) if state.outbound().twilio_media.permits_text(&u) => Some(u),
        Some(_) => {
            errors.push(FieldError::new(
                "RecordingUrl",
                "invalid_field",
                "must be an https URL on one of the configured Twilio media hosts",
            ));
            None
        }
        None => {
            errors.push(FieldError::new("RecordingUrl", "missing_field", "required"));
            None
        }
    };
    let status = form.get(&["RecordingStatus"]).unwrap_or_default();
    let (Some(recording_sid), Some(call_sid), Some(provider_account), Some(url), true) = (
        recording_sid,
        call_sid,
        provider_account,
        url,
        errors.is_empty(),
    ) else {
        return Err(ApiError::fields(errors));
    };
    if status == "completed" {
        let now = Timestamp::now();
        let queued = state
            .log
            .store()
            .enqueue_download(ringfence_store::DownloadJob {
                id: uuid::Uuid::now_v7().to_string(),
                account_id: account,
                call_sid,
                recording_sid,
                url,
                provider_account,
                state: "pending".into(),
                attempts: 0,
                next_attempt_at: now,
                outcome: None,
                created_at: now,
            })
            .await?;
        tracing::debug!(%account, queued, "recording status callback");
    }
    Ok(empty_twiml())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Form {
        Form(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn inbound_and_outbound_sides_and_legacy_aliases() {
        let inbound = voice_call(&form(&[
            ("CallSid", "CA0123456789abcdef0123456789abcdef"),
            ("Caller", "+442079460123"),
            ("Called", "+14155550100"),
            ("CallerCity", "London"),
            ("Direction", "inbound"),
            ("CallStatus", "ringing"),
            ("SomethingNew", "ignored"),
        ]))
        .unwrap();
        assert_eq!(inbound.tracking_number.as_str(), "+14155550100");
        assert_eq!(
            inbound.caller.number.as_ref().map(|n| n.as_str()),
            Some("+442079460123")
        );
        assert_eq!(inbound.location.city.unwrap().expose(), "London");
        assert_eq!(inbound.status, Some(CallStatus::Ringing));
        let outbound = voice_call(&form(&[
            ("CallSid", "CA1"),
            ("From", "+14155550100"),
            ("To", "+442079460123"),
            ("Direction", "outbound-api"),
        ]))
        .unwrap();
        assert_eq!(outbound.tracking_number.as_str(), "+14155550100");
        assert_eq!(outbound.direction, Some(Direction::Outbound));
    }

    #[test]
    fn withheld_and_unparseable_callers_have_no_number_but_bad_required_fields_are_refused() {
        for from in [
            "anonymous",
            "+266696687",
            "client:alice",
            "sip:someone@example.org",
            "",
        ] {
            let call = voice_call(&form(&[
                ("CallSid", "CA1"),
                ("From", from),
                ("To", "+14155550100"),
            ]))
            .unwrap();
            assert!(call.caller.number.is_none(), "{from}");
        }
        let missing = voice_call(&form(&[("From", "+442079460123")])).unwrap_err();
        let fields: Vec<&str> = missing.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["CallSid", "To"]);
        let bad = voice_call(&form(&[("CallSid", "CA/../1"), ("To", "+12")])).unwrap_err();
        assert_eq!(bad.len(), 2);
        assert!(
            !format!("{bad:?}").contains("+12\""),
            "errors never repeat values"
        );
    }

    #[test]
    fn the_start_is_the_callback_time_less_the_duration() {
        let call = voice_call(&form(&[
            ("CallSid", "CA1"),
            ("To", "+14155550100"),
            ("CallDuration", "60"),
            ("Timestamp", "Sat, 28 Nov 2026 10:01:00 +0000"),
        ]))
        .unwrap();
        assert_eq!(call.started_at.to_rfc3339(), "2026-11-28T10:00:00Z");
        assert_eq!(call.duration_s, Some(60));
    }
}
