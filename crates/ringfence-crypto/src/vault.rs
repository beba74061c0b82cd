//! The vault: wrapped data keys, kept apart from the data they open.
//!
//! Destroying a key in the vault is what makes a record unreadable for good, wherever copies
//! of its ciphertext may lie (backups of the call log, a lagging replica, a recording file).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::keys::{DataKey, MasterKey};

/// What a key opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyPurpose {
    Call,
    Session,
    BlindIndex,
    /// A consent subject's key: seals the subject of their consent events.
    Subject,
    /// An account's secrets key: seals credentials such as the telephony auth token.
    AccountSecret,
    /// The installation's key sealing web users' e-mail addresses (shown to admins only).
    UserEmail,
}

impl KeyPurpose {
    /// Every purpose: a backend must store keys of each (its schema's checks included).
    pub const ALL: [KeyPurpose; 6] = [
        KeyPurpose::Call,
        KeyPurpose::Session,
        KeyPurpose::BlindIndex,
        KeyPurpose::Subject,
        KeyPurpose::AccountSecret,
        KeyPurpose::UserEmail,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyPurpose::Call => "call",
            KeyPurpose::Session => "session",
            KeyPurpose::BlindIndex => "blind_index",
            KeyPurpose::Subject => "subject",
            KeyPurpose::AccountSecret => "account_secret",
            KeyPurpose::UserEmail => "user_email",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

/// A data key wrapped by a master key, as the vault stores it.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    pub account_id: String,
    pub purpose: KeyPurpose,
    pub wrapped: Vec<u8>,
    /// The fingerprint of the master key that wrapped it ([`MasterKey::fingerprint`]).
    pub master: String,
}

impl std::fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRecord")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("purpose", &self.purpose)
            .field("master", &self.master)
            .finish_non_exhaustive()
    }
}

/// Where a master key stands in a vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterKeyState {
    /// The installation's master key.
    Active,
    /// The key a rotation under way re-wraps every data key under: new keys are wrapped by it.
    Next,
    /// Replaced by a finished rotation: no row is wrapped by it, and none may be again.
    Retired,
}

impl MasterKeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            MasterKeyState::Active => "active",
            MasterKeyState::Next => "next",
            MasterKeyState::Retired => "retired",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        [
            MasterKeyState::Active,
            MasterKeyState::Next,
            MasterKeyState::Retired,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// A master key the vault knows of (by fingerprint only: the vault never holds a master key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterKeyEntry {
    pub fingerprint: String,
    pub state: MasterKeyState,
    /// When it took this state, in Unix milliseconds.
    pub since_millis: i64,
}

/// A rotation from one master key to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationRecord {
    pub from: String,
    pub to: String,
    pub started_at_millis: i64,
    /// `None` while it is under way.
    pub finished_at_millis: Option<i64>,
    /// Rows re-wrapped, as counted by the rotation that finished it.
    pub rewrapped: u64,
}

/// The vault's master keys and rotations, for the rotation and the checklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterKeyStatus {
    pub keys: Vec<MasterKeyEntry>,
    /// When the vault was created, in Unix milliseconds.
    pub created_at_millis: i64,
    /// The most recent rotation, finished or not.
    pub last_rotation: Option<RotationRecord>,
}

impl MasterKeyStatus {
    fn in_state(&self, state: MasterKeyState) -> Option<&str> {
        self.keys
            .iter()
            .find(|k| k.state == state)
            .map(|k| k.fingerprint.as_str())
    }
    /// The key new data keys must be wrapped by: the pending one during a rotation.
    pub fn newest(&self) -> Option<&str> {
        self.in_state(MasterKeyState::Next)
            .or_else(|| self.in_state(MasterKeyState::Active))
    }
    pub fn active(&self) -> Option<&str> {
        self.in_state(MasterKeyState::Active)
    }
    pub fn next(&self) -> Option<&str> {
        self.in_state(MasterKeyState::Next)
    }
    /// When the last finished rotation finished.
    pub fn last_rotated_millis(&self) -> Option<i64> {
        self.last_rotation
            .as_ref()
            .and_then(|r| r.finished_at_millis)
    }
}

