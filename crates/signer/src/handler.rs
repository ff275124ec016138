//! Observes one work item at a time, its ServiceCertificate (from the
//! watch cache in [`crate::caches`], read only when the cache cannot answer)
//! and, when status names an issued certificate, its Secret; writes the
//! ServiceCertificate's Secret and status and publishes the outcome; never
//! touches a Secret without certflow's managed label, and never writes when
//! nothing changed.
//!
//! A first issuance costs two API requests: the Secret is created without
//! being read (the create-only write fails if any Secret of that name
//! exists, and only then is it read and planned for), and status is
//! patched. A renewal or re-issue reads the Secret it replaces, then
//! applies it with that resourceVersion as a precondition and patches
//! status: three.

use std::sync::Arc;
use std::time::SystemTime;

use certflow_api::condition::{READY, set_condition};
use certflow_api::{Condition, ConditionStatus, ServiceCertificate};
use certflow_bus::{Publisher, TraceId};
use certflow_diagnostics::Violation;
use certflow_pki::{Inspection, PrivateKey};
use certflow_proto::v1::{Failed, Issued, Outcome, SCHEMA_VERSION, WorkItem, outcome};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt as _};
use tracing::{debug, info, instrument};

use crate::Error;
use crate::authority::{Authorities, Issuer};
use crate::caches::{Caches, Lookup};
use crate::metrics::Metrics;
use crate::plan::{Plan, plan, renewal_time};
use crate::request::{key_spec, leaf_request, rfc3339, secret};

/// What became of a work item that was handled without error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// A new certificate was written.
    Issued { serial: String },
    /// The Secret was already right; at most the status was updated.
    UpToDate,
    /// The request was refused and reported (reason word).
    Failed { reason: &'static str },
    /// Nothing to do: the object is gone, replaced, or has a newer generation.
    Skipped { why: &'static str },
}

/// Issues certificates for work items.
#[derive(Clone)]
pub struct Handler {
    client: Client,
    caches: Caches,
    authorities: Arc<Authorities>,
    publisher: Publisher,
    metrics: Metrics,
    field_manager: String,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("field_manager", &self.field_manager)
            .finish_non_exhaustive()
    }
}

impl Handler {
    pub fn new(
        client: Client,
        caches: Caches,
        authorities: Arc<Authorities>,
        publisher: Publisher,
        metrics: Metrics,
        field_manager: &str,
    ) -> Self {
        Self {
            client,
            caches,
            authorities,
            publisher,
            metrics,
            field_manager: field_manager.to_owned(),
        }
    }

