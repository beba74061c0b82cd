//! Web interface users and their sign-in sessions.
//!
//! A user is found by a keyed hash of the normalised e-mail address (the installation's
//! user-index key lives in the vault like every other key), so the call-log database holds no
//! e-mail address in the clear; the password is kept only as an argon2id hash, and a session
//! only as the SHA-256 of its cookie value.

use ringfence_core::UserId;
use ringfence_core::access::{Principal, Role, Scope};
use ringfence_core::timestamp::Timestamp;
use ringfence_crypto::password::{PasswordError, hash_password};
use ringfence_crypto::{BlindIndex, BlindIndexKey, DataKey, KeyPurpose, open, seal};

use crate::StoreError;
use crate::calllog::{CallLog, LogError};
use crate::records::AuditEvent;

/// The vault id of the key behind [`CallLog::user_index`].
const USER_INDEX_KEY: &str = "installation:user-index";
/// The vault id of the key sealing users' e-mail addresses.
const USER_EMAIL_KEY: &str = "installation:user-email";

/// A user of the web interface. Same roles and scopes as API tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: UserId,
    /// Keyed hash of the lower-cased e-mail address.
    pub email_index: BlindIndex,
    /// PHC string of the argon2id hash.
    pub password_hash: String,
    pub role: Role,
    pub scope: Scope,
    pub personal_data: bool,
    /// Failed sign-ins since the last success or lockout.
    pub failed_logins: u32,
    pub locked_until: Option<Timestamp>,
    pub created_at: Timestamp,
    /// Set while the user is disabled: no sign-in, no session.
    pub disabled_at: Option<Timestamp>,
    pub last_sign_in_at: Option<Timestamp>,
    /// The e-mail address sealed with the installation's user-e-mail key
    /// ([`CallLog::user_email`] opens it); `None` for users made before it was kept.
    pub email_sealed: Option<Vec<u8>>,
}

/// A change to a user; `None` leaves a field as it is.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct UserChange {
    /// `Some(Some(at))` disables (ending every session), `Some(None)` enables.
    pub disabled: Option<Option<Timestamp>>,
    pub role: Option<Role>,
    pub personal_data: Option<bool>,
    /// A new argon2id PHC string; ends every session of the user.
    pub password_hash: Option<String>,
}

impl UserChange {
    /// The user as this change leaves it (each backend stores exactly this).
    pub fn applied_to(&self, mut user: UserRecord) -> UserRecord {
        if let Some(disabled) = self.disabled {
            user.disabled_at = disabled;
        }
        if let Some(role) = self.role {
            user.role = role;
        }
        if let Some(personal_data) = self.personal_data {
            user.personal_data = personal_data;
        }
        if let Some(hash) = &self.password_hash {
            user.password_hash = hash.clone();
        }
        user
    }

    /// Whether the change must end every session of the user, in its own transaction: a
    /// disable or a new password lets no session outlive it.
    pub fn ends_sessions(&self) -> bool {
        matches!(self.disabled, Some(Some(_))) || self.password_hash.is_some()
    }
}

impl std::fmt::Debug for UserChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserChange")
            .field("disabled", &self.disabled)
            .field("role", &self.role)
            .field("personal_data", &self.personal_data)
            .field("password_hash", &self.password_hash.as_ref().map(|_| "…"))
            .finish()
    }
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("scope", &self.scope)
            .field("personal_data", &self.personal_data)
            .field("failed_logins", &self.failed_logins)
            .field("locked_until", &self.locked_until)
            .field("disabled_at", &self.disabled_at)
            .finish_non_exhaustive()
    }
}

impl UserRecord {
    /// The principal a signed-in user acts as: the same one every access rule checks.
    pub fn principal(&self) -> Principal {
        Principal {
            token_id: None,
            user_id: Some(self.id),
            role: self.role,
            scope: self.scope,
            personal_data: self.personal_data,
        }
    }
}

/// A signed-in browser session.
#[derive(Clone, PartialEq, Eq)]
pub struct WebSessionRecord {
    /// SHA-256 of the cookie value: the value itself is never stored.
    pub hash: [u8; 32],
    pub user_id: UserId,
    /// The synchronizer token every form and htmx request of this session must carry.
    pub csrf_token: String,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
}

impl std::fmt::Debug for WebSessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSessionRecord")
            .field("user_id", &self.user_id)
            .field("created_at", &self.created_at)
            .field("last_seen_at", &self.last_seen_at)
            .finish_non_exhaustive()
    }
}

/// What a failed sign-in did to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginFailure {
    pub failed_logins: u32,
    pub locked_until: Option<Timestamp>,
}

impl LoginFailure {
    /// The lockout rule: one more failure after `before`; the `max_failures`th locks the user
    /// until `now + lock_ms` and starts the count again (`locked_until` is `None` when this
    /// failure locks nothing: a lock already set stays).
    pub fn after(before: u32, now: Timestamp, max_failures: u32, lock_ms: i64) -> LoginFailure {
        let failed = before.saturating_add(1);
        if failed >= max_failures {
            LoginFailure {
                failed_logins: 0,
                locked_until: Some(Timestamp::from_millis(now.millis().saturating_add(lock_ms))),
            }
        } else {
            LoginFailure {
                failed_logins: failed,
                locked_until: None,
            }
        }
    }
}

/// The one spelling of an e-mail address that is indexed.
pub fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Why a user could not be created. Messages never hold the address or the password.
#[derive(Debug, thiserror::Error)]
pub enum NewUserError {
    #[error("the e-mail address is not valid (one @, no spaces, at most 254 characters)")]
    InvalidEmail,
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("role {0} needs a different scope")]
    Scope(Role),
    #[error("a user with this e-mail address already exists")]
    Exists,
    #[error(transparent)]
    Log(#[from] LogError),
}

