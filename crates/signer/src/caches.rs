//! Observes ServiceCertificates through a watch (every namespace, or the one
//! `--watch-namespace` names) into a cache the handler reads instead of
//! GETting each work item's object; writes nothing; never caches Secrets.
//!
//! # Why reading from a cache is safe here
//!
//! A watch cache lags the API server by the time an event takes to arrive,
//! and the handler treats it as a hint that may be stale, never as proof:
//!
//! - **An object missing from the cache is never taken for deleted.** The
//!   watcher publishes a work item once its own watch saw the object, which
//!   may be before this one did. A miss, a different uid (a deleted and
//!   re-created object, either way round) or a generation older than the
//!   item's falls back to a GET, and only that GET's 404 skips the item as
//!   deleted ([`Lookup`]). A cached generation newer than the item's is
//!   proof enough that the item is stale: a cache only moves forward.
//! - **No Secret decision rests on it.** Secrets are not cached at all (see
//!   below); what the Secret holds comes from a GET or from the answer to a
//!   create-only write. The cached status only says whether a Secret is
//!   expected: a ServiceCertificate whose status names no serial number
//!   never had a certificate written, so the handler skips the Secret GET
//!   and creates the Secret directly. Create fails with 409 if any Secret of
//!   that name exists (certflow's from an earlier life of the object, or
//!   someone else's), and only then is it read and planned as before, so a
//!   stale status costs one request and never overwrites anything.
//! - **Status is written as before.** The status merge patch never carried
//!   a precondition; with the cached object the window in which another
//!   writer's change can be overwritten widens from one round trip to the
//!   watch lag. What the signer writes there is recomputed on every work
//!   item, and the watcher publishes again (resync) for anything left not
//!   Ready, so a lost status write heals itself.
//!
//! # Why Secrets are not cached
//!
//! A Secret watch needs `list` and `watch` on Secrets in every application
//! namespace: RBAC cannot limit either to labelled Secrets (a label
//! selector is the client's filter, not a permission), and "the signer never
//! lists application Secrets" is one of the RBAC rules the deployment test
//! checks. A cache of certflow's Secrets would also keep every issued
//! private key in the signer's memory for as long as it runs: `plan` checks
//! that `tls.key` matches `tls.crt` and reuses it under
//! `rotationPolicy: Never`, so the key could not be stripped from the cached
//! copy. The create-first path above gives a first issuance the same two
//! requests a Secret cache would; a renewal or spec change still reads the
//! Secret it replaces once.

use std::future::Future;
use std::sync::Arc;

use certflow_api::ServiceCertificate;
use futures::StreamExt as _;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, ResourceExt as _};
use tracing::warn;

/// The ServiceCertificates this replica's watch has seen.
#[derive(Clone)]
pub struct Caches {
    scerts: Store<ServiceCertificate>,
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches")
            .field("service_certificates", &self.scerts.len())
            .finish()
    }
}

/// What the cache says about a work item's ServiceCertificate.
#[derive(Debug, PartialEq)]
pub enum Lookup {
    /// The cached object is the item's (same uid) at its generation or a
    /// later one: usable without a read.
    Fresh(Arc<ServiceCertificate>),
    /// The cache cannot answer: the object must be read. Carries why, for
    /// the metric.
    Read(&'static str),
}

impl Caches {
    /// Starts the watch; the returned future drives it and must be spawned.
    /// `namespace`: watch only this one (items from other namespaces then
    /// always read).
    pub fn new(
        client: Client,
        namespace: Option<&str>,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (scerts, writer) = reflector::store();
        let api: Api<ServiceCertificate> = match namespace {
            Some(namespace) => Api::namespaced(client, namespace),
            None => Api::all(client),
        };
        let drive = watcher(api, watcher::Config::default())
            .default_backoff()
            // managedFields are about 40 % of a ServiceCertificate's size
            // and nothing here reads them.
            .modify(|scert| scert.managed_fields_mut().clear())
            .reflect(writer)
            .for_each(|event| async move {
                if let Err(err) = event {
                    warn!(error = %err, "ServiceCertificate watch interrupted; work items read the API until it is back");
                }
            });
        (Self { scerts }, drive)
    }

    /// A cache that has seen nothing (every lookup reads).
    #[cfg(test)]
    fn empty() -> Self {
        let (scerts, _writer) = reflector::store();
        Self { scerts }
    }

    /// A cache holding `objects`.
    #[cfg(test)]
    fn holding(objects: impl IntoIterator<Item = ServiceCertificate>) -> Self {
        let (scerts, mut writer) = reflector::store();
        for object in objects {
            writer.apply_watcher_event(&watcher::Event::Apply(object));
        }
        Self { scerts }
    }

    /// The cached ServiceCertificate `namespace/name` if it can stand in
    /// for a read for a work item about `uid` at `generation`.
    pub fn service_certificate(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        generation: i64,
    ) -> Lookup {
        let Some(cached) = self.scerts.get(&ObjectRef::new(name).within(namespace)) else {
            return Lookup::Read("not_cached");
        };
        if cached.uid().as_deref() != Some(uid) {
            // Either the item or the cache may be about the older object.
            return Lookup::Read("uid_differs");
        }
        if cached.metadata.generation.unwrap_or_default() < generation {
            return Lookup::Read("generation_behind");
        }
        Lookup::Fresh(cached)
    }
}

#[cfg(test)]
mod tests {
    use certflow_api::ServiceCertificateSpec;

    use super::*;

    fn scert(uid: &str, generation: i64) -> ServiceCertificate {
        let mut scert = ServiceCertificate::new(
            "web",
            ServiceCertificateSpec {
                secret_name: "web-tls".into(),
                dns_names: vec!["web.shop.svc".into()],
                ..ServiceCertificateSpec::default()
            },
        );
        scert.metadata.namespace = Some("shop".into());
        scert.metadata.uid = Some(uid.into());
        scert.metadata.generation = Some(generation);
        scert
    }

    #[test]
    fn a_cached_object_at_the_items_generation_or_later_needs_no_read() {
        let caches = Caches::holding([scert("u1", 3)]);
        for generation in [1, 3] {
            let Lookup::Fresh(found) = caches.service_certificate("shop", "web", "u1", generation)
            else {
                panic!("generation {generation} should be answered from the cache");
            };
            assert_eq!(found.metadata.generation, Some(3));
        }
    }

    #[test]
    fn a_miss_another_uid_or_an_older_generation_is_read_never_taken_for_deleted() {
        let caches = Caches::holding([scert("u1", 3)]);
        let cases = [
            (("shop", "other", "u1", 1), "not_cached"),
            (("elsewhere", "web", "u1", 1), "not_cached"),
            (("shop", "web", "u2", 1), "uid_differs"),
            (("shop", "web", "u1", 4), "generation_behind"),
        ];
        for ((namespace, name, uid, generation), why) in cases {
            assert_eq!(
                caches.service_certificate(namespace, name, uid, generation),
                Lookup::Read(why),
                "{namespace}/{name} uid {uid} generation {generation}"
            );
        }
        assert_eq!(
            Caches::empty().service_certificate("shop", "web", "u1", 1),
            Lookup::Read("not_cached")
        );
    }
}
