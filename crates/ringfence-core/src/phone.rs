//! Phone numbers as Ringfence stores them: parsed from international format, validated
//! against libphonenumber's metadata and normalised to E.164.
//!
//! A phone number is personal data. [`E164`] never prints its digits through `Debug` or
//! `Display`, and no [`PhoneError`] ever repeats the input it rejected.

use std::collections::HashMap;
use std::fmt;
use std::sync::{LazyLock, RwLock};

use phonenumber::Metadata;
use phonenumber::metadata::{DATABASE, Database, Descriptor};
use regex_cache::CachedRegex;

/// Inputs longer than this many bytes are rejected before any parsing, so a hostile payload
/// costs nothing.
pub const MAX_INPUT_LEN: usize = 64;

/// E.164 allows at most 15 digits, country calling code included.
const MAX_E164_DIGITS: usize = 15;

/// The region id libphonenumber gives to non-geographic entities (+800, +882, +883, +979...).
const NON_GEOGRAPHIC: &str = "001";

/// What Twilio puts in `From` when the caller withheld their number.
const TWILIO_ANONYMOUS: &[&str] = &[
    "+266696687",
    "+7378742833",
    "+2562533",
    "+8656696",
    "+86282452253",
];

/// Words carriers and providers use instead of a withheld caller number.
const WITHHELD_WORDS: &[&str] = &[
    "anonymous",
    "restricted",
    "private",
    "unknown",
    "unavailable",
    "withheld",
];

/// A valid phone number normalised to E.164 (`+4930...`).
///
/// Personal data: `Debug` prints `E164(‹masked›)` and `Display` prints `‹masked›`. Use
/// [`E164::masked`] for people without personal-data rights and [`E164::as_str`] only to seal
/// or HMAC the number.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct E164(String);

impl E164 {
    /// A number read back from storage, where only values that passed [`parse_e164`] are
    /// ever written. Skips the ~10 µs validation; a malformed value yields `None`.
    pub fn from_stored(text: &str) -> Option<E164> {
        let digits = text.strip_prefix('+')?;
        let plausible = (2..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        plausible.then(|| E164(text.to_owned()))
    }

    /// The full `+...` string, for sealing and blind indexes only.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number for analysts without personal-data rights: the `+`, the country calling code
    /// and the last two digits, e.g. `+49 •••••••78`.
    pub fn masked(&self) -> String {
        let (code, national) = self.split();
        let hidden = national.len().saturating_sub(2);
        let mut out = format!("+{code} ");
        out.extend(std::iter::repeat_n('•', hidden));
        out.push_str(national.get(hidden..).unwrap_or_default());
        out
    }

    /// The country calling code, e.g. 49 for Germany or 1 for the NANP.
    pub fn calling_code(&self) -> u16 {
        self.split().0
    }

    /// The ISO 3166-1 alpha-2 region libphonenumber assigns the number to (`"GB"`, `"RE"`,
    /// `"AX"`...), `None` for non-geographic numbers such as +800 or +882.
    pub fn region(&self) -> Option<&'static str> {
        let (code, national) = self.split();
        let id = region_metadata(database(), code, national)?.id();
        (id != NON_GEOGRAPHIC).then_some(id)
    }

    /// Every region of this number's calling code (cheap: no number pattern is tried).
    pub(crate) fn code_regions(&self) -> impl Iterator<Item = &'static str> {
        let (code, _) = self.split();
        database().region(&code).unwrap_or_default().into_iter()
    }

    /// Every other region sharing this number's calling code for which the national number is
    /// also a valid number: where the numbering plan cannot tell the regions apart.
    pub(crate) fn also_valid_in(&self) -> impl Iterator<Item = &'static str> + '_ {
        let (code, national) = self.split();
        let detected = self.region();
        let db = database();
        db.region(&code)
            .unwrap_or_default()
            .into_iter()
            .filter(move |id| *id != NON_GEOGRAPHIC && Some(*id) != detected)
            .filter_map(|id| db.by_id(id))
            .filter(move |meta| has_known_type(meta, national))
            .map(Metadata::id)
    }

    /// Calling code and national significant number. Calling codes are prefix-free, so the
    /// first known prefix is the code; a constructed `E164` always has one.
    fn split(&self) -> (u16, &str) {
        let digits = self.0.strip_prefix('+').unwrap_or(&self.0);
        split_calling_code(digits).unwrap_or((0, digits))
    }
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("E164(‹masked›)")
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("‹masked›")
    }
}

