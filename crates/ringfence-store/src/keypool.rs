//! Data keys issued ahead of need, so that a single call's ingest does not wait for a vault
//! commit of its own.
//!
//! Ingest must make a record's key durable in the vault before the record (see
//! [`crate::calllog`]). One call at a time, that is a vault commit, an fsync and a thread
//! hand-off per request. Instead, while an account ingests steadily, the pool issues keys in
//! bulk, commits them to the vault in one transaction, and hands them out one by one: a key
//! handed out is already durable, so the ordering holds and the request goes straight to the
//! call log.
//!
//! Invariants:
//! - A key is in the pool only after the vault acknowledged its insert, and leaves it once,
//!   to one record. Its id (a fresh UUIDv7) becomes that record's id.
//! - A key is handed out only while younger than [`MAX_AGE`], far below the orphan-key
//!   sweep's grace period, so the sweep never destroys a key that a record is about to use.
//!   Older keys are destroyed in the vault, as are those left when the log closes
//!   ([`KeyPool::release`] waits for refills under way and starts no more); after a crash
//!   the orphan-key sweep destroys them.
//! - The pool is per account and purpose, so every vault record keeps its true account.
//! - An account that ingests rarely gets no pool: keys are pooled only at a measured rate
//!   of at least [`MIN_REFILL`] per [`LEAD`], so idle accounts leave no key material waiting.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringfence_core::AccountId;
use ringfence_crypto::{DataKey, KeyPurpose, Vault};
use uuid::Uuid;

/// A pooled key older than this is destroyed instead of used.
pub const MAX_AGE: Duration = Duration::from_secs(30);
/// How far ahead the pool issues: the keys the measured rate takes in this time.
const LEAD: Duration = Duration::from_millis(500);
/// Fewer keys than this per refill are not worth pooling (the account is slow).
const MIN_REFILL: usize = 8;
/// Most keys issued by one refill.
const MAX_REFILL: usize = 2048;
/// Longest wait of `release` for refills under way.
const RELEASE_WAIT: Duration = Duration::from_secs(5);
/// Shortest window over which the rate is measured.
const MIN_WINDOW: Duration = Duration::from_millis(10);

struct Pooled {
    id: Uuid,
    key: DataKey,
    issued: Instant,
}

#[derive(Default)]
struct Pool {
    ready: VecDeque<Pooled>,
    refilling: bool,
    /// Keys asked for since `since` (taken or not).
    asked: usize,
    since: Option<Instant>,
    /// Size of the last refill: a refill starts when fewer than half of it are left.
    last_refill: usize,
}

/// What the pool has done, for tests and diagnostics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Keys handed out of the pool.
    pub hits: u64,
    /// Keys asked for when the pool had none.
    pub misses: u64,
    /// Keys committed to the vault by refills.
    pub issued: u64,
    /// Pooled keys destroyed unused (expired, or released).
    pub discarded: u64,
}

/// Per-account pools of data keys that are durable in the vault and not yet used.
pub struct KeyPool {
    vault: Vault,
    max_age: Duration,
    /// Set by `release`: no refill starts any more.
    closed: std::sync::atomic::AtomicBool,
    pools: Mutex<HashMap<(AccountId, KeyPurpose), Pool>>,
    stats: Mutex<PoolStats>,
}

impl KeyPool {
    pub fn new(vault: Vault) -> Self {
        Self::with_max_age(vault, MAX_AGE)
    }

    fn with_max_age(vault: Vault, max_age: Duration) -> Self {
        Self {
            vault,
            max_age,
            closed: std::sync::atomic::AtomicBool::new(false),
            pools: Mutex::new(HashMap::new()),
            stats: Mutex::new(PoolStats::default()),
        }
    }

