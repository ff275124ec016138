//! The signer's Prometheus metrics.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Read {
    object: String,
    reason: String,
}

/// Counters and histograms, cheap to clone (they share their values).
#[derive(Clone, Debug)]
pub struct Metrics {
    issued: Family<Reason, Counter>,
    failed: Family<Reason, Counter>,
    secret_writes: Counter,
    api_reads: Family<Read, Counter>,
    handled: Family<Outcome, Counter>,
    retries: Family<Reason, Counter>,
    dead_letters: Counter,
    consumer_pending: Gauge,
    handle_seconds: Family<Outcome, Histogram, fn() -> Histogram>,
    key_generation_seconds: Histogram,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            issued: Family::default(),
            failed: Family::default(),
            secret_writes: Counter::default(),
            api_reads: Family::default(),
            handled: Family::default(),
            retries: Family::default(),
            dead_letters: Counter::default(),
            consumer_pending: Gauge::default(),
            handle_seconds: Family::new_with_constructor(latency_histogram),
            key_generation_seconds: latency_histogram(),
        };
        registry.register(
            "certificates_issued",
            "Certificates issued, by the reason they were (re)issued",
            metrics.issued.clone(),
        );
        registry.register(
            "failures",
            "Requests refused and reported to their owner, by reason",
            metrics.failed.clone(),
        );
        registry.register(
            "secret_writes",
            "Secrets created or updated",
            metrics.secret_writes.clone(),
        );
        registry.register(
            "api_reads",
            "Objects work items read from the Kubernetes API rather than a watch cache, by \
             object and reason",
            metrics.api_reads.clone(),
        );
        registry.register(
            "work_items",
            "Work items handled, by outcome",
            metrics.handled.clone(),
        );
        registry.register(
            "retries",
            "Work items handed back for a later retry, by error kind",
            metrics.retries.clone(),
        );
        registry.register(
            "dead_letters",
            "Work items moved to the dead-letter stream",
            metrics.dead_letters.clone(),
        );
        registry.register(
            "consumer_pending",
            "Work items waiting in the signer consumer, as of the last delivery (queue lag)",
            metrics.consumer_pending.clone(),
        );
        registry.register(
            "handle_seconds",
            "Time to handle one work item, by outcome",
            metrics.handle_seconds.clone(),
        );
        registry.register(
            "key_generation_seconds",
            "Time to generate one private key",
            metrics.key_generation_seconds.clone(),
        );
        metrics
    }

    pub fn issued(&self, reason: &str) {
        self.issued
            .get_or_create(&Reason {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn failed(&self, reason: &str) {
        self.failed
            .get_or_create(&Reason {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn secret_written(&self) {
        self.secret_writes.inc();
    }

    pub fn secret_writes(&self) -> u64 {
        self.secret_writes.get()
    }

    /// A work item read `object` from the API server (`reason`: what the
    /// cache could not answer).
    pub fn api_read(&self, object: &str, reason: &str) {
        self.api_reads
            .get_or_create(&Read {
                object: object.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn handled(&self, outcome: &str, started: Instant) {
        let label = Outcome {
            outcome: outcome.to_owned(),
        };
        self.handled.get_or_create(&label).inc();
        self.handle_seconds
            .get_or_create(&label)
            .observe(started.elapsed().as_secs_f64());
    }

    pub fn retried(&self, kind: &str) {
        self.retries
            .get_or_create(&Reason {
                reason: kind.to_owned(),
            })
            .inc();
    }

    pub fn consumer_pending(&self, pending: u64) {
        self.consumer_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    pub fn dead_lettered(&self) {
        self.dead_letters.inc();
    }

    pub fn time_key_generation<T>(&self, generate: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let key = generate();
        self.key_generation_seconds
            .observe(started.elapsed().as_secs_f64());
        key
    }
}
