//! Sign-in throttling: growing delays after failed sign-ins, the same for addresses that
//! have a user and addresses that do not, and never a lock the owner's correct password
//! cannot pass for long.
//!
//! Failures are counted under three keys: the address together with the client, the client
//! alone, and the address alone (from any client). Each key allows a few failures freely;
//! after that each attempt must wait a delay that doubles with every further failure, up to
//! a cap. The address-alone key, the only one an attacker elsewhere can drive, has the most
//! free failures and the lowest cap, so its owner, signing in from another client, waits at
//! most that cap. A success clears the address's keys.

use crate::timestamp::Timestamp;

/// The three things failures are counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThrottleKind {
    AddressAndClient,
    Client,
    Address,
}

/// How one kind of key grows its delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleRule {
    /// Failures allowed without any delay.
    pub free: u32,
    /// The delay after the first failure beyond `free`, doubled for each further one.
    pub first_delay_ms: i64,
    /// The longest delay.
    pub cap_ms: i64,
    /// A key with no failure for this long starts again at zero.
    pub forget_after_ms: i64,
}

impl ThrottleKind {
    pub const ALL: [ThrottleKind; 3] = [
        ThrottleKind::AddressAndClient,
        ThrottleKind::Client,
        ThrottleKind::Address,
    ];

    /// The rule with the standard first delay of one second.
    pub fn rule(self) -> ThrottleRule {
        self.rule_from(1_000)
    }

    /// The rule whose first delay is `first_delay_ms` (caps scale with it: 300 and 30
    /// first delays).
    pub fn rule_from(self, first_delay_ms: i64) -> ThrottleRule {
        let forget_after_ms = (15 * 60_000i64).max(first_delay_ms.saturating_mul(300));
        match self {
            ThrottleKind::AddressAndClient => ThrottleRule {
                free: 3,
                first_delay_ms,
                cap_ms: first_delay_ms.saturating_mul(300),
                forget_after_ms,
            },
            ThrottleKind::Client => ThrottleRule {
                free: 10,
                first_delay_ms,
                cap_ms: first_delay_ms.saturating_mul(300),
                forget_after_ms,
            },
            // Driven from anywhere: the owner, elsewhere, must never wait long.
            ThrottleKind::Address => ThrottleRule {
                free: 10,
                first_delay_ms,
                cap_ms: first_delay_ms.saturating_mul(30),
                forget_after_ms,
            },
        }
    }
}

/// The failures counted under one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Failures {
    pub count: u32,
    pub last: Option<Timestamp>,
}

impl ThrottleRule {
    /// The failures that still count at `now` (none after `forget_after_ms` of quiet).
    pub fn current(&self, failures: Failures, now: Timestamp) -> Failures {
        match failures.last {
            Some(last) if now.millis() - last.millis() < self.forget_after_ms => failures,
            _ => Failures::default(),
        }
    }

    /// How long after the last failure the next attempt must wait.
    pub fn delay_ms(&self, failures: Failures) -> i64 {
        if failures.count <= self.free {
            return 0;
        }
        let doublings = (failures.count - self.free - 1).min(30);
        self.first_delay_ms
            .saturating_mul(1i64 << doublings)
            .min(self.cap_ms)
    }

    /// Milliseconds to wait before an attempt at `now` may be tried (0: go ahead).
    pub fn wait_ms(&self, failures: Failures, now: Timestamp) -> i64 {
        let failures = self.current(failures, now);
        let Some(last) = failures.last else {
            return 0;
        };
        (last.millis() + self.delay_ms(failures) - now.millis()).max(0)
    }

    /// The failures after one more at `now`.
    pub fn after_failure(&self, failures: Failures, now: Timestamp) -> Failures {
        let failures = self.current(failures, now);
        Failures {
            count: failures.count.saturating_add(1),
            last: Some(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(1_800_000_000_000 + ms)
    }

    #[test]
    fn delays_start_after_the_free_failures_and_double_up_to_the_cap() {
        let cases = [
            (ThrottleKind::AddressAndClient, 3, 0),
            (ThrottleKind::AddressAndClient, 4, 1_000),
            (ThrottleKind::AddressAndClient, 5, 2_000),
            (ThrottleKind::AddressAndClient, 8, 16_000),
            (ThrottleKind::AddressAndClient, 40, 300_000),
            (ThrottleKind::Address, 10, 0),
            (ThrottleKind::Address, 11, 1_000),
            (ThrottleKind::Address, 16, 30_000),
            (ThrottleKind::Address, u32::MAX, 30_000),
        ];
        for (kind, count, delay) in cases {
            let rule = kind.rule();
            assert_eq!(
                rule.delay_ms(Failures {
                    count,
                    last: Some(at(0))
                }),
                delay,
                "{kind:?} after {count} failures"
            );
        }
    }

    #[test]
    fn an_attempt_waits_out_the_delay_from_the_last_failure_and_quiet_forgets() {
        let rule = ThrottleKind::AddressAndClient.rule();
        let mut f = Failures::default();
        for i in 0..5 {
            f = rule.after_failure(f, at(i));
        }
        assert_eq!(f.count, 5);
        assert_eq!(rule.wait_ms(f, at(4)), 2_000);
        assert_eq!(rule.wait_ms(f, at(1_004)), 1_000);
        assert_eq!(rule.wait_ms(f, at(2_004)), 0);
        // A quarter of an hour of quiet: counting starts again.
        let later = at(4 + 15 * 60_000);
        assert_eq!(rule.current(f, later), Failures::default());
        assert_eq!(rule.after_failure(f, later).count, 1);
    }

    #[test]
    fn the_address_alone_never_makes_its_owner_wait_longer_than_its_cap() {
        let rule = ThrottleKind::Address.rule();
        let mut f = Failures::default();
        // An attacker failing every second for an hour.
        for s in 0..3_600 {
            f = rule.after_failure(f, at(s * 1_000));
        }
        let last = 3_599 * 1_000;
        assert!(rule.wait_ms(f, at(last)) <= 30_000);
        assert_eq!(rule.wait_ms(f, at(last + 30_000)), 0);
    }
}
