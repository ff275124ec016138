//! A mixed workload for fault tests: valid ServiceCertificates that must end
//! issued, and broken ones (a DNS-name typo the issuer's policy refuses)
//! whose consuming Pods must end with a Warning. Every create is retried, so
//! the workload can be applied while the API server comes and goes, and
//! [`Workload::problems`] says what, if anything, did not end as promised.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use certflow_api::{
    ConditionStatus, IssuerPolicy, IssuerRef, ServiceCertificate, ServiceCertificateSpec,
};
use k8s_openapi::api::core::v1::{
    Container, Pod, PodSpec, Secret, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::{Client, ResourceExt as _};

use crate::fixtures::create_generated_ca;

/// The reason the signer gives for a name outside the issuer's policy.
pub const BROKEN_REASON: &str = "PolicyViolation";

/// The namespace, CertificateAuthority and object names of one workload.
pub struct Workload {
    client: Client,
    namespace: String,
    issuer: String,
    valid: Vec<String>,
    broken: Vec<String>,
}

impl std::fmt::Debug for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workload")
            .field("namespace", &self.namespace)
            .field("issuer", &self.issuer)
            .field("valid", &self.valid.len())
            .field("broken", &self.broken.len())
            .finish_non_exhaustive()
    }
}

impl Workload {
    /// A workload in `namespace` with a generated CA whose policy allows
    /// only `*.<namespace>.svc` and `*.<namespace>.svc.cluster.local`.
    pub async fn create_authority(client: Client, namespace: &str) -> Self {
        let issuer = certflow_testenv::unique_name("faults-ca");
        let policy = IssuerPolicy {
            allowed_dns_names: vec![
                "*.{namespace}.svc".into(),
                "*.{namespace}.svc.cluster.local".into(),
            ],
            ..IssuerPolicy::default()
        };
        retry("create the CertificateAuthority", || {
            create_generated_ca(&client, &issuer, Some(policy.clone()))
        })
        .await;
        Self {
            client,
            namespace: namespace.to_owned(),
            issuer,
            valid: Vec::new(),
            broken: Vec::new(),
        }
    }

    /// The valid ServiceCertificates' names.
    /// The CertificateAuthority every certificate of this workload names.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn valid(&self) -> &[String] {
        &self.valid
    }

    /// The broken ServiceCertificates' names (each also names its Pod).
    pub fn broken(&self) -> &[String] {
        &self.broken
    }

    /// Creates valid ServiceCertificate `name` for `name.<namespace>.svc`.
    pub async fn add_valid(&mut self, name: &str) {
        self.add_valid_with(name, |_| {}).await;
    }

    /// [`Workload::add_valid`] with the spec changed by `customize` first
    /// (e.g. a short `duration`), which must keep it valid.
    pub async fn add_valid_with(
        &mut self,
        name: &str,
        customize: impl FnOnce(&mut ServiceCertificateSpec),
    ) {
        let dns_name = format!("{name}.{}.svc", self.namespace);
        self.create_certificate(name, &dns_name, customize).await;
        self.valid.push(name.to_owned());
    }

    /// Creates Pod `name` mounting Secret `<name>-tls`, then the broken
    /// ServiceCertificate `name` for it (`...svc.cluster.locl`).
    pub async fn add_broken(&mut self, name: &str) {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let pod = consuming_pod(name, &secret_name(name));
        retry(&format!("create Pod {name}"), || {
            create_unless_exists(&pods, &pod)
        })
        .await;
        let typo = format!("{name}.{}.svc.cluster.locl", self.namespace);
        self.create_certificate(name, &typo, |_| {}).await;
        self.broken.push(name.to_owned());
    }

    async fn create_certificate(
        &self,
        name: &str,
        dns_name: &str,
        customize: impl FnOnce(&mut ServiceCertificateSpec),
    ) {
        let scerts: Api<ServiceCertificate> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut spec = ServiceCertificateSpec {
            secret_name: secret_name(name),
            dns_names: vec![dns_name.to_owned()],
            issuer_ref: Some(IssuerRef::named(self.issuer.clone())),
            ..ServiceCertificateSpec::default()
        };
        customize(&mut spec);
        let scert = ServiceCertificate::new(name, spec);
        retry(&format!("create ServiceCertificate {name}"), || {
            create_unless_exists(&scerts, &scert)
        })
        .await;
    }

    /// Everything that did not end as promised: a valid certificate without
    /// a Ready status, or whose Secret's key does not match its certificate
    /// or whose names differ from the spec; a broken one without Ready=False
    /// and [`BROKEN_REASON`], or whose Pod has no Warning from the reporter.
    /// Empty when every promise holds. Errors reaching the API count as
    /// problems, so callers poll this with a deadline.
    pub async fn problems(&self) -> Vec<String> {
        match self.try_problems().await {
            Ok(problems) => problems,
            Err(error) => vec![format!("the API server did not answer: {error}")],
        }
    }

    /// Polls [`Workload::problems`] until none is left or `timeout` passed;
    /// returns what is still broken (empty when every promise holds).
    pub async fn settle(&self, timeout: Duration) -> Vec<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let problems = self.problems().await;
            if problems.is_empty() || std::time::Instant::now() >= deadline {
                return problems;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn try_problems(&self) -> Result<Vec<String>, kube::Error> {
        let params = ListParams::default();
        let scerts: BTreeMap<String, ServiceCertificate> =
            Api::<ServiceCertificate>::namespaced(self.client.clone(), &self.namespace)
                .list(&params)
                .await?
                .into_iter()
                .map(|scert| (scert.name_any(), scert))
                .collect();
        let secrets: BTreeMap<String, Secret> =
            Api::<Secret>::namespaced(self.client.clone(), &self.namespace)
                .list(&params)
                .await?
                .into_iter()
                .map(|secret| (secret.name_any(), secret))
                .collect();
        let warned_pods: BTreeSet<String> =
            Api::<Event>::namespaced(self.client.clone(), &self.namespace)
                .list(&params)
                .await?
                .into_iter()
                .filter(|event| {
                    event.type_.as_deref() == Some("Warning")
                        && event.reporting_controller.as_deref() == Some("certflow-reporter")
                })
                .filter_map(|event| event.regarding)
                .filter(|regarding| regarding.kind.as_deref() == Some("Pod"))
                .filter_map(|regarding| regarding.name)
                .collect();

        let mut problems = Vec::new();
        for name in &self.valid {
            if let Err(problem) = issued(scerts.get(name), &secrets) {
                problems.push(format!("valid {name}: {problem}"));
            }
        }
        for name in &self.broken {
            let ready = scerts
                .get(name)
                .and_then(ServiceCertificate::ready_condition);
            match ready {
                Some(c) if c.status == ConditionStatus::False && c.reason == BROKEN_REASON => {}
                other => problems.push(format!(
                    "broken {name}: Ready is {:?}, want False/{BROKEN_REASON}",
                    other.map(|c| (&c.status, &c.reason))
                )),
            }
            if !warned_pods.contains(name) {
                problems.push(format!("broken {name}: no Warning on Pod {name}"));
            }
            if secrets.contains_key(&secret_name(name)) {
                problems.push(format!("broken {name}: a Secret was written"));
            }
        }
        Ok(problems)
    }
}

