//! Database URLs that never print their credentials, pools, and the embedded migrations.

use std::str::FromStr;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection};

use ringfence_store::StoreError;

use crate::backend;

/// A `postgres://` URL. Its `Debug` and `Display` show scheme, host, port and database only:
/// the user name, password and query parameters (which may carry a password or a TLS key
/// path) never reach a log line or an error message.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    url: url::Url,
}

/// Why a text is not a PostgreSQL URL. Says what is wrong without repeating the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("not a URL (expected postgres://user@host:5432/database)")]
    NotAUrl,
    #[error("the URL's scheme must be postgres:// or postgresql://")]
    Scheme,
    #[error("the URL names no database (expected postgres://user@host:5432/database)")]
    NoDatabase,
    #[error("the URL's connection settings are not valid for PostgreSQL")]
    Settings,
}

impl FromStr for DatabaseUrl {
    type Err = UrlError;

    fn from_str(text: &str) -> Result<Self, UrlError> {
        let url = url::Url::parse(text).map_err(|_| UrlError::NotAUrl)?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(UrlError::Scheme);
        }
        let parsed = Self { url };
        if parsed.database().is_empty() {
            return Err(UrlError::NoDatabase);
        }
        parsed.options().map_err(|_| UrlError::Settings)?;
        Ok(parsed)
    }
}

impl DatabaseUrl {
    /// The database the URL names.
    pub fn database(&self) -> &str {
        self.url.path().trim_start_matches('/')
    }

    /// The same server and credentials, another database.
    pub fn with_database(&self, database: &str) -> DatabaseUrl {
        let mut url = self.url.clone();
        url.set_path(database);
        DatabaseUrl { url }
    }

    pub(crate) fn options(&self) -> Result<PgConnectOptions, sqlx::Error> {
        // sqlx logs statements' SQL text (placeholders, never bound values), not the URL.
        // NOTICEs (e.g. "relation … already exists, skipping" from the migrations' history
        // table on every start) are not for the operator's terminal.
        Ok(PgConnectOptions::from_str(self.url.as_str())?
            .application_name("ringfence")
            .options([("client_min_messages", "warning")]))
    }

    /// Connects a pool of at most `max_connections`.
    pub async fn pool(&self, max_connections: u32) -> Result<PgPool, StoreError> {
        PgPoolOptions::new()
            .max_connections(max_connections)
            // No round trip before each use: a broken connection fails its statement and
            // leaves the pool, as it would after a successful check anyway.
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(self.options().map_err(backend)?)
            .await
            .map_err(|e| connect_error(self, &e))
    }

    /// One connection of its own (migrations, administration).
    pub async fn connect(&self) -> Result<sqlx::PgConnection, StoreError> {
        self.options()
            .map_err(backend)?
            .connect()
            .await
            .map_err(|e| connect_error(self, &e))
    }
}

fn connect_error(url: &DatabaseUrl, e: &sqlx::Error) -> StoreError {
    StoreError::Backend(format!(
        "cannot connect to {url}: {}",
        crate::describe_error(e)
    ))
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = self.url.host_str().unwrap_or("localhost");
        match self.url.port() {
            Some(port) => write!(
                f,
                "{}://{host}:{port}/{}",
                self.url.scheme(),
                self.database()
            ),
            None => write!(f, "{}://{host}/{}", self.url.scheme(), self.database()),
        }
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// The call log's migrations, in order. Never edit one that has shipped: add another.
const CALL_LOG: &[(i64, &str, &str)] = &[
    (
        1,
        "call log",
        include_str!("../migrations/call_log/0001_call_log.sql"),
    ),
    (
        2,
        "users' sealed e-mail address",
        include_str!("../migrations/call_log/0002_user_email_sealed.sql"),
    ),
    (
        3,
        "calls_live in the sweep's order",
        include_str!("../migrations/call_log/0003_calls_live_in_sweep_order.sql"),
    ),
];

/// The vault's migrations.
const VAULT: &[(i64, &str, &str)] = &[
    (
        1,
        "vault",
        include_str!("../migrations/vault/0001_vault.sql"),
    ),
    (
        2,
        "master keys and rotations",
        include_str!("../migrations/vault/0002_master_keys.sql"),
    ),
    (
        3,
        "keys of users' e-mail addresses",
        include_str!("../migrations/vault/0003_user_email_keys.sql"),
    ),
];

/// Which schema a database holds; each keeps its own migration history, so the call log
/// and the vault may even share one database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    CallLog,
    Vault,
}

impl Schema {
    fn migrations(self) -> &'static [(i64, &'static str, &'static str)] {
        match self {
            Schema::CallLog => CALL_LOG,
            Schema::Vault => VAULT,
        }
    }

    /// The advisory lock key migrations of this schema take (per database).
    fn lock_key(self) -> i64 {
        match self {
            // "ringfence call log" / "ringfence vault", as fixed numbers.
            Schema::CallLog => 0x7269_6e67_6663_6c01,
            Schema::Vault => 0x7269_6e67_6663_6c02,
        }
    }

    fn history_table(self) -> &'static str {
        match self {
            Schema::CallLog => "ringfence_call_log_migrations",
            Schema::Vault => "ringfence_vault_migrations",
        }
    }

    /// The text of every migration, in order (what a schema version is made of).
    pub fn migration_texts(self) -> impl Iterator<Item = &'static str> {
        self.migrations().iter().map(|(_, _, sql)| *sql)
    }
}

