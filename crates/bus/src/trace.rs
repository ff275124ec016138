//! Trace context in NATS headers, so one issuance can be followed from the
//! watch event to the Secret write to the Pod event as one trace.
//!
//! Every message carries a W3C `traceparent` header: the trace id and the id
//! of the span that published it ([`insert_trace`]). A consumer makes the
//! span that handles the message a child of that span and records the trace
//! id in its `trace_id` field ([`follow`]), and copies the trace onto what
//! it publishes next. The watcher starts a trace per decision
//! ([`TraceId::current_or_generate`]).
//!
//! When a service exports spans (`--otlp-endpoint`, see
//! `certflow-runtime`'s `telemetry`), the ids are those of its
//! OpenTelemetry spans, so the watcher's, the signers' and the reporter's
//! exported spans form one tree. Without an exporter no OpenTelemetry layer
//! is installed: the trace id is then carried along by hand and the parent
//! span id is made up, so log lines still share one `trace_id`.
//!
//! Rolling upgrades: the previous release's `certflow-trace-id` header (the
//! bare trace id) is still written next to `traceparent`, and read when a
//! message has no `traceparent`, so a service of either release on either
//! side of a hop keeps the trace. Both can go once no such release runs.

use std::collections::HashMap;
use std::fmt;

use async_nats::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceState};
use opentelemetry::{Context, trace as otel};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The W3C trace-context header: `00-<trace id>-<parent span id>-<flags>`.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// The previous release's header holding only the trace id; see the module
/// documentation for why it is still written and read.
pub const LEGACY_TRACE_ID_HEADER: &str = "certflow-trace-id";

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

    /// The trace of the current span when spans are exported (an
    /// OpenTelemetry layer is installed and the span is enabled), else a new
    /// random id. For where a trace starts.
    pub fn current_or_generate() -> Self {
        own_trace(&Span::current()).unwrap_or_else(Self::generate)
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

    fn to_otel(&self) -> otel::TraceId {
        // Well formed by construction, so this never yields INVALID.
        otel::TraceId::from_hex(&self.0).unwrap_or(otel::TraceId::INVALID)
    }
}

