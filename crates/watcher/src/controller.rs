//! Observes ServiceCertificates, CertificateAuthorities and the Secrets
//! carrying certflow's managed label; writes work items to JetStream; never
//! writes to the Kubernetes API and never caches Secrets without that label.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use certflow_api::{CertificateAuthority, ServiceCertificate, labels};
use certflow_bus::{Publisher, TraceId};
use certflow_proto::v1::{SCHEMA_VERSION, WorkItem};
use certflow_runtime::{HealthHandle, kube_client};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, ResourceExt};
use rand::Rng as _;
use tokio_util::sync::CancellationToken;
use tracing::{info, instrument, warn};

use crate::Error;
use crate::decide::{Decision, Observed, decide};
use crate::metrics::Metrics;

/// How long in-flight reconciles may take after shutdown was requested.
const RECONCILE_DRAIN: Duration = Duration::from_secs(10);

/// ServiceCertificates the cache may hand the controller ahead of it; past
/// this, the cache's watch waits for the controller to catch up.
const TRIGGER_BUFFER: usize = 1024;

/// Settings of the reconcile loop.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often a refused request is looked at again when nothing visible
    /// changed.
    pub failure_retry: Duration,
    /// The largest random delay added to a renewal, so certificates issued
    /// together do not all renew in the same second.
    pub renewal_jitter: Duration,
    /// Reconciles running at once.
    pub concurrency: u16,
    /// Watch only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
}

/// An API for a namespaced kind, scoped to `namespace` when given.
fn scoped<K>(client: Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client, namespace),
        None => Api::all(client),
    }
}

/// What every reconcile shares.
#[derive(Debug)]
struct Context {
    publisher: Publisher,
    secrets: Store<Secret>,
    cas: Store<CertificateAuthority>,
    settings: Settings,
    metrics: Metrics,
    /// The last dedup id published per object, so an unchanged situation is
    /// not queued again after JetStream's de-duplication window has passed.
    published: Mutex<HashMap<String, String>>,
}

