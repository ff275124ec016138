//! Every message decodes from whatever reaches a subscriber or the Report
//! API: no byte string panics a decoder, overflows the stack, or makes it
//! allocate more than the bytes it was given. Round trips and plain random
//! bytes are covered in `src/tests.rs`; these properties use inputs shaped
//! like protobuf (valid tags, plausible lengths, nesting), which random bytes
//! almost never are, and lengths that lie.

use certflow_proto::v1::{
    DeadLetter, Failed, Issued, Outcome, ReportRequest, ReportResponse, SecretRef,
    ServiceCertificateRef, WorkItem,
};
use proptest::prelude::*;
use prost::Message;

/// Bytes an encoding may grow by over its input: an `int32` (an enum,
/// `Timestamp.nanos`) sent as a 5-byte varint is re-encoded sign-extended in
/// 10 bytes; a message has at most one such field plus one per nested
/// Timestamp.
const REENCODING_SLACK: usize = 32;

/// What every property asks of one message type, on one input: decoding
/// never panics; what decodes re-encodes to about the input's size at most
/// (so the decoded value holds no more than the sender paid for), and
/// decoding that encoding gives the same value back.
fn decodes_within_bounds<M: Message + Default + PartialEq + std::fmt::Debug>(
    bytes: &[u8],
) -> Result<(), TestCaseError> {
    if let Ok(message) = M::decode(bytes) {
        let encoded = message.encode_to_vec();
        prop_assert!(
            encoded.len() <= bytes.len() + REENCODING_SLACK,
            "{} bytes decoded into {} bytes of {message:?}",
            bytes.len(),
            encoded.len()
        );
        let again = M::decode(encoded.as_slice());
        prop_assert_eq!(again.as_ref(), Ok(&message));
    }
    Ok(())
}

/// Runs `check` for every message of package `certflow.v1`, nested ones
/// included (a subscriber never decodes those alone, but a bug in their
/// generated `merge` is reached through their parents either way).
macro_rules! for_every_message {
    ($check:ident, $bytes:expr) => {{
        $check::<WorkItem>($bytes)?;
        $check::<Outcome>($bytes)?;
        $check::<Issued>($bytes)?;
        $check::<Failed>($bytes)?;
        $check::<DeadLetter>($bytes)?;
        $check::<ReportRequest>($bytes)?;
        $check::<ReportResponse>($bytes)?;
        $check::<SecretRef>($bytes)?;
        $check::<ServiceCertificateRef>($bytes)?;
        $check::<prost_types::Timestamp>($bytes)?;
    }};
}

/// A base-128 varint, as protobuf writes lengths and integers.
fn varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn tag(field: u32, wire_type: u8) -> Vec<u8> {
    varint(u64::from(field) << 3 | u64::from(wire_type))
}

/// One field as protobuf encodes it: a tag with any wire type, including
/// the deprecated groups (3, 4) and the invalid 6 and 7, then a payload of
/// that type, whose length prefix may be honest, short or far too long.
fn field() -> impl Strategy<Value = Vec<u8>> {
    let number = prop_oneof![1u32..=12, Just(0u32), Just(536_870_911u32), any::<u32>()];
    let wire_type = 0u8..8;
    let body = prop::collection::vec(any::<u8>(), 0..24);
    let declared = prop_oneof![
        Just(None),
        (0u64..64).prop_map(Some),
        Just(Some(u64::from(u32::MAX))),
        Just(Some(u64::MAX)),
    ];
    (number, wire_type, body, declared).prop_map(|(number, wire_type, body, declared)| {
        let mut out = tag(number, wire_type);
        match wire_type {
            0 => out.extend(varint(body.iter().map(|&b| u64::from(b)).sum())),
            1 => out.extend(body.iter().copied().chain([0; 8]).take(8)),
            2 => {
                out.extend(varint(declared.unwrap_or(body.len() as u64)));
                out.extend(&body);
            }
            5 => out.extend(body.iter().copied().chain([0; 4]).take(4)),
            _ => out.extend(&body),
        }
        out
    })
}

