//! An agency's settings, for its agency admins (and installation admins): whether its
//! accounts may redact, and the longest retention they may set.

use askama::Template;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::error::{PageError, PageResult};
use super::pages::{Chrome, render};
use super::session::{WebUser, field};
use crate::auth::Auth;
use crate::body::JsonBody;
use crate::error::Code;
use crate::routes::agencies::{self, AgencySettings, AgencySettingsUpdate};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "agency_settings.html")]
struct AgencySettingsPage {
    chrome: Chrome,
    agency_id: String,
    settings: AgencySettings,
    saved: bool,
}

/// The agency's settings, from the API's handler (which checks the role and the tenant).
pub async fn settings(
    State(state): State<AppState>,
    user: WebUser,
    Path(agency): Path<String>,
) -> PageResult<Response> {
    let Json(settings) = agencies::get_settings(
        State(state),
        Auth(user.principal.clone()),
        Path(agency.clone()),
    )
    .await?;
    render(&AgencySettingsPage {
        chrome: Chrome::new(&user, None),
        agency_id: agency,
        settings,
        saved: false,
    })
}

/// Saves both settings through the API's handler (journaled there).
pub async fn save(
    State(state): State<AppState>,
    user: WebUser,
    Path(agency): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let form = user.form(&headers, &body)?;
    let run = async {
        let max = match field(&form, "max_retention_days").map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(text.parse::<u32>().map_err(|_| {
                PageError::new(
                    Code::InvalidField,
                    "max_retention_days: a whole number of days, or empty for no limit",
                )
            })?),
        };
        let update = AgencySettingsUpdate {
            redaction_enabled: Some(field(&form, "redaction_enabled") == Some("on")),
            max_retention_days: Some(max),
        };
        let Json(settings) = agencies::put_settings(
            State(state.clone()),
            Auth(user.principal.clone()),
            Path(agency.clone()),
            JsonBody(update),
        )
        .await?;
        render(&AgencySettingsPage {
            chrome: Chrome::new(&user, None),
            agency_id: agency,
            settings,
            saved: true,
        })
    };
    run.await.map_err(IntoResponse::into_response)
}
