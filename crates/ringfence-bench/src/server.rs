//! A Ringfence server in a fresh data folder (and, on PostgreSQL, fresh databases), wired as
//! `ringfence serve` wires it, with an agency, an account and an ingest token for it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tempfile::TempDir;
use tokio::sync::oneshot;

use ringfence::commands::{TokenArgs, create_token};
use ringfence::config::DatabaseLocation;
use ringfence::{Application, Config, Resources};
use ringfence_core::access::Role;
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, AgencyId};
use ringfence_store::{AccountRecord, AgencyRecord, CallLog};
use ringfence_store_postgres::DatabaseUrl;
use ringfence_store_sqlite::db_error;

use crate::pg::Databases;

use crate::whatif::WhatIf;

pub struct Server {
    pub address: SocketAddr,
    pub token: String,
    pub account: AccountId,
    data: PathBuf,
    resources: Resources,
    /// The server's own databases on PostgreSQL, dropped when it stops.
    postgres: Option<Databases>,
    shutdown: Option<oneshot::Sender<()>>,
    serving: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: TempDir,
}

impl Server {
    /// Starts a server in a new folder below `parent` (with `postgres`, on new databases of
    /// that server); must run on the server's runtime.
    pub async fn start(
        parent: &Path,
        what_if: &WhatIf,
        postgres: Option<&DatabaseUrl>,
    ) -> anyhow::Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix("ringfence-bench-")
            .tempdir_in(parent)
            .context("cannot create the server's data folder")?;
        let data = dir.path().join("data");
        let mut config = Config::in_folder(&data);
        let postgres = match postgres {
            Some(url) => {
                let dbs = Databases::create(url, None).await?;
                config.database = DatabaseLocation::Postgres(dbs.log.clone());
                config.vault = DatabaseLocation::Postgres(dbs.vault.clone());
                Some(dbs)
            }
            None => None,
        };
        match Self::open(config, what_if).await {
            Ok((resources, token, account)) => {
                Self::serve(resources, token, account, data, postgres, dir).await
            }
            Err(e) => {
                if let Some(dbs) = postgres {
                    dbs.drop().await;
                }
                Err(e)
            }
        }
    }

    /// Opens the resources, checks the SQLite writers' settings, and makes the tenant and
    /// its ingest token.
    async fn open(
        config: Config,
        what_if: &WhatIf,
    ) -> anyhow::Result<(Resources, String, AccountId)> {
        let resources = Resources::open(&config).await?;
        // A 201 means durable only if each writer commits with a full sync of its WAL (on
        // PostgreSQL, the server's fsync and synchronous_commit, printed with the figures).
        let sqlite = resources
            .sqlite()
            .map(|(store, vault)| [store.db(), vault.db()]);
        for db in sqlite.iter().flatten() {
            let (journal, synchronous) = db
                .maintenance(|conn| {
                    let journal: String = conn
                        .pragma_query_value(None, "journal_mode", |r| r.get(0))
                        .map_err(db_error)?;
                    let synchronous: i64 = conn
                        .pragma_query_value(None, "synchronous", |r| r.get(0))
                        .map_err(db_error)?;
                    Ok((journal, synchronous))
                })
                .await?;
            anyhow::ensure!(
                journal.eq_ignore_ascii_case("wal") && synchronous == 2,
                "{}: the writer runs journal_mode={journal}, synchronous={synchronous}; the figures assume WAL and FULL (2)",
                db.path().display()
            );
        }
        if what_if.is_active() {
            for db in sqlite.iter().flatten() {
                let settings = what_if.clone();
                db.maintenance(move |conn| settings.apply(conn).map_err(db_error))
                    .await?;
            }
        }
        let now = Timestamp::now();
        let agency = AgencyRecord {
            id: AgencyId::generate(),
            name: "Bench Agency".into(),
            redaction_enabled: true,
            max_retention_days: None,
            created_at: now,
        };
        resources.log.store().create_agency(agency.clone()).await?;
        let account = AccountRecord {
            twilio_auth_token: None,
            twilio_delete_recordings: false,
            twilio_account_sid: None,
            id: AccountId::generate(),
            agency_id: agency.id,
            name: "Bench Account".into(),
            // The baseline stores every field: so does the measured account.
            collection: ringfence_core::collection::CollectionSettings::collect_all(),
            created_at: now,
            retention: Default::default(),
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
        Ok((resources, token, account.id))
    }

    async fn serve(
        resources: Resources,
        token: String,
        account: AccountId,
        data: PathBuf,
        postgres: Option<Databases>,
        dir: TempDir,
    ) -> anyhow::Result<Server> {
        let app = match Application::build(&resources).await {
            Ok(app) => app,
            Err(e) => {
                resources.close().await;
                if let Some(dbs) = postgres {
                    dbs.drop().await;
                }
                return Err(e);
            }
        };
        let address = app.address();
        let (tx, rx) = oneshot::channel::<()>();
        let serving = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        Ok(Server {
            address,
            token,
            account,
            data,
            resources,
            postgres,
            shutdown: Some(tx),
            serving,
            _dir: dir,
        })
    }

    /// The server's encrypted call log, for driving the layers below HTTP directly.
    pub fn log(&self) -> &Arc<CallLog> {
        &self.resources.log
    }

    /// Stops serving, waits for the queued writes, closes the databases and counts the
    /// calls stored in the call log (then drops its PostgreSQL databases).
    pub async fn stop(mut self) -> anyhow::Result<u64> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let served = (&mut self.serving)
            .await
            .context("the server task failed")
            .and_then(|r| r);
        // As `ringfence serve` does on its way out.
        self.resources.log.key_pool().release().await;
        self.resources.close().await;
        let counted = match &self.postgres {
            Some(dbs) => crate::pg::count_calls(&dbs.log).await,
            None => (|| {
                let conn = rusqlite::Connection::open(self.data.join("ringfence.db"))?;
                Ok(
                    conn.query_row("SELECT COUNT(*) FROM calls", [], |r| r.get::<_, i64>(0))?
                        as u64,
                )
            })(),
        };
        if let Some(dbs) = &self.postgres {
            dbs.drop().await;
        }
        served?;
        counted
    }
}
