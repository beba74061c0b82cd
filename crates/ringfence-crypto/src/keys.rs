//! Key material: data keys, the master key, blind-index keys.

use std::fmt;

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::aead::{CryptoError, open, seal};

/// Bytes of the operating system's random source fetched at once, per thread: a call's key
/// and nonces cost one system call per few dozen seals instead of one each (`getrandom` was
/// 4.7% of the ingest threads' time).
const RANDOM_BUFFER: usize = 4096;

struct RandomBuffer {
    bytes: [u8; RANDOM_BUFFER],
    /// Bytes before this offset are used and zeroed.
    used: usize,
}

thread_local! {
    static RANDOM: std::cell::RefCell<RandomBuffer> = const {
        std::cell::RefCell::new(RandomBuffer { bytes: [0; RANDOM_BUFFER], used: RANDOM_BUFFER })
    };
}

fn os_random(bytes: &mut [u8]) {
    // The OS random source failing is not recoverable: no key may be made without it.
    if getrandom::fill(bytes).is_err() {
        panic!("the operating system's random source failed");
    }
}

/// Random bytes from the operating system, taken from a per-thread buffer of its output that
/// is refilled when spent; each byte is handed out once and zeroed in the buffer as it is.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    if N > RANDOM_BUFFER / 4 {
        os_random(&mut out);
        return out;
    }
    RANDOM.with(|cell| {
        let mut buffer = cell.borrow_mut();
        if buffer.used + N > RANDOM_BUFFER {
            os_random(&mut buffer.bytes);
            buffer.used = 0;
        }
        let at = buffer.used;
        out.copy_from_slice(&buffer.bytes[at..at + N]);
        buffer.bytes[at..at + N].zeroize();
        buffer.used += N;
    });
    out
}

/// A 256-bit key that seals one record (a call or a visitor session).
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct DataKey([u8; 32]);

impl DataKey {
    pub fn generate() -> Self {
        Self(random_bytes())
    }
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(‹secret›)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MasterKeyError {
    #[error("master key file is not in the ringfence format (expected `rfmk1:` and 64 hex digits)")]
    Malformed,
}

/// The key that wraps every data key. Kept in a file outside the databases and never in a backup.
#[derive(Clone, ZeroizeOnDrop)]
pub struct MasterKey {
    wrap: [u8; 32],
    fingerprint: [u8; 8],
}

const MASTER_PREFIX: &str = "rfmk1:";

impl MasterKey {
    /// A fresh master key and its file contents.
    pub fn generate() -> (Self, Zeroizing<String>) {
        let raw: Zeroizing<[u8; 32]> = Zeroizing::new(random_bytes());
        let mut text = Zeroizing::new(String::with_capacity(72));
        text.push_str(MASTER_PREFIX);
        for b in raw.iter() {
            text.push_str(&format!("{b:02x}"));
        }
        text.push('\n');
        (Self::derive(&raw), text)
    }

    /// Reads a master key file's contents.
    pub fn from_file_contents(contents: &[u8]) -> Result<Self, MasterKeyError> {
        let text = std::str::from_utf8(contents)
            .map_err(|_| MasterKeyError::Malformed)?
            .trim();
        let hex = text
            .strip_prefix(MASTER_PREFIX)
            .ok_or(MasterKeyError::Malformed)?;
        if hex.len() != 64 {
            return Err(MasterKeyError::Malformed);
        }
        let mut raw = Zeroizing::new([0u8; 32]);
        for (i, byte) in raw.iter_mut().enumerate() {
            *byte = u8::from_str_radix(
                hex.get(2 * i..2 * i + 2).ok_or(MasterKeyError::Malformed)?,
                16,
            )
            .map_err(|_| MasterKeyError::Malformed)?;
        }
        Ok(Self::derive(&raw))
    }

