//! Observes the signer's outcomes (handed over by [`crate::consumer`]) and
//! the ServiceCertificate cache; writes, through [`Delivery`], the Events
//! each outcome implies; keeps nothing of its own and never reads the API
//! for the ServiceCertificate (the cache is the truth, an outcome only says
//! when to tell).
//!
//! Who is told what:
//!
//! | outcome | ServiceCertificate | consuming Pods and their workloads |
//! |---|---|---|
//! | `Failed` | Warning | Warning |
//! | `Failed`, but the cache shows it issued since, or re-created | — | — |
//! | `Issued`, ending the failure the status reported | Normal `Issued` | Normal `Issued` |
//! | `Issued`, nothing failing | nothing (the status says it) | nothing |
//!
//! The signer publishes an outcome before it writes the status, so the
//! cache may not show a `Failed` outcome's failure yet: the outcome's words
//! are the ones the status will hold (the same reason and sentence), and
//! they are what is delivered. An `Issued` outcome ends a failure when the
//! cache still shows an older one, or shows that this very serial cleared
//! one ([`crate::certificates::Cleared`]).

use std::sync::Arc;

use certflow_proto::v1::{Failed, Issued, Outcome, outcome};
use tracing::{debug, info, instrument};

use crate::Error;
use crate::certificates::{CertificateSummary, SharedCertificates};
use crate::deliver::Delivery;
use crate::events::ObjectRef;
use crate::metrics::Metrics;
use crate::notices::{failure_notice, issued_notice};

/// What became of an outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    /// A failure was reported to this many objects.
    Failed { recipients: usize },
    /// An issuance was reported to this many objects; `resolved` when it
    /// ended a failure.
    Issued { recipients: usize, resolved: bool },
    /// Nothing was written.
    Skipped { why: &'static str },
}

impl Handled {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Failed { .. } => "failed",
            Self::Issued { .. } => "issued",
            Self::Skipped { .. } => "skipped",
        }
    }
}

/// Seconds since the epoch at which `outcome` was reached (0 if unknown).
fn occurred_at(outcome: &Outcome) -> i64 {
    outcome.occurred_at.as_ref().map_or(0, |t| t.seconds)
}

/// Why the failure `outcome` reports is no longer worth telling, judged by
/// its ServiceCertificate as cached: re-created (another uid), or issued
/// since (Ready for a newer generation, or turned Ready after the failure).
/// `None` when it is to be told, also when the cache does not hold the
/// object (a cache that has not seen it yet cannot tell it was deleted, and
/// a Warning about a deleted certificate costs less than a lost one).
pub fn stale_failure(
    outcome: &Outcome,
    cached: Option<&CertificateSummary>,
) -> Option<&'static str> {
    let cached = cached?;
    if cached.uid != outcome.uid {
        return Some("replaced");
    }
    let ready_since = cached.ready_since?;
    let newer_generation = cached
        .observed_generation
        .is_some_and(|generation| generation > outcome.generation);
    (newer_generation || ready_since > occurred_at(outcome)).then_some("stale")
}

/// The reason of the failure that the issuance `outcome` ends, judged by
/// its ServiceCertificate as cached: the failure the status still shows,
/// when it came before the issuance (by generation, then time), or the one
/// this serial cleared.
pub fn ended_failure(
    outcome: &Outcome,
    issued: &Issued,
    cached: Option<&CertificateSummary>,
) -> Option<String> {
    let cached = cached.filter(|c| c.uid == outcome.uid)?;
    if let Some(failure) = &cached.failure {
        // By generation, then time, as the signer reached them.
        let failed = (
            cached.observed_generation.unwrap_or_default(),
            failure.at.unwrap_or_default(),
        );
        let ended = failed <= (outcome.generation, occurred_at(outcome));
        return ended.then(|| failure.reason.clone());
    }
    cached
        .cleared
        .as_ref()
        .filter(|cleared| cleared.serial == issued.serial_number)
        .map(|cleared| cleared.reason.clone())
}

/// Turns outcomes into Events.
#[derive(Debug)]
pub struct Outcomes {
    certificates: SharedCertificates,
    delivery: Arc<Delivery>,
}

impl Outcomes {
    pub fn new(certificates: SharedCertificates, delivery: Arc<Delivery>) -> Self {
        Self {
            certificates,
            delivery,
        }
    }

    /// Handles one outcome from the signer. An error means some Event could
    /// not be written; retrying the outcome is safe (repeats only grow a
    /// series count).
    #[instrument(name = "report_outcome", skip_all, fields(generation = outcome.generation, secret = %outcome.secret_name))]
    pub async fn handle(&self, outcome: &Outcome) -> Result<Handled, Error> {
        let cached = self
            .certificates
            .read(|cache| cache.get(&outcome.namespace, &outcome.name));
        match &outcome.result {
            Some(outcome::Result::Failed(failed)) => {
                self.failed(outcome, failed, cached.as_ref()).await
            }
            Some(outcome::Result::Issued(issued)) => {
                self.issued(outcome, issued, cached.as_ref()).await
            }
            None => Ok(Handled::Skipped { why: "no_result" }),
        }
    }

    async fn failed(
        &self,
        outcome: &Outcome,
        failed: &Failed,
        cached: Option<&CertificateSummary>,
    ) -> Result<Handled, Error> {
        if let Some(why) = stale_failure(outcome, cached) {
            debug!(
                why,
                "a failure its ServiceCertificate has left behind; not telling it"
            );
            return Ok(Handled::Skipped { why });
        }
        let notice = failure_notice(failed);
        let certificate =
            ObjectRef::service_certificate(&outcome.namespace, &outcome.name, &outcome.uid);
        let pods = self
            .delivery
            .consumers(&outcome.namespace, &outcome.secret_name);
        let recipients = self
            .delivery
            .deliver(&[certificate], &pods, &notice)
            .await?;
        info!(reason = notice.reason(), recipients, "failure reported");
        Ok(Handled::Failed { recipients })
    }

    async fn issued(
        &self,
        outcome: &Outcome,
        issued: &Issued,
        cached: Option<&CertificateSummary>,
    ) -> Result<Handled, Error> {
        let Some(reason) = ended_failure(outcome, issued, cached) else {
            // A routine issuance or renewal: the status already says it
            // (Ready, serial, validity), nobody was told of a failure, and
            // an Event would cost the API server one write per certificate
            // (docs/design/20261203-routine-issued-event.md).
            debug!(serial = %issued.serial_number, "issued, nothing failing: nothing to tell");
            return Ok(Handled::Issued {
                recipients: 0,
                resolved: false,
            });
        };
        let certificate =
            ObjectRef::service_certificate(&outcome.namespace, &outcome.name, &outcome.uid);
        let notice = issued_notice(outcome, issued, &reason);
        let pods = self
            .delivery
            .consumers(&outcome.namespace, &outcome.secret_name);
        self.delivery.forget_warnings(&certificate.uid);
        for pod in &pods {
            self.delivery.forget_warnings(&pod.uid);
        }
        let recipients = self
            .delivery
            .deliver(&[certificate], &pods, &notice)
            .await?;
        info!(resolved = %reason, recipients, "failure resolved");
        Ok(Handled::Issued {
            recipients,
            resolved: true,
        })
    }

    /// The metrics, for the consumer.
    pub fn metrics(&self) -> &Metrics {
        self.delivery.metrics()
    }
}

#[cfg(test)]
mod tests;
