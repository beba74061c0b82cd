//! The load generators: HTTP/1.1 clients on hyper, one keep-alive connection each, with
//! request bodies spliced from pre-serialised templates so that the client spends as little
//! of the shared CPU as possible.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::synthetic::Calls;

/// Where and as whom the load is sent.
#[derive(Clone)]
pub struct Target {
    pub address: SocketAddr,
    pub authorization: String,
    pub calls_path: String,
    pub batch_path: String,
}

impl Target {
    pub fn new(address: SocketAddr, token: &str, account: &str) -> Target {
        Target {
            address,
            authorization: format!("Bearer {token}"),
            calls_path: format!("/api/v1/accounts/{account}/calls"),
            batch_path: format!("/api/v1/accounts/{account}/calls/batch"),
        }
    }
}

/// One client's keep-alive connection.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

impl Connection {
    pub async fn open(address: SocketAddr) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect(address)
            .await
            .with_context(|| format!("cannot connect to {address}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection {
            sender,
            host: address.to_string(),
        })
    }

    /// POSTs a JSON body; returns the status and the response body.
    pub async fn post(
        &mut self,
        target: &Target,
        path: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        self.sender.ready().await.context("the connection closed")?;
        let request = Request::post(path)
            .header(hyper::header::HOST, &self.host)
            .header(hyper::header::AUTHORIZATION, &target.authorization)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// What a load measured.
#[derive(Debug, Default)]
pub struct Load {
    pub calls: u64,
    pub requests: u64,
    pub elapsed: Duration,
    /// One entry per request, in microseconds.
    pub latencies_us: Vec<u32>,
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

fn check(status: StatusCode, body: &[u8], what: &str) -> anyhow::Result<()> {
    if status != StatusCode::CREATED {
        bail!(
            "{what} answered {status}, not 201: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    Ok(())
}

/// Sends one call outside the measurement: creates the account's blind-index key and fills
/// the server's token and tenant caches.
pub async fn warm_up(target: &Target, calls: &Calls, n: u64) -> anyhow::Result<()> {
    let mut conn = Connection::open(target.address).await?;
    let (status, body) = conn.post(target, &target.calls_path, calls.body(n)).await?;
    check(status, &body, "the warm-up call")
}

/// `clients` connections, each posting single calls back to back for `run_for`. Every call
/// must be answered 201. The clock starts once every connection is open.
pub async fn single_calls(
    target: &Target,
    calls: Arc<Calls>,
    clients: usize,
    run_for: Duration,
    first: u64,
) -> anyhow::Result<Load> {
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        connections.push(Connection::open(target.address).await?);
    }
    let next = Arc::new(AtomicU64::new(first));
    let started = Instant::now();
    let deadline = started + run_for;
    let mut tasks = Vec::with_capacity(clients);
    for mut conn in connections {
        let (target, calls, next) = (target.clone(), calls.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 14);
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let body = calls.body(n);
                let t0 = Instant::now();
                let (status, response) = conn.post(&target, &target.calls_path, body).await?;
                latencies.push(micros(t0.elapsed()));
                check(status, &response, "a single call")?;
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut load = Load::default();
    for task in tasks {
        load.latencies_us.extend(task.await??);
    }
    load.elapsed = started.elapsed();
    load.requests = load.latencies_us.len() as u64;
    load.calls = load.requests;
    Ok(load)
}

/// `clients` connections sending calls `first..first + total` in batches of `batch`.
pub async fn batches(
    target: &Target,
    calls: Arc<Calls>,
    clients: usize,
    total: u64,
    batch: u64,
    first: u64,
) -> anyhow::Result<Load> {
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        connections.push(Connection::open(target.address).await?);
    }
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for mut conn in connections {
        let (target, calls, next) = (target.clone(), calls.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut stored = 0u64;
            loop {
                let offset = next.fetch_add(batch, Ordering::Relaxed);
                if offset >= total {
                    break;
                }
                let count = batch.min(total - offset);
                let body = calls.batch_body(first + offset, count);
                let t0 = Instant::now();
                let (status, response) = conn.post(&target, &target.batch_path, body).await?;
                latencies.push(micros(t0.elapsed()));
                check(status, &response, "a batch")?;
                let parsed: serde_json::Value = serde_json::from_slice(&response)?;
                let created = parsed["created"]
                    .as_u64()
                    .context("the batch answer has no `created`")?;
                anyhow::ensure!(created == count, "a batch of {count} created {created}");
                stored += created;
            }
            anyhow::Ok((latencies, stored))
        }));
    }
    let mut load = Load::default();
    for task in tasks {
        let (latencies, stored) = task.await??;
        load.latencies_us.extend(latencies);
        load.calls += stored;
    }
    load.elapsed = started.elapsed();
    load.requests = load.latencies_us.len() as u64;
    Ok(load)
}
