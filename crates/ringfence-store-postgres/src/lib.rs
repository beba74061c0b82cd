//! Ringfence's call log ([`PgStore`]) and vault ([`PgVault`]) on PostgreSQL.
//!
//! Like the SQLite backend, this crate only stores and finds: the store traits hand it sealed
//! blobs, blind indexes and call facts, and every rule about what may be kept or removed is
//! decided above it, in `ringfence-store` and `ringfence-core`. It must never hold a copy of
//! such a rule, never log or return row contents, and never let a database URL's
//! credentials reach a log line or an error message ([`DatabaseUrl`]).

mod audit;
mod connect;
mod consent;
mod group;
mod ingest;
mod locks;
mod redaction;
mod store;
mod users;
mod vault;

pub use connect::{DatabaseUrl, Schema, UrlError, is_initialised, migrate};
pub use store::PgStore;
pub use vault::PgVault;

use ringfence_store::StoreError;

/// A database failure as a store error: the server's message (never a row's values, which
/// PostgreSQL keeps in the error's detail, not read here) and never the URL.
pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(describe_error(&e))
}

/// A database error as text safe to log: no URL, no value.
pub fn describe_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            // Data exceptions quote the value they could not take ("invalid input syntax for
            // type …: \"…\""): name the class and the constraint, never the value.
            Some(code) if code.starts_with("22") => match db.constraint() {
                Some(constraint) => format!("postgres: data exception ({code}) on {constraint}"),
                None => format!("postgres: data exception ({code})"),
            },
            Some(code) => format!("postgres: {} ({code})", db.message()),
            None => format!("postgres: {}", db.message()),
        },
        // Configuration errors may quote the URL they failed to read: say only what kind.
        sqlx::Error::Configuration(_) => "postgres: invalid connection settings".to_owned(),
        other => format!("postgres: {other}"),
    }
}

/// A database error as a store error, a unique-key violation as `AlreadyExists(what)`.
pub(crate) fn exists_or_backend(what: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| {
        if is_unique_violation(&e) {
            StoreError::AlreadyExists(what)
        } else {
            backend(e)
        }
    }
}

/// Whether a database error is a unique-key violation (SQLSTATE 23505).
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}
