//! Observes outcomes, `Report` requests and Pods that appear; writes Events
//! (through [`EventWriter`]) on the ServiceCertificate, on every Pod that
//! consumes its Secret and on each Pod's workload, and keeps the
//! active-failure bucket up to date; never reads a Secret.
//!
//! Who is told what:
//!
//! | what happened | ServiceCertificate | consuming Pods and their workloads |
//! |---|---|---|
//! | `Failed` outcome | Warning | Warning |
//! | `Issued` after a failure | Normal `Issued` | Normal `Issued` |
//! | `Issued`, nothing failing | Normal `Issued` | nothing |
//! | a Pod appears consuming a failing Secret | — | Warning (the current failure) |
//! | `Report` request | its type, naming the caller | its type, naming the caller |

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use certflow_api::ServiceCertificate;
use certflow_bus::{ActiveFailures, FailureKey};
use certflow_diagnostics::Reason;
use certflow_proto::v1::{Failed, Issued, Outcome, outcome};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt as _};
use tracing::{debug, info, instrument, warn};

use crate::Error;
use crate::active::SharedActive;
use crate::events::{EventType, EventWriter, Notice, ObjectRef, Recorded};
use crate::metrics::Metrics;
use crate::owners::Owners;
use crate::pods::{PodSummary, SharedPodIndex};

/// The `action` of Events about issuance.
pub const ISSUE_ACTION: &str = "Issue";

/// The `reason` of the Normal Event written when a certificate is issued.
pub const ISSUED_REASON: &str = "Issued";

/// The `reason` of a failure whose outcome names none.
pub const FAILED_REASON: &str = "Failed";

/// The word certflow writes itself that `reason` is, ignoring case: a
/// reason of the failure catalog ([`Reason::ALL`]), [`ISSUED_REASON`] or
/// [`FAILED_REASON`]. A `Report` caller may use none of them, so that an
/// Event with one of these reasons is always certflow's own diagnosis, for
/// an app owner reading `kubectl describe` and for an alert selecting on
/// `reason`. Case is ignored so that `POLICYVIOLATION` cannot pass for the
/// real one either.
pub fn reserved_reason(reason: &str) -> Option<&'static str> {
    Reason::ALL
        .iter()
        .map(|reason| reason.as_str())
        .chain([ISSUED_REASON, FAILED_REASON])
        .find(|word| word.eq_ignore_ascii_case(reason))
}

/// Attempts at telling a new Pod about a failure (1 s, 2 s, 4 s apart).
const NEW_POD_ATTEMPTS: u32 = 4;

/// `Issued` outcomes remembered to recognise a stale failure redelivered
/// after them; emptied when it grows past this.
const MAX_REMEMBERED_ISSUED: usize = 10_000;

/// What became of an outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    /// A failure was recorded and reported to this many objects.
    Failed { recipients: usize },
    /// An issuance was reported to this many objects; `resolved` when it
    /// ended an active failure.
    Issued { recipients: usize, resolved: bool },
    /// Nothing was written.
    Skipped { why: &'static str },
}

impl Handled {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Failed { .. } => "failed",
            Self::Issued { .. } => "issued",
            Self::Skipped { .. } => "skipped",
        }
    }
}

/// What a `Report` request is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A ServiceCertificate, its Secret's consumers and their workloads.
    Certificate { namespace: String, name: String },
    /// The consumers of a Secret, their workloads, and the
    /// ServiceCertificates that write the Secret.
    Secret {
        namespace: String,
        secret_name: String,
    },
}

/// The Warning for a failed outcome: the signer's sentence (which names
/// the field, the value and the fix) under its reason word.
pub fn failure_notice(failed: &Failed) -> Notice {
    let message = if failed.message.is_empty() {
        compose(
            "The certificate could not be issued.",
            &failed.field_path,
            &failed.value,
            &failed.suggestion,
        )
    } else {
        failed.message.clone()
    };
    let reason = if failed.reason.is_empty() {
        FAILED_REASON
    } else {
        &failed.reason
    };
    Notice::new(EventType::Warning, reason, ISSUE_ACTION, &message)
}

