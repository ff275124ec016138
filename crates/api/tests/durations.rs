//! Go duration parsing against a model: what `parse_go_duration` returns is
//! the sum of the parts written, or `TooLarge` exactly when that sum does not
//! fit, and a hostile length costs linear time. (No-panic, round-trip and
//! schema agreement properties live next to the parser and in
//! `schema_rules.rs`.)

use std::time::{Duration, Instant};

use certflow_api::{DurationError, MAX_GO_DURATION, format_go_duration, parse_go_duration};
use proptest::prelude::*;

/// Units and their length in nanoseconds.
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// One `<number><unit>` part and its exact length in nanoseconds. Fractions
/// have at most as many digits as the unit has powers of ten of
/// nanoseconds, so the exact value is a whole number of nanoseconds and the
/// model needs no rounding rule.
fn part() -> impl Strategy<Value = (String, u128)> {
    (
        0..UNITS.len(),
        0u64..=10_000_000,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(unit, whole, with_fraction, fraction_seed)| {
            let (name, nanos) = UNITS[unit];
            let exact_digits = nanos.ilog10().min(9);
            let digits = if with_fraction { exact_digits } else { 0 };
            if digits == 0 {
                return (format!("{whole}{name}"), u128::from(whole) * nanos);
            }
            let scale = 10u64.pow(digits);
            let fraction = fraction_seed % scale;
            let text = format!("{whole}.{fraction:0width$}{name}", width = digits as usize);
            let value =
                u128::from(whole) * nanos + u128::from(fraction) * nanos / u128::from(scale);
            (text, value)
        })
}

fn expected(total: u128, input: &str) -> Result<Duration, DurationError> {
    if total > MAX_GO_DURATION.as_nanos() {
        return Err(DurationError::TooLarge {
            input: input.to_owned(),
        });
    }
    let nanos = u64::try_from(total).expect("below the maximum");
    Ok(Duration::from_nanos(nanos))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn a_duration_is_the_sum_of_its_parts_or_too_large(parts in prop::collection::vec(part(), 1..6)) {
        let input: String = parts.iter().map(|(text, _)| text.as_str()).collect();
        let total: u128 = parts.iter().map(|(_, nanos)| nanos).sum();
        prop_assert_eq!(parse_go_duration(&input), expected(total, &input));
    }

    #[test]
    fn concatenating_two_durations_adds_them(a in part(), b in part()) {
        let (left, right) = (parse_go_duration(&a.0), parse_go_duration(&b.0));
        let joined = parse_go_duration(&format!("{}{}", a.0, b.0));
        match (left, right) {
            (Ok(left), Ok(right)) if left + right <= MAX_GO_DURATION => {
                prop_assert_eq!(joined, Ok(left + right));
            }
            _ => prop_assert!(
                matches!(joined, Err(DurationError::TooLarge { .. })),
                "{joined:?}"
            ),
        }
    }

    #[test]
    fn a_duration_never_parses_to_more_than_the_maximum(input in "[0-9.]{1,25}(ns|us|ms|s|m|h)([0-9.]{1,25}(ns|us|ms|s|m|h)){0,3}") {
        if let Ok(duration) = parse_go_duration(&input) {
            prop_assert!(duration <= MAX_GO_DURATION);
            prop_assert_eq!(parse_go_duration(&format_go_duration(duration)), Ok(duration));
        }
    }
}

/// Inputs a megabyte long: many parts, one huge number, one huge fraction,
/// and junk after a valid prefix.
fn megabyte_inputs() -> Vec<(&'static str, String)> {
    const MIB: usize = 1 << 20;
    vec![
        ("many small parts", "1ns".repeat(MIB / 3)),
        ("one huge number", format!("{}h", "9".repeat(MIB))),
        ("one huge fraction", format!("1.{}s", "9".repeat(MIB))),
        ("junk after a prefix", format!("1h{}", "x".repeat(MIB))),
        ("dots", format!("1{}h", ".".repeat(MIB))),
    ]
}

#[test]
fn a_megabyte_of_input_is_judged_in_linear_time() {
    for (what, input) in megabyte_inputs() {
        let started = Instant::now();
        let result = parse_go_duration(&input);
        let elapsed = started.elapsed();
        // An unoptimised build on a shared two-core machine parses a
        // megabyte in milliseconds; a quadratic slip takes minutes.
        assert!(elapsed < Duration::from_secs(5), "{what}: took {elapsed:?}");
        match what {
            "many small parts" => {
                assert_eq!(result, Ok(Duration::from_nanos((input.len() / 3) as u64)))
            }
            "one huge fraction" => assert_eq!(result, Ok(Duration::from_nanos(1_999_999_999))),
            "one huge number" => assert!(matches!(result, Err(DurationError::TooLarge { .. }))),
            _ => assert!(result.is_err(), "{what}: {result:?}"),
        }
    }
}
