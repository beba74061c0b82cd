//! The raw-database baselines: the same call rows written with plain prepared SQL into SQLite
//! files made by the same migrations and opened with the same pragmas as Ringfence's, with no
//! encryption, no validation, no idempotency look-up and no HTTP.
//!
//! The rows are Ringfence's own: each template goes through the API's validation once, and
//! its personal categories are encoded by the store's payload encoder. Each blob is then
//! padded by [`SEAL_OVERHEAD`] bytes, so the baseline writes exactly as many bytes per row as
//! the encrypted path does.

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rusqlite::{Connection, params};

use ringfence_core::call::{CallStatus, Direction};
use ringfence_core::jurisdiction::gdpr_scope_of_number;
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, AgencyId, CallId, SessionId};
use ringfence_crypto::SEAL_OVERHEAD;
use ringfence_store::payload;
use ringfence_store_sqlite::{Checkpointer, SqliteStore, SqliteVault};

use crate::synthetic::Calls;
use crate::whatif::WhatIf;

/// The bytes of a wrapped data key as the vault stores it: a 32-byte key, sealed.
pub(crate) const WRAPPED_KEY_LEN: usize = 32 + SEAL_OVERHEAD;

const INSERT_SESSION: &str = "INSERT INTO sessions (id, account_id, external_id, started_at, created_at, utm_source, utm_medium, utm_campaign, visitor, redacted_at, redaction_reason)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, NULL) ON CONFLICT (account_id, external_id) DO NOTHING";
const INSERT_CALL: &str = "INSERT INTO calls (id, account_id, external_id, started_at, created_at, duration_s, direction, status, tracking_number, source, campaign, utm_source, utm_medium, utm_campaign, gdpr_scope, caller_bidx, session_id, caller_identity, caller_location, transcript, interaction, recording_object, recording_content_type, recording_bytes, redacted_at, redaction_reason, redacted_by)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, NULL, NULL, NULL, NULL, NULL, NULL)";
const INSERT_KEY: &str = "INSERT INTO data_keys (id, account_id, purpose, wrapped, created_at) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING";

/// One template's column values; only the ids and the external id differ between calls.
pub(crate) struct RowTemplate {
    pub(crate) started_at: i64,
    pub(crate) duration_s: Option<u32>,
    pub(crate) direction: Option<&'static str>,
    pub(crate) status: Option<&'static str>,
    pub(crate) tracking_number: String,
    pub(crate) source: Option<String>,
    pub(crate) campaign: Option<String>,
    pub(crate) utm: [Option<String>; 3],
    pub(crate) gdpr_scope: Option<bool>,
    pub(crate) caller_bidx: Option<[u8; 16]>,
    pub(crate) caller_identity: Option<Vec<u8>>,
    pub(crate) caller_location: Option<Vec<u8>>,
    pub(crate) transcript: Option<Vec<u8>>,
    pub(crate) interaction: Option<Vec<u8>>,
    /// The inline visitor's blob, if the call has one.
    pub(crate) visitor: Option<Option<Vec<u8>>>,
}

/// A plaintext blob the size of its sealed form.
fn padded(plain: Option<impl std::ops::Deref<Target = Vec<u8>>>) -> Option<Vec<u8>> {
    plain.map(|p| {
        let mut v = Vec::with_capacity(p.len() + SEAL_OVERHEAD);
        v.extend_from_slice(&p);
        v.resize(p.len() + SEAL_OVERHEAD, 0);
        v
    })
}

