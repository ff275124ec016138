//! Keeping a delivery while it is being handled: JetStream hands a message
//! that was not acknowledged within the consumer's ack wait to another
//! replica, and counts that as a delivery. A handler slower than the ack wait
//! (an RSA-4096 key under a CPU limit, a slow API call) would otherwise run
//! twice and burn its retries while still working. [`Progress`] tells
//! JetStream "still working" (`AckKind::Progress`) on a schedule derived from
//! the consumer's ack wait, from the moment a message is taken until its
//! handler ends; every consumer loop uses it.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::Message;
use async_nats::jetstream::consumer::PullConsumer;
use tokio::task::JoinHandle;
use tracing::{Instrument as _, debug, warn};

use crate::delivery::in_progress;
use crate::settings::{ACK_WAIT, MAX_IN_PROGRESS};

/// How often a delivery in hand is reported in progress, and for how long at
/// most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    every: Duration,
    at_most: Duration,
}

impl Default for Progress {
    /// The schedule for [`ACK_WAIT`], the ack wait of certflow's consumers.
    fn default() -> Self {
        Self::for_ack_wait(ACK_WAIT)
    }
}

impl Progress {
    /// A report every third of `ack_wait`, so that two may be lost or late
    /// before the deadline passes, for at most [`MAX_IN_PROGRESS`].
    pub fn for_ack_wait(ack_wait: Duration) -> Self {
        Self {
            every: (ack_wait / 3).max(Duration::from_millis(1)),
            at_most: MAX_IN_PROGRESS,
        }
    }

    /// The schedule for the ack wait `consumer` actually has on the server
    /// (as of its last info), rather than the one this build would configure.
    pub fn for_consumer(consumer: &PullConsumer) -> Self {
        Self::for_ack_wait(consumer.cached_info().config.ack_wait)
    }

    /// Stops reporting after `at_most`: a handler still running then is
    /// presumed stuck, and its message is left to be redelivered.
    #[must_use]
    pub fn at_most(self, at_most: Duration) -> Self {
        Self { at_most, ..self }
    }

    /// Time between two reports.
    pub fn every(&self) -> Duration {
        self.every
    }

    /// How long reports are sent at most.
    pub fn limit(&self) -> Duration {
        self.at_most
    }

    /// Starts reporting `message` in progress in a task of its own (so a
    /// handler that keeps its task busy cannot starve it), in the caller's
    /// span, until the returned guard is stopped or dropped.
    pub fn start(self, message: &Message) -> InProgress {
        let message = message.clone();
        InProgress {
            task: Some(tokio::spawn(self.report(message).in_current_span())),
        }
    }

    /// Runs `work` with `message` reported in progress, and stops reporting
    /// before returning, so that the caller's ack, NAK or term is the last
    /// word on the message.
    pub async fn keep<F: Future>(self, message: &Message, work: F) -> F::Output {
        let progress = self.start(message);
        let output = work.await;
        progress.stop().await;
        output
    }

    async fn report(self, message: Message) {
        let started = tokio::time::Instant::now();
        let mut ticks = tokio::time::interval_at(started + self.every, self.every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if started.elapsed() >= self.at_most {
                warn!(
                    subject = %message.subject,
                    limit_seconds = self.at_most.as_secs_f64(),
                    "still handling the message; no longer extending its ack deadline, \
                     so JetStream redelivers it"
                );
                return;
            }
            match in_progress(&message).await {
                Ok(()) => debug!(subject = %message.subject, "reported in progress"),
                // The next report may get through; if none does, the message
                // is redelivered, which is what would happen without them.
                Err(error) => warn!(%error, "reporting the message in progress failed"),
            }
        }
    }
}

/// Reports one message in progress until stopped or dropped.
#[derive(Debug)]
pub struct InProgress {
    task: Option<JoinHandle<()>>,
}

impl InProgress {
    /// Stops reporting and waits until the reporting task has ended, so no
    /// report can reach the server after what the caller sends next.
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            // Cancelled (the usual case) or finished at its limit: either way
            // it sends nothing more.
            let _ = task.await;
        }
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_come_three_times_per_ack_wait() {
        let progress = Progress::for_ack_wait(Duration::from_secs(30));
        assert_eq!(progress.every(), Duration::from_secs(10));
        assert_eq!(progress.limit(), MAX_IN_PROGRESS);
        assert_eq!(Progress::default(), progress);
    }

    #[test]
    fn a_zero_ack_wait_does_not_make_a_busy_loop() {
        assert!(Progress::for_ack_wait(Duration::ZERO).every() > Duration::ZERO);
    }

    #[test]
    fn the_limit_can_be_shortened() {
        let progress =
            Progress::for_ack_wait(Duration::from_secs(3)).at_most(Duration::from_secs(5));
        assert_eq!(progress.every(), Duration::from_secs(1));
        assert_eq!(progress.limit(), Duration::from_secs(5));
    }
}
