//! Tokens and users that can be taken away: listing, revoking, disabling, removing, new
//! passwords and roles, through the API and the CLI; who may do each; the journal; the demo.

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION};
use serde_json::{Value, json};

use ringfence::commands::{TokenArgs, create_token};
use ringfence_core::access::{Role, Scope};
use ringfence_core::{AccountId, AgencyId, UserId};

use crate::common::*;
use crate::web::{PASSWORD, Signed, answer_of, sign_in, sign_in_raw};

const NEW_PASSWORD: &str = "a brand new passphrase";

async fn user(app: &TestApp, email: &str, role: Role, scope: Scope) -> UserId {
    app.resources
        .log
        .create_user(
            email,
            zeroize::Zeroizing::new(PASSWORD.to_owned()),
            role,
            scope,
            true,
            "test".into(),
        )
        .await
        .expect("user")
        .id
}

/// A token and its id.
async fn token_with_id(
    app: &TestApp,
    role: Role,
    agency: Option<AgencyId>,
    account: Option<AccountId>,
) -> (String, String) {
    let args = TokenArgs {
        role: role.as_str().into(),
        agency: agency.map(|a| a.to_string()),
        account: account.map(|a| a.to_string()),
        label: Some("test token".into()),
        no_personal_data: false,
        expires_in_days: None,
    };
    let (id, token) = create_token(&app.resources, &args).await.expect("token");
    (token, id.to_string())
}

fn account_scope(agency: AgencyId, account: AccountId) -> Scope {
    Scope::Account { agency, account }
}

/// Whether the session still opens a page (a refused one is sent to the sign-in form).
async fn session_open(app: &TestApp, session: &Signed, account: AccountId) -> bool {
    let r = session
        .client
        .get(app.url(&format!("/ui/accounts/{account}/calls")))
        .header(COOKIE, format!("rf_session={}", session.cookie))
        .send()
        .await
        .unwrap();
    match r.status() {
        StatusCode::OK => true,
        StatusCode::SEE_OTHER => {
            assert_eq!(r.headers()[LOCATION], "/login");
            false
        }
        other => panic!("unexpected {other}"),
    }
}

async fn patch_user(app: &TestApp, token: &str, id: &str, body: Value) -> (StatusCode, Value) {
    app.send(
        reqwest::Method::PATCH,
        token,
        &format!("/api/v1/users/{id}"),
        Some(body),
    )
    .await
}

async fn delete(app: &TestApp, token: &str, path: &str) -> StatusCode {
    app.send(reqwest::Method::DELETE, token, path, None).await.0
}