impl From<otel::TraceId> for TraceId {
    fn from(id: otel::TraceId) -> Self {
        Self(format!("{id:032x}"))
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a message or call sits in its trace: the trace id and the span
/// that sent it (W3C `traceparent`, with `tracestate` if any).
#[derive(Clone, Debug, PartialEq)]
pub struct TraceParent(SpanContext);

impl TraceParent {
    /// The trace context of NATS message headers: `traceparent`, else the
    /// legacy `certflow-trace-id` (under a made-up parent span id, which no
    /// exported span has); `None` if neither is present and well formed.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let from_traceparent = extract(&NatsHeaders(headers));
        from_traceparent.or_else(|| {
            headers
                .get(LEGACY_TRACE_ID_HEADER)
                .and_then(|value| TraceId::parse(value.as_str()))
                .map(|trace| Self::made_up(&trace))
        })
    }

    /// The trace context of a `traceparent` value and optional `tracestate`
    /// (e.g. from gRPC metadata); `None` if `traceparent` is malformed.
    pub fn from_traceparent(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let mut carrier = HashMap::from([(TRACEPARENT_HEADER.to_owned(), traceparent.to_owned())]);
        if let Some(state) = tracestate {
            carrier.insert("tracestate".to_owned(), state.to_owned());
        }
        extract(&carrier)
    }

    /// The trace this context belongs to.
    pub fn trace_id(&self) -> TraceId {
        TraceId::from(self.0.trace_id())
    }

    /// The id of the span that sent the message or call (16 hex digits).
    pub fn parent_span_id(&self) -> String {
        format!("{:016x}", self.0.span_id())
    }

    /// A parent in `trace` with a random span id: for publishing when the
    /// current span has no OpenTelemetry context of that trace.
    fn made_up(trace: &TraceId) -> Self {
        let span_id = loop {
            let id: u64 = rand::random();
            if id != 0 {
                break SpanId::from(id);
            }
        };
        Self(SpanContext::new(
            trace.to_otel(),
            span_id,
            TraceFlags::SAMPLED,
            true,
            TraceState::NONE,
        ))
    }

    /// `traceparent` and, if not empty, `tracestate`.
    fn inject(&self, injector: &mut dyn Injector) {
        let context = Context::new().with_remote_span_context(self.0.clone());
        TraceContextPropagator::new().inject_context(&context, injector);
    }
}

/// New headers holding only the trace context of `trace` (see [`insert_trace`]).
pub fn headers_with_trace(trace: &TraceId) -> HeaderMap {
    let mut headers = HeaderMap::new();
    insert_trace(&mut headers, trace);
    headers
}

/// Sets (or replaces) the trace context of a message in `trace`: its parent
/// is the current span if that span belongs to `trace` (spans are exported),
/// else a made-up span of `trace`.
pub fn insert_trace(headers: &mut HeaderMap, trace: &TraceId) {
    let current = Span::current().context().span().span_context().clone();
    let parent = if current.is_valid() && current.trace_id() == trace.to_otel() {
        TraceParent(current)
    } else {
        TraceParent::made_up(trace)
    };
    parent.inject(&mut NatsHeadersMut(headers));
    headers.insert(LEGACY_TRACE_ID_HEADER, trace.as_str());
}

/// The trace id in `headers` (`traceparent`, else `certflow-trace-id`), if
/// present and well formed.
pub fn trace_id(headers: &HeaderMap) -> Option<TraceId> {
    TraceParent::from_headers(headers).map(|parent| parent.trace_id())
}

/// Makes `span` (not yet entered) continue the trace of `parent`, a
/// received message's or call's, or start one if there is none; records
/// the trace id in the span's `trace_id` field (declare it
/// `trace_id = tracing::field::Empty`) and returns it, to be passed on with
/// what the handler publishes. With an OpenTelemetry layer the span becomes
/// a child of `parent`'s span; without one only the id is carried.
pub fn follow(span: &Span, parent: Option<&TraceParent>) -> TraceId {
    if let Some(parent) = parent {
        // Fails when no OpenTelemetry layer is installed (nothing is
        // exported) or the span is disabled; the id is carried below.
        let _ = span.set_parent(Context::new().with_remote_span_context(parent.0.clone()));
    }
    let trace = own_trace(span)
        .or_else(|| parent.map(TraceParent::trace_id))
        .unwrap_or_else(TraceId::generate);
    span.record("trace_id", tracing::field::display(&trace));
    trace
}

/// The OpenTelemetry trace id of `span`, if it has one.
fn own_trace(span: &Span) -> Option<TraceId> {
    let id = span.context().span().span_context().trace_id();
    (id != otel::TraceId::INVALID).then(|| TraceId::from(id))
}

fn extract(carrier: &dyn Extractor) -> Option<TraceParent> {
    let context = TraceContextPropagator::new().extract(carrier);
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then_some(TraceParent(span_context))
}

struct NatsHeaders<'a>(&'a HeaderMap);

impl Extractor for NatsHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|value| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

struct NatsHeadersMut<'a>(&'a mut HeaderMap);

