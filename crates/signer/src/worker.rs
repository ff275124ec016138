//! Observes the shared durable `signer` consumer; acknowledges a work item
//! only after every write it implies succeeded; never drops one silently:
//! each ends acknowledged, retried later, or dead-lettered and reported.
//! While an item is handled it is reported in progress
//! ([`certflow_bus::Progress`]), so slow work is not redelivered meanwhile.

use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream::consumer::PullConsumer;
use certflow_bus::delivery::{ack, decode_work, retry_later};
use certflow_bus::{Delivery, InProgress, Progress, Publisher, Puller, Retry, RetryPolicy};
use certflow_proto::v1::WorkItem;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, error, info, info_span, warn};

use crate::Error;
use crate::handler::{Handled, Handler};
use crate::metrics::Metrics;

/// Pulls work items and handles up to `concurrency` at once.
#[derive(Debug)]
pub struct Worker {
    pub handler: Handler,
    pub consumer: PullConsumer,
    pub publisher: Publisher,
    pub retry: RetryPolicy,
    pub metrics: Metrics,
    pub concurrency: usize,
}

impl Worker {
    /// Runs until `shutdown` fires, then stops pulling and waits for the
    /// items in hand to finish. Items pulled but not started are simply not
    /// acknowledged; JetStream redelivers them to another replica.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let this = Arc::new(self);
        let slots = Arc::new(Semaphore::new(this.concurrency.max(1)));
        let mut in_flight = JoinSet::new();
        let mut puller = Puller::new(&this.consumer, this.concurrency, "work items");
        loop {
            let slot = tokio::select! {
                () = shutdown.cancelled() => break,
                slot = slots.clone().acquire_owned() => slot,
            };
            let Ok(slot) = slot else { break };
            let Some(message) = puller.next(&shutdown).await else {
                break;
            };
            let worker = this.clone();
            in_flight.spawn(async move {
                worker.process(message).await;
                drop(slot);
            });
            while in_flight.try_join_next().is_some() {}
        }
        info!(in_flight = in_flight.len(), "draining in-flight work items");
        while in_flight.join_next().await.is_some() {}
        Ok(())
    }

    async fn process(&self, message: async_nats::jetstream::Message) {
        let started = Instant::now();
        let delivery = match decode_work(&message) {
            Ok(delivery) => delivery,
            Err(err) => {
                error!(error = %err, subject = %message.subject, "undecodable work item; dead-lettering it");
                self.dead_letter(&message, &err).await;
                self.metrics.handled("dead_letter", started);
                return;
            }
        };
        let item = &delivery.message;
        self.metrics.consumer_pending(delivery.info.pending);
        let span = info_span!("work_item", namespace = %item.namespace, name = %item.name, trace_id = tracing::field::Empty, delivered = delivery.info.delivered);
        // A child of the watcher's publishing span, in its trace.
        let trace = certflow_bus::trace::follow(&span, delivery.info.trace.as_ref());
        async {
            // Stopped before the ack, NAK or term below, which are the last
            // word on the message.
            let progress = Progress::for_consumer(&self.consumer).start(&message);
            match self.handler.handle(item, &trace).await {
                Ok(handled) => {
                    progress.stop().await;
                    if let Err(err) = ack(&message).await {
                        // Redelivered later; the handler is idempotent.
                        warn!(error = %err, "acknowledgement failed");
                    }
                    self.metrics.handled(label(&handled), started);
                }
                Err(err) => match self.retry.after_error(err.is_transient(), delivery.info.delivered) {
                    Retry::After(delay) => {
                        progress.stop().await;
                        warn!(error = %err, ?delay, "transient failure; retrying later");
                        self.metrics.retried(err.kind());
                        if let Err(nak) = retry_later(&message, delay).await {
                            warn!(error = %nak, "negative acknowledgement failed; JetStream redelivers after the ack wait");
                        }
                        self.metrics.handled("retry", started);
                    }
                    Retry::GiveUp => self.give_up(&message, progress, &delivery, &trace, &err, started).await,
                },
            }
        }
        .instrument(span)
        .await;
    }

    /// Reports the failure to the owner, keeps the item as a dead letter and
    /// ends its deliveries. `progress` runs until the report is written.
    async fn give_up(
        &self,
        message: &async_nats::jetstream::Message,
        progress: InProgress,
        delivery: &Delivery<WorkItem>,
        trace: &certflow_bus::TraceId,
        err: &Error,
        started: Instant,
    ) {
        let (item, delivered) = (&delivery.message, delivery.info.delivered);
        error!(error = %err, delivered, "giving up on work item");
        let attempts = u32::try_from(delivered).unwrap_or(u32::MAX);
        if let Err(report) = self.handler.give_up(item, trace, attempts, err).await {
            warn!(error = %report, "could not report the failure to the ServiceCertificate");
        }
        progress.stop().await;
        self.dead_letter(message, err).await;
        self.metrics.handled("gave_up", started);
    }

    async fn dead_letter(
        &self,
        message: &async_nats::jetstream::Message,
        err: &(dyn std::error::Error + Send + Sync + 'static),
    ) {
        if self.publisher.dead_letter(message, err).await {
            self.metrics.dead_lettered();
        }
    }
}

fn label(handled: &Handled) -> &'static str {
    match handled {
        Handled::Issued { .. } => "issued",
        Handled::UpToDate => "up_to_date",
        Handled::Failed { .. } => "failed",
        Handled::Skipped { .. } => "skipped",
    }
}
