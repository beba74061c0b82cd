use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use ringfence_core::access::{Permission, Principal};
use ringfence_core::call::{CallStatus, FieldError};
use ringfence_core::phone::{parse_caller_number, parse_e164};
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, CallId};
use ringfence_store::{CallQuery, IngestPolicy};

use super::{check_account, page_limit, path_id};
use crate::auth::Auth;
use crate::body::JsonBody;
use crate::dto::{BatchInput, BatchOutput, CallInput, CallList, CallOutput, Redelivered};
use crate::error::{ApiError, ApiResult, Code};
use crate::state::AppState;

const DEFAULT_LIMIT: u32 = 50;

/// Ingest one call.
///
/// Idempotent on `external_id`: a re-delivery answers 200 and changes nothing. A token that
/// may read the call log gets the stored call; an ingest token only its id
/// (`{"id", "status": "already_stored"}`), since external ids are easy to guess.
#[utoipa::path(post, path = "/api/v1/accounts/{account_id}/calls", tag = "calls",
    params(("account_id" = String, Path, description = "account id")),
    request_body = CallInput,
    responses(
        (status = 201, description = "stored, durably", body = CallOutput),
        (status = 200, description = "already stored under this external_id: the stored call, or for an ingest token only its id", content(
            (CallOutput = "application/json"),
            (Redelivered = "application/json"),
        )),
        (status = 403, extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such account in the token's scope", extensions(("x-error-codes" = json!([Code::NotFound])))),
        (status = 422, extensions(("x-error-codes" = json!([Code::InvalidPhoneNumber, Code::TooLong, Code::StartInFuture, Code::UnknownCategory, Code::UnknownNoticeVersion, Code::ConsentRequired])))),
    ),
    security(("bearer" = [])))]
pub async fn create_call(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(account): Path<String>,
    JsonBody(input): JsonBody<CallInput>,
) -> ApiResult<Response> {
    let account: AccountId = path_id(&account, "account")?;
    let tenant = state.tenant(account).await?;
    check_account(&principal, Permission::Ingest, &tenant)?;
    let mut call = input.into_domain("").map_err(ApiError::fields)?;
    if let Some(v) = &mut call.visitor {
        state.locate(v);
    }
    let policy = IngestPolicy {
        collection: state.collection(account).await?,
        actor: principal.actor(),
    };
    let (ingested, stored) = state
        .log
        .ingest_call(account, call, &policy)
        .await
        .map_err(|e| ApiError::from(e).for_single_call())?;
    let outcome = ingested.outcome;
    metrics::counter!("ringfence_calls_ingested_total").increment(u64::from(outcome.is_created()));
    if !outcome.is_created() && principal.check(Permission::ReadCalls, &tenant).is_err() {
        // A re-delivery tells an ingest token nothing it did not send in this request.
        let answer = Redelivered {
            id: stored.id.to_string(),
            status: "already_stored",
        };
        return Ok((StatusCode::OK, Json(answer)).into_response());
    }
    let status = if outcome.is_created() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    // An ingest-only token sent the data; it may read back what it just stored, not the log.
    let mut output = CallOutput::from_call(&stored, principal.personal_data);
    output.dropped = Some(ingested.dropped);
    Ok((status, Json(output)).into_response())
}

/// Ingest a batch of calls, atomically.
///
/// The batch is validated whole first: if any call is invalid, the answer is 422 with one
/// `details` entry per problem (`calls[3].caller_number`, …) and nothing is stored. A valid
/// batch is stored in one transaction. Calls whose `external_id` is already stored are not
/// stored again; their existing id is returned in place. A batch holds 1 to 5,000 calls
/// and at most 32 MiB; a larger one is a 413 (`payload_too_large`): split it.
#[utoipa::path(post, path = "/api/v1/accounts/{account_id}/calls/batch", tag = "calls",
    params(("account_id" = String, Path, description = "account id")),
    request_body = BatchInput,
    responses(
        (status = 201, description = "stored, durably; ids in input order", body = BatchOutput),
        (status = 200, description = "every call was already stored", body = BatchOutput),
        (status = 403, extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such account in the token's scope", extensions(("x-error-codes" = json!([Code::NotFound])))),
        (status = 422, description = "one or more invalid calls, one `details` entry per problem; nothing stored", extensions(("x-error-codes" = json!([Code::InvalidPhoneNumber, Code::TooLong, Code::StartInFuture, Code::UnknownCategory, Code::UnknownNoticeVersion, Code::ConsentRequired, Code::DuplicateExternalId])))),
    ),
    security(("bearer" = [])))]
