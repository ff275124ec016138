//! Decoding deliveries built by hand, without a server.

use async_nats::HeaderMap;
use async_nats::jetstream;
use certflow_proto::v1::{Trigger, WorkItem};
use prost::Message as _;

use super::*;
use crate::TraceId;
use crate::trace::headers_with_trace;

const SUBJECT: &str = "certflow.work.v1.shop.api";
const REPLY: &str = "$JS.ACK.CERTFLOW_WORK.signer.3.41.7.1700000000000000000.5";

/// A client that never connects: enough to build a `jetstream::Message`.
async fn offline_context() -> jetstream::Context {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect("127.0.0.1:9")
        .await;
    match client {
        Ok(client) => jetstream::new(client),
        Err(error) => panic!("an offline client is created without connecting: {error}"),
    }
}

async fn delivery(
    payload: Vec<u8>,
    reply: Option<&str>,
    headers: Option<HeaderMap>,
) -> jetstream::Message {
    jetstream::Message {
        message: async_nats::Message {
            subject: SUBJECT.into(),
            reply: reply.map(Into::into),
            length: payload.len(),
            payload: payload.into(),
            headers,
            status: None,
            description: None,
        },
        context: offline_context().await,
    }
}

fn work_item() -> WorkItem {
    WorkItem {
        schema_version: SCHEMA_VERSION,
        namespace: "shop".into(),
        name: "api".into(),
        uid: "u-1".into(),
        generation: 2,
        trigger: Trigger::SpecChanged.into(),
        detail: "generation 2 not yet observed".into(),
        requested_at: None,
        dedup_id: "u-1/2/spec".into(),
    }
}

#[tokio::test]
async fn a_work_delivery_decodes_with_its_position_and_trace() {
    let trace = TraceId::generate();
    let message = delivery(
        work_item().encode_to_vec(),
        Some(REPLY),
        Some(headers_with_trace(&trace)),
    )
    .await;
    let delivery = decode_work(&message);
    let delivery = match delivery {
        Ok(delivery) => delivery,
        Err(error) => panic!("decodes: {error}"),
    };
    assert_eq!(delivery.message, work_item());
    assert_eq!(delivery.info.subject, SUBJECT);
    assert_eq!(delivery.info.stream, "CERTFLOW_WORK");
    assert_eq!(delivery.info.consumer, "signer");
    assert_eq!(delivery.info.delivered, 3);
    assert_eq!(delivery.info.stream_sequence, 41);
    assert_eq!(delivery.info.consumer_sequence, 7);
    assert_eq!(delivery.info.pending, 5);
    assert_eq!(
        delivery.info.trace.map(|parent| parent.trace_id()),
        Some(trace)
    );
}

#[tokio::test]
async fn garbage_is_undecodable_and_permanent() {
    let message = delivery(vec![0xff, 0xff, 0xff], Some(REPLY), None).await;
    let error = decode_work(&message).err();
    assert!(
        matches!(error, Some(BusError::Undecodable { .. })),
        "{error:?}"
    );
    assert!(error.is_some_and(|e| !e.is_transient()));
}

#[tokio::test]
async fn a_work_item_of_another_schema_version_is_refused() {
    let mut item = work_item();
    item.schema_version = 2;
    let message = delivery(item.encode_to_vec(), Some(REPLY), None).await;
    let error = decode_work(&message).err();
    assert!(
        matches!(
            error,
            Some(BusError::UnsupportedSchemaVersion { found: 2, .. })
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_core_nats_message_is_not_a_delivery() {
    let message = delivery(work_item().encode_to_vec(), None, None).await;
    let error = decode_work(&message).err();
    assert!(
        matches!(error, Some(BusError::NotJetStream { .. })),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_dead_letter_keeps_payload_position_and_the_whole_error() {
    let message = delivery(vec![0xff, 0x01], Some(REPLY), None).await;
    let error = match decode_work(&message) {
        Err(error) => error,
        Ok(_) => panic!("garbage must not decode"),
    };
    let dead = dead_letter_for(&message, &error);
    assert_eq!(dead.schema_version, SCHEMA_VERSION);
    assert_eq!(dead.original_payload, vec![0xff, 0x01]);
    assert_eq!(dead.original_subject, SUBJECT);
    assert_eq!(dead.original_stream, "CERTFLOW_WORK");
    assert_eq!(dead.original_stream_sequence, 41);
    assert_eq!(dead.deliveries, 3);
    assert!(
        dead.error
            .contains("does not decode as certflow.v1.WorkItem"),
        "{}",
        dead.error
    );
    assert!(dead.dead_lettered_at.is_some());
}

#[test]
fn payloads_round_trip_through_the_decoders() {
    let decoded = decode_work_payload(SUBJECT, &work_item().encode_to_vec());
    assert_eq!(decoded.ok(), Some(work_item()));
    let dead = DeadLetter {
        schema_version: SCHEMA_VERSION,
        ..DeadLetter::default()
    };
    let decoded = decode_dead_letter_payload("certflow.dead.v1.unrouted", &dead.encode_to_vec());
    assert_eq!(decoded.ok(), Some(dead));
}

#[test]
fn an_empty_payload_has_schema_version_zero_and_is_refused() {
    let error = decode_outcome_payload(SUBJECT, &[]).err();
    assert!(
        matches!(
            error,
            Some(BusError::UnsupportedSchemaVersion { found: 0, .. })
        ),
        "{error:?}"
    );
}
