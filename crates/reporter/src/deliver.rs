//! The one delivery path of the reporter. Observes the Pod index (who
//! consumes a Secret) and ReplicaSet metadata (through [`Owners`]); writes,
//! through the [`EventWriter`], a notice on the ServiceCertificates it is
//! given, on every Pod given and on each Pod's workload (once per
//! workload); never reads a Secret, never decides what to say or whom to
//! tell about a certificate (outcome handling, late Pods and the Report API
//! do, and all three deliver here).

use std::collections::BTreeMap;

use tracing::warn;

use crate::Error;
use crate::events::{EventWriter, Notice, ObjectRef, Recorded};
use crate::metrics::Metrics;
use crate::owners::Owners;
use crate::pods::{PodSummary, SharedPodIndex};

/// Writes notices on objects, their consuming Pods and their workloads.
#[derive(Debug)]
pub struct Delivery {
    pods: SharedPodIndex,
    owners: Owners,
    writer: EventWriter,
    metrics: Metrics,
}

impl Delivery {
    pub fn new(
        client: kube::Client,
        pods: SharedPodIndex,
        writer: EventWriter,
        metrics: Metrics,
    ) -> Self {
        Self {
            pods,
            owners: Owners::new(client),
            writer,
            metrics,
        }
    }

    /// The Pods in the index now that consume Secret `secret_name` in
    /// `namespace`, by name.
    pub fn consumers(&self, namespace: &str, secret_name: &str) -> Vec<PodSummary> {
        if secret_name.is_empty() {
            return Vec::new();
        }
        self.pods
            .read(|index| index.consumers(namespace, secret_name))
    }

    /// The Pod index, for late Pods.
    pub fn pods(&self) -> &SharedPodIndex {
        &self.pods
    }

    /// Records `notice` on `certificates`, on `pods` and on each Pod's
    /// workload (once per workload). Every object is tried; the first
    /// transient error is returned afterwards so the caller retries, while
    /// permanent errors (e.g. the namespace is being deleted) are logged.
    /// Returns the number of objects reached.
    pub async fn deliver(
        &self,
        certificates: &[ObjectRef],
        pods: &[PodSummary],
        notice: &Notice,
    ) -> Result<usize, Error> {
        let mut recipients: BTreeMap<String, ObjectRef> = BTreeMap::new();
        let mut first_error = None;
        for certificate in certificates {
            recipients.insert(certificate.uid.clone(), certificate.clone());
        }
        for pod in pods {
            recipients.insert(pod.uid.clone(), pod.object_ref());
            match self.owners.workload(pod).await {
                Ok(Some(workload)) => {
                    recipients.insert(workload.uid.clone(), workload);
                }
                Ok(None) => {}
                Err(err) if err.is_transient() => {
                    first_error.get_or_insert(err);
                }
                Err(err) => warn!(error = %err, pod = %pod.name, "no workload for the Pod"),
            }
        }
        let count = recipients.len();
        for regarding in recipients.values() {
            match self.writer.record(regarding, notice).await {
                Ok(Recorded::Written | Recorded::Aggregated | Recorded::RateLimited) => {}
                Err(err) if err.is_transient() => {
                    warn!(error = %err, kind = %regarding.kind, name = %regarding.name, "writing an Event failed; will retry");
                    first_error.get_or_insert(err);
                }
                Err(err) => {
                    warn!(error = %err, kind = %regarding.kind, name = %regarding.name, "an Event cannot be written");
                }
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(count),
        }
    }

    /// True when `regarding` has the Event `notice` would be counted in
    /// (found by its deterministic name), whichever replica wrote it.
    pub async fn was_told(&self, regarding: &ObjectRef, notice: &Notice) -> Result<bool, Error> {
        self.writer.exists(regarding, notice).await
    }

    /// Drops the Warning series updates still owed for object `uid` (its
    /// failure is resolved).
    pub fn forget_warnings(&self, uid: &str) {
        self.writer.forget_warnings(uid);
    }

    /// The metrics, for the consumer and the gRPC service.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}