/// Sixteen bytes standing in for the keyed blind index: same size, one value per number.
fn plain_index(number: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (i, number).hash(&mut h);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

impl RowTemplate {
    fn from_body(body: &[u8]) -> anyhow::Result<RowTemplate> {
        let input: ringfence_http::dto::CallInput =
            serde_json::from_slice(body).context("template is not a CallInput")?;
        let c = input
            .into_domain("")
            .map_err(|e| anyhow::anyhow!("template rejected by validation: {} errors", e.len()))?;
        Ok(RowTemplate {
            started_at: c.started_at.millis(),
            duration_s: c.duration_s,
            direction: c.direction.map(Direction::as_str),
            status: c.status.map(CallStatus::as_str),
            tracking_number: c.tracking_number.as_str().to_owned(),
            source: c.source.clone(),
            campaign: c.campaign.clone(),
            utm: [
                c.utm.source.clone(),
                c.utm.medium.clone(),
                c.utm.campaign.clone(),
            ],
            gdpr_scope: c.caller.number.as_ref().and_then(gdpr_scope_of_number),
            caller_bidx: c.caller.number.as_ref().map(|n| plain_index(n.as_str())),
            caller_identity: padded(payload::encode_identity(&c.caller)),
            caller_location: padded(payload::encode_location(&c.location)),
            transcript: padded(payload::encode_transcript(c.transcript.as_ref())),
            interaction: padded(payload::encode_interaction(&c.interaction)),
            visitor: c
                .visitor
                .as_ref()
                .map(|v| padded(payload::encode_visitor(v))),
        })
    }
}

/// The rows of every template, in the templates' order.
pub(crate) fn row_templates(templates: &Calls) -> anyhow::Result<Vec<RowTemplate>> {
    (0..templates.len())
        .map(|i| RowTemplate::from_body(&templates.body(i as u64)))
        .collect()
}

/// Applies Ringfence's pragmas (`ringfence_store_sqlite::db::configure`).
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// A fresh call-log database with the schema, an agency and an account, and the row templates.
pub struct CallLogDb {
    conn: Connection,
    checkpointer: Checkpointer,
    account: String,
    rows: Vec<RowTemplate>,
}

/// A fresh vault database with its schema.
pub struct VaultDb {
    conn: Connection,
    checkpointer: Checkpointer,
    account: String,
}

/// The ids Ringfence would give call `n`: the call's, and its inline session's if it has one.
pub struct RowIds {
    call: String,
    session: Option<String>,
}

impl CallLogDb {
    pub fn create(dir: &Path, templates: &Calls, what_if: &WhatIf) -> anyhow::Result<CallLogDb> {
        let path = dir.join("baseline.db");
        // Ringfence's own migrations make the schema; its writer is closed before we write.
        SqliteStore::open(&path)
            .context("cannot create the baseline call log")?
            .db()
            .close();
        let conn = Connection::open(&path)?;
        configure(&conn)?;
        what_if.apply(&conn)?;
        // Checkpoints as Ringfence's writers have them: in a thread of their own.
        let checkpointer = Checkpointer::start(&path)?;
        checkpointer.attach(&conn)?;
        let agency = AgencyId::generate().to_string();
        let account = AccountId::generate().to_string();
        let now = Timestamp::now().millis();
        conn.execute("INSERT INTO agencies (id, name, redaction_enabled, max_retention_days, created_at) VALUES (?1, 'Bench Agency', 1, NULL, ?2)", params![agency, now])?;
        conn.execute("INSERT INTO accounts (id, agency_id, name, settings, created_at) VALUES (?1, ?2, 'Bench Account', '{}', ?3)", params![account, agency, now])?;
        let rows = row_templates(templates)?;
        Ok(CallLogDb {
            conn,
            checkpointer,
            account,
            rows,
        })
    }

    pub fn ids(&self, n: u64, templates: &Calls) -> RowIds {
        let has_session = self.rows[templates.template_of(n)].visitor.is_some();
        RowIds {
            call: CallId::generate().to_string(),
            session: has_session.then(|| SessionId::generate().to_string()),
        }
    }

    /// Inserts call `n` and its session in the open transaction.
    fn insert(&self, n: u64, templates: &Calls, ids: &RowIds, now: i64) -> rusqlite::Result<()> {
        let t = &self.rows[templates.template_of(n)];
        let started_at = templates.started_at_millis(n).unwrap_or(t.started_at);
        if let (Some(id), Some(visitor)) = (&ids.session, &t.visitor) {
            self.conn.prepare_cached(INSERT_SESSION)?.execute(params![
                id,
                self.account,
                None::<String>,
                started_at,
                now,
                t.utm[0],
                t.utm[1],
                t.utm[2],
                visitor
            ])?;
        }
        self.conn.prepare_cached(INSERT_CALL)?.execute(params![
            ids.call,
            self.account,
            Calls::external_id(n),
            started_at,
            now,
            t.duration_s,
            t.direction,
            t.status,
            t.tracking_number,
            t.source,
            t.campaign,
            t.utm[0],
            t.utm[1],
            t.utm[2],
            t.gdpr_scope,
            t.caller_bidx.as_ref().map(|b| b.as_slice()),
            ids.session,
            t.caller_identity,
            t.caller_location,
            t.transcript,
            t.interaction,
        ])?;
        Ok(())
    }

    pub fn count_calls(&self) -> anyhow::Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM calls", [], |r| r.get::<_, i64>(0))? as u64)
    }
}

