//! The vault on PostgreSQL: wrapped data keys in a database of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use sqlx::PgConnection;
use sqlx::Row;
use sqlx::postgres::PgPool;

use ringfence_core::timestamp::Timestamp;
use ringfence_crypto::{
    KeyPurpose, KeyRecord, MasterKeyEntry, MasterKeyState, MasterKeyStatus, Rewrap, RotationRecord,
    VaultError, VaultStore,
};
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

fn key_record(row: &sqlx::postgres::PgRow) -> Result<KeyRecord, VaultError> {
    Ok(KeyRecord {
        id: row.try_get("id").map_err(storage)?,
        account_id: row.try_get("account_id").map_err(storage)?,
        purpose: purpose_of(row.try_get("purpose").map_err(storage)?)?,
        wrapped: row.try_get("wrapped").map_err(storage)?,
        master: row
            .try_get::<Option<String>, _>("master")
            .map_err(storage)?
            .unwrap_or_default(),
    })
}

/// The master-key lock ("ringfence master keys", a fixed number): shared by inserts,
/// exclusive for whatever changes which key is newest (adopt, a rotation's begin and finish).
const MASTER_LOCK: i64 = 0x7269_6e67_666d_6b01;

async fn master_lock(conn: &mut PgConnection, exclusive: bool) -> Result<(), VaultError> {
    let sql = if exclusive {
        "SELECT pg_advisory_xact_lock($1)"
    } else {
        "SELECT pg_advisory_xact_lock_shared($1)"
    };
    sqlx::query(sql)
        .bind(MASTER_LOCK)
        .execute(conn)
        .await
        .map_err(storage)?;
    Ok(())
}

/// The key new rows must be wrapped by: the pending one of a rotation, else the active one.
async fn newest_master(conn: &mut PgConnection) -> Result<Option<String>, VaultError> {
    sqlx::query_scalar(
        "SELECT fingerprint FROM master_keys WHERE state IN ('next', 'active')
         ORDER BY state = 'next' DESC LIMIT 1",
    )
    .fetch_optional(conn)
    .await
    .map_err(storage)
}

/// Registers `fingerprint` as the active key and labels the rows from before fingerprints.
async fn adopt(conn: &mut PgConnection, fingerprint: &str) -> Result<(), VaultError> {
    sqlx::query("INSERT INTO master_keys (fingerprint, state, since) VALUES ($1, 'active', $2)")
        .bind(fingerprint)
        .bind(Timestamp::now().millis())
        .execute(&mut *conn)
        .await
        .map_err(storage)?;
    sqlx::query("UPDATE data_keys SET master = $1 WHERE master IS NULL")
        .bind(fingerprint)
        .execute(conn)
        .await
        .map_err(storage)?;
    Ok(())
}

async fn state_of(
    conn: &mut PgConnection,
    fingerprint: &str,
) -> Result<Option<String>, VaultError> {
    sqlx::query_scalar("SELECT state FROM master_keys WHERE fingerprint = $1")
        .bind(fingerprint)
        .fetch_optional(conn)
        .await
        .map_err(storage)
}

/// Rows wrapped by another key than `to` (rows from before fingerprints included).
async fn count_wrapped_by_other(conn: &mut PgConnection, to: &str) -> Result<u64, VaultError> {
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM data_keys WHERE master IS DISTINCT FROM $1")
            .bind(to)
            .fetch_one(conn)
            .await
            .map_err(storage)?;
    Ok(n.max(0) as u64)
}

fn purpose_of(text: &str) -> Result<KeyPurpose, VaultError> {
    KeyPurpose::parse(text).ok_or_else(|| VaultError::Storage("data_keys.purpose: unknown".into()))
}