/// One row's re-wrap, applied only if the row still holds `old_wrapped`.
#[derive(Clone, PartialEq, Eq)]
pub struct Rewrap {
    pub id: String,
    pub old_wrapped: Vec<u8>,
    pub new_wrapped: Vec<u8>,
}

impl std::fmt::Debug for Rewrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rewrap")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("vault storage failed: {0}")]
    Storage(String),
    #[error("key {0} does not open with this master key (wrong master key file?)")]
    WrongMasterKey(String),
    /// An insert wrapped by another key than the vault's newest: nothing was inserted.
    #[error("keys must be wrapped by the master key {newest} (a rotation has started or finished)")]
    StaleMasterKey { newest: String },
    #[error(
        "the master key {0} is not among the master key files this process holds (wrong --master-key-file, or a rotation's pending key file is missing)"
    )]
    MasterKeyNotHeld(String),
    #[error("master key rotation refused: {0}")]
    Rotation(String),
}

/// Where wrapped keys are kept. Inserts must be durable when they return.
///
/// Master-key rotation rests on three contracts: [`insert`](Self::insert) stores only keys
/// wrapped by the newest master key, [`rewrap`](Self::rewrap) is a compare-and-set that never
/// re-creates a destroyed row, and [`finish_rotation`](Self::finish_rotation) retires the old
/// key only in the transaction that finds no row still wrapped by it.
#[async_trait::async_trait]
pub trait VaultStore: Send + Sync + 'static {
    /// Inserts keys; an id that already exists keeps its old key. Every record must be
    /// wrapped by the vault's newest master key ([`MasterKeyStatus::newest`]; a vault that
    /// knows none registers the records' key as active). Otherwise nothing is inserted and
    /// [`VaultError::StaleMasterKey`] names the newest. The check runs in the insert's own
    /// transaction, serialised with [`begin_rotation`](Self::begin_rotation) and
    /// [`finish_rotation`](Self::finish_rotation): no row lands under a retired key.
    async fn insert(&self, records: Vec<KeyRecord>) -> Result<(), VaultError>;
    /// The records of those ids that exist.
    async fn fetch(&self, ids: Vec<String>) -> Result<Vec<KeyRecord>, VaultError>;
    /// Deletes keys so that no copy remains in the store's files; returns how many existed.
    async fn destroy(&self, ids: Vec<String>) -> Result<u64, VaultError>;
    /// Ids of keys of `purpose` created before `created_before_millis`, in id order after
    /// `after`, at most `limit` (to sweep the vault page by page).
    async fn list(
        &self,
        purpose: KeyPurpose,
        created_before_millis: i64,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<String>, VaultError>;
    /// Records the audit journal's head `(seq, hash)` if it is newer than the one recorded.
    async fn anchor_journal(&self, seq: i64, hash: [u8; 32]) -> Result<(), VaultError>;
    /// The recorded journal head.
    async fn journal_anchor(&self) -> Result<Option<(i64, [u8; 32])>, VaultError>;
    /// Makes sure destroyed keys leave no copy in the store's files (journals, free pages).
    async fn compact(&self) -> Result<(), VaultError>;
    /// Checks the store answers.
    async fn ping(&self) -> Result<(), VaultError>;

    /// The master keys the vault knows (by fingerprint), its creation time and last rotation.
    async fn master_key_status(&self) -> Result<MasterKeyStatus, VaultError>;
    /// Registers `fingerprint` as the active key of a vault that has none yet, and as the
    /// wrapper of the rows stored before the vault recorded fingerprints. A no-op when the
    /// vault has an active key already. The caller checks first that the key opens them.
    async fn adopt_master_key(&self, fingerprint: String) -> Result<(), VaultError>;
    /// Starts, or resumes, the rotation from the active key `from` to `to`: registers `to`
    /// as [`MasterKeyState::Next`] and records the rotation, in one transaction. Returns how
    /// many rows are wrapped by another key than `to`. Fails with [`VaultError::Rotation`]
    /// if `from` is not the active key or a rotation to another key is under way.
    async fn begin_rotation(&self, from: String, to: String) -> Result<u64, VaultError>;
    /// Rows wrapped by another key than `to`, in id order after `after`, at most `limit`.
    async fn wrapped_by_other(
        &self,
        to: String,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<KeyRecord>, VaultError>;
    /// The compare-and-set of a rotation: each row whose wrapped bytes are still
    /// `old_wrapped` gets `new_wrapped`, wrapped by `to`; a row destroyed or changed
    /// meanwhile is left as it is, never re-created. Returns how many rows changed.
    async fn rewrap(&self, to: String, changes: Vec<Rewrap>) -> Result<u64, VaultError>;
    /// Finishes the rotation `from` -> `to` in one transaction if no row is wrapped by
    /// another key than `to`: retires `from`, makes `to` active and records the rotation
    /// finished with `rewrapped`. Returns the rows still under another key (0: finished).
    /// Calling it again after it finished returns 0 and changes nothing.
    async fn finish_rotation(
        &self,
        from: String,
        to: String,
        rewrapped: u64,
    ) -> Result<u64, VaultError>;
}

/// Loads the master key files an installation holds now: its master key and, while a
/// rotation is under way, the pending one. Implemented where files are read (the binary).
#[async_trait::async_trait]
pub trait MasterKeySource: Send + Sync + 'static {
    async fn load(&self) -> Result<Vec<MasterKey>, VaultError>;
}

