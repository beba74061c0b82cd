//! The audit journal's hash chain: each entry's hash covers the previous entry's hash and
//! every field of the entry, each length-prefixed so that no two entries encode alike.

use sha2::{Digest, Sha256};

/// The hash before the first entry.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// SHA-256 over `prev || seq || (len || field)*`.
pub fn chain_hash(prev: &[u8; 32], seq: i64, fields: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"ringfence audit v1");
    h.update(prev);
    h.update(seq.to_be_bytes());
    for f in fields {
        h.update((f.len() as u64).to_be_bytes());
        h.update(f);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_depends_on_every_input_and_on_field_boundaries() {
        let base = chain_hash(&GENESIS, 1, &[b"redact", b"abc"]);
        assert_eq!(base, chain_hash(&GENESIS, 1, &[b"redact", b"abc"]));
        assert_ne!(base, chain_hash(&[1; 32], 1, &[b"redact", b"abc"]));
        assert_ne!(base, chain_hash(&GENESIS, 2, &[b"redact", b"abc"]));
        assert_ne!(base, chain_hash(&GENESIS, 1, &[b"redac", b"tabc"]));
        assert_ne!(base, chain_hash(&GENESIS, 1, &[b"redact", b"abd"]));
    }
}
