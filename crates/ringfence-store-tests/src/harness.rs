//! Where stories run: a fresh SQLite folder, or a fresh PostgreSQL database.
//!
//! PostgreSQL: `RINGFENCE_TEST_DATABASE_URL=postgres://…/test` names a server and a database
//! on it to connect to for administration; the tests create their own databases there.
//! The schema is migrated once per schema version into a template database
//! (`ringfence_tpl_<hash of the migrations>`), under an advisory lock on the administration
//! database so that test binaries starting together agree on who builds it. Each test gets a
//! database `CREATE DATABASE … TEMPLATE` it (a file copy, no migration run), dropped when the
//! test ends, pass or fail; databases left by a run that was killed are dropped by the next
//! run once they are an hour old (their age is in their name).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, Connection, Row};

use ringfence_crypto::VaultStore;
use ringfence_store::Store;
use ringfence_store_postgres::{DatabaseUrl, PgStore, PgVault, Schema, migrate};
use ringfence_store_sqlite::{SqliteStore, SqliteVault};

/// What a story runs against.
#[derive(Clone)]
pub struct Env {
    pub store: Arc<dyn Store>,
    pub vault: Arc<dyn VaultStore>,
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
}

/// The server the PostgreSQL variants run on.
pub const URL_VARIABLE: &str = "RINGFENCE_TEST_DATABASE_URL";
/// Set to `1` where a skipped PostgreSQL variant must fail instead (CI).
pub const REQUIRED_VARIABLE: &str = "RINGFENCE_POSTGRES_REQUIRED";

/// Connections per pool in tests: enough for the concurrency stories.
const POOL_SIZE: u32 = 8;
/// Test databases are named `ringfence_t_<unix seconds>_<random>`.
const TEST_PREFIX: &str = "ringfence_t_";
/// A test database older than this is left over from a killed run.
const LEFTOVER_AGE: Duration = Duration::from_secs(3600);

pub async fn on_sqlite<F, Fut>(story: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = SqliteStore::open(&dir.path().join("calls.db")).expect("the call log opens");
    let vault = SqliteVault::open(&dir.path().join("vault.db")).expect("the vault opens");
    story(Env {
        store: Arc::new(store),
        vault: Arc::new(vault),
        backend: "sqlite",
    })
    .await;
}

/// The server's URL, or `None` (after saying so) when the PostgreSQL variants skip.
pub fn server_url() -> Option<DatabaseUrl> {
    let Ok(text) = std::env::var(URL_VARIABLE) else {
        assert!(
            std::env::var(REQUIRED_VARIABLE).as_deref() != Ok("1"),
            "{URL_VARIABLE} is not set but {REQUIRED_VARIABLE}=1: the PostgreSQL stories must run"
        );
        println!("skipped: {URL_VARIABLE} is not set (no PostgreSQL server to run on)");
        return None;
    };
    Some(
        text.parse()
            .unwrap_or_else(|e| panic!("{URL_VARIABLE}: {e}")),
    )
}

pub async fn on_postgres<F, Fut>(story: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(server) = server_url() else { return };
    let database = TestDatabase::create(&server).await;
    // The call log and the vault share the test's database (each keeps its own migration
    // history); in production the vault has a database of its own.
    let store = PgStore::open(&database.url, POOL_SIZE)
        .await
        .expect("the call log opens");
    let vault = PgVault::open(&database.url, POOL_SIZE)
        .await
        .expect("the vault opens");
    let env = Env {
        store: Arc::new(store.clone()),
        vault: Arc::new(vault.clone()),
        backend: "postgres",
    };
    // Run on a task of its own, so that a failing story still drops its database.
    let outcome = tokio::spawn(story(env)).await;
    store.close().await;
    vault.close().await;
    database.destroy().await;
    if let Err(failure) = outcome {
        std::panic::resume_unwind(failure.into_panic());
    }
}

/// A database of one test, made from the schema's template. `destroy` drops it; a test that
/// fails before it does drops it as it unwinds (see `Drop`).
pub struct TestDatabase {
    pub url: DatabaseUrl,
    server: DatabaseUrl,
    destroyed: bool,
}

