//! How pages say things to people: readable labels for the API's enum values, times the
//! browser shows in the viewer's zone (UTC on hover), and people named by their e-mail
//! address where the viewer may see it — never a bare `user:<uuid>`.
//!
//! Times are sent as `<time datetime="…UTC…">` with the UTC text inside, so a page reads
//! correctly without script; `local-time.js` (our own file: the CSP allows no inline script)
//! rewrites the text in the browser's time zone and keeps UTC in the `title`.

use std::collections::HashMap;

use ringfence_core::access::{Principal, Role, Scope};
use ringfence_store::UserRecord;

use crate::state::AppState;

/// The readable label of an enum value (`google_ads` → "Google Ads", `caller_identity` →
/// "Caller identity"). Known values have their own wording; any other is spelt out from its
/// snake_case, dotted or dashed parts, so a new value never shows raw.
pub fn label(value: &str) -> String {
    let known = match value {
        // Tracking sources.
        "google_ads" => "Google Ads",
        "bing_ads" | "microsoft_ads" => "Microsoft Ads (Bing)",
        "facebook_ads" | "meta_ads" => "Meta Ads",
        "linkedin_ads" => "LinkedIn Ads",
        "tiktok_ads" => "TikTok Ads",
        "google_organic" | "organic" => "Organic search",
        "google_my_business" | "google_business_profile" => "Google Business Profile",
        "direct" => "Direct",
        "referral" => "Referral",
        "email" => "E-mail",
        "print" => "Print",
        // Call statuses and directions.
        "in-progress" => "In progress",
        "no-answer" => "No answer",
        "canceled" => "Cancelled",
        "outbound-api" => "Outbound (API)",
        "outbound-dial" => "Outbound (dialled)",
        // Data categories.
        "call_facts" => "Call facts",
        "caller_identity" => "Caller identity",
        "caller_location" => "Caller location",
        "interaction_content" => "Notes, tags and form data",
        "visitor" => "Visitor data",
        // Redaction reasons.
        "manual" => "By hand",
        "caller" => "Caller redaction",
        "retention" => "Automatic redaction (retention)",
        "consent_withdrawn" => "Consent withdrawn",
        "forget_list" => "Caller asked to be forgotten",
        // Roles.
        "admin" => "Installation admin",
        "agency_admin" => "Agency admin",
        "account_admin" => "Account admin",
        "analyst" => "Analyst",
        "ingest" => "Ingest only",
        // Recording and IP modes, scopes, consent.
        "opt_in" => "Only with consent",
        "announce" => "After a notice",
        "gdpr" => "Callers in GDPR scope",
        "everyone" => "Every caller",
        "ivr_keypress" => "IVR key press",
        "web_form" => "Web form",
        "api" => "API",
        // Checklist states.
        "pass" => "Pass",
        "warn" => "Warning",
        "fail" => "Fail",
        // Journal actions whose spelling out would read oddly.
        "call.created" => "Call received",
        "caller.erased" => "Caller erased",
        "user.add_existing_address" => "User added (address already known)",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_owned();
    }
    let words: Vec<&str> = value
        .split(['_', '.', '-', ' '])
        .filter(|w| !w.is_empty())
        .collect();
    let mut out = words.join(" ");
    if let Some(first) = out.get(..1) {
        out = first.to_uppercase() + &out[1..];
    }
    out
}

/// A timestamp as the browser shows it: `YYYY-MM-DD HH:MM UTC` in a `<time>` element that
/// `local-time.js` turns into the viewer's zone. Anything that is not an RFC 3339 UTC
/// instant is shown escaped, as it is.
pub fn moment_html(rfc3339: &str) -> String {
    let plain = rfc3339.len() >= 16
        && rfc3339
            .bytes()
            .all(|b| b.is_ascii_digit() || b"-:.TZ".contains(&b));
    if !plain {
        return askama::filters::escape(rfc3339, askama::filters::Html)
            .map(|e| e.to_string())
            .unwrap_or_default();
    }
    let day = &rfc3339[..10];
    let minute = &rfc3339[11..16];
    let second = rfc3339.get(11..19).unwrap_or(minute);
    format!("<time datetime=\"{rfc3339}\" title=\"{day} {second} UTC\">{day} {minute} UTC</time>")
}

/// The template filters: `{{ value|label }}`, `{{ at|moment }}`.
pub mod filters {
    use askama::Values;
    use askama::filters::MaybeSafe;

    #[askama::filter_fn]
    pub fn label<T: std::fmt::Display>(value: T, _: &dyn Values) -> askama::Result<String> {
        Ok(super::label(&value.to_string()))
    }

    #[askama::filter_fn]
    pub fn moment<T: std::fmt::Display>(
        value: T,
        _: &dyn Values,
    ) -> askama::Result<MaybeSafe<String>> {
        Ok(MaybeSafe::Safe(super::moment_html(&value.to_string())))
    }
}