/// Whether `scert` is Ready with a Secret whose key matches its certificate
/// and whose names are exactly the spec's.
fn issued(
    scert: Option<&ServiceCertificate>,
    secrets: &BTreeMap<String, Secret>,
) -> Result<(), String> {
    let scert = scert.ok_or("the ServiceCertificate is missing")?;
    if !scert.ready_condition().is_some_and(|c| c.is_true()) {
        return Err(format!("not Ready: {:?}", scert.ready_condition()));
    }
    let secret = secrets
        .get(&scert.spec.secret_name)
        .ok_or("Ready but its Secret is missing")?;
    let inspection = crate::fixtures::inspect_secret(secret)
        .map_err(|error| format!("the Secret does not parse: {error}"))?;
    if !inspection.key_matches {
        return Err("tls.key does not match tls.crt".into());
    }
    if !inspection.signed_by_ca {
        return Err("tls.crt is not signed by ca.crt".into());
    }
    if inspection.dns_names != scert.spec.dns_names {
        return Err(format!(
            "names {:?} differ from the spec's {:?}",
            inspection.dns_names, scert.spec.dns_names
        ));
    }
    Ok(())
}

/// The Secret a workload certificate `name` is written to.
pub fn secret_name(name: &str) -> String {
    format!("{name}-tls")
}

/// A bare Pod mounting `secret`; without a kubelet it stays Pending, which
/// is all the reporter needs to find it.
pub fn consuming_pod(name: &str, secret: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("registry.invalid/app:1".into()),
                volume_mounts: Some(vec![VolumeMount {
                    name: "tls".into(),
                    mount_path: "/tls".into(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                }]),
                ..Container::default()
            }],
            volumes: Some(vec![Volume {
                name: "tls".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret.to_owned()),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            }]),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

async fn create_unless_exists<K>(api: &Api<K>, object: &K) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(error) => Err(error),
    }
}

/// Retries `attempt` every 500 ms for up to two minutes: long enough for
/// the API server to come back from any fault a test injects.
async fn retry<F, Fut, T>(what: &str, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        match attempt().await {
            Ok(_) => return,
            Err(kube::Error::Api(status)) if status.code == 409 => return,
            Err(error) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{what}: still failing after two minutes: {error}"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
