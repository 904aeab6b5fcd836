//! Parsers for the command line's quantities: byte rates ("2MiB/s"), durations ("1h30m") and seed ratios.
//! They are clap value parsers, so each error is one line that clap prints after the option's name.

use std::time::Duration;

/// What a rate looks like, for error messages.
const RATE_EXAMPLES: &str = "expected bytes per second, such as 500000, 500K, 1.5M or 2MiB/s";

/// The most fraction digits of a rate that count: enough to be exact to the byte for any multiple,
/// and few enough that the arithmetic below stays within `u128`.
const MAX_FRACTION_DIGITS: usize = 24;

/// Parses a rate in bytes/s: "500000", "500K", "2M", "1.5M", "1G" with binary multiples (K = 1024),
/// case-insensitive, optional trailing "B", "/s" or "B/s" ("2MiB/s" too). A fractional result is
/// rounded down to whole bytes. "0" is rejected with a message saying to omit the option for no
/// limit. Errors are one clear line.
pub(crate) fn parse_rate(s: &str) -> Result<u64, String> {
    let lower = s.trim().to_ascii_lowercase();
    let number_len = lower
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(number_len);
    let multiplier = rate_multiplier(unit.trim_start()).ok_or(RATE_EXAMPLES)?;
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) if !fraction.is_empty() => (whole, fraction),
        Some(_) => return Err(RATE_EXAMPLES.to_string()),
        None => (number, ""),
    };
    let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return Err(RATE_EXAMPLES.to_string());
    }
    let too_large = || format!("too large: at most {} bytes per second", u64::MAX);
    // Exact integer arithmetic: whole * multiplier + fraction * multiplier / 10^digits.
    let whole: u128 = whole.parse().map_err(|_| too_large())?;
    let fraction = &fraction[..fraction.len().min(MAX_FRACTION_DIGITS)];
    let fraction_bytes = match fraction.parse::<u128>() {
        Ok(numerator) => numerator * multiplier / 10u128.pow(fraction.len() as u32),
        Err(_) => 0, // No fraction.
    };
    let rate = whole
        .checked_mul(multiplier)
        .and_then(|bytes| bytes.checked_add(fraction_bytes))
        .and_then(|bytes| u64::try_from(bytes).ok())
        .ok_or_else(too_large)?;
    if rate == 0 {
        return Err(
            "a rate must be at least 1 byte per second; omit the option for no limit".to_string(),
        );
    }
    Ok(rate)
}

/// The multiplier named by a rate's unit, already lower-cased: an optional binary prefix (k, m, g, t,
/// each optionally followed by "i"), then an optional "b", then an optional "/s".
fn rate_multiplier(unit: &str) -> Option<u128> {
    let unit = unit.strip_suffix("/s").unwrap_or(unit);
    let unit = unit.strip_suffix('b').unwrap_or(unit);
    let power = match unit {
        "" => 0,
        "k" | "ki" => 1,
        "m" | "mi" => 2,
        "g" | "gi" => 3,
        "t" | "ti" => 4,
        _ => return None,
    };
    Some(1u128 << (10 * power))
}

/// Parses a duration like "90s", "30m", "2h", "1h30m", "1d" with `humantime` (which also takes
/// "1h 30m", "2.5h", "1w"; note that its "M" is months, "m" minutes). Zero is rejected.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(s.trim()).map_err(|e| match e {
        humantime::DurationError::NumberOverflow => "too large a duration".to_string(),
        other => format!("{other}; expected a duration such as 90s, 30m, 2h, 1h30m or 1d"),
    })?;
    if duration.is_zero() {
        return Err("a duration must be longer than zero".to_string());
    }
    Ok(duration)
}

