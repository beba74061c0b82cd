use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use ringfence_core::timestamp::Timestamp;
use ringfence_crypto::{KeyPurpose, KeyRecord, VaultError, VaultStore};

use super::db::SqliteDb;
use super::schema;
use crate::db_error;
use ringfence_store::StoreError;

/// The vault in its own SQLite file, apart from the call log.
#[derive(Clone)]
pub struct SqliteVault {
    db: Arc<SqliteDb>,
}

impl SqliteVault {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            db: SqliteDb::open(path, schema::VAULT)?,
        })
    }

    pub fn db(&self) -> &Arc<SqliteDb> {
        &self.db
    }
}

fn backend(e: StoreError) -> VaultError {
    VaultError::Storage(e.to_string())
}

#[async_trait]
impl VaultStore for SqliteVault {
    async fn insert(&self, records: Vec<KeyRecord>) -> Result<(), VaultError> {
        self.db
            .write(move |conn| {
                let now = Timestamp::now().millis();
                let mut stmt = conn.prepare_cached(
                    "INSERT INTO data_keys (id, account_id, purpose, wrapped, created_at) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING",
                ).map_err(db_error)?;
                for r in &records {
                    stmt.execute(params![r.id, r.account_id, r.purpose.as_str(), r.wrapped, now]).map_err(db_error)?;
                }
                Ok(())
            })
            .await
            .map_err(backend)
    }

    async fn fetch(&self, ids: Vec<String>) -> Result<Vec<KeyRecord>, VaultError> {
        self.db
            .read(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT id, account_id, purpose, wrapped FROM data_keys WHERE id = ?1",
                    )
                    .map_err(db_error)?;
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    let row = stmt
                        .query_row([&id], |r| {
                            let purpose: String = r.get(2)?;
                            Ok(KeyRecord {
                                id: r.get(0)?,
                                account_id: r.get(1)?,
                                purpose: KeyPurpose::parse(&purpose).unwrap_or(KeyPurpose::Call),
                                wrapped: r.get(3)?,
                            })
                        })
                        .optional()
                        .map_err(db_error)?;
                    out.extend(row);
                }
                Ok(out)
            })
            .await
            .map_err(backend)
    }

    async fn destroy(&self, ids: Vec<String>) -> Result<u64, VaultError> {
        self.db
            .write(move |conn| {
                // One statement for all the keys (see `redaction::apply` for why).
                let mut list = String::from("[");
                for (i, id) in ids.iter().enumerate() {
                    if i > 0 {
                        list.push(',');
                    }
                    list.push('"');
                    list.push_str(&id.replace(['\\', '"'], ""));
                    list.push('"');
                }
                list.push(']');
                let n = conn
                    .prepare_cached(
                        "DELETE FROM data_keys WHERE id IN (SELECT value FROM json_each(?1))",
                    )
                    .map_err(db_error)?
                    .execute([list])
                    .map_err(db_error)?;
                Ok(n as u64)
            })
            .await
            .map_err(backend)
    }

    async fn list(
        &self,
        purpose: KeyPurpose,
        created_before_millis: i64,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<String>, VaultError> {
        self.db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id FROM data_keys WHERE purpose = ?1 AND created_at < ?2 AND id > ?3 ORDER BY id LIMIT ?4",
                ).map_err(db_error)?;
                let ids = stmt
                    .query_map(params![purpose.as_str(), created_before_millis, after.unwrap_or_default(), limit], |r| r.get::<_, String>(0)).map_err(db_error)?
                    .collect::<Result<Vec<_>, _>>().map_err(db_error)?;
                Ok(ids)
            })
            .await
            .map_err(backend)
    }

    async fn anchor_journal(&self, seq: i64, hash: [u8; 32]) -> Result<(), VaultError> {
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO journal_anchor (id, seq, hash, at) VALUES (1, ?1, ?2, ?3)
                     ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, at = excluded.at WHERE excluded.seq > journal_anchor.seq",
                ).map_err(db_error)?
                .execute(params![seq, hash.as_slice(), Timestamp::now().millis()]).map_err(db_error)?;
                Ok(())
            })
            .await
            .map_err(backend)
    }

    async fn journal_anchor(&self) -> Result<Option<(i64, [u8; 32])>, VaultError> {
        self.db
            .read(|conn| {
                let row: Option<(i64, Vec<u8>)> = conn
                    .query_row(
                        "SELECT seq, hash FROM journal_anchor WHERE id = 1",
                        [],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(db_error)?;
                Ok(row.and_then(|(seq, hash)| hash.try_into().ok().map(|h| (seq, h))))
            })
            .await
            .map_err(backend)
    }

    async fn compact(&self) -> Result<(), VaultError> {
        self.db.truncate_wal().await.map_err(backend)
    }

    async fn ping(&self) -> Result<(), VaultError> {
        self.db
            .read(|conn| {
                conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                    .map(|_| ())
                    .map_err(db_error)
            })
            .await
            .map_err(backend)
    }
}