/// A message body: fields, some of which are themselves messages (a
/// length-delimited field whose payload is fields), nested a few levels.
fn message_bytes() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop::collection::vec(field(), 0..8).prop_map(|fields| fields.concat());
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop::collection::vec(
            prop_oneof![
                field(),
                (1u32..=12, inner).prop_map(|(number, nested)| {
                    let mut out = tag(number, 2);
                    out.extend(varint(nested.len() as u64));
                    out.extend(nested);
                    out
                }),
            ],
            0..8,
        )
        .prop_map(|fields| fields.concat())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn protobuf_shaped_input_never_panics_and_never_decodes_into_more_than_it_was(
        bytes in message_bytes()
    ) {
        for_every_message!(decodes_within_bounds, &bytes);
    }

    #[test]
    fn arbitrary_bytes_never_decode_into_more_than_they_were(
        bytes in prop::collection::vec(any::<u8>(), 0..512)
    ) {
        for_every_message!(decodes_within_bounds, &bytes);
    }

    #[test]
    fn a_valid_message_cut_or_corrupted_anywhere_never_panics(
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let mut bytes = sample_outcome().encode_to_vec();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        for_every_message!(decodes_within_bounds, &bytes);
    }
}

fn sample_outcome() -> Outcome {
    use certflow_proto::v1::outcome;
    Outcome {
        schema_version: 1,
        namespace: "shop".into(),
        name: "web".into(),
        uid: "7d3c1c2e-1111-4a59-9a51-0b0b0b0b0b0b".into(),
        generation: 4,
        secret_name: "web-tls".into(),
        result: Some(outcome::Result::Failed(Failed {
            reason: "InvalidDNSName".into(),
            field_path: "spec.dnsNames[0]".into(),
            value: "web_shop".into(),
            message: "ServiceCertificate \"web\": spec.dnsNames[0] \"web_shop\" ...".into(),
            suggestion: "did you mean \"web-shop\"?".into(),
            permanent: true,
            attempts: 2,
        })),
        occurred_at: Some(prost_types::Timestamp {
            seconds: 1_800_000_000,
            nanos: 5,
        }),
        work_id: "7d3c1c2e/4".into(),
    }
}

/// The most virtual memory this process has ever mapped, in bytes (Linux).
/// A `Vec::with_capacity(4 GiB)` raises it by 4 GiB even if the memory is
/// never touched, so it catches a decoder that trusts a length prefix.
fn peak_virtual_memory() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmPeak:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmPeak in /proc/self/status");
    kib * 1024
}

const GIB: u64 = 1 << 30;

