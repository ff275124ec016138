//! Decides what a work item needs, from the ServiceCertificate, the Secret
//! that exists now and the issuing CA. Pure: no I/O, so every branch is
//! tested directly.

use std::collections::BTreeMap;
use std::time::SystemTime;

use certflow_api::labels;
use certflow_api::secret::{CA_CERT_KEY, TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY};
use certflow_api::{RotationPolicy, ServiceCertificate};
use certflow_diagnostics::Violation;
use certflow_pki::Inspection;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt as _;

/// What to do for one ServiceCertificate.
#[derive(Debug)]
pub enum Plan {
    /// The Secret already holds a valid certificate for this generation,
    /// issued by the current CA and not yet due for renewal.
    UpToDate(Inspection),
    /// Issue a new certificate. `reuse_key` carries the existing key's PEM
    /// when `rotationPolicy: Never` and that key still fits the spec.
    Issue {
        why: IssueReason,
        reuse_key: Option<String>,
    },
    /// The Secret must not be touched.
    Refuse(Violation),
}

/// Why a certificate is (re)issued; logged and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueReason {
    SecretMissing,
    Unreadable,
    KeyMismatch,
    SpecChanged,
    IssuerChanged,
    RenewalDue,
    NamesDiffer,
}

impl IssueReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SecretMissing => "secret_missing",
            Self::Unreadable => "secret_unreadable",
            Self::KeyMismatch => "key_mismatch",
            Self::SpecChanged => "spec_changed",
            Self::IssuerChanged => "issuer_changed",
            Self::RenewalDue => "renewal_due",
            Self::NamesDiffer => "names_differ",
        }
    }
}

/// Whether `secret` is one certflow created (its managed label).
pub fn is_managed(secret: &Secret) -> bool {
    secret.labels().get(labels::MANAGED).map(String::as_str) == Some(labels::MANAGED_VALUE)
}

/// Decides what `scert` needs, given the `secret` that exists now (if any),
/// the fingerprint of the CA that would sign, and the current time.
pub fn plan(
    scert: &ServiceCertificate,
    secret: Option<&Secret>,
    ca_fingerprint: &str,
    now: SystemTime,
) -> Plan {
    let Some(secret) = secret else {
        return issue(IssueReason::SecretMissing, None);
    };
    let secret_name = &scert.spec.secret_name;
    if !is_managed(secret) {
        return Plan::Refuse(certflow_diagnostics::secret_conflict(secret_name));
    }
    let owner = secret
        .annotations()
        .get(labels::SERVICE_CERTIFICATE)
        .cloned()
        .unwrap_or_default();
    // A ServiceCertificate deleted and re-created under the same name takes
    // its Secret back; another name never does.
    if owner != scert.name_any() {
        return Plan::Refuse(certflow_diagnostics::secret_owned_by_other(
            secret_name,
            &owner,
        ));
    }
    let data = secret_bytes(secret);
    let Ok(inspection) = certflow_pki::inspect(
        data.get(TLS_CERT_KEY).map_or(&[], Vec::as_slice),
        data.get(TLS_PRIVATE_KEY_KEY).map_or(&[], Vec::as_slice),
        data.get(CA_CERT_KEY).map_or(&[], Vec::as_slice),
    ) else {
        return issue(IssueReason::Unreadable, None);
    };
    let reusable = reusable_key(scert, &inspection, &data);
    if !inspection.key_matches || !inspection.signed_by_ca {
        return issue(IssueReason::KeyMismatch, None);
    }
    let generation = secret
        .annotations()
        .get(labels::GENERATION)
        .and_then(|g| g.parse::<i64>().ok());
    if generation != scert.metadata.generation {
        return issue(IssueReason::SpecChanged, reusable);
    }
    if inspection.ca_fingerprint.as_deref() != Some(ca_fingerprint) {
        return issue(IssueReason::IssuerChanged, reusable);
    }
    if !names_match(scert, &inspection) {
        return issue(IssueReason::NamesDiffer, reusable);
    }
    if now >= renewal_time(scert, inspection.not_before, inspection.not_after) {
        return issue(IssueReason::RenewalDue, reusable);
    }
    Plan::UpToDate(inspection)
}

fn issue(why: IssueReason, reuse_key: Option<String>) -> Plan {
    Plan::Issue { why, reuse_key }
}

/// When the certificate is renewed: `renewBefore` ahead of expiry, falling
/// back to a third of its lifetime when the spec's value cannot be used.
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

/// The existing key, when the spec asks never to rotate it and it still has
/// the requested algorithm and size.
fn reusable_key(
    scert: &ServiceCertificate,
    inspection: &Inspection,
    data: &BTreeMap<String, Vec<u8>>,
) -> Option<String> {
    if scert.spec.rotation_policy() != RotationPolicy::Never || !inspection.key_matches {
        return None;
    }
    let wanted = crate::request::key_spec(&scert.spec);
    (inspection.key_spec == Some(wanted))
        .then(|| data.get(TLS_PRIVATE_KEY_KEY))
        .flatten()
        .and_then(|pem| String::from_utf8(pem.clone()).ok())
}

fn names_match(scert: &ServiceCertificate, inspection: &Inspection) -> bool {
    let spec = &scert.spec;
    let sorted = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v.dedup();
        v
    };
    let ips: Vec<String> = inspection
        .ip_addresses
        .iter()
        .map(ToString::to_string)
        .collect();
    let wanted_ips: Vec<String> = spec
        .ip_addresses
        .iter()
        .filter_map(|ip| ip.parse::<std::net::IpAddr>().ok())
        .map(|ip| ip.to_string())
        .collect();
    inspection.common_name == spec.common_name
        && sorted(&inspection.dns_names) == sorted(&spec.dns_names)
        && sorted(&ips) == sorted(&wanted_ips)
        && sorted(&inspection.uris) == sorted(&spec.uris)
        && sorted(&inspection.email_addresses) == sorted(&spec.email_addresses)
}

