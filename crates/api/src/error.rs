//! The crate's error type: a spec value the CRD schema should have refused.

use std::time::Duration;

use crate::{DurationError, format_go_duration, parse_go_duration};

/// A spec value that cannot be used. The CRD schema refuses all of these at
/// apply time; they still reach code through objects stored before a rule
/// existed, or written past validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A duration field does not parse.
    #[error("{field}: {source}")]
    InvalidDuration {
        /// The field path, such as `spec.duration`.
        field: &'static str,
        /// What is wrong with the value.
        #[source]
        source: DurationError,
    },
    /// A duration is shorter than the API allows (or zero where it must be
    /// positive).
    #[error("{field}: {value:?} is too short: {}", too_short_hint(*minimum))]
    DurationTooShort {
        /// The field path, such as `spec.duration`.
        field: &'static str,
        /// The value as written.
        value: String,
        /// The shortest accepted duration.
        minimum: Duration,
    },
    /// `spec.renewBefore` is not shorter than the certificate's duration, so
    /// renewal would be due before the certificate is issued.
    #[error(
        "spec.renewBefore: {} must be shorter than the duration {}: renewal has to start before the certificate expires",
        format_go_duration(*renew_before),
        format_go_duration(*duration)
    )]
    RenewBeforeNotShorter {
        /// The effective renewBefore.
        renew_before: Duration,
        /// The effective duration.
        duration: Duration,
    },
}

impl SpecError {
    /// The path of the spec field at fault, such as `spec.renewBefore`.
    pub fn field(&self) -> &'static str {
        match self {
            Self::InvalidDuration { field, .. } | Self::DurationTooShort { field, .. } => field,
            Self::RenewBeforeNotShorter { .. } => "spec.renewBefore",
        }
    }
}

fn too_short_hint(minimum: Duration) -> String {
    if minimum.is_zero() {
        "it must be longer than zero, such as 720h (30 days)".to_owned()
    } else {
        format!(
            "the shortest accepted duration is {}",
            format_go_duration(minimum)
        )
    }
}

/// Parses the duration in `field`, which must be at least `minimum`, or
/// longer than zero when `minimum` is zero.
pub(crate) fn parse_duration_field(
    field: &'static str,
    value: &str,
    minimum: Duration,
) -> Result<Duration, SpecError> {
    let duration =
        parse_go_duration(value).map_err(|source| SpecError::InvalidDuration { field, source })?;
    if duration < minimum || duration.is_zero() {
        return Err(SpecError::DurationTooShort {
            field,
            value: value.to_owned(),
            minimum,
        });
    }
    Ok(duration)
}
