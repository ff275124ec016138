//! Observes Pods (a watch, cluster-wide or one namespace); keeps, for each
//! Pod that consumes at least one Secret, only its identity, its controller
//! and the names of those Secrets; writes nothing; never reads a Secret.
//!
//! A full Pod is tens of kilobytes; a [`PodSummary`] is a few hundred bytes,
//! and Pods that consume no Secret are not kept at all, so the index stays
//! small with tens of thousands of Pods. The index is a reflector of its own
//! rather than kube's `reflector::Store` because the question it answers is
//! the reverse one, "which Pods consume Secret X?", and that needs an index
//! by Secret next to the objects.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{Container, EnvFromSource, EnvVar, Pod, PodSpec, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::events::ObjectRef;
use crate::summary::summarize;

/// The names of every Secret `spec` consumes: secret volumes, secret
/// sources of projected volumes, `env[].valueFrom.secretKeyRef` and
/// `envFrom[].secretRef`, across containers, init containers and ephemeral
/// containers. Optional references count: the Pod still reads the Secret
/// when it exists. `imagePullSecrets` do not: they are the kubelet's, not the
/// application's.
pub fn secrets_consumed(spec: &PodSpec) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for volume in spec.volumes.iter().flatten() {
        volume_secrets(volume, &mut names);
    }
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for container in containers {
        container_secrets(container, &mut names);
    }
    for container in spec.ephemeral_containers.iter().flatten() {
        env_secrets(container.env.iter().flatten(), &mut names);
        env_from_secrets(container.env_from.iter().flatten(), &mut names);
    }
    names.retain(|name| !name.is_empty());
    names
}

fn volume_secrets(volume: &Volume, names: &mut BTreeSet<String>) {
    if let Some(name) = volume.secret.as_ref().and_then(|s| s.secret_name.clone()) {
        names.insert(name);
    }
    let projected = volume
        .projected
        .iter()
        .flat_map(|p| p.sources.iter().flatten())
        .filter_map(|source| source.secret.as_ref());
    for secret in projected {
        names.insert(secret.name.clone());
    }
}

fn container_secrets(container: &Container, names: &mut BTreeSet<String>) {
    env_secrets(container.env.iter().flatten(), names);
    env_from_secrets(container.env_from.iter().flatten(), names);
}

fn env_secrets<'a>(env: impl Iterator<Item = &'a EnvVar>, names: &mut BTreeSet<String>) {
    let refs = env
        .filter_map(|var| var.value_from.as_ref())
        .filter_map(|from| from.secret_key_ref.as_ref());
    for secret in refs {
        names.insert(secret.name.clone());
    }
}

fn env_from_secrets<'a>(
    env_from: impl Iterator<Item = &'a EnvFromSource>,
    names: &mut BTreeSet<String>,
) {
    for secret in env_from.filter_map(|from| from.secret_ref.as_ref()) {
        names.insert(secret.name.clone());
    }
}

/// A Pod's controller (`ownerReferences[]` with `controller: true`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Controller {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
}

impl Controller {
    /// The controller among `owners`, if there is one.
    pub fn of(owners: &[OwnerReference]) -> Option<Self> {
        owners
            .iter()
            .find(|owner| owner.controller == Some(true))
            .map(|owner| Self {
                api_version: owner.api_version.clone(),
                kind: owner.kind.clone(),
                name: owner.name.clone(),
                uid: owner.uid.clone(),
            })
    }

    /// The controller as an Event's `regarding`, in `namespace`.
    pub fn object_ref(&self, namespace: &str) -> ObjectRef {
        ObjectRef {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            namespace: namespace.to_owned(),
            name: self.name.clone(),
            uid: self.uid.clone(),
        }
    }
}

/// What the reporter keeps of a Pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSummary {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub controller: Option<Controller>,
    pub secrets: BTreeSet<String>,
}

impl PodSummary {
    /// The summary of `pod`; `None` for a Pod without namespace, name or uid
    /// (which the API server never sends).
    pub fn of(pod: &Pod) -> Option<Self> {
        let meta = &pod.metadata;
        Some(Self {
            namespace: meta.namespace.clone()?,
            name: meta.name.clone()?,
            uid: meta.uid.clone()?,
            controller: meta.owner_references.as_deref().and_then(Controller::of),
            secrets: pod.spec.as_ref().map(secrets_consumed).unwrap_or_default(),
        })
    }

    /// The Pod as an Event's `regarding`.
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            api_version: "v1".to_owned(),
            kind: "Pod".to_owned(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
        }
    }
}

/// `(namespace, secret name)`.
type SecretKey = (String, String);

/// Pods that consume Secrets, by uid and by Secret. Fed with watch events in
/// the order the watcher produces them; a re-list (`Init` … `InitDone`)
/// replaces the contents atomically, as kube's reflector does.
#[derive(Debug, Default)]
pub struct PodIndex {
    pods: HashMap<String, PodSummary>,
    by_secret: HashMap<SecretKey, BTreeSet<String>>,
    /// Pods of a re-list in progress.
    relist: Option<HashMap<String, PodSummary>>,
    synced: bool,
}

