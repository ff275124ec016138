//! Observes ServiceCertificates, CertificateAuthorities and the Secrets
//! carrying certflow's managed label; writes work items to JetStream (never
//! creating a stream: when the work stream is gone it reports so and keeps
//! the item for retry until the setup step creates the stream again); never
//! writes to the Kubernetes API and never caches Secrets without that label.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use certflow_api::{CertificateAuthority, ServiceCertificate, labels};
use certflow_bus::{PublishReceipt, Publisher, Topology, TraceId};
use certflow_proto::v1::{SCHEMA_VERSION, Trigger, WorkItem};
use certflow_runtime::{HealthHandle, kube_client};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::ResetTimerBackoff;
use kube::runtime::watcher::ExponentialBackoff;
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, instrument, warn};

use crate::Error;
use crate::decide::{Decision, Observed, decide, issuer_version};
use crate::expiry::ExpiryCollector;
use crate::fairness::{self, Admission, Cap};
use crate::ledger::{Key, Ledger};
use crate::metrics::Metrics;
use crate::retry::{Class, jitter};
use crate::schedule::{Publication, Schedule, Step};

/// How long in-flight reconciles may take after shutdown was requested.
const RECONCILE_DRAIN: Duration = Duration::from_secs(10);

/// ServiceCertificates the cache may hand the controller ahead of it; past
/// this, the cache's watch waits for the controller to catch up.
const TRIGGER_BUFFER: usize = 1024;

/// How often the watcher warns that the work stream is missing, however
/// many reconciles find it so (each is counted in
/// `certflow_watcher_work_stream_missing_total`).
const MISSING_WARNING_INTERVAL: Duration = Duration::from_secs(30);

/// How the watches reconnect after an error: from 0.8 s, doubling up to
/// [`WATCH_BACKOFF_MAX`], with up to as much again at random, reset after
/// two minutes without error.
fn watch_backoff() -> ResetTimerBackoff<ExponentialBackoff> {
    let exponential = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(800))
        .with_max_delay(WATCH_BACKOFF_MAX)
        .with_factor(2.0)
        .without_max_times()
        .with_jitter();
    ResetTimerBackoff::new(exponential.into(), Duration::from_secs(120))
}

/// The longest wait before a watch reconnects, before jitter. kube's
/// default (client-go's) is 30 s, so after an API-server outage of a
/// minute or more the caches lag by up to a minute: an issued certificate
/// whose Secret the cache has not seen yet looks unissued, its
/// namespace's `--namespace-in-flight` slots stay taken, and its held work
/// waits. The watcher is one replica with five watches, so reconnecting
/// sooner costs the API server little.
const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// When a held decision is looked at again if no slot freed for it before.
/// A held object is woken when its turn comes; this only bounds the wait
/// should a wake-up be missed, and is long enough that a thousand held
/// objects cost a few reconciles a second.
const HELD_RECHECK: Duration = Duration::from_secs(60);

/// Settings of the reconcile loop.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often a refused request is looked at again when nothing visible
    /// changed.
    pub failure_retry: Duration,
    /// How long a decision may still hold after its work item was
    /// published before it is published again (then doubling, see
    /// [`crate::schedule`]).
    pub republish_after: Duration,
    /// The largest random delay added to a renewal, so certificates issued
    /// together do not all renew in the same second.
    pub renewal_jitter: Duration,
    /// Reconciles running at once.
    pub concurrency: u16,
    /// `--namespace-in-flight`: objects of one namespace that may have work
    /// published and not yet seen done ([`crate::fairness`]).
    pub namespace_in_flight: Cap,
    /// Watch only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
}

impl Settings {
    /// The timing of republications and error retries these settings ask for.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            republish_after: self.republish_after,
            failure_retry: self.failure_retry,
        }
    }
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
    scerts: Store<ServiceCertificate>,
    secrets: Store<Secret>,
    cas: Store<CertificateAuthority>,
    settings: Settings,
    schedule: Schedule,
    metrics: Metrics,
    /// Per object, the last publication of a decision not yet seen carried
    /// out (so an unchanged decision is not queued again on every watch
    /// event, only when overdue) and its error streak.
    ledger: Ledger,
    /// When the watcher last warned that the work stream is missing.
    missing_warned: std::sync::Mutex<Option<Instant>>,
}

