//! Recordings sealed in fixed-size chunks, so that a byte range can be served by opening only
//! the chunks it touches. Each chunk is bound to its object, its position and whether it is
//! the last one, so chunks cannot be reordered, swapped between files, or cut off unnoticed.

use zeroize::Zeroizing;

use crate::aead::{CryptoError, SEAL_OVERHEAD, open, seal};
use crate::keys::DataKey;

/// Plaintext bytes per chunk.
pub const RECORDING_CHUNK: usize = 64 * 1024;
/// Bytes of the object header: magic, version, chunk size.
pub const RECORDING_HEADER_LEN: usize = 16;
const MAGIC: &[u8; 8] = b"RFREC\x00\x01\x00";

fn chunk_aad(object_id: &str, index: u64, last: bool) -> Vec<u8> {
    let mut aad = b"ringfence recording v1|".to_vec();
    aad.extend_from_slice(object_id.as_bytes());
    aad.push(b'|');
    aad.extend_from_slice(&index.to_be_bytes());
    aad.push(u8::from(last));
    aad
}

/// Seals a recording as it streams in.
pub struct RecordingSealer {
    key: DataKey,
    object_id: String,
    next_index: u64,
    pending: Zeroizing<Vec<u8>>,
    total: u64,
}

impl RecordingSealer {
    pub fn new(key: DataKey, object_id: impl Into<String>) -> Self {
        Self {
            key,
            object_id: object_id.into(),
            next_index: 0,
            pending: Zeroizing::new(Vec::with_capacity(2 * RECORDING_CHUNK)),
            total: 0,
        }
    }

    /// The object's header, written before the first chunk.
    pub fn header() -> [u8; RECORDING_HEADER_LEN] {
        let mut h = [0u8; RECORDING_HEADER_LEN];
        h[..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&(RECORDING_CHUNK as u32).to_le_bytes());
        h
    }

    /// Adds plaintext; returns the sealed chunks completed by it, in order.
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        self.total += data.len() as u64;
        self.pending.extend_from_slice(data);
        let mut out = Vec::new();
        // Keep at least one byte back: the last chunk must be sealed as last.
        while self.pending.len() > RECORDING_CHUNK {
            let sealed = seal(
                &self.key,
                &chunk_aad(&self.object_id, self.next_index, false),
                &self.pending[..RECORDING_CHUNK],
            );
            self.pending.drain(..RECORDING_CHUNK);
            self.next_index += 1;
            out.push(sealed);
        }
        out
    }

    /// Seals the last chunk. Returns it and the recording's plaintext length.
    pub fn finish(self) -> (Vec<u8>, u64) {
        let sealed = seal(
            &self.key,
            &chunk_aad(&self.object_id, self.next_index, true),
            &self.pending,
        );
        (sealed, self.total)
    }

    pub fn bytes_so_far(&self) -> u64 {
        self.total
    }
}

/// Where chunks lie in a sealed recording of a known plaintext length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordingLayout {
    pub plaintext_len: u64,
}

impl RecordingLayout {
    pub fn chunk_count(&self) -> u64 {
        if self.plaintext_len == 0 {
            1
        } else {
            self.plaintext_len.div_ceil(RECORDING_CHUNK as u64)
        }
    }

    /// Byte offset of chunk `index` in the object.
    pub fn sealed_offset(&self, index: u64) -> u64 {
        RECORDING_HEADER_LEN as u64 + index * (RECORDING_CHUNK + SEAL_OVERHEAD) as u64
    }

    fn plaintext_len_of(&self, index: u64) -> u64 {
        let start = index * RECORDING_CHUNK as u64;
        (self.plaintext_len - start).min(RECORDING_CHUNK as u64)
    }

    /// Total size of the sealed object.
    pub fn sealed_len(&self) -> u64 {
        let last = self.chunk_count() - 1;
        self.sealed_offset(last) + self.plaintext_len_of(last) + SEAL_OVERHEAD as u64
    }