    /// Handles `item`. Returns an error only for what a retry may fix; a
    /// request that can never succeed is reported and returns `Failed`.
    #[instrument(skip_all, fields(namespace = %item.namespace, name = %item.name, generation = item.generation, trace_id = %trace))]
    pub async fn handle(&self, item: &WorkItem, trace: &TraceId) -> Result<Handled, Error> {
        let Some(scert) = self.service_certificate(item).await? else {
            return Ok(Handled::Skipped { why: "deleted" });
        };
        if scert.uid().as_deref() != Some(item.uid.as_str()) {
            return Ok(Handled::Skipped { why: "replaced" });
        }
        if scert.metadata.generation.unwrap_or_default() > item.generation {
            return Ok(Handled::Skipped {
                why: "stale_generation",
            });
        }
        let issuer = match self.authorities.resolve(&scert).await? {
            Ok(issuer) => issuer,
            Err(violation) => return self.refuse(&scert, item, trace, violation).await,
        };
        if let Some(violation) = certflow_diagnostics::diagnose(
            &scert.spec,
            &item.namespace,
            &issuer.name,
            issuer.policy.as_ref(),
        ) {
            return self.refuse(&scert, item, trace, violation).await;
        }
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &item.namespace);
        // Status names no certificate: none was ever written, so the Secret
        // is created without reading it first; a Secret that exists anyway
        // makes the create fail, and is then read and planned for (caches.rs).
        let mut existing = if expects_secret(&scert) {
            self.read_secret(&secrets, &scert, "certificate_recorded")
                .await?
        } else {
            None
        };
        let mut created_blind = existing.is_none();
        loop {
            let now = SystemTime::now();
            let (why, reuse_key) = match plan(
                &scert,
                existing.as_ref(),
                issuer.authority.fingerprint(),
                now,
            ) {
                Plan::Refuse(violation) => {
                    return self.refuse(&scert, item, trace, violation).await;
                }
                Plan::UpToDate(inspection) => {
                    self.confirm(&scert, item, trace, &issuer, &Summary::from(&inspection))
                        .await?;
                    return Ok(Handled::UpToDate);
                }
                Plan::Issue { why, reuse_key } => (why, reuse_key),
            };
            debug!(why = why.as_str(), "issuing");
            let key = match reuse_key {
                Some(pem) => PrivateKey::from_pem(&pem)?,
                None => self.generate_key(key_spec(&scert.spec)).await?,
            };
            let request = leaf_request(
                &scert.spec,
                &item.namespace,
                issuer.policy.as_ref(),
                now,
                &issuer.authority,
            )
            .map_err(|message| Error::InvalidObject {
                namespace: item.namespace.clone(),
                name: item.name.clone(),
                message,
            })?;
            let issued = issuer.served(issuer.authority.issue(&request, &key)?);
            let desired = secret(
                &scert,
                &issuer.name,
                &issued,
                &key.to_pkcs8_pem(),
                issuer.trust_bundle(),
            );
            match self
                .write_secret(&secrets, existing.as_ref(), &desired)
                .await
            {
                Ok(()) => {}
                // Created without reading, and a Secret was there after
                // all: read it and plan again, once (the create-only write
                // never replaced it).
                Err(err) if created_blind && already_exists(&err) => {
                    created_blind = false;
                    existing = self.read_secret(&secrets, &scert, "secret_existed").await?;
                    continue;
                }
                Err(err) => return Err(err),
            }
            // Counted once the Secret holds it: if confirming fails, the
            // retry finds the Secret up to date and must not count it
            // again, nor leave it uncounted.
            self.metrics.issued(why.as_str());
            self.confirm(&scert, item, trace, &issuer, &Summary::from(&issued))
                .await?;
            info!(serial = %issued.serial, why = why.as_str(), secret = %scert.spec.secret_name, "certificate issued");
            return Ok(Handled::Issued {
                serial: issued.serial,
            });
        }
    }

    /// The item's ServiceCertificate: from the watch cache when it holds
    /// this object at the item's generation or later, otherwise read (a
    /// cache miss is never taken for a deletion; only a 404 is).
    async fn service_certificate(
        &self,
        item: &WorkItem,
    ) -> Result<Option<Arc<ServiceCertificate>>, Error> {
        let why = match self.caches.service_certificate(
            &item.namespace,
            &item.name,
            &item.uid,
            item.generation,
        ) {
            Lookup::Fresh(scert) => return Ok(Some(scert)),
            Lookup::Read(why) => why,
        };
        self.metrics.api_read("servicecertificate", why);
        let scerts: Api<ServiceCertificate> = Api::namespaced(self.client.clone(), &item.namespace);
        let scert = scerts
            .get_opt(&item.name)
            .await
            .map_err(Error::kube("reading the ServiceCertificate"))?;
        Ok(scert.map(Arc::new))
    }

    /// Reads `scert`'s Secret (`why`: for the metric).
    async fn read_secret(
        &self,
        secrets: &Api<Secret>,
        scert: &ServiceCertificate,
        why: &'static str,
    ) -> Result<Option<Secret>, Error> {
        self.metrics.api_read("secret", why);
        secrets
            .get_opt(&scert.spec.secret_name)
            .await
            .map_err(Error::kube("reading the Secret"))
    }

    /// Generates a key: RSA, which takes tens of milliseconds, off the async
    /// workers; an elliptic-curve key (well under a millisecond) in place:
    /// the hand-over to the blocking pool and back cost more CPU than the
    /// key (the signer's CPU per ECDSA issuance fell by about 7 % without
    /// it, docs/design/20261203-burst-cpu.md).
    async fn generate_key(&self, spec: certflow_pki::KeySpec) -> Result<PrivateKey, Error> {
        if !matches!(spec, certflow_pki::KeySpec::Rsa { .. }) {
            return Ok(self
                .metrics
                .time_key_generation(|| PrivateKey::generate(spec))?);
        }
        let metrics = self.metrics.clone();
        let key = tokio::task::spawn_blocking(move || {
            metrics.time_key_generation(|| PrivateKey::generate(spec))
        })
        .await
        .map_err(Error::Join)??;
        Ok(key)
    }

    /// Reports a work item that will not be retried any more (its
    /// deliveries ran out, or it failed in a way no retry fixes) to the
    /// ServiceCertificate's owner, if the object still exists.
    pub async fn give_up(
        &self,
        item: &WorkItem,
        trace: &TraceId,
        attempts: u32,
        error: &Error,
    ) -> Result<(), Error> {
        let scerts: Api<ServiceCertificate> = Api::namespaced(self.client.clone(), &item.namespace);
        let Some(scert) = scerts
            .get_opt(&item.name)
            .await
            .map_err(Error::kube("reading the ServiceCertificate"))?
        else {
            return Ok(());
        };
        let violation = if error.is_transient() {
            certflow_diagnostics::retries_exhausted(attempts, &error.to_string())
        } else {
            certflow_diagnostics::issuance_failed(&error.to_string())
        };
        self.refuse(&scert, item, trace, violation)
            .await
            .map(|_| ())
    }

    /// Creates the Secret if none exists (create fails if one appeared in
    /// the meantime, so a Secret someone else just made is never taken), or
    /// server-side-applies it with the read resourceVersion as a
    /// precondition, so a concurrent edit is never overwritten blindly.
    async fn write_secret(
        &self,
        secrets: &Api<Secret>,
        existing: Option<&Secret>,
        desired: &Secret,
    ) -> Result<(), Error> {
        let name = desired.name_any();
        match existing {
            None => {
                let params = PostParams {
                    field_manager: Some(self.field_manager.clone()),
                    ..PostParams::default()
                };
                secrets
                    .create(&params, desired)
                    .await
                    .map_err(Error::kube("creating the Secret"))?;
            }
            Some(current) => {
                let mut desired = desired.clone();
                desired.metadata.resource_version = current.resource_version();
                // Apply needs the type metadata that typed objects leave out.
                let applied = serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": desired.metadata,
                    "type": desired.type_,
                    "data": desired.data,
                });
                let params = PatchParams::apply(&self.field_manager).force();
                secrets
                    .patch(&name, &params, &Patch::Apply(&applied))
                    .await
                    .map_err(Error::kube("applying the Secret"))?;
            }
        }
        self.metrics.secret_written();
        Ok(())
    }

    /// Publishes the `Issued` outcome and records success in status, unless
    /// status already says exactly this (then nothing is written).
    async fn confirm(
        &self,
        scert: &ServiceCertificate,
        item: &WorkItem,
        trace: &TraceId,
        issuer: &Issuer,
        cert: &Summary,
    ) -> Result<(), Error> {
        let generation = scert.metadata.generation.unwrap_or_default();
        let status = scert.status.clone().unwrap_or_default();
        let already = status.observed_generation == Some(generation)
            && status.serial_number.as_deref() == Some(cert.serial.as_str())
            && scert.ready_condition().is_some_and(Condition::is_true);
        if already {
            return Ok(());
        }
        let renewal = renewal_time(scert, cert.not_before, cert.not_after);
        let mut conditions = status.conditions;
        let message = issued_message(
            &issuer.name,
            &scert.spec.secret_name,
            cert.not_after,
            issuer.authority.not_after(),
        );
        set_condition(
            &mut conditions,
            ready(ConditionStatus::True, "Issued", message, generation),
            now(),
        );
        let patch = serde_json::json!({
            "status": {
                "conditions": conditions,
                "observedGeneration": generation,
                "notBefore": rfc3339(cert.not_before),
                "notAfter": rfc3339(cert.not_after),
                "renewalTime": rfc3339(renewal),
                "serialNumber": cert.serial,
                "lastFailure": null,
                "failedAttempts": 0,
            }
        });
        let outcome = self.outcome(
            scert,
            item,
            outcome::Result::Issued(Issued {
                serial_number: cert.serial.clone(),
                not_before: Some(timestamp(cert.not_before)),
                not_after: Some(timestamp(cert.not_after)),
                issuer: issuer.name.clone(),
            }),
        );
        // Outcome first: if the status write then fails, the redelivery sees
        // a status that differs and publishes again, which JetStream drops
        // as a duplicate. The other order could lose the outcome for good.
        self.publisher.publish_outcome(&outcome, trace).await?;
        self.patch_status(scert, &patch).await
    }

    /// Records a permanent failure in status and publishes the `Failed`
    /// outcome that the reporter turns into Events.
    async fn refuse(
        &self,
        scert: &ServiceCertificate,
        item: &WorkItem,
        trace: &TraceId,
        violation: Violation,
    ) -> Result<Handled, Error> {
        let reason = violation.reason.as_str();
        self.metrics.failed(reason);
        let mut failure = violation.failure(&scert.name_any());
        let generation = scert.metadata.generation.unwrap_or_default();
        let status = scert.status.clone().unwrap_or_default();
        // The same refusal of the same generation, already recorded: status
        // is not written again (no churn on the API server), but the outcome
        // is, so the reporter keeps the Warning fresh: the API server
        // deletes Events after an hour (--event-ttl), while the mistake
        // persists until the owner fixes it.
        let recorded =
            status.last_failure.as_ref().is_some_and(|last| {
                last.reason == failure.reason && last.message == failure.message
            }) && status.observed_generation == Some(generation)
                && scert.ready_condition().is_some_and(|c| !c.is_true());
        let attempts = status.failed_attempts.unwrap_or_default().saturating_add(1);
        let outcome = self.outcome(
            scert,
            item,
            outcome::Result::Failed(Failed {
                reason: reason.to_owned(),
                field_path: failure.field_path.clone().unwrap_or_default(),
                value: failure.value.clone().unwrap_or_default(),
                message: failure.message.clone(),
                suggestion: violation.suggestion.clone().unwrap_or_default(),
                permanent: true,
                attempts,
            }),
        );
        // Outcome first, for the reason given in `confirm`.
        self.publisher.publish_outcome(&outcome, trace).await?;
        if recorded {
            return Ok(Handled::Failed { reason });
        }
        let mut conditions = status.conditions;
        let condition = ready(
            ConditionStatus::False,
            reason,
            failure.message.clone(),
            generation,
        );
        set_condition(&mut conditions, condition, now());
        failure.time = Some(now());
        let patch = serde_json::json!({
            "status": {
                "conditions": conditions,
                "observedGeneration": generation,
                "lastFailure": failure,
                "failedAttempts": attempts,
            }
        });
        self.patch_status(scert, &patch).await?;
        info!(reason, field = %violation.field, message = %failure.message, "request refused");
        Ok(Handled::Failed { reason })
    }

    async fn patch_status(
        &self,
        scert: &ServiceCertificate,
        patch: &serde_json::Value,
    ) -> Result<(), Error> {
        let api: Api<ServiceCertificate> =
            Api::namespaced(self.client.clone(), &scert.namespace().unwrap_or_default());
        api.patch_status(
            &scert.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
        .map_err(Error::kube("writing ServiceCertificate status"))?;
        Ok(())
    }

    fn outcome(
        &self,
        scert: &ServiceCertificate,
        item: &WorkItem,
        result: outcome::Result,
    ) -> Outcome {
        Outcome {
            schema_version: SCHEMA_VERSION,
            namespace: item.namespace.clone(),
            name: item.name.clone(),
            uid: item.uid.clone(),
            generation: scert.metadata.generation.unwrap_or_default(),
            secret_name: scert.spec.secret_name.clone(),
            result: Some(result),
            occurred_at: Some(timestamp(SystemTime::now())),
            work_id: item.dedup_id.clone(),
        }
    }
}