pub async fn create_batch(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(account): Path<String>,
    JsonBody(input): JsonBody<BatchInput>,
) -> ApiResult<(StatusCode, Json<BatchOutput>)> {
    let account: AccountId = path_id(&account, "account")?;
    let tenant = state.tenant(account).await?;
    check_account(&principal, Permission::Ingest, &tenant)?;
    if input.calls.is_empty() {
        return Err(ApiError::fields(vec![FieldError::new(
            "calls",
            "invalid_field",
            "the batch is empty",
        )]));
    }
    if input.calls.len() > state.limits.max_batch_calls {
        return Err(ApiError::new(
            Code::PayloadTooLarge,
            format!(
                "a batch holds at most {} calls; split it into several batches",
                state.limits.max_batch_calls
            ),
        ));
    }
    // Validation costs ~10 µs a call (phone numbers): a large batch goes off the runtime.
    let geo_state = state.clone();
    let validated = tokio::task::spawn_blocking(move || {
        let mut calls = Vec::with_capacity(input.calls.len());
        let mut errors = Vec::new();
        for (i, c) in input.calls.into_iter().enumerate() {
            match c.into_domain(&format!("calls[{i}].")) {
                Ok(mut call) => {
                    if let Some(v) = &mut call.visitor {
                        geo_state.locate(v);
                    }
                    calls.push(call)
                }
                Err(e) => errors.extend(e),
            }
        }
        if errors.is_empty() {
            Ok(calls)
        } else {
            Err(errors)
        }
    })
    .await
    .map_err(|e| ApiError::internal(&e))?;
    let calls = validated.map_err(ApiError::fields)?;
    let policy = IngestPolicy {
        collection: state.collection(account).await?,
        actor: principal.actor(),
    };
    let ingested = state.log.ingest_calls(account, calls, &policy).await?;
    let created = ingested.iter().filter(|i| i.outcome.is_created()).count();
    metrics::counter!("ringfence_calls_ingested_total").increment(created as u64);
    let status = if created > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(BatchOutput {
            ids: ingested
                .iter()
                .map(|i| i.outcome.id().to_string())
                .collect(),
            created,
            dropped: ingested.into_iter().map(|i| i.dropped).collect(),
        }),
    ))
}

/// Filters of the call log.
#[derive(Debug, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct CallFilters {
    /// Calls that started at or after this RFC 3339 instant.
    #[param(
        pattern = r"^((199[0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))?$"
    )]
    from: Option<String>,
    /// Calls that started before this RFC 3339 instant.
    #[param(
        pattern = r"^((199[0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))?$"
    )]
    to: Option<String>,
    /// E.164 tracking number.
    #[param(pattern = r"^(\+[1-9][0-9]{6,14})?$")]
    tracking_number: Option<String>,
    source: Option<String>,
    /// A call status (queued, initiated, ringing, in-progress, completed, busy, no-answer,
    /// canceled, failed).
    #[param(
        pattern = "^(queued|initiated|ringing|in-progress|completed|busy|no-answer|canceled|failed)?$"
    )]
    status: Option<String>,
    /// `true` or `false`.
    redacted: Option<bool>,
    /// E.164 caller number (matched through the blind index; the number is not stored).
    #[param(pattern = r"^(\+[1-9][0-9]{6,14})?$")]
    caller_number: Option<String>,
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

fn encode_cursor(at: Timestamp, id: CallId) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}.{}", at.millis(), id))
}

fn decode_cursor(text: &str) -> ApiResult<(Timestamp, CallId)> {
    let bad = || {
        ApiError::new(
            Code::InvalidCursor,
            "cursor is not one this server gave out; start again without it",
        )
    };
    let raw = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (millis, id) = raw.split_once('.').ok_or_else(bad)?;
    Ok((
        Timestamp::from_millis(millis.parse().map_err(|_| bad())?),
        id.parse().map_err(|_| bad())?,
    ))
}

fn query_error(message: impl Into<String>) -> ApiError {
    ApiError::new(Code::InvalidQuery, message)
}

/// List an account's calls, newest first.
#[utoipa::path(get, path = "/api/v1/accounts/{account_id}/calls", tag = "calls",
    params(("account_id" = String, Path, description = "account id"), CallFilters),
    responses(
        (status = 200, body = CallList),
        (status = 400, extensions(("x-error-codes" = json!([Code::InvalidQuery, Code::InvalidCursor, Code::InvalidPhoneNumber])))),
        (status = 403, description = "the role may not read the call log, or filters by caller_number without access to personal data", extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such account in the token's scope", extensions(("x-error-codes" = json!([Code::NotFound])))),
    ),
    security(("bearer" = [])))]
