//! Go-style durations (`2160h`, `1h30m`, `45m`, `1.5h`), as written in
//! `spec.duration`, `spec.renewBefore` and `policy.maxDuration`.
//!
//! The grammar is Go's `time.ParseDuration` without a sign and without the
//! bare `0`: one or more `<number><unit>` pairs, where a number may have a
//! fraction (`1.5`, `.5`, `1.`) and a unit is `ns`, `us`, `ms`, `s`, `m` or
//! `h`. There are no days, so that a duration means the same thing to
//! Kubernetes, Go tooling and CEL's `duration()`; the CRD schema accepts
//! exactly this grammar (see [`GO_DURATION_PATTERN`]).
//!
//! Go also reads `µs` for microseconds; certflow does not, because not every
//! CEL implementation does and no certificate lifetime needs it.
//!
//! kube-core has a Go-duration type (`kube::core::Duration`), and certflow
//! does not use it for app owners' input: it panics on a value too large for
//! `std::time::Duration` (`"99999999999999999999h"`, through
//! `Duration::mul_f64`), so a hostile spec would crash the signer; it reads
//! through `f64`, so it rounds; it accepts what the CRD schema refuses
//! (`-1h`, `--1h`, `1µs`, a bare `0`); and its errors name neither the unit
//! nor the fix (`90d` gets "invalid unit", where certflow says "write
//! 2160h"). The parser here is exact integer arithmetic with an overflow
//! check, held by `tests/durations.rs` to an exact model of the grammar.

use std::time::Duration;

/// The regular expression (RE2 and Rust `regex` syntax) the CRD schema uses to
/// accept a duration at apply time. It matches exactly the strings that
/// [`parse_go_duration`] reads, apart from values too large to represent.
pub const GO_DURATION_PATTERN: &str = r"^(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|ms|s|m|h))+$";

/// The largest duration Go (and so CEL and the API server) can represent:
/// `i64::MAX` nanoseconds, about 292 years.
pub const MAX_GO_DURATION: Duration = Duration::new(9_223_372_036, 854_775_807);

const NANOS_PER_SECOND: u128 = 1_000_000_000;
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("ms", 1_000_000),
    ("s", NANOS_PER_SECOND),
    ("m", 60 * NANOS_PER_SECOND),
    ("h", 3_600 * NANOS_PER_SECOND),
];

/// Why a string is not a Go-style duration. Every message quotes the input and
/// says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string is empty.
    #[error("the duration is empty: write a number and a unit, such as 2160h (90 days) or 45m")]
    Empty,
    /// The string starts with `+` or `-`.
    #[error("{input:?} has a sign: durations are written without + or -, such as 2160h")]
    Signed {
        /// The string as written.
        input: String,
    },
    /// A unit, a stray character or the end of the string came where a number
    /// was expected.
    #[error("{input:?} is not a duration: write numbers followed by units, such as 2160h or 1h30m")]
    ExpectedNumber {
        /// The string as written.
        input: String,
    },
    /// A number is not followed by a unit.
    #[error(
        "{input:?} has no unit after {number}: add one of h, m, s, ms, us or ns, such as {number}h"
    )]
    MissingUnit {
        /// The string as written.
        input: String,
        /// The number that lacks a unit.
        number: String,
    },
    /// A number is followed by something that is not a unit, such as `d`.
    #[error(
        "{input:?} uses the unknown unit {unit:?}: use h, m, s, ms, us or ns{}",
        days_hint(number, unit)
    )]
    UnknownUnit {
        /// The string as written.
        input: String,
        /// The number in front of the unknown unit.
        number: String,
        /// The unknown unit.
        unit: String,
    },
    /// The value is larger than [`MAX_GO_DURATION`].
    #[error("{input:?} is too large: the longest duration is 2562047h (about 292 years)")]
    TooLarge {
        /// The string as written.
        input: String,
    },
}

/// Turns `90d` into "; days are not accepted: write 2160h for 90 days".
fn days_hint(number: &str, unit: &str) -> String {
    if !matches!(unit, "d" | "day" | "days") {
        return String::new();
    }
    match number
        .parse::<u64>()
        .ok()
        .and_then(|days| days.checked_mul(24))
    {
        Some(hours) => format!("; days are not accepted: write {hours}h for {number} days"),
        None => {
            "; days are not accepted: write hours instead, such as 2160h for 90 days".to_owned()
        }
    }
}