/// The Normal Event for an issued certificate; `resolved` names the reason
/// of the failure it ends, if any.
pub fn issued_notice(outcome: &Outcome, issued: &Issued, resolved: Option<&str>) -> Notice {
    let valid_until = issued
        .not_after
        .as_ref()
        .and_then(|t| k8s_openapi::jiff::Timestamp::new(t.seconds, t.nanos).ok())
        .map(|t| format!(", valid until {t}"))
        .unwrap_or_default();
    let mut note = format!(
        "ServiceCertificate {:?}: certificate issued into Secret {:?} by CertificateAuthority {:?} (serial {}{valid_until}).",
        outcome.name, outcome.secret_name, issued.issuer, issued.serial_number
    );
    if let Some(reason) = resolved {
        note.push_str(&format!(" The earlier {reason} failure is resolved."));
    }
    Notice::new(EventType::Normal, ISSUED_REASON, ISSUE_ACTION, &note)
}

/// `message`, followed by the field, value and suggestion when it does not
/// mention them already (reports from other services may give them apart).
pub fn compose(message: &str, field_path: &str, value: &str, suggestion: &str) -> String {
    let mut text = message.trim().to_owned();
    if !field_path.is_empty() && !text.contains(field_path) {
        let seen = if value.is_empty() {
            String::new()
        } else {
            format!(" (value {value:?})")
        };
        text = format!("{field_path}{seen}: {text}");
    }
    if !suggestion.is_empty() && !text.contains(suggestion) {
        let end = if text.ends_with(['.', '?', '!']) {
            " "
        } else {
            "; "
        };
        text.push_str(end);
        text.push_str(suggestion);
    }
    text
}

/// `(generation, occurred_at)`: the order of outcomes of one certificate.
fn position(outcome: &Outcome) -> (i64, i64, i32) {
    let (seconds, nanos) = outcome
        .occurred_at
        .as_ref()
        .map_or((0, 0), |t| (t.seconds, t.nanos));
    (outcome.generation, seconds, nanos)
}

/// True when `issued` happened after `failure` and so ends it.
pub fn resolves(issued: &Outcome, failure: &Outcome) -> bool {
    position(failure) <= position(issued)
}

/// True while `scert` (the failure's ServiceCertificate as read now) is the
/// object that failed and is not Ready.
pub fn still_failing(failure: &Outcome, scert: Option<&ServiceCertificate>) -> bool {
    scert.is_some_and(|scert| {
        scert.uid().as_deref() == Some(failure.uid.as_str())
            && !scert
                .ready_condition()
                .is_some_and(certflow_api::Condition::is_true)
    })
}

/// Turns what happened into Events.
pub struct Reporter {
    client: Client,
    pods: SharedPodIndex,
    owners: Owners,
    writer: EventWriter,
    failures: ActiveFailures,
    active: SharedActive,
    metrics: Metrics,
    latest_issued: Mutex<HashMap<FailureKey, (i64, i64, i32)>>,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("failures", &self.failures.bucket())
            .finish_non_exhaustive()
    }
}

impl Reporter {
    pub fn new(
        client: Client,
        pods: SharedPodIndex,
        writer: EventWriter,
        failures: ActiveFailures,
        active: SharedActive,
        metrics: Metrics,
    ) -> Self {
        Self {
            owners: Owners::new(client.clone()),
            client,
            pods,
            writer,
            failures,
            active,
            metrics,
            latest_issued: Mutex::new(HashMap::new()),
        }
    }

