//! Which callers Ringfence treats as protected by the GDPR, the UK GDPR or the Swiss FADP.
//!
//! The scope is decided from the region libphonenumber assigns to a number, never from the
//! calling code alone (+33 is France, but +687 New Caledonia is not in scope, and +44 also
//! dials Jersey). Where the numbering plan cannot tell an in-scope region from an out-of-scope
//! one, the caller is treated as in scope: a wrong "in" costs a redaction, a wrong "out" a
//! breach.

use crate::phone::E164;

/// The ISO 3166-1 alpha-2 codes in scope, sorted: the 27 EU member states, the outermost
/// regions and parts that have their own code (Åland, French Guiana, Guadeloupe, Martinique,
/// Mayotte, Réunion, Saint-Martin), the EEA states Iceland, Liechtenstein and Norway, the United
/// Kingdom and Switzerland.
///
/// Crown dependencies (JE, GG, IM), Gibraltar, the micro-states (AD, MC, SM, VA), the Faroe
/// Islands, Greenland, Svalbard, the overseas countries and territories (NC, PF, PM, WF, BL,
/// AW, CW, SX, BQ) are not in the list.
pub const GDPR_REGIONS: &[&str] = &[
    "AT", "AX", "BE", "BG", "CH", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GB", "GF", "GP",
    "GR", "HR", "HU", "IE", "IS", "IT", "LI", "LT", "LU", "LV", "MF", "MQ", "MT", "NL", "NO", "PL",
    "PT", "RE", "RO", "SE", "SI", "SK", "YT",
];

/// Whether an ISO 3166-1 alpha-2 code (any case) is in scope. Also used for IP countries.
pub fn is_gdpr_region(iso2: &str) -> bool {
    let [a, b] = iso2.as_bytes() else {
        return false;
    };
    let upper = [a.to_ascii_uppercase(), b.to_ascii_uppercase()];
    GDPR_REGIONS
        .binary_search_by(|region| region.as_bytes().cmp(&upper[..]))
        .is_ok()
}

/// Whether the caller behind `number` is in scope: `Some(true)` in scope, `Some(false)` out
/// of scope, `None` when no region can be known (non-geographic numbers: +800, +882, +883,
/// +979...).
///
/// A number libphonenumber assigns to an out-of-scope region is still in scope when it is also
/// a valid number of an in-scope region sharing its calling code (e.g. a +590 range used both
/// in Saint-Martin and in Saint-Barthélemy).
pub fn gdpr_scope_of_number(number: &E164) -> Option<bool> {
    let region = number.region()?;
    // The search of the regions sharing the number tries every one's patterns (24 of them
    // for +1); a calling code none of whose regions is in scope needs none.
    Some(
        is_gdpr_region(region)
            || (number.code_regions().any(is_gdpr_region)
                && number.also_valid_in().any(is_gdpr_region)),
    )
}