impl PodIndex {
    /// Applies one watch event. Returns the Pods that appeared: Pods
    /// consuming a Secret that the index did not know before, once the first
    /// full list is done (Pods present at start-up are not "new": the
    /// replica checks them once when the first list is done, and the
    /// periodic re-examination of failures reaches them).
    pub fn apply(&mut self, event: Event<PodSummary>) -> Vec<PodSummary> {
        match event {
            Event::Apply(pod) => self.upsert(pod).into_iter().collect(),
            Event::Delete(pod) => {
                self.remove(&pod.uid);
                Vec::new()
            }
            Event::Init => {
                self.relist = Some(HashMap::new());
                Vec::new()
            }
            Event::InitApply(pod) => {
                let appeared = self.synced && !self.pods.contains_key(&pod.uid);
                if !pod.secrets.is_empty() {
                    self.relist
                        .get_or_insert_with(HashMap::new)
                        .insert(pod.uid.clone(), pod.clone());
                }
                if appeared && !pod.secrets.is_empty() {
                    vec![pod]
                } else {
                    Vec::new()
                }
            }
            Event::InitDone => {
                let pods = self.relist.take().unwrap_or_default();
                self.pods.clear();
                self.by_secret.clear();
                for (_, pod) in pods {
                    self.insert(pod);
                }
                self.synced = true;
                Vec::new()
            }
        }
    }

    /// True once the first full list was applied.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// Pods kept (those consuming at least one Secret).
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// True when no Pod is kept.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// The Pods consuming Secret `secret_name` in `namespace`, by name.
    pub fn consumers(&self, namespace: &str, secret_name: &str) -> Vec<PodSummary> {
        let key = (namespace.to_owned(), secret_name.to_owned());
        let mut pods: Vec<PodSummary> = self
            .by_secret
            .get(&key)
            .into_iter()
            .flatten()
            .filter_map(|uid| self.pods.get(uid).cloned())
            .collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        pods
    }

    fn upsert(&mut self, pod: PodSummary) -> Option<PodSummary> {
        let previous = self.remove(&pod.uid);
        if pod.secrets.is_empty() {
            return None;
        }
        let gained_secret = previous
            .as_ref()
            .is_none_or(|old| !pod.secrets.is_subset(&old.secrets));
        self.insert(pod.clone());
        (self.synced && gained_secret).then_some(pod)
    }

    fn insert(&mut self, pod: PodSummary) {
        for secret in &pod.secrets {
            self.by_secret
                .entry((pod.namespace.clone(), secret.clone()))
                .or_default()
                .insert(pod.uid.clone());
        }
        self.pods.insert(pod.uid.clone(), pod);
    }

    fn remove(&mut self, uid: &str) -> Option<PodSummary> {
        let pod = self.pods.remove(uid)?;
        for secret in &pod.secrets {
            let key = (pod.namespace.clone(), secret.clone());
            if let Some(uids) = self.by_secret.get_mut(&key) {
                uids.remove(uid);
                if uids.is_empty() {
                    self.by_secret.remove(&key);
                }
            }
        }
        Some(pod)
    }
}

/// The index shared between the watch that feeds it and the code that asks it.
#[derive(Clone, Debug, Default)]
pub struct SharedPodIndex(Arc<RwLock<PodIndex>>);

impl SharedPodIndex {
    /// Applies `event`; see [`PodIndex::apply`].
    pub fn apply(&self, event: Event<PodSummary>) -> Vec<PodSummary> {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .apply(event)
    }

    /// Reads the index.
    pub fn read<T>(&self, read: impl FnOnce(&PodIndex) -> T) -> T {
        read(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// What the Pod watch tells the rest of the reporter.
pub trait PodObserver: Send + Sync {
    /// `true` once the first full list was applied, and again when the
    /// watch works after an error; `false` when the watch fails.
    fn synced(&self, ok: bool);
    /// `pod` consumes Secrets and was not in the index before.
    fn appeared(&self, pod: PodSummary);
}

/// Watches Pods (in `namespace`, or all) into `index` until `shutdown`,
/// telling `observer` about sync state and Pods that appear. Watch errors
/// are retried with kube's default backoff.
pub async fn watch(
    client: Client,
    namespace: Option<&str>,
    index: SharedPodIndex,
    observer: Arc<dyn PodObserver>,
    shutdown: CancellationToken,
) {
    let api: Api<Pod> = match namespace {
        Some(namespace) => Api::namespaced(client, namespace),
        None => Api::all(client),
    };
    // Pages of 500 bound the memory of the initial list to 500 full Pods.
    let config = watcher::Config::default().page_size(500);
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    let mut healthy = false;
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => return,
            next = events.try_next() => next,
        };
        match next {
            Ok(Some(event)) => {
                if let Some(event) = summarize(event, PodSummary::of) {
                    for pod in index.apply(event) {
                        observer.appeared(pod);
                    }
                }
                if !healthy && index.read(PodIndex::is_synced) {
                    info!(pods = index.read(PodIndex::len), "Pod index synced");
                    healthy = true;
                    observer.synced(true);
                }
            }
            Ok(None) => return,
            Err(err) => {
                warn!(error = %err, "Pod watch failed; retrying");
                if healthy {
                    healthy = false;
                    observer.synced(false);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