impl VaultDb {
    pub fn create(dir: &Path, calls: &CallLogDb, what_if: &WhatIf) -> anyhow::Result<VaultDb> {
        let path = dir.join("baseline-vault.db");
        SqliteVault::open(&path)
            .context("cannot create the baseline vault")?
            .db()
            .close();
        let conn = Connection::open(&path)?;
        configure(&conn)?;
        what_if.apply(&conn)?;
        let checkpointer = Checkpointer::start(&path)?;
        checkpointer.attach(&conn)?;
        Ok(VaultDb {
            conn,
            checkpointer,
            account: calls.account.clone(),
        })
    }

    /// Inserts the data-key rows of one call (and its session) in the open transaction.
    fn insert(&self, ids: &RowIds, now: i64) -> rusqlite::Result<()> {
        let wrapped = [0u8; WRAPPED_KEY_LEN];
        let mut stmt = self.conn.prepare_cached(INSERT_KEY)?;
        stmt.execute(params![ids.call, self.account, "call", &wrapped[..], now])?;
        if let Some(session) = &ids.session {
            stmt.execute(params![session, self.account, "session", &wrapped[..], now])?;
        }
        Ok(())
    }
}

/// Inserts calls `0..count` in transactions of `per_transaction` calls; returns the time
/// taken. With a vault, each transaction's keys commit first, as Ringfence does.
pub fn insert_batches(
    calls: &CallLogDb,
    vault: Option<&VaultDb>,
    templates: &Calls,
    count: u64,
    per_transaction: u64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut n = 0;
    while n < count {
        let end = (n + per_transaction).min(count);
        let now = Timestamp::now().millis();
        let ids: Vec<RowIds> = (n..end).map(|i| calls.ids(i, templates)).collect();
        if let Some(vault) = vault {
            vault.conn.execute_batch("BEGIN IMMEDIATE")?;
            for id in &ids {
                vault.insert(id, now)?;
            }
            vault.conn.execute_batch("COMMIT")?;
            vault.checkpointer.after_commit(&vault.conn);
        }
        calls.conn.execute_batch("BEGIN IMMEDIATE")?;
        for (i, id) in (n..end).zip(&ids) {
            calls.insert(i, templates, id, now)?;
        }
        calls.conn.execute_batch("COMMIT")?;
        calls.checkpointer.after_commit(&calls.conn);
        n = end;
    }
    Ok(started.elapsed())
}

/// What the one-commit-per-call load measured.
pub struct CommitPerCall {
    pub calls: u64,
    pub elapsed: Duration,
    pub latencies_us: Vec<u32>,
}

type Reply = std::sync::mpsc::SyncSender<rusqlite::Result<()>>;
type Job = (u64, Arc<RowIds>, Reply);

/// A thread that commits each job it receives in a transaction of its own, first come
/// first served: Ringfence's writer thread with groups of one.
fn one_commit_writer<D: Send + 'static>(
    db: D,
    write: impl Fn(&D, u64, &RowIds) -> rusqlite::Result<()> + Send + 'static,
    conn: fn(&D) -> (&Connection, &Checkpointer),
) -> (std::sync::mpsc::Sender<Job>, std::thread::JoinHandle<D>) {
    let (jobs, queue) = std::sync::mpsc::channel::<Job>();
    let thread = std::thread::spawn(move || {
        for (n, ids, reply) in queue {
            let (c, checkpointer) = conn(&db);
            let result = c
                .execute_batch("BEGIN IMMEDIATE")
                .and_then(|()| write(&db, n, &ids))
                .and_then(|()| c.execute_batch("COMMIT"));
            checkpointer.after_commit(c);
            let _ = reply.send(result);
        }
        db
    });
    (jobs, thread)
}

