//! Round trips for every message, and decoding of arbitrary bytes.

use proptest::prelude::*;
use prost::Message;

use crate::v1::{
    DeadLetter, EventType, Failed, Issued, Outcome, ReportRequest, ReportResponse, SecretRef,
    ServiceCertificateRef, Trigger, WorkItem, outcome, report_request,
};

fn timestamp(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds,
        nanos: 250_000_000,
    }
}

fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(message: &M) {
    let bytes = message.encode_to_vec();
    let decoded = M::decode(bytes.as_slice());
    assert_eq!(decoded.as_ref(), Ok(message));
}

fn work_item() -> WorkItem {
    WorkItem {
        schema_version: crate::v1::SCHEMA_VERSION,
        namespace: "shop".into(),
        name: "api.shop.svc".into(),
        uid: "0b8f6c1e-4b7a-4a59-9a51-0b0b0b0b0b0b".into(),
        generation: 3,
        trigger: Trigger::SecretInvalid.into(),
        detail: "tls.key does not match tls.crt".into(),
        requested_at: Some(timestamp(1_700_000_000)),
        dedup_id: "0b8f6c1e/3/secret-invalid/42".into(),
    }
}

#[test]
fn work_item_survives_a_round_trip() {
    round_trip(&work_item());
}

#[test]
fn issued_outcome_survives_a_round_trip() {
    round_trip(&Outcome {
        schema_version: 1,
        namespace: "shop".into(),
        name: "api".into(),
        uid: "uid-1".into(),
        generation: 3,
        secret_name: "api-tls".into(),
        result: Some(outcome::Result::Issued(Issued {
            serial_number: "4f:1a".into(),
            not_before: Some(timestamp(1)),
            not_after: Some(timestamp(2)),
            issuer: "cluster-ca".into(),
        })),
        occurred_at: Some(timestamp(3)),
        work_id: "w-1".into(),
    });
}

#[test]
fn failed_outcome_survives_a_round_trip() {
    round_trip(&Outcome {
        schema_version: 1,
        namespace: "shop".into(),
        name: "api".into(),
        uid: "uid-1".into(),
        generation: 3,
        secret_name: "api-tls".into(),
        result: Some(outcome::Result::Failed(Failed {
            reason: "InvalidDNSName".into(),
            field_path: "spec.dnsNames[1]".into(),
            value: "api..shop".into(),
            message: "spec.dnsNames[1] \"api..shop\" has an empty label.".into(),
            suggestion: "api.shop".into(),
            permanent: true,
            attempts: 1,
        })),
        occurred_at: Some(timestamp(3)),
        work_id: String::new(),
    });
}

#[test]
fn dead_letter_survives_a_round_trip() {
    round_trip(&DeadLetter {
        schema_version: 1,
        original_payload: vec![0xff, 0x00, 0x13],
        original_subject: "certflow.work.v1.shop.api".into(),
        deliveries: 20,
        error: "invalid wire type".into(),
        original_stream_sequence: 17,
        original_stream: "CERTFLOW_WORK".into(),
        dead_lettered_at: Some(timestamp(4)),
    });
}

#[test]
fn report_request_about_a_secret_survives_a_round_trip() {
    round_trip(&ReportRequest {
        regarding: Some(report_request::Regarding::Secret(SecretRef {
            namespace: "shop".into(),
            secret_name: "api-tls".into(),
        })),
        r#type: EventType::Warning.into(),
        reason: "PolicyViolation".into(),
        message: "Issuer \"cluster-ca\" does not allow \"api.other.svc\".".into(),
        field_path: "spec.dnsNames[0]".into(),
        value: "api.other.svc".into(),
        suggestion: "api.shop.svc".into(),
        reporting_component: "certflow-signer".into(),
    });
}

#[test]
fn report_request_about_a_service_certificate_survives_a_round_trip() {
    round_trip(&ReportRequest {
        regarding: Some(report_request::Regarding::ServiceCertificate(
            ServiceCertificateRef {
                namespace: "shop".into(),
                name: "api".into(),
            },
        )),
        r#type: EventType::Normal.into(),
        reason: "Issued".into(),
        ..ReportRequest::default()
    });
    round_trip(&ReportResponse { recipients: 4 });
}

#[test]
fn unknown_trigger_values_decode_and_read_as_unspecified() {
    let mut item = work_item();
    item.trigger = 99;
    let decoded = WorkItem::decode(item.encode_to_vec().as_slice());
    let decoded = decoded.expect("a newer enum value is still valid protobuf");
    assert_eq!(decoded.trigger, 99);
    assert_eq!(decoded.trigger(), Trigger::Unspecified);
}

#[test]
fn file_descriptor_set_names_the_package() {
    let set = prost_types::FileDescriptorSet::decode(crate::v1::FILE_DESCRIPTOR_SET)
        .expect("the build script writes a valid descriptor set");
    assert!(set.file.iter().any(|file| file.package() == "certflow.v1"));
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = WorkItem::decode(bytes.as_slice());
        let _ = Outcome::decode(bytes.as_slice());
        let _ = DeadLetter::decode(bytes.as_slice());
        let _ = ReportRequest::decode(bytes.as_slice());
        let _ = ReportResponse::decode(bytes.as_slice());
    }

    #[test]
    fn any_work_item_survives_a_round_trip(
        namespace in "[a-z0-9-]{0,63}",
        name in "[a-z0-9.-]{0,253}",
        generation in any::<i64>(),
        trigger in 0i32..8,
        detail in ".{0,64}",
        seconds in any::<i64>(),
    ) {
        let item = WorkItem {
            namespace,
            name,
            generation,
            trigger,
            detail,
            requested_at: Some(prost_types::Timestamp { seconds, nanos: 0 }),
            ..work_item()
        };
        let decoded = WorkItem::decode(item.encode_to_vec().as_slice());
        prop_assert_eq!(decoded, Ok(item));
    }
}
