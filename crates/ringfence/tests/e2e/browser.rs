//! The web interface in a real browser: Debian's `chromium` driven through `chromedriver`
//! (fantoccini), headless. Each step saves a screenshot under `target/ui-screenshots/` and
//! checks that the browser console logged no error.
//!
//! Skips with a message when `chromedriver` is not installed, unless
//! `RINGFENCE_BROWSER_REQUIRED=1` (CI), where a missing driver fails.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use ringfence_core::access::Role;

use crate::common::*;
use crate::web::{PASSWORD, account_scope, web_user};

/// `chromedriver` on the PATH, or why the tests cannot run.
fn chromedriver() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("chromedriver"))
        .find(|p| p.is_file())
}

/// A chromedriver process on a free port, stopped on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start(binary: &PathBuf) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // A zone far from UTC, so the pages' times visibly follow the browser's zone.
        let mut child = Command::new(binary)
            .env("TZ", "Asia/Kolkata")
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        // Ready once it says so on stdout.
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("started successfully") => break,
                Some(Ok(_)) => continue,
                _ => panic!("chromedriver exited before it was ready"),
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Driver { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// chromedriver's console log endpoint (`goog:loggingPrefs`), not part of W3C WebDriver.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/se/log", session_id.unwrap_or("")))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Browser {
    client: Client,
    shots: PathBuf,
    _driver: Driver,
}

