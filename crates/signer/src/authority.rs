//! Observes CertificateAuthorities and the Secrets of the control-plane
//! namespace; writes CA Secrets it generates on first use and each
//! CertificateAuthority's status (fingerprint, serial, Ready); never reads or
//! writes Secrets in any other namespace. This is the only module in
//! certflow that reads CA keys.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use certflow_api::condition::{READY, set_condition};
use certflow_api::labels;
use certflow_api::secret::{TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY, TLS_SECRET_TYPE};
use certflow_api::{
    CertificateAuthority, Condition, ConditionStatus, IssuerPolicy, ServiceCertificate,
};
use certflow_diagnostics::Violation;
use certflow_pki::Authority;
use futures::StreamExt as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, ResourceExt as _};
use tracing::{info, warn};

use crate::Error;
use crate::request::rfc3339;

/// A CertificateAuthority ready to sign, with its policy.
#[derive(Debug, Clone)]
pub struct Issuer {
    pub name: String,
    pub authority: Arc<Authority>,
    pub policy: Option<IssuerPolicy>,
}

/// Resolves `spec.issuerRef` to a signing key, from caches kept current by
/// watches, so an issuance costs no API reads for its CA.
pub struct Authorities {
    client: Client,
    namespace: String,
    field_manager: String,
    cas: Store<CertificateAuthority>,
    secrets: Store<Secret>,
    /// Parsed key pairs by CA name, valid while the Secret's
    /// resourceVersion is unchanged.
    parsed: Mutex<HashMap<String, (String, Arc<Authority>)>>,
    /// Serialises first-use generation so two items don't race to create it.
    generating: tokio::sync::Mutex<()>,
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
    ) -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        let (cas, ca_writer) = reflector::store();
        let (secrets, secret_writer) = reflector::store();
        let ca_stream = watcher(
            Api::<CertificateAuthority>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(ca_writer)
        .applied_objects();
        let secret_stream = watcher(
            Api::<Secret>::namespaced(client.clone(), namespace),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(secret_writer)
        .applied_objects();
        let drive = async move {
            let cas = ca_stream.for_each(|event| async move {
                if let Err(err) = event {
                    warn!(error = %err, "CertificateAuthority watch interrupted; retrying");
                }
            });
            let secrets = secret_stream.for_each(|event| async move {
                if let Err(err) = event {
                    warn!(error = %err, "control-plane Secret watch interrupted; retrying");
                }
            });
            futures::join!(cas, secrets);
        };
        let authorities = Self {
            client,
            namespace: namespace.to_owned(),
            field_manager: field_manager.to_owned(),
            cas,
            secrets,
            parsed: Mutex::default(),
            generating: tokio::sync::Mutex::default(),
        };
        (authorities, drive)
    }

    /// Waits until both caches hold a complete first listing.
    pub async fn wait_ready(&self) {
        let _ = self.cas.wait_until_ready().await;
        let _ = self.secrets.wait_until_ready().await;
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
        let authority = match self.key_pair(&ca).await? {
            Ok(authority) => authority,
            Err(detail) => {
                self.write_status(&ca, None, &detail).await;
                return Ok(Err(certflow_diagnostics::issuer_not_ready(
                    &name,
                    Some(&detail),
                )));
            }
        };
        if ca.status.as_ref().and_then(|s| s.fingerprint.as_deref())
            != Some(authority.fingerprint())
        {
            self.write_status(&ca, Some(&authority), "the CA key pair is loaded")
                .await;
        }
        Ok(Ok(Issuer {
            name,
            authority,
            policy: ca.spec.policy.clone(),
        }))
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

    /// The CA's parsed key pair; `Ok(Err(detail))` when the CA cannot sign.
    async fn key_pair(
        &self,
        ca: &CertificateAuthority,
    ) -> Result<Result<Arc<Authority>, String>, Error> {
        let secret_ref = ObjectRef::new(&ca.spec.secret_name).within(&self.namespace);
        match self.secrets.get(&secret_ref) {
            Some(secret) => Ok(self.parse(&ca.name_any(), &secret)),
            None if ca.spec.generates() => self.generate(ca).await,
            None => Ok(Err(format!(
                "its key pair Secret {}/{} does not exist; create it with tls.crt and tls.key, \
                 or set spec.generate: true",
                self.namespace, ca.spec.secret_name
            ))),
        }
    }

    /// Generates a self-signed CA and stores it. Creation is create-only, so
    /// a Secret that appeared meanwhile (another replica) is loaded, never
    /// replaced.
    async fn generate(
        &self,
        ca: &CertificateAuthority,
    ) -> Result<Result<Arc<Authority>, String>, Error> {
        let _one_at_a_time = self.generating.lock().await;
        let name = ca.name_any();
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        // Items that waited for the lock find the key pair the first one
        // made, before the watch cache has seen its Secret.
        if let Some(existing) = secrets
            .get_opt(&ca.spec.secret_name)
            .await
            .map_err(Error::kube("reading the CA key pair Secret"))?
        {
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
                info!(ca = %name, fingerprint = authority.fingerprint(), "generated a new CA key pair");
                let authority = Arc::new(authority);
                self.lock().insert(
                    name,
                    (
                        created.resource_version().unwrap_or_default(),
                        authority.clone(),
                    ),
                );
                Ok(Ok(authority))
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

    /// Parses a CA key pair Secret, caching it by resourceVersion.
    fn parse(&self, name: &str, secret: &Secret) -> Result<Arc<Authority>, String> {
        let version = secret.resource_version().unwrap_or_default();
        if let Some((cached_version, authority)) = self.lock().get(name)
            && *cached_version == version
        {
            return Ok(authority.clone());
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
                self.lock()
                    .insert(name.to_owned(), (version, authority.clone()));
                Ok(authority)
            }
            // The error describes what is wrong with the PEM, never its bytes.
            Err(err) => Err(format!(
                "its key pair Secret {}/{} is unusable: {err}",
                self.namespace,
                secret.name_any()
            )),
        }
    }

    async fn write_status(
        &self,
        ca: &CertificateAuthority,
        authority: Option<&Authority>,
        message: &str,
    ) {
        let mut conditions = ca.status.clone().unwrap_or_default().conditions;
        let (status, reason) = match authority {
            Some(_) => (ConditionStatus::True, "KeyPairLoaded"),
            None => (ConditionStatus::False, "KeyPairUnavailable"),
        };
        let unchanged = ca
            .ready_condition()
            .is_some_and(|c| c.status == status && c.message == message)
            && ca.status.as_ref().and_then(|s| s.fingerprint.as_deref())
                == authority.map(Authority::fingerprint);
        if unchanged {
            return;
        }
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        );
        set_condition(
            &mut conditions,
            Condition::new(READY, status, reason, message),
            now,
        );
        let status = serde_json::json!({
            "status": {
                "conditions": conditions,
                "fingerprint": authority.map(Authority::fingerprint),
                "serialNumber": authority.map(Authority::serial),
                "notAfter": authority.map(|a| rfc3339(a.not_after())),
            }
        });
        let api: Api<CertificateAuthority> = Api::all(self.client.clone());
        if let Err(err) = api
            .patch_status(
                &ca.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&status),
            )
            .await
        {
            warn!(ca = %ca.name_any(), error = %err, "could not update CertificateAuthority status");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Arc<Authority>)>> {
        self.parsed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
