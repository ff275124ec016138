//! Reading what a `kubernetes.io/tls` Secret actually holds.
//!
//! Observes the bytes of `tls.crt`, `tls.key` and `ca.crt`; writes nothing;
//! never returns key material. Facts that make a Secret stale (wrong key,
//! wrong CA) are reported as fields, so the caller can decide to reissue;
//! only input that cannot be read at all is an error.

use std::net::IpAddr;
use std::time::SystemTime;

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::encoding::{
    CERTIFICATE_LABEL, certificate_ders, fingerprint, parse_certificate, serial_hex, to_system_time,
};
use crate::{KeySpec, PkiError, PrivateKey};

/// What a TLS Secret contains, as far as issuance decisions care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The leaf's serial, lowercase hex (same form as [`Issued::serial`](crate::Issued::serial)).
    pub serial: String,
    /// The first CN in the leaf's subject, if any.
    pub common_name: Option<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub email_addresses: Vec<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// The leaf has basicConstraints CA:TRUE.
    pub is_ca: bool,
    /// `tls.key` is the private half of the leaf's public key.
    pub key_matches: bool,
    /// The algorithm of the leaf's public key; `None` if outside [`KeySpec`].
    pub key_spec: Option<KeySpec>,
    /// The leaf's signature verifies with the key of a certificate in `ca.crt`.
    pub signed_by_ca: bool,
    /// Fingerprint of the `ca.crt` certificate that signed the leaf (see
    /// [`Authority::fingerprint`](crate::Authority::fingerprint)); `None`
    /// exactly when `signed_by_ca` is false.
    pub ca_fingerprint: Option<String>,
}

/// Inspects a Secret's `tls.crt` (leaf first, chain after), `tls.key` and
/// `ca.crt` (one or more certificates; empty or blank when absent).
///
/// Never fails on a mismatch between the three: a foreign key or CA is
/// reported in [`Inspection::key_matches`] and [`Inspection::signed_by_ca`].
/// Fails with a [`PkiError`] naming the field when a field cannot be parsed:
/// no certificate in `tls.crt`, no key in `tls.key`, malformed PEM or DER,
/// or a key algorithm the crypto backend rejects.
pub fn inspect(tls_crt: &[u8], tls_key: &[u8], ca_crt: &[u8]) -> Result<Inspection, PkiError> {
    let chain = certificate_ders(tls_crt, "tls.crt")?;
    let leaf_der = chain.first().ok_or(PkiError::MissingPem {
        input: "tls.crt",
        label: CERTIFICATE_LABEL,
    })?;
    let leaf = parse_certificate(leaf_der, "tls.crt")?;
    for intermediate in chain.iter().skip(1) {
        parse_certificate(intermediate, "tls.crt chain")?;
    }
    let key = PrivateKey::read(tls_key, "tls.key")?;
    let ca_fingerprint = signing_authority(&leaf, ca_crt)?;
    let names = SubjectAltNames::of(&leaf)?;
    let validity = leaf.validity();

    Ok(Inspection {
        serial: serial_hex(leaf.raw_serial()),
        common_name: leaf
            .subject()
            .iter_common_name()
            .find_map(|common_name| common_name.as_str().ok())
            .map(str::to_owned),
        dns_names: names.dns_names,
        ip_addresses: names.ip_addresses,
        uris: names.uris,
        email_addresses: names.email_addresses,
        not_before: to_system_time(validity.not_before.timestamp())?,
        not_after: to_system_time(validity.not_after.timestamp())?,
        is_ca: leaf.is_ca(),
        key_matches: leaf.public_key().subject_public_key.data.as_ref() == key.public_key_bits(),
        key_spec: KeySpec::of_public_key(leaf.public_key()),
        signed_by_ca: ca_fingerprint.is_some(),
        ca_fingerprint,
    })
}

/// Lowercase hex SHA-256 of the first certificate in `cert_pem`, comparable
/// with [`Authority::fingerprint`](crate::Authority::fingerprint).
pub fn fingerprint_pem(cert_pem: &[u8]) -> Result<String, PkiError> {
    const INPUT: &str = "certificate";
    let certificates = certificate_ders(cert_pem, INPUT)?;
    let first = certificates.first().ok_or(PkiError::MissingPem {
        input: INPUT,
        label: CERTIFICATE_LABEL,
    })?;
    parse_certificate(first, INPUT)?;
    Ok(fingerprint(first))
}

/// The fingerprint of the first `ca.crt` certificate whose key verifies the
/// leaf's signature. Every `ca.crt` certificate is parsed first, so a
/// malformed bundle is an error whatever its order.
fn signing_authority(
    leaf: &X509Certificate<'_>,
    ca_crt: &[u8],
) -> Result<Option<String>, PkiError> {
    const INPUT: &str = "ca.crt";
    let authorities = certificate_ders(ca_crt, INPUT)?;
    if authorities.is_empty() && !ca_crt.trim_ascii().is_empty() {
        return Err(PkiError::MissingPem {
            input: INPUT,
            label: CERTIFICATE_LABEL,
        });
    }
    let parsed = authorities
        .iter()
        .map(|der| parse_certificate(der, INPUT).map(|authority| (der, authority)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(parsed
        .iter()
        .find(|(_, authority)| leaf.verify_signature(Some(authority.public_key())).is_ok())
        .map(|(der, _)| fingerprint(der)))
}

#[derive(Default)]
struct SubjectAltNames {
    dns_names: Vec<String>,
    ip_addresses: Vec<IpAddr>,
    uris: Vec<String>,
    email_addresses: Vec<String>,
}

impl SubjectAltNames {
    /// Name types certflow never issues (directory names, otherName, ...)
    /// and IP entries of impossible length are left out rather than failing
    /// the whole inspection.
    fn of(leaf: &X509Certificate<'_>) -> Result<Self, PkiError> {
        let extension =
            leaf.subject_alternative_name()
                .map_err(|source| PkiError::Certificate {
                    input: "tls.crt",
                    source,
                })?;
        let mut names = Self::default();
        for name in extension.iter().flat_map(|ext| &ext.value.general_names) {
            match name {
                GeneralName::DNSName(dns) => names.dns_names.push((*dns).to_owned()),
                GeneralName::URI(uri) => names.uris.push((*uri).to_owned()),
                GeneralName::RFC822Name(email) => names.email_addresses.push((*email).to_owned()),
                GeneralName::IPAddress(octets) => {
                    if let Some(ip) = ip_address(octets) {
                        names.ip_addresses.push(ip);
                    }
                }
                _ => {}
            }
        }
        Ok(names)
    }
}

fn ip_address(octets: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(octets) {
        Some(IpAddr::from(v4))
    } else if let Ok(v6) = <[u8; 16]>::try_from(octets) {
        Some(IpAddr::from(v6))
    } else {
        None
    }
}
