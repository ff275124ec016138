//! The reporter's Prometheus metrics (prefixed `certflow_reporter_`), and
//! [`report_sizes`], which observes the Pod index and the ServiceCertificate
//! cache and writes their sizes.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::certificates::{CertificateIndex, SharedCertificates};
use crate::events::EventType;
use crate::pods::{PodIndex, SharedPodIndex};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Written {
    r#type: &'static str,
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Type {
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// Counters, gauges and histograms; cheap to clone (clones share values).
#[derive(Clone, Debug)]
pub struct Metrics {
    events_written: Family<Written, Counter>,
    events_aggregated: Family<Type, Counter>,
    events_rate_limited: Family<Type, Counter>,
    event_write_errors: Family<Kind, Counter>,
    events_remembered: Gauge,
    outcomes: Family<ResultLabel, Counter>,
    consumer_pending: Gauge,
    outcome_latency: Histogram,
    reports: Family<ResultLabel, Counter>,
    pods_indexed: Gauge,
    certificates_cached: Gauge,
    active_failures: Gauge,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            events_written: Family::default(),
            events_aggregated: Family::default(),
            events_rate_limited: Family::default(),
            event_write_errors: Family::default(),
            events_remembered: Gauge::default(),
            outcomes: Family::default(),
            consumer_pending: Gauge::default(),
            outcome_latency: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            reports: Family::default(),
            pods_indexed: Gauge::default(),
            certificates_cached: Gauge::default(),
            active_failures: Gauge::default(),
        };
        registry.register(
            "events_written",
            "Event API writes, by type and operation (create, update of the series)",
            metrics.events_written.clone(),
        );
        registry.register(
            "events_aggregated",
            "Repeats folded into an existing Event's series instead of a new Event",
            metrics.events_aggregated.clone(),
        );
        registry.register(
            "events_rate_limited",
            "Event writes deferred by the per-object rate limit (burst 25, then 1 per 5 minutes)",
            metrics.events_rate_limited.clone(),
        );
        registry.register(
            "event_write_errors",
            "Event writes that failed, by error kind",
            metrics.event_write_errors.clone(),
        );
        registry.register(
            "events_remembered",
            "Events remembered for aggregation",
            metrics.events_remembered.clone(),
        );
        registry.register(
            "outcomes",
            "Outcomes handled, by result (failed, issued, retry, dead_letter, skipped)",
            metrics.outcomes.clone(),
        );
        registry.register(
            "consumer_pending",
            "Outcomes waiting in the reporter consumer, as of the last delivery",
            metrics.consumer_pending.clone(),
        );
        registry.register(
            "outcome_latency_seconds",
            "Time from the signer reaching an outcome to its Events being handled",
            metrics.outcome_latency.clone(),
        );
        registry.register(
            "reports",
            "gRPC Report calls, by result",
            metrics.reports.clone(),
        );
        registry.register(
            "pods_indexed",
            "Pods in the index (those that consume at least one Secret)",
            metrics.pods_indexed.clone(),
        );
        registry.register(
            "certificates_cached",
            "ServiceCertificates in this replica's cache",
            metrics.certificates_cached.clone(),
        );
        registry.register(
            "active_failures",
            "ServiceCertificates in this replica's cache whose status reports a failure (Ready not True, lastFailure set)",
            metrics.active_failures.clone(),
        );
        metrics
    }

    pub fn event_written(&self, type_: EventType, operation: &'static str) {
        self.events_written
            .get_or_create(&Written {
                r#type: type_.as_str(),
                operation,
            })
            .inc();
    }

    pub fn event_aggregated(&self, type_: EventType) {
        self.events_aggregated
            .get_or_create(&Type {
                r#type: type_.as_str(),
            })
            .inc();
    }

    pub fn event_rate_limited(&self, type_: EventType) {
        self.events_rate_limited
            .get_or_create(&Type {
                r#type: type_.as_str(),
            })
            .inc();
    }

    pub fn event_write_failed(&self, kind: &'static str) {
        self.event_write_errors.get_or_create(&Kind { kind }).inc();
    }

    pub fn set_events_remembered(&self, count: usize) {
        self.events_remembered
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub fn outcome(&self, result: &'static str) {
        self.outcomes.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn consumer_pending(&self, pending: u64) {
        self.consumer_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    pub fn outcome_latency(&self, latency: Duration) {
        self.outcome_latency.observe(latency.as_secs_f64());
    }

    pub fn report(&self, result: &'static str) {
        self.reports.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn set_pods_indexed(&self, count: usize) {
        self.pods_indexed
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub fn set_certificates(&self, cached: usize, failing: usize) {
        self.certificates_cached
            .set(i64::try_from(cached).unwrap_or(i64::MAX));
        self.active_failures
            .set(i64::try_from(failing).unwrap_or(i64::MAX));
    }
}

/// Publishes the size of the Pod index and of the ServiceCertificate cache
/// every ten seconds until `shutdown`.
pub async fn report_sizes(
    pods: SharedPodIndex,
    certificates: SharedCertificates,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        metrics.set_pods_indexed(pods.read(PodIndex::len));
        let (cached, failing) =
            certificates.read(|cache| (CertificateIndex::len(cache), cache.failing()));
        metrics.set_certificates(cached, failing);
    }
}
