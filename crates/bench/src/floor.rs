//! The floor beside scenario 1's burst: what the same control plane does
//! when the benchmark driver itself performs the writes a first issuance
//! cannot avoid, with no certflow running. For each of `count` names it
//! creates the ServiceCertificate (as the burst does), then creates a Secret
//! of the same size and content shape as one certflow issued and patches
//! the ServiceCertificate's status to Ready, 32 at a time like the signer's
//! default `--concurrency`. These are every write certflow's burst performs
//! (a routine issuance writes no Event), so certflow's certificates/s
//! divided by this rate is the share of the API server's own limit that
//! certflow reaches, and what remains between the two is certflow's own
//! cost: watches, the queue, signing.
//!
//! Observes kube-apiserver's request counters; writes, in a namespace of its
//! own, ServiceCertificates (whose issuer does not exist: nothing issues
//! them), Secrets labelled as certflow's and status; touches nothing else.

use std::time::Instant;

use certflow_api::{KeyAlgorithm, ServiceCertificate};
use certflow_testenv::TestEnv;
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::apiserver::{Counted, RequestCounts};
use crate::scenarios::spec;

/// ServiceCertificates created at once, as in the burst.
const CREATE_CONCURRENCY: usize = 32;
/// Secret and status writes at once: the signer's default `--concurrency`.
const WRITE_CONCURRENCY: usize = 32;

/// One floor run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Floor {
    pub count: usize,
    /// From the first create until the last status patch was answered.
    pub seconds: f64,
    /// Certificates' worth of writes (ServiceCertificate, Secret, status)
    /// per second.
    pub per_second: f64,
    /// Bytes of `data` in each Secret written (copied from an issued one).
    pub secret_data_bytes: usize,
    /// Every request the API server served during the run, per certificate.
    pub requests_per_certificate: f64,
    pub requests: Vec<Counted>,
}

/// Runs the floor once in a fresh namespace of `env`, writing copies of
/// `issued` (a Secret certflow issued) under each certificate's name.
pub async fn floor(env: &TestEnv, count: usize, issued: &Secret) -> anyhow::Result<Floor> {
    let client = env.client().await?;
    let ns = env.create_namespace("bench-floor").await?;
    let scerts: Api<ServiceCertificate> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret_data_bytes = issued
        .data
        .iter()
        .flatten()
        .map(|(_, value)| value.0.len())
        .sum();

    let before = RequestCounts::fetch(&client).await?;
    let started = Instant::now();
    // Names flow from the creates to the writes as each create is answered,
    // as work items follow ServiceCertificates in the burst.
    let (created, to_write) = futures::channel::mpsc::unbounded::<String>();
    let creates = {
        let scerts = scerts.clone();
        let ns = ns.clone();
        async move {
            futures::stream::iter(0..count)
                .map(anyhow::Ok)
                .try_for_each_concurrent(CREATE_CONCURRENCY, |i| {
                    let (scerts, created) = (scerts.clone(), created.clone());
                    let name = format!("floor-{i}");
                    let spec = spec(
                        &name,
                        "floor-no-issuer",
                        KeyAlgorithm::Ecdsa,
                        format!("{name}.{ns}.svc"),
                    );
                    async move {
                        scerts
                            .create(
                                &PostParams::default(),
                                &ServiceCertificate::new(&name, spec),
                            )
                            .await?;
                        created.unbounded_send(name)?;
                        Ok(())
                    }
                })
                .await
            // `created` is dropped here, which ends the writes' stream.
        }
    };
    let writes = to_write
        .map(anyhow::Ok)
        .try_for_each_concurrent(WRITE_CONCURRENCY, |name| {
            let (scerts, secrets) = (scerts.clone(), secrets.clone());
            async move {
                secrets
                    .create(&PostParams::default(), &copy_of(issued, &name))
                    .await?;
                scerts
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(ready(&name)))
                    .await?;
                Ok(())
            }
        });
    futures::try_join!(creates, writes)?;
    let seconds = started.elapsed().as_secs_f64();
    let during = RequestCounts::fetch(&client)
        .await?
        .since(&before)
        .without_resource("/metrics");
    Ok(Floor {
        count,
        seconds,
        per_second: count as f64 / seconds,
        secret_data_bytes,
        requests_per_certificate: during.total() / count.max(1) as f64,
        requests: during.breakdown(),
    })
}

/// `issued`'s type, labels, annotations and data under `<name>-tls`.
fn copy_of(issued: &Secret, name: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(format!("{name}-tls")),
            labels: issued.metadata.labels.clone(),
            annotations: issued.metadata.annotations.clone(),
            ..ObjectMeta::default()
        },
        type_: issued.type_.clone(),
        data: issued.data.clone(),
        ..Secret::default()
    }
}

/// A status like the one the signer writes for a first issuance.
fn ready(name: &str) -> serde_json::Value {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    serde_json::json!({
        "status": {
            "conditions": [{
                "type": "Ready",
                "status": "True",
                "reason": "Issued",
                "message": format!(
                    "Certificate issued by CertificateAuthority \"floor\" into Secret \
                     \"{name}-tls\"; valid until 2027-03-03T00:00:00Z."
                ),
                "lastTransitionTime": now,
                "observedGeneration": 1,
            }],
            "observedGeneration": 1,
            "notBefore": now,
            "notAfter": "2027-03-03T00:00:00Z",
            "renewalTime": "2027-02-01T00:00:00Z",
            "serialNumber": "4f2c9a7d1e0b3c5a6d8e9f1a2b3c4d5e6f7a8b9c",
            "lastFailure": null,
            "failedAttempts": 0,
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;

    #[test]
    fn the_copy_has_the_issued_secrets_content_under_the_certificates_name() {
        let issued = Secret {
            metadata: ObjectMeta {
                name: Some("burst-0-tls".into()),
                namespace: Some("bench-burst-1".into()),
                resource_version: Some("42".into()),
                labels: Some(BTreeMap::from([(
                    "certflow.io/managed".into(),
                    "true".into(),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(BTreeMap::from([(
                "tls.crt".into(),
                ByteString(vec![7; 900]),
            )])),
            ..Secret::default()
        };
        let copy = copy_of(&issued, "floor-3");
        assert_eq!(copy.metadata.name.as_deref(), Some("floor-3-tls"));
        assert_eq!(copy.metadata.namespace, None);
        assert_eq!(copy.metadata.resource_version, None);
        assert_eq!(copy.metadata.labels, issued.metadata.labels);
        assert_eq!(copy.type_, issued.type_);
        assert_eq!(copy.data, issued.data);
    }

    #[test]
    fn the_status_patch_says_ready_for_generation_one() {
        let patch = ready("floor-3");
        assert_eq!(patch["status"]["conditions"][0]["status"], "True");
        assert_eq!(patch["status"]["observedGeneration"], 1);
        assert!(
            patch["status"]["conditions"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("\"floor-3-tls\""))
        );
    }
}