/// Runs the watches and the reconcile loop until `shutdown` fires. Work
/// items go to the streams of `topology` through `js`; `exporter` gets the
/// expiry metrics computed from the caches ([`ExpiryCollector`]).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    client: Client,
    js: async_nats::jetstream::Context,
    topology: Topology,
    settings: Settings,
    metrics: Metrics,
    exporter: &certflow_runtime::Metrics,
    health: HealthHandle,
    shutdown: CancellationToken,
) {
    let namespace = settings.namespace.clone();
    let namespace = namespace.as_deref();
    let managed = watcher::Config::default().labels(labels::MANAGED_SELECTOR);
    // The controller's own cache of ServiceCertificates (see below); the
    // CA cache's triggers look up who names a CA in it.
    let (store, scert_writer) = reflector::store_shared(TRIGGER_BUFFER);
    // A change to a managed Secret or a CA reconciles the ServiceCertificates
    // it concerns, triggered from the cache's own stream, after the cache
    // took the change in: a reconcile never reads the cache from before the
    // change that triggered it. (A separate trigger watch could deliver the
    // event first; the reconcile then decided on the old CA and nothing
    // looked again until the CA's next change.) Deletions trigger too.
    let (related, related_changes) = futures::channel::mpsc::unbounded();
    let (secrets, secret_writer) = reflector::store();
    let secret_cache = watcher(scoped::<Secret>(client.clone(), namespace), managed)
        .backoff(watch_backoff())
        .modify(forget_managed_fields)
        .reflect(secret_writer)
        .for_each({
            let related = related.clone();
            move |event| {
                if let Some(secret) = event.as_ref().ok().and_then(changed) {
                    trigger(&related, certificate_of(secret));
                }
                async {}
            }
        });
    let (cas, ca_writer) = reflector::store();
    let ca_cache = watcher(
        Api::<CertificateAuthority>::all(client.clone()),
        watcher::Config::default(),
    )
    .backoff(watch_backoff())
    .reflect(ca_writer)
    .for_each({
        let store = store.clone();
        move |event| {
            if let Some(ca) = event.as_ref().ok().and_then(changed) {
                trigger(&related, certificates_naming(ca, &store));
            }
            async {}
        }
    });
    tokio::spawn(secret_cache);
    tokio::spawn(ca_cache);
    let _ = secrets.wait_until_ready().await;
    let _ = cas.wait_until_ready().await;
    tokio::spawn(kube_client::report_reachability(
        client.clone(),
        health,
        shutdown.clone(),
    ));

    // The controller's own cache (`store`, above), without managedFields: at
    // 10,000 ServiceCertificates they are about 40 % of its size.
    //
    // Its trigger is the cache's subscription, not `applied_objects()`. On a
    // re-list (after the API server expired the watch), `applied_objects()`
    // yields each listed object before the reflector swaps the whole list
    // into the store; kube's Controller then drops an object it cannot find
    // in the store ("not found in local store") and never comes back to it,
    // so a ServiceCertificate created during the watch gap got no work item
    // (found by the chaos test, seed 1). The subscription yields live
    // changes and, once a (re-)list is complete, every stored object.
    let triggers = scert_writer
        .subscribe()
        .expect("a shared store can be subscribed to");
    // Held objects come back through this channel when a slot of their
    // namespace is set aside for them.
    let (wake, woken) = futures::channel::mpsc::unbounded();
    let ledger = Ledger::new(metrics.clone()).with_cap(settings.namespace_in_flight, wake);
    let scert_cache = watcher(
        scoped::<ServiceCertificate>(client.clone(), namespace),
        watcher::Config::default(),
    )
    .backoff(watch_backoff())
    .modify(forget_managed_fields)
    .reflect_shared(scert_writer)
    .for_each({
        let (ledger, store) = (ledger.clone(), store.clone());
        move |event| {
            forget_deleted(&ledger, &store, event);
            async {}
        }
    });
    tokio::spawn(scert_cache);
    exporter.register_object_collector(ExpiryCollector::new(store.clone(), cas.clone()));
    let controller = Controller::for_shared_stream(triggers, store.clone())
        .with_config(kube::runtime::controller::Config::default().concurrency(settings.concurrency))
        .reconcile_on(woken)
        .reconcile_on(related_changes)
        .trigger_backoff(watch_backoff());
    let context = Arc::new(Context {
        publisher: Publisher::new(js, topology),
        scerts: store.clone(),
        secrets,
        cas,
        schedule: settings.schedule(),
        settings,
        metrics,
        ledger,
        missing_warned: std::sync::Mutex::default(),
    });
    let reconciling = controller
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

/// Keeps the ledger (publications, slots, held places, backoff state) to
/// existing objects: a deleted ServiceCertificate is forgotten at once, and
/// after each (re-)list of the cache, which has just replaced its contents,
/// so is every uid it no longer has (deleted while the watch was down, or
/// its name now held by an object with another uid).
fn forget_deleted(
    ledger: &Ledger,
    store: &Store<ServiceCertificate>,
    event: Result<watcher::Event<ServiceCertificate>, watcher::Error>,
) {
    match event {
        Ok(watcher::Event::Delete(scert)) => {
            if let Some(uid) = scert.uid() {
                ledger.forget(&uid);
            }
        }
        Ok(watcher::Event::InitDone) => {
            let existing: HashSet<String> = store
                .state()
                .iter()
                .filter_map(|scert| scert.uid())
                .collect();
            ledger.retain(|uid| existing.contains(uid));
        }
        Ok(_) => {}
        Err(err) => {
            warn!(error = %err, "ServiceCertificate watch failed; retrying with backoff");
        }
    }
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
    let uid = scert.uid().unwrap_or_default();
    let name = scert.name_any();
    let key = Key {
        uid: &uid,
        namespace: &namespace,
        name: &name,
    };
    match decide(&scert, observed) {
        Decision::Publish {
            trigger,
            dedup_id,
            detail,
        } => {
            let last = ctx.ledger.last_publication(&uid);
            let due = match ctx.schedule.step(last.as_ref(), trigger, &dedup_id, now) {
                // The signer's writes bring the object back here before
                // then, unless the work item was lost.
                Step::WaitUntil(due) => {
                    ctx.ledger.succeeded(&uid);
                    due
                }
                Step::Publish {
                    message_id,
                    attempt,
                } => {
                    let takes_slot = fairness::takes_slot(trigger);
                    if ctx.ledger.admit(key, takes_slot) == Admission::Hold {
                        ctx.ledger.succeeded(&uid);
                        debug!(
                            trigger = trigger.as_str_name(),
                            "held: the namespace has --namespace-in-flight objects in flight"
                        );
                        return Ok(Action::requeue(HELD_RECHECK + jitter(HELD_RECHECK / 4)));
                    }
                    let item = WorkItem {
                        schema_version: SCHEMA_VERSION,
                        namespace: namespace.clone(),
                        name: name.clone(),
                        uid: uid.clone(),
                        generation: scert.metadata.generation.unwrap_or_default(),
                        trigger: trigger.into(),
                        detail: republished_detail(detail, attempt),
                        requested_at: Some(prost_types::Timestamp::from(now)),
                        dedup_id: message_id,
                    };
                    if let Err(err) = ctx.publish(&item, trigger, attempt).await {
                        ctx.ledger.not_published(key);
                        return Err(err);
                    }
                    let publication = Publication {
                        dedup_id,
                        attempt,
                        at: SystemTime::now(),
                        issuer_version: issuer_version(issuer.as_deref()),
                    };
                    let due = ctx.schedule.due(&publication, trigger);
                    ctx.ledger.published(key, publication, takes_slot);
                    ctx.forget_if_deleted(&scert, &uid);
                    due
                }
            };
            Ok(Action::requeue(
                due.duration_since(SystemTime::now()).unwrap_or_default(),
            ))
        }
        Decision::WaitUntil(renewal) => {
            ctx.ledger.forget(&uid);
            let wait = renewal.duration_since(now).unwrap_or_default()
                + jitter(ctx.settings.renewal_jitter);
            Ok(Action::requeue(wait))
        }
        Decision::Idle => {
            ctx.ledger.forget(&uid);
            Ok(Action::await_change())
        }
    }
}

/// The object a cache's watch event applied, listed or deleted.
fn changed<K>(event: &watcher::Event<K>) -> Option<&K> {
    match event {
        watcher::Event::Apply(object)
        | watcher::Event::InitApply(object)
        | watcher::Event::Delete(object) => Some(object),
        watcher::Event::Init | watcher::Event::InitDone => None,
    }
}

/// Asks for a reconcile of each of `certificates`. The receiver lives as
/// long as the controller; after it stopped, there is nothing to ask.
fn trigger(
    related: &futures::channel::mpsc::UnboundedSender<ObjectRef<ServiceCertificate>>,
    certificates: impl IntoIterator<Item = ObjectRef<ServiceCertificate>>,
) {
    for certificate in certificates {
        let _ = related.unbounded_send(certificate);
    }
}

/// The ServiceCertificate a managed Secret was issued for.
fn certificate_of(secret: &Secret) -> Option<ObjectRef<ServiceCertificate>> {
    let name = secret.annotations().get(labels::SERVICE_CERTIFICATE)?;
    Some(ObjectRef::new(name).within(&secret.namespace()?))
}

/// The ServiceCertificates that name `ca`, or leave the issuer out while it
/// is the default.
fn certificates_naming(
    ca: &CertificateAuthority,
    store: &Store<ServiceCertificate>,
) -> Vec<ObjectRef<ServiceCertificate>> {
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
        .collect()
}

/// The work item's detail, saying so when it is a republication.
fn republished_detail(detail: String, attempt: u32) -> String {
    if attempt == 0 {
        detail
    } else {
        format!(
            "{detail} (published again, attempt {attempt}: nothing changed since the last work item)"
        )
    }
}

/// The error's variant decides ([`crate::retry`]): a transient error
/// backs off exponentially per object, from 1 s up to 30 s (each with up to
/// as much again at random), until a reconcile of the object ends without
/// error; a permanent one waits `--failure-retry` (plus up to a quarter),
/// is logged as an error and counts the object as stalled
/// (`certflow_watcher_decisions_stalled`) until then. Either way the
/// object's backoff state lives in the ledger and goes with the object.
fn error_policy(scert: Arc<ServiceCertificate>, error: &Error, ctx: Arc<Context>) -> Action {
    let class = Class::of(error);
    ctx.metrics
        .reconcile_error(error.kind(), class.is_transient());
    let uid = scert.uid().unwrap_or_default();
    let (namespace, name) = (scert.namespace().unwrap_or_default(), scert.name_any());
    let key = Key {
        uid: &uid,
        namespace: &namespace,
        name: &name,
    };
    let retry = ctx.ledger.failed(key, class, ctx.settings.failure_retry);
    ctx.forget_if_deleted(&scert, &uid);
    match class {
        Class::Transient => debug!(
            %namespace, %name, error = %error, failures = retry.failures, retry_in = ?retry.after,
            "reconcile failed; backing off"
        ),
        Class::Permanent => error!(
            %namespace, %name, error = %error, failures = retry.failures, retry_in = ?retry.after,
            "reconcile failed in a way retrying is not expected to fix: an operator must \
             change something (see the error); the ServiceCertificate waits --failure-retry"
        ),
    }
    Action::requeue(retry.after)
}

impl Context {
    /// Publishes `item`, attempt `attempt` of its decision. Finding the work
    /// stream missing (NATS came back without its storage, or the stream
    /// was deleted) is reported ([`Context::report_missing_stream`]) and
    /// returned as the transient error it is: the reconcile backs off and
    /// publishes again ([`crate::retry`]), until the setup step has created
    /// the stream again. The watcher does not create it: its NATS user may
    /// not.
    async fn publish(
        &self,
        item: &WorkItem,
        trigger: Trigger,
        attempt: u32,
    ) -> Result<PublishReceipt, Error> {
        // A decision starts a trace: the reconcile's, when spans are exported.
        let trace = TraceId::current_or_generate();
        let receipt = match self.publisher.publish_work(item, &trace).await {
            Err(err) if err.is_stream_missing() => {
                self.report_missing_stream();
                return Err(err.into());
            }
            result => result?,
        };
        let trigger = trigger.as_str_name();
        let dedup_id = &item.dedup_id;
        self.metrics.published(trigger, receipt.duplicate);
        if attempt == 0 {
            info!(trigger, %dedup_id, duplicate = receipt.duplicate, trace_id = %trace, "work item published");
        } else {
            self.metrics.republished(trigger);
            warn!(trigger, %dedup_id, attempt, duplicate = receipt.duplicate, trace_id = %trace, "work item published again: nothing changed since the last one, which may have been lost");
        }
        Ok(receipt)
    }

    /// Counts a publication that found the work stream missing, and warns
    /// at most once per [`MISSING_WARNING_INTERVAL`] however many
    /// reconciles find it so.
    fn report_missing_stream(&self) {
        self.metrics.work_stream_missing();
        let mut warned = self
            .missing_warned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if warned.is_some_and(|at| at.elapsed() < MISSING_WARNING_INTERVAL) {
            return;
        }
        *warned = Some(Instant::now());
        warn!(
            stream = %self.publisher.topology().work_stream(),
            setup = certflow_bus::SETUP_COMMAND,
            "the work stream is missing: work items wait in the watcher and are published \
             again with backoff once the setup step has created it; run the setup step"
        );
    }

    /// Forgets `uid` if its object is gone from the cache: deleted while a
    /// reconcile ran, after the watch forgot it, nothing else would.
    fn forget_if_deleted(&self, scert: &ServiceCertificate, uid: &str) {
        let cached = self.scerts.get(&ObjectRef::from_obj(scert));
        if cached.and_then(|scert| scert.uid()).as_deref() != Some(uid) {
            self.ledger.forget(uid);
        }
    }
}
