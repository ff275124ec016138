//! Observes the Pod watch (Pods that appear, the first full list, sync
//! state) and the ServiceCertificate cache; writes, through [`Delivery`],
//! the current Warning on Pods that start consuming a failing Secret after
//! the failure was reported, and on their workloads, and health (the
//! `kubernetes` dependency is ready while the Pod index is in sync); keeps
//! nothing of its own; reads Events by name only when its replica starts
//! (was this failure reported, was this Pod told); never reads a Secret or
//! the API for a ServiceCertificate.
//!
//! "Failing" is what the ServiceCertificate's status says now
//! ([`crate::certificates::active_failure`]), whichever replica reported the
//! failure and however long ago: a Pod that appears is told the failure of
//! every ServiceCertificate writing a Secret it consumes, in the words the
//! outcome's Warning used.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use certflow_runtime::HealthHandle;
use tokio::sync::{Semaphore, watch};
use tracing::{debug, info, instrument, warn};

use crate::certificates::{CertificateSummary, SharedCertificates};
use crate::deliver::Delivery;
use crate::events::Notice;
use crate::pods::{PodObserver, PodSummary};

pub use certflow_runtime::kube_client::KUBERNETES_DEPENDENCY;

/// New Pods told about failures at once; a Deployment of a thousand
/// replicas scaling up waits its turn instead of opening a thousand requests.
const CONCURRENT_NEW_PODS: usize = 16;

/// Attempts at telling a new Pod about a failure (1 s, 2 s, 4 s apart).
const NEW_POD_ATTEMPTS: u32 = 4;

/// When a new Pod's Secret has no verdict yet, how long after the Pod
/// appeared its certificate's status is looked at again: 1 s, then twice
/// as long each time, up to [`VERDICT_WAIT`] in all.
const VERDICT_FIRST_LOOK: Duration = Duration::from_secs(1);
const VERDICT_WAIT: Duration = Duration::from_secs(60);

/// The Pods present at start-up that consume a failing Secret, and the
/// failures among theirs that were reported already, with their Warning
/// ([`LatePods::present_at_start`]).
#[derive(Debug, Default)]
pub struct PresentAtStart {
    pods: Vec<PodSummary>,
    reported: Vec<((String, String), Notice)>,
}

/// Tells Pods that appear late about the failures of the Secrets they
/// consume.
#[derive(Debug)]
pub struct LatePods {
    certificates: SharedCertificates,
    delivery: Arc<Delivery>,
}

impl LatePods {
    pub fn new(certificates: SharedCertificates, delivery: Arc<Delivery>) -> Self {
        Self {
            certificates,
            delivery,
        }
    }

    /// The failing ServiceCertificates writing a Secret that `pod` consumes.
    pub fn failures_for(&self, pod: &PodSummary) -> Vec<CertificateSummary> {
        self.certificates.read(|cache| {
            pod.secrets
                .iter()
                .flat_map(|secret| cache.failing_for(&pod.namespace, secret))
                .collect()
        })
    }

    /// Whether a Secret `pod` consumes has no verdict yet: no
    /// ServiceCertificate in the cache writes it as Ready or failing (it is
    /// in flight, or the cache has not seen it yet, or no ServiceCertificate
    /// writes it at all, which the cache cannot tell apart).
    pub fn awaits_verdict(&self, pod: &PodSummary) -> bool {
        self.certificates.read(|cache| {
            pod.secrets
                .iter()
                .any(|secret| !cache.has_verdict(&pod.namespace, secret))
        })
    }

