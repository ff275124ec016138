//! Whether a ServiceCertificate needs a work item, and which. Pure: the
//! controller feeds it cached objects and the clock, so every trigger is
//! tested without a cluster.

use std::time::{Duration, SystemTime};

use certflow_api::labels;
use certflow_api::secret::{CA_CERT_KEY, TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY};
use certflow_api::{CertificateAuthority, Condition, NOT_BEFORE_BACKDATE, ServiceCertificate};
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
        let issuer_version = observed
            .issuer
            .map(|ca| ca.resource_version().unwrap_or_default())
            .unwrap_or_else(|| "absent".to_owned());
        let period = observed.failure_retry.as_secs().max(1);
        let epoch = unix_seconds(observed.now) / period;
        return publish(
            Trigger::Resync,
            format!("{uid}/{generation}/retry/{issuer_version}/{epoch}"),
            "re-examining a refused request",
        );
    }

    let serial = status.serial_number.clone().unwrap_or_default();
    let Some(secret) = observed.secret else {
        return publish(
            Trigger::SecretMissing,
            format!("{uid}/{generation}/secret-missing/{serial}"),
            "the Secret does not exist",
        );
    };
    let secret_version = secret.resource_version().unwrap_or_default();
    if let Some(problem) = secret_problem(secret, &serial) {
        if let Some(until) = status_catching_up(secret, generation, observed.now) {
            return Decision::WaitUntil(until);
        }
        return publish(
            Trigger::SecretInvalid,
            format!("{uid}/{generation}/repair/{secret_version}"),
            problem,
        );
    }
    // Re-issues after a CA key pair change are spread over the first half
    // of its overlap; until an object's turn, only renewal may come first.
    let mut issuer_turn = None;
    if let Some(ca) = observed.issuer
        && let Some(current) = ca.status.as_ref().and_then(|s| s.fingerprint.clone())
    {
        // ca.crt starts with the CA that signed (the signer puts previous
        // CAs after it), so its first certificate says which CA that was.
        let signed_by = secret_bytes(secret, CA_CERT_KEY)
            .and_then(|pem| certflow_pki::fingerprint_pem(pem).ok());
        if signed_by.as_deref() != Some(current.as_str()) {
            match reissue_turn(&uid, ca, signed_by.as_deref()) {
                Some(turn) if observed.now < turn => issuer_turn = Some(turn),
                _ => {
                    return publish(
                        Trigger::IssuerChanged,
                        format!("{uid}/{generation}/issuer/{current}"),
                        "the CertificateAuthority's key pair changed",
                    );
                }
            }
        }
    }
    match status.renewal_time.as_ref().map(|t| SystemTime::from(t.0)) {
        Some(renewal) if observed.now >= renewal => publish(
            Trigger::RenewalDue,
            format!("{uid}/{generation}/renew/{serial}"),
            "the renewal time has come",
        ),
        Some(renewal) => Decision::WaitUntil(issuer_turn.map_or(renewal, |turn| turn.min(renewal))),
        None => issuer_turn.map_or(Decision::Idle, Decision::WaitUntil),
    }
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

/// Why the Secret no longer holds what the signer wrote, if it doesn't.
fn secret_problem(secret: &Secret, serial: &str) -> Option<String> {
    if secret.annotations().get(labels::SERIAL).map(String::as_str) != Some(serial) {
        return Some("the Secret's serial annotation differs from status".to_owned());
    }
    let inspection = certflow_pki::inspect(
        secret_bytes(secret, TLS_CERT_KEY).unwrap_or_default(),
        secret_bytes(secret, TLS_PRIVATE_KEY_KEY).unwrap_or_default(),
        secret_bytes(secret, CA_CERT_KEY).unwrap_or_default(),
    );
    match inspection {
        Err(_) => Some("the Secret's certificate or key cannot be parsed".to_owned()),
        Ok(found) if !found.key_matches => Some("tls.key does not match tls.crt".to_owned()),
        Ok(found) if found.serial != serial => {
            Some("tls.crt is not the certificate certflow issued".to_owned())
        }
        Ok(_) => None,
    }
}

/// How long a Secret may hold a newer certificate than status names before
/// the watcher treats it as needing repair.
const STATUS_WRITE_GRACE: Duration = Duration::from_secs(30);

/// The signer writes the Secret first and status second. In between, the
/// Secret holds an intact certificate for this generation that status does
/// not name yet, and the signer's work item stays unacknowledged until
/// status is written, so publishing a repair would only make the signer read
/// both objects again. Until `STATUS_WRITE_GRACE` after the moment of issue
/// (the signer backdates notBefore by at most `NOT_BEFORE_BACKDATE`),
/// returns when to look again.
fn status_catching_up(secret: &Secret, generation: i64, now: SystemTime) -> Option<SystemTime> {
    let annotations = secret.annotations();
    if annotations.get(labels::GENERATION)? != &generation.to_string() {
        return None;
    }
    let found = certflow_pki::inspect(
        secret_bytes(secret, TLS_CERT_KEY)?,
        secret_bytes(secret, TLS_PRIVATE_KEY_KEY)?,
        secret_bytes(secret, CA_CERT_KEY)?,
    )
    .ok()?;
    let intact = found.key_matches && annotations.get(labels::SERIAL) == Some(&found.serial);
    let until = found.not_before + NOT_BEFORE_BACKDATE + STATUS_WRITE_GRACE;
    (intact && now < until).then_some(until)
}

fn secret_bytes<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    secret
        .data
        .as_ref()?
        .get(key)
        .map(|value| value.0.as_slice())
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
