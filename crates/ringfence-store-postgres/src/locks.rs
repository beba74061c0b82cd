//! Subject locks: what replaces SQLite's single writer for the rules that read a subject's
//! forget-list entry or consent and then write calls of that subject.
//!
//! Invariant: an ingest and a caller redaction or consent withdrawal of the same (account,
//! blind index) never pass each other. Every ingest takes `pg_advisory_xact_lock_shared` on
//! each subject it stores (its callers, its visitors) before it reads the forget list or the
//! ledger; a redaction of a caller and a withdrawal take `pg_advisory_xact_lock` on their
//! subject before they write the forget-list entry or the event and read the subject's calls.
//! Both hold the lock to the end of their transaction, and every statement reads committed
//! rows afresh (READ COMMITTED), so whichever commits second sees what the first wrote: a
//! forget never misses a call stored during it, and a withdrawal's removal covers every call
//! an ingest stored before it, while an ingest after it reads the withdrawal.
//! Ingests never wait on each other (shared locks). Keys are taken in ascending order in every
//! transaction, before any row lock, so two of them cannot wait on each other in a cycle.

use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use ringfence_core::AccountId;
use ringfence_crypto::BlindIndex;
use ringfence_store::StoreError;

use crate::backend;

/// The lock key of one subject: a digest of the account and the blind index (never the
/// subject itself). Two subjects sharing a key only wait for each other.
fn key(account: AccountId, subject: &BlindIndex) -> i64 {
    let digest = Sha256::new()
        .chain_update(b"ringfence subject lock")
        .chain_update(account.as_uuid().as_bytes())
        .chain_update(subject.as_slice())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// The keys of `subjects`, sorted and without repeats: the order every transaction takes them.
fn keys(subjects: impl IntoIterator<Item = (AccountId, BlindIndex)>) -> Vec<i64> {
    let mut keys: Vec<i64> = subjects.into_iter().map(|(a, b)| key(a, &b)).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Shares the subjects' locks until the transaction ends (an ingest).
pub(crate) async fn share(
    conn: &mut PgConnection,
    subjects: impl IntoIterator<Item = (AccountId, BlindIndex)>,
) -> Result<(), StoreError> {
    take(conn, "pg_advisory_xact_lock_shared", keys(subjects)).await
}

/// Holds the subjects' locks alone until the transaction ends (a caller's redaction, a
/// consent withdrawal): waits for the ingests of these subjects under way to commit.
pub(crate) async fn exclusive(
    conn: &mut PgConnection,
    subjects: impl IntoIterator<Item = (AccountId, BlindIndex)>,
) -> Result<(), StoreError> {
    take(conn, "pg_advisory_xact_lock", keys(subjects)).await
}

/// Takes the sorted `keys` with `function`, in one statement whatever their number: a scan of
/// the array yields its elements in order, and each row's lock is taken before the next row
/// is read, so the keys are still taken in ascending order.
async fn take(conn: &mut PgConnection, function: &str, keys: Vec<i64>) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Ok(());
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {function}(k) FROM unnest($1::bigint[]) WITH ORDINALITY AS t (k, n) ORDER BY n"
    )))
    .bind(&keys)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}