    /// Handles one outcome from the signer. An error means some Event or
    /// the bucket could not be written; retrying the outcome is safe
    /// (repeats only grow a series count).
    #[instrument(name = "report_outcome", skip_all, fields(generation = outcome.generation, secret = %outcome.secret_name))]
    pub async fn outcome(&self, outcome: &Outcome) -> Result<Handled, Error> {
        match &outcome.result {
            Some(outcome::Result::Failed(failed)) => self.failed(outcome, failed).await,
            Some(outcome::Result::Issued(issued)) => self.issued(outcome, issued).await,
            None => Ok(Handled::Skipped { why: "no_result" }),
        }
    }

    async fn failed(&self, outcome: &Outcome, failed: &Failed) -> Result<Handled, Error> {
        let key = FailureKey::of(outcome);
        let superseded = self
            .remembered_issued()
            .get(&key)
            .is_some_and(|issued| position(outcome) < *issued);
        if superseded {
            debug!("a failure older than the last issuance; ignoring it");
            return Ok(Handled::Skipped { why: "stale" });
        }
        // Recorded before the consumers are looked up: a Pod that appears
        // meanwhile either is found below or finds the failure itself.
        if !outcome.secret_name.is_empty() {
            self.failures.record(outcome).await?;
            self.active
                .write(|a| a.record(outcome.clone(), SystemTime::now()));
        }
        let notice = failure_notice(failed);
        let certificate =
            ObjectRef::service_certificate(&outcome.namespace, &outcome.name, &outcome.uid);
        let pods = self.consumers(&outcome.namespace, &outcome.secret_name);
        let recipients = self.deliver(&[certificate], &pods, &notice).await?;
        info!(reason = notice.reason(), recipients, "failure reported");
        Ok(Handled::Failed { recipients })
    }

    async fn issued(&self, outcome: &Outcome, issued: &Issued) -> Result<Handled, Error> {
        let key = FailureKey::of(outcome);
        self.remember_issued(&key, position(outcome));
        let failure = if outcome.secret_name.is_empty() {
            None
        } else {
            self.failures.get(&key).await?
        };
        let resolved = failure
            .filter(|failure| resolves(outcome, failure))
            .and_then(|failure| match failure.result {
                Some(outcome::Result::Failed(failed)) => Some(failed.reason),
                _ => None,
            });
        let certificate =
            ObjectRef::service_certificate(&outcome.namespace, &outcome.name, &outcome.uid);
        let notice = issued_notice(outcome, issued, resolved.as_deref());
        let Some(reason) = resolved else {
            let recipients = self.deliver(&[certificate], &[], &notice).await?;
            return Ok(Handled::Issued {
                recipients,
                resolved: false,
            });
        };
        self.failures.remove(&key).await?;
        self.active.write(|a| a.remove(&key));
        let pods = self.consumers(&outcome.namespace, &outcome.secret_name);
        self.writer.forget_warnings(&certificate.uid);
        for pod in &pods {
            self.writer.forget_warnings(&pod.uid);
        }
        let recipients = self.deliver(&[certificate], &pods, &notice).await?;
        info!(resolved = %reason, recipients, "failure resolved");
        Ok(Handled::Issued {
            recipients,
            resolved: true,
        })
    }

    /// Tells a Pod that just appeared about every active failure of the
    /// Secrets it consumes. Transient errors are retried a few times, then
    /// logged: nothing else would tell this Pod before the failure is
    /// re-published.
    #[instrument(skip_all, fields(namespace = %pod.namespace, pod = %pod.name))]
    pub async fn pod_appeared(&self, pod: PodSummary) {
        let now = SystemTime::now();
        let failures: Vec<Outcome> = self.active.read(|active| {
            pod.secrets
                .iter()
                .flat_map(|secret| active.for_secret(&pod.namespace, secret, now))
                .collect()
        });
        for failure in failures {
            let Some(outcome::Result::Failed(failed)) = &failure.result else {
                continue;
            };
            if !self.confirm_failing(&failure).await {
                continue;
            }
            let notice = failure_notice(failed);
            self.tell_pod(&pod, &failure, &notice).await;
        }
    }