impl TestDatabase {
    /// A fresh, migrated database.
    pub async fn create(server: &DatabaseUrl) -> TestDatabase {
        let template = ensure_template(server).await;
        Self::create_from(server, Some(&template)).await
    }

    /// A fresh database: a copy of `template`, or empty.
    pub async fn create_from(server: &DatabaseUrl, template: Option<&str>) -> TestDatabase {
        let name = format!(
            "{TEST_PREFIX}{}_{}",
            unix_seconds(),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let mut admin = server.connect().await.expect("the test server answers");
        let sql = match template {
            Some(template) => format!("CREATE DATABASE {name} TEMPLATE {template}"),
            None => format!("CREATE DATABASE {name}"),
        };
        sqlx::query(AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
            .expect("a test database is created");
        admin.close().await.ok();
        TestDatabase {
            url: server.with_database(&name),
            server: server.clone(),
            destroyed: false,
        }
    }

    /// Drops the database, ending whatever connection is still open to it.
    pub async fn destroy(mut self) {
        self.destroyed = true;
        drop_database(&self.server, self.url.database()).await;
    }
}

async fn drop_database(server: &DatabaseUrl, name: &str) {
    let mut admin = server.connect().await.expect("the test server answers");
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .expect("the test database is dropped");
    admin.close().await.ok();
}

impl Drop for TestDatabase {
    /// A test that panicked never reached `destroy`: drop its database from a thread with a
    /// runtime of its own (the test's runtime may be unwinding).
    fn drop(&mut self) {
        if self.destroyed {
            return;
        }
        let (server, name) = (self.server.clone(), self.url.database().to_owned());
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|runtime| runtime.block_on(drop_database(&server, &name)))
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("a test database was left behind; the next run drops it after an hour");
        }
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The template's name: a hash of every migration, so a schema change makes a new one.
fn template_name() -> String {
    let mut hash = Sha256::new();
    for schema in [Schema::CallLog, Schema::Vault] {
        for text in schema.migration_texts() {
            hash.update((text.len() as u64).to_le_bytes());
            hash.update(text.as_bytes());
        }
    }
    let digest = hash.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("ringfence_tpl_{hex}")
}

/// Builds the schema's template once per server (and cleans up after killed runs).
async fn ensure_template(server: &DatabaseUrl) -> String {
    let template = template_name();
    let mut admin = server.connect().await.expect("the test server answers");
    // Session lock on the administration database: every test binary takes the same one.
    sqlx::query("SELECT pg_advisory_lock(hashtext('ringfence test template'))")
        .execute(&mut admin)
        .await
        .expect("the template lock");
    let ready: Option<bool> =
        sqlx::query_scalar("SELECT datistemplate FROM pg_database WHERE datname = $1")
            .bind(&template)
            .fetch_optional(&mut admin)
            .await
            .expect("pg_database answers");
    if ready != Some(true) {
        // Half built by a killed run: start again.
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {template} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await
        .expect("an unfinished template is dropped");
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {template}")))
            .execute(&mut admin)
            .await
            .expect("the template is created");
        let url = server.with_database(&template);
        migrate(&url, Schema::CallLog)
            .await
            .expect("the call log's migrations apply");
        migrate(&url, Schema::Vault)
            .await
            .expect("the vault's migrations apply");
        sqlx::query(AssertSqlSafe(format!(
            "ALTER DATABASE {template} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
        )))
        .execute(&mut admin)
        .await
        .expect("the template is marked");
    }
    drop_leftovers(&mut admin).await;
    sqlx::query("SELECT pg_advisory_unlock(hashtext('ringfence test template'))")
        .execute(&mut admin)
        .await
        .expect("the template lock is released");
    admin.close().await.ok();
    template
}

async fn drop_leftovers(admin: &mut sqlx::PgConnection) {
    let rows = sqlx::query("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
        .bind(TEST_PREFIX)
        .fetch_all(&mut *admin)
        .await
        .expect("pg_database answers");
    let now = unix_seconds();
    for row in rows {
        let name: String = row.get("datname");
        let created = name
            .strip_prefix(TEST_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        let Some(created) = created else { continue };
        if now.saturating_sub(created) > LEFTOVER_AGE.as_secs()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            sqlx::query(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut *admin)
            .await
            .expect("a leftover test database is dropped");
        }
    }
}