/// A migration's checksum, recorded with it: a shipped migration edited afterwards is
/// refused rather than silently skipped.
fn checksum(sql: &str) -> Vec<u8> {
    Sha256::digest(sql.as_bytes()).to_vec()
}

/// Applies the schema's missing migrations to the database the URL names.
///
/// Invariant: processes opening one database at once apply each migration exactly once.
/// Each takes the schema's session advisory lock on a connection of its own before it reads
/// the migration history, and holds it until every missing migration is committed (each in
/// one transaction with its history row); the others wait on the lock, then find nothing
/// left to do. The connection is closed afterwards, so an error cannot leave the lock held.
pub async fn migrate(url: &DatabaseUrl, schema: Schema) -> Result<(), StoreError> {
    let mut conn = url.connect().await?;
    let applied = apply_missing(&mut conn, schema)
        .await
        .map_err(|e| StoreError::Backend(format!("migrating {url}: {e}")));
    let closed = conn.close().await.map_err(backend);
    applied?;
    closed
}

/// Whether the schema has been created in the database (by `serve` or any command that opens
/// it): commands that only read or change stored data refuse an empty database, as they
/// refuse a missing data folder.
pub async fn is_initialised(url: &DatabaseUrl, schema: Schema) -> Result<bool, StoreError> {
    let mut conn = url.connect().await?;
    let found: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(schema.history_table())
        .fetch_one(&mut conn)
        .await
        .map_err(backend)?;
    let closed = conn.close().await.map_err(backend);
    closed?;
    Ok(found.is_some())
}

#[derive(Debug, thiserror::Error)]
enum MigrationError {
    #[error("{0}")]
    Database(String),
    #[error("migration {0} was changed after it was applied (add a new migration instead)")]
    Changed(i64),
    #[error(
        "the database holds migration {0}, which this version does not know (a newer Ringfence migrated it)"
    )]
    Unknown(i64),
}

impl From<sqlx::Error> for MigrationError {
    fn from(e: sqlx::Error) -> Self {
        MigrationError::Database(crate::describe_error(&e))
    }
}

async fn apply_missing(conn: &mut PgConnection, schema: Schema) -> Result<(), MigrationError> {
    let table = schema.history_table();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(schema.lock_key())
        .execute(&mut *conn)
        .await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {table} (
            version bigint PRIMARY KEY,
            description text NOT NULL,
            checksum bytea NOT NULL,
            applied_at bigint NOT NULL
        )"
    )))
    .execute(&mut *conn)
    .await?;
    let applied: Vec<(i64, Vec<u8>)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT version, checksum FROM {table} ORDER BY version"
    )))
    .fetch_all(&mut *conn)
    .await?;
    for (version, sum) in &applied {
        match schema.migrations().iter().find(|(v, _, _)| v == version) {
            Some((_, _, sql)) if checksum(sql) == *sum => {}
            Some(_) => return Err(MigrationError::Changed(*version)),
            None => return Err(MigrationError::Unknown(*version)),
        }
    }
    for (version, description, sql) in schema.migrations() {
        if applied.iter().any(|(v, _)| v == version) {
            continue;
        }
        let mut tx = conn.begin().await?;
        sqlx::raw_sql(*sql).execute(&mut *tx).await?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {table} (version, description, checksum, applied_at) VALUES ($1, $2, $3, $4)"
        )))
        .bind(version)
        .bind(description)
        .bind(checksum(sql))
        .bind(ringfence_core::timestamp::Timestamp::now().millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(schema = ?schema, version, description, "migration applied");
    }
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(schema.lock_key())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_prints_without_its_user_password_or_parameters() {
        let url: DatabaseUrl =
            "postgres://ringfence:s3cret-pass@db.example.com:6432/calls?sslmode=require&password=other"
                .parse()
                .expect("a valid url");
        for shown in [url.to_string(), format!("{url:?}")] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(!shown.contains("other"), "{shown}");
            assert!(!shown.contains("ringfence:"), "{shown}");
            assert!(shown.contains("db.example.com:6432/calls"), "{shown}");
        }
    }

    #[test]
    fn a_malformed_url_is_refused_without_repeating_it() {
        let cases = [
            ("s3cret-not-a-url", UrlError::NotAUrl),
            ("mysql://u:s3cret@host/db", UrlError::Scheme),
            ("postgres://u:s3cret@host", UrlError::NoDatabase),
            (
                "postgres://u:s3cret@host/db?sslmode=s3cret",
                UrlError::Settings,
            ),
        ];
        for (text, expected) in cases {
            let error = text.parse::<DatabaseUrl>().expect_err(text);
            assert_eq!(error, expected, "{text}");
            assert!(!error.to_string().contains("s3cret"));
        }
    }

    #[test]
    fn another_database_on_the_same_server_keeps_the_credentials_and_drops_the_name() {
        let url: DatabaseUrl = "postgres://u:pw@127.0.0.1:5432/test"
            .parse()
            .expect("valid");
        let other = url.with_database("ringfence_t_1");
        assert_eq!(other.database(), "ringfence_t_1");
        assert_eq!(other.url.password(), Some("pw"));
    }
}
