//! Whatever is published on a certflow subject, the decoders a consumer
//! calls end in a value or a permanent error: nothing panics, nothing asks
//! for a retry that could never succeed (the worker dead-letters permanent
//! errors instead of redelivering them forever), and the error text, which
//! is logged and kept in the dead letter, never echoes the payload.

use certflow_bus::delivery::{
    decode_dead_letter_payload, decode_outcome_payload, decode_work_payload,
};
use certflow_bus::proto::{DeadLetter, Outcome, SCHEMA_VERSION, WorkItem};
use proptest::prelude::*;
use prost::Message;

const SUBJECT: &str = "certflow.work.v1.shop.web";

/// The longest error text a payload may produce: the subject, the message
/// name and prost's description of where decoding stopped.
const MAX_ERROR_BYTES: usize = SUBJECT.len() + 256;

fn check<T>(
    result: Result<T, certflow_bus::BusError>,
    payload: &[u8],
) -> Result<(), TestCaseError> {
    if let Err(error) = result {
        prop_assert!(
            !error.is_transient(),
            "retrying cannot fix a payload: {error}"
        );
        let text = error.to_string();
        prop_assert!(
            text.len() <= MAX_ERROR_BYTES,
            "{} bytes: {text}",
            text.len()
        );
        // A run of 16 payload bytes that are printable would show up as is.
        if let Some(window) = payload
            .windows(16)
            .find(|w| w.iter().all(|b| b.is_ascii_alphanumeric()))
        {
            let window = String::from_utf8_lossy(window);
            prop_assert!(!text.contains(window.as_ref()), "{text}");
        }
    }
    Ok(())
}

/// Payloads that are either noise or a real message of the wrong schema
/// version or type, possibly with noise appended.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    let real =
        (any::<u32>(), "[a-zA-Z0-9]{16,40}", 0usize..3).prop_map(|(version, text, which)| {
            match which {
                0 => WorkItem {
                    schema_version: version,
                    namespace: text,
                    ..WorkItem::default()
                }
                .encode_to_vec(),
                1 => Outcome {
                    schema_version: version,
                    namespace: text,
                    ..Outcome::default()
                }
                .encode_to_vec(),
                _ => DeadLetter {
                    schema_version: version,
                    original_payload: text.into_bytes(),
                    ..DeadLetter::default()
                }
                .encode_to_vec(),
            }
        });
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        (real, prop::collection::vec(any::<u8>(), 0..8)).prop_map(|(mut bytes, tail)| {
            bytes.extend(tail);
            bytes
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn any_payload_decodes_or_fails_permanently_without_echoing_itself(payload in payload()) {
        check(decode_work_payload(SUBJECT, &payload), &payload)?;
        check(decode_outcome_payload(SUBJECT, &payload), &payload)?;
        check(decode_dead_letter_payload(SUBJECT, &payload), &payload)?;
    }

    #[test]
    fn only_the_current_schema_version_is_accepted(version in any::<u32>()) {
        let item = WorkItem { schema_version: version, ..WorkItem::default() };
        let decoded = decode_work_payload(SUBJECT, &item.encode_to_vec());
        prop_assert_eq!(decoded.is_ok(), version == SCHEMA_VERSION);
    }
}
