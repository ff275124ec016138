//! Checks on `spec.duration` and `spec.renewBefore`, and the guesser behind
//! "did you mean" for durations written the way people speak (`90d`, `1y`,
//! `30 days`, `P90D`).

use std::time::Duration;

use certflow_api::{
    DEFAULT_DURATION, DurationError, MAX_GO_DURATION, MIN_DURATION, format_go_duration,
    parse_go_duration,
};

use crate::reason::Reason;
use crate::text::quote;
use crate::violation::Violation;

const HOUR: u64 = 3_600;
const DAY: u64 = 24 * HOUR;

// The limits are the API's (`certflow_api::MIN_DURATION` and friends), so the
// signer never refuses a value the CRD schema accepted for a reason the schema
// could have stated.

/// The `renewBefore` used when it is unset: a third of the duration.
fn default_renew_before(duration: Duration) -> Duration {
    duration / 3
}

/// Inputs longer than this are not worth guessing at.
const MAX_GUESSED_LEN: usize = 64;

/// Seconds per unit for the words people use in durations. Months are 30
/// days and years 365, which is what people mean when they ask for "1y".
fn unit_seconds(unit: &str) -> Option<f64> {
    let seconds = match unit {
        "ns" | "nanosecond" | "nanoseconds" => 1e-9,
        "us" | "µs" | "μs" | "microsecond" | "microseconds" => 1e-6,
        "ms" | "millisecond" | "milliseconds" => 1e-3,
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600.0,
        "d" | "day" | "days" => 86_400.0,
        "w" | "wk" | "wks" | "week" | "weeks" => 7.0 * 86_400.0,
        "mo" | "mon" | "month" | "months" => 30.0 * 86_400.0,
        "y" | "yr" | "yrs" | "year" | "years" => 365.0 * 86_400.0,
        _ => return None,
    };
    Some(seconds)
}

/// An ISO 8601 duration such as `P90D`, `P1Y`, `PT1H` or `P1DT12H`.
fn iso8601_seconds(value: &str) -> Option<f64> {
    let rest = value.strip_prefix('p')?;
    let (date, time) = rest.split_once('t').unwrap_or((rest, ""));
    let mut total = 0.0;
    for (part, is_time) in [(date, false), (time, true)] {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
                continue;
            }
            let n: f64 = number.parse().ok()?;
            number.clear();
            let unit = match (c, is_time) {
                ('y', false) => 365.0 * 86_400.0,
                ('m', false) => 30.0 * 86_400.0,
                ('w', false) => 7.0 * 86_400.0,
                ('d', false) => 86_400.0,
                ('h', true) => 3_600.0,
                ('m', true) => 60.0,
                ('s', true) => 1.0,
                _ => return None,
            };
            total += n * unit;
        }
        if !number.is_empty() {
            return None;
        }
    }
    Some(total)
}

/// What a human most likely meant by `value`, if it is not a Go duration but
/// reads as one in everyday words: `90d`, `1 year`, `2 weeks`, `1H`, `1hr
/// 30min`, `P90D`. `None` for anything ambiguous, such as a bare number.
pub fn guess_duration(value: &str) -> Option<Duration> {
    if value.len() > MAX_GUESSED_LEN {
        return None;
    }
    let lowered = value.trim().to_lowercase();
    let seconds = if let Some(seconds) = iso8601_seconds(&lowered) {
        seconds
    } else {
        let mut total = 0.0;
        let mut terms = 0;
        let mut chars = lowered.chars().peekable();
        loop {
            while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
            if chars.peek().is_none() {
                break;
            }
            let mut number = String::new();
            while let Some(c) = chars.next_if(|c| c.is_ascii_digit() || *c == '.') {
                number.push(c);
            }
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            let mut unit = String::new();
            while let Some(c) = chars.next_if(|c| c.is_alphabetic()) {
                unit.push(c);
            }
            if number.is_empty() && unit == "and" {
                continue;
            }
            let number: f64 = number.parse().ok()?;
            total += number * unit_seconds(&unit)?;
            terms += 1;
        }
        if terms == 0 {
            return None;
        }
        total
    };
    let max = MAX_GO_DURATION.as_secs_f64();
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= max) {
        return None;
    }
    // Whole seconds when the value is at least one, so float noise never
    // turns "1.5d" into "35h59m59.999999s"; nanoseconds below that.
    Some(if seconds >= 1.0 {
        Duration::from_secs_f64(seconds.round())
    } else {
        Duration::from_nanos((seconds * 1e9).round().max(1.0) as u64)
    })
}

fn problem(error: &DurationError) -> String {
    match error {
        DurationError::Empty => "is empty".to_owned(),
        DurationError::Signed { .. } => {
            "has a sign; durations are written without + or -".to_owned()
        }
        DurationError::ExpectedNumber { .. } => {
            "is not a Go duration (numbers followed by units, such as \"2160h\" or \"1h30m\")"
                .to_owned()
        }
        DurationError::MissingUnit { number, .. } => format!(
            "has no unit after {}; Go durations need one of h, m, s, ms, us or ns",
            quote(number)
        ),
        DurationError::UnknownUnit { unit, .. } => format!(
            "uses the unit {}, which Go durations do not have (only h, m, s, ms, us and ns; \
             there are no days or years)",
            quote(unit)
        ),
        DurationError::TooLarge { .. } => {
            "is longer than the longest Go duration (about 292 years)".to_owned()
        }
    }
}

