//! Ringfence's background jobs. Each job is one step, one function: the server's scheduler
//! calls it on an interval, tests call it directly, and it is safe to run again after a crash
//! at any point (every step re-derives its work from the stores).
//!
//! Jobs never log personal data: ids and counts only.

pub mod checklist;
pub mod deliveries;
pub mod downloads;
pub mod orphan_keys;
pub mod orphan_recordings;
pub mod outbound;
pub mod retention;
pub mod scheduler;

pub use orphan_keys::{OrphanKeyReport, collect_orphan_keys};