/// A call's scope from its number's and its visit's: in scope if either is; out of scope if
/// either is known to be out and none is in; unknown otherwise.
pub fn combine_scope(number: Option<bool>, visit: Option<bool>) -> Option<bool> {
    match (number, visit) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), _) | (_, Some(false)) => Some(false),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phone::parse_e164;

    fn number(input: &str) -> E164 {
        parse_e164(input).unwrap_or_else(|e| panic!("test number {input} does not parse: {e}"))
    }

    /// (expected region, number, in scope) — mostly libphonenumber's own example numbers.
    const SCOPE_CASES: &[(&str, &str, bool)] = &[
        // EU member states.
        ("AT", "+43 1 234567890", true),
        ("BE", "+32 12 34 56 78", true),
        ("BG", "+359 2 123 456", true),
        ("CY", "+357 22 345678", true),
        ("CZ", "+420 212 345 678", true),
        ("DE", "+49 30 123456", true),
        ("DE", "+49 1512 3456789", true),
        ("DK", "+45 32 12 34 56", true),
        ("EE", "+372 321 2345", true),
        ("ES", "+34 810 12 34 56", true),
        ("ES", "+34 922 12 34 56", true), // Canary Islands (Tenerife)
        ("ES", "+34 956 12 34 56", true), // Ceuta shares Cádiz's 956
        ("FI", "+358 13 1234567", true),
        ("FR", "+33 1 23 45 67 89", true),
        ("FR", "+33 6 12 34 56 78", true),
        ("GR", "+30 21 2345 6789", true),
        ("HR", "+385 1 234 5678", true),
        ("HU", "+36 1 234 5678", true),
        ("IE", "+353 22 12345", true),
        ("IE", "+353 85 012 3456", true),
        ("IT", "+39 02 1234 5678", true),
        ("IT", "+39 312 345 6789", true),
        ("LT", "+370 312 34567", true),
        ("LU", "+352 27 12 34 56", true),
        ("LV", "+371 63 123 456", true),
        ("MT", "+356 2100 1234", true),
        ("NL", "+31 10 123 4567", true),
        ("PL", "+48 12 345 67 89", true),
        ("PT", "+351 21 234 5678", true),
        ("PT", "+351 296 123 456", true), // Azores (Ponta Delgada)
        ("PT", "+351 291 123 456", true), // Madeira (Funchal)
        ("RO", "+40 21 123 4567", true),
        ("SE", "+46 8 123 456", true),
        ("SI", "+386 1 234 56 78", true),
        ("SK", "+421 2 212 345 67", true),
        // Outermost regions and parts with their own code.
        ("AX", "+358 18 1234567", true),
        ("GF", "+594 594 10 12 34", true),
        ("GP", "+590 590 20 12 34", true),
        ("GP", "+590 690 00 12 34", true),
        ("MQ", "+596 596 30 12 34", true),
        ("RE", "+262 262 16 12 34", true),
        ("RE", "+262 692 12 34 56", true),
        ("YT", "+262 269 60 12 34", true),
        ("YT", "+262 639 01 23 45", true),
        // EEA, the UK and Switzerland.
        ("IS", "+354 410 1234", true),
        ("LI", "+423 234 5678", true),
        ("NO", "+47 21 23 45 67", true),
        ("GB", "+44 20 7946 0123", true),
        ("GB", "+44 121 234 5678", true),
        ("GB", "+44 7400 123456", true),
        ("CH", "+41 21 234 56 78", true),
        // Sharing a calling code with an in-scope state, but out of scope.
        ("FO", "+298 201234", false),
        ("GL", "+299 32 10 00", false),
        ("NC", "+687 20 12 34", false),
        ("PF", "+689 40 41 23 45", false),
        ("PM", "+508 43 01 23", false),
        ("WF", "+681 72 12 34", false),
        ("CW", "+599 9 435 1234", false),
        ("AW", "+297 521 2345", false),
        ("BQ", "+599 715 1234", false),
        ("SX", "+1 721 542 5678", false),
        ("SJ", "+47 79 12 34 56", false),
        ("JE", "+44 1534 456789", false),
        ("JE", "+44 7797 712345", false),
        ("GG", "+44 1481 256789", false),
        ("GG", "+44 7781 123456", false),
        ("IM", "+44 1624 756789", false),
        ("GI", "+350 200 12345", false),
        ("VA", "+39 06 698 12345", false),
        // Mobile and service numbers of the Vatican are Italian ranges.
        ("IT", "+39 06 6990 1234", true),
        ("SM", "+378 0549 886377", false),
        ("MC", "+377 99 12 34 56", false),
        ("AD", "+376 712 345", false),
        // The rest of the world.
        ("US", "+1 415 555 0100", false),
        ("US", "+1 201 555 0123", false),
        ("CA", "+1 506 234 5678", false),
        ("PR", "+1 787 234 5678", false),
        ("RU", "+7 301 123 4567", false),
        ("RU", "+7 912 345 6789", false),
        ("KZ", "+7 712 345 6789", false),
        ("TR", "+90 212 345 6789", false),
        ("JP", "+81 3 1234 5678", false),
        ("AU", "+61 2 1234 5678", false),
        ("ZA", "+27 10 123 4567", false),
        ("BR", "+55 11 2345 6789", false),
    ];

    #[test]
    fn each_region_resolves_and_is_in_or_out_of_scope_as_the_table_says() {
        for (region, input, in_scope) in SCOPE_CASES {
            let number = number(input);
            assert_eq!(number.region(), Some(*region), "region of {input}");
            assert_eq!(
                gdpr_scope_of_number(&number),
                Some(*in_scope),
                "scope of {input} ({region})"
            );
        }
    }

    /// Numbers libphonenumber assigns to an out-of-scope region although an in-scope region
    /// sharing the calling code has the same range.
    const SHARED_RANGE_CASES: &[(&str, &str, &str)] = &[
        // 0590 27..29 and 0590 51/52/87 are listed for both Saint-Barthélemy and Saint-Martin.
        ("+590 590 27 12 34", "BL", "MF"),
        ("+590 590 29 12 34", "BL", "MF"),
        ("+590 590 87 12 34", "BL", "MF"),
    ];

    #[test]
    fn a_range_shared_with_an_in_scope_region_is_in_scope() {
        for (input, detected, shared_with) in SHARED_RANGE_CASES {
            let number = number(input);
            assert_eq!(number.region(), Some(*detected), "region of {input}");
            assert!(!is_gdpr_region(detected), "{detected} must be out of scope");
            assert!(
                number.also_valid_in().any(|r| r == *shared_with),
                "{input} is also valid in {shared_with}"
            );
            assert_eq!(
                gdpr_scope_of_number(&number),
                Some(true),
                "scope of {input}"
            );
        }
    }

    #[test]
    fn non_geographic_numbers_have_no_scope() {
        for input in [
            "+800 1234 5678",
            "+808 1234 5678",
            "+870 301 234 567",
            "+881 612 345 678",
            "+882 34 212 34",
            "+883 510 012 345",
            "+888 123 4567 8901",
            "+979 1 2345 6789",
        ] {
            let number = number(input);
            assert_eq!(number.region(), None, "region of {input}");
            assert_eq!(gdpr_scope_of_number(&number), None, "scope of {input}");
        }
    }

    #[test]
    fn region_codes_are_matched_in_any_case() {
        let cases: &[(&str, bool)] = &[
            ("DE", true),
            ("de", true),
            ("De", true),
            ("gb", true),
            ("ch", true),
            ("re", true),
            ("ax", true),
            ("US", false),
            ("je", false),
            ("VA", false),
            ("", false),
            ("D", false),
            ("DEU", false),
            ("EU", false),
            ("UK", false),
            ("É", false),
            ("ÉÉ", false),
        ];
        for (iso2, expected) in cases {
            assert_eq!(is_gdpr_region(iso2), *expected, "is_gdpr_region({iso2:?})");
        }
    }

    #[test]
    fn the_region_list_is_sorted_unique_and_known_to_libphonenumber() {
        assert_eq!(GDPR_REGIONS.len(), 27 + 7 + 3 + 2);
        assert!(
            GDPR_REGIONS.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        );
        for region in GDPR_REGIONS {
            assert!(
                phonenumber::metadata::DATABASE.by_id(*region).is_some(),
                "{region} has phone metadata"
            );
        }
    }

    #[test]
    fn every_example_number_of_an_in_scope_region_is_in_scope() {
        for region in GDPR_REGIONS {
            let Some(meta) = phonenumber::metadata::DATABASE.by_id(*region) else {
                panic!("{region} has phone metadata");
            };
            let d = meta.descriptors();
            let examples = [d.fixed_line(), d.mobile(), d.toll_free(), d.voip()]
                .into_iter()
                .flatten()
                .filter_map(|desc| desc.example());
            for example in examples {
                let input = format!("+{}{example}", meta.country_code());
                let number = number(&input);
                assert_eq!(
                    gdpr_scope_of_number(&number),
                    Some(true),
                    "scope of {input}"
                );
            }
        }
    }

    #[test]
    fn scope_combines_number_and_visit() {
        assert_eq!(combine_scope(Some(false), Some(true)), Some(true));
        assert_eq!(combine_scope(Some(true), Some(false)), Some(true));
        assert_eq!(combine_scope(None, Some(true)), Some(true));
        assert_eq!(combine_scope(None, Some(false)), Some(false));
        assert_eq!(combine_scope(Some(false), None), Some(false));
        assert_eq!(combine_scope(None, None), None);
    }
}
