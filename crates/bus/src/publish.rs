//! Publishing work items, outcomes and dead letters, each awaited until the
//! stream has stored it.

use async_nats::HeaderMap;
use async_nats::header::{NATS_EXPECTED_STREAM, NATS_MESSAGE_ID};
use async_nats::jetstream::{self, message::PublishMessage};
use certflow_proto::v1::{DeadLetter, Outcome, SCHEMA_VERSION, WorkItem, outcome};
use prost::Message as _;
use tracing::{debug, instrument};

use crate::trace::insert_trace;
use crate::{BusError, Topology, TraceId};

/// Header naming the protobuf message in the payload, e.g.
/// `certflow.v1.WorkItem`; for people reading a stream with the `nats` CLI.
pub const MESSAGE_TYPE_HEADER: &str = "certflow-message";

/// What the stream said about a stored message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishReceipt {
    /// Stream that stored it.
    pub stream: String,
    /// Its sequence in that stream (the original's, for a duplicate).
    pub sequence: u64,
    /// True when the stream had already stored a message with the same
    /// `Nats-Msg-Id` inside the de-duplication window and dropped this one.
    pub duplicate: bool,
}

/// Publishes certflow messages on the subjects of one [`Topology`].
#[derive(Clone, Debug)]
pub struct Publisher {
    js: jetstream::Context,
    topology: Topology,
}

impl Publisher {
    /// A publisher on `js` for the subjects of `topology`. The streams must
    /// exist (the setup step's [`crate::ensure`]); publishing to a missing
    /// stream fails with a transient [`BusError::Publish`].
    pub fn new(js: jetstream::Context, topology: Topology) -> Self {
        Self { js, topology }
    }

    /// The topology this publisher publishes into.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Publishes a work item on `<prefix>.work.v1.<namespace>.<name>` with
    /// `Nats-Msg-Id` = `item.dedup_id`, and waits for the work stream to store
    /// it. A receipt with `duplicate: true` means the same decision was
    /// already queued within [`crate::settings::DUPLICATE_WINDOW`].
    #[instrument(skip_all, fields(namespace = %item.namespace, name = %item.name, dedup_id = %item.dedup_id, trace_id = %trace))]
    pub async fn publish_work(
        &self,
        item: &WorkItem,
        trace: &TraceId,
    ) -> Result<PublishReceipt, BusError> {
        check_schema_version("WorkItem", item.schema_version)?;
        if item.dedup_id.is_empty() {
            return Err(invalid("WorkItem", "dedup_id is empty"));
        }
        let subject = self.topology.work_subject(&item.namespace, &item.name)?;
        self.publish(Outgoing {
            subject,
            stream: self.topology.work_stream(),
            message_type: "certflow.v1.WorkItem",
            message_id: Some(item.dedup_id.clone()),
            trace: Some(trace),
            payload: item.encode_to_vec(),
        })
        .await
    }

    /// Publishes an outcome on `<prefix>.outcome.v1.<namespace>.<name>` with
    /// the message id of [`outcome_message_id`], and waits for the outcome
    /// stream to store it.
    #[instrument(skip_all, fields(namespace = %outcome.namespace, name = %outcome.name, trace_id = %trace))]
    pub async fn publish_outcome(
        &self,
        outcome: &Outcome,
        trace: &TraceId,
    ) -> Result<PublishReceipt, BusError> {
        check_schema_version("Outcome", outcome.schema_version)?;
        let message_id = outcome_message_id(outcome)?;
        let subject = self
            .topology
            .outcome_subject(&outcome.namespace, &outcome.name)?;
        self.publish(Outgoing {
            subject,
            stream: self.topology.outcome_stream(),
            message_type: "certflow.v1.Outcome",
            message_id: Some(message_id),
            trace: Some(trace),
            payload: outcome.encode_to_vec(),
        })
        .await
    }

