//! The CertificateAuthority controller. Observes CertificateAuthorities
//! (cluster-scoped) and the Secrets of the control-plane namespace; writes
//! the CA key pair Secrets it generates (create-only), every
//! CertificateAuthority's status, and the in-memory [`Snapshot`] that
//! [`super::Authorities::resolve`] reads; never reads or writes Secrets in
//! any other namespace, and never overwrites or deletes a CA Secret.
//!
//! It is a kube-runtime `Controller` on CertificateAuthority, so one CA is
//! never looked at twice at once in a process, and each look is scheduled
//! again for the next moment the clock changes its status. A look is
//! triggered by the CA's own events, by its key pair Secret's events
//! (deletions included), and by the first work item naming it.
//!
//! Which CAs it decides about: several certflow installations (or test
//! runs) may share a cluster's cluster-scoped CAs, each with its own
//! control-plane namespace, and only the one holding a key pair may say it
//! is missing or generate one. So a CA is this installation's when its key
//! pair Secret is in this namespace, when this process loaded its key pair
//! before, or when one of this installation's work items named it. Every
//! other CA gets at most the status every installation agrees on
//! ([`state::unclaimed_status`]), never one that undoes another's.
//! `docs/design/20261203-ca-controller.md` has the reasons.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use certflow_api::labels;
use certflow_api::secret::{TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY, TLS_SECRET_TYPE};
use certflow_api::{CertificateAuthority, CertificateAuthorityStatus};
use certflow_pki::Authority;
use futures::StreamExt as _;
use futures::channel::mpsc;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, ResourceExt as _};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, instrument, warn};

use super::state::{self, CaState, KeyPair, Observation, Trust, ca_state, desired_status};
use super::{Signing, Snapshot, Verdict};
use crate::Error;

/// The longest a CA goes unlooked-at when neither it, its Secret nor the
/// clock changes anything: a safety net for a missed watch event.
const RESYNC_PERIOD: Duration = Duration::from_secs(600);

/// A look that failed for a transient reason (the API server) is retried
/// after this long; one that cannot succeed as things are (a key pair that
/// cannot be generated) after [`RESYNC_PERIOD`], or on the next change.
const TRANSIENT_RETRY: Duration = Duration::from_secs(5);

/// Status writes attempted before the look fails and is retried.
const STATUS_WRITE_ATTEMPTS: u32 = 3;

/// The key pairs this process loaded for one CA.
struct HeldKeys {
    /// The Secret's resourceVersion `current` was parsed from.
    version: String,
    current: Arc<Authority>,
    /// The key pair `current` replaced, kept to cross-sign `current` when
    /// the change is recorded.
    retired: Option<Arc<Authority>>,
}

/// What one look at a CA found.
struct Seen {
    state: CaState,
    key_pair: KeyPair,
    status: CertificateAuthorityStatus,
    /// Why it cannot sign, for app owners.
    detail: String,
}

