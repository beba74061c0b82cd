//! Automatic redaction policies: how long each category of a call's data is kept, for whom,
//! and the agency's ceiling.

use std::collections::BTreeMap;

use crate::datamap::DataCategory;
use crate::timestamp::Timestamp;

/// The retention choices users know; any whole number of days in `MIN_DAYS..=MAX_DAYS` is
/// also accepted.
pub const PRESET_DAYS: [u32; 4] = [1, 30, 60, 90];
pub const MIN_DAYS: u32 = 1;
pub const MAX_DAYS: u32 = 3650;

/// Whom a policy applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetentionScope {
    #[default]
    Everyone,
    /// Only callers in GDPR scope; calls whose scope is unknown count as in scope.
    Gdpr,
}

impl RetentionScope {
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionScope::Everyone => "everyone",
            RetentionScope::Gdpr => "gdpr",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "everyone" => Some(RetentionScope::Everyone),
            "gdpr" => Some(RetentionScope::Gdpr),
            _ => None,
        }
    }
}

/// An account's policy. `after_days: None` means no automatic redaction of whole calls;
/// `categories` may still remove some categories earlier.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetentionPolicy {
    pub after_days: Option<u32>,
    pub scope: RetentionScope,
    pub categories: BTreeMap<DataCategory, u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{field}: days must be between {MIN_DAYS} and {MAX_DAYS}")]
    DaysOutOfRange { field: String },
    #[error("categories.{0}: call facts are never redacted")]
    CallFacts(String),
    #[error("{field}: {days} days is longer than the agency's maximum of {max} days")]
    ExceedsAgencyMaximum { field: String, days: u32, max: u32 },
}

impl RetentionPolicy {
    pub fn is_off(&self) -> bool {
        self.after_days.is_none() && self.categories.is_empty()
    }

    /// Checks days ranges, categories, and the agency's ceiling.
    pub fn validate(&self, agency_max: Option<u32>) -> Result<(), PolicyError> {
        let check = |field: String, days: u32| {
            if !(MIN_DAYS..=MAX_DAYS).contains(&days) {
                return Err(PolicyError::DaysOutOfRange { field });
            }
            if let Some(max) = agency_max
                && days > max
            {
                return Err(PolicyError::ExceedsAgencyMaximum { field, days, max });
            }
            Ok(())
        };
        if let Some(days) = self.after_days {
            check("auto_redact.after_days".into(), days)?;
        }
        for (category, days) in &self.categories {
            if *category == DataCategory::CallFacts {
                return Err(PolicyError::CallFacts(category.as_str().into()));
            }
            check(format!("auto_redact.categories.{category}"), *days)?;
        }
        Ok(())
    }

    /// Whole-call retention after the agency's ceiling is applied: an account may only
    /// tighten what its agency allows, and an agency maximum applies even when the account
    /// set nothing.
    pub fn effective_after_days(&self, agency_max: Option<u32>) -> Option<u32> {
        match (self.after_days, agency_max) {
            (Some(d), Some(m)) => Some(d.min(m)),
            (Some(d), None) => Some(d),
            (None, m) => m,
        }
    }

    /// The schedule to run at `now`: for each category, the instant before which calls lose
    /// it. Caller identity going means the whole call is redacted; a category scheduled no
    /// earlier than the whole call is left to the whole-call redaction.
    pub fn schedule(&self, agency_max: Option<u32>, now: Timestamp) -> Schedule {
        let whole = self.effective_after_days(agency_max);
        let mut categories = Vec::new();
        let mut whole_days = whole;
        for (category, days) in &self.categories {
            let days = agency_max.map_or(*days, |m| (*days).min(m));
            if *category == DataCategory::CallerIdentity {
                whole_days = Some(whole_days.map_or(days, |w| w.min(days)));
                continue;
            }
            if whole_days.is_some_and(|w| w <= days) {
                continue;
            }
            categories.push((*category, now.minus_days(days)));
        }
        // Re-filter against the final whole-call days (caller identity may have lowered it).
        categories.retain(|(_, cutoff)| whole_days.is_none_or(|w| *cutoff > now.minus_days(w)));
        Schedule {
            whole_before: whole_days.map(|d| now.minus_days(d)),
            categories,
            scope: self.scope,
        }
    }

