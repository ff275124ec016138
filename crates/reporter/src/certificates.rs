//! Observes ServiceCertificates (a watch, cluster-wide or one namespace);
//! keeps, for each, only what the reporter asks of it: its identity, the
//! Secret it fills and what its status says now (failing and why, Ready
//! and since when, the serial), indexed by `(namespace, spec.secretName)`;
//! writes nothing; never reads a Secret.
//!
//! This cache is how the reporter knows whether a certificate is failing:
//! the ServiceCertificate's own status, [`active_failure`], is the one
//! source of truth, and nothing else keeps a copy of it. Outcomes and Pods
//! only say *when* to look (`docs/design/20261203-failure-truth.md`).
//!
//! One thing the status cannot say is which failure an issuance ended: the
//! signer publishes the `Issued` outcome first and then clears
//! `status.lastFailure`, so by the time the outcome is handled the failure
//! may be gone. The cache therefore remembers, per ServiceCertificate, the
//! failure that the last change of its status cleared and the serial that
//! cleared it ([`Cleared`]); it is replaced by the object's next change of
//! serial and dropped with the object.
//!
//! A reflector of its own rather than kube's `reflector::Store`, for the
//! same reasons as the Pod index: the question is the reverse one ("which
//! ServiceCertificates write Secret X?"), a slim summary keeps 10,000
//! certificates in a few megabytes, and the cleared failure needs the old
//! object next to the new one when a change is applied.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use certflow_api::{Failure, ServiceCertificate};
use certflow_proto::v1::Failed;
use futures::{StreamExt as _, TryStreamExt as _};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::events::{Notice, ObjectRef};
use crate::notices::failure_notice;
use crate::summary::summarize;

/// The failure `scert`'s status reports now: `status.lastFailure` while the
/// `Ready` condition is not True. This is the one answer to "is this
/// certificate failing?" in the reporter.
pub fn active_failure(scert: &ServiceCertificate) -> Option<&Failure> {
    let ready = scert
        .ready_condition()
        .is_some_and(certflow_api::Condition::is_true);
    if ready {
        return None;
    }
    scert.status.as_ref()?.last_failure.as_ref()
}

/// What a ServiceCertificate's status says is wrong: `status.lastFailure`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveFailure {
    pub reason: String,
    pub message: String,
    pub field_path: String,
    pub value: String,
    /// `lastFailure.time`, in seconds since the epoch.
    pub at: Option<i64>,
}

impl ActiveFailure {
    fn of(failure: &Failure) -> Self {
        Self {
            reason: failure.reason.clone(),
            message: failure.message.clone(),
            field_path: failure.field_path.clone().unwrap_or_default(),
            value: failure.value.clone().unwrap_or_default(),
            at: failure.time.as_ref().map(|t| t.0.as_second()),
        }
    }

    /// The Warning for this failure: the same words the signer's `Failed`
    /// outcome carries, so that both name the same Event.
    pub fn notice(&self) -> Notice {
        failure_notice(&Failed {
            reason: self.reason.clone(),
            message: self.message.clone(),
            field_path: self.field_path.clone(),
            value: self.value.clone(),
            ..Failed::default()
        })
    }
}

/// The failure an issuance ended, as seen when the status changed from
/// failing to Ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cleared {
    /// The ended failure's reason word.
    pub reason: String,
    /// The serial of the certificate whose issuance ended it.
    pub serial: String,
}

/// What the reporter keeps of a ServiceCertificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateSummary {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub secret_name: String,
    pub observed_generation: Option<i64>,
    /// When `Ready` last became True (seconds since the epoch), while it is
    /// True.
    pub ready_since: Option<i64>,
    /// `status.serialNumber`.
    pub serial: Option<String>,
    /// [`active_failure`], if any.
    pub failure: Option<ActiveFailure>,
    /// The failure the latest issuance ended, while its serial is current.
    pub cleared: Option<Cleared>,
}

