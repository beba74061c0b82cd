//! A Ringfence server in a fresh data folder, as `ringfence serve` wires it, with a tenant and
//! an ingest token; and the same server with group commit taken out of play.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use tempfile::TempDir;
use tokio::sync::{Mutex, oneshot};

use ringfence::commands::{TokenArgs, create_token};
use ringfence::{Application, Config, Resources};
use ringfence_core::access::Role;
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, AgencyId, CallId, SessionId};
use ringfence_crypto::{KeyRecord, Vault, VaultError, VaultStore};
use ringfence_store::{
    AccountRecord, AgencyRecord, Blobs, CallLog, CallQuery, CallRow, Inserted, NewCallRow,
    RecordingRow, SessionRow, Store, StoreError, TokenRecord,
};

/// How the server's writes reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// As shipped: each database's writer thread commits the writes queued together.
    Grouped,
    /// At most one write in each database's queue at any time, so that every request's
    /// write is a transaction and an fsync of its own: Ringfence without group commit.
    OnePerRequest,
}

pub struct Server {
    pub address: SocketAddr,
    pub token: String,
    pub account: AccountId,
    pub data: std::path::PathBuf,
    resources: Resources,
    shutdown: Option<oneshot::Sender<()>>,
    serving: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: TempDir,
}

impl Server {
    /// Starts a server in a new folder below `parent`; must run on the server's runtime.
    pub async fn start(parent: &Path, commit: Commit) -> anyhow::Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix("ringfence-bench-")
            .tempdir_in(parent)
            .context("cannot create the server's data folder")?;
        let data = dir.path().join("data");
        let config = Config::in_folder(&data);
        let opened = Resources::open(&config)?;
        let resources = match commit {
            Commit::Grouped => opened,
            Commit::OnePerRequest => {
                let master = ringfence::app::load_or_create_master_key(&config.master_key_file)?;
                let ringfence::config::BlobLocation::Folder(folder) = &config.blobs;
                let store = Arc::new(OneWriteAtATime {
                    inner: opened.store.clone(),
                    lock: Mutex::new(()),
                });
                let vault = Arc::new(OneWriteAtATime {
                    inner: opened.vault.clone(),
                    lock: Mutex::new(()),
                });
                let log = CallLog::new(
                    store as Arc<dyn Store>,
                    Vault::new(master, vault as Arc<dyn VaultStore>),
                    Blobs::local(folder)?,
                );
                Resources {
                    config: config.clone(),
                    log: Arc::new(log),
                    store: opened.store.clone(),
                    vault: opened.vault.clone(),
                }
            }
        };
        let agency = AgencyRecord {
            id: AgencyId::generate(),
            name: "Bench Agency".into(),
            redaction_enabled: true,
            max_retention_days: None,
            created_at: Timestamp::now(),
        };
        resources.log.store().create_agency(agency.clone()).await?;
        let account = AccountRecord {
            id: AccountId::generate(),
            agency_id: agency.id,
            name: "Bench Account".into(),
            settings: "{}".into(),
            created_at: Timestamp::now(),
        };
        resources
            .log
            .store()
            .create_account(account.clone())
            .await?;
        let args = TokenArgs {
            role: Role::Ingest.as_str().into(),
            agency: Some(agency.id.to_string()),
            account: Some(account.id.to_string()),
            label: Some("bench".into()),
            no_personal_data: false,
            expires_in_days: None,
        };
        let (_, token) = create_token(&resources, &args).await?;
        let app = Application::build(&resources).await?;
        let address = app.address();
        let (tx, rx) = oneshot::channel::<()>();
        let serving = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        Ok(Server {
            address,
            token,
            account: account.id,
            data,
            resources,
            shutdown: Some(tx),
            serving,
            _dir: dir,
        })
    }

    /// Stops serving, waits for the queued writes, closes the databases and counts the
    /// stored calls and data keys from the files.
    pub async fn stop(mut self) -> anyhow::Result<(u64, u64)> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        (&mut self.serving)
            .await
            .context("the server task failed")??;
        self.resources.close();
        let count = |file: &str, table: &str| -> anyhow::Result<u64> {
            let conn = rusqlite::Connection::open(self.data.join(file))?;
            Ok(
                conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| {
                    r.get::<_, i64>(0)
                })? as u64,
            )
        };
        Ok((
            count("ringfence.db", "calls")?,
            count("vault.db", "data_keys")?,
        ))
    }
}