/// Held by the tests that read [`peak_virtual_memory`], so that one's
/// deliberate reservation never shows up in the other's measurement.
static PEAK_PROBE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Every length-delimited field of every message (strings, bytes, nested
/// messages, oneof members), each with a length prefix that claims 4 GiB
/// (and one that claims 2^64 - 1) followed by a handful of real bytes.
fn lying_length_prefixes() -> Vec<(&'static str, Vec<u8>)> {
    let length_delimited: &[(&str, &[u32])] = &[
        ("WorkItem", &[2, 3, 4, 7, 8, 9]),
        ("Outcome", &[2, 3, 4, 6, 7, 8, 9, 10]),
        ("Issued", &[1, 2, 3, 4]),
        ("Failed", &[1, 2, 3, 4, 5]),
        ("DeadLetter", &[2, 3, 5, 7, 8]),
        ("ReportRequest", &[1, 2, 4, 5, 6, 7, 8, 9]),
        ("SecretRef", &[1, 2]),
        ("ServiceCertificateRef", &[1, 2]),
    ];
    let mut cases = Vec::new();
    for (message, fields) in length_delimited {
        for &number in *fields {
            for claim in [4 * GIB, u64::MAX] {
                let mut bytes = tag(number, 2);
                bytes.extend(varint(claim));
                bytes.extend(b"only a few bytes follow");
                cases.push((*message, bytes));
            }
        }
    }
    cases
}

fn decode_by_name(message: &str, bytes: &[u8]) -> Result<(), prost::DecodeError> {
    match message {
        "WorkItem" => WorkItem::decode(bytes).map(drop),
        "Outcome" => Outcome::decode(bytes).map(drop),
        "Issued" => Issued::decode(bytes).map(drop),
        "Failed" => Failed::decode(bytes).map(drop),
        "DeadLetter" => DeadLetter::decode(bytes).map(drop),
        "ReportRequest" => ReportRequest::decode(bytes).map(drop),
        "SecretRef" => SecretRef::decode(bytes).map(drop),
        "ServiceCertificateRef" => ServiceCertificateRef::decode(bytes).map(drop),
        other => panic!("no decoder for {other}"),
    }
}

#[test]
fn a_length_prefix_claiming_four_gibibytes_is_refused_without_allocating_it() {
    let _probe = PEAK_PROBE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let before = peak_virtual_memory();
    for (message, bytes) in lying_length_prefixes() {
        let result = decode_by_name(message, &bytes);
        assert!(
            result.is_err(),
            "{message} accepted a field longer than its input: {bytes:?}"
        );
    }
    let grown = peak_virtual_memory().saturating_sub(before);
    // Other tests in this binary run concurrently and allocate a little;
    // honouring one prefix would have reserved 4 GiB.
    assert!(
        grown < GIB / 4,
        "decoding lying length prefixes raised peak virtual memory by {grown} bytes"
    );
}

#[test]
fn the_peak_memory_probe_sees_a_reservation_that_is_never_touched() {
    // Guards the test above: its bound only means something if reserving
    // without touching shows up in VmPeak.
    let _probe = PEAK_PROBE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let before = peak_virtual_memory();
    let reserved: Vec<u8> = Vec::with_capacity(GIB as usize);
    let grown = peak_virtual_memory().saturating_sub(before);
    drop(std::hint::black_box(reserved));
    assert!(grown >= GIB / 2, "VmPeak grew by only {grown} bytes");
}

#[test]
fn a_varint_longer_than_ten_bytes_is_refused() {
    let mut bytes = tag(5, 0);
    bytes.extend([0xff; 11]);
    bytes.push(0x01);
    assert!(WorkItem::decode(bytes.as_slice()).is_err());
    let mut length = tag(2, 2);
    length.extend([0xff; 11]);
    assert!(WorkItem::decode(length.as_slice()).is_err());
}

#[test]
fn groups_nested_a_hundred_thousand_deep_are_refused_without_overflowing_the_stack() {
    // Unknown fields are skipped, and a start-group skips to its end group:
    // nested groups recurse. prost's recursion limit must end that before
    // the stack does; a stack overflow aborts the whole test binary.
    let depth = 100_000;
    let mut bytes = Vec::new();
    for _ in 0..depth {
        bytes.extend(tag(15, 3));
    }
    for _ in 0..depth {
        bytes.extend(tag(15, 4));
    }
    for_each_decoder_refuses(&bytes, "deeply nested groups");

    // The same through known fields: Outcome.failed (a message) holding
    // an unknown group chain.
    let mut nested = Vec::new();
    for _ in 0..depth {
        nested.extend(tag(15, 3));
    }
    let mut outcome = tag(8, 2);
    outcome.extend(varint(nested.len() as u64));
    outcome.extend(nested);
    assert!(Outcome::decode(outcome.as_slice()).is_err());
}

fn for_each_decoder_refuses(bytes: &[u8], what: &str) {
    for message in [
        "WorkItem",
        "Outcome",
        "Issued",
        "Failed",
        "DeadLetter",
        "ReportRequest",
        "SecretRef",
        "ServiceCertificateRef",
    ] {
        assert!(
            decode_by_name(message, bytes).is_err(),
            "{message} accepted {what}"
        );
    }
}

#[test]
fn a_megabyte_of_repeated_fields_decodes_in_bounded_time_and_size() {
    // The last occurrence of a scalar or string field wins, so repeating a
    // field a hundred thousand times must not accumulate anything.
    let mut bytes = Vec::new();
    for i in 0..100_000u32 {
        bytes.extend(tag(2, 2));
        let value = format!("namespace-{i}");
        bytes.extend(varint(value.len() as u64));
        bytes.extend(value.as_bytes());
    }
    let started = std::time::Instant::now();
    let item = WorkItem::decode(bytes.as_slice()).expect("valid protobuf");
    assert_eq!(item.namespace, "namespace-99999");
    assert!(item.encoded_len() < 64);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}
