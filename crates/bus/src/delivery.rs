//! Reading deliveries: decoding payloads, the delivery's position and count,
//! acknowledging, and wrapping what cannot be read into a dead letter.

use std::error::Error;
use std::time::{Duration, SystemTime};

use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::{self, AckKind};
use certflow_proto::v1::{DeadLetter, Outcome, SCHEMA_VERSION, WorkItem};

use crate::{BusError, TraceParent};

/// Where a delivery sits in its stream and how often it has been delivered.
#[derive(Clone, Debug)]
pub struct DeliveryInfo {
    /// Subject the message was published on.
    pub subject: String,
    /// Stream that stored it.
    pub stream: String,
    /// Consumer that delivered it.
    pub consumer: String,
    /// Position in the stream; stable across redeliveries.
    pub stream_sequence: u64,
    /// Position in the consumer's delivery order.
    pub consumer_sequence: u64,
    /// 1 on the first delivery, 2 on the first redelivery, ...
    pub delivered: u64,
    /// Messages still waiting for this consumer.
    pub pending: u64,
    /// When the stream stored the message.
    pub published: async_nats::datetime::DateTime,
    /// Where the message sits in its trace (`traceparent`, or the legacy
    /// `certflow-trace-id`), if present and well formed; hand it to
    /// [`crate::trace::follow`].
    pub trace: Option<TraceParent>,
    /// The `Nats-Msg-Id` header, if present.
    pub message_id: Option<String>,
}

impl DeliveryInfo {
    /// Reads the delivery's metadata from its `$JS.ACK` reply subject and headers.
    pub fn from_message(message: &jetstream::Message) -> Result<Self, BusError> {
        let subject = message.subject.to_string();
        let info = message.info().map_err(|source| BusError::NotJetStream {
            subject: subject.clone(),
            source,
        })?;
        let headers = message.headers.as_ref();
        Ok(Self {
            stream: info.stream.to_owned(),
            consumer: info.consumer.to_owned(),
            stream_sequence: info.stream_sequence,
            consumer_sequence: info.consumer_sequence,
            delivered: u64::try_from(info.delivered).unwrap_or(0).max(1),
            pending: info.pending,
            published: info.published,
            trace: headers.and_then(TraceParent::from_headers),
            message_id: headers
                .and_then(|h| h.get(NATS_MESSAGE_ID))
                .map(|v| v.as_str().to_owned()),
            subject,
        })
    }
}

/// A decoded message with its delivery metadata.
#[derive(Clone, Debug)]
pub struct Delivery<T> {
    pub message: T,
    pub info: DeliveryInfo,
}

/// Decodes a delivery from the signer's consumer. [`BusError::Undecodable`]
/// and [`BusError::UnsupportedSchemaVersion`] are permanent: dead-letter the
/// message ([`dead_letter_for`]) and terminate it.
pub fn decode_work(message: &jetstream::Message) -> Result<Delivery<WorkItem>, BusError> {
    let info = DeliveryInfo::from_message(message)?;
    let work = decode_work_payload(&info.subject, &message.payload)?;
    Ok(Delivery {
        message: work,
        info,
    })
}

/// Decodes a delivery from the reporter's consumer; errors as for [`decode_work`].
pub fn decode_outcome(message: &jetstream::Message) -> Result<Delivery<Outcome>, BusError> {
    let info = DeliveryInfo::from_message(message)?;
    let outcome = decode_outcome_payload(&info.subject, &message.payload)?;
    Ok(Delivery {
        message: outcome,
        info,
    })
}

/// Decodes a work item payload received on `subject`.
pub fn decode_work_payload(subject: &str, payload: &[u8]) -> Result<WorkItem, BusError> {
    let item: WorkItem = decode(subject, "certflow.v1.WorkItem", payload)?;
    check_schema_version(subject, "certflow.v1.WorkItem", item.schema_version)?;
    Ok(item)
}

/// Decodes an outcome payload received on `subject`.
pub fn decode_outcome_payload(subject: &str, payload: &[u8]) -> Result<Outcome, BusError> {
    let outcome: Outcome = decode(subject, "certflow.v1.Outcome", payload)?;
    check_schema_version(subject, "certflow.v1.Outcome", outcome.schema_version)?;
    Ok(outcome)
}

/// Decodes a dead-letter payload received on `subject`.
pub fn decode_dead_letter_payload(subject: &str, payload: &[u8]) -> Result<DeadLetter, BusError> {
    let dead: DeadLetter = decode(subject, "certflow.v1.DeadLetter", payload)?;
    check_schema_version(subject, "certflow.v1.DeadLetter", dead.schema_version)?;
    Ok(dead)
}

/// A dead letter holding `message` exactly as received and the full error
/// chain of `error`. Fields that the delivery metadata would give are zero
/// when the message is not a JetStream delivery.
pub fn dead_letter_for(message: &jetstream::Message, error: &(dyn Error + 'static)) -> DeadLetter {
    let info = DeliveryInfo::from_message(message).ok();
    DeadLetter {
        schema_version: SCHEMA_VERSION,
        original_payload: message.payload.to_vec(),
        original_subject: message.subject.to_string(),
        deliveries: info
            .as_ref()
            .map_or(0, |i| u32::try_from(i.delivered).unwrap_or(u32::MAX)),
        error: error_chain(error),
        original_stream_sequence: info.as_ref().map_or(0, |i| i.stream_sequence),
        original_stream: info.map(|i| i.stream).unwrap_or_default(),
        dead_lettered_at: Some(SystemTime::now().into()),
    }
}

/// Acknowledges a delivery and waits until the server confirms it, so that
/// "acked" means the work is gone from the queue.
pub async fn ack(message: &jetstream::Message) -> Result<(), BusError> {
    message
        .double_ack()
        .await
        .map_err(|source| ack_error(message, source))
}

/// Asks for redelivery after `delay` (see [`crate::RetryPolicy`]).
pub async fn retry_later(message: &jetstream::Message, delay: Duration) -> Result<(), BusError> {
    send_ack(message, AckKind::Nak(Some(delay))).await
}

/// Stops all further deliveries of a message; for work-queue streams this
/// removes it. Use after its failure was reported or it was dead-lettered.
pub async fn terminate(message: &jetstream::Message) -> Result<(), BusError> {
    send_ack(message, AckKind::Term).await
}

/// Resets the ack deadline ([`crate::settings::ACK_WAIT`]) once; [`crate::Progress`]
/// does it on a schedule for as long as a handler runs.
pub async fn in_progress(message: &jetstream::Message) -> Result<(), BusError> {
    send_ack(message, AckKind::Progress).await
}

async fn send_ack(message: &jetstream::Message, kind: AckKind) -> Result<(), BusError> {
    message
        .ack_with(kind)
        .await
        .map_err(|source| ack_error(message, source))
}

fn ack_error(message: &jetstream::Message, source: async_nats::Error) -> BusError {
    BusError::Ack {
        subject: message.subject.to_string(),
        source,
    }
}

fn decode<M: prost::Message + Default>(
    subject: &str,
    message: &'static str,
    payload: &[u8],
) -> Result<M, BusError> {
    M::decode(payload).map_err(|source| BusError::Undecodable {
        subject: subject.to_owned(),
        message,
        source,
    })
}

fn check_schema_version(subject: &str, message: &'static str, found: u32) -> Result<(), BusError> {
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    Err(BusError::UnsupportedSchemaVersion {
        subject: subject.to_owned(),
        message,
        found,
        expected: SCHEMA_VERSION,
    })
}

/// `outer: inner: innermost`, so a dead letter tells the whole story.
fn error_chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // thiserror messages often already end with their source.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
