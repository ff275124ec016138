//! [`Progress`] against a real nats-server (the local control plane's): a
//! handler several times slower than its consumer's ack wait is delivered
//! exactly once while it reports progress, and the same handler without it
//! is delivered again while still running. Reporting ends with the handler
//! (returned or cancelled) and at its limit, after which JetStream
//! redelivers as usual.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, Message, stream};
use certflow_bus::Progress;
use certflow_bus::delivery::{DeliveryInfo, ack};
use futures::StreamExt as _;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

/// Short, so that a handler can be several times slower in a few seconds.
const ACK_WAIT: Duration = Duration::from_secs(2);
/// The slow handler: three ack waits.
const SLOW_WORK: Duration = Duration::from_secs(6);
/// How long to wait for a redelivery the server owes: it checks deadlines
/// on a timer, so one can come up to about an ack wait late.
const REDELIVERY: Duration = Duration::from_secs(10);

/// One stream holding one message, its consumer, and every delivery the
/// consumer makes, in order.
struct Queue {
    consumer: PullConsumer,
    deliveries: mpsc::UnboundedReceiver<Message>,
}

impl Queue {
    async fn with_one_message() -> Self {
        let env = certflow_testenv::shared();
        let client = match async_nats::connect(env.nats_url()).await {
            Ok(client) => client,
            Err(error) => panic!("connect to the test nats-server: {error}"),
        };
        let js = jetstream::new(client);
        let name = certflow_testenv::unique_name("progress");
        let stream = js
            .create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![format!("{name}.>")],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::Memory,
                ..Default::default()
            })
            .await;
        if let Err(error) = stream {
            panic!("create stream {name}: {error}");
        }
        let consumer: PullConsumer = match js
            .create_consumer_on_stream(
                pull::Config {
                    durable_name: Some("worker".to_owned()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    max_deliver: 10,
                    ..Default::default()
                },
                name.as_str(),
            )
            .await
        {
            Ok(consumer) => consumer,
            Err(error) => panic!("create consumer on {name}: {error}"),
        };
        let published = js.publish(format!("{name}.item"), "work".into()).await;
        match published {
            Ok(stored) => {
                if let Err(error) = stored.await {
                    panic!("the stream stores the message: {error}");
                }
            }
            Err(error) => panic!("publish: {error}"),
        }
        let mut messages = match consumer.messages().await {
            Ok(messages) => messages,
            Err(error) => panic!("pull from {name}: {error}"),
        };
        let (sender, deliveries) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(message)) = messages.next().await {
                if sender.send(message).is_err() {
                    return;
                }
            }
        });
        Self {
            consumer,
            deliveries,
        }
    }

    /// The next delivery, if one comes within `within`.
    async fn next_within(&mut self, within: Duration) -> Option<Message> {
        timeout(within, self.deliveries.recv()).await.ok().flatten()
    }

    async fn first(&mut self) -> Message {
        let Some(message) = self.next_within(REDELIVERY).await else {
            panic!("the message was never delivered");
        };
        assert_eq!(delivered(&message), 1);
        message
    }

    /// The server's count of messages it redelivered, and of deliveries
    /// waiting for an acknowledgement.
    async fn redelivered_and_pending(&mut self) -> (usize, usize) {
        match self.consumer.info().await {
            Ok(info) => (info.num_redelivered, info.num_ack_pending),
            Err(error) => panic!("consumer info: {error}"),
        }
    }
}

fn delivered(message: &Message) -> u64 {
    match DeliveryInfo::from_message(message) {
        Ok(info) => info.delivered,
        Err(error) => panic!("a JetStream delivery: {error}"),
    }
}

#[tokio::test]
async fn a_handler_three_ack_waits_long_is_delivered_once_while_it_reports_progress() {
    let mut queue = Queue::with_one_message().await;
    let progress = Progress::for_consumer(&queue.consumer);
    assert_eq!(
        progress.every(),
        ACK_WAIT / 3,
        "read from the server's consumer"
    );
    let message = queue.first().await;

    progress.keep(&message, tokio::time::sleep(SLOW_WORK)).await;
    if let Err(error) = ack(&message).await {
        panic!("ack: {error}");
    }

    assert!(
        queue.deliveries.try_recv().is_err(),
        "delivered again while the handler ran"
    );
    assert_eq!(queue.redelivered_and_pending().await, (0, 0));
}

/// The control: without progress the same handler does not keep its
/// message, so the test above would see it.
#[tokio::test]
async fn without_progress_the_same_handler_is_delivered_again_while_it_runs() {
    let mut queue = Queue::with_one_message().await;
    let _message = queue.first().await;
    let handler = tokio::spawn(tokio::time::sleep(SLOW_WORK));

    let again = queue.next_within(SLOW_WORK).await;
    assert!(!handler.is_finished(), "the redelivery came while it ran");
    assert_eq!(again.as_ref().map(delivered), Some(2));
}

#[tokio::test]
async fn reporting_ends_with_the_handler_and_an_unacknowledged_message_comes_back() {
    let mut queue = Queue::with_one_message().await;
    let message = queue.first().await;
    Progress::for_consumer(&queue.consumer)
        .keep(&message, tokio::time::sleep(2 * ACK_WAIT))
        .await;

    // Neither acked nor reported any more: redelivered after the ack wait.
    let again = queue.next_within(REDELIVERY).await;
    assert_eq!(again.as_ref().map(delivered), Some(2));
}

#[tokio::test]
async fn reporting_ends_when_the_handler_is_cancelled() {
    let mut queue = Queue::with_one_message().await;
    let message = queue.first().await;
    let progress = Progress::for_consumer(&queue.consumer);
    let cancelled = timeout(
        2 * ACK_WAIT,
        progress.keep(&message, std::future::pending::<()>()),
    )
    .await;
    assert!(cancelled.is_err());

    let again = queue.next_within(REDELIVERY).await;
    assert_eq!(again.as_ref().map(delivered), Some(2));
}

#[tokio::test]
async fn a_handler_running_past_the_limit_loses_its_message_to_a_redelivery() {
    let mut queue = Queue::with_one_message().await;
    let message = queue.first().await;
    let limit = 2 * ACK_WAIT;
    let started = Instant::now();
    let progress = Progress::for_consumer(&queue.consumer)
        .at_most(limit)
        .start(&message);

    let again = queue.next_within(limit + REDELIVERY).await;
    assert_eq!(again.as_ref().map(delivered), Some(2));
    assert!(
        started.elapsed() >= limit,
        "redelivered after {:?}, before the limit",
        started.elapsed()
    );
    progress.stop().await;
}
