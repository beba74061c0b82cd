//! The vault on PostgreSQL: wrapped data keys in a database of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgPool;

use ringfence_core::timestamp::Timestamp;
use ringfence_crypto::{KeyPurpose, KeyRecord, VaultError, VaultStore};
use ringfence_store::StoreError;

use crate::connect::{DatabaseUrl, Schema, migrate};
use crate::describe_error;

/// The vault in PostgreSQL.
#[derive(Clone)]
pub struct PgVault {
    pool: PgPool,
    vacuum: Arc<Vacuum>,
}

/// Group vacuuming of the key table: every `compact` returns only after a `VACUUM` that
/// began after it was called has finished, and one `VACUUM` serves every caller waiting
/// when it begins (as group commit serves many writers with one flush).
#[derive(Default)]
struct Vacuum {
    /// How many `compact` calls were made.
    requested: AtomicU64,
    /// Every call up to this number is served by a finished `VACUUM`.
    served: AtomicU64,
    /// How many `VACUUM`s ran.
    runs: AtomicU64,
    running: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for PgVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgVault").finish_non_exhaustive()
    }
}

fn storage(e: sqlx::Error) -> VaultError {
    VaultError::Storage(describe_error(&e))
}

impl PgVault {
    /// Connects to the vault's database and applies its missing migrations.
    pub async fn open(url: &DatabaseUrl, max_connections: u32) -> Result<Self, StoreError> {
        migrate(url, Schema::Vault).await?;
        Ok(Self {
            pool: url.pool(max_connections).await?,
            vacuum: Arc::default(),
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// How many `VACUUM`s of the key table `compact` has run (one serves many callers).
    pub fn vacuums_run(&self) -> u64 {
        self.vacuum.runs.load(Ordering::SeqCst)
    }
}

fn purpose_of(text: &str) -> Result<KeyPurpose, VaultError> {
    KeyPurpose::parse(text).ok_or_else(|| VaultError::Storage("data_keys.purpose: unknown".into()))
}

#[async_trait]
impl VaultStore for PgVault {
    async fn insert(&self, records: Vec<KeyRecord>) -> Result<(), VaultError> {
        if records.is_empty() {
            return Ok(());
        }
        let now = Timestamp::now().millis();
        let mut ids = Vec::with_capacity(records.len());
        let mut accounts = Vec::with_capacity(records.len());
        let mut purposes = Vec::with_capacity(records.len());
        let mut wrapped = Vec::with_capacity(records.len());
        for r in records {
            ids.push(r.id);
            accounts.push(r.account_id);
            purposes.push(r.purpose.as_str());
            wrapped.push(r.wrapped);
        }
        // One statement, committed before this returns: inserts are durable on return.
        sqlx::query(
            "INSERT INTO data_keys (id, account_id, purpose, wrapped, created_at)
             SELECT id, account_id, purpose, wrapped, $5
               FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) AS k (id, account_id, purpose, wrapped)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&ids)
        .bind(&accounts)
        .bind(&purposes)
        .bind(&wrapped)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(storage)?;
        Ok(())
    }

    async fn fetch(&self, ids: Vec<String>) -> Result<Vec<KeyRecord>, VaultError> {
        let rows = sqlx::query(
            "SELECT id, account_id, purpose, wrapped FROM data_keys WHERE id = ANY($1)
             ORDER BY array_position($1, id)",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        rows.iter()
            .map(|row| {
                Ok(KeyRecord {
                    id: row.try_get("id").map_err(storage)?,
                    account_id: row.try_get("account_id").map_err(storage)?,
                    purpose: purpose_of(row.try_get("purpose").map_err(storage)?)?,
                    wrapped: row.try_get("wrapped").map_err(storage)?,
                })
            })
            .collect()
    }

    async fn destroy(&self, ids: Vec<String>) -> Result<u64, VaultError> {
        let done = sqlx::query("DELETE FROM data_keys WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&self.pool)
            .await
            .map_err(storage)?;
        Ok(done.rows_affected())
    }

    async fn list(
        &self,
        purpose: KeyPurpose,
        created_before_millis: i64,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<String>, VaultError> {
        sqlx::query_scalar(
            "SELECT id FROM data_keys WHERE purpose = $1 AND created_at < $2 AND id > $3
             ORDER BY id LIMIT $4",
        )
        .bind(purpose.as_str())
        .bind(created_before_millis)
        .bind(after.unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(storage)
    }

    async fn anchor_journal(&self, seq: i64, hash: [u8; 32]) -> Result<(), VaultError> {
        sqlx::query(
            "INSERT INTO journal_anchor (id, seq, hash, at) VALUES (1, $1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, at = excluded.at
             WHERE excluded.seq > journal_anchor.seq",
        )
        .bind(seq)
        .bind(hash.as_slice())
        .bind(Timestamp::now().millis())
        .execute(&self.pool)
        .await
        .map_err(storage)?;
        Ok(())
    }

    async fn journal_anchor(&self) -> Result<Option<(i64, [u8; 32])>, VaultError> {
        let row = sqlx::query("SELECT seq, hash FROM journal_anchor WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(storage)?;
        let Some(row) = row else { return Ok(None) };
        let seq: i64 = row.try_get("seq").map_err(storage)?;
        let hash: Vec<u8> = row.try_get("hash").map_err(storage)?;
        let hash = hash
            .try_into()
            .map_err(|_| VaultError::Storage("journal_anchor.hash: not 32 bytes".into()))?;
        Ok(Some((seq, hash)))
    }

    /// A destroyed key's row lives on in a dead tuple until `VACUUM` prunes it: this runs
    /// one on the key table and returns when it is done. Calls made while one runs share
    /// the next, so the delay between a destruction and the end of the `VACUUM` that
    /// removes its row is bounded by two `VACUUM`s of the key table, however many
    /// redactions run at once. (A transaction holding a snapshot older than the
    /// destruction keeps the tuple until it ends; the page's free space, WAL and backups
    /// keep the bytes until overwritten or aged out: unreadable once the master key that
    /// wrapped them is rotated away.)
    async fn compact(&self) -> Result<(), VaultError> {
        let ticket = self.vacuum.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let _running = self.vacuum.running.lock().await;
        if self.vacuum.served.load(Ordering::SeqCst) >= ticket {
            return Ok(());
        }
        // Every call counted so far was made before this VACUUM begins.
        let covers = self.vacuum.requested.load(Ordering::SeqCst);
        // The heap only: pruning frees the dead tuple's bytes (its line pointer stays until
        // autovacuum cleans the indexes, which hold ids, purposes and times, no key). On a
        // million keys this takes milliseconds where a full VACUUM takes ~90 ms; no
        // truncation, which would lock out readers for a moment.
        sqlx::query("VACUUM (INDEX_CLEANUP OFF, TRUNCATE OFF) data_keys")
            .execute(&self.pool)
            .await
            .map_err(storage)?;
        self.vacuum.served.fetch_max(covers, Ordering::SeqCst);
        self.vacuum.runs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn ping(&self) -> Result<(), VaultError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(storage)?;
        Ok(())
    }
}
