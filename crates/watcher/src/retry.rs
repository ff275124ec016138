//! When a reconcile that failed is tried again. The error's variant decides
//! ([`Error::is_transient`], which for bus errors is
//! `certflow_bus::BusError::is_transient`): a transient error (the bus
//! unreachable, slow or full) backs off per object, exponentially, and the
//! object's next reconcile that ends without error ends the streak; a
//! permanent one (the bus refuses the item, which only an operator can
//! change) waits `--failure-retry`, and
//! the object counts as stalled until a reconcile of it ends without error
//! or it is deleted. Pure but for the random jitter: the [`crate::ledger`]
//! keeps one [`Streak`] per failing object and forgets it with the object.
//!
//! See `docs/design/20261203-watcher-errors.md`.

use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder};
use rand::Rng as _;

use crate::Error;

/// The delay before the first retry after a transient error, before
/// jitter (up to as much again).
pub const TRANSIENT_FIRST: Duration = Duration::from_secs(1);

/// The longest delay between retries of a reconcile that keeps failing
/// transiently, before jitter (up to as much again): with it, work resumes
/// within a minute of the bus coming back.
pub const TRANSIENT_MAX: Duration = Duration::from_secs(30);

/// Whether retrying a failed reconcile soon may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Retrying may succeed once the bus answers again: back off.
    Transient,
    /// Only an operator's change can help: wait `--failure-retry`, count
    /// the object as stalled, log it as an error.
    Permanent,
}

impl Class {
    /// The class of `error`, from its variant.
    pub fn of(error: &Error) -> Self {
        if error.is_transient() {
            Self::Transient
        } else {
            Self::Permanent
        }
    }

    /// The `transient` label of `certflow_watcher_reconcile_errors_total`.
    pub fn is_transient(self) -> bool {
        self == Self::Transient
    }
}

/// What to do after a failed reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Reconcile the object again after this long (jitter included).
    pub after: Duration,
    /// Failed reconciles of the object in a row, this one included.
    pub failures: u32,
}

/// One object's run of failed reconciles, from its first failure to its
/// next reconcile without error.
#[derive(Debug)]
pub struct Streak {
    backoff: ExponentialBackoff,
    failures: u32,
    last: Class,
}

impl Default for Streak {
    fn default() -> Self {
        Self::new()
    }
}

impl Streak {
    /// A streak with no failure yet.
    pub fn new() -> Self {
        Self {
            backoff: transient_backoff().build(),
            failures: 0,
            last: Class::Transient,
        }
    }

    /// Counts one more failure of `class`; says when to try again. A
    /// transient failure takes the next step of the backoff ([`TRANSIENT_FIRST`]
    /// doubling up to [`TRANSIENT_MAX`], each with up to as much again at
    /// random); a permanent one waits `failure_retry` (at least
    /// [`TRANSIENT_FIRST`]) plus up to a quarter more at random, and does not
    /// advance the backoff.
    pub fn failed(&mut self, class: Class, failure_retry: Duration) -> Retry {
        self.failures = self.failures.saturating_add(1);
        self.last = class;
        let after = match class {
            // Unbounded: the iterator never ends; the fallback is a guard.
            Class::Transient => self.backoff.next().unwrap_or(TRANSIENT_MAX),
            Class::Permanent => {
                let wait = failure_retry.max(TRANSIENT_FIRST);
                wait + jitter(wait / 4)
            }
        };
        Retry {
            after,
            failures: self.failures,
        }
    }

    /// Failed reconciles in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Whether the last failure was permanent: the object waits for an
    /// operator's change (`certflow_watcher_decisions_stalled`).
    pub fn is_stalled(&self) -> bool {
        self.last == Class::Permanent
    }
}

/// The transient schedule: from [`TRANSIENT_FIRST`], doubling, up to
/// [`TRANSIENT_MAX`], never giving up, each delay with up to as much again
/// at random so objects that failed together do not retry together.
fn transient_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(TRANSIENT_FIRST)
        .with_max_delay(TRANSIENT_MAX)
        .with_factor(2.0)
        .without_max_times()
        .with_jitter()
}

