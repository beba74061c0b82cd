//! Bearer tokens: `Authorization: Bearer rf_…`. Only the token's SHA-256 is stored.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use ringfence_core::access::Principal;
use ringfence_core::timestamp::Timestamp;
use ringfence_crypto::hash_api_token;

use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated principal of a request.
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(ApiError::unauthorized)?;
        let (scheme, token) = header
            .trim()
            .split_once(' ')
            .ok_or_else(ApiError::unauthorized)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() || token.len() > 256 {
            return Err(ApiError::unauthorized());
        }
        let hash = hash_api_token(token.trim());
        let record = state
            .token(hash)
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        let now = Timestamp::now();
        if record.revoked_at.is_some_and(|at| at <= now)
            || record.expires_at.is_some_and(|at| at <= now)
        {
            return Err(ApiError::unauthorized());
        }
        state.token_used(hash, &record, now).await;
        Ok(Auth(Principal {
            token_id: Some(record.id),
            user_id: None,
            role: record.role,
            scope: record.scope,
            personal_data: record.personal_data,
        }))
    }
}