/// Lets one write at a time into the store it wraps; reads pass through.
struct OneWriteAtATime<S> {
    inner: S,
    lock: Mutex<()>,
}

#[async_trait]
impl<S: VaultStore> VaultStore for OneWriteAtATime<S> {
    async fn insert(&self, records: Vec<KeyRecord>) -> Result<(), VaultError> {
        let _one = self.lock.lock().await;
        self.inner.insert(records).await
    }
    async fn fetch(&self, ids: Vec<String>) -> Result<Vec<KeyRecord>, VaultError> {
        self.inner.fetch(ids).await
    }
    async fn destroy(&self, ids: Vec<String>) -> Result<u64, VaultError> {
        let _one = self.lock.lock().await;
        self.inner.destroy(ids).await
    }
    async fn ping(&self) -> Result<(), VaultError> {
        self.inner.ping().await
    }
}

#[async_trait]
impl<S: Store> Store for OneWriteAtATime<S> {
    async fn create_agency(&self, agency: AgencyRecord) -> Result<(), StoreError> {
        let _one = self.lock.lock().await;
        self.inner.create_agency(agency).await
    }
    async fn agency(&self, id: AgencyId) -> Result<Option<AgencyRecord>, StoreError> {
        self.inner.agency(id).await
    }
    async fn update_agency(&self, agency: AgencyRecord) -> Result<(), StoreError> {
        let _one = self.lock.lock().await;
        self.inner.update_agency(agency).await
    }
    async fn list_agencies(&self) -> Result<Vec<AgencyRecord>, StoreError> {
        self.inner.list_agencies().await
    }
    async fn create_account(&self, account: AccountRecord) -> Result<(), StoreError> {
        let _one = self.lock.lock().await;
        self.inner.create_account(account).await
    }
    async fn account(&self, id: AccountId) -> Result<Option<AccountRecord>, StoreError> {
        self.inner.account(id).await
    }
    async fn update_account(&self, account: AccountRecord) -> Result<(), StoreError> {
        let _one = self.lock.lock().await;
        self.inner.update_account(account).await
    }
    async fn list_accounts(
        &self,
        agency: Option<AgencyId>,
    ) -> Result<Vec<AccountRecord>, StoreError> {
        self.inner.list_accounts(agency).await
    }
    async fn create_token(&self, token: TokenRecord) -> Result<(), StoreError> {
        let _one = self.lock.lock().await;
        self.inner.create_token(token).await
    }
    async fn token_by_hash(&self, hash: [u8; 32]) -> Result<Option<TokenRecord>, StoreError> {
        self.inner.token_by_hash(hash).await
    }
    async fn token_count(&self) -> Result<u64, StoreError> {
        self.inner.token_count().await
    }
    async fn insert_calls(
        &self,
        calls: Vec<NewCallRow>,
    ) -> Result<Vec<Inserted<CallId>>, StoreError> {
        let _one = self.lock.lock().await;
        self.inner.insert_calls(calls).await
    }
    async fn insert_session(&self, session: SessionRow) -> Result<Inserted<SessionId>, StoreError> {
        let _one = self.lock.lock().await;
        self.inner.insert_session(session).await
    }
    async fn call(&self, id: CallId) -> Result<Option<CallRow>, StoreError> {
        self.inner.call(id).await
    }
    async fn calls(&self, query: CallQuery) -> Result<Vec<CallRow>, StoreError> {
        self.inner.calls(query).await
    }
    async fn sessions(&self, ids: Vec<SessionId>) -> Result<Vec<SessionRow>, StoreError> {
        self.inner.sessions(ids).await
    }
    async fn set_recording(
        &self,
        call: CallId,
        recording: Option<RecordingRow>,
    ) -> Result<Option<RecordingRow>, StoreError> {
        let _one = self.lock.lock().await;
        self.inner.set_recording(call, recording).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}
