//! "Is this Secret still good?": the one rule, used by the watcher (to
//! decide whether to publish a work item) and by the signer (to decide
//! whether to issue, keep or refuse).
//!
//! Observes a `ServiceCertificate`, the Secret its `spec.secretName` names
//! (if any), the fingerprint of the CA that signs for it now (if the caller
//! knows it) and the clock; writes nothing; never returns key material (a
//! [`Verdict`] carries an [`Inspection`], which holds none). The Secret's
//! certificate is parsed once.
//!
//! It lives in `certflow-pki` rather than `certflow-api` because it parses
//! certificates, and every crate that calls it (watcher, signer) already
//! depends on both: pki gaining the API types costs no binary a new
//! dependency, while the API crate gaining pki would pull the crypto
//! backend into the reporter and `crdgen`.
//!
//! The checks run in a fixed order and the first that fails is the
//! verdict; each later check assumes every earlier one passed:
//!
//! 1. the Secret exists ([`Verdict::Missing`]);
//! 2. certflow created it, for this ServiceCertificate ([`Verdict::Foreign`]);
//! 3. `tls.crt`, `tls.key` and `ca.crt` parse ([`Verdict::Unreadable`]);
//! 4. `tls.key` is the key of `tls.crt` ([`Verdict::KeyMismatch`]);
//! 5. a `ca.crt` certificate signed `tls.crt` ([`Verdict::NotSignedByCa`]);
//! 6. the serial annotation names that certificate
//!    ([`Verdict::SerialAnnotationDiffers`]);
//! 7. it was issued for the current generation ([`Verdict::OtherGeneration`]);
//! 8. it carries exactly the spec's names ([`Verdict::NamesDiffer`]);
//! 9. the CA that signs now signed it ([`Verdict::IssuerChanged`]; skipped
//!    when the caller does not know that CA);
//! 10. its renewal time has not come ([`Verdict::RenewalDue`]).
//!
//! What a caller does about a verdict is its own business: the signer
//! reissues at once; the watcher spreads re-issues after a CA key pair
//! change and compares the certificate with the one status names.

use std::time::SystemTime;

use certflow_api::labels;
use certflow_api::secret::{CA_CERT_KEY, TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY};
use certflow_api::{ServiceCertificate, ServiceCertificateSpec};
use k8s_openapi::api::core::v1::Secret;

use crate::{Inspection, inspect};

/// Whether a ServiceCertificate's Secret still holds what it should, and if
/// not, the first thing wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// There is no Secret by that name.
    Missing,
    /// The Secret is not certflow's to touch.
    Foreign(Foreign),
    /// `tls.crt`, `tls.key` or `ca.crt` cannot be parsed.
    Unreadable,
    /// `tls.key` is not the private key of `tls.crt`.
    KeyMismatch,
    /// No certificate in `ca.crt` signed `tls.crt`.
    NotSignedByCa,
    /// The `certflow.io/serial` annotation does not name the certificate in
    /// `tls.crt`: the Secret was edited by hand.
    SerialAnnotationDiffers(Found),
    /// The certificate was issued for another `metadata.generation`.
    OtherGeneration(Found),
    /// The certificate's names are not the spec's.
    NamesDiffer(Found),
    /// A CA other than the one that signs now signed the certificate.
    IssuerChanged {
        found: Found,
        /// Fingerprint of the `ca.crt` certificate that signed it.
        signed_by: String,
    },
    /// The certificate's renewal time has come.
    RenewalDue(Found),
    /// The Secret holds a valid certificate for this generation, from the
    /// current CA (as far as the caller knows it), not yet due for renewal.
    Good(Found),
}

/// Why a Secret is not certflow's to touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Foreign {
    /// It lacks the `certflow.io/managed=true` label: certflow did not
    /// create it.
    Unmanaged,
    /// certflow created it for another ServiceCertificate, named here
    /// (empty when the annotation is missing).
    OwnedBy(String),
}

/// The certificate a Secret holds, once it parsed and its key matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub inspection: Inspection,
    /// When it is to be renewed (see [`renewal_time`]).
    pub renewal: SystemTime,
}

impl Verdict {
    /// Whether the Secret can stay as it is.
    pub fn is_good(&self) -> bool {
        matches!(self, Self::Good(_))
    }

    /// The certificate, when the Secret held one whose key matched and that
    /// a `ca.crt` certificate signed.
    pub fn found(&self) -> Option<&Found> {
        match self {
            Self::SerialAnnotationDiffers(found)
            | Self::OtherGeneration(found)
            | Self::NamesDiffer(found)
            | Self::IssuerChanged { found, .. }
            | Self::RenewalDue(found)
            | Self::Good(found) => Some(found),
            Self::Missing
            | Self::Foreign(_)
            | Self::Unreadable
            | Self::KeyMismatch
            | Self::NotSignedByCa => None,
        }
    }

    /// The certificate, when the Secret is intact: exactly as the signer
    /// writes it for the current generation (checks 1 to 7 passed), though
    /// perhaps no longer current.
    pub fn intact(&self) -> Option<&Found> {
        match self {
            Self::NamesDiffer(found)
            | Self::IssuerChanged { found, .. }
            | Self::RenewalDue(found)
            | Self::Good(found) => Some(found),
            _ => None,
        }
    }