/// Whether status says a certificate was written, so a Secret should exist.
fn expects_secret(scert: &ServiceCertificate) -> bool {
    scert
        .status
        .as_ref()
        .is_some_and(|status| status.serial_number.is_some())
}

/// A create refused because an object of that name exists.
fn already_exists(err: &Error) -> bool {
    matches!(err, Error::Kube { source: kube::Error::Api(status), .. } if status.code == 409)
}

/// The Ready message of an issued certificate. Leaves never outlive their
/// CA (request.rs caps them at its notAfter); the message says when that
/// happened, or the owner reads a validity shorter than spec.duration as a
/// bug.
fn issued_message(
    issuer: &str,
    secret_name: &str,
    not_after: SystemTime,
    ca_not_after: SystemTime,
) -> String {
    let mut message = format!(
        "Certificate issued by CertificateAuthority {issuer:?} into Secret {secret_name:?}; \
         valid until {}",
        rfc3339(not_after)
    );
    if not_after >= ca_not_after {
        message.push_str(&format!(
            ", shortened to CertificateAuthority {issuer:?}'s own expiry"
        ));
    }
    message.push('.');
    message
}

fn ready(status: ConditionStatus, reason: &str, message: String, generation: i64) -> Condition {
    let mut condition = Condition::new(READY, status, reason, message);
    condition.observed_generation = Some(generation);
    condition
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

fn timestamp(time: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(time)
}

/// What status records about the certificate in the Secret.
#[derive(Debug)]
struct Summary {
    serial: String,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl From<&Inspection> for Summary {
    fn from(inspection: &Inspection) -> Self {
        Self {
            serial: inspection.serial.clone(),
            not_before: inspection.not_before,
            not_after: inspection.not_after,
        }
    }
}

impl From<&certflow_pki::Issued> for Summary {
    fn from(issued: &certflow_pki::Issued) -> Self {
        Self {
            serial: issued.serial.clone(),
            not_before: issued.not_before,
            not_after: issued.not_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_secret_is_read_first_only_when_status_names_an_issued_certificate() {
        let mut scert = crate::request::tests::fixture_scert();
        assert!(!expects_secret(&scert), "no status");
        scert.status = Some(certflow_api::ServiceCertificateStatus::default());
        assert!(!expects_secret(&scert), "refused before any issuance");
        scert.status = Some(certflow_api::ServiceCertificateStatus {
            serial_number: Some("01ab".into()),
            ..Default::default()
        });
        assert!(expects_secret(&scert));
    }

    #[test]
    fn only_a_409_from_the_api_counts_as_a_secret_that_already_exists() {
        let api_error = |code: u16| {
            let status = kube::core::Status::failure("secrets \"web-tls\" already exists", "x")
                .with_code(code);
            Error::kube("creating the Secret")(kube::Error::Api(status.boxed()))
        };
        assert!(already_exists(&api_error(409)));
        assert!(!already_exists(&api_error(422)));
        assert!(!already_exists(&api_error(500)));
        assert!(!already_exists(&Error::InvalidObject {
            namespace: "shop".into(),
            name: "web".into(),
            message: "409".into(),
        }));
    }

    #[test]
    fn the_ready_message_says_when_the_validity_was_cut_to_the_cas_expiry() {
        let ca_not_after = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let shortened = issued_message("internal", "web-tls", ca_not_after, ca_not_after);
        assert_eq!(
            shortened,
            "Certificate issued by CertificateAuthority \"internal\" into Secret \"web-tls\"; \
             valid until 2033-05-18T03:33:20Z, shortened to CertificateAuthority \"internal\"'s \
             own expiry."
        );
        let full = issued_message(
            "internal",
            "web-tls",
            ca_not_after - Duration::from_secs(86_400),
            ca_not_after,
        );
        assert_eq!(
            full,
            "Certificate issued by CertificateAuthority \"internal\" into Secret \"web-tls\"; \
             valid until 2033-05-17T03:33:20Z."
        );
    }
}
