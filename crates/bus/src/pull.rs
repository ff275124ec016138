//! Pulling from a durable consumer for as long as the service runs: every
//! consumer loop in certflow (the signer's work items, the reporter's
//! outcomes) takes its messages from a [`Puller`], which subscribes again
//! after a failed pull and waits a second after a failed subscription, so
//! only shutdown ends it.

use std::time::Duration;

use async_nats::jetstream::Message;
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::consumer::pull::Stream;
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Wait after a subscription the server refused, before the next.
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// The messages of one durable pull consumer, in batches of `batch`.
pub struct Puller<'a> {
    consumer: &'a PullConsumer,
    batch: usize,
    /// The consumer's name in logs: "work items", "outcomes".
    what: &'static str,
    messages: Option<Stream>,
}

impl std::fmt::Debug for Puller<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Puller")
            .field("what", &self.what)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

impl<'a> Puller<'a> {
    pub fn new(consumer: &'a PullConsumer, batch: usize, what: &'static str) -> Self {
        Self {
            consumer,
            batch: batch.max(1),
            what,
            messages: None,
        }
    }

    /// The next message, or `None` once `shutdown` fires. A failed pull or
    /// subscription is logged and tried again; it never ends the loop.
    pub async fn next(&mut self, shutdown: &CancellationToken) -> Option<Message> {
        loop {
            let messages = match &mut self.messages {
                Some(messages) => messages,
                None => {
                    let subscribed = tokio::select! {
                        () = shutdown.cancelled() => return None,
                        subscribed = self.consumer.stream().max_messages_per_batch(self.batch).messages() => subscribed,
                    };
                    match subscribed {
                        Ok(messages) => self.messages.insert(messages),
                        Err(err) => {
                            warn!(error = %err, what = self.what, "cannot pull from the stream; retrying");
                            tokio::select! {
                                () = shutdown.cancelled() => return None,
                                () = tokio::time::sleep(RESUBSCRIBE_DELAY) => continue,
                            }
                        }
                    }
                }
            };
            let next = tokio::select! {
                () = shutdown.cancelled() => return None,
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => return Some(message),
                Some(Err(err)) => {
                    warn!(error = %err, what = self.what, "pulling failed; subscribing again");
                    self.messages = None;
                }
                None => self.messages = None,
            }
        }
    }
}
