//! Observes CertificateAuthorities and the Secrets of the control-plane
//! namespace; writes CA Secrets it generates (on first use, or when an
//! operator confirmed replacing a lost one) and each CertificateAuthority's
//! status (Ready, ExpiringSoon, PolicyUnrestricted, the current and previous
//! CA certificates); never reads or writes Secrets in any other namespace,
//! and never overwrites or deletes a CA Secret. This is the only module in
//! certflow that reads CA keys.
//!
//! What the status says is decided in [`state`]; this module loads key
//! pairs, keeps them (the one held before a change is what cross-signs the
//! new one), and writes the decision.

pub mod state;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use certflow_api::labels;
use certflow_api::secret::{TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY, TLS_SECRET_TYPE};
use certflow_api::{
    CertificateAuthority, CertificateAuthorityStatus, IssuerPolicy, ServiceCertificate,
};
use certflow_diagnostics::Violation;
use certflow_pki::Authority;
use futures::StreamExt as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, ResourceExt as _};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use self::state::{CaState, KeyPair, Observation, Trust, ca_state, desired_status};
use crate::Error;
use crate::metrics::Metrics;

/// How often the CAs this signer holds are looked at when nothing changed:
/// expiry, notBefore and the end of a rotation overlap come with the clock.
const MAINTAIN_PERIOD: Duration = Duration::from_secs(60);

/// Status writes attempted before giving up on a CA until the next look.
const STATUS_WRITE_ATTEMPTS: u32 = 3;

/// A CertificateAuthority ready to sign, with its policy and what issued
/// Secrets carry for the previous CAs during a rotation overlap.
#[derive(Debug, Clone)]
pub struct Issuer {
    pub name: String,
    pub authority: Arc<Authority>,
    pub policy: Option<IssuerPolicy>,
    pub trust: Trust,
}

impl Issuer {
    /// `ca.crt`: the current CA certificate, then the previous ones still
    /// inside their overlap.
    pub fn trust_bundle(&self) -> &str {
        &self.trust.bundle
    }

    /// `issued` as it is written to `tls.crt`: followed by the cross-signed
    /// chain during an overlap, so Pods that trust only the previous CA
    /// accept it, and by the CA certificate otherwise.
    pub fn served(&self, issued: certflow_pki::Issued) -> certflow_pki::Issued {
        let chain_pem = self.trust.served_chain(&self.authority, &issued);
        certflow_pki::Issued {
            chain_pem,
            ..issued
        }
    }
}

/// The key pairs this process loaded for one CA.
struct HeldKeys {
    /// The Secret's resourceVersion `current` was parsed from.
    version: String,
    current: Arc<Authority>,
    /// The key pair `current` replaced, kept to cross-sign `current` when
    /// the change is recorded.
    retired: Option<Arc<Authority>>,
}

/// What [`Authorities::observe`] found for a CA.
struct Seen {
    state: CaState,
    authority: Option<Arc<Authority>>,
    status: CertificateAuthorityStatus,
    /// Why it cannot sign, for app owners.
    detail: String,
}