/// Why a phone number was rejected. Messages never contain the input: it is personal data.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PhoneError {
    #[error("phone number is empty")]
    Empty,
    #[error("phone number input is longer than {MAX_INPUT_LEN} bytes")]
    InputTooLong,
    #[error(
        "phone number may only contain digits, a leading '+', spaces and the separators - . / ( )"
    )]
    NotANumber,
    #[error("phone number must be in international format, starting with '+' or '00'")]
    MissingPlus,
    #[error("phone number starts with an unknown country calling code")]
    UnknownCallingCode,
    #[error("phone number has too few digits for its country calling code")]
    TooShort,
    #[error("phone number has too many digits for its country calling code")]
    TooLong,
    #[error("phone number is not a valid number in any region")]
    Invalid,
}

/// Parses a number given in international format (`+44 20 7946 0123`, `+1 (415) 555-0100`,
/// `0049 30 123456`) and validates it with libphonenumber.
///
/// There is no default region: a number without `+` or `00` is [`PhoneError::MissingPlus`].
/// A trunk prefix written after the country code (`+44 (0)20 ...`) is dropped as
/// libphonenumber does.
pub fn parse_e164(input: &str) -> Result<E164, PhoneError> {
    if input.len() > MAX_INPUT_LEN {
        return Err(PhoneError::InputTooLong);
    }
    let digits = international_digits(input)?;
    if digits.len() > MAX_E164_DIGITS {
        return Err(PhoneError::TooLong);
    }
    let (code, national) = split_calling_code(&digits).ok_or(PhoneError::UnknownCallingCode)?;
    let db = database();

    if is_valid_number(db, code, national) {
        return Ok(E164(format!("+{digits}")));
    }
    // Not valid as written: let libphonenumber's parser drop a trunk prefix ("+44 (0)20...")
    // and accept what it makes of the number only if that is valid too.
    if let Ok(parsed) = phonenumber::parse(None, format!("+{digits}")) {
        let stripped = parsed.national().to_string();
        if parsed.code().value() == code
            && stripped.len() < national.len()
            && national.ends_with(&stripped)
            && phonenumber::is_valid(&parsed)
            && is_valid_number(db, code, &stripped)
        {
            return Ok(E164(format!("+{code}{stripped}")));
        }
    }
    Err(length_error(db, code, national.len()))
}

/// Parses a caller number, which may be withheld.
///
/// Returns `Ok(None)` for an empty or blank input, the words carriers use for a withheld
/// number (`anonymous`, `restricted`, `private`, `unknown`, `unavailable`, `withheld`, in any
/// case) and the placeholder numbers Twilio sends for anonymous callers; otherwise
/// [`parse_e164`].
pub fn parse_caller_number(input: &str) -> Result<Option<E164>, PhoneError> {
    if input.len() > MAX_INPUT_LEN {
        return Err(PhoneError::InputTooLong);
    }
    let trimmed = input.trim();
    let withheld = trimmed.is_empty()
        || TWILIO_ANONYMOUS.contains(&trimmed)
        || WITHHELD_WORDS
            .iter()
            .any(|word| trimmed.eq_ignore_ascii_case(word));
    if withheld {
        return Ok(None);
    }
    parse_e164(trimmed).map(Some)
}

fn database() -> &'static Database {
    &DATABASE
}

