//! Well-known label and annotation keys: the only place their spelling lives.
//!
//! Every key certflow writes starts with [`PREFIX`]; app owners cannot set
//! such keys through `spec.secretTemplate` (the CRD schema refuses them).

/// The prefix of every label and annotation key certflow owns.
pub const PREFIX: &str = "certflow.io/";

/// Label on every Secret certflow created and therefore manages. certflow
/// never overwrites or deletes a Secret without it.
pub const MANAGED: &str = "certflow.io/managed";

/// The value of [`MANAGED`] on Secrets certflow manages.
pub const MANAGED_VALUE: &str = "true";

/// Label selector matching the Secrets certflow manages, for watches and lists.
pub const MANAGED_SELECTOR: &str = "certflow.io/managed=true";

/// Annotation on a managed Secret: the name of the `ServiceCertificate` (in
/// the same namespace) it was issued for.
pub const SERVICE_CERTIFICATE: &str = "certflow.io/service-certificate";

/// Annotation on a managed Secret: the `metadata.uid` of that
/// `ServiceCertificate`, so a deleted and re-created one is told apart.
pub const SERVICE_CERTIFICATE_UID: &str = "certflow.io/service-certificate-uid";

/// Annotation on a managed Secret: the name of the `CertificateAuthority`
/// that signed the certificate.
pub const ISSUER: &str = "certflow.io/issuer";

/// Annotation on a managed Secret: the certificate's serial number (hex).
pub const SERIAL: &str = "certflow.io/serial";

/// Annotation on a managed Secret: the `ServiceCertificate`'s
/// `metadata.generation` the certificate was issued for.
pub const GENERATION: &str = "certflow.io/generation";

/// Annotation on a managed Secret: the certificate's `notAfter`, RFC 3339.
pub const NOT_AFTER: &str = "certflow.io/not-after";

/// Annotation on a `CertificateAuthority` whose generated key pair Secret
/// was lost: the fingerprint of the lost CA certificate (its
/// `status.fingerprint`), to confirm that certflow may generate a new key
/// pair. Any other value is ignored, so the annotation is spent once the
/// new key pair's fingerprint replaces the old one in status.
pub const REGENERATE: &str = "certflow.io/regenerate";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_under_the_certflow_prefix() {
        for key in [
            MANAGED,
            SERVICE_CERTIFICATE,
            SERVICE_CERTIFICATE_UID,
            ISSUER,
            SERIAL,
            GENERATION,
            NOT_AFTER,
            REGENERATE,
        ] {
            assert!(key.starts_with(PREFIX), "{key}");
        }
    }

    #[test]
    fn the_selector_matches_the_managed_label() {
        assert_eq!(MANAGED_SELECTOR, format!("{MANAGED}={MANAGED_VALUE}"));
    }
}