pub async fn list_calls(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(account): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<CallList>> {
    let query = call_query(&state, &principal, &account, raw.as_deref()).await?;
    let page = state.log.calls(query).await?;
    Ok(Json(CallList {
        items: page
            .calls
            .iter()
            .map(|c| CallOutput::from_call(c, principal.personal_data))
            .collect(),
        next_cursor: page.next.map(|(at, id)| encode_cursor(at, id)),
    }))
}

/// How many of an account's calls match the list's filters (its `cursor` and `limit` are
/// read and ignored): the same access checks and validation as [`list_calls`].
pub async fn count_calls(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(account): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<u64> {
    let query = call_query(&state, &principal, &account, raw.as_deref()).await?;
    Ok(state.log.store().count_calls(query).await?)
}

/// The store query of the call list's parameters, once the principal may read the account.
async fn call_query(
    state: &AppState,
    principal: &Principal,
    account: &str,
    raw: Option<&str>,
) -> ApiResult<CallQuery> {
    let account: AccountId = path_id(account, "account")?;
    let tenant = state.tenant(account).await?;
    check_account(principal, Permission::ReadCalls, &tenant)?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|_| query_error("query string is not valid URL encoding"))?;
    let mut query = CallQuery {
        account_id: account,
        from: None,
        to: None,
        tracking_number: None,
        source: None,
        status: None,
        redacted: None,
        caller_bidx: None,
        after: None,
        limit: DEFAULT_LIMIT,
    };
    let mut seen: Vec<String> = Vec::new();
    for (key, value) in pairs {
        if seen.contains(&key) {
            return Err(query_error(format!("parameter `{key}` given twice")));
        }
        seen.push(key.clone());
        if value.is_empty() {
            continue;
        }
        match key.as_str() {
            "from" => {
                query.from = Some(
                    Timestamp::parse_rfc3339(&value)
                        .map_err(|e| query_error(format!("from: {e}")))?,
                )
            }
            "to" => {
                query.to = Some(
                    Timestamp::parse_rfc3339(&value)
                        .map_err(|e| query_error(format!("to: {e}")))?,
                )
            }
            "tracking_number" => {
                let n = parse_e164(&value).map_err(|e| {
                    ApiError::new(
                        Code::InvalidPhoneNumber,
                        format!("tracking_number is not a valid E.164 number ({e})"),
                    )
                    .with_status_400()
                })?;
                query.tracking_number = Some(n.as_str().to_owned());
            }
            "source" => query.source = Some(value),
            "status" => {
                query.status = Some(
                    CallStatus::parse(&value)
                        .ok_or_else(|| query_error("status: not a call status"))?,
                )
            }
            "redacted" => {
                query.redacted = Some(match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(query_error("redacted: must be true or false")),
                })
            }
            "caller_number" => {
                // Without personal data a reader sees masked numbers; finding calls by a
                // number would tell them whether it called.
                if !principal.personal_data {
                    return Err(ApiError::new(
                        Code::Forbidden,
                        "caller_number: filtering by a caller's number needs access to personal data",
                    ));
                }
                let number = parse_caller_number(&value).ok().flatten().ok_or_else(|| {
                    ApiError::new(
                        Code::InvalidPhoneNumber,
                        "caller_number is not a valid E.164 number",
                    )
                    .with_status_400()
                })?;
                query.caller_bidx = Some(state.log.blind_index(account, &number).await?);
            }
            "limit" => query.limit = page_limit(Some(&value), DEFAULT_LIMIT)?,
            "cursor" => query.after = Some(decode_cursor(&value)?),
            other => return Err(query_error(format!("unknown parameter `{other}`"))),
        }
    }
    Ok(query)
}

/// One call.
#[utoipa::path(get, path = "/api/v1/calls/{call_id}", tag = "calls",
    params(("call_id" = String, Path, description = "call id")),
    responses(
        (status = 200, body = CallOutput),
        (status = 403, extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such call in the token's scope", extensions(("x-error-codes" = json!([Code::NotFound])))),
    ),
    security(("bearer" = [])))]
pub async fn get_call(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(call): Path<String>,
) -> ApiResult<Json<CallOutput>> {
    let (row, _) = state
        .call_for(&principal, &call, Permission::ReadCalls)
        .await?;
    let call = state
        .log
        .call(row.id)
        .await?
        .ok_or_else(|| ApiError::not_found("call"))?;
    Ok(Json(CallOutput::from_call(&call, principal.personal_data)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_rejected() {
        let id = CallId::generate();
        let at = Timestamp::from_millis(1_764_000_000_123);
        assert_eq!(decode_cursor(&encode_cursor(at, id)).unwrap(), (at, id));
        for bad in [
            "",
            "!!",
            "bm90LWEtY3Vyc29y",
            &URL_SAFE_NO_PAD.encode("12.not-a-uuid"),
        ] {
            assert_eq!(
                decode_cursor(bad).unwrap_err().code,
                Code::InvalidCursor,
                "{bad}"
            );
        }
    }
}