fn secret_bytes(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(key, value)| (key.clone(), value.0.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use certflow_pki::KeySpec;

    use super::*;
    use crate::request::tests::{fixture_scert, issued_secret};

    fn authority() -> certflow_pki::Authority {
        certflow_pki::Authority::generate(
            "test-ca",
            KeySpec::EcdsaP256,
            Duration::from_secs(86400 * 7),
        )
        .expect("ca")
        .0
    }

    #[test]
    fn a_missing_secret_is_issued() {
        let scert = fixture_scert();
        let ca = authority();
        let plan = plan(&scert, None, ca.fingerprint(), SystemTime::now());
        assert!(matches!(
            plan,
            Plan::Issue {
                why: IssueReason::SecretMissing,
                ..
            }
        ));
    }

    #[test]
    fn a_secret_certflow_did_not_create_is_refused_as_a_conflict() {
        let scert = fixture_scert();
        let ca = authority();
        let mut secret = issued_secret(&scert, &ca);
        secret.metadata.labels = None;
        let plan = plan(&scert, Some(&secret), ca.fingerprint(), SystemTime::now());
        let Plan::Refuse(violation) = plan else {
            panic!("expected a refusal, got {plan:?}")
        };
        assert_eq!(violation.reason.as_str(), "SecretConflict");
    }

    #[test]
    fn a_secret_owned_by_another_service_certificate_is_refused() {
        let scert = fixture_scert();
        let ca = authority();
        let mut secret = issued_secret(&scert, &ca);
        secret
            .annotations_mut()
            .insert(labels::SERVICE_CERTIFICATE.into(), "someone-else".into());
        let plan = plan(&scert, Some(&secret), ca.fingerprint(), SystemTime::now());
        assert!(matches!(plan, Plan::Refuse(_)), "{plan:?}");
    }

    #[test]
    fn a_fresh_certificate_for_this_generation_is_up_to_date() {
        let scert = fixture_scert();
        let ca = authority();
        let secret = issued_secret(&scert, &ca);
        let plan = plan(&scert, Some(&secret), ca.fingerprint(), SystemTime::now());
        assert!(matches!(plan, Plan::UpToDate(_)), "{plan:?}");
    }

    #[test]
    fn a_new_generation_is_reissued() {
        let mut scert = fixture_scert();
        let ca = authority();
        let secret = issued_secret(&scert, &ca);
        scert.metadata.generation = Some(2);
        let plan = plan(&scert, Some(&secret), ca.fingerprint(), SystemTime::now());
        assert!(
            matches!(
                plan,
                Plan::Issue {
                    why: IssueReason::SpecChanged,
                    ..
                }
            ),
            "{plan:?}"
        );
    }

    #[test]
    fn a_rotated_ca_causes_reissue() {
        let scert = fixture_scert();
        let ca = authority();
        let secret = issued_secret(&scert, &ca);
        let plan = plan(
            &scert,
            Some(&secret),
            "another-fingerprint",
            SystemTime::now(),
        );
        assert!(
            matches!(
                plan,
                Plan::Issue {
                    why: IssueReason::IssuerChanged,
                    ..
                }
            ),
            "{plan:?}"
        );
    }

    #[test]
    fn a_hand_edited_key_causes_reissue() {
        let scert = fixture_scert();
        let ca = authority();
        let mut secret = issued_secret(&scert, &ca);
        let other = certflow_pki::PrivateKey::generate(KeySpec::EcdsaP256).expect("key");
        secret.data.get_or_insert_default().insert(
            TLS_PRIVATE_KEY_KEY.into(),
            k8s_openapi::ByteString(other.to_pkcs8_pem().into_bytes()),
        );
        let plan = plan(&scert, Some(&secret), ca.fingerprint(), SystemTime::now());
        assert!(
            matches!(
                plan,
                Plan::Issue {
                    why: IssueReason::KeyMismatch,
                    ..
                }
            ),
            "{plan:?}"
        );
    }

    #[test]
    fn renewal_is_due_after_the_renewal_time() {
        let scert = fixture_scert();
        let ca = authority();
        let secret = issued_secret(&scert, &ca);
        let later = SystemTime::now() + scert.spec.effective_duration().expect("duration")
            - Duration::from_secs(60);
        let plan = plan(&scert, Some(&secret), ca.fingerprint(), later);
        assert!(
            matches!(
                plan,
                Plan::Issue {
                    why: IssueReason::RenewalDue,
                    ..
                }
            ),
            "{plan:?}"
        );
    }

    #[test]
    fn rotation_policy_never_offers_the_existing_key_on_reissue() {
        let mut scert = fixture_scert();
        scert.spec.private_key = Some(certflow_api::PrivateKeySpec {
            rotation_policy: Some(RotationPolicy::Never),
            ..Default::default()
        });
        let ca = authority();
        let secret = issued_secret(&scert, &ca);
        scert.metadata.generation = Some(2);
        let plan = plan(&scert, Some(&secret), ca.fingerprint(), SystemTime::now());
        let Plan::Issue { reuse_key, .. } = plan else {
            panic!("expected issue")
        };
        assert!(reuse_key.is_some_and(|pem| pem.contains("PRIVATE KEY")));
    }
}
