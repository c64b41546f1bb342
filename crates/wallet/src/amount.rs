//! Amounts in human units: `"0.5"` with 8 decimals is `50_000_000` base units.
//!
//! Invariants:
//! - Parsing is exact decimal arithmetic on `u128` (no floating point): the result is the
//!   exact number of base units, or a typed [`AmountError`]; it never rounds and never
//!   panics, whatever the input.
//! - Accepted syntax: optional surrounding whitespace, then one or more ASCII digits,
//!   optionally followed by `.` and one or more digits. Extra fractional digits beyond
//!   `decimals` are accepted only when they are zeros (`"1.500000000"` with 8 decimals);
//!   a non-zero digit there is [`AmountError::TooManyDecimals`]. No signs, exponents,
//!   separators or leading/trailing `.`.
//! - [`format_amount`] writes the shortest exact form (trailing fractional zeros and a bare
//!   `.` removed), and `parse_amount(&format_amount(v, d), d) == Ok(v)` for every `u128` `v`
//!   and every `d <= MAX_DECIMALS`.
//! - A `sat`/`sats` suffix means BTC base units (an integer, no fraction).

use parabit_primitives::AssetId;

/// The largest number of decimals [`parse_amount`] accepts: `10^38` is the largest power of
/// ten below `u128::MAX`.
pub const MAX_DECIMALS: u8 = 38;

/// Why a string is not an amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Nothing (or only whitespace) was given.
    #[error("empty amount")]
    Empty,
    /// A leading minus sign.
    #[error("amount {0:?} is negative; amounts must be zero or more")]
    Negative(String),
    /// Not a plain decimal number.
    #[error("invalid amount {0:?}: expected a decimal number such as 1, 0.5 or 1000")]
    Invalid(String),
    /// More non-zero fractional digits than the asset has decimals.
    #[error("amount {input:?} has more than {decimals} decimal places")]
    TooManyDecimals {
        /// The text given.
        input: String,
        /// The asset's decimals.
        decimals: u8,
    },
    /// The value does not fit in 128 bits of base units.
    #[error("amount {0:?} is too large")]
    Overflow(String),
    /// More decimals than any `u128` amount can carry.
    #[error("an asset cannot have {0} decimals (at most {MAX_DECIMALS})")]
    DecimalsTooLarge(u8),
    /// An amount with no unit where one is required (`0.5 BTC`).
    #[error("amount {0:?} has no unit; write e.g. \"0.5 BTC\" or \"1000sat\"")]
    MissingUnit(String),
    /// A unit that is not a known asset symbol.
    #[error("unknown unit {0:?}")]
    UnknownUnit(String),
}

/// Parses a decimal amount in display units into base units (`"0.5"`, 8 → `50_000_000`).
pub fn parse_amount(input: &str, decimals: u8) -> Result<u128, AmountError> {
    if decimals > MAX_DECIMALS {
        return Err(AmountError::DecimalsTooLarge(decimals));
    }
    let s = input.trim();
    if s.is_empty() {
        return Err(AmountError::Empty);
    }
    if s.starts_with('-') {
        return Err(AmountError::Negative(s.to_string()));
    }
    let invalid = || AmountError::Invalid(s.to_string());
    let (int_part, frac_part) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let all_digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int_part) {
        return Err(invalid());
    }
    if let Some(f) = frac_part {
        if !all_digits(f) {
            return Err(invalid());
        }
    }
    let frac = frac_part.unwrap_or("");
    let d = usize::from(decimals);
    let (kept, dropped) = if frac.len() > d {
        frac.split_at(d)
    } else {
        (frac, "")
    };
    if dropped.bytes().any(|b| b != b'0') {
        return Err(AmountError::TooManyDecimals {
            input: s.to_string(),
            decimals,
        });
    }
    let overflow = || AmountError::Overflow(s.to_string());
    // int_part digits, then the kept fractional digits, then times 10^(decimals - kept).
    let padding = u32::try_from(d - kept.len()).map_err(|_| overflow())?;
    let mut value: u128 = 0;
    for b in int_part.bytes().chain(kept.bytes()) {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u128::from(b - b'0')))
            .ok_or_else(overflow)?;
    }
    let value = 10u128
        .checked_pow(padding)
        .and_then(|scale| value.checked_mul(scale))
        .ok_or_else(overflow)?;
    Ok(value)
}

