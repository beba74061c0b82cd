//! Web interface users and sessions in SQLite.

use rusqlite::{Connection, OptionalExtension, Row, params};

use ringfence_core::UserId;
use ringfence_core::access::{Role, Scope};
use ringfence_core::timestamp::Timestamp;

use super::audit;
use crate::db_error;
use ringfence_store::StoreError;
use ringfence_store::records::AuditEvent;
use ringfence_store::users::{LoginFailure, UserChange, UserRecord, WebSessionRecord};

const USER_COLUMNS: &str = "id, email_index, password_hash, role, agency_id, account_id, personal_data, failed_logins, locked_until, created_at, disabled_at, last_sign_in_at, email_sealed";

fn bad(column: usize, name: &str, ty: rusqlite::types::Type) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnType(column, name.into(), ty)
}

fn parse<T: std::str::FromStr>(column: usize, text: String) -> rusqlite::Result<T> {
    text.parse()
        .map_err(|_| bad(column, "id", rusqlite::types::Type::Text))
}

fn user_from(row: &Row<'_>) -> rusqlite::Result<UserRecord> {
    let index: Vec<u8> = row.get(1)?;
    let role: String = row.get(3)?;
    let agency: Option<String> = row.get(4)?;
    let account: Option<String> = row.get(5)?;
    let scope = match (agency, account) {
        (Some(agency), Some(account)) => Scope::Account {
            agency: parse(4, agency)?,
            account: parse(5, account)?,
        },
        (Some(agency), None) => Scope::Agency(parse(4, agency)?),
        _ => Scope::Installation,
    };
    Ok(UserRecord {
        id: parse(0, row.get(0)?)?,
        email_index: index
            .try_into()
            .map_err(|_| bad(1, "email_index", rusqlite::types::Type::Blob))?,
        password_hash: row.get(2)?,
        role: Role::parse(&role).ok_or_else(|| bad(3, "role", rusqlite::types::Type::Text))?,
        scope,
        personal_data: row.get(6)?,
        failed_logins: row.get(7)?,
        locked_until: row.get::<_, Option<i64>>(8)?.map(Timestamp::from_millis),
        created_at: Timestamp::from_millis(row.get(9)?),
        disabled_at: row.get::<_, Option<i64>>(10)?.map(Timestamp::from_millis),
        last_sign_in_at: row.get::<_, Option<i64>>(11)?.map(Timestamp::from_millis),
        email_sealed: row.get(12)?,
    })
}

fn session_from(row: &Row<'_>) -> rusqlite::Result<WebSessionRecord> {
    let hash: Vec<u8> = row.get(0)?;
    Ok(WebSessionRecord {
        hash: hash
            .try_into()
            .map_err(|_| bad(0, "hash", rusqlite::types::Type::Blob))?,
        user_id: parse(1, row.get(1)?)?,
        csrf_token: row.get(2)?,
        created_at: Timestamp::from_millis(row.get(3)?),
        last_seen_at: Timestamp::from_millis(row.get(4)?),
    })
}

pub(crate) fn insert_user(
    conn: &Connection,
    user: &UserRecord,
    audit_event: &AuditEvent,
) -> Result<(), StoreError> {
    let exists: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM users WHERE email_index = ?1")
        .map_err(db_error)?
        .query_row([user.email_index.as_slice()], |r| r.get(0))
        .optional()
        .map_err(db_error)?;
    if exists.is_some() {
        return Err(StoreError::AlreadyExists("user"));
    }
    let (agency, account) = match user.scope {
        Scope::Installation => (None, None),
        Scope::Agency(a) => (Some(a.to_string()), None),
        Scope::Account { agency, account } => (Some(agency.to_string()), Some(account.to_string())),
    };
    conn.execute(
        &format!(
            "INSERT INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        ),
        params![
            user.id.to_string(),
            user.email_index.as_slice(),
            user.password_hash,
            user.role.as_str(),
            agency,
            account,
            user.personal_data,
            user.failed_logins,
            user.locked_until.map(Timestamp::millis),
            user.created_at.millis(),
            user.disabled_at.map(Timestamp::millis),
            user.last_sign_in_at.map(Timestamp::millis),
            user.email_sealed,
        ],
    ).map_err(db_error)?;
    audit::append(conn, audit_event)?;
    Ok(())
}

pub(crate) fn user_by_index(
    conn: &Connection,
    index: &[u8; 16],
) -> Result<Option<UserRecord>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE email_index = ?1"
    ))
    .map_err(db_error)?
    .query_row([index.as_slice()], user_from)
    .optional()
    .map_err(db_error)
}

pub(crate) fn user(conn: &Connection, id: UserId) -> Result<Option<UserRecord>, StoreError> {
    conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))
        .map_err(db_error)?
        .query_row([id.to_string()], user_from)
        .optional()
        .map_err(db_error)
}

pub(crate) fn list_users(conn: &Connection) -> Result<Vec<UserRecord>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY created_at, id"
        ))
        .map_err(db_error)?;
    let rows = stmt
        .query_map([], user_from)
        .map_err(db_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db_error)?;
    Ok(rows)
}

