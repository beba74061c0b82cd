//! Static assets embedded in the binary: htmx (0BSD, fetched by `scripts/fetch-htmx` and
//! committed), our stylesheet and `local-time.js` (times in the viewer's zone). Their names carry a version, so they are cached for a year.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const HTMX: &[u8] = include_bytes!("../../assets/htmx.min.js");
const CSS: &[u8] = include_bytes!("../../assets/app.css");
const LOCAL_TIME: &[u8] = include_bytes!("../../assets/local-time.js");

/// The asset names pages link to; bump the suffix when a file changes.
pub const HTMX_NAME: &str = "htmx-2.0.11.min.js";
pub const CSS_NAME: &str = "app-4.css";
pub const LOCAL_TIME_NAME: &str = "local-time-1.js";

pub async fn asset(Path(name): Path<String>) -> Response {
    let (body, content_type) = match name.as_str() {
        HTMX_NAME => (HTMX, "text/javascript; charset=utf-8"),
        CSS_NAME => (CSS, "text/css; charset=utf-8"),
        LOCAL_TIME_NAME => (LOCAL_TIME, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