/// The master keys a process holds, by fingerprint, and the one that wraps new keys.
struct Keyring {
    keys: HashMap<String, Arc<MasterKey>>,
    newest: Arc<MasterKey>,
}

impl Keyring {
    fn single(master: MasterKey) -> Self {
        let master = Arc::new(master);
        Self {
            keys: HashMap::from([(master.fingerprint(), master.clone())]),
            newest: master,
        }
    }

    /// The held keys, the newest being the vault's newest (or the only key, for a vault
    /// that knows none yet).
    fn build(held: Vec<MasterKey>, status: &MasterKeyStatus) -> Result<Self, VaultError> {
        // A retired key opens nothing any more: it is not kept in memory either.
        let keys: HashMap<String, Arc<MasterKey>> = held
            .into_iter()
            .map(|k| (k.fingerprint(), Arc::new(k)))
            .filter(|(fp, _)| {
                !status
                    .keys
                    .iter()
                    .any(|k| &k.fingerprint == fp && k.state == MasterKeyState::Retired)
            })
            .collect();
        let newest = match status.newest() {
            Some(fp) => keys
                .get(fp)
                .cloned()
                .ok_or_else(|| VaultError::MasterKeyNotHeld(fp.to_owned()))?,
            None if keys.len() == 1 => {
                keys.values().next().cloned().ok_or_else(|| {
                    VaultError::Rotation("no master key file was loaded".to_owned())
                })?
            }
            None => {
                return Err(VaultError::Rotation(
                    "the vault has no master key yet but several key files were loaded".to_owned(),
                ));
            }
        };
        Ok(Self { keys, newest })
    }
}

/// Issues, opens and destroys data keys.
///
/// It unwraps each key with the master key its record names and wraps new keys with the
/// newest it holds. Clones share one keyring: when a record names a key this process does not
/// hold, or the store refuses an insert as wrapped by a stale key (a rotation started in
/// another process), the keyring is reloaded from the [`MasterKeySource`].
#[derive(Clone)]
pub struct Vault {
    keyring: Arc<RwLock<Arc<Keyring>>>,
    store: Arc<dyn VaultStore>,
    source: Option<Arc<dyn MasterKeySource>>,
}