/// Counts a failed sign-in; at `max_failures` the user is locked until `now + lock_ms` and
/// the counter starts again.
pub(crate) fn record_login_failure(
    conn: &Connection,
    id: UserId,
    now: Timestamp,
    max_failures: u32,
    lock_ms: i64,
) -> Result<LoginFailure, StoreError> {
    let current: Option<u32> = conn
        .prepare_cached("SELECT failed_logins FROM users WHERE id = ?1")
        .map_err(db_error)?
        .query_row([id.to_string()], |r| r.get(0))
        .optional()
        .map_err(db_error)?;
    let Some(current) = current else {
        return Err(StoreError::NotFound("user"));
    };
    let outcome = LoginFailure::after(current, now, max_failures, lock_ms);
    conn.execute(
        "UPDATE users SET failed_logins = ?2, locked_until = COALESCE(?3, locked_until) WHERE id = ?1",
        params![
            id.to_string(),
            outcome.failed_logins,
            outcome.locked_until.map(Timestamp::millis)
        ],
    )
    .map_err(db_error)?;
    Ok(outcome)
}

/// Starts a session after a successful sign-in: the failure counter is reset and the
/// session the browser came with (if any) is ended, so a session id planted before sign-in
/// is never the signed-in one.
pub(crate) fn start_session(
    conn: &Connection,
    session: &WebSessionRecord,
    replaces: Option<[u8; 32]>,
) -> Result<(), StoreError> {
    if let Some(old) = replaces {
        conn.execute("DELETE FROM web_sessions WHERE hash = ?1", [old.as_slice()])
            .map_err(db_error)?;
    }
    conn.execute(
        "UPDATE users SET failed_logins = 0, locked_until = NULL, last_sign_in_at = ?2 WHERE id = ?1",
        params![session.user_id.to_string(), session.created_at.millis()],
    ).map_err(db_error)?;
    conn.execute(
        "INSERT INTO web_sessions (hash, user_id, csrf_token, created_at, last_seen_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            session.hash.as_slice(),
            session.user_id.to_string(),
            session.csrf_token,
            session.created_at.millis(),
            session.last_seen_at.millis(),
        ],
    ).map_err(db_error)?;
    Ok(())
}

pub(crate) fn session(
    conn: &Connection,
    hash: &[u8; 32],
) -> Result<Option<(WebSessionRecord, UserRecord)>, StoreError> {
    let found = conn
        .prepare_cached(
            "SELECT hash, user_id, csrf_token, created_at, last_seen_at FROM web_sessions WHERE hash = ?1",
        ).map_err(db_error)?
        .query_row([hash.as_slice()], session_from)
        .optional().map_err(db_error)?;
    let Some(found) = found else { return Ok(None) };
    Ok(user(conn, found.user_id)?.map(|u| (found, u)))
}

pub(crate) fn touch_session(
    conn: &Connection,
    hash: &[u8; 32],
    now: Timestamp,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE web_sessions SET last_seen_at = MAX(last_seen_at, ?2) WHERE hash = ?1",
        params![hash.as_slice(), now.millis()],
    )
    .map_err(db_error)?;
    Ok(())
}

/// Ends a session, and every session idle since before `idle_before` or started before
/// `started_before` (housekeeping on the way).
pub(crate) fn end_session(
    conn: &Connection,
    hash: &[u8; 32],
    idle_before: Timestamp,
    started_before: Timestamp,
) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM web_sessions WHERE hash = ?1",
        [hash.as_slice()],
    )
    .map_err(db_error)?;
    conn.execute(
        "DELETE FROM web_sessions WHERE last_seen_at < ?1 OR created_at < ?2",
        params![idle_before.millis(), started_before.millis()],
    )
    .map_err(db_error)?;
    Ok(())
}

/// Applies `change` and journals `audit`; a disable or a new password ends the user's
/// sessions in the same transaction, so none outlives the change.
pub(crate) fn update_user(
    conn: &Connection,
    id: UserId,
    change: &UserChange,
    audit_events: &[AuditEvent],
) -> Result<UserRecord, StoreError> {
    let Some(current) = user(conn, id)? else {
        return Err(StoreError::NotFound("user"));
    };
    let current = change.applied_to(current);
    conn.execute(
        "UPDATE users SET disabled_at = ?2, role = ?3, personal_data = ?4, password_hash = ?5 WHERE id = ?1",
        params![
            id.to_string(),
            current.disabled_at.map(Timestamp::millis),
            current.role.as_str(),
            current.personal_data,
            current.password_hash,
        ],
    ).map_err(db_error)?;
    if change.ends_sessions() {
        end_sessions_of(conn, id)?;
    }
    for event in audit_events {
        audit::append(conn, event)?;
    }
    Ok(current)
}

/// Removes a user with every session of theirs, and journals it.
pub(crate) fn remove_user(
    conn: &Connection,
    id: UserId,
    audit_event: &AuditEvent,
) -> Result<(), StoreError> {
    end_sessions_of(conn, id)?;
    let n = conn
        .execute("DELETE FROM users WHERE id = ?1", [id.to_string()])
        .map_err(db_error)?;
    if n == 0 {
        return Err(StoreError::NotFound("user"));
    }
    audit::append(conn, audit_event)?;
    Ok(())
}

fn end_sessions_of(conn: &Connection, id: UserId) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM web_sessions WHERE user_id = ?1")
        .map_err(db_error)?
        .execute([id.to_string()])
        .map_err(db_error)?;
    Ok(())
}