/// `clients` threads, each storing one call at a time for `seconds`, every call committed in
/// a transaction of its own with `synchronous=FULL` — with a vault, its keys first in the
/// vault's own transaction, then its rows, each database with its own writer thread, as
/// Ringfence writes. No HTTP, validation or encryption: the fastest that one commit per
/// request can go on this disk, an upper bound for Ringfence without group commit.
pub fn commit_per_call(
    calls: CallLogDb,
    vault: Option<VaultDb>,
    templates: Arc<Calls>,
    clients: usize,
    seconds: f64,
) -> anyhow::Result<CommitPerCall> {
    let t = templates.clone();
    let (call_jobs, call_writer) = one_commit_writer(
        calls,
        move |db: &CallLogDb, n, ids| db.insert(n, &t, ids, Timestamp::now().millis()),
        |db| (&db.conn, &db.checkpointer),
    );
    let vault_writer = vault.map(|v| {
        one_commit_writer(
            v,
            |db: &VaultDb, _, ids| db.insert(ids, Timestamp::now().millis()),
            |db| (&db.conn, &db.checkpointer),
        )
    });
    let sessions: Arc<Vec<bool>> = Arc::new(
        (0..templates.len())
            .map(|i| templates.template(i).get("visitor").is_some())
            .collect(),
    );
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let barrier = Arc::new(std::sync::Barrier::new(clients + 1));
    let run_for = Duration::from_secs_f64(seconds);
    let mut threads = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (call_jobs, next, barrier, templates, sessions) = (
            call_jobs.clone(),
            next.clone(),
            barrier.clone(),
            templates.clone(),
            sessions.clone(),
        );
        let vault_jobs = vault_writer.as_ref().map(|(jobs, _)| jobs.clone());
        threads.push(std::thread::spawn(move || -> anyhow::Result<Vec<u32>> {
            let mut latencies = Vec::new();
            let (reply, answer) = std::sync::mpsc::sync_channel(1);
            let stopped = || anyhow::anyhow!("a writer thread stopped");
            barrier.wait();
            let started = Instant::now();
            while started.elapsed() < run_for {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let t0 = Instant::now();
                let ids = Arc::new(RowIds {
                    call: CallId::generate().to_string(),
                    session: sessions[templates.template_of(n)]
                        .then(|| SessionId::generate().to_string()),
                });
                if let Some(vault_jobs) = &vault_jobs {
                    vault_jobs
                        .send((n, ids.clone(), reply.clone()))
                        .map_err(|_| stopped())?;
                    answer.recv().map_err(|_| stopped())??;
                }
                call_jobs
                    .send((n, ids, reply.clone()))
                    .map_err(|_| stopped())?;
                answer.recv().map_err(|_| stopped())??;
                latencies.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            Ok(latencies)
        }));
    }
    drop(call_jobs);
    let vault_thread = vault_writer.map(|(jobs, thread)| {
        drop(jobs);
        thread
    });
    barrier.wait();
    let started = Instant::now();
    let mut latencies_us = Vec::new();
    for t in threads {
        latencies_us.extend(
            t.join()
                .map_err(|_| anyhow::anyhow!("a client thread panicked"))??,
        );
    }
    let elapsed = started.elapsed();
    let calls = call_writer
        .join()
        .map_err(|_| anyhow::anyhow!("the writer thread panicked"))?;
    if let Some(t) = vault_thread {
        t.join()
            .map_err(|_| anyhow::anyhow!("the vault writer thread panicked"))?;
    }
    let stored = calls.count_calls()?;
    anyhow::ensure!(
        stored == latencies_us.len() as u64,
        "commit-per-call stored {stored} calls for {} commits",
        latencies_us.len()
    );
    Ok(CommitPerCall {
        calls: latencies_us.len() as u64,
        elapsed,
        latencies_us,
    })
}
