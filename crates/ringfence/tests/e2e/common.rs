//! The test harness: a server per test, helpers to create tenants and tokens, and synthetic
//! data from ranges reserved for fiction.

#![allow(dead_code)]

use ringfence_core::collection::CollectionSettings;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;

use ringfence::commands::{TokenArgs, create_token};
use ringfence::config::DatabaseLocation;
use ringfence::{Application, Config, Resources};
use ringfence_core::access::Role;
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, AgencyId};
use ringfence_store::{AccountRecord, AgencyRecord};
use ringfence_store_tests::harness::{TestDatabase, URL_VARIABLE, server_url};

/// Whether this test binary runs the suite on PostgreSQL (`e2e_postgres`) rather than on
/// SQLite (`e2e`). Both compile the same test files.
pub fn on_postgres() -> bool {
    crate::ON_POSTGRES
}

/// A test's storage: a temporary folder (master key and recordings; on SQLite the call log
/// and the vault too) and, in the PostgreSQL run, two databases of its own on the server
/// `RINGFENCE_TEST_DATABASE_URL` names (call log and vault), made from the migrated template
/// and dropped with the `Backing`.
///
/// Without that variable the PostgreSQL run falls back to SQLite and says so, unless
/// `RINGFENCE_POSTGRES_REQUIRED=1` (CI), where it fails.
pub struct Backing {
    dir: TempDir,
    databases: Option<(TestDatabase, TestDatabase)>,
}

/// Connections per test server to its PostgreSQL call log: tests run side by side, each
/// with its processes, on a server with 100 connections.
const TEST_CONNECTIONS: u32 = 6;

/// The PostgreSQL URLs (with credentials: for the child processes' environment only) of each
/// live `Backing`'s data folder, so that `run_cli` and `Served::start` point the real binary
/// at the same databases.
static POSTGRES_URLS: LazyLock<Mutex<HashMap<PathBuf, (String, String)>>> =
    LazyLock::new(Mutex::default);

impl Backing {
    /// A folder, and in the PostgreSQL run two migrated databases.
    pub fn new() -> Backing {
        Self::make(true)
    }

    /// As [`Backing::new`], but the PostgreSQL databases are empty, as a server's are before
    /// Ringfence first opens them (the SQLite data folder is empty anyway).
    pub fn unmigrated() -> Backing {
        Self::make(false)
    }

    fn make(migrated: bool) -> Backing {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = if on_postgres() { server_url() } else { None };
        let Some(server) = server else {
            if on_postgres() {
                println!("PostgreSQL run without {URL_VARIABLE}: this test ran on SQLite");
            }
            return Backing {
                dir,
                databases: None,
            };
        };
        let (log, vault) = on_own_runtime(async move {
            if migrated {
                futures::join!(TestDatabase::create(&server), TestDatabase::create(&server))
            } else {
                futures::join!(
                    TestDatabase::create_from(&server, None),
                    TestDatabase::create_from(&server, None)
                )
            }
        });
        Self::registered(dir, log, vault)
    }

    /// A folder and its two databases, registered for `run_cli` and `Served::start`.
    fn registered(dir: TempDir, log: TestDatabase, vault: TestDatabase) -> Backing {
        let text = |db: &TestDatabase| {
            let mut url = url::Url::parse(&std::env::var(URL_VARIABLE).expect("the server's URL"))
                .expect("a URL");
            url.set_path(db.url.database());
            url.to_string()
        };
        POSTGRES_URLS
            .lock()
            .expect("registry")
            .insert(dir.path().join("data"), (text(&log), text(&vault)));
        Backing {
            dir,
            databases: Some((log, vault)),
        }
    }

    /// The temporary folder (the data folder is `data` inside it).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Whether this test's call log and vault are PostgreSQL databases.
    pub fn is_postgres(&self) -> bool {
        self.databases.is_some()
    }

    /// The configuration `serve` would resolve for this storage: everything in the data
    /// folder, and the databases on PostgreSQL in the PostgreSQL run.
    pub fn config(&self) -> Config {
        let mut config = Config::in_folder(&self.data());
        if let Some((log, vault)) = &self.databases {
            config.database = DatabaseLocation::Postgres(log.url.clone());
            config.vault = DatabaseLocation::Postgres(vault.url.clone());
            config.database_max_connections = TEST_CONNECTIONS;
        }
        config
    }
}

