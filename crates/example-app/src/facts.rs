//! What the lines say about a certificate: serial, subject, issuer, expiry.

use time::format_description::well_known::Rfc3339;
use x509_parser::prelude::{FromDer, X509Certificate};

use certflow_pki::serial_hex;

use crate::AppError;

/// The printable facts of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    /// Lowercase hex, no colons ([`certflow_pki::serial_hex`]): the serial
    /// the ServiceCertificate's status shows.
    pub serial: String,
    /// RFC 4514 form, as x509-parser prints it (`CN=app.example.svc, O=…`).
    pub subject: String,
    pub issuer: String,
    /// RFC 3339 in UTC (`2027-01-02T03:04:05Z`).
    pub not_after: String,
}

impl CertificateFacts {
    /// Reads the facts from a DER certificate; `what` names it in errors.
    pub fn from_der(der: &[u8], what: &str) -> Result<Self, AppError> {
        let (_, certificate) = X509Certificate::from_der(der).map_err(|error| AppError::X509 {
            what: what.to_owned(),
            message: error.to_string(),
        })?;
        let not_after = certificate
            .validity()
            .not_after
            .to_datetime()
            .format(&Rfc3339)
            .map_err(|error| AppError::X509 {
                what: what.to_owned(),
                message: format!("notAfter cannot be printed: {error}"),
            })?;
        Ok(Self {
            serial: serial_hex(certificate.raw_serial()),
            subject: certificate.subject().to_string(),
            issuer: certificate.issuer().to_string(),
            not_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_name_serial_subject_issuer_and_expiry_of_a_certificate()
    -> Result<(), Box<dyn std::error::Error>> {
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Example CA");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let leaf_key = rcgen::KeyPair::generate()?;
        let mut leaf_params = rcgen::CertificateParams::new(vec!["app.example".to_owned()])?;
        leaf_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "app.example");
        leaf_params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x00, 0x9a, 0x0b]));
        leaf_params.not_after = rcgen::date_time_ymd(2031, 2, 3);
        let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;

        let facts = CertificateFacts::from_der(leaf.der(), "test leaf")?;
        assert_eq!(
            facts,
            CertificateFacts {
                serial: "9a0b".to_owned(),
                subject: "CN=app.example".to_owned(),
                issuer: "CN=Example CA".to_owned(),
                not_after: "2031-02-03T00:00:00Z".to_owned(),
            }
        );
        Ok(())
    }

    #[test]
    fn facts_of_garbage_name_what_was_parsed() {
        let error = CertificateFacts::from_der(b"not a certificate", "tls.crt").err();
        let message = error.map(|error| error.to_string()).unwrap_or_default();
        assert!(message.contains("tls.crt"), "{message}");
    }
}
