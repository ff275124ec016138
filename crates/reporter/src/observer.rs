//! Observes the Pod watch and the sizes of the reporter's copies; writes
//! health (`kubernetes` is ready while the Pod index is in sync) and
//! metrics, and hands Pods that appear to [`Reporter::pod_appeared`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use certflow_runtime::HealthHandle;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::active::SharedActive;
use crate::metrics::Metrics;
use crate::pods::{PodIndex, PodObserver, PodSummary, SharedPodIndex};
use crate::report::Reporter;

pub use certflow_runtime::kube_client::KUBERNETES_DEPENDENCY;

/// New Pods told about failures at once; a Deployment of a thousand
/// replicas scaling up waits its turn instead of opening a thousand requests.
const CONCURRENT_NEW_PODS: usize = 16;

/// Connects the Pod watch to the reporter and to health.
#[derive(Debug)]
pub struct PodEvents {
    reporter: Arc<Reporter>,
    health: HealthHandle,
    synced: watch::Sender<bool>,
    slots: Arc<Semaphore>,
    /// Set once the Pods present at start-up were handed over.
    started: AtomicBool,
}

impl PodEvents {
    /// `synced` follows the index's sync state, for start-up to wait on.
    pub fn new(reporter: Arc<Reporter>, health: HealthHandle, synced: watch::Sender<bool>) -> Self {
        Self {
            reporter,
            health,
            synced,
            slots: Arc::new(Semaphore::new(CONCURRENT_NEW_PODS)),
            started: AtomicBool::new(false),
        }
    }
}

impl PodObserver for PodEvents {
    fn synced(&self, ok: bool) {
        // The first time, the index holds exactly the first full list (the
        // watch applies nothing while this runs): the Pods present at
        // start-up. Pods that consume a failing Secret may have started
        // while no replica watched; they are checked once, in the
        // background. (After a re-list, Pods missed while disconnected are
        // reported as appeared by the index itself.)
        if ok && !self.started.swap(true, Ordering::SeqCst) {
            let present = self.reporter.present_pods_with_active_failures();
            if !present.is_empty() {
                let reporter = self.reporter.clone();
                tokio::spawn(async move {
                    let checked = present.len();
                    let told = reporter.pods_present_at_start(present).await;
                    info!(
                        checked,
                        told, "Pods present at start-up checked for active failures"
                    );
                });
            }
        }
        self.synced.send_replace(ok);
        let health = self.health.clone();
        tokio::spawn(async move { health.set_ready(KUBERNETES_DEPENDENCY, ok).await });
    }

    fn appeared(&self, pod: PodSummary) {
        // Most Pods consume no failing Secret; only those cost a task.
        if self.reporter.has_active_failure(&pod) {
            let reporter = self.reporter.clone();
            let slots = self.slots.clone();
            tokio::spawn(async move {
                let Ok(_slot) = slots.acquire_owned().await else {
                    return;
                };
                reporter.pod_appeared(pod).await;
            });
        }
    }
}

/// Publishes the size of the Pod index and of the active-failure copy
/// every ten seconds until `shutdown`.
pub async fn report_sizes(
    pods: SharedPodIndex,
    active: SharedActive,
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
        metrics.set_active_failures(active.read(|a| a.len()));
    }
}