    /// `recording:30,visitor:1`, the stored form of `categories`.
    pub fn categories_text(&self) -> String {
        self.categories
            .iter()
            .map(|(c, d)| format!("{c}:{d}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn parse_categories(text: &str) -> BTreeMap<DataCategory, u32> {
        text.split(',')
            .filter_map(|pair| {
                let (c, d) = pair.split_once(':')?;
                Some((DataCategory::parse(c)?, d.parse().ok()?))
            })
            .collect()
    }
}

/// What is due at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Calls that started before this are redacted whole.
    pub whole_before: Option<Timestamp>,
    /// Calls that started before the instant lose that category.
    pub categories: Vec<(DataCategory, Timestamp)>,
    pub scope: RetentionScope,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(after: Option<u32>, categories: &[(DataCategory, u32)]) -> RetentionPolicy {
        RetentionPolicy {
            after_days: after,
            scope: RetentionScope::Everyone,
            categories: categories.iter().copied().collect(),
        }
    }

    #[test]
    fn the_agency_maximum_caps_and_imposes_retention() {
        let cases = [
            (Some(30), None, Some(30)),
            (Some(30), Some(90), Some(30)),
            (Some(120), Some(90), Some(90)),
            (None, Some(90), Some(90)),
            (None, None, None),
        ];
        for (account, agency, effective) in cases {
            assert_eq!(
                policy(account, &[]).effective_after_days(agency),
                effective,
                "{account:?} {agency:?}"
            );
        }
    }

    #[test]
    fn policies_outside_the_rules_are_rejected() {
        assert!(policy(Some(0), &[]).validate(None).is_err());
        assert!(policy(Some(3651), &[]).validate(None).is_err());
        assert!(policy(Some(90), &[]).validate(Some(60)).is_err());
        assert!(
            policy(Some(60), &[(DataCategory::Recording, 90)])
                .validate(Some(60))
                .is_err()
        );
        assert!(
            policy(None, &[(DataCategory::CallFacts, 30)])
                .validate(None)
                .is_err()
        );
        assert!(
            policy(
                Some(90),
                &[(DataCategory::Recording, 30), (DataCategory::Visitor, 1)]
            )
            .validate(Some(90))
            .is_ok()
        );
    }

    #[test]
    fn the_schedule_runs_each_category_on_its_own_clock() {
        let now = Timestamp::from_millis(1_000 * 86_400_000);
        let s = policy(
            Some(90),
            &[
                (DataCategory::Recording, 30),
                (DataCategory::Visitor, 1),
                (DataCategory::Transcript, 120),
            ],
        )
        .schedule(None, now);
        assert_eq!(s.whole_before, Some(now.minus_days(90)));
        assert_eq!(
            s.categories,
            vec![
                (DataCategory::Recording, now.minus_days(30)),
                (DataCategory::Visitor, now.minus_days(1))
            ],
            "a category kept longer than the call is left to the call"
        );
        let s = policy(
            None,
            &[
                (DataCategory::CallerIdentity, 60),
                (DataCategory::Recording, 30),
            ],
        )
        .schedule(None, now);
        assert_eq!(
            s.whole_before,
            Some(now.minus_days(60)),
            "caller identity going redacts the call"
        );
        let s = policy(Some(30), &[(DataCategory::Recording, 60)]).schedule(Some(10), now);
        assert_eq!(s.whole_before, Some(now.minus_days(10)));
        assert!(s.categories.is_empty());
    }

    #[test]
    fn categories_round_trip_through_their_stored_form() {
        let p = policy(
            None,
            &[(DataCategory::Recording, 30), (DataCategory::Visitor, 1)],
        );
        assert_eq!(
            RetentionPolicy::parse_categories(&p.categories_text()),
            p.categories
        );
    }
}
