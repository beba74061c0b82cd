//! Sealing and opening with XChaCha20-Poly1305: `nonce || ciphertext || tag`.

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::keys::{DataKey, random_bytes};

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Bytes a sealed message adds to its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Wrong key, wrong associated data, or altered ciphertext.
    #[error("ciphertext does not open with this key (altered, misplaced or its key was destroyed)")]
    Unauthentic,
    #[error("ciphertext is too short to be sealed data")]
    Truncated,
}

fn cipher(key: &DataKey) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(&(*key.expose()).into())
}

/// Seals `plaintext` under `key`, binding it to `aad`.
pub fn seal(key: &DataKey, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let nonce: [u8; NONCE_LEN] = random_bytes();
    let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = cipher(key)
        .encrypt_inout_detached(&XNonce::from(nonce), aad, (&mut out[NONCE_LEN..]).into())
        // Encryption fails only for messages over 256 GiB, which never reach here.
        .unwrap_or_else(|_| unreachable_encrypt());
    out.extend_from_slice(&tag);
    out
}

#[cold]
fn unreachable_encrypt() -> Tag {
    panic!("xchacha20poly1305 refused a message shorter than its limit")
}

/// Opens what [`seal`] made with the same key and associated data.
pub fn open(key: &DataKey, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(CryptoError::Truncated);
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Truncated)?;
    let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| CryptoError::Truncated)?;
    let mut plaintext = Zeroizing::new(ciphertext.to_vec());
    cipher(key)
        .decrypt_inout_detached(
            &XNonce::from(nonce),
            aad,
            (&mut plaintext[..]).into(),
            &Tag::from(tag),
        )
        .map_err(|_| CryptoError::Unauthentic)?;
    Ok(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_with_the_same_key_and_aad_only() {
        let key = DataKey::generate();
        let sealed = seal(&key, b"call:1|caller_identity", b"+442079460123");
        assert_eq!(sealed.len(), 13 + SEAL_OVERHEAD);
        assert_eq!(
            &open(&key, b"call:1|caller_identity", &sealed).unwrap()[..],
            b"+442079460123"
        );
        assert_eq!(
            open(&key, b"call:2|caller_identity", &sealed),
            Err(CryptoError::Unauthentic)
        );
        assert_eq!(
            open(&DataKey::generate(), b"call:1|caller_identity", &sealed),
            Err(CryptoError::Unauthentic)
        );
        let mut altered = sealed.clone();
        altered[30] ^= 1;
        assert_eq!(
            open(&key, b"call:1|caller_identity", &altered),
            Err(CryptoError::Unauthentic)
        );
        assert_eq!(open(&key, b"", &sealed[..10]), Err(CryptoError::Truncated));
    }

    #[test]
    fn the_same_plaintext_seals_differently_each_time() {
        let key = DataKey::generate();
        assert_ne!(seal(&key, b"", b"same"), seal(&key, b"", b"same"));
    }

    #[test]
    fn ciphertext_does_not_contain_the_plaintext() {
        let key = DataKey::generate();
        let marker = b"CANARY-MARKER-0123456789";
        let sealed = seal(&key, b"", marker);
        assert!(!sealed.windows(marker.len()).any(|w| w == marker));
    }
}
