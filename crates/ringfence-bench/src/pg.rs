//! PostgreSQL for the benchmarks: each run makes databases of its own on the server a URL
//! names (the URL's own database is only used to create and drop them), applies Ringfence's
//! migrations to them, and drops them afterwards.

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context;
use ringfence_store_postgres::{DatabaseUrl, Schema, migrate};
use sqlx::{AssertSqlSafe, Connection};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A call log and a vault, two databases on one server.
pub struct Databases {
    server: DatabaseUrl,
    pub log: DatabaseUrl,
    pub vault: DatabaseUrl,
}

/// Runs one statement on the URL's own database (CREATE/DROP DATABASE cannot run in a
/// transaction, nor on the database they name).
async fn administer(server: &DatabaseUrl, sql: String) -> anyhow::Result<()> {
    let mut conn = server
        .connect()
        .await
        .with_context(|| format!("cannot connect to {server}"))?;
    let done = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await;
    let _ = conn.close().await;
    done.map(|_| ())
        .map_err(|e| anyhow::anyhow!(ringfence_store_postgres::describe_error(&e)))
}

impl Databases {
    /// Two new databases, migrated (`template`: copies of those databases instead, which
    /// must have no open connection).
    pub async fn create(
        server: &DatabaseUrl,
        template: Option<&Databases>,
    ) -> anyhow::Result<Databases> {
        let name = format!(
            "ringfence_bench_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dbs = Databases {
            server: server.clone(),
            log: server.with_database(&format!("{name}_log")),
            vault: server.with_database(&format!("{name}_vault")),
        };
        for (url, copied) in [
            (&dbs.log, template.map(|t| &t.log)),
            (&dbs.vault, template.map(|t| &t.vault)),
        ] {
            let sql = match copied {
                Some(t) => format!(
                    "CREATE DATABASE {} TEMPLATE {}",
                    url.database(),
                    t.database()
                ),
                None => format!("CREATE DATABASE {}", url.database()),
            };
            if let Err(e) = administer(server, sql).await {
                dbs.drop().await;
                return Err(e.context(format!("cannot create {url}")));
            }
        }
        if template.is_none() {
            let migrated = async {
                migrate(&dbs.log, Schema::CallLog).await?;
                migrate(&dbs.vault, Schema::Vault).await
            }
            .await;
            if let Err(e) = migrated {
                dbs.drop().await;
                return Err(anyhow::anyhow!(e).context("cannot migrate the bench databases"));
            }
        }
        Ok(dbs)
    }

    /// The server the databases are on (the URL given to the run).
    #[allow(dead_code)] // the erasure binary's; the ingest binary compiles this module too
    pub fn server(&self) -> &DatabaseUrl {
        &self.server
    }

    /// Drops both databases, closing any connection still open to them.
    pub async fn drop(&self) {
        for url in [&self.log, &self.vault] {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", url.database());
            if let Err(e) = administer(&self.server, sql).await {
                eprintln!("  could not drop {url}: {e:#}");
            }
        }
    }
}

/// Drops every database this process made on the server (after a run that failed midway).
pub async fn drop_all_of_this_process(server: &DatabaseUrl) {
    let pattern = format!("ringfence\\_bench\\_{}\\_%", std::process::id());
    let names: anyhow::Result<Vec<String>> = async {
        let mut conn = server.connect().await?;
        let names =
            sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname LIKE $1")
                .bind(&pattern)
                .fetch_all(&mut conn)
                .await?;
        let _ = conn.close().await;
        Ok(names)
    }
    .await;
    match names {
        Ok(names) => {
            for name in names {
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                if let Err(e) = administer(server, sql).await {
                    eprintln!("  could not drop {name}: {e:#}");
                }
            }
        }
        Err(e) => eprintln!("  could not list the bench's databases: {e:#}"),
    }
}

/// How the server is set up, for the report: version, fsync, synchronous_commit and the
/// settings that decide a commit's cost.
pub async fn describe_server(server: &DatabaseUrl) -> anyhow::Result<String> {
    let mut conn = server
        .connect()
        .await
        .with_context(|| format!("cannot connect to {server}"))?;
    let mut parts = Vec::new();
    for setting in [
        "server_version",
        "fsync",
        "synchronous_commit",
        "wal_sync_method",
        "full_page_writes",
        "commit_delay",
        "shared_buffers",
        "max_connections",
    ] {
        let value: String = sqlx::query_scalar(AssertSqlSafe(format!("SHOW {setting}")))
            .fetch_one(&mut conn)
            .await
            .map_err(|e| anyhow::anyhow!(ringfence_store_postgres::describe_error(&e)))?;
        parts.push(format!("{setting}={value}"));
    }
    let _ = conn.close().await;
    Ok(parts.join(", "))
}

/// Counts the calls of a call-log database.
pub async fn count_calls(log: &DatabaseUrl) -> anyhow::Result<u64> {
    let mut conn = log.connect().await?;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM calls")
        .fetch_one(&mut conn)
        .await?;
    let _ = conn.close().await;
    Ok(n as u64)
}