/// Who did something, as the journal and the pages name them: the actors of one page,
/// resolved once. A user is named by e-mail address when the viewer may see personal data
/// and manages that user's scope (their own, or one below it); otherwise by role and a
/// short id. Addresses are opened for the page only and never logged.
pub struct People {
    names: HashMap<String, String>,
}

impl People {
    /// Resolves every user (and token) among `actors` for `viewer`.
    pub async fn resolve<'a>(
        state: &AppState,
        viewer: &Principal,
        actors: impl IntoIterator<Item = &'a str>,
    ) -> Result<People, ringfence_store::LogError> {
        let mut names = HashMap::new();
        for actor in actors {
            if names.contains_key(actor) {
                continue;
            }
            let name = match actor.split_once(':') {
                Some(("user", id)) => match id.parse() {
                    Ok(id) => match state.log.store().user(id).await? {
                        Some(user) => user_name(state, viewer, &user).await?,
                        None => format!("Removed user {}", short(id_text(actor))),
                    },
                    Err(_) => actor.to_owned(),
                },
                Some(("token", id)) => match id.parse() {
                    Ok(id) => match state.log.store().token(id).await? {
                        Some(token) => format!(
                            "API token {} ({})",
                            short(id_text(actor)),
                            label(token.role.as_str())
                        ),
                        None => format!("API token {}", short(id_text(actor))),
                    },
                    Err(_) => actor.to_owned(),
                },
                _ => system_actor(actor),
            };
            names.insert(actor.to_owned(), name);
        }
        Ok(People { names })
    }

    /// The name of an actor resolved before (the actor itself otherwise).
    pub fn name(&self, actor: &str) -> String {
        self.names
            .get(actor)
            .cloned()
            .unwrap_or_else(|| system_actor(actor))
    }
}

fn id_text(actor: &str) -> &str {
    actor.split_once(':').map_or(actor, |(_, id)| id)
}

/// The first block of a UUID: enough to tell people apart on a page.
fn short(id: &str) -> String {
    format!("{}…", id.split('-').next().unwrap_or(id))
}

/// Actors that are not a user or a token: the CLI, Twilio's callbacks, jobs.
fn system_actor(actor: &str) -> String {
    match actor {
        "cli" => "The operator (command line)".to_owned(),
        "demo" => "The demo generator".to_owned(),
        "restore" => "A restore from backup".to_owned(),
        "twilio" => "Twilio callback".to_owned(),
        "outbox" => "Ringfence (recipient deliveries)".to_owned(),
        "retention" => "Ringfence (automatic redaction)".to_owned(),
        "forget_list" => "Ringfence (forget list)".to_owned(),
        other => label(other),
    }
}

/// Whether `viewer` manages users of `scope`: an admin of that scope or one above it.
fn manages(viewer: &Principal, scope: &Scope) -> bool {
    matches!(
        viewer.role,
        Role::Admin | Role::AgencyAdmin | Role::AccountAdmin
    ) && viewer.check_access(scope).is_ok()
}

/// A user as `viewer` may see them: the address, or the role and a short id.
pub async fn user_name(
    state: &AppState,
    viewer: &Principal,
    user: &UserRecord,
) -> Result<String, ringfence_store::LogError> {
    let own = viewer.user_id == Some(user.id);
    if (own || (viewer.personal_data && manages(viewer, &user.scope)))
        && let Some(email) = state.log.user_email(user).await?
    {
        return Ok(email.to_string());
    }
    Ok(format!(
        "{} {}",
        label(user.role.as_str()),
        short(&user.id.to_string())
    ))
}

#[cfg(test)]
mod tests {
    use super::{label, moment_html};

    #[test]
    fn enum_values_read_as_words_and_unknown_ones_are_spelt_out() {
        for (value, expected) in [
            ("google_ads", "Google Ads"),
            ("caller_identity", "Caller identity"),
            ("no-answer", "No answer"),
            ("consent_withdrawn", "Consent withdrawn"),
            ("account_admin", "Account admin"),
            ("call.legal_hold_set", "Call legal hold set"),
            ("a_new_source", "A new source"),
            ("", ""),
        ] {
            assert_eq!(label(value), expected, "{value}");
        }
    }

    #[test]
    fn instants_become_time_elements_and_anything_else_is_escaped() {
        assert_eq!(
            moment_html("2026-11-28T10:00:05.123Z"),
            "<time datetime=\"2026-11-28T10:00:05.123Z\" title=\"2026-11-28 10:00:05 UTC\">2026-11-28 10:00 UTC</time>"
        );
        assert_eq!(
            moment_html("<script>2026-11-28T10:00:00Z"),
            "&#60;script&#62;2026-11-28T10:00:00Z"
        );
        assert_eq!(moment_html("soon"), "soon");
    }
}
