//! Whether a ServiceCertificate needs a work item, and which. Pure: the
//! controller feeds it cached objects and the clock, so every trigger is
//! tested without a cluster.
//!
//! Whether the Secret is still good is [`certflow_pki::assess`]'s verdict,
//! the one the signer acts on too; the watcher knows the CA only from the
//! CertificateAuthority's status (its fingerprint, and when previous key
//! pairs were retired). What is the watcher's own: the status it compares
//! the Secret with (generation, Ready, serial), when a re-issue after a CA
//! key pair change takes its turn, and the de-duplication ids.

use std::time::{Duration, SystemTime};

use certflow_api::{CertificateAuthority, Condition, NOT_BEFORE_BACKDATE, ServiceCertificate};
use certflow_pki::{Found, Verdict};
use certflow_proto::v1::Trigger;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt as _;

/// The watcher's verdict for one ServiceCertificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Publish a work item. `dedup_id` names the exact situation, so every
    /// watcher (and every replay of the same watch event) computes the same
    /// id and JetStream stores the item once.
    Publish {
        trigger: Trigger,
        dedup_id: String,
        detail: String,
    },
    /// Nothing to do until `at` (the renewal time), unless something changes.
    WaitUntil(SystemTime),
    /// Nothing to do until something changes.
    Idle,
}

/// Everything `decide` looks at besides the ServiceCertificate.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// The managed Secret named by `spec.secretName`, if the cache has it.
    pub secret: Option<&'a Secret>,
    /// The CertificateAuthority that would sign, if it exists.
    pub issuer: Option<&'a CertificateAuthority>,
    pub now: SystemTime,
    /// How often a failed request is re-examined when nothing it depends on
    /// visibly changed (e.g. a conflicting Secret the watcher cannot see).
    pub failure_retry: Duration,
}

pub fn decide(scert: &ServiceCertificate, observed: Observed<'_>) -> Decision {
    let uid = scert.uid().unwrap_or_default();
    let generation = scert.metadata.generation.unwrap_or_default();
    let status = scert.status.clone().unwrap_or_default();
    let ready = scert.ready_condition();
    let serial = status.serial_number.clone().unwrap_or_default();
    let current_ca = observed
        .issuer
        .and_then(|ca| ca.status.as_ref()?.fingerprint.as_deref());
    let verdict = certflow_pki::assess(scert, observed.secret, current_ca, observed.now);

    // The signer has written this generation's certificate and its status
    // write follows: nothing to publish, whatever status says yet, and the
    // work no longer holds one of its namespace's slots (the key generation
    // the cap shares out is done), so the next object's starts now.
    if let Verdict::Good(found) = &verdict
        && found.inspection.serial != serial
        && let Some(until) = status_catching_up(found, observed.now)
    {
        return Decision::WaitUntil(until);
    }

    if status.observed_generation != Some(generation) {
        let trigger = if status.observed_generation.is_none() {
            Trigger::Created
        } else {
            Trigger::SpecChanged
        };
        return publish(
            trigger,
            format!("{uid}/{generation}"),
            "generation not yet handled",
        );
    }

    if !ready.is_some_and(Condition::is_true) {
        // Refused for this generation: look again when the issuer changes,
        // and otherwise at a slow, fixed cadence.
        let issuer_version = issuer_version(observed.issuer);
        let period = observed.failure_retry.as_secs().max(1);
        let epoch = unix_seconds(observed.now) / period;
        return publish(
            Trigger::Resync,
            format!("{uid}/{generation}/retry/{issuer_version}/{epoch}"),
            "re-examining a refused request",
        );
    }

    let secret_version = observed
        .secret
        .and_then(|secret| secret.resource_version())
        .unwrap_or_default();
    let repair = |detail: &str| {
        publish(
            Trigger::SecretInvalid,
            format!("{uid}/{generation}/repair/{secret_version}"),
            detail,
        )
    };
    if let Some(found) = verdict.intact()
        && found.inspection.serial != serial
    {
        if let Some(until) = status_catching_up(found, observed.now) {
            return Decision::WaitUntil(until);
        }
        return repair("tls.crt is not the certificate status names");
    }
    match &verdict {
        Verdict::Missing => publish(
            Trigger::SecretMissing,
            format!("{uid}/{generation}/secret-missing/{serial}"),
            verdict.describe(),
        ),
        Verdict::Foreign(_)
        | Verdict::Unreadable
        | Verdict::KeyMismatch
        | Verdict::NotSignedByCa
        | Verdict::SerialAnnotationDiffers(_)
        | Verdict::OtherGeneration(_)
        | Verdict::NamesDiffer(_) => repair(verdict.describe()),
        Verdict::IssuerChanged { found, signed_by } => {
            // Re-issues after a CA key pair change are spread over the
            // first half of its overlap; until an object's turn, only
            // renewal may come first.
            let turn = observed
                .issuer
                .and_then(|ca| reissue_turn(&uid, ca, Some(signed_by)))
                .filter(|turn| observed.now < *turn);
            match turn {
                Some(_) if observed.now >= found.renewal => renew(&uid, generation, &serial),
                Some(turn) => Decision::WaitUntil(turn.min(found.renewal)),
                None => publish(
                    Trigger::IssuerChanged,
                    format!(
                        "{uid}/{generation}/issuer/{}",
                        current_ca.unwrap_or_default()
                    ),
                    verdict.describe(),
                ),
            }
        }
        Verdict::RenewalDue(_) => renew(&uid, generation, &serial),
        Verdict::Good(found) => Decision::WaitUntil(found.renewal),
    }
}