    /// Looks again, with growing pauses for up to [`VERDICT_WAIT`], at the
    /// certificates of a Pod that appeared while a Secret of its had no
    /// verdict ([`Self::awaits_verdict`]), and tells it a failure the
    /// status then reports, unless it has the Warning already.
    ///
    /// This closes the window between a failure's outcome and its status:
    /// the signer publishes the outcome before it writes the status, so a
    /// Pod that appears after the outcome was handled (which told only the
    /// Pods known then) and before the cache holds the failing status would
    /// otherwise be told by no one.
    #[instrument(skip_all, fields(namespace = %pod.namespace, pod = %pod.name))]
    pub async fn await_verdict(&self, pod: PodSummary) {
        let mut pause = VERDICT_FIRST_LOOK;
        let mut waited = Duration::ZERO;
        while waited < VERDICT_WAIT {
            tokio::time::sleep(pause).await;
            waited += pause;
            pause *= 2;
            let failures = self.failures_for(&pod);
            if !failures.is_empty() {
                for certificate in failures {
                    let Some(failure) = &certificate.failure else {
                        continue;
                    };
                    let notice = failure.notice();
                    if !matches!(
                        self.delivery.was_told(&pod.object_ref(), &notice).await,
                        Ok(true)
                    ) {
                        self.tell_pod(&pod, &certificate, &notice).await;
                    }
                }
                return;
            }
            if !self.awaits_verdict(&pod) {
                return;
            }
        }
        debug!("no verdict for the Pod's Secrets; no longer waiting for one");
    }

    /// Tells a Pod that just appeared about every failure of the Secrets it
    /// consumes. Transient errors are retried a few times, then logged:
    /// nothing else would tell this Pod before the failure is re-published.
    #[instrument(skip_all, fields(namespace = %pod.namespace, pod = %pod.name))]
    pub async fn pod_appeared(&self, pod: PodSummary) {
        for certificate in self.failures_for(&pod) {
            let Some(failure) = &certificate.failure else {
                continue;
            };
            self.tell_pod(&pod, &certificate, &failure.notice()).await;
        }
    }

    /// What a replica starting up must tell the Pods present in its first
    /// Pod list, taken before it handles any outcome: those Pods that
    /// consume a Secret a failing ServiceCertificate writes, and the
    /// failures among them that were reported already (their
    /// ServiceCertificate has the Warning, one read each).
    ///
    /// A failure not reported yet has its outcome still to be handled (the
    /// signer writes the status after publishing it); that outcome will
    /// tell these Pods, so they are left to it rather than told twice.
    /// Taking this before the first outcome is handled is what makes "not
    /// reported yet" mean that.
    pub async fn present_at_start(&self) -> PresentAtStart {
        let failing = self.certificates.read(|cache| cache.failing_secrets());
        let pods: Vec<PodSummary> = self.delivery.pods().read(|index| {
            let mut pods: HashMap<String, PodSummary> = HashMap::new();
            for (namespace, secret_name) in &failing {
                for pod in index.consumers(namespace, secret_name) {
                    pods.insert(pod.uid.clone(), pod);
                }
            }
            pods.into_values().collect()
        });
        let mut reported = Vec::new();
        let mut seen = HashSet::new();
        for certificate in pods.iter().flat_map(|pod| self.failures_for(pod)) {
            let key = (certificate.namespace.clone(), certificate.name.clone());
            let Some(failure) = &certificate.failure else {
                continue;
            };
            if !seen.insert(key.clone()) {
                continue;
            }
            let notice = failure.notice();
            let was_reported = match self
                .delivery
                .was_told(&certificate.object_ref(), &notice)
                .await
            {
                Ok(was_reported) => was_reported,
                // Telling a Pod twice only grows a count; not telling it
                // leaves the app owner without the message.
                Err(err) => {
                    debug!(error = %err, certificate = %certificate.name, "cannot tell whether the failure was reported; taking it as reported");
                    true
                }
            };
            if was_reported {
                reported.push((key, notice));
            }
        }
        PresentAtStart { pods, reported }
    }