    pub fn stats(&self) -> PoolStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }

    /// A key for a new record of `account`, already durable in the vault, and its id; `None`
    /// if the pool has none (the caller then issues one and inserts it itself). May start a
    /// refill in the background: call from within a Tokio runtime.
    pub fn take(
        self: &Arc<Self>,
        account: AccountId,
        purpose: KeyPurpose,
    ) -> Option<(Uuid, DataKey)> {
        let now = Instant::now();
        let mut expired = Vec::new();
        let (taken, refill) = {
            let Ok(mut pools) = self.pools.lock() else {
                return None;
            };
            let pool = pools.entry((account, purpose)).or_default();
            pool.asked += 1;
            let mut taken = None;
            while let Some(p) = pool.ready.pop_front() {
                if now.duration_since(p.issued) < self.max_age {
                    taken = Some((p.id, p.key));
                    break;
                }
                expired.push(p.id.to_string());
            }
            let mut refill = 0;
            let closed = self.closed.load(std::sync::atomic::Ordering::SeqCst);
            if !closed && !pool.refilling && pool.ready.len() * 2 <= pool.last_refill {
                // The rate asked for since the last decision (the first ask only starts the
                // window), over at least MIN_WINDOW.
                if let Some(since) = pool.since {
                    let window = now.duration_since(since).max(MIN_WINDOW);
                    let want = (pool.asked as f64 * LEAD.as_secs_f64() / window.as_secs_f64())
                        .ceil() as usize;
                    let want = want.min(MAX_REFILL);
                    if want >= MIN_REFILL && want > pool.ready.len() {
                        refill = want - pool.ready.len();
                        pool.refilling = true;
                        pool.last_refill = want;
                    } else {
                        pool.last_refill = 0;
                    }
                }
                pool.asked = 0;
                pool.since = Some(now);
            }
            (taken, refill)
        };
        if let Ok(mut s) = self.stats.lock() {
            if taken.is_some() {
                s.hits += 1;
            } else {
                s.misses += 1;
            }
            s.discarded += expired.len() as u64;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            if !expired.is_empty() {
                let vault = self.vault.clone();
                runtime.spawn(async move {
                    if let Err(e) = vault.destroy(expired).await {
                        tracing::warn!(cause = %e, "could not destroy expired pooled keys");
                    }
                });
            }
            if refill > 0 {
                let this = Arc::clone(self);
                runtime.spawn(async move { this.refill(account, purpose, refill).await });
            }
        } else if refill > 0 {
            self.refill_done(account, purpose, Vec::new());
        }
        taken
    }

    /// Issues `n` keys, commits them to the vault, then adds them to the pool.
    async fn refill(self: Arc<Self>, account: AccountId, purpose: KeyPurpose, n: usize) {
        let mut fresh = Vec::with_capacity(n);
        let mut records = Vec::with_capacity(n);
        for _ in 0..n {
            let id = Uuid::now_v7();
            let (key, record) = self
                .vault
                .issue(id.to_string(), account.to_string(), purpose);
            fresh.push(Pooled {
                id,
                key,
                issued: Instant::now(),
            });
            records.push(record);
        }
        let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
        match self.vault.insert(records).await {
            Ok(()) => {
                if let Ok(mut s) = self.stats.lock() {
                    s.issued += n as u64;
                }
                self.refill_done(account, purpose, fresh);
            }
            Err(e) => {
                tracing::warn!(%account, cause = %e, "could not refill the key pool");
                self.refill_done(account, purpose, Vec::new());
                // The insert may have landed before failing: these keys open nothing.
                let _ = self.vault.destroy(ids).await;
            }
        }
    }

    fn refill_done(&self, account: AccountId, purpose: KeyPurpose, fresh: Vec<Pooled>) {
        if let Ok(mut pools) = self.pools.lock() {
            let pool = pools.entry((account, purpose)).or_default();
            pool.refilling = false;
            pool.ready.extend(fresh);
        }
    }

    /// Destroys every pooled key in the vault (on shutdown: they would open nothing), after
    /// the refills under way have landed (for at most [`RELEASE_WAIT`]); no refill starts
    /// afterwards.
    pub async fn release(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        let deadline = Instant::now() + RELEASE_WAIT;
        let ids: Vec<String> = loop {
            // `None` while a refill is under way (and the deadline not passed).
            let drained: Option<Vec<String>> = {
                let Ok(mut pools) = self.pools.lock() else {
                    return;
                };
                if pools.values().any(|p| p.refilling) && Instant::now() < deadline {
                    None
                } else {
                    Some(
                        pools
                            .values_mut()
                            .flat_map(|p| p.ready.drain(..))
                            .map(|p| p.id.to_string())
                            .collect(),
                    )
                }
            };
            match drained {
                Some(ids) => break ids,
                None => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        };
        if ids.is_empty() {
            return;
        }
        let n = ids.len() as u64;
        match self.vault.destroy(ids).await {
            Ok(_) => {
                if let Ok(mut s) = self.stats.lock() {
                    s.discarded += n;
                }
            }
            Err(e) => tracing::warn!(cause = %e, "could not destroy the pooled keys"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_crypto::{KeyRecord, MasterKey, VaultError, VaultStore};

    /// A vault store in memory: the pool's behaviour does not depend on the backend (each
    /// backend's own vault is tested in its crate and in the store suite).
    #[derive(Default)]
    struct MemoryVault(Mutex<std::collections::BTreeMap<String, KeyRecord>>);

    #[async_trait::async_trait]
    impl VaultStore for MemoryVault {
        async fn insert(&self, records: Vec<KeyRecord>) -> Result<(), VaultError> {
            let mut keys = self.0.lock().unwrap();
            for r in records {
                keys.entry(r.id.clone()).or_insert(r);
            }
            Ok(())
        }
        async fn fetch(&self, ids: Vec<String>) -> Result<Vec<KeyRecord>, VaultError> {
            let keys = self.0.lock().unwrap();
            Ok(ids.iter().filter_map(|id| keys.get(id).cloned()).collect())
        }
        async fn destroy(&self, ids: Vec<String>) -> Result<u64, VaultError> {
            let mut keys = self.0.lock().unwrap();
            Ok(ids.iter().filter(|id| keys.remove(*id).is_some()).count() as u64)
        }
        async fn list(
            &self,
            _purpose: KeyPurpose,
            _created_before_millis: i64,
            _after: Option<String>,
            _limit: u32,
        ) -> Result<Vec<String>, VaultError> {
            unreachable!("the pool never lists keys")
        }
        async fn anchor_journal(&self, _seq: i64, _hash: [u8; 32]) -> Result<(), VaultError> {
            unreachable!("the pool never anchors the journal")
        }
        async fn journal_anchor(&self) -> Result<Option<(i64, [u8; 32])>, VaultError> {
            unreachable!("the pool never reads the journal anchor")
        }
        async fn compact(&self) -> Result<(), VaultError> {
            Ok(())
        }
        async fn ping(&self) -> Result<(), VaultError> {
            Ok(())
        }
        async fn master_key_status(&self) -> Result<ringfence_crypto::MasterKeyStatus, VaultError> {
            unreachable!("the pool never reads the master keys")
        }
        async fn adopt_master_key(&self, _fingerprint: String) -> Result<(), VaultError> {
            unreachable!("the pool never adopts a master key")
        }
        async fn begin_rotation(&self, _from: String, _to: String) -> Result<u64, VaultError> {
            unreachable!("the pool never rotates")
        }
        async fn wrapped_by_other(
            &self,
            _to: String,
            _after: Option<String>,
            _limit: u32,
        ) -> Result<Vec<KeyRecord>, VaultError> {
            unreachable!("the pool never rotates")
        }
        async fn rewrap(
            &self,
            _to: String,
            _changes: Vec<ringfence_crypto::Rewrap>,
        ) -> Result<u64, VaultError> {
            unreachable!("the pool never rotates")
        }
        async fn finish_rotation(
            &self,
            _from: String,
            _to: String,
            _rewrapped: u64,
        ) -> Result<u64, VaultError> {
            unreachable!("the pool never rotates")
        }
    }

    fn pool(_dir: &std::path::Path, max_age: Duration) -> Arc<KeyPool> {
        let (master, _) = MasterKey::generate();
        Arc::new(KeyPool::with_max_age(
            Vault::new(master, Arc::new(MemoryVault::default())),
            max_age,
        ))
    }

    /// Asks for keys back to back until one comes out of the pool (at most `tries`).
    async fn take_until_hit(
        pool: &Arc<KeyPool>,
        account: AccountId,
        tries: usize,
    ) -> Option<(Uuid, DataKey)> {
        for _ in 0..tries {
            if let Some(hit) = pool.take(account, KeyPurpose::Call) {
                return Some(hit);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        None
    }

    fn pooled_ids(pool: &KeyPool) -> Vec<String> {
        pool.pools
            .lock()
            .unwrap()
            .values()
            .flat_map(|p| p.ready.iter().map(|k| k.id.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn a_steady_account_is_served_keys_that_are_already_in_the_vault() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(dir.path(), MAX_AGE);
        let account = AccountId::generate();
        let (id, key) = take_until_hit(&pool, account, 2000)
            .await
            .expect("a steady rate of asks fills the pool");
        // The key a record gets is durable and opens to the same key.
        let stored = pool.vault.open_key(&id.to_string()).await.unwrap();
        assert!(
            stored == Some(key),
            "a pooled key is in the vault before it is used"
        );
        // Every key handed out is different, and each id at most once.
        let mut seen = std::collections::HashSet::from([id]);
        for _ in 0..200 {
            if let Some((id, _)) = take_until_hit(&pool, account, 2000).await {
                assert!(seen.insert(id), "key {id} handed out twice");
            }
        }
        let stats = pool.stats();
        assert!(stats.hits >= 100, "{stats:?}");
        assert!(stats.issued >= stats.hits, "{stats:?}");
        // Pools are per account: another account's first ask gets nothing from this one.
        assert!(pool.take(AccountId::generate(), KeyPurpose::Call).is_none());
        // The same account's session keys are a pool of their own.
        assert!(pool.take(account, KeyPurpose::Session).is_none());
    }

    #[tokio::test]
    async fn a_rare_account_gets_no_pool() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(dir.path(), MAX_AGE);
        let account = AccountId::generate();
        for _ in 0..4 {
            assert!(pool.take(account, KeyPurpose::Call).is_none());
            // Two asks 100 ms apart: 5 keys in LEAD, under MIN_REFILL.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            pool.stats(),
            PoolStats {
                hits: 0,
                misses: 4,
                issued: 0,
                discarded: 0
            }
        );
    }

    #[tokio::test]
    async fn expired_keys_are_destroyed_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(dir.path(), Duration::from_millis(200));
        let account = AccountId::generate();
        take_until_hit(&pool, account, 2000).await.expect("filled");
        let waiting = pooled_ids(&pool);
        assert!(!waiting.is_empty());
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Every waiting key is now too old: none is handed out.
        let next = pool.take(account, KeyPurpose::Call);
        assert!(next.is_none(), "an expired key was handed out");
        // ... and each is destroyed in the vault (in the background).
        for _ in 0..200 {
            let left = pool.vault.open_keys(waiting.clone()).await.unwrap();
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            pool.vault
                .open_keys(waiting.clone())
                .await
                .unwrap()
                .is_empty()
        );
        assert!(pool.stats().discarded >= waiting.len() as u64);
    }

    #[tokio::test]
    async fn release_destroys_the_keys_left_in_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(dir.path(), MAX_AGE);
        let account = AccountId::generate();
        let (used, _) = take_until_hit(&pool, account, 2000).await.expect("filled");
        // Keep asking until a refill is under way, then release at once: release waits for
        // it, so that its keys do not land in the pool after the pool was emptied.
        let mut asked = 0;
        while !pool.pools.lock().unwrap().values().any(|p| p.refilling) {
            let _ = pool.take(account, KeyPurpose::Call);
            asked += 1;
            assert!(asked < 100_000, "no refill started");
        }
        let issued_ids = |pool: &KeyPool| pooled_ids(pool);
        let before_release = issued_ids(&pool);
        pool.release().await;
        assert!(pooled_ids(&pool).is_empty());
        assert!(
            !pool.pools.lock().unwrap().values().any(|p| p.refilling),
            "release returned with a refill under way"
        );
        assert!(
            pool.vault
                .open_keys(before_release)
                .await
                .unwrap()
                .is_empty()
        );
        // Every key the vault still holds is one that was handed out: nothing pooled is left.
        let stats = pool.stats();
        assert_eq!(stats.issued, stats.hits + stats.discarded, "{stats:?}");
        // No refill starts after release.
        for _ in 0..50 {
            let _ = pool.take(account, KeyPurpose::Call);
        }
        assert!(!pool.pools.lock().unwrap().values().any(|p| p.refilling));
        assert!(
            pool.vault
                .open_key(&used.to_string())
                .await
                .unwrap()
                .is_some(),
            "a key already handed out belongs to its record"
        );
    }
}