impl Injector for NatsHeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The propagator writes `tracestate` even when it is empty.
        if !value.is_empty() {
            self.0.insert(key, value);
        }
    }
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
    fn the_trace_survives_a_trip_through_headers_as_a_w3c_traceparent() {
        let id = TraceId::generate();
        let headers = headers_with_trace(&id);
        let traceparent = headers
            .get(TRACEPARENT_HEADER)
            .map(|v| v.as_str().to_owned());
        let Some(traceparent) = traceparent else {
            panic!("no traceparent in {headers:?}");
        };
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts.len(), 4, "{traceparent}");
        assert_eq!(parts[0], "00", "version");
        assert_eq!(parts[1], id.as_str());
        assert!(
            parts[2].len() == 16 && parts[2] != "0000000000000000",
            "{traceparent}"
        );
        assert_eq!(parts[3], "01", "sampled");
        let parent = TraceParent::from_headers(&headers);
        assert_eq!(parent.as_ref().map(TraceParent::trace_id), Some(id.clone()));
        assert_eq!(
            parent.map(|p| p.parent_span_id()).as_deref(),
            Some(parts[2])
        );
        assert_eq!(trace_id(&headers), Some(id));
    }

    #[test]
    fn a_traceparent_from_elsewhere_is_read_with_its_parent_span_and_state() {
        let mut headers = HeaderMap::new();
        headers.insert(
            TRACEPARENT_HEADER,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        headers.insert("tracestate", "vendor=value");
        let parent = TraceParent::from_headers(&headers);
        assert_eq!(
            parent.as_ref().map(|p| p.trace_id().to_string()).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            parent.as_ref().map(TraceParent::parent_span_id).as_deref(),
            Some("00f067aa0ba902b7")
        );
        let state = parent.map(|p| p.0.trace_state().header());
        assert_eq!(state.as_deref(), Some("vendor=value"));
    }

    #[test]
    fn the_legacy_header_alone_still_names_the_trace() {
        let id = TraceId::generate();
        let mut headers = HeaderMap::new();
        headers.insert(LEGACY_TRACE_ID_HEADER, id.as_str());
        assert_eq!(trace_id(&headers), Some(id.clone()));
        // And new messages still carry it for consumers of the previous release.
        let new = headers_with_trace(&id);
        assert_eq!(
            new.get(LEGACY_TRACE_ID_HEADER).map(|v| v.as_str()),
            Some(id.as_str())
        );
    }

    #[test]
    fn traceparent_wins_over_the_legacy_header() {
        let mut headers = headers_with_trace(&TraceId::generate());
        let other = TraceId::generate();
        headers.insert(LEGACY_TRACE_ID_HEADER, other.as_str());
        assert_ne!(trace_id(&headers), Some(other));
    }

    #[test]
    fn headers_without_a_trace_yield_none() {
        let mut headers = HeaderMap::new();
        assert_eq!(trace_id(&headers), None);
        headers.insert(LEGACY_TRACE_ID_HEADER, "not-a-trace");
        headers.insert(
            TRACEPARENT_HEADER,
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        );
        assert_eq!(trace_id(&headers), None);
        assert_eq!(TraceParent::from_traceparent("garbage", None), None);
    }

    #[test]
    fn with_an_opentelemetry_layer_the_consumer_span_is_a_child_of_the_publishing_span() {
        use opentelemetry::trace::TracerProvider as _;
        use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
        use tracing_subscriber::layer::SubscriberExt as _;

        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let (published, followed) = tracing::subscriber::with_default(subscriber, || {
            let publish = tracing::info_span!("publish_work");
            let (trace, headers) = publish.in_scope(|| {
                let trace = TraceId::current_or_generate();
                (trace.clone(), headers_with_trace(&trace))
            });
            drop(publish);
            let handle = tracing::info_span!("work_item", trace_id = tracing::field::Empty);
            let followed = follow(&handle, TraceParent::from_headers(&headers).as_ref());
            drop(handle);
            (trace, followed)
        });
        assert_eq!(published, followed, "one trace id on both sides");
        let spans = exporter.get_finished_spans().unwrap_or_default();
        let span = |name: &str| spans.iter().find(|s| s.name == name).cloned();
        let (Some(publish), Some(handle)) = (span("publish_work"), span("work_item")) else {
            panic!("both spans are exported: {spans:?}");
        };
        assert_eq!(TraceId::from(publish.span_context.trace_id()), published);
        assert_eq!(
            handle.span_context.trace_id(),
            publish.span_context.trace_id()
        );
        assert_eq!(handle.parent_span_id, publish.span_context.span_id());
        assert!(handle.parent_span_is_remote);
        let recorded = handle
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == "trace_id")
            .map(|kv| kv.value.to_string());
        assert_eq!(recorded.as_deref(), Some(published.as_str()));
    }

    #[test]
    fn without_an_opentelemetry_layer_follow_carries_the_parents_trace_id() {
        let parent = TraceParent::made_up(&TraceId::generate());
        let span = tracing::info_span!("work_item", trace_id = tracing::field::Empty);
        assert_eq!(follow(&span, Some(&parent)), parent.trace_id());
        assert_ne!(follow(&span, None), parent.trace_id());
    }
}
