//! The watcher's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Published {
    trigger: String,
    duplicate: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

#[derive(Clone, Debug, Default)]
pub struct Metrics {
    published: Family<Published, Counter>,
    errors: Family<Kind, Counter>,
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
            "reconcile_errors",
            "Reconciles that failed, by error kind",
            metrics.errors.clone(),
        );
        metrics
    }

    pub fn published(&self, trigger: &str, duplicate: bool) {
        let labels = Published {
            trigger: trigger.to_owned(),
            duplicate: duplicate.to_string(),
        };
        self.published.get_or_create(&labels).inc();
    }

    pub fn reconcile_error(&self, kind: &str) {
        self.errors
            .get_or_create(&Kind {
                kind: kind.to_owned(),
            })
            .inc();
    }
}
