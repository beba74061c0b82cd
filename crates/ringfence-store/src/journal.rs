//! Verifying the audit journal end to end.

use ringfence_crypto::audit::GENESIS;

use crate::records::AuditQuery;
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

/// Walks the whole chain from the first entry. `Ok(Err(_))` names the first break.
pub async fn verify_journal(
    store: &dyn Store,
    anchor: Option<(i64, [u8; 32])>,
) -> Result<Result<Verification, ChainBreak>, StoreError> {
    let mut prev = GENESIS;
    let mut prev_seq = 0i64;
    let mut entries = 0u64;
    loop {
        let page = store
            .audit(AuditQuery {
                agency_id: None,
                account_id: None,
                after_seq: Some(prev_seq),
                before_seq: None,
                limit: 1000,
            })
            .await?;
        if page.is_empty() {
            break;
        }
        for entry in page {
            if prev_seq == 0 && entry.seq != 1 {
                return Ok(Err(ChainBreak::BadStart { seq: entry.seq }));
            }
            if entry.seq != prev_seq + 1 || entry.prev_hash != prev {
                return Ok(Err(ChainBreak::Broken {
                    seq: entry.seq,
                    previous: prev_seq,
                }));
            }
            if entry.expected_hash(&prev) != entry.hash {
                return Ok(Err(ChainBreak::Altered { seq: entry.seq }));
            }
            if let Some((seq, hash)) = anchor
                && seq == entry.seq
                && hash != entry.hash
            {
                return Ok(Err(ChainBreak::Rewritten { seq }));
            }
            prev = entry.hash;
            prev_seq = entry.seq;
            entries += 1;
        }
    }
    if let Some((seq, _)) = anchor
        && seq > prev_seq
    {
        return Ok(Err(ChainBreak::Truncated {
            last: prev_seq,
            anchor: seq,
        }));
    }
    Ok(Ok(Verification {
        entries,
        last_seq: prev_seq,
        head: prev,
    }))
}