/// Formats base units in display units, shortest exact form (`50_000_000`, 8 → `"0.5"`).
pub fn format_amount(value: u128, decimals: u8) -> String {
    let digits = value.to_string();
    let d = usize::from(decimals);
    if d == 0 {
        return digits;
    }
    let padded = if digits.len() <= d {
        format!("{}{}", "0".repeat(d + 1 - digits.len()), digits)
    } else {
        digits
    };
    let (int_part, frac_part) = padded.split_at(padded.len() - d);
    let frac = frac_part.trim_end_matches('0');
    if frac.is_empty() {
        int_part.to_string()
    } else {
        format!("{int_part}.{frac}")
    }
}

/// [`format_amount`] followed by a space and the symbol (`"0.5 BTC"`).
pub fn format_amount_with_symbol(value: u128, decimals: u8, symbol: &str) -> String {
    format!("{} {symbol}", format_amount(value, decimals))
}

/// Splits `"0.5 BTC"`, `"0.5BTC"` or `"1000sat"` into the number and the unit (if any).
/// The number is returned as written (trimmed); it is checked by [`parse_amount`] later.
pub fn parse_amount_with_unit(input: &str) -> Result<(String, Option<String>), AmountError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(AmountError::Empty);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number = number.trim();
    let unit = unit.trim();
    if number.is_empty() {
        return Err(AmountError::Invalid(s.to_string()));
    }
    if unit.is_empty() {
        return Ok((number.to_string(), None));
    }
    if !unit.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(AmountError::Invalid(s.to_string()));
    }
    Ok((number.to_string(), Some(unit.to_string())))
}