    fn derive(raw: &[u8; 32]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(b"ringfence master key v1"), raw);
        let mut wrap = [0u8; 32];
        let mut fingerprint = [0u8; 8];
        // 40 bytes is far below HKDF-SHA256's limit of 8160.
        hk.expand(b"wrap data keys", &mut wrap)
            .unwrap_or_else(|_| unreachable!());
        hk.expand(b"fingerprint", &mut fingerprint)
            .unwrap_or_else(|_| unreachable!());
        Self { wrap, fingerprint }
    }

    /// A short public identifier of the key (not secret), to tell keys apart.
    pub fn fingerprint(&self) -> String {
        self.fingerprint
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn wrapping_key(&self) -> DataKey {
        DataKey::from_bytes(self.wrap)
    }

    /// Wraps a data key for storage in the vault, bound to its key id.
    pub fn wrap(&self, key_id: &str, key: &DataKey) -> Vec<u8> {
        seal(&self.wrapping_key(), &wrap_aad(key_id), key.expose())
    }

    /// Re-wraps a data key that `self` wrapped under `to`, without it leaving this function.
    pub fn rewrap(
        &self,
        to: &MasterKey,
        key_id: &str,
        wrapped: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        Ok(to.wrap(key_id, &self.unwrap(key_id, wrapped)?))
    }

    /// Unwraps what [`MasterKey::wrap`] made for the same key id.
    pub fn unwrap(&self, key_id: &str, wrapped: &[u8]) -> Result<DataKey, CryptoError> {
        let plain = open(&self.wrapping_key(), &wrap_aad(key_id), wrapped)?;
        let bytes: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Truncated)?;
        Ok(DataKey::from_bytes(bytes))
    }
}

fn wrap_aad(key_id: &str) -> Vec<u8> {
    let mut aad = b"ringfence wrapped key v1|".to_vec();
    aad.extend_from_slice(key_id.as_bytes());
    aad
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey(fingerprint {})", self.fingerprint())
    }
}

/// A keyed hash of a phone number: finds a caller's calls without storing the number.
pub type BlindIndex = [u8; 16];

/// A blind index as 32 lowercase hex digits (as it appears in key ids and journal entries).
pub fn blind_index_to_hex(index: &BlindIndex) -> String {
    index.iter().map(|b| format!("{b:02x}")).collect()
}

/// The blind index written by [`blind_index_to_hex`]; `None` unless exactly 32 hex digits.
pub fn blind_index_from_hex(text: &str) -> Option<BlindIndex> {
    if text.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The per-account key of the blind index. Kept in the vault, wrapped like data keys.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct BlindIndexKey([u8; 32]);

impl BlindIndexKey {
    pub fn from_data_key(key: &DataKey) -> Self {
        Self(*key.expose())
    }

    /// HMAC-SHA256 of the E.164 number under this key, truncated to 128 bits.
    pub fn index(&self, e164: &str) -> BlindIndex {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(b"caller-number|");
        mac.update(e164.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        out
    }
}

impl fmt::Debug for BlindIndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlindIndexKey(‹secret›)")
    }
}

/// A new API token (shown once) and the SHA-256 hash that is stored in its place.
/// 256 random bits: a plain hash suffices, no password hashing is needed.
pub fn new_api_token() -> (String, [u8; 32]) {
    let raw: [u8; 32] = random_bytes();
    let mut token = String::with_capacity(67);
    token.push_str("rf_");
    for b in raw {
        token.push_str(&format!("{b:02x}"));
    }
    let hash = hash_api_token(&token);
    (token, hash)
}