impl Backing {
    /// A copy of this storage (the server stopped): the folder's files, and on PostgreSQL
    /// new databases made from these as templates. For tests that tamper with a copy.
    pub fn copy(&self) -> Backing {
        let copy = match &self.databases {
            None => Backing {
                dir: tempfile::tempdir().expect("temp dir"),
                databases: None,
            },
            Some((log, vault)) => {
                let server = server_url().expect("the server");
                let (log, vault) = (
                    log.url.database().to_owned(),
                    vault.url.database().to_owned(),
                );
                let (log, vault) = on_own_runtime(async move {
                    (
                        TestDatabase::create_from(&server, Some(&log)).await,
                        TestDatabase::create_from(&server, Some(&vault)).await,
                    )
                });
                Backing::registered(tempfile::tempdir().expect("temp dir"), log, vault)
            }
        };
        copy_folder(&self.data(), &copy.data());
        copy
    }
}

fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("a folder");
    for entry in std::fs::read_dir(from).expect("the folder reads") {
        let entry = entry.expect("an entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a type").is_dir() {
            copy_folder(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("the file copies");
        }
    }
}

/// Runs statements on a data folder's call log as someone with access to the database
/// would (tamper tests): SQLite's file, or the PostgreSQL call log.
pub fn execute_on_call_log(data: &Path, sql: &str) {
    if let Some(url) = postgres_call_log(data) {
        postgres_execute(&url, sql);
        return;
    }
    let conn = rusqlite::Connection::open(data.join("ringfence.db")).expect("the call log opens");
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .expect("a busy timeout");
    conn.execute_batch(sql).expect("the statements run");
}

/// Runs statements on a data folder's vault (SQLite's file, or the PostgreSQL vault).
pub fn execute_on_vault(data: &Path, sql: &str) {
    if let Some(url) = postgres_vault(data) {
        postgres_execute(&url, sql);
        return;
    }
    let conn = rusqlite::Connection::open(data.join("vault.db")).expect("the vault opens");
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .expect("a busy timeout");
    conn.execute_batch(sql).expect("the statements run");
}

/// Bytes written as an SQL literal of the data folder's backend.
pub fn bytes_literal(data: &Path, bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if postgres_call_log(data).is_some() {
        format!("decode('{hex}', 'hex')")
    } else {
        format!("X'{hex}'")
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        if self.databases.is_some() {
            POSTGRES_URLS
                .lock()
                .map(|mut urls| urls.remove(&self.data()))
                .ok();
        }
    }
}

/// The configuration of a data folder made by a [`Backing`] (its PostgreSQL databases in the
/// PostgreSQL run).
pub fn config_for(data: &Path) -> Config {
    let mut config = Config::in_folder(data);
    if let Some((log, vault)) = postgres_urls(data) {
        config.database = DatabaseLocation::Postgres(log.parse().expect("a database URL"));
        config.vault = DatabaseLocation::Postgres(vault.parse().expect("a database URL"));
        config.database_max_connections = TEST_CONNECTIONS;
    }
    config
}

/// The databases of a data folder in the PostgreSQL run. A data folder no `Backing` made
/// would silently test SQLite there: that is a harness error.
fn postgres_urls(data: &Path) -> Option<(String, String)> {
    let urls = POSTGRES_URLS.lock().expect("registry").get(data).cloned();
    if urls.is_none() && on_postgres() && server_url().is_some() {
        panic!(
            "{} was not made by common::Backing: in the PostgreSQL run it would use SQLite",
            data.display()
        );
    }
    urls
}

/// Points a command of the real binary at the data folder's databases.
fn with_databases(command: &mut std::process::Command, data: &Path) {
    if let Some((log, vault)) = postgres_urls(data) {
        command
            .env("RINGFENCE_DATABASE_URL", log)
            .env("RINGFENCE_VAULT_URL", vault)
            .env(
                "RINGFENCE_DATABASE_MAX_CONNECTIONS",
                TEST_CONNECTIONS.to_string(),
            );
    }
}

