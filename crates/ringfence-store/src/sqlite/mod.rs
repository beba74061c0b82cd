//! SQLite: one writer thread that commits concurrent requests together (group commit), and
//! a few read-only connections. Opened with WAL, `synchronous=FULL` (a commit is durable
//! before it is acknowledged), `secure_delete=ON` (deleted cells are overwritten), foreign
//! keys and a busy timeout.

mod audit;
mod db;
mod redaction;
mod schema;
mod store;
mod vault;

pub use db::SqliteDb;
pub use store::SqliteStore;
pub use vault::SqliteVault;