/// A plausible e-mail address: one `@` with text on both sides, no spaces or controls.
pub fn valid_email(email: &str) -> bool {
    let email = email.trim();
    let mut parts = email.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    email.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Hashes a new password (argon2id) off the async runtime.
pub async fn hash_new_password(
    password: zeroize::Zeroizing<String>,
) -> Result<String, NewUserError> {
    Ok(
        tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| LogError::Task(e.to_string()))??,
    )
}

impl CallLog {
    /// Creates a web interface user (hashing the password off the async runtime) and
    /// journals it with the user's id and role, never the address.
    pub async fn create_user(
        &self,
        email: &str,
        password: zeroize::Zeroizing<String>,
        role: Role,
        scope: Scope,
        personal_data: bool,
        actor: String,
    ) -> Result<UserRecord, NewUserError> {
        if !valid_email(email) {
            return Err(NewUserError::InvalidEmail);
        }
        Principal::validate_scope(role, &scope).map_err(|_| NewUserError::Scope(role))?;
        let hash = hash_new_password(password).await?;
        let user = UserRecord {
            id: UserId::generate(),
            email_index: self.user_index(email).await?,
            password_hash: hash,
            role,
            scope,
            personal_data: personal_data || role != Role::Analyst,
            failed_logins: 0,
            locked_until: None,
            created_at: Timestamp::now(),
            disabled_at: None,
            last_sign_in_at: None,
            email_sealed: None,
        };
        let user = UserRecord {
            email_sealed: Some(self.seal_user_email(user.id, email).await?),
            ..user
        };
        let (agency_id, account_id) = match scope {
            Scope::Installation => (None, None),
            Scope::Agency(a) => (Some(a), None),
            Scope::Account { agency, account } => (Some(agency), Some(account)),
        };
        let audit = AuditEvent {
            actor,
            action: "user.created".into(),
            agency_id,
            account_id,
            subject: Some(format!("user:{}", user.id)),
            count: None,
            reason: None,
            details:
                serde_json::json!({"role": role.as_str(), "personal_data": user.personal_data})
                    .to_string(),
        };
        match self.store().create_user(user.clone(), audit).await {
            Ok(()) => Ok(user),
            Err(StoreError::AlreadyExists(_)) => Err(NewUserError::Exists),
            Err(e) => Err(NewUserError::Log(e.into())),
        }
    }

    /// The keyed index of an e-mail address (trimmed, lower-cased), created on first use.
    pub async fn user_index(&self, email: &str) -> Result<BlindIndex, LogError> {
        let key = self
            .installation_key(USER_INDEX_KEY, KeyPurpose::BlindIndex)
            .await?;
        Ok(BlindIndexKey::from_data_key(&key).index(&normalise_email(email)))
    }

    /// An installation-wide key of the vault, created on first use (two first users created
    /// at once converge on the key that reached the vault first).
    async fn installation_key(&self, id: &str, purpose: KeyPurpose) -> Result<DataKey, LogError> {
        self.key_or_issue(id.to_owned(), "installation".to_owned(), purpose)
            .await
    }

    /// Seals a user's e-mail address (as typed, trimmed) for [`UserRecord::email_sealed`],
    /// bound to the user's id.
    async fn seal_user_email(&self, user: UserId, email: &str) -> Result<Vec<u8>, LogError> {
        let key = self
            .installation_key(USER_EMAIL_KEY, KeyPurpose::UserEmail)
            .await?;
        Ok(seal(
            &key,
            format!("users|{user}|email").as_bytes(),
            email.trim().as_bytes(),
        ))
    }

    /// The user's e-mail address, opened for a page that may show it (never logged);
    /// `None` for a user made before addresses were kept.
    pub async fn user_email(
        &self,
        user: &UserRecord,
    ) -> Result<Option<zeroize::Zeroizing<String>>, LogError> {
        let Some(sealed) = &user.email_sealed else {
            return Ok(None);
        };
        let key = self
            .installation_key(USER_EMAIL_KEY, KeyPurpose::UserEmail)
            .await?;
        let plain =
            open(&key, format!("users|{}|email", user.id).as_bytes(), sealed).map_err(|_| {
                LogError::Corrupt(format!("user:{}", user.id), "sealed e-mail does not open")
            })?;
        Ok(Some(zeroize::Zeroizing::new(
            String::from_utf8_lossy(&plain).into_owned(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e_mail_addresses_are_indexed_in_one_spelling() {
        assert_eq!(normalise_email("  Ada@Example.COM "), "ada@example.com");
    }

    #[test]
    fn e_mail_addresses_are_checked_for_shape() {
        for (email, ok) in [
            ("ada@example.com", true),
            ("a.b+c@example.org", true),
            ("ada@example", false),
            ("ada@@example.com", false),
            ("@example.com", false),
            ("ada @example.com", false),
            ("ada@.com", false),
            ("", false),
        ] {
            assert_eq!(valid_email(email), ok, "{email}");
        }
    }

    #[test]
    fn user_debug_output_holds_no_hash() {
        let user = UserRecord {
            id: UserId::generate(),
            email_index: [7; 16],
            password_hash: "$argon2id$secret-marker".into(),
            role: Role::Analyst,
            scope: Scope::Installation,
            personal_data: false,
            failed_logins: 0,
            locked_until: None,
            created_at: Timestamp::from_millis(0),
            disabled_at: None,
            last_sign_in_at: None,
            email_sealed: None,
        };
        assert!(!format!("{user:?}").contains("secret-marker"));
    }
}
