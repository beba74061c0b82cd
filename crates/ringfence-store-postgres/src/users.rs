//! Web interface users and their sessions on PostgreSQL.

use sqlx::PgConnection;
use sqlx::postgres::PgRow;

use ringfence_core::UserId;
use ringfence_core::timestamp::Timestamp;
use ringfence_store::{LoginFailure, StoreError, UserChange, UserRecord, WebSessionRecord};

use crate::store::{get, hash32, id, index16, opt_ts, role, scope, scope_columns, ts};
use crate::{backend, is_unique_violation};

macro_rules! user_columns {
    () => {
        "id, email_index, password_hash, role, agency_id, account_id, personal_data, failed_logins, locked_until, created_at, disabled_at, last_sign_in_at, email_sealed"
    };
}

fn user_from(row: &PgRow) -> Result<UserRecord, StoreError> {
    let failed: i64 = get(row, "failed_logins")?;
    Ok(UserRecord {
        id: id(row, "id")?,
        email_index: index16(get(row, "email_index")?, "users.email_index")?,
        password_hash: get(row, "password_hash")?,
        role: role(row)?,
        scope: scope(row)?,
        personal_data: get(row, "personal_data")?,
        failed_logins: u32::try_from(failed)
            .map_err(|_| StoreError::Backend("failed_logins: out of range".into()))?,
        locked_until: opt_ts(row, "locked_until")?,
        created_at: ts(row, "created_at")?,
        disabled_at: opt_ts(row, "disabled_at")?,
        last_sign_in_at: opt_ts(row, "last_sign_in_at")?,
        email_sealed: get(row, "email_sealed")?,
    })
}

pub(crate) async fn insert(conn: &mut PgConnection, user: &UserRecord) -> Result<(), StoreError> {
    let (agency, account) = scope_columns(user.scope);
    sqlx::query(concat!(
        "INSERT INTO users (",
        user_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    ))
    .bind(user.id.as_uuid())
    .bind(user.email_index.as_slice())
    .bind(&user.password_hash)
    .bind(user.role.as_str())
    .bind(agency)
    .bind(account)
    .bind(user.personal_data)
    .bind(i64::from(user.failed_logins))
    .bind(user.locked_until.map(Timestamp::millis))
    .bind(user.created_at.millis())
    .bind(user.disabled_at.map(Timestamp::millis))
    .bind(user.last_sign_in_at.map(Timestamp::millis))
    .bind(&user.email_sealed)
    .execute(conn)
    .await
    .map_err(|e| {
        // The e-mail index is unique: two sign-ups of one address cannot both pass.
        if is_unique_violation(&e) {
            StoreError::AlreadyExists("user")
        } else {
            backend(e)
        }
    })?;
    Ok(())
}

pub(crate) async fn by_index(
    conn: &mut PgConnection,
    index: &[u8; 16],
) -> Result<Option<UserRecord>, StoreError> {
    sqlx::query(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE email_index = $1"
    ))
    .bind(index.as_slice())
    .fetch_optional(conn)
    .await
    .map_err(backend)?
    .as_ref()
    .map(user_from)
    .transpose()
}

/// A user; `lock` holds the row until the transaction ends.
pub(crate) async fn by_id(
    conn: &mut PgConnection,
    user: UserId,
    lock: bool,
) -> Result<Option<UserRecord>, StoreError> {
    let query = if lock {
        sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1 FOR UPDATE"
        ))
    } else {
        sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1"
        ))
    };
    query
        .bind(user.as_uuid())
        .fetch_optional(conn)
        .await
        .map_err(backend)?
        .as_ref()
        .map(user_from)
        .transpose()
}

pub(crate) async fn list(conn: &mut PgConnection) -> Result<Vec<UserRecord>, StoreError> {
    sqlx::query(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users ORDER BY created_at, id"
    ))
    .fetch_all(conn)
    .await
    .map_err(backend)?
    .iter()
    .map(user_from)
    .collect()
}

