//! Failures of a page: the API's error (same code, same status), shown as a page.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::error::{ApiError, Code};

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    code: &'a str,
    message: &'a str,
    signed_in: bool,
}

/// An error shown as a page, carrying the API's stable code and status.
pub struct PageError(pub ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError(e)
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> Self {
        PageError(ApiError::internal(&e))
    }
}

impl From<ringfence_store::StoreError> for PageError {
    fn from(e: ringfence_store::StoreError) -> Self {
        PageError(e.into())
    }
}

impl From<ringfence_store::LogError> for PageError {
    fn from(e: ringfence_store::LogError) -> Self {
        PageError(e.into())
    }
}

pub type PageResult<T> = Result<T, PageError>;

impl PageError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        PageError(ApiError::new(code, message))
    }
}

/// The page every failure renders: a heading, the message and the stable code.
pub fn error_page(status: StatusCode, code: &str, message: &str, signed_in: bool) -> Response {
    let title = match status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::UNAUTHORIZED => "Sign in first",
        s if s.is_server_error() => "Something went wrong",
        _ => "That did not work",
    };
    let page = ErrorPage {
        title,
        code,
        message,
        signed_in,
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, message.to_owned()).into_response(),
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status.unwrap_or(self.0.code.status());
        error_page(status, self.0.code.as_str(), &self.0.message, true)
    }
}
