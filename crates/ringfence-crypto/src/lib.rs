//! Ringfence's cryptography: per-record data keys, envelope encryption under the master key,
//! blind indexes of phone numbers, chunked sealing of recordings, and the vault that holds
//! the wrapped data keys apart from the data.
//!
//! Every personal field is sealed with XChaCha20-Poly1305 under a random 192-bit nonce and
//! associated data that binds the ciphertext to its record and column, so a ciphertext moved
//! to another row does not open. Key material is zeroized when dropped and never printed.
//! This crate never does IO itself: the vault's storage is a trait implemented elsewhere.

mod aead;
pub mod audit;
mod keys;
pub mod password;
mod recording;
pub mod twilio;
mod vault;
pub mod webhook;

pub use aead::{CryptoError, NONCE_LEN, SEAL_OVERHEAD, TAG_LEN, open, seal};
pub use keys::{
    BlindIndex, BlindIndexKey, DataKey, MasterKey, MasterKeyError, blind_index_from_hex,
    blind_index_to_hex, hash_api_token, new_api_token, random_bytes,
};
pub use recording::{
    RECORDING_CHUNK, RECORDING_HEADER_LEN, RecordingLayout, RecordingSealer, open_recording_chunk,
};
pub use vault::{
    KeyPurpose, KeyRecord, MasterKeyEntry, MasterKeySource, MasterKeyState, MasterKeyStatus,
    Rewrap, RotatedPage, RotationRecord, Vault, VaultError, VaultStore,
};
