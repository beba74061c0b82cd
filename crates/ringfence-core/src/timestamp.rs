//! Instants as Ringfence stores them: UTC milliseconds since the Unix epoch.

use time::format_description::well_known::{Rfc2822, Rfc3339};
use time::{OffsetDateTime, UtcOffset};

/// Milliseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// Earliest instant accepted on input (1990-01-01): older call dates are typos.
const MIN_MILLIS: i64 = 631_152_000_000;
/// Latest instant accepted on input (9999-12-31).
const MAX_MILLIS: i64 = 253_402_300_799_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("not an RFC 3339 date-time with a time zone, e.g. 2026-11-28T10:00:00Z")]
    NotRfc3339,
    #[error("date-time out of the accepted range (1990 to 9999)")]
    OutOfRange,
}

/// How far ahead of the server's clock a call or visit may say it started (clocks of
/// telephony systems drift a little; a date further ahead is a typo or an attempt to keep a
/// call out of retention).
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

impl Timestamp {
    /// The start time kept for a call or visit said to start at `self` and arriving at
    /// `arrival`: the earlier of the two (a call cannot start after it is reported; a clock
    /// a little fast must not delay retention, which counts from the start).
    pub fn as_start_arriving_at(self, arrival: Timestamp) -> Timestamp {
        self.min(arrival)
    }
    /// Whether this instant is more than [`MAX_CLOCK_SKEW_MS`] ahead of `now`.
    pub fn is_beyond_skew_of(self, now: Timestamp) -> bool {
        self.0 > now.0.saturating_add(MAX_CLOCK_SKEW_MS)
    }
    pub fn now() -> Self {
        Self::from_datetime(OffsetDateTime::now_utc())
    }
    pub fn from_millis(millis: i64) -> Self {
        Self(millis)
    }
    pub fn millis(self) -> i64 {
        self.0
    }
    pub fn from_datetime(at: OffsetDateTime) -> Self {
        Self((at.unix_timestamp_nanos() / 1_000_000) as i64)
    }
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimestampError> {
        if text.len() > 64 {
            return Err(TimestampError::NotRfc3339);
        }
        let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| TimestampError::NotRfc3339)?;
        let ts = Self::from_datetime(at);
        if !(MIN_MILLIS..=MAX_MILLIS).contains(&ts.0) {
            return Err(TimestampError::OutOfRange);
        }
        Ok(ts)
    }
    /// An RFC 2822 date (`Sat, 28 Nov 2026 10:00:00 +0000`, as Twilio sends `Timestamp`), in
    /// the accepted range; `None` otherwise.
    pub fn parse_rfc2822(text: &str) -> Option<Self> {
        if text.len() > 64 {
            return None;
        }
        let ts = Self::from_datetime(OffsetDateTime::parse(text.trim(), &Rfc2822).ok()?);
        (MIN_MILLIS..=MAX_MILLIS).contains(&ts.0).then_some(ts)
    }
    /// RFC 3339 in UTC, with milliseconds only when there are some.
    pub fn to_rfc3339(self) -> String {
        let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
            .to_offset(UtcOffset::UTC);
        let (y, mo, d) = (at.year(), u8::from(at.month()), at.day());
        let (h, mi, s) = (at.hour(), at.minute(), at.second());
        let ms = at.millisecond();
        if ms == 0 {
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
        } else {
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
        }
    }
    pub fn minus_days(self, days: u32) -> Self {
        Self(self.0 - i64::from(days) * 86_400_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_with_any_offset_is_normalised_to_utc() {
        let cases = [
            ("2026-11-28T10:00:00Z", "2026-11-28T10:00:00Z"),
            ("2026-11-28T11:00:00+01:00", "2026-11-28T10:00:00Z"),
            ("2026-11-28T10:00:00.250Z", "2026-11-28T10:00:00.250Z"),
            ("2026-11-28T10:00:00.123456Z", "2026-11-28T10:00:00.123Z"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                Timestamp::parse_rfc3339(input).map(Timestamp::to_rfc3339),
                Ok(expected.to_owned()),
                "{input}"
            );
        }
    }

    #[test]
    fn malformed_or_absurd_dates_are_rejected() {
        let cases = [
            ("yesterday", TimestampError::NotRfc3339),
            ("2026-11-28", TimestampError::NotRfc3339),
            ("2026-11-28T10:00:00", TimestampError::NotRfc3339),
            ("1970-01-01T00:00:00Z", TimestampError::OutOfRange),
        ];
        for (input, expected) in cases {
            assert_eq!(Timestamp::parse_rfc3339(input), Err(expected), "{input}");
        }
    }
}
