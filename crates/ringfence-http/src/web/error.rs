//! Failures of a page: the API's error (same code, same status), shown as a page.
//!
//! A handler's error is rendered without knowing who is signed in; [`with_navigation`]
//! (a layer over every page) renders it again with the signed-in user's navigation, and
//! words a refusal for that user rather than for a "token".

use askama::Template;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

use super::pages::Chrome;
use super::present::{filters, label};
use super::session::WebUser;
use crate::error::{ApiError, Code};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    code: &'a str,
    message: &'a str,
    signed_in: bool,
    /// The signed-in user's navigation, when the page knows who is looking.
    chrome: Option<Chrome>,
}

/// What an error page said, kept on its response so [`with_navigation`] can say it again
/// with the navigation.
#[derive(Clone)]
struct Shown {
    status: StatusCode,
    code: String,
    message: String,
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
    let title = title_of(status);
    let page = ErrorPage {
        title,
        code,
        message,
        signed_in,
        chrome: None,
    };
    let mut response = match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, message.to_owned()).into_response(),
    };
    if signed_in {
        response.extensions_mut().insert(Shown {
            status,
            code: code.to_owned(),
            message: message.to_owned(),
        });
    }
    response
}

/// Re-renders a signed-in user's error page with their navigation (only the pages their
/// role may open) and says who is refused. Only error pages pay for the session lookup.
pub async fn with_navigation(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers().clone();
    let response = next.run(request).await;
    let Some(shown) = response.extensions().get::<Shown>().cloned() else {
        return response;
    };
    let Some(user) = WebUser::peek(&state, &headers).await else {
        return response;
    };
    let message = if shown.status == StatusCode::FORBIDDEN && shown.message.contains("token") {
        format!(
            "You are signed in as {} ({}), and that role may not open this page or do this. An admin of the account can.",
            user.name,
            label(user.principal.role.as_str())
        )
    } else {
        shown.message.clone()
    };
    let account = match user.principal.scope {
        ringfence_core::access::Scope::Account { account, .. } => Some(account),
        _ => None,
    };
    let page = ErrorPage {
        title: title_of(shown.status),
        code: &shown.code,
        message: &message,
        signed_in: true,
        chrome: Some(Chrome::new(&user, account)),
    };
    match page.render() {
        Ok(html) => {
            let (mut parts, _) = response.into_parts();
            parts.headers.remove(axum::http::header::CONTENT_LENGTH);
            Response::from_parts(parts, axum::body::Body::from(html))
        }
        Err(_) => response,
    }
}

fn title_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::UNAUTHORIZED => "Sign in first",
        s if s.is_server_error() => "Something went wrong",
        _ => "That did not work",
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status.unwrap_or(self.0.code.status());
        error_page(status, self.0.code.as_str(), &self.0.message, true)
    }
}