/// Parses a Go-style duration such as `2160h`, `1h30m` or `1.5s`.
///
/// Fractions finer than a nanosecond are truncated, as Go does.
///
/// ```
/// # use std::time::Duration;
/// # use certflow_api::parse_go_duration;
/// assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5_400)));
/// assert!(parse_go_duration("90d").is_err());
/// ```
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    if input.is_empty() {
        return Err(DurationError::Empty);
    }
    if input.starts_with(['+', '-']) {
        return Err(DurationError::Signed {
            input: input.to_owned(),
        });
    }
    let too_large = || DurationError::TooLarge {
        input: input.to_owned(),
    };
    let max_nanos = MAX_GO_DURATION.as_nanos();

    let mut rest = input;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after_number) = rest.split_at(number_len);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(DurationError::ExpectedNumber {
                input: input.to_owned(),
            });
        }

        let unit_len = after_number
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after_number.len());
        let (unit, after_unit) = after_number.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::MissingUnit {
                input: input.to_owned(),
                number: number.to_owned(),
            });
        }
        let Some(&(_, unit_nanos)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(DurationError::UnknownUnit {
                input: input.to_owned(),
                number: number.to_owned(),
                unit: unit.to_owned(),
            });
        };

        let mut whole_value: u128 = 0;
        for digit in whole.bytes() {
            whole_value = whole_value * 10 + u128::from(digit - b'0');
            if whole_value > max_nanos {
                return Err(too_large());
            }
        }
        // Digits past the 20th cannot add a nanosecond even to an hour, so
        // they are read but not accumulated (this keeps the arithmetic in range).
        let (mut fraction_value, mut scale): (u128, u128) = (0, 1);
        for digit in fraction.bytes().take(20) {
            fraction_value = fraction_value * 10 + u128::from(digit - b'0');
            scale *= 10;
        }

        total += whole_value * unit_nanos + fraction_value * unit_nanos / scale;
        if total > max_nanos {
            return Err(too_large());
        }
        rest = after_unit;
    }

    let secs = u64::try_from(total / NANOS_PER_SECOND).map_err(|_| too_large())?;
    let nanos = u32::try_from(total % NANOS_PER_SECOND).map_err(|_| too_large())?;
    Ok(Duration::new(secs, nanos))
}

/// Formats a duration the way an app owner would write it: hours, minutes
/// and seconds with zero parts left out (`2160h`, `1h30m`, `1.5s`), or a
/// single `ms`, `us` or `ns` value below one second. Zero is `0s`.
///
/// The result always parses back to the same value with [`parse_go_duration`]
/// (and with Go's `time.ParseDuration`) when it is at most [`MAX_GO_DURATION`].
///
/// ```
/// # use std::time::Duration;
/// # use certflow_api::format_go_duration;
/// assert_eq!(format_go_duration(Duration::from_secs(90 * 24 * 3600)), "2160h");
/// assert_eq!(format_go_duration(Duration::from_millis(5_400_500)), "1h30m0.5s");
/// ```
pub fn format_go_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    let nanos = duration.subsec_nanos();
    if secs == 0 {
        return match nanos {
            0 => "0s".to_owned(),
            1..1_000 => format!("{nanos}ns"),
            1_000..1_000_000 => format!("{}us", decimal(u64::from(nanos), 1_000)),
            _ => format!("{}ms", decimal(u64::from(nanos), 1_000_000)),
        };
    }

    let (hours, minutes, seconds) = (secs / 3_600, secs % 3_600 / 60, secs % 60);
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    if seconds > 0 || nanos > 0 {
        let nanos_total = seconds * 1_000_000_000 + u64::from(nanos);
        out.push_str(&format!("{}s", decimal(nanos_total, 1_000_000_000)));
    }
    out
}