/// Resolves `spec.issuerRef` to a signing key, from caches kept current by
/// watches, so an issuance costs no API reads for its CA, and keeps the
/// status of the CAs whose key pairs it holds current.
pub struct Authorities {
    client: Client,
    namespace: String,
    field_manager: String,
    cas: Store<CertificateAuthority>,
    secrets: Store<Secret>,
    metrics: Metrics,
    /// Key pairs by CA name.
    keys: Mutex<HashMap<String, HeldKeys>>,
    /// Serialises generation so two items don't race to create a key pair.
    generating: tokio::sync::Mutex<()>,
    /// Serialises status writes, so one change is recorded once per process.
    writing: tokio::sync::Mutex<()>,
    /// Signalled on every CA or control-plane Secret event.
    changed: Arc<Notify>,
    /// CAs (by uid) already warned about for having no policy.
    warned_unrestricted: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Authorities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never prints key pairs, only where they come from.
        f.debug_struct("Authorities")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Authorities {
    /// Starts the watches; the returned future drives them and must be
    /// spawned. Call [`Self::wait_ready`] before resolving.
    pub fn new(
        client: Client,
        namespace: &str,
        field_manager: &str,
        metrics: Metrics,
    ) -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        let (cas, ca_writer) = reflector::store();
        let (secrets, secret_writer) = reflector::store();
        let changed = Arc::new(Notify::new());
        let ca_stream = watcher(
            Api::<CertificateAuthority>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(ca_writer);
        // Raw events, deletions included: a deleted key pair Secret must be
        // noticed at once.
        let secret_stream = watcher(
            Api::<Secret>::namespaced(client.clone(), namespace),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(secret_writer);
        let drive = {
            let changed = changed.clone();
            async move {
                let cas = ca_stream.for_each(|event| {
                    let changed = changed.clone();
                    async move {
                        match event {
                            Ok(_) => changed.notify_one(),
                            Err(err) => {
                                warn!(error = %err, "CertificateAuthority watch interrupted; retrying");
                            }
                        }
                    }
                });
                let secrets = secret_stream.for_each(|event| {
                    let changed = changed.clone();
                    async move {
                        match event {
                            Ok(_) => changed.notify_one(),
                            Err(err) => {
                                warn!(error = %err, "control-plane Secret watch interrupted; retrying");
                            }
                        }
                    }
                });
                futures::join!(cas, secrets);
            }
        };
        let authorities = Self {
            client,
            namespace: namespace.to_owned(),
            field_manager: field_manager.to_owned(),
            cas,
            secrets,
            metrics,
            keys: Mutex::default(),
            generating: tokio::sync::Mutex::default(),
            writing: tokio::sync::Mutex::default(),
            changed,
            warned_unrestricted: Mutex::default(),
        };
        (authorities, drive)
    }

    /// Waits until both caches hold a complete first listing.
    pub async fn wait_ready(&self) {
        let _ = self.cas.wait_until_ready().await;
        let _ = self.secrets.wait_until_ready().await;
    }

    /// Keeps the status of every CA this signer is responsible for current
    /// until `shutdown`: at once when a CA or a control-plane Secret
    /// changes (a replaced or deleted key pair, a regenerate annotation),
    /// and every [`MAINTAIN_PERIOD`] for what the clock changes.
    ///
    /// Responsible means its key pair Secret is in this signer's namespace,
    /// or this process loaded its key pair before. Other CAs get status when
    /// a certificate first asks for them: several certflow installations
    /// (or test runs) may share a cluster's cluster-scoped CAs, and only the
    /// one holding the key pair may say it is missing.
    pub async fn maintain(&self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.changed.notified() => {}
                () = tokio::time::sleep(MAINTAIN_PERIOD) => {}
            }
            let cas = self.cas.state();
            for ca in cas.iter().filter(|ca| self.responsible_for(ca)) {
                if let Err(err) = self.observe(ca).await {
                    warn!(ca = %ca.name_any(), error = %err, "could not bring CertificateAuthority status up to date; retrying later");
                }
            }
            self.forget_deleted(&cas);
        }
    }

    /// The issuer for `scert`, or the violation to report to its owner.
    pub async fn resolve(
        &self,
        scert: &ServiceCertificate,
    ) -> Result<Result<Issuer, Violation>, Error> {
        let ca = match self.find(scert.spec.issuer_name()) {
            Ok(ca) => ca,
            Err(violation) => return Ok(Err(violation)),
        };
        let name = ca.name_any();
        let seen = self.observe(&ca).await?;
        match seen.authority.filter(|_| seen.state.can_sign()) {
            Some(authority) => Ok(Ok(Issuer {
                name,
                trust: Trust::new(&authority, &seen.status.previous),
                authority,
                policy: ca.spec.policy.clone(),
            })),
            None => Ok(Err(certflow_diagnostics::issuer_not_ready(
                &name,
                Some(&seen.detail),
            ))),
        }
    }

    /// The named CertificateAuthority, or the cluster default when `name` is
    /// `None`.
    fn find(&self, name: Option<&str>) -> Result<Arc<CertificateAuthority>, Violation> {
        let all = self.cas.state();
        let found = match name {
            Some(name) => self.cas.get(&ObjectRef::new(name)),
            None => all.iter().find(|ca| ca.spec.is_default()).cloned(),
        };
        found.ok_or_else(|| {
            let mut existing: Vec<String> = all.iter().map(|ca| ca.name_any()).collect();
            existing.sort();
            certflow_diagnostics::issuer_not_found(name.unwrap_or_default(), &existing)
        })
    }

    fn responsible_for(&self, ca: &CertificateAuthority) -> bool {
        self.secrets.get(&self.secret_ref(ca)).is_some()
            || self.lock_keys().contains_key(&ca.name_any())
    }

    fn secret_ref(&self, ca: &CertificateAuthority) -> ObjectRef<Secret> {
        ObjectRef::new(&ca.spec.secret_name).within(&self.namespace)
    }

