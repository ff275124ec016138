//! Observes ReplicaSets (reading their metadata, cached by uid); writes
//! nothing; finds the workload an app owner would `kubectl describe` for a
//! Pod: Pod → ReplicaSet → Deployment, and StatefulSet, DaemonSet, Job (or
//! any other controller) directly from the Pod's controller reference.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Api, Client};

use crate::Error;
use crate::events::ObjectRef;
use crate::pods::{Controller, PodSummary};

/// ReplicaSets remembered; the cache is emptied when it grows past this.
const MAX_CACHED: usize = 10_000;

/// The first step from a Pod to its workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The Pod's controller is the workload.
    Workload(ObjectRef),
    /// The Pod's controller is a ReplicaSet, whose own controller (usually
    /// a Deployment) must be read.
    ReplicaSet(Controller),
}

/// Where to look for `pod`'s workload; `None` for a Pod without controller.
pub fn first_step(pod: &PodSummary) -> Option<Step> {
    let controller = pod.controller.as_ref()?;
    let is_replica_set =
        controller.kind == "ReplicaSet" && controller.api_version.split('/').next() == Some("apps");
    Some(if is_replica_set {
        Step::ReplicaSet(controller.clone())
    } else {
        Step::Workload(controller.object_ref(&pod.namespace))
    })
}

/// The workload of a ReplicaSet in `namespace` whose owners are `owners`:
/// its controlling Deployment, or the ReplicaSet itself when it has none.
pub fn replica_set_workload(
    replica_set: &Controller,
    namespace: &str,
    owners: &[OwnerReference],
) -> ObjectRef {
    match Controller::of(owners) {
        Some(deployment) if deployment.kind == "Deployment" => deployment.object_ref(namespace),
        _ => replica_set.object_ref(namespace),
    }
}

/// Looks up workloads, remembering each ReplicaSet's.
pub struct Owners {
    client: Client,
    replica_sets: Mutex<HashMap<String, ObjectRef>>,
}

impl std::fmt::Debug for Owners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Owners")
            .field("replica_sets", &self.cache().len())
            .finish_non_exhaustive()
    }
}

impl Owners {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            replica_sets: Mutex::new(HashMap::new()),
        }
    }

    /// The workload owning `pod`, if any. A ReplicaSet's controller is set
    /// when it is created and practically never changes, so it is read once
    /// per ReplicaSet.
    pub async fn workload(&self, pod: &PodSummary) -> Result<Option<ObjectRef>, Error> {
        let replica_set = match first_step(pod) {
            None => return Ok(None),
            Some(Step::Workload(workload)) => return Ok(Some(workload)),
            Some(Step::ReplicaSet(replica_set)) => replica_set,
        };
        if let Some(cached) = self.cache().get(&replica_set.uid) {
            return Ok(Some(cached.clone()));
        }
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &pod.namespace);
        let Some(meta) = api
            .get_metadata_opt(&replica_set.name)
            .await
            .map_err(Error::kube("reading a ReplicaSet"))?
        else {
            return Ok(None);
        };
        if meta.metadata.uid.as_deref() != Some(replica_set.uid.as_str()) {
            // A newer ReplicaSet of the same name: the Pod is being deleted.
            return Ok(None);
        }
        let owners = meta.metadata.owner_references.unwrap_or_default();
        let workload = replica_set_workload(&replica_set, &pod.namespace, &owners);
        let mut cache = self.cache();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(replica_set.uid.clone(), workload.clone());
        Ok(Some(workload))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, ObjectRef>> {
        self.replica_sets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn controller(api_version: &str, kind: &str, name: &str) -> Controller {
        Controller {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            uid: format!("{name}-uid"),
        }
    }

    fn pod(controller: Option<Controller>) -> PodSummary {
        PodSummary {
            namespace: "shop".into(),
            name: "web-0".into(),
            uid: "p1".into(),
            controller,
            secrets: BTreeSet::new(),
        }
    }

    #[test]
    fn workloads_are_found_from_the_pod_controller() {
        let cases = [
            (controller("apps/v1", "StatefulSet", "db"), "StatefulSet"),
            (controller("apps/v1", "DaemonSet", "agent"), "DaemonSet"),
            (controller("batch/v1", "Job", "migrate"), "Job"),
            (controller("example.com/v1", "Custom", "thing"), "Custom"),
        ];
        for (owner, kind) in cases {
            let step = first_step(&pod(Some(owner.clone())));
            match step {
                Some(Step::Workload(workload)) => {
                    assert_eq!(workload.kind, kind);
                    assert_eq!(workload.name, owner.name);
                    assert_eq!(workload.uid, owner.uid);
                    assert_eq!(workload.namespace, "shop");
                    assert_eq!(workload.api_version, owner.api_version);
                }
                other => panic!("{kind}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_replica_set_is_followed_to_its_deployment() {
        let replica_set = controller("apps/v1", "ReplicaSet", "web-7d9");
        assert_eq!(
            first_step(&pod(Some(replica_set.clone()))),
            Some(Step::ReplicaSet(replica_set.clone()))
        );
        let owners: Vec<OwnerReference> = serde_json::from_value(serde_json::json!([
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d1", "controller": true}
        ]))
        .unwrap_or_default();
        let workload = replica_set_workload(&replica_set, "shop", &owners);
        assert_eq!(workload.kind, "Deployment");
        assert_eq!(workload.name, "web");
        assert_eq!(workload.uid, "d1");
    }

    #[test]
    fn a_bare_replica_set_is_the_workload() {
        let replica_set = controller("apps/v1", "ReplicaSet", "web-7d9");
        let workload = replica_set_workload(&replica_set, "shop", &[]);
        assert_eq!(workload.kind, "ReplicaSet");
        assert_eq!(workload.name, "web-7d9");
    }

    #[test]
    fn a_pod_without_controller_has_no_workload() {
        assert_eq!(first_step(&pod(None)), None);
    }
}
