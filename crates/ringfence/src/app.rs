//! Opening the data folder and serving it.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use ringfence_crypto::VaultStore;
use ringfence_crypto::{MasterKey, MasterKeySource, Vault, VaultError};
use ringfence_http::{AppState, Limits};
use ringfence_store::{Blobs, CallLog, Store};
use ringfence_store_postgres::{PgStore, PgVault};
use ringfence_store_sqlite::{SqliteStore, SqliteVault};

use crate::config::{BlobLocation, Config, DatabaseLocation};

/// Everything opened from the configuration.
pub struct Resources {
    pub config: Config,
    pub log: Arc<CallLog>,
    call_log_db: CallLogDb,
    vault_db: VaultDb,
}

/// The call log's database, whichever backend holds it.
enum CallLogDb {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// The vault's database.
enum VaultDb {
    Sqlite(SqliteVault),
    Postgres(PgVault),
}

impl CallLogDb {
    /// `connections`: the pool's size on PostgreSQL (`--database-max-connections`): each
    /// write is one short transaction, so a few serve many concurrent requests.
    async fn open(location: &DatabaseLocation, connections: u32) -> anyhow::Result<CallLogDb> {
        Ok(match location {
            DatabaseLocation::Sqlite(path) => CallLogDb::Sqlite(
                SqliteStore::open(path)
                    .with_context(|| format!("cannot open the call log {}", path.display()))?,
            ),
            DatabaseLocation::Postgres(url) => CallLogDb::Postgres(
                PgStore::open(url, connections)
                    .await
                    .with_context(|| format!("cannot open the call log {url}"))?,
            ),
        })
    }

    fn store(&self) -> Arc<dyn Store> {
        match self {
            CallLogDb::Sqlite(s) => Arc::new(s.clone()),
            CallLogDb::Postgres(s) => Arc::new(s.clone()),
        }
    }
}

impl VaultDb {
    /// `connections`: the pool's size on PostgreSQL (key reads are cached; writes are few and
    /// short).
    async fn open(location: &DatabaseLocation, connections: u32) -> anyhow::Result<VaultDb> {
        Ok(match location {
            DatabaseLocation::Sqlite(path) => VaultDb::Sqlite(
                SqliteVault::open(path)
                    .with_context(|| format!("cannot open the vault {}", path.display()))?,
            ),
            DatabaseLocation::Postgres(url) => VaultDb::Postgres(
                PgVault::open(url, connections)
                    .await
                    .with_context(|| format!("cannot open the vault {url}"))?,
            ),
        })
    }

    fn store(&self) -> Arc<dyn VaultStore> {
        match self {
            VaultDb::Sqlite(v) => Arc::new(v.clone()),
            VaultDb::Postgres(v) => Arc::new(v.clone()),
        }
    }
}

/// Creates the folder 0700 if it is missing (a folder of the operator's that holds the key
/// file keeps its mode).
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        ringfence_store::private::create_dir(dir)
            .with_context(|| format!("cannot create the folder {}", dir.display()))?;
    }
    Ok(())
}

/// Reads an existing master key; never creates one.
pub fn load_existing_master_key(path: &Path) -> anyhow::Result<MasterKey> {
    let contents = std::fs::read(path)
        .with_context(|| format!("cannot read the master key file {}", path.display()))?;
    MasterKey::from_file_contents(&contents)
        .with_context(|| format!("master key file {}", path.display()))
}

/// Reads the master key, or creates it (mode 0600, never overwriting) on first start.
pub fn load_or_create_master_key(path: &Path) -> anyhow::Result<MasterKey> {
    match std::fs::read(path) {
        Ok(contents) => MasterKey::from_file_contents(&contents)
            .with_context(|| format!("master key file {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                create_private_dir(parent)?;
            }
            let (key, contents) = MasterKey::generate();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options
                .open(path)
                .with_context(|| format!("cannot create the master key file {}", path.display()))?;
            file.write_all(contents.as_bytes())?;
            file.sync_all()?;
            tracing::info!(fingerprint = %key.fingerprint(), "created a new master key");
            Ok(key)
        }
        Err(e) => {
            Err(e).with_context(|| format!("cannot read the master key file {}", path.display()))
        }
    }
}

