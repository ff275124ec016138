//! The CertificateAuthorities a signer signs with. Observes the snapshot
//! the CertificateAuthority controller ([`controller`]) publishes and the
//! controller's cache of CertificateAuthorities; writes nothing; never
//! reads the Kubernetes API. [`Authorities::resolve`] is what the issuing
//! path asks, and it answers from memory.
//!
//! The controller owns everything else about a CA: loading and
//! validating its key pair once per change of its Secret, generating one
//! when the CA asks for it, and writing its status (Ready, ExpiringSoon,
//! PolicyUnrestricted, the current and previous CA certificates). What the
//! status says is decided in [`state`]. This module and its children are
//! the only code in certflow that reads CA keys.

pub mod controller;
pub mod state;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use certflow_api::{CertificateAuthority, IssuerPolicy, ServiceCertificate};
use certflow_diagnostics::Violation;
use certflow_pki::Authority;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt as _};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use self::controller::Context;
use self::state::Trust;
use crate::Error;

/// How long an item waits for the controller to first look at a CA it
/// names (at start-up, or a CA this installation was never asked for):
/// a key pair load or generation is a few API calls.
const FIRST_LOOK_WAIT: Duration = Duration::from_secs(15);

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

/// What the controller last decided about one CA whose key pair this
/// installation holds (or was asked for).
#[derive(Debug)]
pub struct Verdict {
    /// The CA object it was decided for: a CA deleted and created again
    /// under the same name is decided afresh.
    pub uid: String,
    /// The key pair and trust to sign with, or why the CA cannot sign,
    /// for app owners.
    pub signing: Result<Signing, String>,
}

/// A loaded, currently valid key pair and what issued Secrets carry with it.
#[derive(Debug, Clone)]
pub struct Signing {
    pub authority: Arc<Authority>,
    pub trust: Trust,
}

/// Every verdict by CA name; replaced as a whole, so a reader never sees
/// half of a change.
pub type Snapshot = Arc<HashMap<String, Arc<Verdict>>>;

/// Resolves `spec.issuerRef` to a signing key from the controller's
/// snapshot, so an issuance costs no API reads or writes for its CA.
pub struct Authorities {
    context: Arc<Context>,
    snapshot: watch::Receiver<Snapshot>,
}

impl std::fmt::Debug for Authorities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never prints key pairs, only where they come from.
        f.debug_struct("Authorities")
            .field("namespace", &self.context.namespace())
            .finish_non_exhaustive()
    }
}

impl Authorities {
    /// Starts the watches of CertificateAuthorities and of the
    /// control-plane namespace's Secrets; the returned future drives them
    /// and must be spawned. Call [`Self::wait_ready`] before resolving and
    /// run [`Self::maintain`] (the controller) alongside.
    pub fn new(
        client: Client,
        namespace: &str,
        field_manager: &str,
    ) -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        let (context, snapshot, watches) = Context::start(client, namespace, field_manager);
        (Self { context, snapshot }, watches)
    }

    /// Waits until both caches hold a complete first listing.
    pub async fn wait_ready(&self) {
        self.context.wait_ready().await;
    }

    /// Runs the CertificateAuthority controller until `shutdown`: every
    /// CA is looked at when it or its key pair Secret changes, when an
    /// item first asks for it, and when the clock changes its status
    /// (notBefore, 30 days before notAfter, notAfter, the end of a
    /// rotation overlap). See [`controller`].
    pub async fn maintain(&self, shutdown: CancellationToken) {
        controller::run(self.context.clone(), shutdown).await;
    }

    /// The issuer for `scert`, or the violation to report to its owner.
    ///
    /// Reads only memory. A CA the controller has not decided about as
    /// one of this installation's (none of its items asked for it before)
    /// is claimed, and the item waits up to [`FIRST_LOOK_WAIT`] for the
    /// controller's verdict; past that it is retried like any transient
    /// failure.
    pub async fn resolve(
        &self,
        scert: &ServiceCertificate,
    ) -> Result<Result<Issuer, Violation>, Error> {
        let ca = match self.find(scert.spec.issuer_name()) {
            Ok(ca) => ca,
            Err(violation) => return Ok(Err(violation)),
        };
        let name = ca.name_any();
        let uid = ca.uid().unwrap_or_default();
        let verdict = match self.verdict(&name, &uid) {
            Some(verdict) => verdict,
            None => {
                self.context.claim(&name);
                self.first_verdict(&name, &uid).await?
            }
        };
        match &verdict.signing {
            Ok(signing) => Ok(Ok(Issuer {
                name,
                authority: signing.authority.clone(),
                policy: ca.spec.policy.clone(),
                trust: signing.trust.clone(),
            })),
            Err(detail) => Ok(Err(certflow_diagnostics::issuer_not_ready(
                &name,
                Some(detail),
            ))),
        }
    }

    /// The named CertificateAuthority, or the cluster default when `name` is
    /// `None`.
    fn find(&self, name: Option<&str>) -> Result<Arc<CertificateAuthority>, Violation> {
        let cas: &Store<CertificateAuthority> = self.context.cas();
        let all = cas.state();
        let found = match name {
            Some(name) => cas.get(&ObjectRef::new(name)),
            None => all.iter().find(|ca| ca.spec.is_default()).cloned(),
        };
        found.ok_or_else(|| {
            let mut existing: Vec<String> = all.iter().map(|ca| ca.name_any()).collect();
            existing.sort();
            certflow_diagnostics::issuer_not_found(name.unwrap_or_default(), &existing)
        })
    }

    fn verdict(&self, name: &str, uid: &str) -> Option<Arc<Verdict>> {
        self.snapshot
            .borrow()
            .get(name)
            .filter(|verdict| verdict.uid == uid)
            .cloned()
    }

    /// Waits for the controller's first verdict on CA `name` (`uid`).
    async fn first_verdict(&self, name: &str, uid: &str) -> Result<Arc<Verdict>, Error> {
        let mut snapshot = self.snapshot.clone();
        let decided =
            |snapshot: &Snapshot| snapshot.get(name).is_some_and(|verdict| verdict.uid == uid);
        let waited = tokio::time::timeout(FIRST_LOOK_WAIT, snapshot.wait_for(decided)).await;
        if let Ok(Ok(snapshot)) = waited
            && let Some(verdict) = snapshot.get(name)
        {
            return Ok(verdict.clone());
        }
        // No variant of the signer's error says "the controller is behind";
        // it is behind because the API server is (loading or generating
        // takes a few API calls), and a kube error of this kind is
        // transient: the item is retried with backoff.
        Err(Error::Kube {
            action: "waiting for the CertificateAuthority controller",
            source: kube::Error::Service(
                format!(
                    "CertificateAuthority {name:?}'s key pair was not loaded within {}s",
                    FIRST_LOOK_WAIT.as_secs()
                )
                .into(),
            ),
        })
    }
}
