//! Handlers, one module per resource.

pub mod access;
pub mod accounts;
pub mod agencies;
pub mod audit;
pub mod calls;
pub mod checklist;
pub mod consents;
pub mod export;
pub mod legal_hold;
pub mod ops;
pub mod recipients;
pub mod recordings;
pub mod redaction;
pub mod sessions;
pub mod twilio;

use ringfence_core::ids::InvalidId;

use ringfence_core::access::{Denied, Permission, Principal, Tenant};

use crate::error::{ApiError, ApiResult, Code};

/// The largest page any list gives: every list's `limit` is 1 to this.
pub(crate) const MAX_PAGE: u32 = 500;

/// A list's `limit` parameter, the one rule of every list: a whole number from 1 to
/// [`MAX_PAGE`]; absent or empty, `default`. Anything else is a 400, never clamped.
pub(crate) fn page_limit(value: Option<&str>, default: u32) -> ApiResult<u32> {
    match value {
        None | Some("") => Ok(default),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| {
                ApiError::new(
                    Code::InvalidQuery,
                    format!("limit: must be a whole number from 1 to {MAX_PAGE}"),
                )
            }),
    }
}

/// Parses an id from a path: an id that does not parse cannot exist.
pub(crate) fn path_id<T: std::str::FromStr<Err = InvalidId>>(
    text: &str,
    what: &str,
) -> ApiResult<T> {
    text.parse().map_err(|_| ApiError::not_found(what))
}

/// Checks a principal on an account's route. An account it cannot see is answered exactly
/// like an account that does not exist.
pub(crate) fn check_account(
    principal: &Principal,
    permission: Permission,
    tenant: &Tenant,
) -> ApiResult<()> {
    principal.check(permission, tenant).map_err(|d| match d {
        Denied::NotFound => ApiError::not_found("account"),
        other => other.into(),
    })
}