/// A UK number in Ofcom's drama range, valid to libphonenumber: +44 20 7946 0000..0999.
pub fn uk_number(n: u16) -> String {
    format!("+44207946{:04}", n % 1000)
}

/// A US number in the 555-01xx fiction range.
pub fn us_number(n: u16) -> String {
    format!("+1415555{:04}", 100 + n % 100)
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub dir: Backing,
    pub resources: Resources,
    pub admin: String,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// A server that lets webhook recipients be loopback addresses (`--allow-local-relays`),
    /// for tests that deliver to a receiver started here.
    pub async fn spawn_with_local_relays() -> TestApp {
        Self::spawn_with(|c| c.allow_local_relays = true).await
    }

    /// A server whose configuration `adjust` changes first.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let dir = Backing::new();
        let mut this = Self::spawn_in(dir, adjust).await;
        this.admin = this.token(Role::Admin, None, None, true).await;
        this
    }

    /// Stops the server, closes everything, and starts a new one over the same data
    /// folder (the admin token stays valid).
    pub async fn restart(self) -> TestApp {
        let admin = self.admin.clone();
        let media = self.resources.config.twilio_media.clone();
        let relays = self.resources.config.allow_local_relays;
        let dir = self.stop().await;
        let mut this = Self::spawn_in(dir, move |c| {
            c.twilio_media = media;
            c.allow_local_relays = relays;
        })
        .await;
        this.admin = admin;
        this
    }

    async fn spawn_in(dir: Backing, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = dir.config();
        adjust(&mut config);
        let resources = Resources::open(&config).await.expect("open resources");
        let app = Application::build(&resources).await.expect("build app");
        let address = format!("http://{}", app.address());
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            app.run_until(async move {
                let _ = rx.await;
            })
            .await
            .expect("server");
        });
        TestApp {
            address,
            client: reqwest::Client::new(),
            dir,
            resources,
            admin: String::new(),
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.data()
    }

    /// Stops the server, waiting for requests under way, and closes the databases.
    pub async fn stop(mut self) -> Backing {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.resources.close().await;
        let TestApp { dir, .. } = self;
        dir
    }

    pub async fn agency(&self, redaction_enabled: bool) -> AgencyId {
        let record = AgencyRecord {
            id: AgencyId::generate(),
            name: "Test Agency".into(),
            redaction_enabled,
            max_retention_days: None,
            created_at: Timestamp::now(),
        };
        self.resources
            .log
            .store()
            .create_agency(record.clone())
            .await
            .expect("agency");
        record.id
    }

    pub async fn account(&self, agency: AgencyId) -> AccountId {
        let record = AccountRecord {
            twilio_auth_token: None,
            twilio_delete_recordings: false,
            twilio_account_sid: None,
            id: AccountId::generate(),
            agency_id: agency,
            name: "Test Account".into(),
            // Most suites check that what they send comes back: collect it all. The consent
            // suite sets the defaults it tests explicitly.
            collection: CollectionSettings::collect_all(),
            created_at: Timestamp::now(),
            retention: Default::default(),
        };
        self.resources
            .log
            .store()
            .create_account(record.clone())
            .await
            .expect("account");
        record.id
    }

    /// A fresh agency with one account.
    pub async fn tenant(&self) -> (AgencyId, AccountId) {
        let agency = self.agency(true).await;
        (agency, self.account(agency).await)
    }

    pub async fn token(
        &self,
        role: Role,
        agency: Option<AgencyId>,
        account: Option<AccountId>,
        personal_data: bool,
    ) -> String {
        let args = TokenArgs {
            role: role.as_str().into(),
            agency: agency.map(|a| a.to_string()),
            account: account.map(|a| a.to_string()),
            label: None,
            no_personal_data: !personal_data,
            expires_in_days: None,
        };
        create_token(&self.resources, &args).await.expect("token").1
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, token, path, Some(body))
            .await
    }

    pub async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, token, path, None).await
    }

    /// `PUT` a recording; returns the status and the JSON answer.
    pub async fn upload_recording(
        &self,
        token: &str,
        call: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> (StatusCode, Value) {
        let response = self
            .client
            .put(self.url(&format!("/api/v1/calls/{call}/recording")))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("upload");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `GET` a recording, optionally with a `Range` header.
    pub async fn download_recording(
        &self,
        token: &str,
        call: &str,
        range: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .get(self.url(&format!("/api/v1/calls/{call}/recording")))
            .bearer_auth(token);
        if let Some(r) = range {
            request = request.header("range", r);
        }
        request.send().await.expect("download")
    }

    /// Ingests one call and returns its id.
    pub async fn ingest(&self, account: AccountId, call: Value) -> String {
        let (status, body) = self
            .post(
                &self.admin,
                &format!("/api/v1/accounts/{account}/calls"),
                call,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().expect("id").to_owned()
    }
}

/// A complete call with every field set, from fiction ranges.
pub fn full_call(n: u16) -> Value {
    json!({
        "external_id": format!("CA{n:032}"),
        "started_at": "2026-11-28T10:00:00Z",
        "duration_s": 95,
        "direction": "inbound",
        "status": "completed",
        "tracking_number": us_number(n),
        "source": "google_ads",
        "campaign": "winter-sale",
        "caller_number": uk_number(n),
        "caller_name": "Erika Mustermann",
        "caller_city": "London",
        "caller_region": "ENG",
        "caller_postal_code": "EC1A 1BB",
        "caller_country": "GB",
        "transcript": "Hello, I would like a quote.",
        "notes": "call back tomorrow",
        "tags": ["lead"],
        "visitor": {"ip": "203.0.113.7", "user_agent": "Mozilla/5.0 (X11; Linux x86_64)", "referrer": "https://search.example/",
                    "landing_url": "https://shop.example/winter", "gclid": "EAIaIQobChMI", "utm_source": "google", "utm_medium": "cpc", "utm_campaign": "winter"}
    })
}

/// Every file below `dir`, recursively.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The files below `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    files_below(dir)
        .into_iter()
        .filter(|p| {
            std::fs::read(p)
                .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        })
        .collect()
}

/// The real `ringfence` binary.
pub fn binary() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ringfence"));
    command
        .env_remove("RINGFENCE_DATA")
        .env_remove("RINGFENCE_CONFIG")
        .env_remove("RINGFENCE_LISTEN")
        .env_remove("RINGFENCE_DATABASE_URL")
        .env_remove("RINGFENCE_VAULT_URL");
    command
}

