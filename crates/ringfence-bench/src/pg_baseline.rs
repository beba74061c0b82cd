//! The raw-SQL baselines on PostgreSQL: Ringfence's own rows (see [`crate::baseline`]: the
//! API's validation, the store's payload encoder, each blob padded to its sealed size)
//! written with plain SQL into databases made by Ringfence's migrations, on the same server,
//! with no encryption, no validation, no idempotency look-up and no HTTP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::PgPool;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, AgencyId, CallId, SessionId};
use ringfence_store_postgres::DatabaseUrl;

use crate::baseline::{RowTemplate, WRAPPED_KEY_LEN, row_templates};
use crate::pg::Databases;
use crate::synthetic::Calls;

/// Calls per INSERT statement in the batch baseline (each column bound as one array).
const ROWS_PER_STATEMENT: u64 = 1000;

const INSERT_SESSIONS: &str = "INSERT INTO sessions (id, account_id, external_id, started_at, created_at, utm_source, utm_medium, utm_campaign, visitor)
     SELECT s.id, $1, NULL, s.started_at, $2, s.utm_source, s.utm_medium, s.utm_campaign, s.visitor
     FROM unnest($3::uuid[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::bytea[])
          AS s (id, started_at, utm_source, utm_medium, utm_campaign, visitor)";
const INSERT_CALLS: &str = "INSERT INTO calls (id, account_id, external_id, started_at, created_at, duration_s, direction, status, tracking_number, source, campaign, utm_source, utm_medium, utm_campaign, gdpr_scope, caller_bidx, session_id, caller_identity, caller_location, transcript, interaction)
     SELECT c.id, $1, c.external_id, c.started_at, $2, c.duration_s, c.direction, c.status, c.tracking_number, c.source, c.campaign, c.utm_source, c.utm_medium, c.utm_campaign, c.gdpr_scope, c.caller_bidx, c.session_id, c.caller_identity, c.caller_location, c.transcript, c.interaction
     FROM unnest($3::uuid[], $4::text[], $5::bigint[], $6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::boolean[], $16::bytea[], $17::uuid[], $18::bytea[], $19::bytea[], $20::bytea[], $21::bytea[])
          AS c (id, external_id, started_at, duration_s, direction, status, tracking_number, source, campaign, utm_source, utm_medium, utm_campaign, gdpr_scope, caller_bidx, session_id, caller_identity, caller_location, transcript, interaction)";
const INSERT_KEYS: &str =
    "INSERT INTO data_keys (id, account_id, purpose, wrapped, created_at, master)
     SELECT k.id, $1, k.purpose, k.wrapped, $2, $3
     FROM unnest($4::text[], $5::text[], $6::bytea[]) AS k (id, purpose, wrapped)";
const INSERT_SESSION: &str = "INSERT INTO sessions (id, account_id, external_id, started_at, created_at, utm_source, utm_medium, utm_campaign, visitor)
     VALUES ($1, $2, NULL, $3, $4, $5, $6, $7, $8)";
const INSERT_CALL: &str = "INSERT INTO calls (id, account_id, external_id, started_at, created_at, duration_s, direction, status, tracking_number, source, campaign, utm_source, utm_medium, utm_campaign, gdpr_scope, caller_bidx, session_id, caller_identity, caller_location, transcript, interaction)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)";
const INSERT_KEY: &str =
    "INSERT INTO data_keys (id, account_id, purpose, wrapped, created_at, master)
     VALUES ($1, $2, $3, $4, $5, $6)";

/// Connections to the vault database in the one-commit-per-call baseline (as Ringfence's
/// `VAULT_CONNECTIONS`).
const VAULT_CONNECTIONS: u32 = 8;

/// A master-key fingerprint's length, so that key rows are the size Ringfence's are.
const FINGERPRINT: &str = "bench-master-key-fingerprint-0000";

fn sql_error(e: sqlx::Error) -> anyhow::Error {
    anyhow::anyhow!(ringfence_store_postgres::describe_error(&e))
}

/// The baseline's call log and vault on the server, with an agency, an account and the rows.
pub struct PgBaseline {
    dbs: Databases,
    account: Uuid,
    rows: Arc<Vec<RowTemplate>>,
}

/// The ids of call `n`: its own, and its inline session's if it has one.
struct Ids {
    call: Uuid,
    session: Option<Uuid>,
}

impl PgBaseline {
    /// Fresh, migrated databases on the server `url` names.
    pub async fn create(url: &DatabaseUrl, templates: &Calls) -> anyhow::Result<PgBaseline> {
        let rows = Arc::new(row_templates(templates)?);
        let dbs = Databases::create(url, None).await?;
        let agency = AgencyId::generate().as_uuid();
        let account = AccountId::generate().as_uuid();
        let made = async {
            let mut conn = dbs.log.connect().await?;
            let now = Timestamp::now().millis();
            sqlx::query("INSERT INTO agencies (id, name, redaction_enabled, created_at) VALUES ($1, 'Bench Agency', true, $2)")
                .bind(agency).bind(now).execute(&mut conn).await.map_err(sql_error)?;
            sqlx::query("INSERT INTO accounts (id, agency_id, name, collect_caller_name, collect_caller_location, recording_gdpr, recording_other, collect_transcription, visitor_ip, collect_visitor_details, created_at)
                 VALUES ($1, $2, 'Bench Account', true, true, 'opt_in', 'opt_in', true, 'full', true, $3)")
                .bind(account).bind(agency).bind(now).execute(&mut conn).await.map_err(sql_error)?;
            let _ = conn.close().await;
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = made {
            dbs.drop().await;
            return Err(e);
        }
        Ok(PgBaseline { dbs, account, rows })
    }

    pub async fn drop(self) {
        self.dbs.drop().await;
    }

    fn ids(&self, n: u64, templates: &Calls) -> Ids {
        Ids {
            call: CallId::generate().as_uuid(),
            session: self.rows[templates.template_of(n)]
                .visitor
                .is_some()
                .then(|| SessionId::generate().as_uuid()),
        }
    }

    pub async fn count_calls(&self) -> anyhow::Result<u64> {
        crate::pg::count_calls(&self.dbs.log).await
    }

    /// Inserts calls `0..count` in transactions of `per_transaction` calls, each column
    /// bound as an array (`INSERT … SELECT FROM unnest(…)`, up to 1,000 rows a statement);
    /// returns the time taken. With `vault`, each transaction's keys commit first in the
    /// vault database, as Ringfence does.
    pub async fn insert_batches(
        &self,
        templates: &Calls,
        count: u64,
        per_transaction: u64,
        vault: bool,
    ) -> anyhow::Result<Duration> {
        let mut log = self.dbs.log.connect().await?;
        let mut keys = match vault {
            true => Some(self.dbs.vault.connect().await?),
            false => None,
        };
        let account = self.account.to_string();
        let started = Instant::now();
        let mut n = 0;
        while n < count {
            let end = (n + per_transaction).min(count);
            let now = Timestamp::now().millis();
            let ids: Vec<Ids> = (n..end).map(|i| self.ids(i, templates)).collect();
            if let Some(keys) = &mut keys {
                let mut tx = keys.begin().await.map_err(sql_error)?;
                for chunk in ids.chunks(ROWS_PER_STATEMENT as usize) {
                    let (mut id, mut purpose, mut wrapped) = (Vec::new(), Vec::new(), Vec::new());
                    for i in chunk {
                        id.push(i.call.to_string());
                        purpose.push("call");
                        wrapped.push(vec![0u8; WRAPPED_KEY_LEN]);
                        if let Some(s) = i.session {
                            id.push(s.to_string());
                            purpose.push("session");
                            wrapped.push(vec![0u8; WRAPPED_KEY_LEN]);
                        }
                    }
                    sqlx::query(INSERT_KEYS)
                        .bind(&account)
                        .bind(now)
                        .bind(FINGERPRINT)
                        .bind(&id)
                        .bind(&purpose)
                        .bind(&wrapped)
                        .execute(&mut *tx)
                        .await
                        .map_err(sql_error)?;
                }
                tx.commit().await.map_err(sql_error)?;
            }
            let mut tx = log.begin().await.map_err(sql_error)?;
            let mut first = n;
            for chunk in ids.chunks(ROWS_PER_STATEMENT as usize) {
                self.insert_chunk(&mut tx, templates, first, chunk, now)
                    .await?;
                first += chunk.len() as u64;
            }
            tx.commit().await.map_err(sql_error)?;
            n = end;
        }
        let elapsed = started.elapsed();
        let _ = log.close().await;
        if let Some(keys) = keys {
            let _ = keys.close().await;
        }
        Ok(elapsed)
    }

    /// Calls `first..` with their sessions, two statements.
    async fn insert_chunk(
        &self,
        conn: &mut PgConnection,
        templates: &Calls,
        first: u64,
        ids: &[Ids],
        now: i64,
    ) -> anyhow::Result<()> {
        let mut s = SessionColumns::default();
        let mut c = CallColumns::default();
        for (k, i) in ids.iter().enumerate() {
            let n = first + k as u64;
            let t = &self.rows[templates.template_of(n)];
            let started_at = templates.started_at_millis(n).unwrap_or(t.started_at);
            if let (Some(id), Some(visitor)) = (i.session, &t.visitor) {
                s.id.push(id);
                s.started_at.push(started_at);
                s.utm[0].push(t.utm[0].clone());
                s.utm[1].push(t.utm[1].clone());
                s.utm[2].push(t.utm[2].clone());
                s.visitor.push(visitor.clone());
            }
            c.push(t, i, Calls::external_id(n), started_at);
        }
        if !s.id.is_empty() {
            sqlx::query(INSERT_SESSIONS)
                .bind(self.account)
                .bind(now)
                .bind(&s.id)
                .bind(&s.started_at)
                .bind(&s.utm[0])
                .bind(&s.utm[1])
                .bind(&s.utm[2])
                .bind(&s.visitor)
                .execute(&mut *conn)
                .await
                .map_err(sql_error)?;
        }
        sqlx::query(INSERT_CALLS)
            .bind(self.account)
            .bind(now)
            .bind(&c.id)
            .bind(&c.external_id)
            .bind(&c.started_at)
            .bind(&c.duration_s)
            .bind(&c.direction)
            .bind(&c.status)
            .bind(&c.tracking_number)
            .bind(&c.source)
            .bind(&c.campaign)
            .bind(&c.utm[0])
            .bind(&c.utm[1])
            .bind(&c.utm[2])
            .bind(&c.gdpr_scope)
            .bind(&c.caller_bidx)
            .bind(&c.session_id)
            .bind(&c.caller_identity)
            .bind(&c.caller_location)
            .bind(&c.transcript)
            .bind(&c.interaction)
            .execute(&mut *conn)
            .await
            .map_err(sql_error)?;
        Ok(())
    }

    /// `clients` connections (to each database), each storing one call at a time for
    /// `seconds`, every call in a transaction of its own — with `vault`, its keys first in
    /// the vault's own transaction, then its rows, as Ringfence writes. No HTTP, validation
    /// or encryption: one commit per request on this server, which itself flushes the WAL of
    /// concurrent commits together.
    pub async fn commit_per_call(
        &self,
        templates: Arc<Calls>,
        clients: usize,
        seconds: f64,
        vault: bool,
    ) -> anyhow::Result<crate::baseline::CommitPerCall> {
        let pool = |url: &DatabaseUrl, connections: u32| {
            let url = url.clone();
            async move { url.pool(connections).await.map_err(anyhow::Error::from) }
        };
        let log: PgPool = pool(&self.dbs.log, clients as u32).await?;
        // Ringfence's vault pool has 8 connections; 64 more would pass the server's
        // default max_connections (100).
        let keys: Option<PgPool> = match vault {
            true => Some(pool(&self.dbs.vault, VAULT_CONNECTIONS).await?),
            false => None,
        };
        let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let run_for = Duration::from_secs_f64(seconds);
        let barrier = Arc::new(tokio::sync::Barrier::new(clients + 1));
        let mut tasks = Vec::with_capacity(clients);
        for _ in 0..clients {
            let (log, keys, next, barrier, templates, rows, account) = (
                log.clone(),
                keys.clone(),
                next.clone(),
                barrier.clone(),
                templates.clone(),
                self.rows.clone(),
                self.account,
            );
            tasks.push(tokio::spawn(async move {
                // Every client holds its call-log connection from the start; a failure is
                // reported after the barrier, which every client must reach.
                let conn = log.acquire().await.map_err(sql_error);
                barrier.wait().await;
                let mut conn = conn?;
                let account_text = account.to_string();
                let mut latencies = Vec::new();
                let started = Instant::now();
                while started.elapsed() < run_for {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let t0 = Instant::now();
                    let t = &rows[templates.template_of(n)];
                    let ids = Ids {
                        call: CallId::generate().as_uuid(),
                        session: t.visitor.is_some().then(|| SessionId::generate().as_uuid()),
                    };
                    let now = Timestamp::now().millis();
                    if let Some(keys) = &keys {
                        let mut tx = keys.begin().await.map_err(sql_error)?;
                        let wrapped = [0u8; WRAPPED_KEY_LEN];
                        for (id, purpose) in [(Some(ids.call), "call"), (ids.session, "session")] {
                            let Some(id) = id else { continue };
                            sqlx::query(INSERT_KEY)
                                .bind(id.to_string())
                                .bind(&account_text)
                                .bind(purpose)
                                .bind(&wrapped[..])
                                .bind(now)
                                .bind(FINGERPRINT)
                                .execute(&mut *tx)
                                .await
                                .map_err(sql_error)?;
                        }
                        tx.commit().await.map_err(sql_error)?;
                    }
                    let started_at = templates.started_at_millis(n).unwrap_or(t.started_at);
                    let mut tx = conn.begin().await.map_err(sql_error)?;
                    if let (Some(id), Some(visitor)) = (ids.session, &t.visitor) {
                        sqlx::query(INSERT_SESSION)
                            .bind(id)
                            .bind(account)
                            .bind(started_at)
                            .bind(now)
                            .bind(&t.utm[0])
                            .bind(&t.utm[1])
                            .bind(&t.utm[2])
                            .bind(visitor)
                            .execute(&mut *tx)
                            .await
                            .map_err(sql_error)?;
                    }
                    sqlx::query(INSERT_CALL)
                        .bind(ids.call)
                        .bind(account)
                        .bind(Calls::external_id(n))
                        .bind(started_at)
                        .bind(now)
                        .bind(t.duration_s.map(i64::from))
                        .bind(t.direction)
                        .bind(t.status)
                        .bind(&t.tracking_number)
                        .bind(&t.source)
                        .bind(&t.campaign)
                        .bind(&t.utm[0])
                        .bind(&t.utm[1])
                        .bind(&t.utm[2])
                        .bind(t.gdpr_scope)
                        .bind(t.caller_bidx.as_ref().map(|b| b.as_slice()))
                        .bind(ids.session)
                        .bind(&t.caller_identity)
                        .bind(&t.caller_location)
                        .bind(&t.transcript)
                        .bind(&t.interaction)
                        .execute(&mut *tx)
                        .await
                        .map_err(sql_error)?;
                    tx.commit().await.map_err(sql_error)?;
                    latencies.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
                anyhow::Ok(latencies)
            }));
        }
        barrier.wait().await;
        let started = Instant::now();
        let mut latencies_us = Vec::new();
        for t in tasks {
            latencies_us.extend(t.await??);
        }
        let elapsed = started.elapsed();
        log.close().await;
        if let Some(k) = keys {
            k.close().await;
        }
        let stored = self.count_calls().await?;
        anyhow::ensure!(
            stored == latencies_us.len() as u64,
            "one commit per call stored {stored} calls for {} commits",
            latencies_us.len()
        );
        Ok(crate::baseline::CommitPerCall {
            calls: latencies_us.len() as u64,
            elapsed,
            latencies_us,
        })
    }
}

#[derive(Default)]
struct SessionColumns {
    id: Vec<Uuid>,
    started_at: Vec<i64>,
    utm: [Vec<Option<String>>; 3],
    visitor: Vec<Option<Vec<u8>>>,
}

#[derive(Default)]
struct CallColumns {
    id: Vec<Uuid>,
    external_id: Vec<String>,
    started_at: Vec<i64>,
    duration_s: Vec<Option<i64>>,
    direction: Vec<Option<&'static str>>,
    status: Vec<Option<&'static str>>,
    tracking_number: Vec<String>,
    source: Vec<Option<String>>,
    campaign: Vec<Option<String>>,
    utm: [Vec<Option<String>>; 3],
    gdpr_scope: Vec<Option<bool>>,
    caller_bidx: Vec<Option<Vec<u8>>>,
    session_id: Vec<Option<Uuid>>,
    caller_identity: Vec<Option<Vec<u8>>>,
    caller_location: Vec<Option<Vec<u8>>>,
    transcript: Vec<Option<Vec<u8>>>,
    interaction: Vec<Option<Vec<u8>>>,
}

impl CallColumns {
    fn push(&mut self, t: &RowTemplate, ids: &Ids, external_id: String, started_at: i64) {
        self.id.push(ids.call);
        self.external_id.push(external_id);
        self.started_at.push(started_at);
        self.duration_s.push(t.duration_s.map(i64::from));
        self.direction.push(t.direction);
        self.status.push(t.status);
        self.tracking_number.push(t.tracking_number.clone());
        self.source.push(t.source.clone());
        self.campaign.push(t.campaign.clone());
        for k in 0..3 {
            self.utm[k].push(t.utm[k].clone());
        }
        self.gdpr_scope.push(t.gdpr_scope);
        self.caller_bidx.push(t.caller_bidx.map(|b| b.to_vec()));
        self.session_id.push(ids.session);
        self.caller_identity.push(t.caller_identity.clone());
        self.caller_location.push(t.caller_location.clone());
        self.transcript.push(t.transcript.clone());
        self.interaction.push(t.interaction.clone());
    }
}
