use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use ringfence_core::AccountId;
use ringfence_core::access::Permission;

use super::{check_account, path_id};
use crate::auth::Auth;
use crate::body::JsonBody;
use crate::dto::{IdOutput, SessionInput};
use crate::error::{ApiError, ApiResult, Code};
use crate::state::AppState;

/// Record a visitor session (a web visit), to be linked to calls by `session_id`.
#[utoipa::path(post, path = "/api/v1/accounts/{account_id}/sessions", tag = "sessions",
    params(("account_id" = String, Path, description = "account id")),
    request_body = SessionInput,
    responses(
        (status = 201, body = IdOutput),
        (status = 200, description = "already stored under this external_id", body = IdOutput),
        (status = 403, extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such account in the token's scope", extensions(("x-error-codes" = json!([Code::NotFound])))),
        (status = 422, extensions(("x-error-codes" = json!([Code::TooLong, Code::StartInFuture])))),
    ),
    security(("bearer" = [])))]
pub async fn create_session(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(account): Path<String>,
    JsonBody(input): JsonBody<SessionInput>,
) -> ApiResult<(StatusCode, Json<IdOutput>)> {
    let account: AccountId = path_id(&account, "account")?;
    let tenant = state.tenant(account).await?;
    check_account(&principal, Permission::Ingest, &tenant)?;
    let mut session = input.into_domain().map_err(ApiError::fields)?;
    state.locate(&mut session.visitor);
    let collection = state.collection(account).await?;
    let (outcome, dropped) = state
        .log
        .ingest_session(account, session, &collection)
        .await?;
    let status = if outcome.is_created() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(IdOutput {
            id: outcome.id().to_string(),
            created: outcome.is_created(),
            dropped,
        }),
    ))
}
