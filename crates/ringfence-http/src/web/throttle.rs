//! The sign-in throttle's state: failures per key, in this process's memory (the rule is
//! `ringfence_core::throttle`). Keys are SHA-256 of the address's keyed index and of the
//! client's IP address, so neither an address nor an IP is held in the clear; entries are
//! forgotten after a quarter of an hour of quiet, and the table is bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use ringfence_core::throttle::{Failures, ThrottleKind};
use ringfence_core::timestamp::Timestamp;
use ringfence_crypto::BlindIndex;

/// Beyond this many keys, quiet ones are dropped first, then the table is cleared (an
/// attacker inventing addresses must not grow it without bound).
const MAX_KEYS: usize = 100_000;

pub struct SignInThrottle {
    first_delay_ms: i64,
    failures: Mutex<HashMap<(ThrottleKind, [u8; 32]), Failures>>,
}

/// The keys one attempt counts against.
pub struct AttemptKeys {
    keys: [(ThrottleKind, [u8; 32]); 3],
}

impl AttemptKeys {
    pub fn new(address: &BlindIndex, client: Option<IpAddr>) -> Self {
        let client = client.map(|ip| ip.to_string()).unwrap_or_default();
        let hash = |parts: &[&[u8]]| -> [u8; 32] {
            let mut h = Sha256::new();
            for p in parts {
                h.update((p.len() as u64).to_be_bytes());
                h.update(p);
            }
            h.finalize().into()
        };
        AttemptKeys {
            keys: [
                (
                    ThrottleKind::AddressAndClient,
                    hash(&[address.as_slice(), client.as_bytes()]),
                ),
                (ThrottleKind::Client, hash(&[b"client", client.as_bytes()])),
                (ThrottleKind::Address, hash(&[address.as_slice()])),
            ],
        }
    }
}

impl SignInThrottle {
    pub fn new(first_delay_ms: i64) -> Self {
        Self {
            first_delay_ms,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Milliseconds the attempt must wait (0: go ahead). `trusted_device`: the browser
    /// signed in to this address before, so failures made elsewhere do not hold it back.
    pub fn wait_ms(&self, keys: &AttemptKeys, trusted_device: bool, now: Timestamp) -> i64 {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        keys.keys
            .iter()
            .filter(|(kind, _)| !(trusted_device && *kind == ThrottleKind::Address))
            .map(|key| {
                let f = failures.get(key).copied().unwrap_or_default();
                key.0.rule_from(self.first_delay_ms).wait_ms(f, now)
            })
            .max()
            .unwrap_or(0)
    }

    /// Counts a failed attempt under each of its keys.
    pub fn failed(&self, keys: &AttemptKeys, now: Timestamp) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_KEYS {
            failures.retain(|(kind, _), f| {
                kind.rule_from(self.first_delay_ms).current(*f, now).count > 0
            });
            if failures.len() >= MAX_KEYS {
                failures.clear();
            }
        }
        for key in &keys.keys {
            let f = failures.get(key).copied().unwrap_or_default();
            failures.insert(
                *key,
                key.0.rule_from(self.first_delay_ms).after_failure(f, now),
            );
        }
    }

    /// A success clears the address's keys (the client's own count stays).
    pub fn succeeded(&self, keys: &AttemptKeys) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for key in &keys.keys {
            if key.0 != ThrottleKind::Client {
                failures.remove(key);
            }
        }
    }
}