/// The issuer as a refused request's re-examination id names it: the
/// CertificateAuthority's resourceVersion, or `absent`. A new one means the
/// issuer changed since the refusal, so the request is looked at again.
pub fn issuer_version(issuer: Option<&CertificateAuthority>) -> String {
    issuer
        .map(|ca| ca.resource_version().unwrap_or_default())
        .unwrap_or_else(|| "absent".to_owned())
}

fn renew(uid: &str, generation: i64, serial: &str) -> Decision {
    publish(
        Trigger::RenewalDue,
        format!("{uid}/{generation}/renew/{serial}"),
        "the renewal time has come",
    )
}

/// When a certificate signed by a previous CA is re-issued after the key
/// pair changed: the moment the change was recorded plus a per-object
/// offset below half the overlap, so thousands of certificates do not all
/// renew in the same second, and every Pod has the new CA in its ca.crt
/// well before the previous one stops being trusted. The offset comes from
/// the uid, so every watcher computes the same turn.
///
/// `None` (re-issue at once) when the signing CA is not a previous CA still
/// inside its overlap, or the overlap is off.
pub fn reissue_turn(
    uid: &str,
    ca: &CertificateAuthority,
    signed_by: Option<&str>,
) -> Option<SystemTime> {
    let overlap = ca.spec.rotation_overlap().ok()?;
    let retired_at = ca.status.as_ref()?.retired_at(signed_by?)?;
    let spread = u64::try_from((overlap / 2).as_millis()).unwrap_or(u64::MAX);
    if spread == 0 {
        return None;
    }
    let offset = Duration::from_millis(stable_hash(uid) % spread);
    Some(SystemTime::from(retired_at.0) + offset)
}

/// FNV-1a: stable across processes, platforms and Rust versions, unlike
/// the standard library's hasher.
fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// How long a Secret may hold a newer certificate than status names before
/// the watcher treats it as needing repair.
const STATUS_WRITE_GRACE: Duration = Duration::from_secs(30);

/// The signer writes the Secret first and status second. In between, the
/// Secret holds an intact certificate for this generation (`found`) that
/// status does not name yet, and the signer's work item stays
/// unacknowledged until status is written, so publishing a repair would
/// only make the signer read both objects again. Until
/// `STATUS_WRITE_GRACE` after the moment of issue (the signer backdates
/// notBefore by at most `NOT_BEFORE_BACKDATE`), returns when to look again.
fn status_catching_up(found: &Found, now: SystemTime) -> Option<SystemTime> {
    let until = found.inspection.not_before + NOT_BEFORE_BACKDATE + STATUS_WRITE_GRACE;
    (now < until).then_some(until)
}

fn publish(trigger: Trigger, dedup_id: String, detail: impl Into<String>) -> Decision {
    Decision::Publish {
        trigger,
        dedup_id,
        detail: detail.into(),
    }
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

#[cfg(test)]
mod tests;