    /// What the verdict says, as a phrase for logs and work items. Names
    /// no key material and no certificate contents.
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Missing => "the Secret does not exist",
            Self::Foreign(Foreign::Unmanaged) => "the Secret was not created by certflow",
            Self::Foreign(Foreign::OwnedBy(_)) => {
                "the Secret was created for another ServiceCertificate"
            }
            Self::Unreadable => "the Secret's certificate or key cannot be parsed",
            Self::KeyMismatch => "tls.key does not match tls.crt",
            Self::NotSignedByCa => "no certificate in ca.crt signed tls.crt",
            Self::SerialAnnotationDiffers(_) => {
                "the Secret's serial annotation does not name its certificate"
            }
            Self::OtherGeneration(_) => "the certificate was issued for another generation",
            Self::NamesDiffer(_) => "the certificate's names differ from the spec's",
            Self::IssuerChanged { .. } => "the CertificateAuthority's key pair changed",
            Self::RenewalDue(_) => "the renewal time has come",
            Self::Good(_) => "the Secret is up to date",
        }
    }
}

/// Assesses `secret`, the Secret `scert.spec.secretName` names (`None` if
/// it does not exist), at `now`. `ca` is the fingerprint of the CA that
/// signs for `scert` now ([`Authority::fingerprint`](crate::Authority::fingerprint),
/// or a CertificateAuthority's `status.fingerprint`); `None` when the
/// caller does not know it, which skips only the issuer check.
pub fn assess(
    scert: &ServiceCertificate,
    secret: Option<&Secret>,
    ca: Option<&str>,
    now: SystemTime,
) -> Verdict {
    let Some(secret) = secret else {
        return Verdict::Missing;
    };
    if label(secret, labels::MANAGED) != Some(labels::MANAGED_VALUE) {
        return Verdict::Foreign(Foreign::Unmanaged);
    }
    // A ServiceCertificate deleted and re-created under the same name takes
    // its Secret back; another name never does.
    let owner = annotation(secret, labels::SERVICE_CERTIFICATE).unwrap_or_default();
    if Some(owner) != scert.metadata.name.as_deref() {
        return Verdict::Foreign(Foreign::OwnedBy(owner.to_owned()));
    }
    let Ok(inspection) = inspect(
        data(secret, TLS_CERT_KEY),
        data(secret, TLS_PRIVATE_KEY_KEY),
        data(secret, CA_CERT_KEY),
    ) else {
        return Verdict::Unreadable;
    };
    if !inspection.key_matches {
        return Verdict::KeyMismatch;
    }
    let Some(signed_by) = inspection.ca_fingerprint.clone() else {
        return Verdict::NotSignedByCa;
    };
    let found = Found {
        renewal: renewal_time(scert, inspection.not_before, inspection.not_after),
        inspection,
    };
    if annotation(secret, labels::SERIAL) != Some(found.inspection.serial.as_str()) {
        return Verdict::SerialAnnotationDiffers(found);
    }
    let generation = annotation(secret, labels::GENERATION).and_then(|g| g.parse::<i64>().ok());
    if generation != scert.metadata.generation {
        return Verdict::OtherGeneration(found);
    }
    if !names_match(&scert.spec, &found.inspection) {
        return Verdict::NamesDiffer(found);
    }
    if ca.is_some_and(|current| current != signed_by) {
        return Verdict::IssuerChanged { found, signed_by };
    }
    if now >= found.renewal {
        return Verdict::RenewalDue(found);
    }
    Verdict::Good(found)
}

/// When a certificate valid from `not_before` to `not_after` is renewed:
/// `spec.renewBefore` ahead of expiry, falling back to a third of its
/// lifetime when the spec's value cannot be used (unparseable, or not
/// shorter than the lifetime, as when the CA's own expiry shortened it).
pub fn renewal_time(
    scert: &ServiceCertificate,
    not_before: SystemTime,
    not_after: SystemTime,
) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    let renew_before = scert
        .spec
        .effective_renew_before()
        .ok()
        .filter(|before| *before < lifetime)
        .unwrap_or(lifetime / 3);
    not_after - renew_before
}

/// Whether the certificate carries exactly the spec's names, in any order,
/// repeats ignored; IP addresses compared as addresses, not spellings.
fn names_match(spec: &ServiceCertificateSpec, inspection: &Inspection) -> bool {
    let sorted = |names: &[String]| {
        let mut names = names.to_vec();
        names.sort();
        names.dedup();
        names
    };
    let mut ips = inspection.ip_addresses.clone();
    ips.sort();
    ips.dedup();
    let mut wanted_ips: Vec<std::net::IpAddr> = spec
        .ip_addresses
        .iter()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    wanted_ips.sort();
    wanted_ips.dedup();
    inspection.common_name == spec.common_name
        && sorted(&inspection.dns_names) == sorted(&spec.dns_names)
        && ips == wanted_ips
        && sorted(&inspection.uris) == sorted(&spec.uris)
        && sorted(&inspection.email_addresses) == sorted(&spec.email_addresses)
}

fn label<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    secret
        .metadata
        .labels
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn annotation<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    secret
        .metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn data<'a>(secret: &'a Secret, key: &str) -> &'a [u8] {
    secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .map_or(&[], |value| value.0.as_slice())
}

#[cfg(test)]
mod tests;