/// The digits after the international prefix (`+` or `00`), separators removed.
fn international_digits(input: &str) -> Result<String, PhoneError> {
    let mut digits = String::with_capacity(input.len());
    let mut plus = false;
    for c in input.chars() {
        match c {
            '0'..='9' => digits.push(c),
            '+' if !plus && digits.is_empty() => plus = true,
            '-' | '.' | '/' | '(' | ')' => {}
            // Hyphens and dashes that word processors substitute for '-'.
            '\u{2010}'..='\u{2015}' | '\u{2212}' => {}
            c if c.is_whitespace() => {}
            _ => return Err(PhoneError::NotANumber),
        }
    }
    if digits.is_empty() {
        return Err(if plus {
            PhoneError::TooShort
        } else if input.trim().is_empty() {
            PhoneError::Empty
        } else {
            PhoneError::NotANumber
        });
    }
    let digits = if plus {
        digits
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest.to_owned()
    } else {
        return Err(PhoneError::MissingPlus);
    };
    if digits.is_empty() {
        return Err(PhoneError::TooShort);
    }
    Ok(digits)
}

/// Splits `digits` (no `+`) into a known country calling code and the national number.
fn split_calling_code(digits: &str) -> Option<(u16, &str)> {
    let db = database();
    (1..=3).find_map(|len| {
        let prefix = digits.get(..len)?;
        if prefix.starts_with('0') {
            return None;
        }
        let code: u16 = prefix.parse().ok()?;
        db.region(&code)?;
        Some((code, digits.get(len..)?))
    })
}

/// libphonenumber's `getRegionCodeForNumber`: the only region of the calling code, or the
/// first region (main country first) whose leading digits match, or, for regions without
/// leading digits, for which the number has a known type.
///
/// phonenumber 0.3 has the same rule, but its `Country::id` drops the national number's
/// leading zeros (so Italian fixed lines get no region), hence this copy on its metadata.
fn region_metadata(db: &'static Database, code: u16, national: &str) -> Option<&'static Metadata> {
    let regions = db.region(&code)?;
    if let [only] = regions.as_slice() {
        return if *only == NON_GEOGRAPHIC {
            // Non-geographic entities all have the id "001": look them up by code.
            db.by_code(&code)?.into_iter().next()
        } else {
            db.by_id(*only)
        };
    }
    regions
        .into_iter()
        .filter_map(|id| db.by_id(id))
        .find(|meta| match meta.leading_digits() {
            Some(leading) => matches_at_start(leading, national),
            None => has_known_type(meta, national),
        })
}

/// libphonenumber's `isValidNumber`: the number has a known type in the region it belongs to.
///
/// This is what `phonenumber::is_valid` computes, but applied to the number as written:
/// phonenumber 0.3's parser strips a national prefix even from numbers that are valid as they
/// stand (+370 800..., +7 800...).
fn is_valid_number(db: &'static Database, code: u16, national: &str) -> bool {
    region_metadata(db, code, national).is_some_and(|meta| has_known_type(meta, national))
}

/// Whether `national` matches the region's general pattern and one of its number types, the
/// same descriptors in the same way as phonenumber's `number_type`.
fn has_known_type(meta: &'static Metadata, national: &str) -> bool {
    let d = meta.descriptors();
    descriptor_matches(d.general(), national)
        // Any type will do; the common ones first, so most numbers stop after one or two.
        && [
            d.fixed_line(),
            d.mobile(),
            d.toll_free(),
            d.voip(),
            d.premium_rate(),
            d.shared_cost(),
            d.personal_number(),
            d.pager(),
            d.uan(),
            d.voicemail(),
        ]
        .into_iter()
        .flatten()
        .any(|desc| descriptor_matches(desc, national))
}

/// phonenumber's `Descriptor::is_match`, through [`matches_at_start`].
fn descriptor_matches(desc: &'static Descriptor, national: &str) -> bool {
    let lengths = desc.possible_length();
    (lengths.is_empty() || lengths.contains(&(national.len() as u16)))
        && matches_at_start(desc.national_number(), national)
}

/// Whether the metadata's `pattern` matches `text` from its first character, as phonenumber
/// matches it (same pattern, same `ignore_whitespace` flag, match at the first character),
/// with each pattern compiled once for the life of the process.
///
/// phonenumber 0.3 looks every pattern up, at every match, in one 100-entry LRU cache behind
/// a mutex shared by all threads, keyed by the pattern's text: each lookup hashes a pattern of
/// up to several hundred bytes with SipHash (9 % of the server's CPU in the batch-ingest
/// profile; a UK number took 4.3 µs, 0.4 µs this way). The metadata is a static that is never
/// freed or moved, so a pattern's address identifies it; there are as many entries as the
/// metadata has patterns, at most.
fn matches_at_start(pattern: &'static CachedRegex, text: &str) -> bool {
    static COMPILED: LazyLock<RwLock<HashMap<usize, &'static regex::Regex>>> =
        LazyLock::new(|| RwLock::new(HashMap::new()));
    let key = std::ptr::from_ref(pattern) as usize;
    let known = COMPILED
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&key)
        .copied();
    let regex = match known {
        Some(regex) => regex,
        // Built as phonenumber's loader builds its patterns (whitespace in them is layout).
        None => match regex::RegexBuilder::new(pattern.as_str())
            .ignore_whitespace(true)
            .build()
        {
            Ok(regex) => {
                let regex: &'static regex::Regex = Box::leak(Box::new(regex));
                *COMPILED
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .entry(key)
                    .or_insert(regex)
            }
            // phonenumber compiled it once already; should this build refuse it, match as
            // phonenumber does.
            Err(_) => return pattern.find(text).is_some_and(|m| m.start() == 0),
        },
    };
    regex.find(text).is_some_and(|m| m.start() == 0)
}

