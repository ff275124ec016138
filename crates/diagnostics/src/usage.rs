//! Key usages that contradict the rest of the spec.

use certflow_api::KeyUsage;

use crate::{Reason, Violation};

/// `cert sign` on a certificate that is not a CA. RFC 5280 §4.2.1.3 allows
/// keyCertSign only together with basicConstraints CA:TRUE, so such a
/// certificate would be malformed whatever the issuer's policy says.
pub fn cert_sign_without_ca(usages: &[KeyUsage], is_ca: bool) -> Option<Violation> {
    if is_ca {
        return None;
    }
    let index = usages.iter().position(|u| *u == KeyUsage::CertSign)?;
    Some(
        Violation::new(
            Reason::CertSignWithoutCA,
            format!("spec.usages[{index}]"),
            KeyUsage::CertSign.as_str(),
            "is a usage only a CA certificate may have, and spec.isCA is not true",
        )
        .with_suggestion(
            "remove \"cert sign\" from spec.usages (a service certificate does not sign \
             others), or set spec.isCA: true to request a CA certificate",
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_sign_needs_is_ca() {
        let usages = [KeyUsage::DigitalSignature, KeyUsage::CertSign];
        let found = cert_sign_without_ca(&usages, false).expect("refused");
        assert_eq!(found.reason, Reason::CertSignWithoutCA);
        assert_eq!(found.field, "spec.usages[1]");
        assert_eq!(cert_sign_without_ca(&usages, true), None);
    }

    #[test]
    fn crl_sign_alone_is_not_refused_here() {
        // RFC 5280 does not tie cRLSign to CA:TRUE; the issuer's allowCA
        // policy still decides whether it is granted.
        assert_eq!(cert_sign_without_ca(&[KeyUsage::CrlSign], false), None);
    }
}
