//! Passwords of web interface users: argon2id (OWASP's parameters: 19 MiB, 2 passes, 1 lane),
//! kept as PHC strings. CPU-heavy: call from a blocking thread.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use zeroize::Zeroizing;

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 12;
/// Longest password accepted (argon2 takes any length; this bounds the work per attempt).
pub const MAX_PASSWORD_LEN: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error(
        "a password needs at least {MIN_PASSWORD_LEN} and at most {MAX_PASSWORD_LEN} characters"
    )]
    Length,
    #[error("password hashing failed")]
    Hashing,
}

/// The argon2id hash of `password` with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let length = password.chars().count();
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&length) {
        return Err(PasswordError::Length);
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|_| PasswordError::Hashing)
}

/// Whether `password` matches the stored hash; a malformed hash never matches.
pub fn verify_password(password: &str, stored: &str) -> bool {
    if password.len() > MAX_PASSWORD_LEN * 4 {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// A hash no password matches, verified against when a sign-in names an unknown user so
/// that the answer takes as long as for a known one.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let random = Zeroizing::new(hex(&crate::random_bytes::<24>()));
        hash_password(&random).unwrap_or_default()
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hashed_password_verifies_and_others_do_not() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash));
        for wrong in ["correct horse batter", "", "CORRECT HORSE BATTERY"] {
            assert!(!verify_password(wrong, &hash), "{wrong}");
        }
        assert!(!verify_password("correct horse battery", "not a hash"));
        assert!(!verify_password("anything at all", dummy_hash()));
    }

    #[test]
    fn passwords_too_short_or_too_long_are_refused() {
        for (password, ok) in [
            ("short", false),
            ("elevenchars", false),
            ("twelve chars", true),
            (&"x".repeat(256), true),
            (&"x".repeat(257), false),
        ] {
            assert_eq!(hash_password(password).is_ok(), ok, "{}", password.len());
        }
    }
}