    /// Tells the Pods of `present` about the reported failures of the
    /// Secrets they consume, unless they have the Warning already. A Pod
    /// that started while no replica watched Pods (between one replica's
    /// end and the next one's first list) is in the first list, so it never
    /// "appears"; without this, nothing would tell it until the failure is
    /// re-published. Pods that were told (by the replica that ran before)
    /// have the Event, found by its deterministic name, and are left alone,
    /// so their counts are not inflated by a restart. Returns how many Pods
    /// were told.
    pub async fn tell_present(&self, present: PresentAtStart) -> usize {
        let reported: HashMap<(String, String), Notice> = present.reported.into_iter().collect();
        let mut told = 0;
        for pod in present.pods {
            let mut pod_told = false;
            for certificate in self.failures_for(&pod) {
                let key = (certificate.namespace.clone(), certificate.name.clone());
                let Some(notice) = reported.get(&key) else {
                    continue;
                };
                match self.delivery.was_told(&pod.object_ref(), notice).await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(err) => {
                        debug!(error = %err, pod = %pod.name, "cannot tell whether the Pod has the Warning; telling it");
                    }
                }
                pod_told |= self.tell_pod(&pod, &certificate, notice).await;
            }
            told += usize::from(pod_told);
        }
        told
    }

    /// Writes `notice`, the failure of `certificate`, on `pod` and its
    /// workload, retrying transient errors a few times, then logging:
    /// nothing else would tell this Pod before the failure is re-published.
    /// True when written.
    async fn tell_pod(
        &self,
        pod: &PodSummary,
        certificate: &CertificateSummary,
        notice: &Notice,
    ) -> bool {
        let mut delay = Duration::from_secs(1);
        for attempt in 1..=NEW_POD_ATTEMPTS {
            match self
                .delivery
                .deliver(&[], std::slice::from_ref(pod), notice)
                .await
            {
                Ok(_) => {
                    info!(pod = %pod.name, certificate = %certificate.name, secret = %certificate.secret_name, reason = notice.reason(), "Pod told about a failing certificate");
                    return true;
                }
                Err(err) if err.is_transient() && attempt < NEW_POD_ATTEMPTS => {
                    debug!(error = %err, attempt, "telling a Pod failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(err) => {
                    warn!(error = %err, pod = %pod.name, "could not tell a Pod about a failing certificate");
                    return false;
                }
            }
        }
        false
    }
}

/// Connects the Pod watch to [`LatePods`] and to health.
#[derive(Debug)]
pub struct PodEvents {
    late: Arc<LatePods>,
    health: HealthHandle,
    synced: watch::Sender<bool>,
    checked: watch::Sender<bool>,
    slots: Arc<Semaphore>,
    /// Set once the Pods present at start-up were handed over.
    started: AtomicBool,
}

impl PodEvents {
    /// `synced` follows the index's sync state, and `checked` becomes true
    /// once what the Pods present at start-up need was read, for start-up to
    /// wait on before it consumes outcomes.
    pub fn new(
        late: Arc<LatePods>,
        health: HealthHandle,
        synced: watch::Sender<bool>,
        checked: watch::Sender<bool>,
    ) -> Self {
        Self {
            late,
            health,
            synced,
            checked,
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
        // background. What was reported already is read before outcomes
        // are consumed (`checked`). (After a re-list, Pods missed while
        // disconnected are reported as appeared by the index itself.)
        if ok && !self.started.swap(true, Ordering::SeqCst) {
            let late = self.late.clone();
            let checked = self.checked.clone();
            tokio::spawn(async move {
                let present = late.present_at_start().await;
                checked.send_replace(true);
                let (pods, failures) = (present.pods.len(), present.reported.len());
                let told = late.tell_present(present).await;
                info!(
                    pods,
                    failures, told, "Pods present at start-up checked for reported failures"
                );
            });
        }
        self.synced.send_replace(ok);
        let health = self.health.clone();
        tokio::spawn(async move { health.set_ready(KUBERNETES_DEPENDENCY, ok).await });
    }

    fn appeared(&self, pod: PodSummary) {
        // Most Pods consume no failing Secret and no Secret in flight; only
        // those cost a task.
        if !self.late.failures_for(&pod).is_empty() {
            let late = self.late.clone();
            let slots = self.slots.clone();
            tokio::spawn(async move {
                let Ok(_slot) = slots.acquire_owned().await else {
                    return;
                };
                late.pod_appeared(pod).await;
            });
        } else if self.late.awaits_verdict(&pod) {
            let late = self.late.clone();
            tokio::spawn(async move { late.await_verdict(pod).await });
        }
    }
}