/// `value / per_unit` written as a decimal without trailing zeros.
fn decimal(value: u64, per_unit: u64) -> String {
    let (whole, fraction) = (value / per_unit, value % per_unit);
    if fraction == 0 {
        return whole.to_string();
    }
    let width = per_unit.ilog10() as usize;
    let digits = format!("{fraction:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOUR: u64 = 3_600;

    #[test]
    fn parses_the_forms_app_owners_write() {
        let cases: &[(&str, Duration)] = &[
            ("2160h", Duration::from_secs(2_160 * HOUR)),
            ("1h30m", Duration::from_secs(5_400)),
            ("45m", Duration::from_secs(2_700)),
            ("90s", Duration::from_secs(90)),
            ("1.5h", Duration::from_secs(5_400)),
            (".5h", Duration::from_secs(1_800)),
            ("1.h", Duration::from_secs(HOUR)),
            ("0s", Duration::ZERO),
            ("1h0m0s", Duration::from_secs(HOUR)),
            ("500ms", Duration::from_millis(500)),
            ("1us", Duration::from_micros(1)),
            ("7ns", Duration::from_nanos(7)),
            ("1h1h", Duration::from_secs(2 * HOUR)),
            ("1.0000000001s", Duration::from_secs(1)),
            ("0.000000001s", Duration::from_nanos(1)),
            ("2562047h47m16.854775807s", MAX_GO_DURATION),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_go_duration(input), Ok(*expected), "input {input:?}");
        }
    }

    #[test]
    fn rejects_malformed_durations_with_a_reason() {
        let text = |input: &str| input.to_owned();
        let cases: &[(&str, DurationError)] = &[
            ("", DurationError::Empty),
            ("-1h", DurationError::Signed { input: text("-1h") }),
            ("+1h", DurationError::Signed { input: text("+1h") }),
            ("h", DurationError::ExpectedNumber { input: text("h") }),
            (".h", DurationError::ExpectedNumber { input: text(".h") }),
            (
                "1..5h",
                DurationError::ExpectedNumber {
                    input: text("1..5h"),
                },
            ),
            (
                "1.2.3h",
                DurationError::ExpectedNumber {
                    input: text("1.2.3h"),
                },
            ),
            (
                "10",
                DurationError::MissingUnit {
                    input: text("10"),
                    number: text("10"),
                },
            ),
            (
                "0",
                DurationError::MissingUnit {
                    input: text("0"),
                    number: text("0"),
                },
            ),
            (
                "1h30",
                DurationError::MissingUnit {
                    input: text("1h30"),
                    number: text("30"),
                },
            ),
            (
                "90d",
                DurationError::UnknownUnit {
                    input: text("90d"),
                    number: text("90"),
                    unit: text("d"),
                },
            ),
            (
                "1 h",
                DurationError::UnknownUnit {
                    input: text("1 h"),
                    number: text("1"),
                    unit: text(" h"),
                },
            ),
            (
                "1H",
                DurationError::UnknownUnit {
                    input: text("1H"),
                    number: text("1"),
                    unit: text("H"),
                },
            ),
            (
                "1µs",
                DurationError::UnknownUnit {
                    input: text("1µs"),
                    number: text("1"),
                    unit: text("µs"),
                },
            ),
            (
                "2562048h",
                DurationError::TooLarge {
                    input: text("2562048h"),
                },
            ),
            (
                "99999999999999999999999999999999999999999h",
                DurationError::TooLarge {
                    input: text("99999999999999999999999999999999999999999h"),
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                parse_go_duration(input).as_ref(),
                Err(expected),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn days_are_refused_with_the_hours_to_write_instead() {
        let message = parse_go_duration("90d")
            .expect_err("days are not a unit")
            .to_string();
        assert_eq!(
            message,
            r#""90d" uses the unknown unit "d": use h, m, s, ms, us or ns; days are not accepted: write 2160h for 90 days"#
        );
    }

    #[test]
    fn formats_the_shortest_readable_form() {
        let cases: &[(Duration, &str)] = &[
            (Duration::ZERO, "0s"),
            (Duration::from_secs(2_160 * HOUR), "2160h"),
            (Duration::from_secs(5_400), "1h30m"),
            (Duration::from_secs(HOUR + 1), "1h1s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_millis(1_500), "1.5s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_micros(1_500), "1.5ms"),
            (Duration::from_nanos(1_500), "1.5us"),
            (Duration::from_nanos(15), "15ns"),
            (MAX_GO_DURATION, "2562047h47m16.854775807s"),
        ];
        for (duration, expected) in cases {
            assert_eq!(format_go_duration(*duration), *expected);
        }
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_input(input in any::<String>()) {
            let _ = parse_go_duration(&input);
        }

        #[test]
        fn never_panics_on_duration_shaped_input(input in "[0-9.]{0,30}(ns|us|µs|ms|s|m|h|d|x)?([0-9.]{0,25}[hms]?){0,3}") {
            let _ = parse_go_duration(&input);
        }

        #[test]
        fn format_then_parse_round_trips(nanos in 0..=MAX_GO_DURATION.as_nanos() as u64) {
            let duration = Duration::from_nanos(nanos);
            prop_assert_eq!(parse_go_duration(&format_go_duration(duration)), Ok(duration));
        }

        #[test]
        fn whole_seconds_round_trip_without_fractions(secs in 0..=MAX_GO_DURATION.as_secs()) {
            let text = format_go_duration(Duration::from_secs(secs));
            prop_assert!(!text.contains('.'), "{}", text);
            prop_assert_eq!(parse_go_duration(&text), Ok(Duration::from_secs(secs)));
        }
    }
}
