//! The watcher's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Published {
    trigger: String,
    duplicate: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: String,
    /// "true" when retried with backoff, "false" when the error waits for
    /// an operator (`--failure-retry`).
    transient: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabel {
    trigger: String,
}

#[derive(Clone, Debug, Default)]
pub struct Metrics {
    published: Family<Published, Counter>,
    republished: Family<TriggerLabel, Counter>,
    errors: Family<ErrorLabels, Counter>,
    pending: Gauge,
    held: Gauge,
    stalled: Gauge,
    stream_missing: Counter,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "work_items_published",
            "Work items published, by trigger and whether JetStream dropped them as duplicates",
            metrics.published.clone(),
        );
        registry.register(
            "republished",
            "Work items published again because their decision still held --republish-after \
             (doubling) after the last publication, by trigger",
            metrics.republished.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by error kind and whether the error is transient \
             (retried with backoff) or not (retried after --failure-retry)",
            metrics.errors.clone(),
        );
        registry.register(
            "decisions_pending",
            "ServiceCertificates whose published work the watcher has not yet seen done, \
             or whose reconcile keeps failing",
            metrics.pending.clone(),
        );
        registry.register(
            "decisions_held",
            "ServiceCertificates whose decision the watcher holds back because their namespace \
             has --namespace-in-flight objects with work published and not yet seen done; \
             each is published in its turn",
            metrics.held.clone(),
        );
        registry.register(
            "decisions_stalled",
            "ServiceCertificates whose last reconcile failed with an error no retry is \
             expected to fix (the bus refused the work item); each is retried every \
             --failure-retry until an operator fixes the cause",
            metrics.stalled.clone(),
        );
        registry.register(
            "work_stream_missing",
            "Work item publications that found the work stream missing (NATS lost its \
             storage, or the stream was deleted); each is retried with backoff until the \
             setup step (certflow-watcher setup-bus) creates the stream again",
            metrics.stream_missing.clone(),
        );
        metrics
    }

    /// Counts a work item published for `trigger` (the proto name,
    /// `TRIGGER_CREATED`; the label value is `created`).
    pub fn published(&self, trigger: &str, duplicate: bool) {
        let labels = Published {
            trigger: trigger_label(trigger),
            duplicate: duplicate.to_string(),
        };
        self.published.get_or_create(&labels).inc();
    }

    pub fn republished(&self, trigger: &str) {
        let labels = TriggerLabel {
            trigger: trigger_label(trigger),
        };
        self.republished.get_or_create(&labels).inc();
    }

    pub fn reconcile_error(&self, kind: &str, transient: bool) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: kind.to_owned(),
                transient: transient.to_string(),
            })
            .inc();
    }

    /// Sets the number of ServiceCertificates the watcher keeps a
    /// publication or an error streak for.
    pub fn pending(&self, objects: usize) {
        self.pending.set(i64::try_from(objects).unwrap_or(i64::MAX));
    }

    /// Sets the number of ServiceCertificates whose decision waits for a
    /// slot of their namespace.
    pub fn held(&self, objects: usize) {
        self.held.set(i64::try_from(objects).unwrap_or(i64::MAX));
    }

    /// Counts a publication that found the work stream missing.
    pub fn work_stream_missing(&self) {
        self.stream_missing.inc();
    }

    /// Sets the number of ServiceCertificates whose last reconcile failed
    /// with a permanent error.
    pub fn stalled(&self, objects: usize) {
        self.stalled.set(i64::try_from(objects).unwrap_or(i64::MAX));
    }
}

/// The label value of a trigger: its proto name without the enum prefix, in
/// lower case (`TRIGGER_RENEWAL_DUE` is `renewal_due`), as Prometheus label
/// values are written.
fn trigger_label(proto_name: &str) -> String {
    proto_name
        .strip_prefix("TRIGGER_")
        .unwrap_or(proto_name)
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_labels_are_lower_case_without_the_enum_prefix() {
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        metrics.published(certflow_proto::v1::Trigger::RenewalDue.as_str_name(), false);
        metrics.republished(certflow_proto::v1::Trigger::Created.as_str_name());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(
            text.contains(
                r#"work_items_published_total{trigger="renewal_due",duplicate="false"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"republished_total{trigger="created"} 1"#),
            "{text}"
        );
    }
}