impl CertificateSummary {
    /// The summary of `scert`; `None` for an object without namespace, name
    /// or uid (which the API server never sends).
    pub fn of(scert: &ServiceCertificate) -> Option<Self> {
        let meta = &scert.metadata;
        let status = scert.status.as_ref();
        let ready = scert.ready_condition().filter(|c| c.is_true());
        Some(Self {
            namespace: meta.namespace.clone()?,
            name: meta.name.clone()?,
            uid: meta.uid.clone()?,
            secret_name: scert.spec.secret_name.clone(),
            observed_generation: status.and_then(|s| s.observed_generation),
            ready_since: ready.map(|c| {
                c.last_transition_time
                    .as_ref()
                    .map_or(0, |t| t.0.as_second())
            }),
            serial: status.and_then(|s| s.serial_number.clone()),
            failure: active_failure(scert).map(ActiveFailure::of),
            cleared: None,
        })
    }

    /// The ServiceCertificate as an Event's `regarding`.
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef::service_certificate(&self.namespace, &self.name, &self.uid)
    }

    /// `self` as it follows `previous` (the same object's last known
    /// summary): remembers the failure that this change cleared, or keeps
    /// the one remembered while the serial is unchanged.
    fn following(mut self, previous: Option<&Self>) -> Self {
        let Some(previous) = previous.filter(|p| p.uid == self.uid) else {
            return self;
        };
        self.cleared = match (&previous.failure, &self.failure, &self.serial) {
            (Some(failure), None, Some(serial)) if self.ready_since.is_some() => Some(Cleared {
                reason: failure.reason.clone(),
                serial: serial.clone(),
            }),
            _ => previous
                .cleared
                .clone()
                .filter(|cleared| self.serial.as_ref() == Some(&cleared.serial)),
        };
        self
    }
}

/// `(namespace, name)` of a ServiceCertificate, or `(namespace, secret
/// name)` of a Secret.
type Key = (String, String);

/// ServiceCertificates by `(namespace, name)` and by Secret. Fed with watch
/// events in the order the watcher produces them; a re-list (`Init` …
/// `InitDone`) replaces the contents atomically, as kube's reflector does.
#[derive(Debug, Default)]
pub struct CertificateIndex {
    certificates: HashMap<Key, CertificateSummary>,
    by_secret: HashMap<Key, BTreeSet<String>>,
    /// Certificates of a re-list in progress.
    relist: Option<HashMap<Key, CertificateSummary>>,
    synced: bool,
}

impl CertificateIndex {
    /// Applies one watch event.
    pub fn apply(&mut self, event: Event<CertificateSummary>) {
        match event {
            Event::Apply(certificate) => {
                let key = key_of(&certificate);
                let previous = self.remove(&key);
                self.insert(certificate.following(previous.as_ref()));
            }
            Event::Delete(certificate) => {
                self.remove(&key_of(&certificate));
            }
            Event::Init => self.relist = Some(HashMap::new()),
            Event::InitApply(certificate) => {
                let key = key_of(&certificate);
                let certificate = certificate.following(self.certificates.get(&key));
                self.relist
                    .get_or_insert_with(HashMap::new)
                    .insert(key, certificate);
            }
            Event::InitDone => {
                let certificates = self.relist.take().unwrap_or_default();
                self.certificates.clear();
                self.by_secret.clear();
                for (_, certificate) in certificates {
                    self.insert(certificate);
                }
                self.synced = true;
            }
        }
    }

    /// True once the first full list was applied.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// ServiceCertificates kept.
    pub fn len(&self) -> usize {
        self.certificates.len()
    }

    /// True when none is kept.
    pub fn is_empty(&self) -> bool {
        self.certificates.is_empty()
    }

    /// ServiceCertificates whose status reports a failure.
    pub fn failing(&self) -> usize {
        self.certificates
            .values()
            .filter(|c| c.failure.is_some())
            .count()
    }

    /// The ServiceCertificate `name` in `namespace`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<CertificateSummary> {
        self.certificates
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// The ServiceCertificates that write Secret `secret_name` in
    /// `namespace`, by name.
    pub fn writing(&self, namespace: &str, secret_name: &str) -> Vec<CertificateSummary> {
        self.by_secret
            .get(&(namespace.to_owned(), secret_name.to_owned()))
            .into_iter()
            .flatten()
            .filter_map(|name| self.certificates.get(&(namespace.to_owned(), name.clone())))
            .cloned()
            .collect()
    }

