//! Trace context in NATS headers, so one issuance can be followed from the
//! watch event to the Secret write to the Pod event by a single id.
//!
//! The watcher creates a [`TraceId`] per decision and publishes it in the
//! `certflow-trace-id` header; every consumer logs it as the `trace_id` field
//! and copies it onto what it publishes next. The value has the shape of a W3C
//! trace-id (32 lower-case hex digits, not all zero), so it can become the
//! trace-id of a `traceparent` if OpenTelemetry is added later.

use std::fmt;

use async_nats::HeaderMap;

/// Header carrying the trace id.
pub const TRACE_ID_HEADER: &str = "certflow-trace-id";

/// A 128-bit trace id written as 32 lower-case hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TraceId(String);

impl TraceId {
    /// A new random trace id.
    pub fn generate() -> Self {
        // Zero is the W3C "invalid" id; the retry makes it unreachable in practice.
        loop {
            let id: u128 = rand::random();
            if id != 0 {
                return Self(format!("{id:032x}"));
            }
        }
    }

    /// Reads a trace id; `None` unless it is 32 lower-case hex digits, not all zero.
    pub fn parse(value: &str) -> Option<Self> {
        let well_formed = value.len() == 32
            && value
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
            && value.chars().any(|c| c != '0');
        well_formed.then(|| Self(value.to_owned()))
    }

    /// The 32 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// New headers holding only the trace id.
pub fn headers_with_trace(trace: &TraceId) -> HeaderMap {
    let mut headers = HeaderMap::new();
    insert_trace(&mut headers, trace);
    headers
}

/// Sets (or replaces) the trace id in `headers`.
pub fn insert_trace(headers: &mut HeaderMap, trace: &TraceId) {
    headers.insert(TRACE_ID_HEADER, trace.as_str());
}

/// The trace id in `headers`, if present and well formed.
pub fn trace_id(headers: &HeaderMap) -> Option<TraceId> {
    headers
        .get(TRACE_ID_HEADER)
        .and_then(|value| TraceId::parse(value.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_32_hex_digits() {
        let id = TraceId::generate();
        assert_eq!(id.as_str().len(), 32);
        assert_eq!(TraceId::parse(id.as_str()), Some(id));
    }

    #[test]
    fn generated_ids_differ() {
        assert_ne!(TraceId::generate(), TraceId::generate());
    }

    #[test]
    fn malformed_ids_are_ignored() {
        for bad in [
            "",
            "abc",
            "00000000000000000000000000000000",
            "4BF92F3577B34DA6A3CE929D0E0E4736",
            "4bf92f3577b34da6a3ce929d0e0e473g",
            "4bf92f3577b34da6a3ce929d0e0e47360",
        ] {
            assert_eq!(TraceId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_trace_id_survives_a_trip_through_headers() {
        let id = TraceId::generate();
        let headers = headers_with_trace(&id);
        assert_eq!(trace_id(&headers), Some(id));
    }

    #[test]
    fn headers_without_a_trace_id_yield_none() {
        let mut headers = HeaderMap::new();
        assert_eq!(trace_id(&headers), None);
        headers.insert(TRACE_ID_HEADER, "not-a-trace");
        assert_eq!(trace_id(&headers), None);
    }
}