/// Starts a session after a successful sign-in: the failure counter is reset and the
/// session the browser came with (if any) ends, so a session id planted before sign-in is
/// never the signed-in one.
pub(crate) async fn start_session(
    conn: &mut PgConnection,
    session: &WebSessionRecord,
    replaces: Option<[u8; 32]>,
) -> Result<(), StoreError> {
    if let Some(old) = replaces {
        sqlx::query("DELETE FROM web_sessions WHERE hash = $1")
            .bind(old.as_slice())
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
    }
    let user = sqlx::query(
        "UPDATE users SET failed_logins = 0, locked_until = NULL, last_sign_in_at = $2 WHERE id = $1",
    )
    .bind(session.user_id.as_uuid())
    .bind(session.created_at.millis())
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    if user.rows_affected() == 0 {
        return Err(StoreError::NotFound("user"));
    }
    sqlx::query(
        "INSERT INTO web_sessions (hash, user_id, csrf_token, created_at, last_seen_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(session.hash.as_slice())
    .bind(session.user_id.as_uuid())
    .bind(&session.csrf_token)
    .bind(session.created_at.millis())
    .bind(session.last_seen_at.millis())
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

pub(crate) async fn session(
    conn: &mut PgConnection,
    hash: &[u8; 32],
) -> Result<Option<(WebSessionRecord, UserRecord)>, StoreError> {
    // One statement: a session and the user it belongs to, as of one snapshot.
    let row = sqlx::query(concat!(
        "SELECT s.hash AS session_hash, s.user_id AS session_user, s.csrf_token, s.created_at AS session_created_at, s.last_seen_at, u.",
        "id, u.email_index, u.password_hash, u.role, u.agency_id, u.account_id, u.personal_data, u.failed_logins, u.locked_until, u.created_at, u.disabled_at, u.last_sign_in_at, u.email_sealed",
        " FROM web_sessions s JOIN users u ON u.id = s.user_id WHERE s.hash = $1"
    ))
    .bind(hash.as_slice())
    .fetch_optional(conn)
    .await
    .map_err(backend)?;
    let Some(row) = row else { return Ok(None) };
    let session = WebSessionRecord {
        hash: hash32(get(&row, "session_hash")?, "web_sessions.hash")?,
        user_id: id(&row, "session_user")?,
        csrf_token: get(&row, "csrf_token")?,
        created_at: ts(&row, "session_created_at")?,
        last_seen_at: ts(&row, "last_seen_at")?,
    };
    Ok(Some((session, user_from(&row)?)))
}

/// Applies `change`; a disable or a new password ends the user's sessions in the same
/// transaction, so none outlives the change.
pub(crate) async fn update(
    conn: &mut PgConnection,
    user: UserId,
    change: &UserChange,
) -> Result<UserRecord, StoreError> {
    let Some(current) = by_id(&mut *conn, user, true).await? else {
        return Err(StoreError::NotFound("user"));
    };
    let current = change.applied_to(current);
    sqlx::query(
        "UPDATE users SET disabled_at = $2, role = $3, personal_data = $4, password_hash = $5 WHERE id = $1",
    )
    .bind(user.as_uuid())
    .bind(current.disabled_at.map(Timestamp::millis))
    .bind(current.role.as_str())
    .bind(current.personal_data)
    .bind(&current.password_hash)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    if change.ends_sessions() {
        end_sessions_of(conn, user).await?;
    }
    Ok(current)
}

/// Removes a user with every session of theirs.
pub(crate) async fn remove(conn: &mut PgConnection, user: UserId) -> Result<(), StoreError> {
    end_sessions_of(&mut *conn, user).await?;
    let removed = sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(user.as_uuid())
        .execute(conn)
        .await
        .map_err(backend)?;
    if removed.rows_affected() == 0 {
        return Err(StoreError::NotFound("user"));
    }
    Ok(())
}

async fn end_sessions_of(conn: &mut PgConnection, user: UserId) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM web_sessions WHERE user_id = $1")
        .bind(user.as_uuid())
        .execute(conn)
        .await
        .map_err(backend)?;
    Ok(())
}

/// Counts a failed sign-in under the user's row lock, so that concurrent failures each count
/// (the lockout rule is `LoginFailure::after`).
pub(crate) async fn record_failure(
    conn: &mut PgConnection,
    user: UserId,
    now: Timestamp,
    max_failures: u32,
    lock_ms: i64,
) -> Result<LoginFailure, StoreError> {
    let current: i64 =
        sqlx::query_scalar("SELECT failed_logins FROM users WHERE id = $1 FOR UPDATE")
            .bind(user.as_uuid())
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?
            .ok_or(StoreError::NotFound("user"))?;
    let current = u32::try_from(current)
        .map_err(|_| StoreError::Backend("failed_logins: out of range".into()))?;
    let outcome = LoginFailure::after(current, now, max_failures, lock_ms);
    sqlx::query(
        "UPDATE users SET failed_logins = $2, locked_until = COALESCE($3, locked_until) WHERE id = $1",
    )
    .bind(user.as_uuid())
    .bind(i64::from(outcome.failed_logins))
    .bind(outcome.locked_until.map(Timestamp::millis))
    .execute(conn)
    .await
    .map_err(backend)?;
    Ok(outcome)
}