impl PgVault {
    /// Runs or joins the VACUUM that serves `ticket`.
    async fn vacuum_for(&self, ticket: u64) -> Result<(), VaultError> {
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
}

#[async_trait]
impl VaultStore for PgVault {
    async fn insert(&self, records: Vec<KeyRecord>) -> Result<(), VaultError> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        let mut tx = self.pool.begin().await.map_err(storage)?;
        // Checked in the insert's transaction under the master-key lock (shared here,
        // exclusive in a rotation's begin and finish): a begin or finish commits wholly
        // before or after this insert, so no row lands under a retired key. A vault that
        // knows no key yet adopts the records' key under the exclusive lock.
        let adopting = newest_master(&mut tx).await?.is_none();
        master_lock(&mut tx, adopting).await?;
        let newest = match newest_master(&mut tx).await? {
            Some(newest) => newest,
            None => {
                adopt(&mut tx, &first.master).await?;
                first.master.clone()
            }
        };
        if records.iter().any(|r| r.master != newest) {
            return Err(VaultError::StaleMasterKey { newest });
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
            "INSERT INTO data_keys (id, account_id, purpose, wrapped, created_at, master)
             SELECT id, account_id, purpose, wrapped, $5, $6
               FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) AS k (id, account_id, purpose, wrapped)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&ids)
        .bind(&accounts)
        .bind(&purposes)
        .bind(&wrapped)
        .bind(now)
        .bind(&newest)
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        tx.commit().await.map_err(storage)?;
        Ok(())
    }

    async fn fetch(&self, ids: Vec<String>) -> Result<Vec<KeyRecord>, VaultError> {
        let rows = sqlx::query(
            "SELECT id, account_id, purpose, wrapped, master FROM data_keys WHERE id = ANY($1)
             ORDER BY array_position($1, id)",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        rows.iter().map(key_record).collect()
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
    fn compact<'life0, 'async_trait>(
        &'life0 self,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(), VaultError>> + Send + 'async_trait>,
    >
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        // The ticket is taken when compact is called, not when its future is first polled:
        // a caller joins the next VACUUM from that moment, whoever polls first.
        let ticket = self.vacuum.requested.fetch_add(1, Ordering::SeqCst) + 1;
        Box::pin(async move { self.vacuum_for(ticket).await })
    }

    async fn master_key_status(&self) -> Result<MasterKeyStatus, VaultError> {
        let mut conn = self.pool.acquire().await.map_err(storage)?;
        let keys: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT fingerprint, state, since FROM master_keys ORDER BY since, fingerprint",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(storage)?;
        let keys = keys
            .into_iter()
            .map(|(fingerprint, state, since_millis)| MasterKeyEntry {
                fingerprint,
                state: MasterKeyState::parse(&state).unwrap_or(MasterKeyState::Retired),
                since_millis,
            })
            .collect();
        // The first migration's time is the vault's creation.
        let created_at_millis: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MIN(applied_at), 0)::bigint FROM ringfence_vault_migrations",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(storage)?;
        let last: Option<(String, String, i64, Option<i64>, i64)> = sqlx::query_as(
            "SELECT from_key, to_key, started_at, finished_at, rewrapped FROM rotations
             ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&mut *conn)
        .await
        .map_err(storage)?;
        Ok(MasterKeyStatus {
            keys,
            created_at_millis,
            last_rotation: last.map(|(from, to, started, finished, rewrapped)| RotationRecord {
                from,
                to,
                started_at_millis: started,
                finished_at_millis: finished,
                rewrapped: rewrapped.max(0) as u64,
            }),
        })
    }

    async fn adopt_master_key(&self, fingerprint: String) -> Result<(), VaultError> {
        let mut tx = self.pool.begin().await.map_err(storage)?;
        master_lock(&mut tx, true).await?;
        let active: Option<String> =
            sqlx::query_scalar("SELECT fingerprint FROM master_keys WHERE state = 'active'")
                .fetch_optional(&mut *tx)
                .await
                .map_err(storage)?;
        if active.is_none() {
            adopt(&mut tx, &fingerprint).await?;
        }
        tx.commit().await.map_err(storage)
    }

    async fn begin_rotation(&self, from: String, to: String) -> Result<u64, VaultError> {
        let mut tx = self.pool.begin().await.map_err(storage)?;
        master_lock(&mut tx, true).await?;
        if state_of(&mut tx, &from).await?.as_deref() != Some("active") {
            return Err(VaultError::Rotation(format!(
                "{from} is not the vault's active master key"
            )));
        }
        let next: Option<String> =
            sqlx::query_scalar("SELECT fingerprint FROM master_keys WHERE state = 'next'")
                .fetch_optional(&mut *tx)
                .await
                .map_err(storage)?;
        match next {
            Some(next) if next == to => {}
            Some(next) => {
                return Err(VaultError::Rotation(format!(
                    "a rotation to the master key {next} is under way: finish it first (run the rotation again with that key file)"
                )));
            }
            None => {
                if state_of(&mut tx, &to).await?.is_some() {
                    return Err(VaultError::Rotation(format!(
                        "the master key {to} was used by this vault before and was retired: make a new key"
                    )));
                }
                let now = Timestamp::now().millis();
                sqlx::query(
                    "INSERT INTO master_keys (fingerprint, state, since) VALUES ($1, 'next', $2)",
                )
                .bind(&to)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(storage)?;
                sqlx::query(
                    "INSERT INTO rotations (from_key, to_key, started_at) VALUES ($1, $2, $3)",
                )
                .bind(&from)
                .bind(&to)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(storage)?;
            }
        }
        let left = count_wrapped_by_other(&mut tx, &to).await?;
        tx.commit().await.map_err(storage)?;
        Ok(left)
    }

    async fn wrapped_by_other(
        &self,
        to: String,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<KeyRecord>, VaultError> {
        sqlx::query(
            "SELECT id, account_id, purpose, wrapped, master FROM data_keys
             WHERE id > $1 AND master IS DISTINCT FROM $2 ORDER BY id LIMIT $3",
        )
        .bind(after.unwrap_or_default())
        .bind(&to)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?
        .iter()
        .map(key_record)
        .collect()
    }

    async fn rewrap(&self, to: String, changes: Vec<Rewrap>) -> Result<u64, VaultError> {
        // The compare-and-set: a row destroyed since it was read matches nothing (an UPDATE
        // never re-creates it), one changed since keeps its change.
        let mut ids = Vec::with_capacity(changes.len());
        let mut old = Vec::with_capacity(changes.len());
        let mut new = Vec::with_capacity(changes.len());
        for c in changes {
            ids.push(c.id);
            old.push(c.old_wrapped);
            new.push(c.new_wrapped);
        }
        let done = sqlx::query(
            "UPDATE data_keys d SET wrapped = c.new, master = $4
             FROM unnest($1::text[], $2::bytea[], $3::bytea[]) AS c (id, old, new)
             WHERE d.id = c.id AND d.wrapped = c.old",
        )
        .bind(&ids)
        .bind(&old)
        .bind(&new)
        .bind(&to)
        .execute(&self.pool)
        .await
        .map_err(storage)?;
        Ok(done.rows_affected())
    }

    async fn finish_rotation(
        &self,
        from: String,
        to: String,
        rewrapped: u64,
    ) -> Result<u64, VaultError> {
        let mut tx = self.pool.begin().await.map_err(storage)?;
        master_lock(&mut tx, true).await?;
        match state_of(&mut tx, &to).await?.as_deref() {
            Some("active") => return Ok(0),
            Some("next") => {}
            _ => {
                return Err(VaultError::Rotation(format!(
                    "no rotation to the master key {to} is under way"
                )));
            }
        }
        // The count and the retirement share this transaction and the exclusive lock: an
        // insert cannot slip a row under `from` in between.
        let left = count_wrapped_by_other(&mut tx, &to).await?;
        if left > 0 {
            return Ok(left);
        }
        let now = Timestamp::now().millis();
        sqlx::query("UPDATE master_keys SET state = 'retired', since = $1 WHERE state = 'active'")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
        sqlx::query("UPDATE master_keys SET state = 'active', since = $1 WHERE fingerprint = $2")
            .bind(now)
            .bind(&to)
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
        sqlx::query(
            "UPDATE rotations SET finished_at = $1, rewrapped = $2
             WHERE from_key = $3 AND to_key = $4 AND finished_at IS NULL",
        )
        .bind(now)
        .bind(i64::try_from(rewrapped).unwrap_or(i64::MAX))
        .bind(&from)
        .bind(&to)
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        tx.commit().await.map_err(storage)?;
        Ok(0)
    }

    async fn ping(&self) -> Result<(), VaultError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(storage)?;
        Ok(())
    }
}
