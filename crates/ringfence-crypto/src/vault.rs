//! The vault: wrapped data keys, kept apart from the data they open.
//!
//! Destroying a key in the vault is what makes a record unreadable for good, wherever copies
//! of its ciphertext may lie (backups of the call log, a lagging replica, a recording file).

use std::collections::HashMap;
use std::sync::Arc;

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
        [
            KeyPurpose::Call,
            KeyPurpose::Session,
            KeyPurpose::BlindIndex,
            KeyPurpose::Subject,
            KeyPurpose::AccountSecret,
            KeyPurpose::UserEmail,
        ]
        .into_iter()
        .find(|p| p.as_str() == text)
    }
}

/// A data key wrapped by the master key, as the vault stores it.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    pub account_id: String,
    pub purpose: KeyPurpose,
    pub wrapped: Vec<u8>,
}

impl std::fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRecord")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("purpose", &self.purpose)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("vault storage failed: {0}")]
    Storage(String),
    #[error("key {0} does not open with this master key (wrong master key file?)")]
    WrongMasterKey(String),
}

/// Where wrapped keys are kept. Inserts must be durable when they return.
#[async_trait::async_trait]
pub trait VaultStore: Send + Sync + 'static {
    /// Inserts keys; an id that already exists keeps its old key.
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
}

/// Issues, opens and destroys data keys.
#[derive(Clone)]
pub struct Vault {
    master: Arc<MasterKey>,
    store: Arc<dyn VaultStore>,
}

impl Vault {
    pub fn new(master: MasterKey, store: Arc<dyn VaultStore>) -> Self {
        Self {
            master: Arc::new(master),
            store,
        }
    }

    pub fn master_fingerprint(&self) -> String {
        self.master.fingerprint()
    }

    /// A fresh key and its wrapped record (nothing stored yet).
    pub fn issue(
        &self,
        id: String,
        account_id: String,
        purpose: KeyPurpose,
    ) -> (DataKey, KeyRecord) {
        let key = DataKey::generate();
        let wrapped = self.master.wrap(&id, &key);
        (
            key,
            KeyRecord {
                id,
                account_id,
                purpose,
                wrapped,
            },
        )
    }

    pub async fn insert(&self, records: Vec<KeyRecord>) -> Result<(), VaultError> {
        if records.is_empty() {
            return Ok(());
        }
        self.store.insert(records).await
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
            let key = self
                .master
                .unwrap(&record.id, &record.wrapped)
                .map_err(|_| VaultError::WrongMasterKey(record.id.clone()))?;
            keys.insert(record.id, key);
        }
        Ok(keys)
    }

    pub async fn open_key(&self, id: &str) -> Result<Option<DataKey>, VaultError> {
        Ok(self.open_keys(vec![id.to_owned()]).await?.remove(id))
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