/// What one page of a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotatedPage {
    /// Rows read (wrapped by another key than the new one).
    pub seen: u64,
    /// Rows re-wrapped; the others were destroyed or changed meanwhile.
    pub rewrapped: u64,
    /// Where the next page starts; `None` when this page was the last.
    pub next: Option<String>,
}

impl Vault {
    /// A vault with one master key that never reloads (tests, tools).
    pub fn new(master: MasterKey, store: Arc<dyn VaultStore>) -> Self {
        Self {
            keyring: Arc::new(RwLock::new(Arc::new(Keyring::single(master)))),
            store,
            source: None,
        }
    }

    /// Opens the vault with the keys `source` loads. A vault that knows no master key yet
    /// adopts the loaded one, once it has checked that the key opens the rows stored before
    /// fingerprints were recorded.
    pub async fn open(
        source: Arc<dyn MasterKeySource>,
        store: Arc<dyn VaultStore>,
    ) -> Result<Self, VaultError> {
        let held = source.load().await?;
        let status = store.master_key_status().await?;
        let keyring = Keyring::build(held, &status)?;
        if status.active().is_none() {
            let fingerprint = keyring.newest.fingerprint();
            for record in store.wrapped_by_other(fingerprint.clone(), None, 1).await? {
                keyring
                    .newest
                    .unwrap(&record.id, &record.wrapped)
                    .map_err(|_| VaultError::WrongMasterKey(record.id.clone()))?;
            }
            store.adopt_master_key(fingerprint).await?;
        }
        Ok(Self {
            keyring: Arc::new(RwLock::new(Arc::new(keyring))),
            store,
            source: Some(source),
        })
    }

    fn keyring(&self) -> Arc<Keyring> {
        match self.keyring.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reloads the master key files and the vault's master keys; `false` without a source.
    pub async fn reload(&self) -> Result<bool, VaultError> {
        let Some(source) = &self.source else {
            return Ok(false);
        };
        let held = source.load().await?;
        let status = self.store.master_key_status().await?;
        let keyring = Arc::new(Keyring::build(held, &status)?);
        replace_keyring(&self.keyring, keyring);
        Ok(true)
    }

    /// The fingerprint of the master key new keys are wrapped by.
    pub fn master_fingerprint(&self) -> String {
        self.keyring().newest.fingerprint()
    }

    /// Whether this process holds the master key of that fingerprint.
    pub fn holds(&self, fingerprint: &str) -> bool {
        self.keyring().keys.contains_key(fingerprint)
    }

    /// A fresh key and its wrapped record (nothing stored yet).
    pub fn issue(
        &self,
        id: String,
        account_id: String,
        purpose: KeyPurpose,
    ) -> (DataKey, KeyRecord) {
        let key = DataKey::generate();
        let master = self.keyring().newest.clone();
        let wrapped = master.wrap(&id, &key);
        (
            key,
            KeyRecord {
                id,
                account_id,
                purpose,
                wrapped,
                master: master.fingerprint(),
            },
        )
    }

    /// The master key of `fingerprint`, reloading the key files once if it is not held.
    async fn master(&self, fingerprint: &str) -> Result<Arc<MasterKey>, VaultError> {
        if let Some(key) = self.keyring().keys.get(fingerprint) {
            return Ok(key.clone());
        }
        self.reload().await?;
        self.keyring()
            .keys
            .get(fingerprint)
            .cloned()
            .ok_or_else(|| VaultError::MasterKeyNotHeld(fingerprint.to_owned()))
    }

    /// Stores keys. Keys wrapped by a key the vault no longer takes (a rotation began in
    /// another process) are re-wrapped by the newest key after reloading, then stored.
    pub async fn insert(&self, records: Vec<KeyRecord>) -> Result<(), VaultError> {
        if records.is_empty() {
            return Ok(());
        }
        // The keys the records were wrapped with, should a reload drop a retired one.
        let before = self.keyring();
        let newest = match self.store.insert(records.clone()).await {
            Err(VaultError::StaleMasterKey { newest }) => newest,
            other => return other,
        };
        let to = self.master(&newest).await?;
        let mut rewrapped = Vec::with_capacity(records.len());
        for mut record in records {
            if record.master != newest {
                let from = match before.keys.get(&record.master) {
                    Some(key) => key.clone(),
                    None => self.master(&record.master).await?,
                };
                record.wrapped = from
                    .rewrap(&to, &record.id, &record.wrapped)
                    .map_err(|_| VaultError::WrongMasterKey(record.id.clone()))?;
                record.master = newest.clone();
            }
            rewrapped.push(record);
        }
        self.store.insert(rewrapped).await
    }

    /// Opens the keys of `ids` that exist; destroyed keys are simply absent.
    pub async fn open_keys(
        &self,
        ids: Vec<String>,
    ) -> Result<HashMap<String, DataKey>, VaultError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let records = self.store.fetch(ids).await?;
        let mut keys = HashMap::with_capacity(records.len());
        for record in records {
            let master = self.master(&record.master).await?;
            let key = master
                .unwrap(&record.id, &record.wrapped)
                .map_err(|_| VaultError::WrongMasterKey(record.id.clone()))?;
            keys.insert(record.id, key);
        }
        Ok(keys)
    }