/// Runs the watches and the reconcile loop until `shutdown` fires.
pub async fn run(
    client: Client,
    publisher: Publisher,
    settings: Settings,
    metrics: Metrics,
    health: HealthHandle,
    shutdown: CancellationToken,
) {
    let namespace = settings.namespace.clone();
    let namespace = namespace.as_deref();
    let managed = watcher::Config::default().labels(labels::MANAGED_SELECTOR);
    let (secrets, secret_writer) = reflector::store();
    let secret_cache = watcher(scoped::<Secret>(client.clone(), namespace), managed.clone())
        .default_backoff()
        .modify(forget_managed_fields)
        .reflect(secret_writer)
        .for_each(|_| async {});
    let (cas, ca_writer) = reflector::store();
    let ca_cache = watcher(
        Api::<CertificateAuthority>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(ca_writer)
    .for_each(|_| async {});
    tokio::spawn(secret_cache);
    tokio::spawn(ca_cache);
    let _ = secrets.wait_until_ready().await;
    let _ = cas.wait_until_ready().await;
    tokio::spawn(kube_client::report_reachability(
        client.clone(),
        health,
        shutdown.clone(),
    ));

    // The controller's own cache, without managedFields: at 10,000
    // ServiceCertificates they are about 40 % of its size.
    //
    // Its trigger is the cache's subscription, not `applied_objects()`. On a
    // re-list (after the API server expired the watch), `applied_objects()`
    // yields each listed object before the reflector swaps the whole list
    // into the store; kube's Controller then drops an object it cannot find
    // in the store ("not found in local store") and never comes back to it,
    // so a ServiceCertificate created during the watch gap got no work item
    // (found by the chaos test, seed 1). The subscription yields live
    // changes and, once a (re-)list is complete, every stored object.
    let (store, scert_writer) = reflector::store_shared(TRIGGER_BUFFER);
    let triggers = scert_writer
        .subscribe()
        .expect("a shared store can be subscribed to");
    let scert_cache = watcher(
        scoped::<ServiceCertificate>(client.clone(), namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(forget_managed_fields)
    .reflect_shared(scert_writer)
    .for_each(|event| async move {
        if let Err(err) = event {
            warn!(error = %err, "ServiceCertificate watch failed; retrying with backoff");
        }
    });
    tokio::spawn(scert_cache);
    let controller = Controller::for_shared_stream(triggers, store.clone()).with_config(
        kube::runtime::controller::Config::default().concurrency(settings.concurrency),
    );
    let context = Arc::new(Context {
        publisher,
        secrets,
        cas,
        settings,
        metrics,
        published: Mutex::default(),
    });
    // A second watch of managed Secrets (and of CAs) next to the caches':
    // kube-runtime 5's shared reflector (`store_shared` + `subscribe`)
    // would save it, but dispatches applies only, never deletes, and a
    // deleted Secret must trigger its ServiceCertificate at once.
    let reconciling = controller
        .watches(
            scoped::<Secret>(client.clone(), namespace),
            managed,
            |secret| {
                let name = secret
                    .annotations()
                    .get(labels::SERVICE_CERTIFICATE)?
                    .clone();
                Some(ObjectRef::new(&name).within(&secret.namespace()?))
            },
        )
        .watches(
            Api::<CertificateAuthority>::all(client),
            watcher::Config::default(),
            move |ca| {
                let name = ca.name_any();
                let is_default = ca.spec.is_default();
                store
                    .state()
                    .into_iter()
                    .filter(|scert| match scert.spec.issuer_name() {
                        Some(issuer) => issuer == name,
                        None => is_default,
                    })
                    .map(|scert| ObjectRef::from_obj(scert.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on({
            let shutdown = shutdown.clone();
            async move { shutdown.cancelled().await }
        })
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(err) = result {
                warn!(error = %err, "reconcile failed");
            }
        });
    // kube's Controller finishes only after its cache has been filled once:
    // a shutdown before the first listing completed would wait forever. A
    // reconcile is one publish, so in-flight ones get a bounded drain.
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(RECONCILE_DRAIN).await;
    };
    tokio::select! {
        () = reconciling => {}
        () = deadline => warn!(drain = ?RECONCILE_DRAIN, "stopping without waiting further for the controller"),
    }
    info!("watcher stopped");
}

/// Drops what no decision reads and every cached object carries: the
/// field managers' records (`metadata.managedFields`), often the largest
/// part of an object's metadata.
fn forget_managed_fields<K: ResourceExt>(object: &mut K) {
    object.managed_fields_mut().clear();
}

#[instrument(skip_all, fields(namespace = scert.namespace().unwrap_or_default(), name = %scert.name_any()))]
async fn reconcile(scert: Arc<ServiceCertificate>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = scert.namespace().unwrap_or_default();
    let secret = ctx
        .secrets
        .get(&ObjectRef::new(&scert.spec.secret_name).within(&namespace));
    let issuer = match scert.spec.issuer_name() {
        Some(name) => ctx.cas.get(&ObjectRef::new(name)),
        None => ctx.cas.state().into_iter().find(|ca| ca.spec.is_default()),
    };
    let now = SystemTime::now();
    let observed = Observed {
        secret: secret.as_deref(),
        issuer: issuer.as_deref(),
        now,
        failure_retry: ctx.settings.failure_retry,
    };
    match decide(&scert, observed) {
        Decision::Publish {
            trigger,
            dedup_id,
            detail,
        } => {
            let uid = scert.uid().unwrap_or_default();
            let already = ctx.lock().get(&uid) == Some(&dedup_id);
            if !already {
                let item = WorkItem {
                    schema_version: SCHEMA_VERSION,
                    namespace,
                    name: scert.name_any(),
                    uid: uid.clone(),
                    generation: scert.metadata.generation.unwrap_or_default(),
                    trigger: trigger.into(),
                    detail,
                    requested_at: Some(prost_types::Timestamp::from(now)),
                    dedup_id: dedup_id.clone(),
                };
                let trace = TraceId::generate();
                let receipt = ctx.publisher.publish_work(&item, &trace).await?;
                ctx.metrics
                    .published(trigger.as_str_name(), receipt.duplicate);
                info!(trigger = trigger.as_str_name(), %dedup_id, duplicate = receipt.duplicate, trace_id = %trace, "work item published");
                ctx.lock().insert(uid, dedup_id);
            }
            // The signer's writes bring the object back here; this is a
            // safety net should they never come.
            Ok(Action::requeue(ctx.settings.failure_retry))
        }
        Decision::WaitUntil(renewal) => {
            let wait = renewal.duration_since(now).unwrap_or_default()
                + jitter(ctx.settings.renewal_jitter);
            Ok(Action::requeue(wait))
        }
        Decision::Idle => Ok(Action::await_change()),
    }
}

fn error_policy(_scert: Arc<ServiceCertificate>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_error(error.kind());
    Action::requeue(Duration::from_secs(2) + jitter(Duration::from_secs(3)))
}

fn jitter(max: Duration) -> Duration {
    let millis = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    if millis == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(rand::rng().random_range(0..millis))
}

impl Context {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.published
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