    /// Decides `ca`'s state from the caches and, when its status should
    /// change, re-reads the CA and its Secret from the API server and writes
    /// the status from those: a cache lagging behind another replica's
    /// write (or behind a replaced Secret) must never roll a recorded key
    /// pair change back. Returns what was decided even if the write failed;
    /// the next look retries it.
    async fn observe(&self, ca: &CertificateAuthority) -> Result<Seen, Error> {
        let secret = self.secrets.get(&self.secret_ref(ca));
        let seen = self.assess(ca, secret.as_deref()).await?;
        if ca.status.as_ref() == Some(&seen.status) {
            self.record(ca, &seen);
            return Ok(seen);
        }
        let _one_writer = self.writing.lock().await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(fresh) = self.read_ca(&ca.name_any()).await? else {
                return Ok(seen);
            };
            let secret = self.read_secret(&fresh.spec.secret_name).await?;
            let seen = self.assess(&fresh, secret.as_ref()).await?;
            if fresh.status.as_ref() == Some(&seen.status) {
                self.record(&fresh, &seen);
                return Ok(seen);
            }
            match self.write_status(&fresh, &seen.status).await {
                Ok(()) => {
                    log_change(&fresh, &seen);
                    self.record(&fresh, &seen);
                    return Ok(seen);
                }
                Err(kube::Error::Api(status))
                    if status.code == 409 && attempt < STATUS_WRITE_ATTEMPTS =>
                {
                    debug!(ca = %fresh.name_any(), "CertificateAuthority changed while its status was written; reading it again");
                }
                Err(err) => {
                    warn!(ca = %fresh.name_any(), error = %err, "could not update CertificateAuthority status");
                    self.record(&fresh, &seen);
                    return Ok(seen);
                }
            }
        }
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
            authority: key_pair.authority().cloned(),
            status: desired.status,
        })
    }

    /// Metrics and the once-per-CA warning, after each look at a CA.
    fn record(&self, ca: &CertificateAuthority, seen: &Seen) {
        let name = ca.name_any();
        self.metrics.ca_expiration(
            &name,
            seen.authority
                .as_ref()
                .map(|authority| authority.not_after()),
        );
        if ca.spec.policy.is_none() {
            let uid = ca.uid().unwrap_or_else(|| name.clone());
            let first = self
                .warned_unrestricted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(uid);
            if first {
                warn!(ca = %name, "CertificateAuthority {name:?} has no spec.policy: it signs any name for any namespace; set spec.policy to limit it");
            }
        }
    }

    /// Drops key pairs and metrics of CAs that no longer exist.
    fn forget_deleted(&self, cas: &[Arc<CertificateAuthority>]) {
        let existing: HashSet<String> = cas.iter().map(|ca| ca.name_any()).collect();
        let mut keys = self.lock_keys();
        let gone: Vec<String> = keys
            .keys()
            .filter(|name| !existing.contains(*name))
            .cloned()
            .collect();
        for name in gone {
            keys.remove(&name);
            self.metrics.ca_expiration(&name, None);
            info!(ca = %name, "CertificateAuthority deleted; its key pair is no longer held");
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
        let _one_at_a_time = self.generating.lock().await;
        let name = ca.name_any();
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        // Items that waited for the lock find the key pair the first one
        // made, before the watch cache has seen its Secret.
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

    /// Parses a CA key pair Secret, caching it by resourceVersion. A Secret
    /// that cannot be parsed leaves the held key pair alone, so a botched
    /// replacement, once fixed, is still cross-signed by the previous key.
    fn parse(&self, name: &str, secret: &Secret) -> KeyPair {
        let version = secret.resource_version().unwrap_or_default();
        if let Some(held) = self.lock_keys().get(name)
            && held.version == version
        {
            return KeyPair::Loaded(held.current.clone());
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
                let authority = Arc::new(authority);
                self.hold(name, version, authority.clone());
                KeyPair::Loaded(authority)
            }
            // The error describes what is wrong with the PEM, never its bytes.
            Err(err) => KeyPair::Unusable(err.to_string()),
        }
    }

    /// Remembers `authority` as `name`'s key pair; the one it replaces is
    /// kept as retired.
    fn hold(&self, name: &str, version: String, authority: Arc<Authority>) {
        let mut keys = self.lock_keys();
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
        let keys = self.lock_keys();
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

    fn lock_keys(&self) -> std::sync::MutexGuard<'_, HashMap<String, HeldKeys>> {
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