/// A `duration` or `renewBefore` that is not a Go duration: `90d`, `1y`,
/// `30 days`, `P90D`, `1H`, `-1h`.
pub fn invalid_duration(field: &str, value: &str) -> Option<Violation> {
    let error = parse_go_duration(value).err()?;
    let problem = if value.contains(char::is_whitespace) && !value.trim().is_empty() {
        "contains spaces; Go durations are written without them".to_owned()
    } else {
        problem(&error)
    };
    let violation = Violation::new(Reason::InvalidDuration, field, value, problem);
    Some(match guess_duration(value) {
        Some(meant) if !matches!(error, DurationError::TooLarge { .. }) => {
            let go = format_go_duration(meant);
            violation.with_suggestion(format!(
                "did you mean {} ({})?",
                quote(&go),
                in_words(meant)
            ))
        }
        _ => violation.with_suggestion("write hours, such as \"2160h\" for 90 days"),
    })
}

/// `d` in the largest whole unit people think in: "90 days", "36 hours".
fn in_words(d: Duration) -> String {
    let secs = d.as_secs();
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if secs >= DAY && secs.is_multiple_of(DAY) {
        plural(secs / DAY, "day")
    } else if secs >= HOUR && secs.is_multiple_of(HOUR) {
        plural(secs / HOUR, "hour")
    } else if secs >= 60 && secs.is_multiple_of(60) {
        plural(secs / 60, "minute")
    } else if secs > 0 && d.subsec_nanos() == 0 {
        plural(secs, "second")
    } else {
        format_go_duration(d)
    }
}

/// A `duration` shorter than [`MIN_DURATION`]. Malformed values are left to
/// [`invalid_duration`].
pub fn duration_too_short(field: &str, value: &str) -> Option<Violation> {
    let duration = parse_go_duration(value).ok()?;
    if duration >= MIN_DURATION {
        return None;
    }
    let minimum = format_go_duration(MIN_DURATION);
    let violation = Violation::new(
        Reason::DurationTooShort,
        field,
        value,
        format!(
            "is {}; certflow issues certificates valid for at least {minimum}",
            in_words(duration)
        ),
    );
    Some(violation.with_suggestion(format!(
        "set it to {} or more, or remove it for the default {} ({})",
        quote(&minimum),
        quote(&format_go_duration(DEFAULT_DURATION)),
        in_words(DEFAULT_DURATION)
    )))
}

/// A `renewBefore` of zero: renewal would start only once the certificate
/// has expired.
pub fn renew_before_too_short(field: &str, value: &str) -> Option<Violation> {
    if !parse_go_duration(value).ok()?.is_zero() {
        return None;
    }
    Some(
        Violation::new(
            Reason::RenewBeforeTooShort,
            field,
            value,
            "is zero, so renewal would only start once the certificate has expired",
        )
        .with_suggestion(
            "remove it for the default of a third of the duration, or set a value such as \"720h\"",
        ),
    )
}

/// A `renewBefore` at least as long as the certificate's duration (or the
/// default duration when `spec.duration` is unset): the certificate would be
/// due for renewal the moment it is issued, forever.
pub fn renew_before_too_long(
    field: &str,
    renew_before: &str,
    duration: Option<&str>,
) -> Option<Violation> {
    let renew = parse_go_duration(renew_before).ok()?;
    let lifetime = match duration {
        Some(duration) => parse_go_duration(duration).ok()?,
        None => DEFAULT_DURATION,
    };
    if renew < lifetime {
        return None;
    }
    let lifetime_text = match duration {
        Some(duration) => format!("spec.duration {}", quote(duration)),
        None => format!(
            "the default duration {} (spec.duration is not set)",
            quote(&format_go_duration(DEFAULT_DURATION))
        ),
    };
    let third = format_go_duration(default_renew_before(lifetime));
    Some(
        Violation::new(
            Reason::RenewBeforeTooLong,
            field,
            renew_before,
            format!(
                "is not shorter than {lifetime_text}, so the certificate would be renewed as \
                 soon as it is issued"
            ),
        )
        .with_suggestion(format!(
            "did you mean {} (a third of the duration, which is also the default when \
             renewBefore is removed)?",
            quote(&third)
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everyday_durations_are_understood() {
        let cases = [
            ("90d", 90 * DAY),
            ("1y", 365 * DAY),
            ("30 days", 30 * DAY),
            ("2w", 14 * DAY),
            ("P90D", 90 * DAY),
            ("PT12H", 12 * HOUR),
            ("P1DT12H", 36 * HOUR),
            ("1H", HOUR),
            ("1hr 30min", 90 * 60),
            ("1 day and 12 hours", 36 * HOUR),
            ("1.5d", 36 * HOUR),
            ("3 months", 90 * DAY),
            ("2160h ", 90 * DAY),
        ];
        assert_eq!(guess_duration("500 ms"), Some(Duration::from_millis(500)));
        for (input, seconds) in cases {
            assert_eq!(
                guess_duration(input),
                Some(Duration::from_secs(seconds)),
                "{input}"
            );
        }
    }

    #[test]
    fn ambiguous_durations_get_no_guess() {
        for input in ["90", "", "soon", "d", "1x", "-1h", "1e400d"] {
            assert_eq!(guess_duration(input), None, "{input}");
        }
    }
}