    /// Publishes a dead letter on the subject [`Topology::dead_letter_subject`]
    /// derives from `dead.original_subject`, de-duplicated by
    /// [`dead_letter_message_id`], and waits for the dead-letter stream to store it.
    #[instrument(skip_all, fields(original_subject = %dead.original_subject))]
    pub async fn publish_dead_letter(
        &self,
        dead: &DeadLetter,
        trace: Option<&TraceId>,
    ) -> Result<PublishReceipt, BusError> {
        check_schema_version("DeadLetter", dead.schema_version)?;
        self.publish(Outgoing {
            subject: self.topology.dead_letter_subject(&dead.original_subject),
            stream: self.topology.dead_letter_stream(),
            message_type: "certflow.v1.DeadLetter",
            message_id: dead_letter_message_id(dead),
            trace,
            payload: dead.encode_to_vec(),
        })
        .await
    }

    /// Keeps `message` as a dead letter naming `error`, then terminates it,
    /// so it is neither redelivered nor lost. Returns whether the dead
    /// letter was stored; if not, the message is left unacknowledged and
    /// comes back to be tried again. Failures are logged here.
    pub async fn dead_letter(
        &self,
        message: &async_nats::jetstream::Message,
        error: &(dyn std::error::Error + Send + Sync + 'static),
    ) -> bool {
        let dead = crate::dead_letter_for(message, error);
        if let Err(err) = self.publish_dead_letter(&dead, None).await {
            tracing::warn!(error = %err, "dead-letter publish failed; the message comes back");
            return false;
        }
        if let Err(err) = crate::delivery::terminate(message).await {
            tracing::warn!(error = %err, "terminating the dead-lettered message failed");
        }
        true
    }

    async fn publish(&self, outgoing: Outgoing<'_>) -> Result<PublishReceipt, BusError> {
        let Outgoing {
            subject,
            stream,
            message_type,
            message_id,
            trace,
            payload,
        } = outgoing;
        let mut headers = HeaderMap::new();
        if let Some(trace) = trace {
            insert_trace(&mut headers, trace);
        }
        headers.insert(MESSAGE_TYPE_HEADER, message_type);
        // The server refuses the message if the subject is not captured by
        // this stream, instead of storing it wherever it lands.
        headers.insert(NATS_EXPECTED_STREAM, stream.as_str());
        if let Some(id) = &message_id {
            headers.insert(NATS_MESSAGE_ID, id.as_str());
        }
        let publish = PublishMessage::build()
            .payload(payload.into())
            .headers(headers);
        let publish_error = |source| BusError::Publish {
            subject: subject.clone(),
            source,
        };
        let ack = self
            .js
            .send_publish(subject.clone(), publish)
            .await
            .map_err(publish_error)?
            .await
            .map_err(publish_error)?;
        debug!(
            subject,
            stream = ack.stream,
            sequence = ack.sequence,
            duplicate = ack.duplicate,
            "published"
        );
        Ok(PublishReceipt {
            stream: ack.stream,
            sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }
}

struct Outgoing<'a> {
    subject: String,
    stream: String,
    message_type: &'static str,
    message_id: Option<String>,
    trace: Option<&'a TraceId>,
    payload: Vec<u8>,
}

/// The `Nats-Msg-Id` of an outcome. It names one attempt's result, so that a
/// publisher retrying after a lost acknowledgement stores it once, while a
/// later attempt (a redelivery, a new generation) is a new message:
///
/// - issued: `<uid>/<generation>/issued/<serial_number>`: one certificate is
///   one outcome, however often its publication is retried;
/// - failed: `<uid>/<generation>/failed/<work_id>/<attempts>`: each delivery
///   of each work item may report its failure once.
pub fn outcome_message_id(outcome: &Outcome) -> Result<String, BusError> {
    if outcome.uid.is_empty() {
        return Err(invalid("Outcome", "uid is empty"));
    }
    let identity = format!("{}/{}", outcome.uid, outcome.generation);
    match &outcome.result {
        Some(outcome::Result::Issued(issued)) => {
            if issued.serial_number.is_empty() {
                return Err(invalid("Outcome", "issued.serial_number is empty"));
            }
            Ok(format!("{identity}/issued/{}", issued.serial_number))
        }
        Some(outcome::Result::Failed(failed)) => Ok(format!(
            "{identity}/failed/{}/{}",
            outcome.work_id, failed.attempts
        )),
        None => Err(invalid("Outcome", "result is neither issued nor failed")),
    }
}

/// The `Nats-Msg-Id` of a dead letter: `dead/<original_stream>/<sequence>`,
/// so a stored message is dead-lettered at most once; `None` when the
/// original's stream position is unknown.
pub fn dead_letter_message_id(dead: &DeadLetter) -> Option<String> {
    (dead.original_stream_sequence != 0 && !dead.original_stream.is_empty()).then(|| {
        format!(
            "dead/{}/{}",
            dead.original_stream, dead.original_stream_sequence
        )
    })
}

fn check_schema_version(message: &'static str, found: u32) -> Result<(), BusError> {
    if found == SCHEMA_VERSION {
        Ok(())
    } else {
        Err(invalid(
            message,
            format!("schema_version is {found}, expected {SCHEMA_VERSION}"),
        ))
    }
}

fn invalid(message: &'static str, reason: impl Into<String>) -> BusError {
    BusError::InvalidMessage {
        message,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use certflow_proto::v1::{Failed, Issued};

    use super::*;

    fn outcome(result: outcome::Result) -> Outcome {
        Outcome {
            schema_version: SCHEMA_VERSION,
            namespace: "shop".into(),
            name: "api".into(),
            uid: "u-1".into(),
            generation: 4,
            secret_name: "api-tls".into(),
            result: Some(result),
            occurred_at: None,
            work_id: "w-9".into(),
        }
    }

    #[test]
    fn an_issued_outcome_is_identified_by_its_certificate() {
        let issued = outcome(outcome::Result::Issued(Issued {
            serial_number: "0a1b".into(),
            ..Issued::default()
        }));
        assert_eq!(
            outcome_message_id(&issued).ok().as_deref(),
            Some("u-1/4/issued/0a1b")
        );
    }

    #[test]
    fn a_failed_outcome_is_identified_by_work_item_and_attempt() {
        let failed = |attempts| {
            outcome(outcome::Result::Failed(Failed {
                reason: "IssuerNotFound".into(),
                attempts,
                ..Failed::default()
            }))
        };
        assert_eq!(
            outcome_message_id(&failed(2)).ok().as_deref(),
            Some("u-1/4/failed/w-9/2")
        );
        assert_ne!(
            outcome_message_id(&failed(2)).ok(),
            outcome_message_id(&failed(3)).ok()
        );
    }

    #[test]
    fn an_outcome_without_result_or_uid_has_no_id() {
        let mut empty = outcome(outcome::Result::Failed(Failed::default()));
        empty.result = None;
        assert!(outcome_message_id(&empty).is_err());
        let mut anonymous = outcome(outcome::Result::Failed(Failed::default()));
        anonymous.uid.clear();
        assert!(outcome_message_id(&anonymous).is_err());
    }

    #[test]
    fn dead_letters_are_identified_by_their_original_position() {
        let dead = DeadLetter {
            original_stream: "CERTFLOW_WORK".into(),
            original_stream_sequence: 12,
            ..DeadLetter::default()
        };
        assert_eq!(
            dead_letter_message_id(&dead).as_deref(),
            Some("dead/CERTFLOW_WORK/12")
        );
        assert_eq!(dead_letter_message_id(&DeadLetter::default()), None);
    }

    #[test]
    fn messages_of_another_schema_version_are_refused() {
        assert!(check_schema_version("WorkItem", 0).is_err());
        assert!(check_schema_version("WorkItem", 2).is_err());
        assert!(check_schema_version("WorkItem", SCHEMA_VERSION).is_ok());
    }
}
