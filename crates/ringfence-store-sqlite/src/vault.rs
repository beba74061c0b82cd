use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use ringfence_core::timestamp::Timestamp;
use ringfence_crypto::{
    KeyPurpose, KeyRecord, MasterKeyEntry, MasterKeyState, MasterKeyStatus, Rewrap, RotationRecord,
    VaultError, VaultStore,
};

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

/// The key new rows must be wrapped by: the pending one of a rotation, else the active one.
fn newest_master(conn: &Connection) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(
        "SELECT fingerprint FROM master_keys WHERE state IN ('next', 'active') ORDER BY state = 'next' DESC LIMIT 1",
    )?
    .query_row([], |r| r.get(0))
    .optional()
}

/// Registers `fingerprint` as the active key and labels the rows from before fingerprints.
fn adopt(conn: &Connection, fingerprint: &str, now: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO master_keys (fingerprint, state, since) VALUES (?1, 'active', ?2)",
    )?
    .execute(params![fingerprint, now])?;
    conn.prepare_cached("UPDATE data_keys SET master = ?1 WHERE master IS NULL")?
        .execute([fingerprint])?;
    Ok(())
}

/// Rows wrapped by another key than `to` (rows from before fingerprints included).
fn count_wrapped_by_other(conn: &Connection, to: &str) -> rusqlite::Result<u64> {
    conn.prepare_cached("SELECT COUNT(*) FROM data_keys WHERE master IS NOT ?1")?
        .query_row([to], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
}

fn key_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRecord> {
    let purpose: String = r.get(2)?;
    Ok(KeyRecord {
        id: r.get(0)?,
        account_id: r.get(1)?,
        purpose: KeyPurpose::parse(&purpose).unwrap_or(KeyPurpose::Call),
        wrapped: r.get(3)?,
        master: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
    })
}

#[async_trait]
impl VaultStore for SqliteVault {
    async fn insert(&self, records: Vec<KeyRecord>) -> Result<(), VaultError> {
        let refused = self
            .db
            .write(move |conn| {
                let now = Timestamp::now().millis();
                // Checked in the insert's transaction: a rotation's begin or finish, which
                // change the newest key, commit wholly before or after it.
                let newest = match newest_master(conn).map_err(db_error)? {
                    Some(newest) => newest,
                    None => match records.first() {
                        Some(first) => {
                            adopt(conn, &first.master, now).map_err(db_error)?;
                            first.master.clone()
                        }
                        None => return Ok(None),
                    },
                };
                if records.iter().any(|r| r.master != newest) {
                    return Ok(Some(newest));
                }
                let mut stmt = conn.prepare_cached(
                    "INSERT INTO data_keys (id, account_id, purpose, wrapped, created_at, master) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO NOTHING",
                ).map_err(db_error)?;
                for r in &records {
                    stmt.execute(params![r.id, r.account_id, r.purpose.as_str(), r.wrapped, now, r.master]).map_err(db_error)?;
                }
                Ok(None)
            })
            .await
            .map_err(backend)?;
        match refused {
            Some(newest) => Err(VaultError::StaleMasterKey { newest }),
            None => Ok(()),
        }
    }

    async fn fetch(&self, ids: Vec<String>) -> Result<Vec<KeyRecord>, VaultError> {
        self.db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, account_id, purpose, wrapped, master FROM data_keys WHERE id = ?1",
                ).map_err(db_error)?;
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    let row = stmt
                        .query_row([&id], key_record)
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

    async fn master_key_status(&self) -> Result<MasterKeyStatus, VaultError> {
        self.db
            .read(|conn| {
                let keys = conn
                    .prepare_cached("SELECT fingerprint, state, since FROM master_keys ORDER BY since, fingerprint").map_err(db_error)?
                    .query_map([], |r| {
                        let state: String = r.get(1)?;
                        Ok(MasterKeyEntry {
                            fingerprint: r.get(0)?,
                            state: MasterKeyState::parse(&state).unwrap_or(MasterKeyState::Retired),
                            since_millis: r.get(2)?,
                        })
                    }).map_err(db_error)?
                    .collect::<Result<Vec<_>, _>>().map_err(db_error)?;
                // The first migration's time is the vault's creation.
                let created_at_millis: i64 = conn.query_row(
                    "SELECT COALESCE(MIN(applied_at), 0) FROM schema_migrations",
                    [],
                    |r| r.get(0),
                ).map_err(db_error)?;
                let last_rotation = conn
                    .prepare_cached("SELECT from_key, to_key, started_at, finished_at, rewrapped FROM rotations ORDER BY id DESC LIMIT 1").map_err(db_error)?
                    .query_row([], |r| {
                        Ok(RotationRecord {
                            from: r.get(0)?,
                            to: r.get(1)?,
                            started_at_millis: r.get(2)?,
                            finished_at_millis: r.get(3)?,
                            rewrapped: r.get::<_, i64>(4)? as u64,
                        })
                    })
                    .optional().map_err(db_error)?;
                Ok(MasterKeyStatus {
                    keys,
                    created_at_millis,
                    last_rotation,
                })
            })
            .await
            .map_err(backend)
    }

    async fn adopt_master_key(&self, fingerprint: String) -> Result<(), VaultError> {
        self.db
            .write(move |conn| {
                let active: Option<String> = conn
                    .query_row(
                        "SELECT fingerprint FROM master_keys WHERE state = 'active'",
                        [],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db_error)?;
                if active.is_none() {
                    adopt(conn, &fingerprint, Timestamp::now().millis()).map_err(db_error)?;
                }
                Ok(())
            })
            .await
            .map_err(backend)
    }

    async fn begin_rotation(&self, from: String, to: String) -> Result<u64, VaultError> {
        self.db
            .write(move |conn| {
                let state = |fp: &str| -> rusqlite::Result<Option<String>> {
                    conn.query_row(
                        "SELECT state FROM master_keys WHERE fingerprint = ?1",
                        [fp],
                        |r| r.get(0),
                    )
                    .optional()
                };
                if state(&from).map_err(db_error)?.as_deref() != Some("active") {
                    return Ok(Err(format!("{from} is not the vault's active master key")));
                }
                let next: Option<String> = conn
                    .query_row(
                        "SELECT fingerprint FROM master_keys WHERE state = 'next'",
                        [],
                        |r| r.get(0),
                    )
                    .optional().map_err(db_error)?;
                match next {
                    Some(next) if next == to => {}
                    Some(next) => {
                        return Ok(Err(format!(
                            "a rotation to the master key {next} is under way: finish it first (run the rotation again with that key file)"
                        )));
                    }
                    None => {
                        if state(&to).map_err(db_error)?.is_some() {
                            return Ok(Err(format!(
                                "the master key {to} was used by this vault before and was retired: make a new key"
                            )));
                        }
                        let now = Timestamp::now().millis();
                        conn.execute(
                            "INSERT INTO master_keys (fingerprint, state, since) VALUES (?1, 'next', ?2)",
                            params![to, now],
                        ).map_err(db_error)?;
                        conn.execute(
                            "INSERT INTO rotations (from_key, to_key, started_at) VALUES (?1, ?2, ?3)",
                            params![from, to, now],
                        ).map_err(db_error)?;
                    }
                }
                Ok(Ok(count_wrapped_by_other(conn, &to).map_err(db_error)?))
            })
            .await
            .map_err(backend)?
            .map_err(VaultError::Rotation)
    }

    async fn wrapped_by_other(
        &self,
        to: String,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<KeyRecord>, VaultError> {
        self.db
            .read(move |conn| {
                let records = conn
                    .prepare_cached(
                        "SELECT id, account_id, purpose, wrapped, master FROM data_keys WHERE id > ?1 AND master IS NOT ?2 ORDER BY id LIMIT ?3",
                    ).map_err(db_error)?
                    .query_map(params![after.unwrap_or_default(), to, limit], key_record).map_err(db_error)?
                    .collect::<Result<Vec<_>, _>>().map_err(db_error)?;
                Ok(records)
            })
            .await
            .map_err(backend)
    }

    async fn rewrap(&self, to: String, changes: Vec<Rewrap>) -> Result<u64, VaultError> {
        self.db
            .write(move |conn| {
                // The compare-and-set: a row destroyed since it was read matches nothing
                // (an UPDATE never re-creates it), one changed since keeps its change.
                let mut stmt = conn.prepare_cached(
                    "UPDATE data_keys SET wrapped = ?1, master = ?2 WHERE id = ?3 AND wrapped = ?4",
                ).map_err(db_error)?;
                let mut changed = 0u64;
                for c in &changes {
                    changed += stmt
                        .execute(params![c.new_wrapped, to, c.id, c.old_wrapped])
                        .map_err(db_error)? as u64;
                }
                Ok(changed)
            })
            .await
            .map_err(backend)
    }

    async fn finish_rotation(
        &self,
        from: String,
        to: String,
        rewrapped: u64,
    ) -> Result<u64, VaultError> {
        self.db
            .write(move |conn| {
                let to_state: Option<String> = conn
                    .query_row(
                        "SELECT state FROM master_keys WHERE fingerprint = ?1",
                        [&to],
                        |r| r.get(0),
                    )
                    .optional().map_err(db_error)?;
                match to_state.as_deref() {
                    Some("active") => return Ok(Ok(0)),
                    Some("next") => {}
                    _ => return Ok(Err(format!("no rotation to the master key {to} is under way"))),
                }
                // The count and the retirement share this transaction: an insert (which
                // takes only the newest key) cannot slip a row under `from` in between.
                let left = count_wrapped_by_other(conn, &to).map_err(db_error)?;
                if left > 0 {
                    return Ok(Ok(left));
                }
                let now = Timestamp::now().millis();
                conn.execute(
                    "UPDATE master_keys SET state = 'retired', since = ?1 WHERE state = 'active'",
                    [now],
                ).map_err(db_error)?;
                conn.execute(
                    "UPDATE master_keys SET state = 'active', since = ?1 WHERE fingerprint = ?2",
                    params![now, to],
                ).map_err(db_error)?;
                conn.execute(
                    "UPDATE rotations SET finished_at = ?1, rewrapped = ?2 WHERE from_key = ?3 AND to_key = ?4 AND finished_at IS NULL",
                    params![now, rewrapped as i64, from, to],
                ).map_err(db_error)?;
                Ok(Ok(0))
            })
            .await
            .map_err(backend)?
            .map_err(VaultError::Rotation)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use ringfence_crypto::{MasterKey, MasterKeySource, Vault};

    use super::*;

    /// The key files of an installation, as a process would find them.
    struct Files(Mutex<Vec<MasterKey>>);

    #[async_trait]
    impl MasterKeySource for Files {
        async fn load(&self) -> Result<Vec<MasterKey>, VaultError> {
            Ok(self.0.lock().unwrap().clone())
        }
    }

    fn files(keys: &[&MasterKey]) -> Arc<Files> {
        Arc::new(Files(Mutex::new(
            keys.iter().map(|k| (*k).clone()).collect(),
        )))
    }

    async fn issue(vault: &Vault, n: usize) -> Vec<String> {
        let mut records = Vec::new();
        for i in 0..n {
            let (_, record) = vault.issue(format!("key-{i:04}"), "acc".into(), KeyPurpose::Call);
            records.push(record);
        }
        let ids = records.iter().map(|r| r.id.clone()).collect();
        vault.insert(records).await.unwrap();
        ids
    }

    #[tokio::test]
    async fn a_rewrap_is_a_compare_and_set_that_never_resurrects_a_destroyed_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteVault::open(&dir.path().join("vault.db")).unwrap());
        let (old, _) = MasterKey::generate();
        let (new, _) = MasterKey::generate();
        let vault = Vault::open(files(&[&old]), store.clone()).await.unwrap();
        let ids = issue(&vault, 10).await;
        let read = store
            .wrapped_by_other(new.fingerprint(), None, 100)
            .await
            .unwrap();
        assert_eq!(read.len(), 10);
        // Between the rotation's read and its write, one key is destroyed and one changes.
        assert_eq!(store.destroy(vec![ids[3].clone()]).await.unwrap(), 1);
        let changes: Vec<Rewrap> = read
            .iter()
            .map(|r| Rewrap {
                id: r.id.clone(),
                old_wrapped: r.wrapped.clone(),
                new_wrapped: old.rewrap(&new, &r.id, &r.wrapped).unwrap(),
            })
            .collect();
        let mut stale = changes[5].clone();
        stale.old_wrapped[0] ^= 1;
        assert_eq!(
            store.rewrap(new.fingerprint(), vec![stale]).await.unwrap(),
            0,
            "a row whose bytes changed since it was read is left alone"
        );
        assert_eq!(store.rewrap(new.fingerprint(), changes).await.unwrap(), 9);
        let after = store.fetch(ids.clone()).await.unwrap();
        assert_eq!(after.len(), 9, "the destroyed key stays destroyed");
        assert!(after.iter().all(|r| r.id != ids[3]));
        for r in &after {
            assert_eq!(r.master, new.fingerprint());
            assert!(new.unwrap(&r.id, &r.wrapped).is_ok());
            assert!(old.unwrap(&r.id, &r.wrapped).is_err());
        }
    }

    #[tokio::test]
    async fn during_a_rotation_the_vault_takes_only_keys_wrapped_by_the_new_master_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteVault::open(&dir.path().join("vault.db")).unwrap());
        let (old, _) = MasterKey::generate();
        let (new, _) = MasterKey::generate();
        // A serving process loaded its keys before the rotation began.
        let serving_files = files(&[&old]);
        let serving = Vault::open(serving_files.clone(), store.clone())
            .await
            .unwrap();
        issue(&serving, 3).await;
        let rotating = Vault::open(files(&[&old, &new]), store.clone())
            .await
            .unwrap();
        assert_eq!(rotating.begin_rotation(&new).await.unwrap(), 3);
        assert_eq!(rotating.master_fingerprint(), new.fingerprint());

        // The store refuses a key wrapped by the old master key, storing nothing.
        let (_, stale) = serving.issue("late".into(), "acc".into(), KeyPurpose::Call);
        assert_eq!(stale.master, old.fingerprint());
        match store.insert(vec![stale.clone()]).await {
            Err(VaultError::StaleMasterKey { newest }) => assert_eq!(newest, new.fingerprint()),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(store.fetch(vec!["late".into()]).await.unwrap().is_empty());
        // The serving vault finds the pending key file, re-wraps and stores the key.
        serving_files.0.lock().unwrap().push(new.clone());
        serving.insert(vec![stale]).await.unwrap();
        let late = store.fetch(vec!["late".into()]).await.unwrap();
        assert_eq!(late[0].master, new.fingerprint());
        assert_eq!(serving.master_fingerprint(), new.fingerprint());

        // Not finished while rows remain under the old key; finished once none do.
        let status = store.master_key_status().await.unwrap();
        let from = status.active().unwrap().to_owned();
        assert_eq!(from, old.fingerprint());
        assert_eq!(rotating.finish_rotation(&from, &new, 0).await.unwrap(), 3);
        let page = rotating.rotate_page(&new, None, 2).await.unwrap();
        assert_eq!((page.seen, page.rewrapped), (2, 2));
        let page = rotating.rotate_page(&new, page.next, 2).await.unwrap();
        assert_eq!((page.seen, page.rewrapped, page.next), (1, 1, None));
        assert_eq!(rotating.finish_rotation(&from, &new, 3).await.unwrap(), 0);
        let status = store.master_key_status().await.unwrap();
        assert_eq!(status.active(), Some(new.fingerprint().as_str()));
        assert_eq!(status.next(), None);
        let rotation = status.last_rotation.unwrap();
        assert_eq!((rotation.from, rotation.rewrapped), (old.fingerprint(), 3));
        assert!(rotation.finished_at_millis.is_some());
        // Finishing again changes nothing; the retired key may never wrap a row again.
        assert_eq!(rotating.finish_rotation(&from, &new, 3).await.unwrap(), 0);
        let (_, retired) = MasterKeyRecordMaker(&old).record("after");
        assert!(matches!(
            store.insert(vec![retired]).await,
            Err(VaultError::StaleMasterKey { .. })
        ));
        assert!(matches!(
            store
                .begin_rotation(new.fingerprint(), old.fingerprint())
                .await,
            Err(VaultError::Rotation(_))
        ));
        // Every key opens through a process that holds only the new key file.
        let fresh = Vault::open(files(&[&new]), store.clone()).await.unwrap();
        let all: Vec<String> = (0..3)
            .map(|i| format!("key-{i:04}"))
            .chain(["late".into()])
            .collect();
        assert_eq!(fresh.open_keys(all).await.unwrap().len(), 4);
        assert!(matches!(
            Vault::open(files(&[&old]), store.clone()).await,
            Err(VaultError::MasterKeyNotHeld(_))
        ));
    }

    struct MasterKeyRecordMaker<'a>(&'a MasterKey);

    impl MasterKeyRecordMaker<'_> {
        fn record(&self, id: &str) -> (ringfence_crypto::DataKey, KeyRecord) {
            let key = ringfence_crypto::DataKey::generate();
            let record = KeyRecord {
                id: id.into(),
                account_id: "acc".into(),
                purpose: KeyPurpose::Call,
                wrapped: self.0.wrap(id, &key),
                master: self.0.fingerprint(),
            };
            (key, record)
        }
    }

    #[tokio::test]
    async fn keys_stored_before_fingerprints_were_recorded_belong_to_the_first_key_that_opens_them()
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.db");
        let (first, _) = MasterKey::generate();
        // A vault of the previous schema, with one key in it.
        {
            let old = SqliteDb::open(&path, &schema::VAULT[..2]).unwrap();
            let key = ringfence_crypto::DataKey::generate();
            let wrapped = first.wrap("legacy", &key);
            old.write(move |conn| {
                conn.execute(
                    "INSERT INTO data_keys (id, account_id, purpose, wrapped, created_at) VALUES ('legacy', 'acc', 'call', ?1, 1)",
                    [wrapped],
                ).map_err(db_error)?;
                Ok(())
            })
            .await
            .unwrap();
            old.close();
        }
        let store = Arc::new(SqliteVault::open(&path).unwrap());
        let (other, _) = MasterKey::generate();
        assert!(matches!(
            Vault::open(files(&[&other]), store.clone()).await,
            Err(VaultError::WrongMasterKey(_))
        ));
        assert!(store.master_key_status().await.unwrap().keys.is_empty());
        let vault = Vault::open(files(&[&first]), store.clone()).await.unwrap();
        assert!(vault.open_key("legacy").await.unwrap().is_some());
        let record = store.fetch(vec!["legacy".into()]).await.unwrap();
        assert_eq!(record[0].master, first.fingerprint());
        assert_eq!(
            store.master_key_status().await.unwrap().active(),
            Some(first.fingerprint().as_str())
        );
    }
}
