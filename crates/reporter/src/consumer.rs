//! Observes the durable `reporter` consumer on the outcome stream; hands
//! each outcome to [`Outcomes`], which writes the Events it implies;
//! writes acknowledgements, delayed NAKs and dead letters, an
//! acknowledgement only once the outcome was handled; never drops one
//! silently: each ends
//! acknowledged, retried later, or dead-lettered.
//!
//! Outcomes are spread over lanes by Secret, and each lane handles its
//! outcomes one at a time in delivery order, so a failure and the issuance
//! that resolves it are never handled out of order by one replica. An
//! outcome is reported in progress ([`certflow_bus::Progress`]) from the
//! moment it enters its lane until it is handled, so neither a slow outcome
//! nor the ones queued behind it are redelivered meanwhile.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;
use std::time::SystemTime;

use async_nats::jetstream::Message;
use async_nats::jetstream::consumer::PullConsumer;
use certflow_bus::delivery::{ack, decode_outcome, retry_later};
use certflow_bus::{Delivery, InProgress, Progress, Publisher, Puller, Retry, RetryPolicy};
use certflow_proto::v1::Outcome;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, error, info, info_span, warn};

use crate::outcomes::Outcomes;

/// Outcomes waiting in one lane. Small, so that an outcome about another
/// Secret does not wait long behind a slow one.
const LANE_DEPTH: usize = 4;

/// An outcome in a lane: the delivery, and the progress reports that keep
/// it from being redelivered while it waits and is handled.
type Queued = (Message, Delivery<Outcome>, InProgress);

/// Pulls outcomes and hands them to lanes.
#[derive(Debug)]
pub struct Consumer {
    pub outcomes: Arc<Outcomes>,
    pub consumer: PullConsumer,
    pub publisher: Publisher,
    pub retry: RetryPolicy,
    /// Outcomes handled at once (one per lane).
    pub lanes: usize,
}

/// The lane of an outcome: the same for every outcome about one Secret.
pub fn lane_of(outcome: &Outcome, lanes: usize) -> usize {
    let mut hasher = DefaultHasher::new();
    outcome.namespace.hash(&mut hasher);
    if outcome.secret_name.is_empty() {
        outcome.name.hash(&mut hasher);
    } else {
        outcome.secret_name.hash(&mut hasher);
    }
    let lanes = u64::try_from(lanes.max(1)).unwrap_or(1);
    usize::try_from(hasher.finish() % lanes).unwrap_or(0)
}

impl Consumer {
    /// Runs until `shutdown`, then stops pulling and lets every lane finish
    /// what it holds. Outcomes pulled but never handled are not
    /// acknowledged; JetStream delivers them again.
    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let lanes = this.lanes.max(1);
        let progress = Progress::for_consumer(&this.consumer);
        let mut senders = Vec::with_capacity(lanes);
        let mut workers = JoinSet::new();
        for _ in 0..lanes {
            let (sender, receiver) = mpsc::channel(LANE_DEPTH);
            senders.push(sender);
            workers.spawn(this.clone().lane(receiver));
        }
        let mut puller = Puller::new(&this.consumer, lanes * LANE_DEPTH, "outcomes");
        while let Some(message) = puller.next(&shutdown).await {
            let delivery = match decode_outcome(&message) {
                Ok(delivery) => delivery,
                Err(err) => {
                    error!(error = %err, subject = %message.subject, "undecodable outcome; dead-lettering it");
                    this.dead_letter(&message, &err).await;
                    continue;
                }
            };
            let lane = &senders[lane_of(&delivery.message, lanes)];
            let reporting = progress.start(&message);
            tokio::select! {
                () = shutdown.cancelled() => break,
                sent = lane.send((message, delivery, reporting)) => if sent.is_err() { break },
            }
        }
        drop(senders);
        info!("draining outcomes in hand");
        while workers.join_next().await.is_some() {}
    }

    async fn lane(self: Arc<Self>, mut receiver: mpsc::Receiver<Queued>) {
        while let Some((message, delivery, progress)) = receiver.recv().await {
            self.process(&message, &delivery, progress).await;
        }
    }

    /// Handles one outcome; `progress` stops before the ack, NAK or term,
    /// which are the last word on the message.
    async fn process(&self, message: &Message, delivery: &Delivery<Outcome>, progress: InProgress) {
        let outcome = &delivery.message;
        let info = &delivery.info;
        let span = info_span!("outcome", namespace = %outcome.namespace, name = %outcome.name, trace_id = tracing::field::Empty, delivered = info.delivered);
        // A child of the signer's publishing span, in the watcher's trace.
        certflow_bus::trace::follow(&span, info.trace.as_ref());
        let metrics = self.outcomes.metrics();
        metrics.consumer_pending(info.pending);
        async {
            let handled = self.outcomes.handle(outcome).await;
            progress.stop().await;
            match handled {
                Ok(handled) => {
                    if let Err(err) = ack(message).await {
                        // Redelivered later; handling it again only grows a series.
                        warn!(error = %err, "acknowledgement failed");
                    }
                    metrics.outcome(handled.label());
                    if let Some(latency) = outcome
                        .occurred_at
                        .and_then(|t| SystemTime::try_from(t).ok())
                        .and_then(|at| SystemTime::now().duration_since(at).ok())
                    {
                        metrics.outcome_latency(latency);
                    }
                }
                Err(err) => match self.retry.after_error(err.is_transient(), info.delivered) {
                    Retry::After(delay) => {
                        warn!(error = %err, ?delay, "transient failure; retrying later");
                        metrics.outcome("retry");
                        if let Err(nak) = retry_later(message, delay).await {
                            warn!(error = %nak, "negative acknowledgement failed; JetStream redelivers after the ack wait");
                        }
                    }
                    Retry::GiveUp => {
                        error!(error = %err, "the outcome cannot be reported; dead-lettering it");
                        self.dead_letter(message, &err).await;
                    }
                },
            }
        }
        .instrument(span)
        .await;
    }

    /// Keeps `message` as a dead letter and ends its deliveries (see
    /// [`Publisher::dead_letter`]).
    async fn dead_letter(
        &self,
        message: &Message,
        err: &(dyn std::error::Error + Send + Sync + 'static),
    ) {
        if self.publisher.dead_letter(message, err).await {
            self.outcomes.metrics().outcome("dead_letter");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(namespace: &str, name: &str, secret_name: &str) -> Outcome {
        Outcome {
            namespace: namespace.into(),
            name: name.into(),
            secret_name: secret_name.into(),
            ..Outcome::default()
        }
    }

    #[test]
    fn outcomes_about_one_secret_share_a_lane() {
        let a = lane_of(&outcome("shop", "web", "web-tls"), 8);
        let b = lane_of(&outcome("shop", "web-renamed", "web-tls"), 8);
        assert_eq!(a, b);
        assert!(a < 8);
    }

    #[test]
    fn outcomes_spread_over_the_lanes() {
        let lanes: std::collections::BTreeSet<usize> = (0..200)
            .map(|i| lane_of(&outcome("shop", "web", &format!("tls-{i}")), 8))
            .collect();
        assert_eq!(lanes.len(), 8);
    }

    #[test]
    fn one_lane_takes_everything() {
        assert_eq!(lane_of(&outcome("shop", "web", "web-tls"), 1), 0);
        assert_eq!(lane_of(&outcome("shop", "web", "web-tls"), 0), 0);
    }
}
