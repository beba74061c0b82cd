//! Server time of the web interface's pages on the demo data, next to the JSON API route
//! that reads the same data (the baseline: what the page adds is templates and the extra
//! lookups a page makes).
//!
//! The demo fills a fresh data folder; a signed-in session is made for an installation
//! admin; each page is requested once to warm caches, then `--repeat` times over one
//! keep-alive loopback connection, timed from request to the last byte of the answer.
//!
//! `cargo run --release -p ringfence-bench --bin pages -- --calls 2000 --repeat 30`

use std::time::Instant;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

use ringfence::commands::{TokenArgs, create_token};
use ringfence::{Application, Config, Resources};
use ringfence_core::access::{Role, Scope};
use ringfence_core::timestamp::Timestamp;
use ringfence_store::WebSessionRecord;

#[derive(Parser)]
struct Cli {
    /// Calls the demo generates.
    #[arg(long, default_value_t = 2000)]
    calls: usize,
    /// Timed requests per page.
    #[arg(long, default_value_t = 30)]
    repeat: usize,
}

struct Client {
    sender: SendRequest<Empty<Bytes>>,
    host: String,
}

impl Client {
    async fn open(address: std::net::SocketAddr) -> anyhow::Result<Client> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Client {
            sender,
            host: address.to_string(),
        })
    }

    /// GETs `path`; answers the status, the body and the time to its last byte (ms).
    async fn get(
        &mut self,
        path: &str,
        header: (&str, &str),
    ) -> anyhow::Result<(StatusCode, Bytes, f64)> {
        self.sender.ready().await.context("the connection closed")?;
        let request = Request::get(path)
            .header(hyper::header::HOST, &self.host)
            .header(header.0, header.1)
            .body(Empty::new())?;
        let started = Instant::now();
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body, started.elapsed().as_secs_f64() * 1e3))
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn p90(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[(values.len() * 9 / 10).min(values.len() - 1)]
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.repeat == 0 {
        bail!("--repeat must be positive");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = Config::in_folder(&dir.path().join("data"));
    let resources = Resources::open(&config).await?;
    let started = Instant::now();
    let summary = ringfence::demo::run_demo(&resources, cli.calls, false).await?;
    eprintln!(
        "demo data: {} calls in {:.1} s",
        cli.calls,
        started.elapsed().as_secs_f64()
    );
    // The account with the most calls.
    let account = summary["accounts"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .max_by_key(|x| x["calls"].as_u64().unwrap_or(0))
                .and_then(|x| x["id"].as_str())
        })
        .context("the demo made no account")?
        .to_owned();

    // A signed-in session of an installation admin, made the way sign-in makes one.
    let user = resources
        .log
        .create_user(
            "bench-admin@example.com",
            zeroize::Zeroizing::new("bench-password-0123456789".to_owned()),
            Role::Admin,
            Scope::Installation,
            true,
            "cli".into(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("user: {e}"))?;
    let cookie_value = "bench-session-cookie-value-0123456789abcdef";
    let now = Timestamp::now();
    resources
        .log
        .store()
        .start_web_session(
            WebSessionRecord {
                hash: Sha256::digest(cookie_value.as_bytes()).into(),
                user_id: user.id,
                csrf_token: "bench-csrf".into(),
                created_at: now,
                last_seen_at: now,
            },
            None,
        )
        .await?;
    let cookie = format!("rf_session={cookie_value}");
    let token = create_token(
        &resources,
        &TokenArgs {
            role: "admin".into(),
            agency: None,
            account: None,
            label: Some("bench".into()),
            no_personal_data: false,
            expires_in_days: None,
        },
    )
    .await?
    .1;
    let bearer = format!("Bearer {token}");

    let app = Application::build(&resources).await?;
    let address = app.address();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = app
            .run_until(async move {
                let _ = stopped.await;
            })
            .await;
    });
    let mut client = Client::open(address).await?;

    // A call of the account, from the API.
    let (_, body, _) = client
        .get(
            &format!("/api/v1/accounts/{account}/calls?limit=1"),
            ("authorization", &bearer),
        )
        .await?;
    let list: serde_json::Value = serde_json::from_slice(&body)?;
    let call = list["items"][0]["id"]
        .as_str()
        .context("the account has no call")?
        .to_owned();

    let log = format!("/api/v1/accounts/{account}/calls");
    let pages: Vec<(String, String, String)> = vec![
        (
            "call log".into(),
            format!("/ui/accounts/{account}/calls"),
            log.clone(),
        ),
        (
            "call log, filtered".into(),
            format!("/ui/accounts/{account}/calls?redacted=false&source=google_ads"),
            format!("{log}?redacted=false&source=google_ads"),
        ),
        (
            "call detail".into(),
            format!("/ui/calls/{call}"),
            format!("/api/v1/calls/{call}"),
        ),
        (
            "caller redaction confirmation".into(),
            format!("/ui/calls/{call}/redact-caller"),
            format!("/api/v1/calls/{call}"),
        ),
        (
            "caller page".into(),
            format!("/ui/calls/{call}/caller"),
            format!("/api/v1/accounts/{account}/consents"),
        ),
        (
            "checklist".into(),
            format!("/ui/accounts/{account}/checklist"),
            format!("/api/v1/accounts/{account}/checklist"),
        ),
        (
            "settings".into(),
            format!("/ui/accounts/{account}/settings"),
            format!("/api/v1/accounts/{account}/settings"),
        ),
        (
            "journal".into(),
            "/ui/journal".into(),
            "/api/v1/audit".into(),
        ),
        (
            "users".into(),
            format!("/ui/accounts/{account}/users"),
            format!("/api/v1/accounts/{account}/notices"),
        ),
    ];
    println!("| page | median ms | p90 ms | JSON API route median ms | ratio | target < 100 ms |");
    println!("| --- | ---: | ---: | ---: | ---: | --- |");
    for (name, page, api) in pages {
        let mut page_ms = Vec::with_capacity(cli.repeat);
        let mut api_ms = Vec::with_capacity(cli.repeat);
        for i in 0..=cli.repeat {
            let (status, _, ms) = client.get(&page, ("cookie", &cookie)).await?;
            if !(status.is_success() || status == StatusCode::CONFLICT) {
                bail!("{name}: {status}");
            }
            let (status, _, api_time) = client.get(&api, ("authorization", &bearer)).await?;
            if !status.is_success() {
                bail!("{name} (API): {status}");
            }
            // The first round warms caches and is not counted.
            if i > 0 {
                page_ms.push(ms);
                api_ms.push(api_time);
            }
        }
        let m = median(&mut page_ms);
        let a = median(&mut api_ms);
        println!(
            "| {name} | {m:.1} | {:.1} | {a:.1} | {:.2} | {} |",
            p90(&mut page_ms),
            m / a,
            if m < 100.0 { "met" } else { "NOT met" }
        );
    }
    drop(client);
    let _ = stop.send(());
    let _ = server.await;
    resources.close().await;
    Ok(())
}