/// Where a rotation keeps its pending master key (0600) until the rotation has finished:
/// beside the master key file, named after it with `.next`. Every process that opens the
/// vault loads it too, so that it can open keys the rotation has re-wrapped.
pub fn pending_key_path(master_key_file: &Path) -> std::path::PathBuf {
    sibling(master_key_file, ".next")
}

/// A hard link to the old master key file that a rotation makes before it replaces the file,
/// so that a crash between the replacement and the overwrite leaves it to be found and
/// destroyed by the next run.
pub fn retired_key_path(master_key_file: &Path) -> std::path::PathBuf {
    sibling(master_key_file, ".retired")
}

fn sibling(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

/// The master key files of the data folder: the master key and a rotation's pending key.
pub struct MasterKeyFiles {
    pub master_key_file: std::path::PathBuf,
}

#[async_trait::async_trait]
impl MasterKeySource for MasterKeyFiles {
    async fn load(&self) -> Result<Vec<MasterKey>, VaultError> {
        let path = self.master_key_file.clone();
        tokio::task::spawn_blocking(move || {
            let unreadable = |p: &Path, e: &dyn std::fmt::Display| {
                VaultError::Rotation(format!(
                    "cannot read the master key file {}: {e}",
                    p.display()
                ))
            };
            let mut keys = Vec::with_capacity(2);
            for (file, required) in [(path.clone(), true), (pending_key_path(&path), false)] {
                match std::fs::read(&file) {
                    Ok(contents) => keys.push(
                        MasterKey::from_file_contents(&contents)
                            .map_err(|e| unreadable(&file, &e))?,
                    ),
                    Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(unreadable(&file, &e)),
                }
            }
            Ok(keys)
        })
        .await
        .map_err(|e| VaultError::Rotation(format!("loading the master key files failed: {e}")))?
    }
}

/// Whether two paths name the same file (one that need not exist yet).
pub fn same_file(a: &Path, b: &Path) -> bool {
    let resolve = |p: &Path| {
        let parent = p.parent().filter(|d| !d.as_os_str().is_empty());
        let dir = parent
            .map(|d| d.canonicalize().unwrap_or_else(|_| d.to_owned()))
            .unwrap_or_else(|| std::env::current_dir().unwrap_or_default());
        dir.join(p.file_name().unwrap_or_default())
    };
    a == b || resolve(a) == resolve(b)
}

impl Resources {
    /// Opens (creating on first use) the data folder, the master key, the call log, the vault
    /// and the recordings store, applying migrations.
    pub async fn open(config: &Config) -> anyhow::Result<Resources> {
        // 0700 also when the operator made the folder first (every file in it is 0600).
        ringfence_store::private::create_dir(&config.data).with_context(|| {
            format!(
                "cannot create or restrict the data folder {}",
                config.data.display()
            )
        })?;
        load_or_create_master_key(&config.master_key_file)?;
        if config.master_key_file.starts_with(&config.data) {
            ringfence_store::private::restrict_file(&config.master_key_file)
                .with_context(|| format!("cannot restrict {}", config.master_key_file.display()))?;
        }
        // A redaction commits the call log's changes only after the vault has committed the
        // keys' deletion; in one file the two writers would wait for each other. (Two
        // PostgreSQL URLs naming one database are refused by `Config::resolve`.)
        if let (DatabaseLocation::Sqlite(db_path), DatabaseLocation::Sqlite(vault_path)) =
            (&config.database, &config.vault)
        {
            anyhow::ensure!(
                !same_file(db_path, vault_path),
                "the vault must be a database of its own, not the call log's file ({})",
                vault_path.display()
            );
        }
        let connections = config.database_max_connections;
        let call_log_db = CallLogDb::open(&config.database, connections).await?;
        let vault_db = VaultDb::open(&config.vault, (connections / 4).max(2)).await?;
        let BlobLocation::Folder(folder) = &config.blobs;
        let blobs = Blobs::local(folder)
            .with_context(|| format!("cannot open the recordings folder {}", folder.display()))?;
        let keys = Vault::open(
            Arc::new(MasterKeyFiles {
                master_key_file: config.master_key_file.clone(),
            }),
            vault_db.store(),
        )
        .await
        .with_context(|| {
            format!(
                "cannot open the vault {} with the master key file {}",
                config.vault.describe(),
                config.master_key_file.display()
            )
        })?;
        let log = Arc::new(CallLog::new(call_log_db.store(), keys, blobs));
        Ok(Resources {
            config: config.clone(),
            log,
            call_log_db,
            vault_db,
        })
    }

    /// The SQLite call log and vault, when both are SQLite files: the benchmarks read and
    /// set their writers' settings through them.
    pub fn sqlite(&self) -> Option<(&SqliteStore, &SqliteVault)> {
        match (&self.call_log_db, &self.vault_db) {
            (CallLogDb::Sqlite(store), VaultDb::Sqlite(vault)) => Some((store, vault)),
            _ => None,
        }
    }

    /// Waits for queued writes and closes the databases.
    pub async fn close(&self) {
        match &self.call_log_db {
            CallLogDb::Sqlite(s) => s.db().close(),
            CallLogDb::Postgres(s) => s.close().await,
        }
        match &self.vault_db {
            VaultDb::Sqlite(v) => v.db().close(),
            VaultDb::Postgres(v) => v.close().await,
        }
    }
}

/// The HTTP server, bound but not yet serving.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    address: SocketAddr,
}