/// Runs a CLI command on `data`; returns (exit code, stdout, stderr).
pub fn run_cli(data: &Path, args: &[&str]) -> (i32, String, String) {
    let mut command = binary();
    with_databases(&mut command, data);
    let output = command
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .expect("run ringfence");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `ringfence serve` as a child process, its stdout and stderr copied into `log_dir`.
pub struct Served {
    pub child: std::process::Child,
    pub address: String,
    pub bootstrap_token: Option<String>,
    pub stdout_file: PathBuf,
}

impl Served {
    pub fn start(data: &Path, log_dir: &Path, extra_env: &[(&str, &str)]) -> Served {
        use std::io::{BufRead, BufReader, Write};
        std::fs::create_dir_all(log_dir).expect("log dir");
        let stderr_file =
            std::fs::File::create(log_dir.join(format!("stderr-{}.log", uuid_like())))
                .expect("stderr file");
        let mut command = binary();
        with_databases(&mut command, data);
        command
            .arg("--data")
            .arg(data)
            .args(["--listen", "127.0.0.1:0", "serve"])
            .stdout(std::process::Stdio::piped())
            .stderr(stderr_file);
        for (k, v) in extra_env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn serve");
        let stdout = child.stdout.take().expect("stdout");
        let stdout_file = log_dir.join(format!("stdout-{}.log", uuid_like()));
        let mut copy = std::fs::File::create(&stdout_file).expect("stdout file");
        let mut reader = BufReader::new(stdout);
        let mut bootstrap_token = None;
        let address = loop {
            let mut line = String::new();
            let n = reader.read_line(&mut line).expect("read stdout");
            assert!(n > 0, "ringfence serve exited before listening");
            copy.write_all(line.as_bytes()).expect("copy");
            if let Some(token) = line
                .trim()
                .strip_prefix("Bootstrap admin token (shown once, keep it safe): ")
            {
                bootstrap_token = Some(token.to_owned());
            }
            if let Some(address) = line.trim().strip_prefix("Ringfence listening on ") {
                break address.to_owned();
            }
        };
        std::thread::spawn(move || {
            let mut rest = String::new();
            while reader.read_line(&mut rest).unwrap_or(0) > 0 {
                let _ = copy.write_all(rest.as_bytes());
                rest.clear();
            }
        });
        Served {
            child,
            address,
            bootstrap_token,
            stdout_file,
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().expect("wait")
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    /// A test that fails before it stops its server must not leave it running: the process is
    /// killed with the test (a server stopped or killed already has exited; this is then a no-op).
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn uuid_like() -> String {
    format!("{}", ringfence_core::CallId::generate())
}

/// `POST` JSON to a served binary with a bearer token; the JSON answer.
pub async fn post_json(client: &reqwest::Client, url: &str, token: &str, body: &Value) -> Value {
    client
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON answer")
}

/// `GET` JSON from a served binary with a bearer token.
pub async fn get_json(client: &reqwest::Client, url: &str, token: &str) -> Value {
    client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON answer")
}

/// `PUT` a WAV recording to a served binary; the status.
pub async fn put_audio(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: Vec<u8>,
) -> StatusCode {
    client
        .put(url)
        .bearer_auth(token)
        .header("content-type", "audio/wav")
        .body(body)
        .send()
        .await
        .expect("request")
        .status()
}

/// An agency and an account made with the real binary's CLI on `data`: their ids.
pub fn cli_tenant(data: &Path, redaction_enabled: bool) -> (String, String) {
    let id = |out: &str| {
        serde_json::from_str::<Value>(out.trim()).expect("JSON")["id"]
            .as_str()
            .expect("id")
            .to_owned()
    };
    let mut args = vec!["agency", "create", "--name", "Test Agency", "--json"];
    if redaction_enabled {
        args.push("--redaction-enabled");
    }
    let (code, out, err) = run_cli(data, &args);
    assert_eq!(code, 0, "{err}");
    let agency = id(&out);
    let (code, out, err) = run_cli(
        data,
        &[
            "account",
            "create",
            "--agency",
            &agency,
            "--name",
            "Test Account",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let account = id(&out);
    // The suites that use the binary check what they send comes back: collect it all.
    let (code, _, err) = run_cli(
        data,
        &[
            "account",
            "set",
            &account,
            "--caller-name",
            "true",
            "--caller-location",
            "true",
            "--recording-gdpr",
            "announce",
            "--transcription",
            "true",
            "--visitor-ip",
            "full",
        ],
    );
    assert_eq!(code, 0, "{err}");
    (agency, account)
}

/// Every journal entry the token may see, oldest first, page by page.
pub async fn all_audit(app: &TestApp, page: u32) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let (_, body) = app
            .get(&app.admin, &format!("/api/v1/audit?limit={page}{cursor}"))
            .await;
        out.extend(body["items"].as_array().expect("items").iter().cloned());
        match body["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

/// How a [`Trap`] answers a connection.
#[derive(Debug, Clone)]
pub enum TrapAnswer {
    /// Reads the request head, then sends these bytes and closes.
    Raw(String),
    /// Closes at once, reading nothing.
    Close,
    /// Reads the request head and never answers (the client times out).
    Silent,
}

/// A raw TCP listener on 127.0.0.1 that counts every connection made to it and every request
/// head carrying an Authorization header: the place an SSRF test asserts nothing reached.
pub struct Trap {
    pub port: u16,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    authorizations: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Trap {
    pub async fn start(answer: TrapAnswer) -> Trap {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let authorizations = Arc::new(AtomicUsize::new(0));
        let (c, a) = (connections.clone(), authorizations.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let (a, answer) = (a.clone(), answer.clone());
                tokio::spawn(async move {
                    if matches!(answer, TrapAnswer::Close) {
                        return;
                    }
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    if String::from_utf8_lossy(&head)
                        .to_ascii_lowercase()
                        .contains("\r\nauthorization:")
                    {
                        a.fetch_add(1, Ordering::SeqCst);
                    }
                    match answer {
                        TrapAnswer::Raw(bytes) => {
                            let _ = socket.write_all(bytes.as_bytes()).await;
                            let _ = socket.shutdown().await;
                        }
                        TrapAnswer::Silent => {
                            // Holds the connection open: the client's timeout ends it.
                            let _ = socket.read(&mut buf).await;
                        }
                        TrapAnswer::Close => {}
                    }
                });
            }
        });
        Trap {
            port,
            connections,
            authorizations,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Request heads that carried an Authorization header.
    pub fn authorizations(&self) -> usize {
        self.authorizations
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A loopback port nothing listens on (bound, then released).
pub async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// The whole journal of a data folder's call log (made by a [`Backing`]), oldest first, read
/// beside whatever process serves it: SQLite's file read-only, or PostgreSQL's table.
pub fn read_journal(data: &Path) -> Vec<ringfence_store::AuditEntry> {
    let Some((log, _)) = postgres_urls(data) else {
        return ringfence_store_sqlite::read_journal(&data.join("ringfence.db"), 0)
            .expect("the journal reads");
    };
    let url: ringfence_store_postgres::DatabaseUrl = log.parse().expect("a database URL");
    on_own_runtime(async move {
        use ringfence_store::Store;
        let store = ringfence_store_postgres::PgStore::open(&url, 1)
            .await
            .expect("the call log opens");
        let mut entries = Vec::new();
        loop {
            let page = store
                .audit(ringfence_store::AuditQuery {
                    agency_id: None,
                    account_id: None,
                    after_seq: entries.last().map(|e: &ringfence_store::AuditEntry| e.seq),
                    before_seq: None,
                    limit: 500,
                })
                .await
                .expect("the journal reads");
            if page.is_empty() {
                break;
            }
            entries.extend(page);
        }
        store.close().await;
        entries
    })
}

/// Runs a future to its end on a runtime of its own, on a thread of its own: callable from
/// plain and from async tests alike (a multi-threaded test keeps its server's tasks going).
fn on_own_runtime<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(work)
    })
    .join()
    .expect("the work finished")
}

/// A data folder's PostgreSQL call log (URL text), for tests that read or alter stored rows
/// as someone with database access would. `None` on the SQLite run.
pub fn postgres_call_log(data: &Path) -> Option<String> {
    postgres_urls(data).map(|(log, _)| log)
}

/// A data folder's PostgreSQL vault (URL text). `None` on the SQLite run.
pub fn postgres_vault(data: &Path) -> Option<String> {
    postgres_urls(data).map(|(_, vault)| vault)
}

/// One text value from a query on a PostgreSQL database given by URL text.
pub fn postgres_text(url: &str, sql: &str) -> String {
    postgres_scalar(url, sql)
}

/// One number from a query on a PostgreSQL database given by URL text.
pub fn postgres_count(url: &str, sql: &str) -> i64 {
    postgres_scalar(url, sql)
}

fn postgres_scalar<T>(url: &str, sql: &str) -> T
where
    T: Send
        + Unpin
        + 'static
        + for<'r> sqlx::Decode<'r, sqlx::Postgres>
        + sqlx::Type<sqlx::Postgres>,
{
    let (url, sql) = (url.to_owned(), sql.to_owned());
    on_own_runtime(async move {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url)
            .await
            .expect("the database answers");
        let value: T = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut conn)
            .await
            .expect("the query runs");
        conn.close().await.ok();
        value
    })
}

/// Runs one statement on a PostgreSQL database given by URL text, from any test.
pub fn postgres_execute(url: &str, sql: &str) -> u64 {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    on_own_runtime(async move {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url)
            .await
            .expect("the database answers");
        let done = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect("the statement runs");
        conn.close().await.ok();
        done.rows_affected()
    })
}
