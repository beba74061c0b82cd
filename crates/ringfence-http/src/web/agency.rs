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
use super::present::filters;
use super::session::{WebUser, field};
use crate::auth::Auth;
use crate::body::JsonBody;
use crate::error::Code;
use crate::routes::agencies::{self, AgencySettings, AgencySettingsUpdate};
use crate::routes::path_id;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "agency_settings.html")]
struct AgencySettingsPage {
    chrome: Chrome,
    agency_id: String,
    settings: AgencySettings,
    saved: bool,
    /// A ceiling waiting for confirmation: what it would redact at once, per account.
    pending: Option<PendingCeiling>,
}

struct PendingCeiling {
    redaction_enabled: bool,
    max_retention_days: String,
    total: u64,
    accounts: Vec<(String, u64)>,
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
        pending: None,
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
        let redaction_enabled = field(&form, "redaction_enabled") == Some("on");
        let update = AgencySettingsUpdate {
            redaction_enabled: Some(redaction_enabled),
            max_retention_days: Some(max),
            confirm: field(&form, "confirm") == Some("yes"),
        };
        let saved = agencies::put_settings(
            State(state.clone()),
            Auth(user.principal.clone()),
            Path(agency.clone()),
            JsonBody(update),
        )
        .await;
        let settings = match saved {
            Ok(Json(settings)) => settings,
            Err(e) if e.code == Code::ConfirmationRequired => {
                // Nothing was changed: show what the ceiling would redact, per account,
                // and ask again.
                let Json(settings) = agencies::get_settings(
                    State(state.clone()),
                    Auth(user.principal.clone()),
                    Path(agency.clone()),
                )
                .await?;
                let counts = e.would_redact.unwrap_or_default();
                let mut accounts = Vec::new();
                for account in state
                    .log
                    .store()
                    .list_accounts(Some(path_id(&agency, "agency")?))
                    .await?
                {
                    if let Some(n) = counts.get(&account.id.to_string()) {
                        accounts.push((account.name, *n));
                    }
                }
                return render(&AgencySettingsPage {
                    chrome: Chrome::new(&user, None),
                    agency_id: agency,
                    settings,
                    saved: false,
                    pending: Some(PendingCeiling {
                        redaction_enabled,
                        max_retention_days: max.map(|d| d.to_string()).unwrap_or_default(),
                        total: counts.values().sum(),
                        accounts,
                    }),
                });
            }
            Err(e) => return Err(e.into()),
        };
        render(&AgencySettingsPage {
            chrome: Chrome::new(&user, None),
            agency_id: agency,
            settings,
            saved: true,
            pending: None,
        })
    };
    run.await.map_err(IntoResponse::into_response)
}