impl Browser {
    async fn open() -> Option<Browser> {
        let Some(binary) = chromedriver() else {
            if std::env::var("RINGFENCE_BROWSER_REQUIRED").as_deref() == Ok("1") {
                panic!(
                    "RINGFENCE_BROWSER_REQUIRED=1 but chromedriver is not installed (apt-get install chromium chromium-driver)"
                );
            }
            eprintln!(
                "skipping the browser test: chromedriver is not installed (apt-get install chromium chromium-driver)"
            );
            return None;
        };
        let driver = Driver::start(&binary);
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000", "--autoplay-policy=no-user-gesture-required"]}),
        );
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .expect("a browser session");
        Some(Browser {
            client,
            shots: screenshot_dir(),
            _driver: driver,
        })
    }

    /// Saves a screenshot and fails on any console error since the last check.
    async fn check(&self, name: &str) {
        self.check_allowing(name, None).await;
    }

    /// Like `check`, but a page answered with `status` on purpose (a refusal page) is not
    /// an error; any other is.
    async fn check_allowing(&self, name: &str, status: Option<u16>) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
        let log = self.client.issue_cmd(BrowserLog).await.unwrap();
        let expected = status.map(|s| format!("the server responded with a status of {s}"));
        let errors: Vec<&Value> = log
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e["level"] == "SEVERE")
                    .filter(|e| {
                        !expected.as_deref().is_some_and(|x| {
                            e["source"] == "network"
                                && e["message"].as_str().is_some_and(|m| m.contains(x))
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        assert!(errors.is_empty(), "console errors on {name}: {errors:?}");
    }

    async fn click(&self, locator: Locator<'_>) {
        self.client
            .find(locator)
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    async fn type_into(&self, locator: Locator<'_>, text: &str) {
        self.client
            .find(locator)
            .await
            .unwrap()
            .send_keys(text)
            .await
            .unwrap();
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .wait()
            .for_element(Locator::Css(css))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn sign_in(&self, base: &str, email: &str) {
        self.client.goto(&format!("{base}/login")).await.unwrap();
        self.type_into(Locator::Id("email"), email).await;
        self.type_into(Locator::Id("password"), PASSWORD).await;
        self.click(Locator::Css("button[type=submit]")).await;
        self.client
            .wait()
            .for_element(Locator::Css("form.filters"))
            .await
            .unwrap();
    }

    async fn sign_out(&self) {
        self.click(Locator::Css("form.signout button")).await;
        self.client
            .wait()
            .for_element(Locator::Id("email"))
            .await
            .unwrap();
    }
}

fn wav(seconds: u32) -> Vec<u8> {
    let rate = 8000u32;
    let samples = rate * seconds;
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + samples * 2).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(samples * 2).to_le_bytes());
    for i in 0..samples {
        let v = ((f64::from(i) * 440.0 * std::f64::consts::TAU / f64::from(rate)).sin() * 8000.0)
            as i16;
        wav.extend_from_slice(&v.to_le_bytes());
    }
    wav
}

#[tokio::test]
async fn in_a_browser_users_sign_in_filter_play_redact_and_read_the_checklist() {
    let Some(browser) = Browser::open().await else {
        return;
    };
    let app = TestApp::spawn_with_local_relays().await;
    let (agency, account) = app.tenant().await;
    // Newest first: the recorded call, two calls of one caller, a call from Bing.
    let mut bing = full_call(30);
    bing["source"] = json!("bing_ads");
    bing["started_at"] = json!("2026-11-20T09:00:00Z");
    let bing = app.ingest(account, bing).await;
    let mut repeat = Vec::new();
    for (n, at) in [
        (31u16, "2026-11-24T09:00:00Z"),
        (32, "2026-11-25T09:00:00Z"),
    ] {
        let mut call = full_call(n);
        call["caller_number"] = json!(uk_number(88));
        call["started_at"] = json!(at);
        call["visitor"] = Value::Null;
        repeat.push(app.ingest(account, call).await);
    }
    let mut recorded = full_call(33);
    recorded["started_at"] = json!("2026-11-27T09:00:00Z");
    let recorded = app.ingest(account, recorded).await;
    let (status, body) = app
        .upload_recording(&app.admin, &recorded, wav(2), "audio/wav")
        .await;
    assert!(status.is_success(), "{body}");
    web_user(
        &app,
        "admin@example.com",
        Role::AccountAdmin,
        account_scope(agency, account),
        true,
    )
    .await;
    web_user(
        &app,
        "analyst@example.com",
        Role::Analyst,
        account_scope(agency, account),
        false,
    )
    .await;
    let base = app.address.clone();
    let c = &browser.client;

    // Sign in.
    c.goto(&format!("{base}/login")).await.unwrap();
    browser.check("01-sign-in").await;
    browser.sign_in(&base, "admin@example.com").await;
    assert_eq!(
        c.find_all(Locator::Css("table.calls tbody tr"))
            .await
            .unwrap()
            .len(),
        4
    );
    assert_eq!(browser.text("#call-count").await, "4 calls");
    // Times are shown in the browser's zone (Asia/Kolkata, UTC+5:30), UTC on hover.
    let first_time = c
        .wait()
        .for_element(Locator::Css("table.calls time[data-local]"))
        .await
        .unwrap();
    let shown = first_time.text().await.unwrap();
    assert!(
        shown.contains("2:30") && shown.contains("GMT+5:30") && !shown.contains("UTC"),
        "09:00 UTC shows as 14:30 in the browser's zone: {shown}"
    );
    assert_eq!(
        first_time.attr("title").await.unwrap().as_deref(),
        Some("2026-11-27 09:00:00 UTC")
    );
    browser.check("02-call-log").await;

    // Filter the log (htmx swaps the table in place).
    browser.type_into(Locator::Id("f-source"), "bing_ads").await;
    // Wait on htmx's own "settled" event rather than on time.
    c.execute(
        "window.rfSettled = new Promise(r => document.body.addEventListener('htmx:afterSettle', r, {once: true}));",
        vec![],
    )
    .await
    .unwrap();
    browser
        .click(Locator::Css("form.filters button[type=submit]"))
        .await;
    c.execute_async(
        "const done = arguments[arguments.length - 1]; window.rfSettled.then(() => done(true));",
        vec![],
    )
    .await
    .unwrap();
    assert!(
        c.current_url()
            .await
            .unwrap()
            .as_str()
            .contains("source=bing_ads"),
        "htmx pushed the filtered URL"
    );
    let rows = c
        .find_all(Locator::Css("table.calls tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0]
            .text()
            .await
            .unwrap()
            .contains("Microsoft Ads (Bing)")
    );
    assert_eq!(browser.text("#call-count").await, "1 call");
    assert!(
        c.source()
            .await
            .unwrap()
            .contains(&format!("/ui/calls/{bing}"))
    );
    browser.check("03-call-log-filtered").await;

    // Open the recorded call; the player loads the recording through the session.
    c.goto(&format!("{base}/ui/calls/{recorded}"))
        .await
        .unwrap();
    let loaded = c
        .execute_async(
            "const done = arguments[arguments.length - 1]; const a = document.getElementById('player');
             if (a.readyState >= 1) { done(a.duration); return; }
             a.addEventListener('loadedmetadata', () => done(a.duration));
             a.addEventListener('error', () => done('error ' + (a.error && a.error.code)));
             a.load();",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        loaded.as_f64().is_some_and(|d| (d - 2.0).abs() < 0.1),
        "the recording loads and lasts 2 s: {loaded}"
    );
    browser.check("04-call-detail").await;

    // Redact the call, through its confirmation.
    browser.click(Locator::Id("redact-call")).await;
    // The empty #confirm placeholder is there before htmx swaps the confirmation in.
    browser.text("#confirm-redact-call").await;
    let confirm = browser.text("#confirm").await;
    assert!(
        confirm.contains("Removed")
            && confirm.contains("Kept")
            && confirm.contains("the recording")
    );
    browser.check("05-redact-call-confirm").await;
    browser.click(Locator::Id("confirm-redact-call")).await;
    assert!(browser.text("#receipt").await.contains("1 call(s)"));
    browser.check("06-redact-call-done").await;
    let (_, call) = app
        .get(&app.admin, &format!("/api/v1/calls/{recorded}"))
        .await;
    assert_eq!(call["redaction"]["reason"], "manual");
    assert!(call["recording"].is_null());

    // The caller page: both calls of the number.
    c.goto(&format!("{base}/ui/calls/{}", repeat[0]))
        .await
        .unwrap();
    browser.click(Locator::Id("caller-page")).await;
    assert!(browser.text("h1").await.contains(&uk_number(88)));
    assert_eq!(
        c.find_all(Locator::Css("table.calls tbody tr"))
            .await
            .unwrap()
            .len(),
        2
    );
    browser.check("06b-caller-page").await;

    // Redact a caller: the confirmation says how many calls it touches.
    c.goto(&format!("{base}/ui/calls/{}", repeat[0]))
        .await
        .unwrap();
    browser.click(Locator::Id("redact-caller")).await;
    assert_eq!(browser.text("#caller-count").await, "2 call(s)");
    browser.check("07-redact-caller-confirm").await;
    browser.click(Locator::Id("confirm-redact-caller")).await;
    assert!(browser.text("#receipt").await.contains("2 call(s)"));
    browser.check("08-redact-caller-done").await;
    for id in &repeat {
        let (_, call) = app.get(&app.admin, &format!("/api/v1/calls/{id}")).await;
        assert_eq!(call["redaction"]["reason"], "caller");
    }

    // The checklist.
    c.goto(&format!("{base}/ui/accounts/{account}/checklist"))
        .await
        .unwrap();
    let overall = browser.text("#overall").await;
    assert!(
        ["PASS", "WARNING", "FAIL", "Pass", "Warning", "Fail"].contains(&overall.as_str()),
        "{overall}"
    );
    assert!(
        c.find_all(Locator::Css("table.checklist tbody tr"))
            .await
            .unwrap()
            .len()
            >= 5
    );
    browser.check("09-checklist").await;
    // A failing item's fix links to the control that fixes it.
    browser
        .click(Locator::Css("#item-recipients td.fix a"))
        .await;
    c.wait()
        .for_element(Locator::Id("add-recipient"))
        .await
        .unwrap();
    assert!(
        c.current_url()
            .await
            .unwrap()
            .as_str()
            .ends_with("#add-recipient")
    );

    // Add a recipient on the settings page.
    browser
        .type_into(Locator::Id("recipient-name"), "CRM")
        .await;
    browser
        .type_into(Locator::Id("recipient-url"), "http://127.0.0.1:9/hook")
        .await;
    browser
        .type_into(Locator::Id("recipient-secret"), "a-long-enough-secret")
        .await;
    browser.click(Locator::Id("create-recipient")).await;
    assert!(browser.text("#saved").await.contains("Recipient added"));
    c.execute(
        "document.querySelector('article.recipient details.edit-recipient').open = true; document.querySelector('article.recipient').scrollIntoView();",
        vec![],
    )
    .await
    .unwrap();
    browser.check("09b-settings-recipient-added").await;

    // Automatic redaction: the dry-run count first, then save.
    c.goto(&format!("{base}/ui/accounts/{account}/settings"))
        .await
        .unwrap();
    browser.check("10-settings").await;
    browser
        .click(Locator::Css("#after option[value='1']"))
        .await;
    browser.click(Locator::Id("preview-retention")).await;
    // One call is left live (the Bing call); it is more than a day old.
    assert_eq!(browser.text("#dry-run-count").await, "1");
    browser.check("11-settings-dry-run").await;
    let (_, settings) = app
        .get(&app.admin, &format!("/api/v1/accounts/{account}/settings"))
        .await;
    assert!(
        settings["auto_redact"]["after_days"].is_null(),
        "a dry run saves nothing"
    );
    browser.click(Locator::Id("save-retention")).await;
    browser.text("#saved").await;
    browser.check("12-settings-saved").await;
    let (_, settings) = app
        .get(&app.admin, &format!("/api/v1/accounts/{account}/settings"))
        .await;
    assert_eq!(settings["auto_redact"]["after_days"], 1);

    // The journal and its chain verification.
    c.goto(&format!("{base}/ui/journal")).await.unwrap();
    assert!(browser.text("#chain").await.contains("Chain verified"));
    let who = browser.text("table.journal tbody tr td.actor").await;
    assert!(!who.contains("user:"), "{who}");
    browser.check("12b-journal").await;

    // The users, by address.
    c.goto(&format!("{base}/ui/accounts/{account}/users"))
        .await
        .unwrap();
    let users = browser.text("#users").await;
    assert!(users.contains("admin@example.com") && users.contains("analyst@example.com"));
    browser.check("12c-users").await;

    // A call on legal hold: the form sits below the call facts and names its author.
    c.goto(&format!("{base}/ui/calls/{bing}")).await.unwrap();
    browser
        .type_into(Locator::Id("hold-reason"), "CASE-2026/17")
        .await;
    browser.click(Locator::Id("place-hold")).await;
    assert!(
        browser
            .text("#legal-hold")
            .await
            .contains("admin@example.com")
    );
    browser.check("12d-call-on-legal-hold").await;
    browser.click(Locator::Id("release-hold")).await;
    browser.text("#place-hold").await;

    // An analyst without personal data: masked numbers, no redact button.
    c.goto(&format!("{base}/ui/accounts/{account}/calls"))
        .await
        .unwrap();
    browser.sign_out().await;
    browser.sign_in(&base, "analyst@example.com").await;
    let log = c.source().await.unwrap();
    assert!(!log.contains(&uk_number(30)), "numbers are masked");
    assert!(log.contains("masked"));
    browser.check("13-analyst-call-log").await;
    c.goto(&format!("{base}/ui/calls/{bing}")).await.unwrap();
    assert!(
        c.find_all(Locator::Id("redact-call"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        browser
            .text("#why-no-redact")
            .await
            .contains("may not redact")
    );
    browser.check("14-analyst-call-detail").await;

    // The analyst is offered only the call log; a page it may not open says so in its
    // own terms and keeps the navigation.
    let nav = browser.text("nav").await;
    assert!(nav.contains("Call log") && !nav.contains("Settings") && !nav.contains("Journal"));
    c.goto(&format!("{base}/ui/accounts/{account}/settings"))
        .await
        .unwrap();
    let refusal = browser.text("[role=alert]").await;
    assert!(refusal.contains("analyst@example.com") && !refusal.contains("token"));
    assert!(browser.text("nav").await.contains("Call log"));
    browser
        .check_allowing("14b-analyst-refused", Some(403))
        .await;

    // Phone width.
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&format!("{base}/ui/accounts/{account}/calls"))
        .await
        .unwrap();
    browser.check("15-call-log-phone").await;
    let overflow = c
        .execute(
            "const w = document.documentElement.clientWidth; const wide = [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > w + 1 && !e.closest('.scroll')).map(e => e.tagName + '.' + e.className + '#' + e.id); return [document.documentElement.scrollWidth, w, wide.slice(0, 5)];",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        overflow[0].as_u64() <= overflow[1].as_u64(),
        "nothing wider than a phone outside scrolling tables: {overflow}"
    );

    browser.client.clone().close().await.unwrap();
    app.stop().await;
}
