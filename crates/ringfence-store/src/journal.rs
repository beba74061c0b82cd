//! Verifying the audit journal end to end.

use ringfence_crypto::audit::GENESIS;

use crate::records::{AuditEntry, AuditQuery};
use crate::{Store, StoreError};

/// The first place where the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("entry {seq}: its contents do not match its hash (altered)")]
    Altered { seq: i64 },
    #[error(
        "entry {seq}: does not follow entry {previous} (an entry was deleted, inserted or reordered)"
    )]
    Broken { seq: i64, previous: i64 },
    #[error("entry {seq}: the first entry must be 1 (entries before it were deleted)")]
    BadStart { seq: i64 },
    #[error(
        "the journal ends at entry {last} but its recorded head is entry {anchor} (entries at its end were deleted)"
    )]
    Truncated { last: i64, anchor: i64 },
    #[error(
        "entry {seq}: does not match the journal head recorded in the vault (the journal was rewritten)"
    )]
    Rewritten { seq: i64 },
}

/// How a verification went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub entries: u64,
    pub last_seq: i64,
    pub head: [u8; 32],
}

/// The chain walked entry by entry, from the first: what `verify_journal` does over a store,
/// usable over entries read some other way (a replay reads another installation's journal).
#[derive(Debug, Clone)]
pub struct ChainWalk {
    prev: [u8; 32],
    prev_seq: i64,
    entries: u64,
}

impl Default for ChainWalk {
    fn default() -> Self {
        ChainWalk {
            prev: GENESIS,
            prev_seq: 0,
            entries: 0,
        }
    }
}

impl ChainWalk {
    /// Checks the next entry against the one before it (and the anchor, if any).
    pub fn step(
        &mut self,
        entry: &AuditEntry,
        anchor: Option<(i64, [u8; 32])>,
    ) -> Result<(), ChainBreak> {
        if self.prev_seq == 0 && entry.seq != 1 {
            return Err(ChainBreak::BadStart { seq: entry.seq });
        }
        if entry.seq != self.prev_seq + 1 || entry.prev_hash != self.prev {
            return Err(ChainBreak::Broken {
                seq: entry.seq,
                previous: self.prev_seq,
            });
        }
        if entry.expected_hash(&self.prev) != entry.hash {
            return Err(ChainBreak::Altered { seq: entry.seq });
        }
        if let Some((seq, hash)) = anchor
            && seq == entry.seq
            && hash != entry.hash
        {
            return Err(ChainBreak::Rewritten { seq });
        }
        self.prev = entry.hash;
        self.prev_seq = entry.seq;
        self.entries += 1;
        Ok(())
    }

    /// Ends the walk: an anchor past the last entry means entries at the end were deleted.
    pub fn finish(self, anchor: Option<(i64, [u8; 32])>) -> Result<Verification, ChainBreak> {
        if let Some((seq, _)) = anchor
            && seq > self.prev_seq
        {
            return Err(ChainBreak::Truncated {
                last: self.prev_seq,
                anchor: seq,
            });
        }
        Ok(Verification {
            entries: self.entries,
            last_seq: self.prev_seq,
            head: self.prev,
        })
    }
}

/// Walks the whole chain from the first entry. `Ok(Err(_))` names the first break.
pub async fn verify_journal(
    store: &dyn Store,
    anchor: Option<(i64, [u8; 32])>,
) -> Result<Result<Verification, ChainBreak>, StoreError> {
    let mut walk = ChainWalk::default();
    loop {
        let page = store
            .audit(AuditQuery {
                agency_id: None,
                account_id: None,
                after_seq: Some(walk.prev_seq),
                before_seq: None,
                limit: 1000,
            })
            .await?;
        if page.is_empty() {
            break;
        }
        for entry in page {
            if let Err(broken) = walk.step(&entry, anchor) {
                return Ok(Err(broken));
            }
        }
    }
    Ok(walk.finish(anchor))
}