/// Parses a seed ratio (uploaded bytes over the torrent's size): a positive finite float, e.g. "1", "2.5".
pub(crate) fn parse_ratio(s: &str) -> Result<f64, String> {
    const EXPECTED: &str = "expected a ratio above zero, such as 1 or 2.5";
    match s.trim().parse::<f64>() {
        Ok(ratio) if ratio.is_finite() && ratio > 0.0 => Ok(ratio),
        _ => Err(EXPECTED.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: u64 = 1024;
    const M: u64 = 1024 * K;
    const G: u64 = 1024 * M;

    /// Checks `parse` on each input: `Ok(value)`, or `Err(part)` where `part` must appear in the error.
    fn check<T: PartialEq + std::fmt::Debug>(
        parse: fn(&str) -> Result<T, String>,
        cases: &[(&str, Result<T, &str>)],
    ) {
        for (input, expected) in cases {
            match (parse(input), expected) {
                (Ok(value), Ok(want)) => assert_eq!(&value, want, "parsing {input:?}"),
                (Err(error), Err(part)) => {
                    assert!(
                        error.contains(part),
                        "parsing {input:?}: error {error:?} lacks {part:?}"
                    );
                    assert!(
                        !error.contains('\n'),
                        "parsing {input:?}: error {error:?} is not one line"
                    );
                }
                (got, _) => panic!("parsing {input:?}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn rates() {
        check(
            parse_rate,
            &[
                ("500000", Ok(500_000)),
                ("1", Ok(1)),
                ("500K", Ok(500 * K)),
                ("500k", Ok(500 * K)),
                ("2M", Ok(2 * M)),
                ("1.5M", Ok(3 * M / 2)),
                ("1G", Ok(G)),
                ("1T", Ok(1024 * G)),
                ("0.5k", Ok(512)),
                ("1.0009765625K", Ok(1025)),
                ("1.9", Ok(1)),
                ("100B", Ok(100)),
                ("100/s", Ok(100)),
                ("100B/s", Ok(100)),
                ("2MiB/s", Ok(2 * M)),
                ("2mib/s", Ok(2 * M)),
                ("2MB/s", Ok(2 * M)),
                ("2Mi", Ok(2 * M)),
                ("2kb", Ok(2 * K)),
                (" 2 MiB/s ", Ok(2 * M)),
                ("007K", Ok(7 * K)),
                ("15.99999999999999999999999999999999999999G", Ok(16 * G - 1)),
                ("18446744073709551615", Ok(u64::MAX)),
                ("0", Err("omit the option for no limit")),
                ("0K", Err("omit the option for no limit")),
                ("0.0001", Err("omit the option for no limit")),
                ("99999999999G", Err("too large")),
                ("18446744073709551616", Err("too large")),
                (
                    "99999999999999999999999999999999999999999999",
                    Err("too large"),
                ),
                ("16777216T", Err("too large")),
                ("", Err("such as")),
                ("K", Err("such as")),
                ("-1", Err("such as")),
                ("+1", Err("such as")),
                ("1.", Err("such as")),
                (".5M", Err("such as")),
                ("1.2.3", Err("such as")),
                ("1e6", Err("such as")),
                ("2X", Err("such as")),
                ("2 bits", Err("such as")),
                ("2kbps", Err("such as")),
                ("2i", Err("such as")),
                ("2iB", Err("such as")),
                ("2BB", Err("such as")),
                ("2M/h", Err("such as")),
                ("2 M B", Err("such as")),
                ("１K", Err("such as")),
            ],
        );
    }

    #[test]
    fn durations() {
        let secs = Duration::from_secs;
        check(
            parse_duration,
            &[
                ("90s", Ok(secs(90))),
                ("30m", Ok(secs(30 * 60))),
                ("2h", Ok(secs(2 * 3600))),
                ("1h30m", Ok(secs(5400))),
                ("1h 30m", Ok(secs(5400))),
                ("1d", Ok(secs(86_400))),
                ("1w", Ok(secs(7 * 86_400))),
                ("2.5h", Ok(secs(9000))),
                ("500ms", Ok(Duration::from_millis(500))),
                ("0s", Err("longer than zero")),
                ("0h0m", Err("longer than zero")),
                ("90", Err("expected a duration such as")),
                ("", Err("expected a duration such as")),
                ("-1h", Err("expected a duration such as")),
                ("1x", Err("unknown time unit")),
                ("h", Err("expected a duration such as")),
                ("99999999999999999999999h", Err("too large")),
            ],
        );
    }

    #[test]
    fn ratios() {
        check(
            parse_ratio,
            &[
                ("1", Ok(1.0)),
                ("2.5", Ok(2.5)),
                ("0.1", Ok(0.1)),
                (" 3 ", Ok(3.0)),
                ("0", Err("above zero")),
                ("0.0", Err("above zero")),
                ("-1", Err("above zero")),
                ("-0", Err("above zero")),
                ("inf", Err("above zero")),
                ("NaN", Err("above zero")),
                ("1e999", Err("above zero")),
                ("1e-999", Err("above zero")),
                ("", Err("above zero")),
                ("two", Err("above zero")),
                ("1:1", Err("above zero")),
            ],
        );
    }
}