    /// Those of [`Self::writing`] whose status reports a failure.
    pub fn failing_for(&self, namespace: &str, secret_name: &str) -> Vec<CertificateSummary> {
        let mut failing = self.writing(namespace, secret_name);
        failing.retain(|c| c.failure.is_some());
        failing
    }

    /// Whether the status of some ServiceCertificate writing Secret
    /// `secret_name` says how it went: Ready or failing. False while every
    /// one is in flight, and when none is known (not seen yet, or the
    /// Secret is not certflow's).
    pub fn has_verdict(&self, namespace: &str, secret_name: &str) -> bool {
        self.writing(namespace, secret_name)
            .iter()
            .any(|c| c.failure.is_some() || c.ready_since.is_some())
    }

    /// The `(namespace, secret name)` of every Secret a failing
    /// ServiceCertificate writes.
    pub fn failing_secrets(&self) -> BTreeSet<Key> {
        self.certificates
            .values()
            .filter(|c| c.failure.is_some() && !c.secret_name.is_empty())
            .map(|c| (c.namespace.clone(), c.secret_name.clone()))
            .collect()
    }

    fn insert(&mut self, certificate: CertificateSummary) {
        let key = key_of(&certificate);
        if !certificate.secret_name.is_empty() {
            self.by_secret
                .entry((
                    certificate.namespace.clone(),
                    certificate.secret_name.clone(),
                ))
                .or_default()
                .insert(certificate.name.clone());
        }
        self.certificates.insert(key, certificate);
    }

    fn remove(&mut self, key: &Key) -> Option<CertificateSummary> {
        let certificate = self.certificates.remove(key)?;
        let secret = (
            certificate.namespace.clone(),
            certificate.secret_name.clone(),
        );
        if let Some(names) = self.by_secret.get_mut(&secret) {
            names.remove(&certificate.name);
            if names.is_empty() {
                self.by_secret.remove(&secret);
            }
        }
        Some(certificate)
    }
}

fn key_of(certificate: &CertificateSummary) -> Key {
    (certificate.namespace.clone(), certificate.name.clone())
}

/// The cache shared between the watch that feeds it and its readers.
#[derive(Clone, Debug, Default)]
pub struct SharedCertificates(Arc<RwLock<CertificateIndex>>);

impl SharedCertificates {
    /// Applies `event`; see [`CertificateIndex::apply`].
    pub fn apply(&self, event: Event<CertificateSummary>) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .apply(event);
    }

    /// Reads the cache.
    pub fn read<T>(&self, read: impl FnOnce(&CertificateIndex) -> T) -> T {
        read(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Watches ServiceCertificates (in `namespace`, or all) into `cache` until
/// `shutdown`; `synced` follows whether the cache is in step with the API
/// server (true once the first full list was applied, false while the watch
/// fails). Watch errors are retried with kube's default backoff.
pub async fn watch(
    client: Client,
    namespace: Option<&str>,
    cache: SharedCertificates,
    synced: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let api: Api<ServiceCertificate> = match namespace {
        Some(namespace) => Api::namespaced(client, namespace),
        None => Api::all(client),
    };
    let config = watcher::Config::default().page_size(500);
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => return,
            next = events.try_next() => next,
        };
        match next {
            Ok(Some(event)) => {
                if let Some(event) = summarize(event, CertificateSummary::of) {
                    cache.apply(event);
                }
                if !*synced.borrow() && cache.read(CertificateIndex::is_synced) {
                    let (count, failing) = cache.read(|c| (c.len(), c.failing()));
                    info!(
                        certificates = count,
                        failing, "ServiceCertificate cache synced"
                    );
                    synced.send_replace(true);
                }
            }
            Ok(None) => return,
            Err(err) => {
                warn!(error = %err, "ServiceCertificate watch failed; retrying");
                synced.send_replace(false);
            }
        }
    }
}

#[cfg(test)]
mod tests;
