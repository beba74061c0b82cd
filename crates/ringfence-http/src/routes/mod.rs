//! Handlers, one module per resource.

pub mod calls;
pub mod ops;
pub mod recordings;
pub mod sessions;

use ringfence_core::ids::InvalidId;

use crate::error::{ApiError, ApiResult};

/// Parses an id from a path: an id that does not parse cannot exist.
pub(crate) fn path_id<T: std::str::FromStr<Err = InvalidId>>(text: &str, what: &str) -> ApiResult<T> {
    text.parse().map_err(|_| ApiError::not_found(what))
}