    /// The Pods in the index now that consume a Secret with an active
    /// failure. Taken when the first full Pod list was applied, it is
    /// the set of Pods present at start-up that [`Reporter::pods_present_at_start`]
    /// looks at.
    pub fn present_pods_with_active_failures(&self) -> Vec<PodSummary> {
        let now = SystemTime::now();
        let failing: Vec<(String, String)> = self.active.read(|active| active.secrets(now));
        self.pods.read(|index| {
            let mut pods: BTreeMap<String, PodSummary> = BTreeMap::new();
            for (namespace, secret_name) in &failing {
                for pod in index.consumers(namespace, secret_name) {
                    pods.insert(pod.uid.clone(), pod);
                }
            }
            pods.into_values().collect()
        })
    }

    /// Tells `pods`, present when this replica started, about the active
    /// failures of the Secrets they consume, unless they have the Warning
    /// already. A Pod that started while no replica watched Pods (between
    /// one replica's end and the next one's first list) is in that list,
    /// so it never "appears"; without this, nothing would tell it until the
    /// failure is re-published. Pods that were told (by the replica that
    /// ran before) have the Event, found by its deterministic name, and are
    /// left alone, so their counts are not inflated by a restart. Returns
    /// how many Pods were told.
    pub async fn pods_present_at_start(&self, pods: Vec<PodSummary>) -> usize {
        let now = SystemTime::now();
        let mut told = 0;
        // One confirmation per failure, not per Pod.
        let mut confirmed: HashMap<FailureKey, bool> = HashMap::new();
        for pod in pods {
            let failures: Vec<Outcome> = self.active.read(|active| {
                pod.secrets
                    .iter()
                    .flat_map(|secret| active.for_secret(&pod.namespace, secret, now))
                    .collect()
            });
            let mut pod_told = false;
            for failure in failures {
                let Some(outcome::Result::Failed(failed)) = &failure.result else {
                    continue;
                };
                let key = FailureKey::of(&failure);
                let failing = match confirmed.get(&key) {
                    Some(failing) => *failing,
                    None => {
                        let failing = self.confirm_failing(&failure).await;
                        confirmed.insert(key, failing);
                        failing
                    }
                };
                if !failing {
                    continue;
                }
                let notice = failure_notice(failed);
                match self.writer.exists(&pod.object_ref(), &notice).await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    // Telling it twice only grows a count; not telling it
                    // leaves the app owner without the message.
                    Err(err) => {
                        debug!(error = %err, pod = %pod.name, "cannot tell whether the Pod has the Warning; telling it")
                    }
                }
                pod_told |= self.tell_pod(&pod, &failure, &notice).await;
            }
            told += usize::from(pod_told);
        }
        told
    }

    /// Writes the Warning of `failure` on `pod` and its workload, retrying
    /// transient errors a few times, then logging: nothing else would tell
    /// this Pod before the failure is re-published. True when written.
    async fn tell_pod(&self, pod: &PodSummary, failure: &Outcome, notice: &Notice) -> bool {
        let mut delay = Duration::from_secs(1);
        for attempt in 1..=NEW_POD_ATTEMPTS {
            match self.deliver(&[], std::slice::from_ref(pod), notice).await {
                Ok(_) => {
                    info!(pod = %pod.name, secret = %failure.secret_name, reason = notice.reason(), "Pod told about an active failure");
                    return true;
                }
                Err(err) if err.is_transient() && attempt < NEW_POD_ATTEMPTS => {
                    debug!(error = %err, attempt, "telling a Pod failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(err) => {
                    warn!(error = %err, pod = %pod.name, "could not tell a Pod about an active failure");
                    return false;
                }
            }
        }
        false
    }

    /// Reads the failure's ServiceCertificate: a failure whose certificate
    /// is gone, replaced or Ready meanwhile (its `Issued` outcome lost) is
    /// removed instead of being reported. When the API cannot say, the
    /// failure is assumed to hold.
    async fn confirm_failing(&self, failure: &Outcome) -> bool {
        let api: Api<ServiceCertificate> = Api::namespaced(self.client.clone(), &failure.namespace);
        let scert = match api.get_opt(&failure.name).await {
            Ok(scert) => scert,
            Err(err) => {
                debug!(error = %err, "cannot confirm the failure; reporting it");
                return true;
            }
        };
        if still_failing(failure, scert.as_ref()) {
            return true;
        }
        info!(name = %failure.name, "dropping a failure whose ServiceCertificate is gone or Ready");
        let key = FailureKey::of(failure);
        if let Err(err) = self.failures.remove(&key).await {
            warn!(error = %err, "could not remove a stale failure");
        }
        self.active.write(|a| a.remove(&key));
        false
    }

    /// True when a Secret that `pod` consumes has an active failure (a
    /// cheap check before [`Reporter::pod_appeared`]).
    pub fn has_active_failure(&self, pod: &PodSummary) -> bool {
        let now = SystemTime::now();
        self.active.read(|active| {
            pod.secrets
                .iter()
                .any(|secret| !active.for_secret(&pod.namespace, secret, now).is_empty())
        })
    }

    /// Handles a `Report` request; returns how many objects it reached.
    #[instrument(skip_all, fields(target = ?target, reason = notice.reason()))]
    pub async fn report(&self, target: &Target, notice: &Notice) -> Result<usize, Error> {
        let (certificates, secret) = match target {
            Target::Certificate { namespace, name } => {
                let api: Api<ServiceCertificate> = Api::namespaced(self.client.clone(), namespace);
                let scert = api
                    .get_opt(name)
                    .await
                    .map_err(Error::kube("reading the ServiceCertificate"))?
                    .ok_or_else(|| Error::NotFound {
                        kind: "ServiceCertificate",
                        namespace: namespace.clone(),
                        name: name.clone(),
                    })?;
                let reference = certificate_ref(&scert);
                (vec![reference], (namespace.clone(), scert.spec.secret_name))
            }
            Target::Secret {
                namespace,
                secret_name,
            } => {
                let api: Api<ServiceCertificate> = Api::namespaced(self.client.clone(), namespace);
                let writers = api
                    .list(&ListParams::default())
                    .await
                    .map_err(Error::kube("listing ServiceCertificates"))?
                    .items
                    .iter()
                    .filter(|scert| &scert.spec.secret_name == secret_name)
                    .map(certificate_ref)
                    .collect();
                (writers, (namespace.clone(), secret_name.clone()))
            }
        };
        let pods = self.consumers(&secret.0, &secret.1);
        self.deliver(&certificates, &pods, notice).await
    }

    fn consumers(&self, namespace: &str, secret_name: &str) -> Vec<PodSummary> {
        if secret_name.is_empty() {
            return Vec::new();
        }
        self.pods
            .read(|index| index.consumers(namespace, secret_name))
    }

    /// Records `notice` on `certificates`, on `pods` and on each Pod's
    /// workload (once per workload). Every object is tried; the first
    /// transient error is returned afterwards so the caller retries, while
    /// permanent errors (e.g. the namespace is being deleted) are logged.
    async fn deliver(
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

    fn remembered_issued(&self) -> std::sync::MutexGuard<'_, HashMap<FailureKey, (i64, i64, i32)>> {
        self.latest_issued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn remember_issued(&self, key: &FailureKey, at: (i64, i64, i32)) {
        let mut remembered = self.remembered_issued();
        if remembered.len() >= MAX_REMEMBERED_ISSUED {
            remembered.clear();
        }
        let entry = remembered.entry(key.clone()).or_insert(at);
        *entry = (*entry).max(at);
    }

    /// The metrics, for the consumer and the gRPC service.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

fn certificate_ref(scert: &ServiceCertificate) -> ObjectRef {
    ObjectRef::service_certificate(
        &scert.namespace().unwrap_or_default(),
        &scert.name_any(),
        &scert.uid().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests;