/// A random delay below `max`.
pub(crate) fn jitter(max: Duration) -> Duration {
    let millis = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    if millis == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(rand::rng().random_range(0..millis))
}

#[cfg(test)]
mod tests {
    use async_nats::jetstream::context::{PublishError, PublishErrorKind};
    use certflow_bus::BusError;

    use super::*;

    const FAILURE_RETRY: Duration = Duration::from_secs(600);

    /// Asserts `delay` is `base` plus jitter below `spread`.
    fn assert_within(delay: Duration, base: Duration, spread: Duration, what: &str) {
        assert!(
            delay >= base && delay < base + spread,
            "{what}: {delay:?} is not in [{base:?}, {:?})",
            base + spread
        );
    }

    #[test]
    fn a_transient_error_backs_off_doubling_with_jitter_up_to_the_cap() {
        let mut streak = Streak::new();
        let bases = [1, 2, 4, 8, 16, 30, 30, 30, 30].map(Duration::from_secs);
        for (n, base) in bases.into_iter().enumerate() {
            let retry = streak.failed(Class::Transient, FAILURE_RETRY);
            assert_eq!(retry.failures, u32::try_from(n + 1).unwrap_or(u32::MAX));
            assert_within(retry.after, base, base, &format!("failure {}", n + 1));
        }
        assert!(!streak.is_stalled());
    }

    #[test]
    fn a_permanent_error_waits_the_failure_retry_and_stalls_the_object() {
        let mut streak = Streak::new();
        for _ in 0..3 {
            let retry = streak.failed(Class::Permanent, FAILURE_RETRY);
            assert_within(retry.after, FAILURE_RETRY, FAILURE_RETRY / 4, "permanent");
        }
        assert!(streak.is_stalled());
        assert_eq!(streak.failures(), 3);
    }

    #[test]
    fn a_permanent_error_does_not_advance_the_transient_backoff() {
        let mut streak = Streak::new();
        streak.failed(Class::Permanent, FAILURE_RETRY);
        let retry = streak.failed(Class::Transient, FAILURE_RETRY);
        assert_within(
            retry.after,
            TRANSIENT_FIRST,
            TRANSIENT_FIRST,
            "first transient",
        );
        assert!(!streak.is_stalled(), "the last failure was transient");
    }

    #[test]
    fn a_zero_failure_retry_still_waits_a_second() {
        let retry = Streak::new().failed(Class::Permanent, Duration::ZERO);
        assert_within(retry.after, TRANSIENT_FIRST, TRANSIENT_FIRST / 4, "zero");
    }

    fn publish_error(kind: PublishErrorKind) -> Error {
        Error::Bus(BusError::Publish {
            subject: "certflow.work.v1.shop.api".to_owned(),
            source: PublishError::new(kind),
        })
    }

    #[test]
    fn which_error_is_retried_soon_comes_from_its_variant() {
        let table = [
            (publish_error(PublishErrorKind::TimedOut), Class::Transient),
            (
                publish_error(PublishErrorKind::BrokenPipe),
                Class::Transient,
            ),
            (
                publish_error(PublishErrorKind::StreamNotFound),
                Class::Transient,
            ),
            (
                publish_error(PublishErrorKind::MaxAckPending),
                Class::Transient,
            ),
            (
                publish_error(PublishErrorKind::MaxPayloadExceeded),
                Class::Permanent,
            ),
            (
                Error::Bus(BusError::InvalidSubjectToken {
                    field: "name",
                    value: "Not.A.Name".to_owned(),
                    reason: "only a-z, 0-9, '-' and '.' are allowed",
                }),
                Class::Permanent,
            ),
        ];
        for (error, class) in table {
            assert_eq!(Class::of(&error), class, "{error}");
        }
    }
}
