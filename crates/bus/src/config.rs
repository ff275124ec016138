//! The stream and consumer configurations, built from a [`Topology`]. The
//! values and their reasons live in [`crate::settings`].

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, ReplayPolicy, pull};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};

use crate::Topology;
use crate::settings::{
    ACK_WAIT, DEAD_LETTER_MAX_AGE, DEAD_LETTER_MAX_BYTES, DEAD_LETTER_MAX_MESSAGE_SIZE,
    DUPLICATE_WINDOW, MAX_ACK_PENDING, MAX_MESSAGE_SIZE, OUTCOME_MAX_AGE, OUTCOME_MAX_BYTES,
    REPORTER_CONSUMER, SIGNER_CONSUMER, WORK_MAX_AGE, WORK_MAX_BYTES,
};

impl Topology {
    /// The work stream: a work queue (a message is gone once a signer acks
    /// it), on disk, de-duplicated by `Nats-Msg-Id`, refusing new work when
    /// full rather than dropping old work.
    pub fn work_stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.work_stream(),
            description: Some(
                "certflow work items: one per (re)issuance decision; consumed by the signer"
                    .to_owned(),
            ),
            subjects: vec![self.work_filter()],
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            num_replicas: self.replicas(),
            duplicate_window: DUPLICATE_WINDOW,
            max_age: WORK_MAX_AGE,
            max_bytes: WORK_MAX_BYTES,
            max_message_size: MAX_MESSAGE_SIZE,
            discard: DiscardPolicy::New,
            ..Default::default()
        }
    }

    /// The outcome stream: kept for a day whether or not it was consumed
    /// (limits retention), so a reporter can replay after an outage.
    pub fn outcome_stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.outcome_stream(),
            description: Some(
                "certflow outcomes: what the signer did with each work item; consumed by the reporter"
                    .to_owned(),
            ),
            subjects: vec![self.outcome_filter()],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            num_replicas: self.replicas(),
            duplicate_window: DUPLICATE_WINDOW,
            max_age: OUTCOME_MAX_AGE,
            max_bytes: OUTCOME_MAX_BYTES,
            max_message_size: MAX_MESSAGE_SIZE,
            discard: DiscardPolicy::Old,
            ..Default::default()
        }
    }

    /// The dead-letter stream: messages given up on, kept for a human to read
    /// (`nats stream view <PREFIX>_DEAD`). It has no consumer.
    pub fn dead_letter_stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.dead_letter_stream(),
            description: Some(
                "certflow dead letters: messages that could not be processed; for operators"
                    .to_owned(),
            ),
            subjects: vec![self.dead_letter_filter()],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            num_replicas: self.replicas(),
            duplicate_window: DUPLICATE_WINDOW,
            max_age: DEAD_LETTER_MAX_AGE,
            max_bytes: DEAD_LETTER_MAX_BYTES,
            max_message_size: DEAD_LETTER_MAX_MESSAGE_SIZE,
            discard: DiscardPolicy::Old,
            ..Default::default()
        }
    }

    /// The signer's durable pull consumer on the work stream. All replicas pull
    /// from it, so each work item goes to one replica at a time.
    pub fn signer_consumer_config(&self) -> pull::Config {
        self.consumer_config(
            SIGNER_CONSUMER,
            "certflow-signer replicas: issue certificates for work items",
            self.work_filter(),
        )
    }

    /// The reporter's durable pull consumer on the outcome stream.
    pub fn reporter_consumer_config(&self) -> pull::Config {
        self.consumer_config(
            REPORTER_CONSUMER,
            "certflow-reporter replicas: turn outcomes into Kubernetes Events",
            self.outcome_filter(),
        )
    }

    fn consumer_config(&self, name: &str, description: &str, filter: String) -> pull::Config {
        pull::Config {
            durable_name: Some(name.to_owned()),
            description: Some(description.to_owned()),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            max_deliver: i64::from(self.retry_policy().max_deliver()),
            filter_subject: filter,
            replay_policy: ReplayPolicy::Instant,
            max_ack_pending: MAX_ACK_PENDING,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::settings::MAX_DELIVER;

    #[test]
    fn work_is_a_file_backed_work_queue_with_a_two_minute_duplicate_window() {
        let config = Topology::default().work_stream_config();
        assert_eq!(config.name, "CERTFLOW_WORK");
        assert_eq!(config.subjects, ["certflow.work.v1.>"]);
        assert_eq!(config.retention, RetentionPolicy::WorkQueue);
        assert_eq!(config.storage, StorageType::File);
        assert_eq!(config.duplicate_window, Duration::from_secs(120));
        assert_eq!(config.discard, DiscardPolicy::New);
    }

    #[test]
    fn outcomes_are_kept_for_a_day() {
        let config = Topology::default().outcome_stream_config();
        assert_eq!(config.retention, RetentionPolicy::Limits);
        assert_eq!(config.max_age, Duration::from_secs(24 * 3600));
        assert_eq!(config.subjects, ["certflow.outcome.v1.>"]);
    }

    #[test]
    fn dead_letters_are_kept_for_thirty_days() {
        let config = Topology::default().dead_letter_stream_config();
        assert_eq!(config.max_age, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(config.subjects, ["certflow.dead.v1.>"]);
    }

    #[test]
    fn stream_subjects_do_not_overlap() {
        let t = Topology::default();
        let filters = [t.work_filter(), t.outcome_filter(), t.dead_letter_filter()];
        for (i, a) in filters.iter().enumerate() {
            for b in &filters[i + 1..] {
                let a_root = a.trim_end_matches('>');
                let b_root = b.trim_end_matches('>');
                assert!(!a_root.starts_with(b_root) && !b_root.starts_with(a_root));
            }
        }
    }

    #[test]
    fn the_signer_acks_explicitly_within_thirty_seconds() {
        let config = Topology::default().signer_consumer_config();
        assert_eq!(config.durable_name.as_deref(), Some("signer"));
        assert_eq!(config.ack_policy, AckPolicy::Explicit);
        assert_eq!(config.ack_wait, Duration::from_secs(30));
        assert_eq!(config.max_deliver, i64::from(MAX_DELIVER));
        assert_eq!(config.filter_subject, "certflow.work.v1.>");
        assert!(config.backoff.is_empty());
    }

    #[test]
    fn the_reporter_consumes_every_outcome() {
        let config = Topology::default().reporter_consumer_config();
        assert_eq!(config.durable_name.as_deref(), Some("reporter"));
        assert_eq!(config.filter_subject, "certflow.outcome.v1.>");
        assert_eq!(config.deliver_policy, DeliverPolicy::All);
    }

    #[test]
    fn replicas_reach_every_stream() {
        let t = Topology::default().with_replicas(3);
        let t = t.ok();
        let replicas = t.map(|t| {
            [
                t.work_stream_config().num_replicas,
                t.outcome_stream_config().num_replicas,
                t.dead_letter_stream_config().num_replicas,
            ]
        });
        assert_eq!(replicas, Some([3, 3, 3]));
    }
}
