//! Every JetStream setting certflow relies on, with the reason for its value.
//! `docs/design/20261127-bus.md` explains how they fit together.

use std::time::Duration;

/// Default subject prefix and (upper-cased) stream-name prefix.
pub const DEFAULT_PREFIX: &str = "certflow";

/// Durable pull consumer on the work stream, shared by every signer replica.
pub const SIGNER_CONSUMER: &str = "signer";

/// Durable pull consumer on the outcome stream, shared by every reporter replica.
pub const REPORTER_CONSUMER: &str = "reporter";

/// How long JetStream remembers a `Nats-Msg-Id` and drops a second message
/// carrying it. Two minutes covers what de-duplication is for: two watchers
/// racing on the same event, a watcher re-listing after a restart or a watch
/// reconnect, and a publisher retrying after a lost acknowledgement. Older
/// repeats are caught by the signer itself, which finds the Secret already
/// matching the generation. A longer window costs server memory per message.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(2 * 60);

/// A work item that nobody has taken for a week describes a world that has
/// moved on; the watcher's periodic resync republishes anything still needed.
/// The limit exists so a stopped signer fleet cannot fill the disk forever.
pub const WORK_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Disk bound for pending work. The work stream discards *new* messages when
/// full, so publishers see an error instead of work vanishing silently.
pub const WORK_MAX_BYTES: i64 = 1024 * 1024 * 1024;

/// Outcomes matter while someone is looking at the Pod; a day lets a reporter
/// that was down overnight catch up, and later Pods get the current error from
/// the reporter's own state, not from replay.
pub const OUTCOME_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// Disk bound for outcomes; the oldest are dropped first, because the newest
/// outcome for a certificate is the one that matters.
pub const OUTCOME_MAX_BYTES: i64 = 1024 * 1024 * 1024;

/// Dead letters wait for a human; a month survives holidays.
pub const DEAD_LETTER_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Disk bound for dead letters; the oldest are dropped first.
pub const DEAD_LETTER_MAX_BYTES: i64 = 1024 * 1024 * 1024;

/// A work item or outcome is well under 4 KiB; anything near this limit is a
/// bug, and refusing it at publish time names the culprit.
pub const MAX_MESSAGE_SIZE: i32 = 64 * 1024;

/// A dead letter wraps a payload of up to [`MAX_MESSAGE_SIZE`] plus an error text.
pub const DEAD_LETTER_MAX_MESSAGE_SIZE: i32 = 256 * 1024;

/// How long a consumer has to acknowledge a delivery before JetStream hands it
/// to another replica. Issuing one certificate (an RSA-4096 key, three API
/// writes) takes seconds; 30 s leaves a wide margin while still recovering
/// quickly from a replica that died mid-work. A replica that is still working
/// says so every third of it ([`crate::Progress`]), so slow work is not
/// redelivered while it runs; only a replica that stopped (or lost NATS) for
/// longer lets the deadline pass.
pub const ACK_WAIT: Duration = Duration::from_secs(30);

/// How long a consumer keeps extending the ack deadline of one delivery
/// ([`crate::Progress`]). Handling a work item or an outcome takes seconds,
/// but the Kubernetes client sets no read timeout (kube's default), so a call
/// that an API server accepted and never answers waits for ever. A handler
/// still running after ten minutes is presumed stuck, and its message is left
/// to be redelivered to another replica rather than held until this one
/// restarts; handlers are idempotent, so a stuck one that wakes up later does
/// no harm.
pub const MAX_IN_PROGRESS: Duration = Duration::from_secs(10 * 60);

/// Deliveries before JetStream stops redelivering. With [`RETRY_DELAYS`] this
/// is about 70 minutes of retrying, long enough to ride out an API-server
/// upgrade. The final delivery is recognisable ([`Retry::GiveUp`]) so the
/// consumer can report the failure and terminate the message instead of
/// letting it go silent.
pub const MAX_DELIVER: u32 = 20;

/// Unacknowledged deliveries allowed across all replicas of one consumer.
/// Bounds the work in flight (and the memory and API-server load it implies)
/// however many replicas pull.
pub const MAX_ACK_PENDING: i64 = 256;