/// The stored form of an API token.
pub fn hash_api_token(token: &str) -> [u8; 32] {
    use sha2::Digest;
    let mut h = Sha256::new();
    h.update(token.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bytes_are_never_handed_out_twice_and_are_zeroed_once_taken() {
        // 1,000 nonces cross several refills of the buffer.
        let nonces: Vec<[u8; 24]> = (0..1000).map(|_| random_bytes()).collect();
        let distinct: std::collections::HashSet<_> = nonces.iter().collect();
        assert_eq!(distinct.len(), nonces.len());
        let key: [u8; 32] = random_bytes();
        assert_ne!(key, [0; 32]);
        RANDOM.with(|cell| {
            let buffer = cell.borrow();
            assert!(buffer.used >= 32);
            assert!(
                buffer.bytes[..buffer.used].iter().all(|b| *b == 0),
                "what was handed out does not stay in the buffer"
            );
            assert!(buffer.bytes[buffer.used..].iter().any(|b| *b != 0));
        });
        // Larger requests go to the OS directly.
        let big: [u8; 2048] = random_bytes();
        assert!(big.iter().any(|b| *b != 0));
    }

    #[test]
    fn a_master_key_file_round_trips_and_wraps_keys() {
        let (master, contents) = MasterKey::generate();
        let again = MasterKey::from_file_contents(contents.as_bytes()).unwrap();
        assert_eq!(master.fingerprint(), again.fingerprint());
        let key = DataKey::generate();
        let wrapped = master.wrap("call-1", &key);
        assert_eq!(again.unwrap("call-1", &wrapped).unwrap(), key);
        assert_eq!(
            again.unwrap("call-2", &wrapped),
            Err(CryptoError::Unauthentic)
        );
        let (other, _) = MasterKey::generate();
        assert_eq!(
            other.unwrap("call-1", &wrapped),
            Err(CryptoError::Unauthentic)
        );
    }

    #[test]
    fn a_rewrapped_key_opens_only_with_the_new_master_key() {
        let (old, _) = MasterKey::generate();
        let (new, _) = MasterKey::generate();
        assert_ne!(old.fingerprint(), new.fingerprint());
        let key = DataKey::generate();
        let wrapped = old.wrap("call-1", &key);
        let rewrapped = old.rewrap(&new, "call-1", &wrapped).unwrap();
        assert_eq!(new.unwrap("call-1", &rewrapped).unwrap(), key);
        assert_eq!(
            old.unwrap("call-1", &rewrapped),
            Err(CryptoError::Unauthentic)
        );
        // The id stays bound: a re-wrapped key moved to another row does not open.
        assert_eq!(
            new.unwrap("call-2", &rewrapped),
            Err(CryptoError::Unauthentic)
        );
        // Only what the old key wrapped can be re-wrapped.
        assert_eq!(
            new.rewrap(&old, "call-1", &wrapped),
            Err(CryptoError::Unauthentic)
        );
    }

    #[test]
    fn malformed_master_key_files_are_rejected() {
        for bad in [
            "",
            "rfmk1:",
            "rfmk1:zz",
            &format!("rfmk2:{}", "0".repeat(64)),
            &format!("rfmk1:{}", "g".repeat(64)),
        ] {
            assert_eq!(
                MasterKey::from_file_contents(bad.as_bytes()).err(),
                Some(MasterKeyError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn key_material_never_prints() {
        let (master, contents) = MasterKey::generate();
        let hex = &contents[6..20];
        let shown = format!(
            "{master:?} {:?} {:?}",
            DataKey::from_bytes([0xab; 32]),
            BlindIndexKey::from_data_key(&DataKey::from_bytes([0xab; 32]))
        );
        assert!(
            !shown.contains(hex) && !shown.contains("abab") && !shown.contains("171"),
            "{shown}"
        );
    }

    #[test]
    fn blind_indexes_depend_on_number_and_key() {
        let k1 = BlindIndexKey::from_data_key(&DataKey::generate());
        let k2 = BlindIndexKey::from_data_key(&DataKey::generate());
        assert_eq!(k1.index("+442079460123"), k1.index("+442079460123"));
        assert_ne!(k1.index("+442079460123"), k1.index("+442079460124"));
        assert_ne!(k1.index("+442079460123"), k2.index("+442079460123"));
    }
}