    pub async fn open_key(&self, id: &str) -> Result<Option<DataKey>, VaultError> {
        Ok(self.open_keys(vec![id.to_owned()]).await?.remove(id))
    }

    /// The vault's master keys and rotations.
    pub async fn master_key_status(&self) -> Result<MasterKeyStatus, VaultError> {
        self.store.master_key_status().await
    }

    /// Starts or resumes the rotation to `to`, which must be held (see
    /// [`VaultStore::begin_rotation`]); returns the rows left to re-wrap. Reloads, so that
    /// this process wraps new keys with `to` from now on.
    pub async fn begin_rotation(&self, to: &MasterKey) -> Result<u64, VaultError> {
        let status = self.store.master_key_status().await?;
        let from = status
            .active()
            .ok_or_else(|| VaultError::Rotation("the vault has no active master key".into()))?
            .to_owned();
        if from == to.fingerprint() {
            return Err(VaultError::Rotation(
                "the new master key is the current one".into(),
            ));
        }
        let remaining = self.store.begin_rotation(from, to.fingerprint()).await?;
        self.reload().await?;
        Ok(remaining)
    }

    /// Re-wraps one page of rows not yet wrapped by `to`, after `after`, each with a
    /// compare-and-set on its old wrapped bytes.
    pub async fn rotate_page(
        &self,
        to: &MasterKey,
        after: Option<String>,
        limit: u32,
    ) -> Result<RotatedPage, VaultError> {
        let records = self
            .store
            .wrapped_by_other(to.fingerprint(), after, limit)
            .await?;
        let seen = records.len() as u64;
        let next = if seen < u64::from(limit) {
            None
        } else {
            records.last().map(|r| r.id.clone())
        };
        let mut changes = Vec::with_capacity(records.len());
        for record in records {
            let from = self.master(&record.master).await?;
            let new_wrapped = from
                .rewrap(to, &record.id, &record.wrapped)
                .map_err(|_| VaultError::WrongMasterKey(record.id.clone()))?;
            changes.push(Rewrap {
                id: record.id,
                old_wrapped: record.wrapped,
                new_wrapped,
            });
        }
        let rewrapped = if changes.is_empty() {
            0
        } else {
            self.store.rewrap(to.fingerprint(), changes).await?
        };
        Ok(RotatedPage {
            seen,
            rewrapped,
            next,
        })
    }

    /// See [`VaultStore::finish_rotation`]; reloads once finished.
    pub async fn finish_rotation(
        &self,
        from: &str,
        to: &MasterKey,
        rewrapped: u64,
    ) -> Result<u64, VaultError> {
        let left = self
            .store
            .finish_rotation(from.to_owned(), to.fingerprint(), rewrapped)
            .await?;
        if left == 0 {
            self.reload().await?;
        }
        Ok(left)
    }