/// Everything the controller and [`super::Authorities`] share.
pub struct Context {
    client: Client,
    namespace: String,
    field_manager: String,
    cas: Store<CertificateAuthority>,
    secrets: Store<Secret>,
    /// Loaded key pairs by CA name.
    keys: Mutex<HashMap<String, HeldKeys>>,
    /// Key pair Secrets that cannot be used, by CA name: the
    /// resourceVersion and why, so a broken Secret is parsed (and logged)
    /// once per change.
    unusable: Mutex<HashMap<String, (String, String)>>,
    /// CAs this installation's work items named.
    requested: Mutex<HashSet<String>>,
    /// CAs (by uid) already warned about for having no policy.
    warned_unrestricted: Mutex<HashSet<String>>,
    snapshot: watch::Sender<Snapshot>,
    /// Looks to schedule; the receiving end is the controller's.
    triggers: mpsc::UnboundedSender<ObjectRef<CertificateAuthority>>,
    triggered: Mutex<Option<mpsc::UnboundedReceiver<ObjectRef<CertificateAuthority>>>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never prints key pairs, only where they come from.
        f.debug_struct("Context")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// The shared context, the receiving end of its snapshot, and the
    /// future driving the two watches (it must be spawned).
    pub(super) fn start(
        client: Client,
        namespace: &str,
        field_manager: &str,
    ) -> (
        Arc<Self>,
        watch::Receiver<Snapshot>,
        impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let (cas, ca_writer) = reflector::store();
        let (secrets, secret_writer) = reflector::store();
        let (snapshot, snapshot_rx) = watch::channel(Snapshot::default());
        let (triggers, triggered) = mpsc::unbounded();
        let context = Arc::new(Self {
            client: client.clone(),
            namespace: namespace.to_owned(),
            field_manager: field_manager.to_owned(),
            cas,
            secrets,
            keys: Mutex::default(),
            unusable: Mutex::default(),
            requested: Mutex::default(),
            warned_unrestricted: Mutex::default(),
            snapshot,
            triggers,
            triggered: Mutex::new(Some(triggered)),
        });
        let ca_events = watcher(
            Api::<CertificateAuthority>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(ca_writer);
        // Raw events, deletions included: a deleted key pair Secret must be
        // noticed at once.
        let secret_events = watcher(
            Api::<Secret>::namespaced(client, namespace),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(secret_writer);
        let drive = {
            let context = context.clone();
            async move {
                let cas = ca_events.for_each(|event| {
                    match event {
                        Ok(event) => context.on_ca_event(&event),
                        Err(err) => {
                            warn!(error = %err, "CertificateAuthority watch interrupted; retrying");
                        }
                    }
                    std::future::ready(())
                });
                let secrets = secret_events.for_each(|event| {
                    match event {
                        Ok(event) => context.on_secret_event(&event),
                        Err(err) => {
                            warn!(error = %err, "control-plane Secret watch interrupted; retrying");
                        }
                    }
                    std::future::ready(())
                });
                futures::join!(cas, secrets);
            }
        };
        (context, snapshot_rx, drive)
    }

    pub(super) fn namespace(&self) -> &str {
        &self.namespace
    }

    pub(super) fn cas(&self) -> &Store<CertificateAuthority> {
        &self.cas
    }

    pub(super) async fn wait_ready(&self) {
        let _ = self.cas.wait_until_ready().await;
        let _ = self.secrets.wait_until_ready().await;
    }

    /// Makes CA `name` this installation's, and has it looked at.
    pub(super) fn claim(&self, name: &str) {
        if lock(&self.requested).insert(name.to_owned()) {
            debug!(ca = %name, "a work item names this CertificateAuthority; looking after it");
        }
        self.trigger(name);
    }

    fn trigger(&self, name: &str) {
        // Fails only once the controller has stopped, at shutdown.
        let _ = self.triggers.unbounded_send(ObjectRef::new(name));
    }

    fn on_ca_event(&self, event: &watcher::Event<CertificateAuthority>) {
        match event {
            watcher::Event::Apply(ca) | watcher::Event::InitApply(ca) => {
                self.trigger(&ca.name_any());
            }
            watcher::Event::Delete(ca) => self.forget(&ca.name_any()),
            // A deletion during a re-list is not reported as one.
            watcher::Event::InitDone => {
                let existing: HashSet<String> =
                    self.cas.state().iter().map(|ca| ca.name_any()).collect();
                let mut known: HashSet<String> = self.snapshot.borrow().keys().cloned().collect();
                known.extend(lock(&self.keys).keys().cloned());
                known.extend(lock(&self.requested).iter().cloned());
                for name in known.difference(&existing) {
                    self.forget(name);
                }
            }
            watcher::Event::Init => {}
        }
    }

    fn on_secret_event(&self, event: &watcher::Event<Secret>) {
        match event {
            watcher::Event::Apply(secret)
            | watcher::Event::InitApply(secret)
            | watcher::Event::Delete(secret) => {
                let name = secret.name_any();
                for ca in self.cas.state() {
                    if ca.spec.secret_name == name {
                        self.trigger(&ca.name_any());
                    }
                }
            }
            // A Secret deleted during a re-list is not reported as deleted.
            watcher::Event::InitDone => {
                for ca in self.cas.state() {
                    self.trigger(&ca.name_any());
                }
            }
            watcher::Event::Init => {}
        }
    }

    /// Drops everything held for a deleted CA.
    fn forget(&self, name: &str) {
        let held = lock(&self.keys).remove(name).is_some();
        lock(&self.unusable).remove(name);
        lock(&self.requested).remove(name);
        self.snapshot.send_if_modified(|snapshot| {
            snapshot.contains_key(name) && Arc::make_mut(snapshot).remove(name).is_some()
        });
        if held {
            info!(ca = %name, "CertificateAuthority deleted; its key pair is no longer held");
        }
    }

    fn secret_ref(&self, ca: &CertificateAuthority) -> ObjectRef<Secret> {
        ObjectRef::new(&ca.spec.secret_name).within(&self.namespace)
    }

    /// Whether `ca` is this installation's to decide about (module doc).
    fn owns(&self, ca: &CertificateAuthority) -> bool {
        let name = ca.name_any();
        self.secrets.get(&self.secret_ref(ca)).is_some()
            || lock(&self.keys).contains_key(&name)
            || lock(&self.requested).contains(&name)
    }

    /// Decides `ca`'s state from the caches; when its status should
    /// change, re-reads the CA and its Secret from the API server and
    /// writes the status from those: a cache lagging behind another
    /// replica's write (or behind a replaced Secret) must never roll a
    /// recorded key pair change back.
    ///
    /// A key pair is published for signing only once the status names it:
    /// the watcher compares issued Secrets with the status, and a key pair
    /// change is recorded (with the previous CA kept trusted) only against
    /// the fingerprint the status had. A refusal is published at once.
    async fn observe(&self, ca: &CertificateAuthority) -> Result<Seen, Error> {
        let secret = self.secrets.get(&self.secret_ref(ca));
        let seen = self.assess(ca, secret.as_deref()).await?;
        self.warn_if_unrestricted(ca);
        if ca.status.as_ref() == Some(&seen.status) {
            self.publish(ca, &seen);
            return Ok(seen);
        }
        if !seen.state.can_sign() {
            self.publish(ca, &seen);
        }
        let name = ca.name_any();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(fresh) = self.read_ca(&name).await? else {
                return Ok(seen);
            };
            let secret = self.read_secret(&fresh.spec.secret_name).await?;
            let seen = self.assess(&fresh, secret.as_ref()).await?;
            if fresh.status.as_ref() == Some(&seen.status) {
                self.publish(&fresh, &seen);
                return Ok(seen);
            }
            match self.write_status(&fresh, &seen.status).await {
                Ok(()) => {
                    log_change(&fresh, &seen);
                    self.publish(&fresh, &seen);
                    return Ok(seen);
                }
                Err(kube::Error::Api(status))
                    if status.code == 409 && attempt < STATUS_WRITE_ATTEMPTS =>
                {
                    debug!(ca = %name, "CertificateAuthority changed while its status was written; reading it again");
                }
                Err(source) => {
                    return Err(Error::Kube {
                        action: "writing the CertificateAuthority status",
                        source,
                    });
                }
            }
        }
    }

    /// Writes the status every installation agrees on to a CA that is not
    /// this installation's, when it has none or an outdated one of that
    /// kind ([`state::unclaimed_status`]).
    async fn mark_unclaimed(&self, ca: &CertificateAuthority) -> Result<(), Error> {
        let Some(desired) = state::unclaimed_status(ca, SystemTime::now()) else {
            return Ok(());
        };
        if ca.status.as_ref() == Some(&desired) {
            return Ok(());
        }
        let name = ca.name_any();
        for attempt in 1..=STATUS_WRITE_ATTEMPTS {
            let Some(fresh) = self.read_ca(&name).await? else {
                return Ok(());
            };
            let Some(desired) = state::unclaimed_status(&fresh, SystemTime::now()) else {
                return Ok(());
            };
            if fresh.status.as_ref() == Some(&desired) {
                return Ok(());
            }
            match self.write_status(&fresh, &desired).await {
                Ok(()) => return Ok(()),
                Err(kube::Error::Api(status))
                    if status.code == 409 && attempt < STATUS_WRITE_ATTEMPTS =>
                {
                    debug!(ca = %name, "CertificateAuthority changed while its status was written; reading it again");
                }
                Err(source) => {
                    return Err(Error::Kube {
                        action: "writing the CertificateAuthority status",
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Loads (or generates) `ca`'s key pair from `secret` and decides its
    /// status.
    async fn assess(
        &self,
        ca: &CertificateAuthority,
        secret: Option<&Secret>,
    ) -> Result<Seen, Error> {
        let name = ca.name_any();
        let mut key_pair = match secret {
            Some(secret) => self.parse(&name, secret),
            None => KeyPair::Missing,
        };
        let mut state = ca_state(ca, &key_pair, SystemTime::now());
        if state == CaState::Generate {
            key_pair = self.generate(ca).await?;
            // A fresh clock: the new certificate's notBefore is the second
            // it was made, which may be after the reading above.
            state = ca_state(ca, &key_pair, SystemTime::now());
        }
        let retired = ca
            .status
            .as_ref()
            .and_then(|status| status.fingerprint.as_deref())
            .filter(|recorded| {
                key_pair
                    .authority()
                    .is_some_and(|loaded| loaded.fingerprint() != *recorded)
            })
            .and_then(|recorded| self.held(&name, recorded));
        let desired = desired_status(
            ca,
            Observation {
                key_pair: &key_pair,
                state,
                namespace: &self.namespace,
                retired: retired.as_deref(),
                now: SystemTime::now(),
            },
        );
        if let Some(failure) = desired.cross_sign_failure {
            warn!(ca = %name, error = %failure, "could not cross-sign the new CA certificate with the previous key; Pods that trust only the previous CA will not accept certificates signed by the new one");
        }
        Ok(Seen {
            state,
            detail: state::app_detail(ca, &key_pair, state),
            key_pair,
            status: desired.status,
        })
    }

    /// Makes `seen` what [`super::Authorities::resolve`] answers for `ca`.
    fn publish(&self, ca: &CertificateAuthority, seen: &Seen) {
        let signing = match seen.key_pair.authority() {
            Some(authority) if seen.state.can_sign() => Ok(Signing {
                authority: authority.clone(),
                trust: Trust::new(authority, &seen.status.previous),
            }),
            _ => Err(seen.detail.clone()),
        };
        let verdict = Arc::new(Verdict {
            uid: ca.uid().unwrap_or_default(),
            signing,
        });
        self.snapshot.send_modify(|snapshot| {
            Arc::make_mut(snapshot).insert(ca.name_any(), verdict);
        });
    }

    /// Warns once per CA (by uid) that it has no policy. (A CA's expiry is
    /// exported by the watcher, from the status written here:
    /// `certflow_ca_expiration_timestamp_seconds`.)
    fn warn_if_unrestricted(&self, ca: &CertificateAuthority) {
        let name = ca.name_any();
        if ca.spec.policy.is_none() {
            let uid = ca.uid().unwrap_or_else(|| name.clone());
            if lock(&self.warned_unrestricted).insert(uid) {
                warn!(ca = %name, "CertificateAuthority {name:?} has no spec.policy: it signs any name for any namespace; set spec.policy to limit it");
            }
        }
    }

    /// The CA as the API server has it now. A list by name rather than a
    /// get: the signer's RBAC reads CertificateAuthorities with list and
    /// watch only.
    async fn read_ca(&self, name: &str) -> Result<Option<CertificateAuthority>, Error> {
        let api: Api<CertificateAuthority> = Api::all(self.client.clone());
        let list = api
            .list(&ListParams::default().fields(&format!("metadata.name={name}")))
            .await
            .map_err(Error::kube("reading the CertificateAuthority"))?;
        Ok(list.items.into_iter().find(|ca| ca.name_any() == name))
    }

    async fn read_secret(&self, name: &str) -> Result<Option<Secret>, Error> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        secrets
            .get_opt(name)
            .await
            .map_err(Error::kube("reading the CA key pair Secret"))
    }

    /// Generates a self-signed CA and stores it. Creation is create-only, so
    /// a Secret that appeared meanwhile (another replica, or the operator)
    /// is loaded, never replaced.
    async fn generate(&self, ca: &CertificateAuthority) -> Result<KeyPair, Error> {
        let name = ca.name_any();
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        // Another replica may have made it before this one's cache saw it.
        if let Some(existing) = self.read_secret(&ca.spec.secret_name).await? {
            return Ok(self.parse(&name, &existing));
        }
        let validity = ca
            .spec
            .effective_duration()
            .unwrap_or(certflow_api::DEFAULT_CA_DURATION);
        let common_name = ca
            .spec
            .common_name
            .clone()
            .unwrap_or_else(|| format!("certflow {name}"));
        let spec = crate::request::key_spec_for(ca.spec.key_algorithm(), ca.spec.key_size());
        let (authority, pem) = Authority::generate(&common_name, spec, validity)?;
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(ca.spec.secret_name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(
                    [(labels::MANAGED.to_owned(), labels::MANAGED_VALUE.to_owned())].into(),
                ),
                annotations: Some([(labels::ISSUER.to_owned(), name.clone())].into()),
                ..ObjectMeta::default()
            },
            type_: Some(TLS_SECRET_TYPE.to_owned()),
            data: Some(
                [
                    (
                        TLS_CERT_KEY.to_owned(),
                        ByteString(pem.cert_pem.into_bytes()),
                    ),
                    (
                        TLS_PRIVATE_KEY_KEY.to_owned(),
                        ByteString(pem.key_pem.into_bytes()),
                    ),
                ]
                .into(),
            ),
            ..Secret::default()
        };
        let params = PostParams {
            field_manager: Some(self.field_manager.clone()),
            ..PostParams::default()
        };
        match secrets.create(&params, &secret).await {
            Ok(created) => {
                let replaces = ca.status.as_ref().and_then(|s| s.fingerprint.clone());
                info!(ca = %name, fingerprint = authority.fingerprint(), replaces = ?replaces, "generated a new CA key pair");
                let authority = Arc::new(authority);
                self.hold(
                    &name,
                    created.resource_version().unwrap_or_default(),
                    authority.clone(),
                );
                Ok(KeyPair::Loaded(authority))
            }
            // The loser of a race between replicas loads the winner's.
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let existing = secrets
                    .get(&ca.spec.secret_name)
                    .await
                    .map_err(Error::kube("reading the CA key pair Secret"))?;
                Ok(self.parse(&name, &existing))
            }
            Err(source) => Err(Error::Kube {
                action: "creating the CA key pair Secret",
                source,
            }),
        }
    }

    /// Parses a CA key pair Secret once per resourceVersion, whether it
    /// can be used or not. A Secret that cannot be used leaves the held key
    /// pair alone, so a botched replacement, once fixed, is still
    /// cross-signed by the previous key.
    fn parse(&self, name: &str, secret: &Secret) -> KeyPair {
        let version = secret.resource_version().unwrap_or_default();
        if let Some(held) = lock(&self.keys).get(name)
            && held.version == version
        {
            return KeyPair::Loaded(held.current.clone());
        }
        if let Some((seen, detail)) = lock(&self.unusable).get(name)
            && *seen == version
        {
            return KeyPair::Unusable(detail.clone());
        }
        let text = |key: &str| {
            secret
                .data
                .as_ref()
                .and_then(|data| data.get(key))
                .and_then(|value| String::from_utf8(value.0.clone()).ok())
                .unwrap_or_default()
        };
        match Authority::from_pem(&text(TLS_CERT_KEY), &text(TLS_PRIVATE_KEY_KEY)) {
            Ok(authority) => {
                lock(&self.unusable).remove(name);
                let authority = Arc::new(authority);
                info!(ca = %name, fingerprint = authority.fingerprint(), secret = %secret.name_any(), resource_version = %version, "loaded the CA key pair");
                self.hold(name, version, authority.clone());
                KeyPair::Loaded(authority)
            }
            Err(err) => {
                // The error describes what is wrong with the PEM, never its bytes.
                let detail = err.to_string();
                warn!(ca = %name, secret = %secret.name_any(), resource_version = %version, error = %detail, "the CA key pair Secret cannot be used");
                lock(&self.unusable).insert(name.to_owned(), (version, detail.clone()));
                KeyPair::Unusable(detail)
            }
        }
    }

    /// Remembers `authority` as `name`'s key pair; the one it replaces is
    /// kept as retired.
    fn hold(&self, name: &str, version: String, authority: Arc<Authority>) {
        let mut keys = lock(&self.keys);
        let retired = match keys.get(name) {
            Some(held) if held.current.fingerprint() != authority.fingerprint() => {
                Some(held.current.clone())
            }
            Some(held) => held.retired.clone(),
            None => None,
        };
        keys.insert(
            name.to_owned(),
            HeldKeys {
                version,
                current: authority,
                retired,
            },
        );
    }

    /// The key pair with `fingerprint` this process held for `name`, if any.
    fn held(&self, name: &str, fingerprint: &str) -> Option<Arc<Authority>> {
        let keys = lock(&self.keys);
        let held = keys.get(name)?;
        std::iter::once(&held.current)
            .chain(held.retired.as_ref())
            .find(|key| key.fingerprint() == fingerprint)
            .cloned()
    }

    /// Writes `status` with `ca`'s resourceVersion as a precondition, so a
    /// write based on a stale read fails (409) instead of overwriting.
    async fn write_status(
        &self,
        ca: &CertificateAuthority,
        status: &CertificateAuthorityStatus,
    ) -> Result<(), kube::Error> {
        let mut value = serde_json::to_value(status).map_err(kube::Error::SerdeError)?;
        // A merge patch leaves out what serializes to nothing; fields that
        // became empty must be removed explicitly.
        if let Some(fields) = value.as_object_mut() {
            for field in [
                "conditions",
                "serialNumber",
                "notBefore",
                "notAfter",
                "fingerprint",
                "certificate",
                "previous",
            ] {
                fields.entry(field).or_insert(serde_json::Value::Null);
            }
        }
        let patch = serde_json::json!({
            "metadata": { "resourceVersion": ca.resource_version() },
            "status": value,
        });
        let api: Api<CertificateAuthority> = Api::all(self.client.clone());
        api.patch_status(
            &ca.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map(|_| ())
    }
}

/// Runs the controller until `shutdown`. Looks start once both caches hold
/// a complete first listing, so no CA is judged against a partial view of
/// the control-plane namespace.
pub(super) async fn run(context: Arc<Context>, shutdown: CancellationToken) {
    let Some(triggered) = lock(&context.triggered).take() else {
        warn!("the CertificateAuthority controller is already running");
        return;
    };
    tokio::select! {
        () = shutdown.cancelled() => return,
        () = context.wait_ready() => {}
    }
    let cas = context.cas.clone();
    Controller::for_stream(
        futures::stream::pending::<Result<CertificateAuthority, watcher::Error>>(),
        cas,
    )
    .reconcile_on(triggered)
    .graceful_shutdown_on(shutdown.cancelled_owned())
    .run(reconcile, error_policy, context)
    .for_each(|result| {
        if let Err(err) = result {
            // Reconcile failures are logged by error_policy; what is left
            // are looks at CAs deleted meanwhile.
            debug!(error = %err, "CertificateAuthority look skipped");
        }
        std::future::ready(())
    })
    .await;
}

/// One look at `ca`: this installation's CAs are loaded (or generated),
/// published and their status written; others at most get the status all
/// installations agree on.
#[instrument(skip_all, fields(ca = %ca.name_any()))]
async fn reconcile(ca: Arc<CertificateAuthority>, context: Arc<Context>) -> Result<Action, Error> {
    if !context.owns(&ca) {
        context.mark_unclaimed(&ca).await?;
        return Ok(Action::await_change());
    }
    let seen = context.observe(&ca).await?;
    let now = SystemTime::now();
    let next = state::next_change(&ca, &seen.key_pair, &seen.status, now)
        .and_then(|at| at.duration_since(now).ok())
        // A second late, so the clock has passed the moment for certain.
        .map_or(RESYNC_PERIOD, |wait| {
            (wait + Duration::from_secs(1)).min(RESYNC_PERIOD)
        });
    Ok(Action::requeue(next))
}

fn error_policy(ca: Arc<CertificateAuthority>, err: &Error, _: Arc<Context>) -> Action {
    warn!(ca = %ca.name_any(), error = %err, "could not bring the CertificateAuthority up to date; retrying");
    if err.is_transient() {
        Action::requeue(TRANSIENT_RETRY)
    } else {
        Action::requeue(RESYNC_PERIOD)
    }
}

/// Logs what a status write recorded that an operator would want to know.
fn log_change(ca: &CertificateAuthority, seen: &Seen) {
    let name = ca.name_any();
    let before = ca.status.clone().unwrap_or_default();
    let ready = seen.status.ready_condition();
    if before.ready_condition().map(|c| (&c.status, &c.reason))
        != ready.map(|c| (&c.status, &c.reason))
    {
        match ready {
            Some(ready) if ready.is_true() => {
                info!(ca = %name, reason = %ready.reason, "CertificateAuthority is ready");
            }
            Some(ready) => {
                warn!(ca = %name, reason = %ready.reason, message = %ready.message, "CertificateAuthority cannot sign");
            }
            None => {}
        }
    }
    if let (Some(old), Some(new)) = (&before.fingerprint, &seen.status.fingerprint)
        && old != new
    {
        let previous = seen.status.previous.first();
        info!(
            ca = %name,
            previous = %old,
            current = %new,
            overlap = previous.is_some(),
            cross_signed = previous.is_some_and(|p| p.cross_signed.is_some()),
            "CertificateAuthority key pair changed"
        );
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