/// Parses `"<number> <unit>"` into an asset and base units. The unit is an asset symbol
/// looked up (case-insensitively: it is uppercased first) with `lookup`, which returns the
/// asset and its decimals; or `sat`/`sats` for BTC base units (an integer). A missing unit
/// is [`AmountError::MissingUnit`].
pub fn resolve_amount(
    input: &str,
    lookup: impl Fn(&str) -> Option<(AssetId, u8)>,
) -> Result<(AssetId, u128), AmountError> {
    let (number, unit) = parse_amount_with_unit(input)?;
    let Some(unit) = unit else {
        return Err(AmountError::MissingUnit(input.trim().to_string()));
    };
    let lower = unit.to_ascii_lowercase();
    if lower == "sat" || lower == "sats" {
        return parse_amount(&number, 0).map(|v| (AssetId::BTC, v));
    }
    let symbol = unit.to_ascii_uppercase();
    let (asset, decimals) = lookup(&symbol).ok_or(AmountError::UnknownUnit(unit))?;
    parse_amount(&number, decimals).map(|v| (asset, v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_common_amounts() {
        assert_eq!(parse_amount("0.5", 8), Ok(50_000_000));
        assert_eq!(parse_amount("1", 8), Ok(100_000_000));
        assert_eq!(parse_amount("0.00000001", 8), Ok(1));
        assert_eq!(parse_amount(" 21000000 ", 8), Ok(2_100_000_000_000_000));
        assert_eq!(parse_amount("0", 8), Ok(0));
        assert_eq!(parse_amount("007.10", 2), Ok(710));
        assert_eq!(parse_amount("1.500000000000", 8), Ok(150_000_000));
        assert_eq!(parse_amount("42", 0), Ok(42));
        assert_eq!(parse_amount("42.000", 0), Ok(42));
        assert_eq!(parse_amount("1", 38), Ok(10u128.pow(38)));
    }

    #[test]
    fn rejects_bad_amounts() {
        assert_eq!(parse_amount("", 8), Err(AmountError::Empty));
        assert_eq!(parse_amount("   ", 8), Err(AmountError::Empty));
        assert!(matches!(
            parse_amount("-1", 8),
            Err(AmountError::Negative(_))
        ));
        for bad in [
            "abc", "1.2.3", ".5", "5.", "+1", "1e8", "1,5", "1 000", "0x10", "½", "1..2", ".",
            "NaN", "inf",
        ] {
            assert!(
                matches!(parse_amount(bad, 8), Err(AmountError::Invalid(_))),
                "{bad:?} -> {:?}",
                parse_amount(bad, 8)
            );
        }
        assert!(matches!(
            parse_amount("0.000000001", 8),
            Err(AmountError::TooManyDecimals { decimals: 8, .. })
        ));
        assert!(matches!(
            parse_amount("1.5", 0),
            Err(AmountError::TooManyDecimals { decimals: 0, .. })
        ));
        assert_eq!(
            parse_amount(&u128::MAX.to_string(), 0),
            Ok(u128::MAX),
            "u128::MAX itself fits"
        );
        assert!(matches!(
            parse_amount("340282366920938463463374607431768211456", 0),
            Err(AmountError::Overflow(_))
        ));
        assert!(matches!(
            parse_amount("3402823669209384634633746074317682115", 8),
            Err(AmountError::Overflow(_))
        ));
        assert_eq!(
            parse_amount("1", 39),
            Err(AmountError::DecimalsTooLarge(39))
        );
    }

    #[test]
    fn formats_shortest_exact() {
        assert_eq!(format_amount(50_000_000, 8), "0.5");
        assert_eq!(format_amount(100_000_000, 8), "1");
        assert_eq!(format_amount(1, 8), "0.00000001");
        assert_eq!(format_amount(0, 8), "0");
        assert_eq!(format_amount(0, 0), "0");
        assert_eq!(format_amount(123_456, 0), "123456");
        assert_eq!(format_amount(123_450, 2), "1234.5");
        assert_eq!(
            format_amount(u128::MAX, 18),
            "340282366920938463463.374607431768211455"
        );
        assert_eq!(format_amount_with_symbol(50_000_000, 8, "BTC"), "0.5 BTC");
    }

    fn lookup(symbol: &str) -> Option<(AssetId, u8)> {
        match symbol {
            "BTC" => Some((AssetId::BTC, 8)),
            "USDX" => Some((AssetId(7), 6)),
            _ => None,
        }
    }

    #[test]
    fn units() {
        assert_eq!(
            parse_amount_with_unit("0.5 BTC"),
            Ok(("0.5".to_string(), Some("BTC".to_string())))
        );
        assert_eq!(
            parse_amount_with_unit("0.5BTC"),
            Ok(("0.5".to_string(), Some("BTC".to_string())))
        );
        assert_eq!(parse_amount_with_unit(" 12 "), Ok(("12".to_string(), None)));
        assert!(matches!(
            parse_amount_with_unit("BTC"),
            Err(AmountError::Invalid(_))
        ));
        assert!(matches!(
            parse_amount_with_unit("1 BT C"),
            Err(AmountError::Invalid(_))
        ));
        assert_eq!(parse_amount_with_unit(""), Err(AmountError::Empty));

        assert_eq!(
            resolve_amount("0.5 BTC", lookup),
            Ok((AssetId::BTC, 50_000_000))
        );
        assert_eq!(
            resolve_amount("0.5 btc", lookup),
            Ok((AssetId::BTC, 50_000_000))
        );
        assert_eq!(
            resolve_amount("2.25 USDX", lookup),
            Ok((AssetId(7), 2_250_000))
        );
        assert_eq!(resolve_amount("1000sat", lookup), Ok((AssetId::BTC, 1000)));
        assert_eq!(
            resolve_amount("1000 sats", lookup),
            Ok((AssetId::BTC, 1000))
        );
        assert!(matches!(
            resolve_amount("1.5 sat", lookup),
            Err(AmountError::TooManyDecimals { .. })
        ));
        assert_eq!(
            resolve_amount("1 DOGE", lookup),
            Err(AmountError::UnknownUnit("DOGE".to_string()))
        );
        assert!(matches!(
            resolve_amount("1", lookup),
            Err(AmountError::MissingUnit(_))
        ));
        assert!(matches!(
            resolve_amount("-1 BTC", lookup),
            Err(AmountError::Negative(_))
        ));
        assert!(matches!(
            resolve_amount("0.000000001 BTC", lookup),
            Err(AmountError::TooManyDecimals { decimals: 8, .. })
        ));
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(value in any::<u128>(), decimals in 0u8..=MAX_DECIMALS) {
            let s = format_amount(value, decimals);
            prop_assert_eq!(parse_amount(&s, decimals), Ok(value));
        }

        #[test]
        fn format_then_parse_round_trips_up_to_18(value in any::<u128>(), decimals in 0u8..=18) {
            let s = format_amount(value, decimals);
            prop_assert_eq!(parse_amount(&s, decimals), Ok(value));
            prop_assert!(!s.ends_with('0') || !s.contains('.'));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,60}", decimals in any::<u8>()) {
            let _ = parse_amount(&s, decimals);
            let _ = resolve_amount(&s, lookup);
        }

        #[test]
        fn parse_then_format_is_canonical(int in "[0-9]{1,20}", frac in "[0-9]{0,8}") {
            let s = if frac.is_empty() { int.clone() } else { format!("{int}.{frac}") };
            let v = parse_amount(&s, 8).expect("fits");
            let again = parse_amount(&format_amount(v, 8), 8);
            prop_assert_eq!(again, Ok(v));
        }
    }
}