    pub async fn destroy(&self, ids: Vec<String>) -> Result<u64, VaultError> {
        if ids.is_empty() {
            return Ok(0);
        }
        self.store.destroy(ids).await
    }

    pub async fn ping(&self) -> Result<(), VaultError> {
        self.store.ping().await
    }

    pub async fn anchor_journal(&self, seq: i64, hash: [u8; 32]) -> Result<(), VaultError> {
        self.store.anchor_journal(seq, hash).await
    }

    pub async fn journal_anchor(&self) -> Result<Option<(i64, [u8; 32])>, VaultError> {
        self.store.journal_anchor().await
    }

    pub async fn compact(&self) -> Result<(), VaultError> {
        self.store.compact().await
    }

    /// See [`VaultStore::list`].
    pub async fn list(
        &self,
        purpose: KeyPurpose,
        created_before_millis: i64,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<String>, VaultError> {
        self.store
            .list(purpose, created_before_millis, after, limit)
            .await
    }
}

fn replace_keyring(slot: &RwLock<Arc<Keyring>>, keyring: Arc<Keyring>) {
    match slot.write() {
        Ok(mut k) => *k = keyring,
        Err(poisoned) => *poisoned.into_inner() = keyring,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(keys: &[(&MasterKey, MasterKeyState)]) -> MasterKeyStatus {
        MasterKeyStatus {
            keys: keys
                .iter()
                .map(|(k, state)| MasterKeyEntry {
                    fingerprint: k.fingerprint(),
                    state: *state,
                    since_millis: 0,
                })
                .collect(),
            created_at_millis: 0,
            last_rotation: None,
        }
    }

    #[test]
    fn the_keyring_wraps_with_the_vaults_newest_key_and_forgets_retired_ones() {
        use MasterKeyState::{Active, Next, Retired};
        let (a, _) = MasterKey::generate();
        let (b, _) = MasterKey::generate();
        let held = || vec![a.clone(), b.clone()];
        // (case, held keys, the vault's keys, the newest expected, how many kept)
        let cases: Vec<(&str, Vec<MasterKey>, MasterKeyStatus, &MasterKey, usize)> = vec![
            (
                "a rotation under way",
                held(),
                status(&[(&a, Active), (&b, Next)]),
                &b,
                2,
            ),
            (
                "a pending file the vault does not name yet",
                held(),
                status(&[(&a, Active)]),
                &a,
                2,
            ),
            (
                "a finished rotation",
                held(),
                status(&[(&a, Retired), (&b, Active)]),
                &b,
                1,
            ),
            (
                "a vault that knows no key yet",
                vec![a.clone()],
                status(&[]),
                &a,
                1,
            ),
        ];
        for (name, held, status, newest, kept) in cases {
            let ring = Keyring::build(held, &status).unwrap();
            assert_eq!(ring.newest.fingerprint(), newest.fingerprint(), "{name}");
            assert_eq!(ring.keys.len(), kept, "{name}");
        }
        let without_the_active = Keyring::build(vec![b.clone()], &status(&[(&a, Active)]));
        assert!(matches!(
            without_the_active,
            Err(VaultError::MasterKeyNotHeld(fp)) if fp == a.fingerprint()
        ));
        let pending_missing = Keyring::build(vec![a.clone()], &status(&[(&a, Active), (&b, Next)]));
        assert!(matches!(
            pending_missing,
            Err(VaultError::MasterKeyNotHeld(fp)) if fp == b.fingerprint()
        ));
    }

    #[test]
    fn a_rewrap_record_never_prints_key_bytes() {
        let change = Rewrap {
            id: "call-1".into(),
            old_wrapped: vec![0xab; 8],
            new_wrapped: vec![0xcd; 8],
        };
        let shown = format!("{change:?}");
        assert!(shown.contains("call-1"));
        assert!(!shown.contains("171") && !shown.contains("205"), "{shown}");
    }
}