#[tokio::test]
async fn a_revoked_token_is_refused_on_its_very_next_request() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let (analyst, id) = token_with_id(&app, Role::Analyst, None, Some(account)).await;
    let calls = format!("/api/v1/accounts/{account}/calls");
    // Used once: its lookup is now cached, and its use recorded.
    assert_eq!(app.get(&analyst, &calls).await.0, StatusCode::OK);

    let (status, list) = app
        .get(&app.admin, &format!("/api/v1/tokens?account_id={account}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let listed = list["items"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{list}");
    let item = &listed[0];
    assert_eq!(item["id"], id.as_str());
    assert_eq!(item["role"], "analyst");
    assert_eq!(item["account_id"], account.to_string().as_str());
    assert_eq!(item["agency_id"], agency.to_string().as_str());
    assert_eq!(item["label"], "test token");
    assert!(item["last_used_at"].is_string(), "{item}");
    assert!(item["revoked_at"].is_null());
    let text = list.to_string();
    assert!(
        !text.contains(&analyst) && !text.contains("hash"),
        "never the secret or its hash: {text}"
    );

    assert_eq!(
        delete(&app, &app.admin, &format!("/api/v1/tokens/{id}")).await,
        StatusCode::NO_CONTENT
    );
    // No waiting: the very next request is refused.
    let (status, body) = app.get(&analyst, &calls).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");

    let (_, list) = app
        .get(&app.admin, &format!("/api/v1/tokens?account_id={account}"))
        .await;
    assert!(list["items"][0]["revoked_at"].is_string(), "{list}");
    // Revoking again changes nothing and is not journaled twice.
    assert_eq!(
        delete(&app, &app.admin, &format!("/api/v1/tokens/{id}")).await,
        StatusCode::NO_CONTENT
    );
    let revocations = all_audit(&app, 200)
        .await
        .into_iter()
        .filter(|e| e["action"] == "token.revoked")
        .count();
    assert_eq!(revocations, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_disabled_users_open_session_is_refused_on_its_next_request_and_cannot_sign_in() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let id = user(
        &app,
        "ada@example.com",
        Role::Analyst,
        account_scope(agency, account),
    )
    .await;
    let session = sign_in(&app, "ada@example.com").await;
    assert!(session_open(&app, &session, account).await);

    let (status, out) =
        patch_user(&app, &app.admin, &id.to_string(), json!({"disabled": true})).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert!(out["disabled_at"].is_string(), "{out}");
    assert!(
        !session_open(&app, &session, account).await,
        "the open session is refused on its next request"
    );

    // The right password of a disabled user is answered exactly like a wrong one.
    let disabled = answer_of(sign_in_raw(&app, "ada@example.com", PASSWORD, None).await).await;
    let wrong =
        answer_of(sign_in_raw(&app, "ada@example.com", "not the password", None).await).await;
    assert_eq!(disabled.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(disabled, wrong);

    let (status, out) = patch_user(
        &app,
        &app.admin,
        &id.to_string(),
        json!({"disabled": false}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert!(out["disabled_at"].is_null());
    let again = sign_in(&app, "ada@example.com").await;
    assert!(session_open(&app, &again, account).await);
    let (_, users) = app
        .get(&app.admin, &format!("/api/v1/accounts/{account}/users"))
        .await;
    assert!(users["items"][0]["last_sign_in_at"].is_string(), "{users}");
    assert!(!users.to_string().contains("example.com"), "{users}");
    app.stop().await;
}

#[tokio::test]
async fn removing_a_user_ends_its_sessions_and_frees_the_address() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let scope = account_scope(agency, account);
    let id = user(&app, "bo@example.com", Role::AccountAdmin, scope).await;
    let session = sign_in(&app, "bo@example.com").await;
    assert!(session_open(&app, &session, account).await);

    assert_eq!(
        delete(&app, &app.admin, &format!("/api/v1/users/{id}")).await,
        StatusCode::NO_CONTENT
    );
    assert!(!session_open(&app, &session, account).await);
    let r = sign_in_raw(&app, "bo@example.com", PASSWORD, None).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        delete(&app, &app.admin, &format!("/api/v1/users/{id}")).await,
        StatusCode::NOT_FOUND
    );
    let (_, users) = app
        .get(&app.admin, &format!("/api/v1/accounts/{account}/users"))
        .await;
    assert_eq!(users["items"], json!([]));
    // The address can be given to a new user.
    let again = user(&app, "bo@example.com", Role::Analyst, scope).await;
    assert_ne!(again, id);
    app.stop().await;
}

#[tokio::test]
async fn a_new_password_ends_the_sessions_and_only_the_new_one_signs_in() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let id = user(
        &app,
        "cy@example.com",
        Role::Analyst,
        account_scope(agency, account),
    )
    .await;
    let session = sign_in(&app, "cy@example.com").await;

    let (status, out) = patch_user(
        &app,
        &app.admin,
        &id.to_string(),
        json!({"password": "short"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert_eq!(out["error"]["details"][0]["field"], "password");
    assert!(
        session_open(&app, &session, account).await,
        "a refused change changes nothing"
    );

    let (status, out) = patch_user(
        &app,
        &app.admin,
        &id.to_string(),
        json!({"password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert!(!out.to_string().contains(NEW_PASSWORD));
    assert!(!session_open(&app, &session, account).await);
    let old = sign_in_raw(&app, "cy@example.com", PASSWORD, None).await;
    assert_eq!(old.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let new = sign_in_raw(&app, "cy@example.com", NEW_PASSWORD, None).await;
    assert_eq!(new.status(), StatusCode::SEE_OTHER);
    app.stop().await;
}

#[tokio::test]
async fn role_changes_stay_within_the_users_scope_and_never_above_the_changer() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let sibling = app.account(agency).await;
    let scope = account_scope(agency, account);
    let analyst = user(&app, "an@example.com", Role::Analyst, scope)
        .await
        .to_string();
    let elsewhere = user(
        &app,
        "el@example.com",
        Role::Analyst,
        account_scope(agency, sibling),
    )
    .await
    .to_string();
    let agency_analyst = user(&app, "ag@example.com", Role::Analyst, Scope::Agency(agency))
        .await
        .to_string();
    let account_admin = app
        .token(Role::AccountAdmin, None, Some(account), true)
        .await;
    let agency_admin = app.token(Role::AgencyAdmin, Some(agency), None, true).await;

    let cases: [(&str, &str, &String, Value, StatusCode, Option<&str>); 10] = [
        (
            "account admin promotes its analyst",
            &account_admin,
            &analyst,
            json!({"role": "account_admin"}),
            StatusCode::OK,
            Some("account_admin"),
        ),
        (
            "account admin demotes back, masking personal data",
            &account_admin,
            &analyst,
            json!({"role": "analyst", "personal_data": false}),
            StatusCode::OK,
            Some("analyst"),
        ),
        (
            "account admin cannot make an agency admin",
            &account_admin,
            &analyst,
            json!({"role": "agency_admin"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            "account admin cannot make an installation admin",
            &account_admin,
            &analyst,
            json!({"role": "admin"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            "account admin cannot reach another account's user",
            &account_admin,
            &elsewhere,
            json!({"role": "account_admin"}),
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            "account admin cannot reach the agency's user",
            &account_admin,
            &agency_analyst,
            json!({"role": "agency_admin"}),
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            "ingest is not a user's role",
            &app.admin,
            &analyst,
            json!({"role": "ingest"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            "a role must fit the user's scope",
            &app.admin,
            &analyst,
            json!({"role": "agency_admin"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            "agency admin makes an agency user a peer",
            &agency_admin,
            &agency_analyst,
            json!({"role": "agency_admin"}),
            StatusCode::OK,
            Some("agency_admin"),
        ),
        (
            "only analysts have personal data masked",
            &agency_admin,
            &elsewhere,
            json!({"role": "account_admin", "personal_data": false}),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
    ];
    for (what, token, id, body, expected, role) in cases {
        let before = app
            .resources
            .log
            .store()
            .user(id.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        let (status, out) = patch_user(&app, token, id, body).await;
        assert_eq!(status, expected, "{what}: {out}");
        let after = app
            .resources
            .log
            .store()
            .user(id.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        match role {
            Some(role) => assert_eq!(after.role.as_str(), role, "{what}"),
            None => assert_eq!(after.role, before.role, "{what}: refused, unchanged"),
        }
    }
    let masked = app
        .resources
        .log
        .store()
        .user(analyst.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(!masked.personal_data);
    app.stop().await;
}

#[tokio::test]
async fn each_role_may_list_and_change_only_the_tokens_and_users_its_scope_reaches() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let sibling = app.account(agency).await;
    let (other_agency, _) = app.tenant().await;
    let target = user(
        &app,
        "target@example.com",
        Role::Analyst,
        account_scope(agency, account),
    )
    .await
    .to_string();
    let (_, agency_token) = token_with_id(&app, Role::AgencyAdmin, Some(agency), None).await;
    let t = |role, agency, account| (role, agency, account);
    use StatusCode as S;
    // principal, then the answers to: list tokens of the account, list its users,
    // disable (and enable) its user, revoke a token of the account.
    let table = [
        ("admin", None, S::OK, S::OK, S::OK, S::NO_CONTENT),
        (
            "agency admin",
            Some(t(Role::AgencyAdmin, Some(agency), None)),
            S::OK,
            S::OK,
            S::OK,
            S::NO_CONTENT,
        ),
        (
            "account admin",
            Some(t(Role::AccountAdmin, None, Some(account))),
            S::OK,
            S::OK,
            S::OK,
            S::NO_CONTENT,
        ),
        (
            "sibling account admin",
            Some(t(Role::AccountAdmin, None, Some(sibling))),
            S::NOT_FOUND,
            S::NOT_FOUND,
            S::NOT_FOUND,
            S::NOT_FOUND,
        ),
        (
            "other agency's admin",
            Some(t(Role::AgencyAdmin, Some(other_agency), None)),
            S::NOT_FOUND,
            S::NOT_FOUND,
            S::NOT_FOUND,
            S::NOT_FOUND,
        ),
        (
            "analyst",
            Some(t(Role::Analyst, None, Some(account))),
            S::FORBIDDEN,
            S::FORBIDDEN,
            S::FORBIDDEN,
            S::FORBIDDEN,
        ),
        (
            "ingest",
            Some(t(Role::Ingest, None, Some(account))),
            S::FORBIDDEN,
            S::FORBIDDEN,
            S::FORBIDDEN,
            S::FORBIDDEN,
        ),
    ];
    for (who, principal, list_tokens, list_users, change_user, revoke) in table {
        let token = match principal {
            None => app.admin.clone(),
            Some((role, agency, account)) => token_with_id(&app, role, agency, account).await.0,
        };
        let (_, victim) = token_with_id(&app, Role::Ingest, None, Some(account)).await;
        let (status, body) = app
            .get(&token, &format!("/api/v1/tokens?account_id={account}"))
            .await;
        assert_eq!(status, list_tokens, "{who} lists tokens: {body}");
        let (status, body) = app
            .get(&token, &format!("/api/v1/accounts/{account}/users"))
            .await;
        assert_eq!(status, list_users, "{who} lists users: {body}");
        let (status, body) = patch_user(&app, &token, &target, json!({"disabled": true})).await;
        assert_eq!(status, change_user, "{who} disables: {body}");
        let disabled = app
            .resources
            .log
            .store()
            .user(target.parse().unwrap())
            .await
            .unwrap()
            .unwrap()
            .disabled_at
            .is_some();
        assert_eq!(disabled, change_user == S::OK, "{who}");
        if disabled {
            let (status, _) = patch_user(&app, &token, &target, json!({"disabled": false})).await;
            assert_eq!(status, S::OK);
        }
        let status = delete(&app, &token, &format!("/api/v1/tokens/{victim}")).await;
        assert_eq!(status, revoke, "{who} revokes");
    }
    // Without a filter, an account admin lists its own account's tokens and no others.
    let (account_admin, _) = token_with_id(&app, Role::AccountAdmin, None, Some(account)).await;
    let (status, body) = app.get(&account_admin, "/api/v1/tokens").await;
    assert_eq!(status, S::OK);
    let items = body["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(
        items
            .iter()
            .all(|i| i["account_id"] == account.to_string().as_str()),
        "{body}"
    );
    assert!(!items.iter().any(|i| i["id"] == agency_token.as_str()));
    let (status, _) = app
        .get(
            &account_admin,
            &format!("/api/v1/tokens?agency_id={agency}"),
        )
        .await;
    assert_eq!(
        status,
        S::NOT_FOUND,
        "an account admin does not see its agency"
    );
    // Both filters narrow together: the account's tokens, if it is one of the agency's.
    let (status, body) = app
        .get(
            &app.admin,
            &format!("/api/v1/tokens?account_id={account}&agency_id={agency}"),
        )
        .await;
    assert_eq!(status, S::OK, "{body}");
    let items = body["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(
        items
            .iter()
            .all(|i| i["account_id"] == account.to_string().as_str()),
        "{body}"
    );
    let (other_agency, _) = app.tenant().await;
    let (status, body) = app
        .get(
            &app.admin,
            &format!("/api/v1/tokens?account_id={account}&agency_id={other_agency}"),
        )
        .await;
    assert_eq!(status, S::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    app.stop().await;
}

#[tokio::test]
async fn every_change_is_journaled_by_id_without_an_address() {
    let app = TestApp::spawn().await;
    let (agency, account) = app.tenant().await;
    let scope = account_scope(agency, account);
    let id = user(&app, "journal.subject@example.com", Role::Analyst, scope)
        .await
        .to_string();
    let (_, token) = token_with_id(&app, Role::Analyst, None, Some(account)).await;
    let admin = app
        .token(Role::AccountAdmin, None, Some(account), true)
        .await;
    for body in [
        json!({"disabled": true}),
        json!({"disabled": false}),
        json!({"role": "account_admin"}),
        json!({"password": NEW_PASSWORD}),
    ] {
        let (status, out) = patch_user(&app, &admin, &id, body).await;
        assert_eq!(status, StatusCode::OK, "{out}");
    }
    assert_eq!(
        delete(&app, &admin, &format!("/api/v1/tokens/{token}")).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        delete(&app, &admin, &format!("/api/v1/users/{id}")).await,
        StatusCode::NO_CONTENT
    );
    let journal = all_audit(&app, 200).await;
    for (action, subject) in [
        ("user.disabled", format!("user:{id}")),
        ("user.enabled", format!("user:{id}")),
        ("user.role_changed", format!("user:{id}")),
        ("user.password_reset", format!("user:{id}")),
        ("user.removed", format!("user:{id}")),
        ("token.revoked", format!("token:{token}")),
    ] {
        let entry = journal
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("{action} journaled"));
        assert_eq!(entry["subject"], subject.as_str(), "{entry}");
        assert_eq!(entry["account_id"], account.to_string().as_str());
        assert!(entry["actor"].as_str().unwrap().starts_with("token:"));
    }
    let text = serde_json::to_string(&journal).unwrap();
    assert!(
        !text.contains("journal.subject") && !text.contains('@') && !text.contains(NEW_PASSWORD),
        "ids only in the journal"
    );
    app.stop().await;
}

fn json_line(stdout: &str) -> Value {
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one JSON document: {stdout}");
    serde_json::from_str(lines[0]).expect("valid JSON")
}

#[test]
fn the_cli_lists_revokes_and_changes_tokens_and_users_by_id_and_by_address() {
    let dir = Backing::new();
    let data = dir.path().join("data");
    let (_, account) = cli_tenant(&data, false);
    let first = dir.path().join("first");
    let second = dir.path().join("second");
    std::fs::write(&first, format!("{PASSWORD}\n")).unwrap();
    std::fs::write(&second, format!("{NEW_PASSWORD}\n")).unwrap();
    let cli = |args: &[&str]| {
        let (code, out, err) = run_cli(&data, args);
        assert_eq!(code, 0, "{args:?}: {err}");
        json_line(&out)
    };
    let created = cli(&[
        "user",
        "create",
        "--email",
        "dee@example.com",
        "--role",
        "analyst",
        "--account",
        &account,
        "--password-file",
        first.to_str().unwrap(),
        "--json",
    ]);
    let id = created["id"].as_str().unwrap().to_owned();

    let list = cli(&["user", "list", "--account", &account, "--json"]);
    assert_eq!(list["items"][0]["id"], id.as_str(), "{list}");
    assert!(!list.to_string().contains("dee@"), "{list}");

    let out = cli(&["user", "disable", "Dee@Example.com", "--json"]);
    assert!(out["disabled_at"].is_string(), "{out}");
    let out = cli(&["user", "enable", &id, "--json"]);
    assert!(out["disabled_at"].is_null(), "{out}");
    let out = cli(&[
        "user",
        "set-role",
        "dee@example.com",
        "--role",
        "account_admin",
        "--json",
    ]);
    assert_eq!(out["role"], "account_admin");
    let out = cli(&[
        "user",
        "reset-password",
        &id,
        "--password-file",
        second.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out["id"], id.as_str());

    let made = cli(&[
        "token",
        "create",
        "--role",
        "ingest",
        "--account",
        &account,
        "--label",
        "sender",
        "--json",
    ]);
    let token_id = made["id"].as_str().unwrap().to_owned();
    let secret = made["token"].as_str().unwrap().to_owned();
    let list = cli(&["token", "list", "--account", &account, "--json"]);
    assert_eq!(list["items"][0]["id"], token_id.as_str(), "{list}");
    assert_eq!(list["items"][0]["label"], "sender");
    assert!(!list.to_string().contains(&secret));
    let out = cli(&["token", "revoke", &token_id, "--json"]);
    assert_eq!(out["revoked"], true);
    let list = cli(&["token", "list", "--account", &account, "--json"]);
    assert!(list["items"][0]["revoked_at"].is_string(), "{list}");
    let (code, human, err) = run_cli(&data, &["token", "list", "--account", &account]);
    assert_eq!(code, 0, "{err}");
    assert!(
        human.starts_with("1 token\n") && human.contains("revoked"),
        "{human}"
    );

    let out = cli(&["user", "remove", "dee@example.com", "--json"]);
    assert_eq!(out["removed"], true);
    let list = cli(&["user", "list", "--account", &account, "--json"]);
    assert_eq!(list["items"], json!([]));
    let (code, _, err) = run_cli(&data, &["user", "disable", "dee@example.com"]);
    assert_eq!(code, 1);
    assert!(err.contains("no user signs in with that address"), "{err}");
    assert!(!err.contains("dee@"), "the address is not echoed: {err}");

    let journal: Vec<String> = read_journal(&data)
        .into_iter()
        .map(|e| e.event.action)
        .collect();
    for action in [
        "user.disabled",
        "user.enabled",
        "user.role_changed",
        "user.password_reset",
        "token.revoked",
        "user.removed",
    ] {
        assert!(journal.iter().any(|a| a == action), "{action}: {journal:?}");
    }
}

#[tokio::test]
async fn running_the_demo_twice_leaves_no_pile_of_never_expiring_tokens() {
    let app = TestApp::spawn().await;
    let first = ringfence::demo::run_demo(&app.resources, 20, false)
        .await
        .expect("demo");
    let again = ringfence::demo::run_demo(&app.resources, 20, false)
        .await
        .expect("demo again");
    assert_eq!(again["earlier_demo_tokens_revoked"], 3, "{again}");
    let tokens = app.resources.log.store().list_tokens().await.unwrap();
    let demo: Vec<_> = tokens
        .iter()
        .filter(|t| t.label.as_deref().is_some_and(|l| l.starts_with("demo ")))
        .collect();
    assert_eq!(demo.len(), 6);
    let live: Vec<_> = demo.iter().filter(|t| t.revoked_at.is_none()).collect();
    assert_eq!(live.len(), 3, "one live token per demo role");
    assert!(
        live.iter().all(|t| t.expires_at.is_some()),
        "demo tokens expire"
    );

    let account = first["accounts"][0]["id"].as_str().unwrap();
    let path = format!("/api/v1/accounts/{account}/calls?limit=1");
    let old = first["tokens"]["account_admin"].as_str().unwrap();
    let new = again["tokens"]["account_admin"].as_str().unwrap();
    assert_eq!(app.get(old, &path).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get(new, &path).await.0, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_describes_every_access_route_with_its_errors() {
    let app = TestApp::spawn().await;
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (path, method, errors) in [
        ("/api/v1/tokens", "get", &["400", "401", "403", "404"][..]),
        (
            "/api/v1/tokens/{token_id}",
            "delete",
            &["401", "403", "404"],
        ),
        (
            "/api/v1/accounts/{account_id}/users",
            "get",
            &["401", "403", "404"],
        ),
        ("/api/v1/users", "get", &["400", "401", "403", "404"]),
        (
            "/api/v1/users/{user_id}",
            "patch",
            &["401", "403", "404", "409", "422"],
        ),
        (
            "/api/v1/users/{user_id}",
            "delete",
            &["401", "403", "404", "409"],
        ),
    ] {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is documented");
        for status in errors {
            assert!(
                operation["responses"][status].is_object(),
                "{method} {path} documents {status}"
            );
        }
    }
    let example = &doc["components"]["schemas"]["UserUpdate"]["example"];
    assert_eq!(example["disabled"], true, "{example}");
    app.stop().await;
}
