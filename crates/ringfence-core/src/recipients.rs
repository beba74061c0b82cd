//! Recipients (GDPR Art. 19): the systems an account forwards its calls to, and so must tell
//! about every erasure. The events they may subscribe to, the states of a delivery and the
//! retry schedule of the outbox.

use std::time::Duration;

/// What a recipient can be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// A new call (its data as the collection settings let it be stored, rendered when sent).
    CallCreated,
    /// Calls were redacted, wholly or some of their categories (ids only).
    CallRedacted,
    /// A caller was erased: every call of the number (ids only, never the number).
    CallerErased,
    /// A subject withdrew consent for a category (ids only).
    ConsentWithdrawn,
}

impl EventKind {
    pub const ALL: [EventKind; 4] = [
        EventKind::CallCreated,
        EventKind::CallRedacted,
        EventKind::CallerErased,
        EventKind::ConsentWithdrawn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::CallCreated => "call.created",
            EventKind::CallRedacted => "call.redacted",
            EventKind::CallerErased => "caller.erased",
            EventKind::ConsentWithdrawn => "consent.withdrawn",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == text)
    }

    /// An erasure notice: what Art. 19 obliges the controller to pass on.
    pub fn is_erasure(self) -> bool {
        !matches!(self, EventKind::CallCreated)
    }
}

/// Where one delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Queued,
    /// The recipient answered 2xx.
    Delivered,
    /// Every attempt failed: dead-lettered, until someone retries it.
    Dead,
    /// Will never be sent (a `call.created` whose call was redacted first, or a removed
    /// recipient).
    Cancelled,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 4] = [
        DeliveryState::Queued,
        DeliveryState::Delivered,
        DeliveryState::Dead,
        DeliveryState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
            DeliveryState::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == text)
    }
}

/// Most call ids one erasure event carries; a larger erasure is told in several events.
pub const MAX_CALLS_PER_EVENT: usize = 1000;

/// The outbox's retry schedule: exponential backoff with jitter, capped, then dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay before the second attempt (before jitter).
    pub base: Duration,
    /// The longest delay between two attempts.
    pub max_delay: Duration,
    /// Attempts in all before the delivery is dead-lettered.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    /// 30 s doubling to at most 6 h, 15 attempts: about two days of trying.
    fn default() -> Self {
        Self {
            base: Duration::from_secs(30),
            max_delay: Duration::from_secs(6 * 3600),
            max_attempts: 15,
        }
    }
}

impl RetryPolicy {
    /// The wait after `attempts` failed attempts (1 or more), or `None` when no attempt is
    /// left. `jitter` in `[0, 1)` spreads retries ("equal jitter": half the delay is fixed,
    /// half random), so receivers coming back from an outage are not hit all at once.
    pub fn next_delay(&self, attempts: u32, jitter: f64) -> Option<Duration> {
        if attempts >= self.max_attempts {
            return None;
        }
        let doubled = self
            .base
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
        let delay = doubled.min(self.max_delay);
        let jitter = jitter.clamp(0.0, 1.0);
        Some(delay / 2 + delay.mul_f64(jitter / 2.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_states_round_trip() {
        for e in EventKind::ALL {
            assert_eq!(EventKind::parse(e.as_str()), Some(e));
        }
        for s in DeliveryState::ALL {
            assert_eq!(DeliveryState::parse(s.as_str()), Some(s));
        }
        assert_eq!(EventKind::parse("call.deleted"), None);
        assert!(!EventKind::CallCreated.is_erasure());
        assert!(EventKind::CallerErased.is_erasure());
    }

    #[test]
    fn delays_double_stay_under_the_cap_and_end() {
        let policy = RetryPolicy {
            base: Duration::from_secs(10),
            max_delay: Duration::from_secs(60),
            max_attempts: 6,
        };
        // Without jitter: half of 10, 20, 40, 60, 60.
        let low: Vec<u64> = (1..6)
            .map(|n| policy.next_delay(n, 0.0).unwrap().as_secs())
            .collect();
        assert_eq!(low, vec![5, 10, 20, 30, 30]);
        // With the most jitter: just under the whole delay.
        let high = policy.next_delay(3, 0.999_999).unwrap();
        assert!(high > Duration::from_millis(39_900) && high <= Duration::from_secs(40));
        assert_eq!(policy.next_delay(6, 0.5), None);
        assert_eq!(policy.next_delay(100, 0.5), None);
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let policy = RetryPolicy {
            max_attempts: u32::MAX,
            ..RetryPolicy::default()
        };
        assert_eq!(
            policy.next_delay(u32::MAX - 1, 0.0),
            Some(Duration::from_secs(3 * 3600))
        );
    }
}