    /// The chunks holding plaintext bytes `start..end` (end exclusive, within the length):
    /// first and last chunk index, and the object byte range covering them.
    pub fn chunks_for(&self, start: u64, end: u64) -> (u64, u64, std::ops::Range<u64>) {
        let first = start / RECORDING_CHUNK as u64;
        let last = (end.max(start + 1) - 1) / RECORDING_CHUNK as u64;
        let from = self.sealed_offset(first);
        let to = self.sealed_offset(last) + self.plaintext_len_of(last) + SEAL_OVERHEAD as u64;
        (first, last, from..to)
    }

    pub fn is_last(&self, index: u64) -> bool {
        index + 1 == self.chunk_count()
    }

    /// Sealed size of chunk `index`.
    pub fn sealed_chunk_len(&self, index: u64) -> u64 {
        self.plaintext_len_of(index) + SEAL_OVERHEAD as u64
    }
}

/// Opens one chunk of a recording.
pub fn open_recording_chunk(
    key: &DataKey,
    object_id: &str,
    index: u64,
    last: bool,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    open(key, &chunk_aad(object_id, index, last), sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal_all(key: &DataKey, data: &[u8], piece: usize) -> Vec<u8> {
        let mut sealer = RecordingSealer::new(key.clone(), "obj");
        let mut out = RecordingSealer::header().to_vec();
        for part in data.chunks(piece.max(1)) {
            for c in sealer.push(part) {
                out.extend_from_slice(&c);
            }
        }
        let (last, total) = sealer.finish();
        assert_eq!(total, data.len() as u64);
        out.extend_from_slice(&last);
        out
    }

    fn read_range(key: &DataKey, object: &[u8], len: u64, start: u64, end: u64) -> Vec<u8> {
        let layout = RecordingLayout { plaintext_len: len };
        let (first, last, range) = layout.chunks_for(start, end);
        let mut plain = Vec::new();
        let mut at = range.start;
        for index in first..=last {
            let n = layout.sealed_chunk_len(index);
            let chunk = &object[at as usize..(at + n) as usize];
            plain.extend_from_slice(
                &open_recording_chunk(key, "obj", index, layout.is_last(index), chunk).unwrap(),
            );
            at += n;
        }
        let skip = (start - first * RECORDING_CHUNK as u64) as usize;
        plain[skip..skip + (end - start) as usize].to_vec()
    }

    #[test]
    fn any_range_of_any_length_reads_back_exactly() {
        let key = DataKey::generate();
        for len in [
            1usize,
            100,
            RECORDING_CHUNK - 1,
            RECORDING_CHUNK,
            RECORDING_CHUNK + 1,
            3 * RECORDING_CHUNK,
            3 * RECORDING_CHUNK + 17,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            for piece in [1000, RECORDING_CHUNK, 200_000] {
                let object = seal_all(&key, &data, piece);
                let layout = RecordingLayout {
                    plaintext_len: len as u64,
                };
                assert_eq!(object.len() as u64, layout.sealed_len(), "len {len}");
                for (s, e) in [
                    (0, len),
                    (0, 1),
                    (len - 1, len),
                    (len / 2, len),
                    (len / 3, 2 * len / 3 + 1),
                ] {
                    assert_eq!(
                        read_range(&key, &object, len as u64, s as u64, e as u64),
                        data[s..e],
                        "len {len} range {s}..{e}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_truncated_recording_is_detected() {
        let key = DataKey::generate();
        let data = vec![7u8; 2 * RECORDING_CHUNK + 5];
        let object = seal_all(&key, &data, RECORDING_CHUNK);
        // Claim the recording ends after the first chunk: that chunk was not sealed as last.
        let layout = RecordingLayout {
            plaintext_len: RECORDING_CHUNK as u64,
        };
        let chunk = &object
            [RECORDING_HEADER_LEN..RECORDING_HEADER_LEN + layout.sealed_chunk_len(0) as usize];
        assert!(open_recording_chunk(&key, "obj", 0, true, chunk).is_err());
        assert!(open_recording_chunk(&key, "other", 0, false, chunk).is_err());
        assert!(open_recording_chunk(&key, "obj", 1, false, chunk).is_err());
    }
}