impl Application {
    /// Binds `config.listen` (port 0 picks a free port) over opened resources.
    pub async fn build(resources: &Resources) -> anyhow::Result<Application> {
        let limits = Limits {
            max_recording_bytes: resources.config.max_recording_bytes,
            sign_in_first_delay_ms: resources.config.sign_in_first_delay_ms,
            ..Limits::STANDARD
        };
        let geo = open_geoip(&resources.config)?;
        let state = AppState::with_options(
            resources.log.clone(),
            limits,
            Some(crate::telemetry::metrics_handle()),
            geo,
            resources.config.public_url.clone(),
        )
        .with_data_paths(ringfence_jobs::checklist::DataPaths {
            data_dir: resources.config.data.clone(),
            master_key_file: resources.config.master_key_file.clone(),
        })
        .with_outbound(ringfence_http::state::Outbound {
            twilio_media: resources.config.twilio_media.clone(),
            allow_local_relays: resources.config.allow_local_relays,
        });
        let listener = TcpListener::bind(resources.config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", resources.config.listen))?;
        let address = listener.local_addr()?;
        Ok(Application {
            listener,
            router: ringfence_http::router(state),
            address,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Serves until `shutdown` resolves, then finishes the requests under way.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        // The peer address reaches handlers (the sign-in throttle counts per client).
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, service)
            .with_graceful_shutdown(shutdown)
            .await
            .context("server failed")
    }
}

/// Opens the IP-to-country database. One named by the operator must open; a default one
/// that does not is skipped with a warning, as is having none.
pub fn open_geoip(
    config: &crate::config::Config,
) -> anyhow::Result<Option<Arc<ringfence_geo::CountryDb>>> {
    let Some(location) = &config.geoip else {
        tracing::warn!(
            "no IP-to-country database (run scripts/fetch-geoip, or pass --geoip-file): GDPR scope comes from caller numbers alone"
        );
        return Ok(None);
    };
    match ringfence_geo::CountryDb::open(&location.path) {
        Ok(db) => {
            tracing::info!(database = %db.description(), path = %location.path.display(), "IP-to-country database loaded");
            Ok(Some(Arc::new(db)))
        }
        Err(e) if !location.explicit => {
            tracing::warn!(error = %e, path = %location.path.display(), "IP-to-country database skipped");
            Ok(None)
        }
        Err(e) => Err(anyhow::anyhow!(e).context(format!(
            "--geoip-file {} does not open",
            location.path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_vault_may_not_share_the_call_logs_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let mut config = Config::in_folder(&data);
        config.vault = DatabaseLocation::Sqlite(data.join(".").join("ringfence.db"));
        let error = Resources::open(&config).await.err().expect("refused");
        assert!(
            error.to_string().contains("database of its own"),
            "{error:#}"
        );
        assert!(same_file(Path::new("a/b.db"), Path::new("a/./b.db")));
        assert!(!same_file(Path::new("a/b.db"), Path::new("a/c.db")));
    }
}
