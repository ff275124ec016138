//! Decides what a work item needs, from the ServiceCertificate, the Secret
//! that exists now and the issuing CA. Whether that Secret is still good is
//! [`certflow_pki::assess`]'s verdict, the same the watcher acts on; this
//! module turns it into the signer's plan: issue (and with which key),
//! keep, or refuse. Pure: no I/O, so every branch is tested directly.

use std::time::SystemTime;

use certflow_api::secret::TLS_PRIVATE_KEY_KEY;
use certflow_api::{RotationPolicy, ServiceCertificate};
use certflow_diagnostics::Violation;
use certflow_pki::{Foreign, Found, Inspection, Verdict};
use k8s_openapi::api::core::v1::Secret;

pub use certflow_pki::renewal_time;

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
    /// `tls.key` is not the certificate's key, or no `ca.crt` certificate
    /// signed it.
    KeyMismatch,
    /// The serial annotation does not name the Secret's certificate.
    SerialDiffers,
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
            Self::SerialDiffers => "serial_differs",
            Self::SpecChanged => "spec_changed",
            Self::IssuerChanged => "issuer_changed",
            Self::RenewalDue => "renewal_due",
            Self::NamesDiffer => "names_differ",
        }
    }
}

/// Decides what `scert` needs, given the `secret` that exists now (if any),
/// the fingerprint of the CA that would sign, and the current time.
pub fn plan(
    scert: &ServiceCertificate,
    secret: Option<&Secret>,
    ca_fingerprint: &str,
    now: SystemTime,
) -> Plan {
    let secret_name = &scert.spec.secret_name;
    let verdict = certflow_pki::assess(scert, secret, Some(ca_fingerprint), now);
    let why = match &verdict {
        Verdict::Good(found) => return Plan::UpToDate(found.inspection.clone()),
        Verdict::Foreign(Foreign::Unmanaged) => {
            return Plan::Refuse(certflow_diagnostics::secret_conflict(secret_name));
        }
        Verdict::Foreign(Foreign::OwnedBy(owner)) => {
            return Plan::Refuse(certflow_diagnostics::secret_owned_by_other(
                secret_name,
                owner,
            ));
        }
        Verdict::Missing => IssueReason::SecretMissing,
        Verdict::Unreadable => IssueReason::Unreadable,
        Verdict::KeyMismatch | Verdict::NotSignedByCa => IssueReason::KeyMismatch,
        Verdict::SerialAnnotationDiffers(_) => IssueReason::SerialDiffers,
        Verdict::OtherGeneration(_) => IssueReason::SpecChanged,
        Verdict::NamesDiffer(_) => IssueReason::NamesDiffer,
        Verdict::IssuerChanged { .. } => IssueReason::IssuerChanged,
        Verdict::RenewalDue(_) => IssueReason::RenewalDue,
    };
    // Only a key that belongs to a certificate a CA in ca.crt signed is
    // kept; `found` is absent for every other Secret.
    let reuse_key = verdict
        .found()
        .zip(secret)
        .and_then(|(found, secret)| reusable_key(scert, found, secret));
    Plan::Issue { why, reuse_key }
}

/// The existing key, when the spec asks never to rotate it and it still has
/// the requested algorithm and size.
fn reusable_key(scert: &ServiceCertificate, found: &Found, secret: &Secret) -> Option<String> {
    if scert.spec.rotation_policy() != RotationPolicy::Never || !found.inspection.key_matches {
        return None;
    }
    let wanted = crate::request::key_spec(&scert.spec);
    if found.inspection.key_spec != Some(wanted) {
        return None;
    }
    let pem = secret.data.as_ref()?.get(TLS_PRIVATE_KEY_KEY)?;
    String::from_utf8(pem.0.clone()).ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use certflow_api::labels;
    use certflow_api::secret::{CA_CERT_KEY, TLS_CERT_KEY};
    use certflow_pki::KeySpec;
    use kube::ResourceExt as _;

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

    fn never_rotated() -> ServiceCertificate {
        let mut scert = fixture_scert();
        scert.spec.private_key = Some(certflow_api::PrivateKeySpec {
            rotation_policy: Some(RotationPolicy::Never),
            ..Default::default()
        });
        scert
    }

    #[test]
    fn a_leaf_no_ca_in_ca_crt_signed_is_reissued_with_a_new_key() {
        let scert = never_rotated();
        let ca = authority();
        let mut secret = issued_secret(&scert, &ca);
        secret.data.get_or_insert_default().insert(
            CA_CERT_KEY.into(),
            k8s_openapi::ByteString(authority().cert_pem().as_bytes().to_vec()),
        );
        let plan = plan(&scert, Some(&secret), ca.fingerprint(), SystemTime::now());
        assert!(
            matches!(
                plan,
                Plan::Issue {
                    why: IssueReason::KeyMismatch,
                    reuse_key: None
                }
            ),
            "{plan:?}"
        );
    }

    #[test]
    fn an_unparseable_secret_is_reissued_with_a_new_key() {
        let scert = never_rotated();
        let ca = authority();
        let mut secret = issued_secret(&scert, &ca);
        secret.data.get_or_insert_default().insert(
            TLS_CERT_KEY.into(),
            k8s_openapi::ByteString(b"not a certificate".to_vec()),
        );
        let plan = plan(&scert, Some(&secret), ca.fingerprint(), SystemTime::now());
        assert!(
            matches!(
                plan,
                Plan::Issue {
                    why: IssueReason::Unreadable,
                    reuse_key: None
                }
            ),
            "{plan:?}"
        );
    }

    #[test]
    fn an_edited_serial_annotation_is_reissued_keeping_a_never_rotated_key() {
        let scert = never_rotated();
        let ca = authority();
        let mut secret = issued_secret(&scert, &ca);
        secret
            .annotations_mut()
            .insert(labels::SERIAL.into(), "01".into());
        let plan = plan(&scert, Some(&secret), ca.fingerprint(), SystemTime::now());
        let Plan::Issue { why, reuse_key } = plan else {
            panic!("expected issue, got {plan:?}")
        };
        assert_eq!(why, IssueReason::SerialDiffers);
        assert!(reuse_key.is_some());
    }

    #[test]
    fn a_never_rotated_key_of_another_algorithm_is_not_reused() {
        let mut scert = never_rotated();
        let ca = authority();
        let secret = issued_secret(&scert, &ca);
        scert.metadata.generation = Some(2);
        scert.spec.private_key.get_or_insert_default().algorithm =
            Some(certflow_api::KeyAlgorithm::Ed25519);
        let plan = plan(&scert, Some(&secret), ca.fingerprint(), SystemTime::now());
        assert!(
            matches!(
                plan,
                Plan::Issue {
                    why: IssueReason::SpecChanged,
                    reuse_key: None
                }
            ),
            "{plan:?}"
        );
    }
}
