//! The web interface speaks people's language: people by e-mail address, times for the
//! browser to show in its zone, readable labels, navigation that offers only what the role
//! may open, the journal newest first and paged, checklist fixes that link to the page that
//! fixes them, recipients managed on the settings page, and the call log counted and
//! downloaded as CSV.

use reqwest::StatusCode;
use reqwest::header::COOKIE;
use serde_json::json;

use ringfence_core::access::Role;
use ringfence_core::timestamp::Timestamp;
use ringfence_jobs::retention::{SweepOptions, sweep};

use crate::common::*;
use crate::web::{account_scope, csrf_of, sign_in, web_user};

const ADMIN: &str = "hana.admin@example.com";
const ANALYST: &str = "ivo.analyst@example.com";

/// The markup from the element with `id` up to `until`, for a focused assertion.
fn element<'a>(html: &'a str, id: &str, until: &str) -> &'a str {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element #{id}"));
    let rest = &html[start..];
    &rest[..rest.find(until).unwrap_or(rest.len())]
}

#[tokio::test]
async fn admins_see_users_journal_actors_and_hold_authors_by_e_mail_address_never_by_uuid() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let call = app.ingest(account, full_call(11)).await;
    web_user(
        &app,
        ADMIN,
        Role::AccountAdmin,
        account_scope(agency, account),
        true,
    )
    .await;
    web_user(
        &app,
        ANALYST,
        Role::Analyst,
        account_scope(agency, account),
        false,
    )
    .await;
    let admin = sign_in(&app, ADMIN).await;
    let (_, html) = admin.get(&format!("/ui/calls/{call}")).await;
    let csrf = csrf_of(&html);
    let (status, _) = admin
        .post(
            &format!("/ui/calls/{call}/legal-hold"),
            &[("csrf", &csrf), ("reason", "CASE-2026/17")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    // The call page names who placed the hold.
    let (_, html) = admin.get(&format!("/ui/calls/{call}")).await;
    let hold = element(&html, "legal-hold", "</div>");
    assert!(hold.contains(ADMIN), "{hold}");
    assert!(!hold.contains("user:"), "{hold}");
    assert!(element(&html, "signed-in-as", "</span>").contains(ADMIN));

    // The users page lists both users by address.
    let (status, html) = admin.get(&format!("/ui/accounts/{account}/users")).await;
    assert_eq!(status, StatusCode::OK);
    let table = element(&html, "users", "</table>");
    assert!(table.contains(ADMIN) && table.contains(ANALYST), "{table}");
    assert!(table.contains("Account admin") && table.contains("Analyst"));

    // The journal names the actor by address and the action in words.
    let (_, html) = admin.get("/ui/journal").await;
    let journal = &html[html.find("class=\"journal\"").unwrap()..];
    assert!(journal.contains(ADMIN), "the hold's actor is named");
    assert!(
        journal.contains("Call legal hold set"),
        "actions read as words"
    );
    assert!(
        !journal.contains("user:"),
        "no journal actor is shown as user:<uuid>"
    );

    // Nothing of that reaches the stored files in the clear.
    assert!(
        files_containing(&app.data_dir(), ADMIN.as_bytes()).is_empty(),
        "the address is sealed at rest"
    );
    app.stop().await;
}

#[tokio::test]
async fn times_are_sent_for_the_browsers_zone_with_utc_and_enum_values_read_as_words() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let mut call = full_call(12);
    call["started_at"] = json!("2026-11-20T09:05:00Z");
    call["status"] = json!("no-answer");
    let id = app.ingest(account, call).await;
    web_user(
        &app,
        ADMIN,
        Role::AccountAdmin,
        account_scope(agency, account),
        true,
    )
    .await;
    let admin = sign_in(&app, ADMIN).await;

    let (_, html) = admin.get(&format!("/ui/accounts/{account}/calls")).await;
    assert!(
        html.contains("<time datetime=\"2026-11-20T09:05:00")
            && html.contains("title=\"2026-11-20 09:05:00 UTC\""),
        "the time carries its instant and UTC on hover"
    );
    assert!(html.contains("/assets/local-time-1.js"));
    let row = &html[html.find("<tbody>").unwrap()..];
    assert!(row.contains("Google Ads") && !row.contains("google_ads"));
    assert!(row.contains("No answer") && !row.contains("no-answer"));

    let (_, html) = admin.get(&format!("/ui/calls/{id}")).await;
    let facts = &html[html.find("id=\"h-facts\"").unwrap()..];
    assert!(facts.contains("<dd>Inbound</dd>") && facts.contains("<dd>Google Ads</dd>"));

    // The script is served as our own file (the CSP allows no inline script).
    let r = app
        .client
        .get(app.url("/assets/local-time-1.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(r.text().await.unwrap().contains("time[datetime]"));
    app.stop().await;
}

#[tokio::test]
async fn an_analyst_is_offered_only_the_call_log_and_a_refusal_names_the_signed_in_user() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    web_user(
        &app,
        ANALYST,
        Role::Analyst,
        account_scope(agency, account),
        false,
    )
    .await;
    let analyst = sign_in(&app, ANALYST).await;

    let (_, html) = analyst.get(&format!("/ui/accounts/{account}/calls")).await;
    let nav = &html[html.find("<nav").unwrap()..html.find("</nav>").unwrap()];
    assert!(nav.contains("Call log"));
    for page in ["checklist", "settings", "users", "/ui/journal"] {
        assert!(!nav.contains(page), "the analyst is not offered {page}");
    }

    let (status, html) = analyst
        .get(&format!("/ui/accounts/{account}/settings"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("<nav"), "the refusal keeps the navigation");
    assert!(html.contains(&format!("/ui/accounts/{account}/calls")));
    let alert = element(&html, "signed-in-as", "</span>");
    assert!(alert.contains(ANALYST));
    let message = &html[html.find("role=\"alert\"").unwrap()..];
    let message = &message[..message.find("</p>").unwrap()];
    assert!(
        message.contains(ANALYST) && message.contains("Analyst"),
        "{message}"
    );
    assert!(!message.contains("token"), "{message}");
    app.stop().await;
}

#[tokio::test]
async fn the_journal_is_newest_first_in_pages_and_a_sweep_of_300_calls_shows_a_count() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let calls: Vec<_> = (0..300u16)
        .map(|n| {
            let mut c = full_call(n);
            c["started_at"] = json!("2026-01-05T10:00:00Z");
            c
        })
        .collect();
    let (status, body) = app
        .post(
            &app.admin,
            &format!("/api/v1/accounts/{account}/calls/batch"),
            json!({"calls": calls}),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let (status, body) = app
        .send(
            reqwest::Method::PUT,
            &app.admin,
            &format!("/api/v1/accounts/{account}/settings"),
            Some(json!({"auto_redact": {"after_days": 30}, "confirm": true})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    sweep(
        &app.resources.log,
        SweepOptions {
            now: Timestamp::now(),
            batch: 500,
            dry_run: false,
        },
        &mut |_| {},
    )
    .await
    .unwrap();
    // Sixty more entries after the sweep, so the sweep's entry is on the second page.
    for n in 0..60 {
        let (status, _) = app
            .post(
                &app.admin,
                &format!("/api/v1/accounts/{account}/notices"),
                json!({"category": "recording", "text": format!("This call is recorded (v{n}).")}),
            )
            .await;
        assert!(status.is_success());
    }
    web_user(
        &app,
        ADMIN,
        Role::AccountAdmin,
        account_scope(agency, account),
        true,
    )
    .await;
    let admin = sign_in(&app, ADMIN).await;

    let seqs = |html: &str| -> Vec<i64> {
        html.match_indices("<tr id=\"entry-")
            .map(|(i, m)| {
                let rest = &html[i + m.len()..];
                rest[..rest.find('"').unwrap()].parse().unwrap()
            })
            .collect()
    };
    let (_, first) = admin.get("/ui/journal").await;
    let page_one = seqs(&first);
    assert_eq!(page_one.len(), 50, "fifty entries a page");
    assert!(
        page_one.windows(2).all(|w| w[0] > w[1]),
        "newest first: {page_one:?}"
    );
    let newest = all_audit(&app, 500).await;
    let head = newest
        .iter()
        .filter_map(|e| e["seq"].as_i64())
        .max()
        .unwrap();
    let account_head = newest
        .iter()
        .filter(|e| e["account_id"] == account.to_string())
        .filter_map(|e| e["seq"].as_i64())
        .max()
        .unwrap();
    assert_eq!(page_one[0], account_head);
    assert!(page_one[0] <= head);

    let older = element(&first, "older-entries", "</a>");
    let href = older[older.find("href=\"").unwrap() + 6..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let (_, second) = admin.get(&href).await;
    let page_two = seqs(&second);
    assert!(!page_two.is_empty());
    assert!(
        page_two[0] < *page_one.last().unwrap(),
        "the next page continues below the first"
    );
    let both = format!("{first}{second}");
    assert!(
        both.contains("<summary>300 calls</summary>"),
        "the sweep's 300 call ids are folded behind their count"
    );
    assert!(both.contains("Ringfence (automatic redaction)"));
    app.stop().await;
}

#[tokio::test]
async fn checklist_fixes_link_to_the_page_and_control_that_fix_them() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    web_user(
        &app,
        ADMIN,
        Role::AccountAdmin,
        account_scope(agency, account),
        true,
    )
    .await;
    let admin = sign_in(&app, ADMIN).await;
    let (_, html) = admin
        .get(&format!("/ui/accounts/{account}/checklist"))
        .await;
    // A new account: automatic redaction is off and no recipient is registered.
    for (item, href) in [
        ("auto_redaction", "settings#after"),
        ("recipients", "settings#add-recipient"),
    ] {
        let row = element(&html, &format!("item-{item}"), "</tr>");
        assert!(
            row.contains(&format!("href=\"/ui/accounts/{account}/{href}\"")),
            "{item}: {row}"
        );
    }
    let table = &html[html.find("<tbody>").unwrap()..];
    assert!(
        !table.contains("ringfence ") && !table.contains("curl ") && !table.contains("PUT /api"),
        "no shell commands or API calls on the page"
    );
    // The controls the links point at exist.
    let (_, settings) = admin.get(&format!("/ui/accounts/{account}/settings")).await;
    for id in ["after", "add-recipient", "recording_gdpr", "visitor_ip"] {
        assert!(settings.contains(&format!("id=\"{id}\"")), "#{id}");
    }

    // The agency's roll-up names its accounts.
    let (_, rollup) = app
        .get(&app.admin, &format!("/api/v1/agencies/{agency}/checklist"))
        .await;
    assert!(rollup["accounts"].is_array());
    web_user(
        &app,
        "agency.admin@example.com",
        Role::AgencyAdmin,
        ringfence_core::access::Scope::Agency(agency),
        true,
    )
    .await;
    let agency_admin = sign_in(&app, "agency.admin@example.com").await;
    let (status, html) = agency_admin
        .get(&format!("/ui/agencies/{agency}/checklist"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let name = app
        .resources
        .log
        .store()
        .account(account)
        .await
        .unwrap()
        .unwrap()
        .name;
    let heading = element(&html, &format!("h-{account}"), "</h2>");
    assert!(heading.contains(&name), "{heading}");
    assert!(!heading.contains(&format!(">Account {account}")));
    app.stop().await;
}

#[tokio::test]
async fn recipients_are_added_edited_and_removed_on_the_settings_page() {
    let app = TestApp::spawn_with_local_relays().await;
    let (agency, account) = app.tenant().await;
    web_user(
        &app,
        ADMIN,
        Role::AccountAdmin,
        account_scope(agency, account),
        true,
    )
    .await;
    let admin = sign_in(&app, ADMIN).await;
    let page = format!("/ui/accounts/{account}/settings");
    let (_, html) = admin.get(&page).await;
    let csrf = csrf_of(&html);
    let list = || async {
        app.get(
            &app.admin,
            &format!("/api/v1/accounts/{account}/recipients"),
        )
        .await
        .1["items"]
            .as_array()
            .unwrap()
            .clone()
    };

    // A bad URL is refused with the API's code, and nothing is stored.
    let (status, body) = admin
        .post(
            &format!("/ui/accounts/{account}/recipients"),
            &[
                ("csrf", csrf.as_str()),
                ("name", "CRM"),
                ("url", "http://192.0.2.10/hook"),
                ("secret", "a-long-enough-secret"),
                ("events", "call.redacted"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(list().await.is_empty());

    let (status, html) = admin
        .post(
            &format!("/ui/accounts/{account}/recipients"),
            &[
                ("csrf", csrf.as_str()),
                ("name", "CRM"),
                ("url", "http://127.0.0.1:9/hook"),
                ("secret", "a-long-enough-secret"),
                ("events", "call.redacted"),
                ("events", "caller.erased"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Recipient added"));
    let items = list().await;
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0]["events"],
        json!(["call.redacted", "caller.erased"])
    );
    assert_eq!(items[0]["personal_data"], false);
    let id = items[0]["id"].as_str().unwrap().to_owned();

    let (status, html) = admin
        .post(
            &format!("/ui/accounts/{account}/recipients/{id}"),
            &[
                ("csrf", csrf.as_str()),
                ("action", "update"),
                ("name", "CRM (EU)"),
                ("url", "http://127.0.0.1:9/hook2"),
                ("secret", ""),
                ("events", "consent.withdrawn"),
                ("personal_data", "on"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("CRM (EU)"));
    let items = list().await;
    assert_eq!(items[0]["name"], "CRM (EU)");
    assert_eq!(items[0]["url"], "http://127.0.0.1:9/hook2");
    assert_eq!(items[0]["events"], json!(["consent.withdrawn"]));
    assert_eq!(items[0]["personal_data"], true);

    // Without the CSRF token nothing is removed.
    let (status, _) = admin
        .post(
            &format!("/ui/accounts/{account}/recipients/{id}"),
            &[("action", "remove")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(list().await[0]["removed_at"].is_null());
    let (status, html) = admin
        .post(
            &format!("/ui/accounts/{account}/recipients/{id}"),
            &[("csrf", csrf.as_str()), ("action", "remove")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(!list().await[0]["removed_at"].is_null());
    let journal = all_audit(&app, 500).await;
    for action in [
        "recipient.created",
        "recipient.updated",
        "recipient.removed",
    ] {
        assert!(
            journal.iter().any(|e| e["action"] == action),
            "{action} journaled"
        );
    }

    // An analyst cannot add one.
    web_user(
        &app,
        ANALYST,
        Role::Analyst,
        account_scope(agency, account),
        true,
    )
    .await;
    let analyst = sign_in(&app, ANALYST).await;
    let (_, html) = analyst.get(&format!("/ui/accounts/{account}/calls")).await;
    let (status, _) = analyst
        .post(
            &format!("/ui/accounts/{account}/recipients"),
            &[
                ("csrf", csrf_of(&html).as_str()),
                ("name", "Mine"),
                ("url", "http://127.0.0.1:9/x"),
                ("secret", "a-long-enough-secret"),
                ("events", "call.created"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(list().await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn the_legal_hold_form_comes_below_the_call_facts() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let call = app.ingest(account, full_call(13)).await;
    web_user(
        &app,
        ADMIN,
        Role::AccountAdmin,
        account_scope(agency, account),
        true,
    )
    .await;
    let admin = sign_in(&app, ADMIN).await;
    let (_, html) = admin.get(&format!("/ui/calls/{call}")).await;
    let facts = html.find("id=\"h-facts\"").unwrap();
    let form = html.find("id=\"hold-form\"").unwrap();
    let caller = html.find("id=\"h-caller\"").unwrap();
    assert!(
        facts < form && form < caller,
        "facts, then the hold, then the caller"
    );
    app.stop().await;
}

/// The rows of a CSV answer (cells unquoted; commas inside cells are not used here).
fn csv_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| {
            l.split("\",\"")
                .map(|c| c.trim_matches('"').replace("\"\"", "\""))
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn the_call_log_counts_matching_calls_and_downloads_them_as_formula_safe_csv() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let (_, other_account) = app.tenant().await;
    for n in 0..3u16 {
        let mut call = full_call(20 + n);
        if n == 0 {
            call["source"] = json!("bing_ads");
            call["campaign"] = json!("=HYPERLINK(\"https://203.0.113.9\")");
        }
        app.ingest(account, call).await;
    }
    web_user(
        &app,
        ADMIN,
        Role::AccountAdmin,
        account_scope(agency, account),
        true,
    )
    .await;
    web_user(
        &app,
        ANALYST,
        Role::Analyst,
        account_scope(agency, account),
        false,
    )
    .await;
    let admin = sign_in(&app, ADMIN).await;

    let (_, html) = admin.get(&format!("/ui/accounts/{account}/calls")).await;
    assert!(element(&html, "call-count", "</strong>").ends_with(">3 calls"));
    let (_, html) = admin
        .get(&format!("/ui/accounts/{account}/calls?source=bing_ads"))
        .await;
    assert!(element(&html, "call-count", "</strong>").ends_with(">1 call"));
    assert!(html.contains("1 call</strong> matches these filters"));
    assert!(html.contains(&format!("/ui/accounts/{account}/calls.csv?source=bing_ads")));

    let download = |who: &crate::web::Signed, path: String| {
        let request = who
            .client
            .get(format!("{}{path}", who.base))
            .header(COOKIE, format!("rf_session={}", who.cookie));
        async move {
            let r = request.send().await.unwrap();
            let status = r.status();
            let disposition = r
                .headers()
                .get("content-disposition")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, disposition, r.text().await.unwrap())
        }
    };
    let (status, disposition, text) =
        download(&admin, format!("/ui/accounts/{account}/calls.csv")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(disposition.unwrap().starts_with("attachment"));
    let rows = csv_rows(&text);
    assert_eq!(rows.len(), 4, "a header and three calls");
    let col = |name: &str| rows[0].iter().position(|c| c == name).unwrap();
    assert!(
        rows[1..]
            .iter()
            .any(|r| r[col("caller_number")] == uk_number(20))
    );
    let bing = rows
        .iter()
        .find(|r| r[col("source")] == "bing_ads")
        .unwrap();
    assert!(
        bing[col("campaign")].starts_with("'="),
        "a formula is defused: {}",
        bing[col("campaign")]
    );
    assert_eq!(
        bing[col("caller_number")],
        uk_number(20),
        "a phone number stays a number"
    );
    let (_, _, filtered) = download(
        &admin,
        format!("/ui/accounts/{account}/calls.csv?source=bing_ads"),
    )
    .await;
    assert_eq!(csv_rows(&filtered).len(), 2);
    let journal = all_audit(&app, 500).await;
    assert!(
        journal
            .iter()
            .any(|e| e["action"] == "calls.downloaded" && e["count"] == 3),
        "a download with personal data is journaled"
    );

    // Without personal data: call facts only.
    let analyst = sign_in(&app, ANALYST).await;
    let (status, _, text) = download(&analyst, format!("/ui/accounts/{account}/calls.csv")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!text.contains("caller_number") && !text.contains(&uk_number(20)));
    assert!(!text.contains("Erika"));
    assert_eq!(csv_rows(&text).len(), 4);
    let (status, _, _) = download(
        &analyst,
        format!("/ui/accounts/{account}/calls.csv?caller_number=%2B442079460020"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no finding calls by number");

    // Another tenant's account answers like one that does not exist.
    let (status, _, text) =
        download(&admin, format!("/ui/accounts/{other_account}/calls.csv")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!text.contains("call_id"));
    let (status, _, _) = download(
        &admin,
        format!("/ui/accounts/{account}/calls.csv?status=nonsense"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    app.stop().await;
}