/// The most helpful error for an invalid number: its length against every length the
/// calling code's regions allow.
fn length_error(db: &'static Database, code: u16, len: usize) -> PhoneError {
    let lengths: Vec<usize> = db
        .by_code(&code)
        .unwrap_or_default()
        .into_iter()
        .flat_map(|meta| {
            let d = meta.descriptors();
            [d.fixed_line(), d.mobile(), d.toll_free(), d.voip()]
                .into_iter()
                .flatten()
                .flat_map(|desc| desc.possible_length().iter().map(|l| usize::from(*l)))
                .collect::<Vec<_>>()
        })
        .collect();
    match (lengths.iter().min(), lengths.iter().max()) {
        (Some(min), _) if len < *min => PhoneError::TooShort,
        (_, Some(max)) if len > *max => PhoneError::TooLong,
        _ => PhoneError::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn international_numbers_are_normalised_to_e164() {
        let cases: &[(&str, &str)] = &[
            ("+44 20 7946 0123", "+442079460123"),
            ("+442079460123", "+442079460123"),
            ("  +44 20 7946 0123\n", "+442079460123"),
            ("+44 (0)20 7946 0123", "+442079460123"),
            ("(+44) 20-7946-0123", "+442079460123"),
            ("0044 20 7946 0123", "+442079460123"),
            ("+1 (415) 555-0100", "+14155550100"),
            ("+1.415.555.0100", "+14155550100"),
            ("+1 415/555 01 99", "+14155550199"),
            ("+1\t212\u{a0}555\u{2013}0100", "+12125550100"),
            ("+49 30 123456", "+4930123456"),
            ("+49 (0)30 123456", "+4930123456"),
            ("00 49 30 123456", "+4930123456"),
            ("+33 6 12 34 56 78", "+33612345678"),
            ("+33 0 6 12 34 56 78", "+33612345678"),
            // Italian fixed lines keep their leading zero.
            ("+39 02 1234 5678", "+390212345678"),
            ("+39 06 698 12345", "+390669812345"),
            // Valid as written; phonenumber's parser alone would strip the leading 8.
            ("+370 800 12345", "+37080012345"),
            ("+7 800 123 4567", "+78001234567"),
            ("+800 1234 5678", "+80012345678"),
        ];
        for (input, expected) in cases {
            let parsed = parse_e164(input).map(|n| n.as_str().to_owned());
            assert_eq!(parsed.as_deref(), Ok(*expected), "parse_e164({input:?})");
        }
    }

    #[test]
    fn malformed_or_invalid_numbers_are_rejected_with_the_reason() {
        let too_long_input = format!("+{}", "1".repeat(MAX_INPUT_LEN));
        let cases: &[(&str, PhoneError)] = &[
            ("", PhoneError::Empty),
            (" \t ", PhoneError::Empty),
            (&too_long_input, PhoneError::InputTooLong),
            ("020 7946 0123", PhoneError::MissingPlus),
            ("4930123456", PhoneError::MissingPlus),
            ("(415) 555-0100", PhoneError::MissingPlus),
            ("0 49 30 123456", PhoneError::MissingPlus),
            ("++44 20 7946 0123", PhoneError::NotANumber),
            ("++1", PhoneError::NotANumber),
            ("+44 20 +7946 0123", PhoneError::NotANumber),
            ("+49 abc", PhoneError::NotANumber),
            ("+1-800-FLOWERS", PhoneError::NotANumber),
            ("tel:+4930123456", PhoneError::NotANumber),
            ("+44 20 7946 0123 ext. 12", PhoneError::NotANumber),
            ("+44 20 7946 0123#", PhoneError::NotANumber),
            ("+49 30 123456*", PhoneError::NotANumber),
            ("＋４９ ３０ １２３４５６", PhoneError::NotANumber),
            ("anonymous", PhoneError::NotANumber),
            ("+", PhoneError::TooShort),
            ("00", PhoneError::TooShort),
            ("+ - ( )", PhoneError::TooShort),
            ("+44", PhoneError::TooShort),
            ("+12", PhoneError::TooShort),
            ("+4412", PhoneError::TooShort),
            ("+49 1234", PhoneError::TooShort),
            ("+1 415 555 01000", PhoneError::TooLong),
            ("+44 20 7946 0123 4", PhoneError::TooLong),
            ("+44 20 7946 0123 4567 8", PhoneError::TooLong),
            ("+0 123456", PhoneError::UnknownCallingCode),
            ("+999 123456", PhoneError::UnknownCallingCode),
            ("+00 44 20 7946 0123", PhoneError::UnknownCallingCode),
            ("+44 1632 960123", PhoneError::Invalid),
            ("+44 7700 900123", PhoneError::Invalid),
            ("+1 555 555 0100", PhoneError::Invalid),
            ("+1 415 055 0100", PhoneError::Invalid),
            ("+49 0 30", PhoneError::TooShort),
            ("+49 0 30 12", PhoneError::Invalid),
        ];
        for (input, expected) in cases {
            assert_eq!(
                parse_e164(input).as_ref().map(E164::as_str),
                Err(expected),
                "parse_e164({input:?})"
            );
        }
    }

    #[test]
    fn withheld_caller_numbers_are_none() {
        let cases = [
            "",
            "   ",
            "anonymous",
            "Anonymous",
            " ANONYMOUS ",
            "restricted",
            "Private",
            "unknown",
            "UNAVAILABLE",
            "withheld",
            "+266696687",
            "+7378742833",
            "+2562533",
            "+8656696",
            "+86282452253",
            " +266696687 ",
        ];
        for input in cases {
            assert_eq!(
                parse_caller_number(input),
                Ok(None),
                "parse_caller_number({input:?})"
            );
        }
    }

    #[test]
    fn caller_numbers_that_are_not_withheld_are_parsed() {
        let cases: &[(&str, Result<Option<&str>, PhoneError>)] = &[
            ("+44 20 7946 0123", Ok(Some("+442079460123"))),
            (" +1 415 555 0100 ", Ok(Some("+14155550100"))),
            ("anonymously", Err(PhoneError::NotANumber)),
            ("no caller id", Err(PhoneError::NotANumber)),
            ("020 7946 0123", Err(PhoneError::MissingPlus)),
            ("+266 696 6870", Err(PhoneError::TooShort)),
        ];
        for (input, expected) in cases {
            let parsed = parse_caller_number(input);
            let parsed = parsed.as_ref().map(|n| n.as_ref().map(E164::as_str));
            assert_eq!(
                parsed,
                expected.as_ref().map(|n| *n),
                "parse_caller_number({input:?})"
            );
        }
    }

    #[test]
    fn calling_code_and_region_come_from_libphonenumber() {
        let cases: &[(&str, u16, Option<&str>)] = &[
            ("+442079460123", 44, Some("GB")),
            ("+441534456789", 44, Some("JE")),
            ("+14155550100", 1, Some("US")),
            ("+15062345678", 1, Some("CA")),
            ("+390212345678", 39, Some("IT")),
            ("+390669812345", 39, Some("VA")),
            ("+358181234567", 358, Some("AX")),
            ("+358131234567", 358, Some("FI")),
            ("+262269601234", 262, Some("YT")),
            ("+590590271234", 590, Some("BL")),
            ("+77123456789", 7, Some("KZ")),
            ("+80012345678", 800, None),
            ("+8823421234", 882, None),
        ];
        for (input, code, region) in cases {
            let number = parse_e164(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(number.calling_code(), *code, "calling code of {input}");
            assert_eq!(number.region(), *region, "region of {input}");
        }
    }

    #[test]
    fn masked_keeps_only_the_calling_code_and_the_last_two_digits() {
        let cases: &[(&str, &str)] = &[
            ("+49 30 123456", "+49 ••••••56"),
            ("+49 30 1234567 8", "+49 ••••••••78"),
            ("+44 20 7946 0123", "+44 ••••••••23"),
            ("+1 415 555 0100", "+1 ••••••••00"),
            ("+39 02 1234 5678", "+39 ••••••••78"),
            ("+358 18 1234567", "+358 •••••••67"),
            ("+800 1234 5678", "+800 ••••••78"),
        ];
        for (input, expected) in cases {
            let number = parse_e164(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(number.masked(), *expected, "masked({input:?})");
        }
    }

    #[test]
    fn debug_and_display_never_show_the_digits() {
        let number = parse_e164("+44 20 7946 0123").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(format!("{number:?}"), "E164(‹masked›)");
        assert_eq!(format!("{number:#?}"), "E164(‹masked›)");
        assert_eq!(number.to_string(), "‹masked›");
        let wrapped = format!("{:?}", parse_caller_number("+44 20 7946 0123"));
        assert_eq!(wrapped, "Ok(Some(E164(‹masked›)))");
    }

    #[test]
    fn error_messages_never_repeat_the_input() {
        let inputs = [
            "",
            "020 7946 0123",
            "++44 20 7946 0123",
            "+49 abc",
            "+4412",
            "+44 20 7946 0123 4567 8",
            "+999 123456",
            "+44 7700 900123",
            "+1-800-FLOWERS",
        ];
        for input in inputs {
            let Err(error) = parse_e164(input) else {
                panic!("{input:?} should be rejected");
            };
            let message = error.to_string();
            let digits: String = input.chars().filter(char::is_ascii_digit).collect();
            assert!(
                !message.contains(input.trim()) || input.trim().is_empty(),
                "{message}"
            );
            assert!(digits.is_empty() || !message.contains(&digits), "{message}");
            assert!(!message.ends_with('.'), "{message}");
            assert!(message.starts_with(char::is_lowercase), "{message}");
        }
    }

    #[test]
    fn odd_inputs_are_rejected_without_panicking() {
        let ten_thousand_digits = format!("+{}", "4".repeat(10_000));
        let ten_thousand_spaces = " ".repeat(10_000);
        let odd: &[&str] = &[
            "+",
            "++1",
            "+++",
            "00",
            "0000",
            "+0",
            "+00",
            "\0",
            "+44\u{0}20 7946 0123",
            "+44 20\u{7}7946 0123",
            "\u{202e}+44 20 7946 0123",
            "+44 20 7946 0123\u{200b}",
            "+٤٤ ٢٠ ٧٩٤٦ ٠١٢٣",
            "+44 20 7946 0123 🙂",
            "☎ +44 20 7946 0123",
            "+1 ((((((((((((((((",
            "))))+1",
            ";phone-context=+44",
            "+44;ext=1",
            &ten_thousand_digits,
            &ten_thousand_spaces,
            "+999999999999999",
            "+18446744073709551616",
            "+65535",
            "+65536 1234",
        ];
        for input in odd {
            assert!(parse_e164(input).is_err(), "parse_e164 accepted {input:?}");
            let _ = parse_caller_number(input);
        }
    }

    /// Each region's example numbers from libphonenumber's metadata.
    fn example_numbers() -> Vec<(String, String, String)> {
        let mut examples = Vec::new();
        for meta in database().iter() {
            let d = meta.descriptors();
            let descriptors = [
                d.fixed_line(),
                d.mobile(),
                d.toll_free(),
                d.premium_rate(),
                d.shared_cost(),
                d.personal_number(),
                d.voip(),
                d.pager(),
                d.uan(),
                d.voicemail(),
            ];
            for example in descriptors
                .into_iter()
                .flatten()
                .filter_map(|d| d.example())
            {
                examples.push((
                    meta.id().to_owned(),
                    format!("+{}{example}", meta.country_code()),
                    example.to_owned(),
                ));
            }
        }
        examples
    }

    #[test]
    fn every_example_number_in_libphonenumber_metadata_is_accepted() {
        let examples = example_numbers();
        assert!(examples.len() > 1000, "only {} examples", examples.len());
        for (region, input, _) in &examples {
            let number = parse_e164(input).unwrap_or_else(|e| panic!("{region} {input}: {e}"));
            assert_eq!(number.as_str(), input, "{region} example stays as written");
        }
    }

    #[test]
    fn validity_agrees_with_phonenumber_is_valid_when_its_parser_keeps_the_number() {
        let mut compared = 0;
        for (region, input, national) in example_numbers() {
            let Ok(parsed) = phonenumber::parse(None, &input) else {
                continue;
            };
            if parsed.national().to_string() != national {
                continue; // phonenumber stripped a national prefix from a valid number
            }
            compared += 1;
            assert!(phonenumber::is_valid(&parsed), "{region} {input}");
            for suffix in ["0", "00"] {
                let longer = format!("{input}{suffix}");
                if longer.len() > MAX_E164_DIGITS + 1 {
                    continue; // phonenumber accepts more digits than E.164 allows
                }
                if let Ok(parsed) = phonenumber::parse(None, &longer) {
                    assert_eq!(
                        parse_e164(&longer).is_ok(),
                        phonenumber::is_valid(&parsed),
                        "{region} {longer}"
                    );
                }
            }
        }
        assert!(compared > 1000, "only {compared} compared");
    }

    proptest! {
        #[test]
        fn parsing_any_string_never_panics(input in "(?s:.){0,80}") {
            let _ = parse_e164(&input);
            let _ = parse_caller_number(&input);
        }

        #[test]
        fn parsing_any_phone_like_string_never_panics(input in "[+]?[0-9 ()./-]{0,30}") {
            let _ = parse_e164(&input);
            let _ = parse_caller_number(&input);
        }

        #[test]
        fn accepted_numbers_are_e164_round_trip_and_stay_masked(
            input in "[+][1-9][0-9]{6,14}",
        ) {
            if let Ok(number) = parse_e164(&input) {
                let full = number.as_str();
                prop_assert!(full.starts_with('+'));
                prop_assert!(full[1..].chars().all(|c| c.is_ascii_digit()));
                prop_assert!(full.len() <= 16);
                prop_assert_eq!(parse_e164(full), Ok(number.clone()));
                prop_assert!(!number.masked().contains(&full[1..]));
                let shown = format!("{number:?} {number}");
                prop_assert!(!shown.contains(&full[1..]));
                let code = format!("+{}", number.calling_code());
                prop_assert!(full.starts_with(&code));
            }
        }
    }
}