/// Delay before the next delivery after the n-th failed one (index n-1; the
/// last value repeats). Sent by the consumer as a delayed NAK. The consumer's
/// server-side `backoff` is deliberately not used: the server derives the ack
/// deadline of each delivery from it and adds it to NAK delays, so the two
/// would compound; keeping the schedule here makes the delay exactly this list.
pub const RETRY_DELAYS: [Duration; 7] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(15),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(2 * 60),
    Duration::from_secs(5 * 60),
];

/// What a consumer does with a delivery whose handling failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// NAK with this delay; JetStream delivers it again afterwards.
    After(Duration),
    /// No further delivery: this was the last one JetStream makes, or the
    /// error is one no retry fixes. Report the failure, dead-letter the
    /// message ([`crate::Publisher::dead_letter`]), which terminates it.
    GiveUp,
}

/// Redelivery schedule of the certflow consumers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    delays: Vec<Duration>,
    max_deliver: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            delays: RETRY_DELAYS.to_vec(),
            max_deliver: MAX_DELIVER,
        }
    }
}

impl RetryPolicy {
    /// A custom schedule, for tests that must see retries run out quickly.
    /// `delays` must not be empty and `max_deliver` must be at least 1.
    pub fn new(delays: Vec<Duration>, max_deliver: u32) -> Option<Self> {
        (!delays.is_empty() && max_deliver >= 1).then_some(Self {
            delays,
            max_deliver,
        })
    }

    /// Deliveries JetStream makes before giving up (the consumers' `max_deliver`).
    pub fn max_deliver(&self) -> u32 {
        self.max_deliver
    }

    /// What to do after delivery number `delivered` (1 for the first)
    /// failed with an error that is `transient` or not: every consumer's one
    /// rule.
    pub fn after_error(&self, transient: bool, delivered: u64) -> Retry {
        if transient {
            self.after_failed_delivery(delivered)
        } else {
            Retry::GiveUp
        }
    }

    /// What to do after delivery number `delivered` (1 for the first) failed
    /// transiently.
    pub fn after_failed_delivery(&self, delivered: u64) -> Retry {
        if delivered >= u64::from(self.max_deliver) {
            return Retry::GiveUp;
        }
        let index = usize::try_from(delivered.saturating_sub(1)).unwrap_or(usize::MAX);
        let delay = self
            .delays
            .get(index)
            .or(self.delays.last())
            .copied()
            .unwrap_or(Duration::ZERO);
        Retry::After(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_failure_retries_after_one_second() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.after_failed_delivery(1),
            Retry::After(Duration::from_secs(1))
        );
    }

    #[test]
    fn delays_stop_growing_at_five_minutes() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.after_failed_delivery(19),
            Retry::After(Duration::from_secs(300))
        );
    }

    #[test]
    fn the_last_delivery_gives_up() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.after_failed_delivery(20), Retry::GiveUp);
        assert_eq!(policy.after_failed_delivery(21), Retry::GiveUp);
    }

    #[test]
    fn an_error_no_retry_fixes_gives_up_at_once_and_a_transient_one_follows_the_schedule() {
        let policy = RetryPolicy::default();
        for delivered in [1, 5, 20] {
            assert_eq!(policy.after_error(false, delivered), Retry::GiveUp);
            assert_eq!(
                policy.after_error(true, delivered),
                policy.after_failed_delivery(delivered)
            );
        }
    }

    #[test]
    fn a_delivery_count_of_zero_is_treated_as_the_first() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.after_failed_delivery(0),
            Retry::After(Duration::from_secs(1))
        );
    }

    #[test]
    fn retrying_takes_about_seventy_minutes_in_total() {
        let policy = RetryPolicy::default();
        let total: Duration = (1..u64::from(MAX_DELIVER))
            .map(|n| match policy.after_failed_delivery(n) {
                Retry::After(delay) => delay,
                Retry::GiveUp => Duration::ZERO,
            })
            .sum();
        assert!(total > Duration::from_secs(60 * 60), "{total:?}");
        assert!(total < Duration::from_secs(80 * 60), "{total:?}");
    }

    #[test]
    fn custom_policies_need_a_delay_and_a_delivery() {
        assert!(RetryPolicy::new(vec![], 3).is_none());
        assert!(RetryPolicy::new(vec![Duration::ZERO], 0).is_none());
        let quick = RetryPolicy::new(vec![Duration::ZERO], 2);
        assert_eq!(
            quick.map(|p| p.after_failed_delivery(2)),
            Some(Retry::GiveUp)
        );
    }
}
