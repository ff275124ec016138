//! A certificate authority that issues leaf certificates.
//!
//! An [`Authority`] is built from a CA certificate and its key, either loaded
//! from PEM (a CA Secret) or generated, and only ever built after checking that
//! the certificate is a CA and that the key is its key. It is immutable and
//! `Send + Sync`, so one instance can serve concurrent issuances.

use std::fmt;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::{OID_X509_EXT_EXTENDED_KEY_USAGE, OID_X509_EXT_NAME_CONSTRAINTS};
use x509_parser::x509::X509Name;

use crate::constraints::NAME_CONSTRAINTS_OID;
use crate::encoding::{
    CERTIFICATE_LABEL, add, certificate_ders, certificate_pem, display_time, fingerprint,
    parse_certificate, serial_hex, to_offset_date_time, to_system_time,
};
use crate::{KeySpec, LeafRequest, PkiError, PrivateKey};

/// The PEM of a freshly generated CA, for storing in its Secret.
/// `Debug` leaves the key out.
#[derive(Clone, PartialEq, Eq)]
pub struct GeneratedCa {
    pub cert_pem: String,
    /// PKCS#8 `PRIVATE KEY` block.
    pub key_pem: String,
}

impl fmt::Debug for GeneratedCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedCa")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A certificate as issued, ready for a `kubernetes.io/tls` Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The leaf alone.
    pub cert_pem: String,
    /// The leaf followed by the CA certificate (and any chain the CA was
    /// loaded with): what servers should present as `tls.crt`.
    pub chain_pem: String,
    /// Lowercase hex, as [`Inspection::serial`](crate::Inspection::serial) reports it.
    pub serial: String,
    /// As written in the certificate (truncated to the second).
    pub not_before: SystemTime,
    /// As written in the certificate (truncated to the second).
    pub not_after: SystemTime,
}

/// Bytes of randomness in each serial: 128 bits, well above the 64 the
/// CA/Browser Forum requires, and within RFC 5280's 20-octet limit even with
/// the sign byte DER adds when the top bit is set.
const SERIAL_BYTES: usize = 16;

/// A CA certificate with its signing key.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    key_spec: Option<KeySpec>,
    subject: String,
    cert_der: Vec<u8>,
    cert_pem: String,
    /// Certificates that followed the CA's own in the PEM it was loaded from,
    /// appended to every issued chain.
    chain_pem: String,
    serial: String,
    fingerprint: String,
    not_before: SystemTime,
    not_after: SystemTime,
    not_after_unix: i64,
}

impl Authority {
    /// Loads a CA from PEM. The first CERTIFICATE block is the CA; blocks
    /// after it are kept as its chain. Fails unless that certificate is a CA
    /// (basicConstraints CA:TRUE, keyCertSign if keyUsage is present) and the
    /// key is its key. Expiry is not checked here: the caller has the clock
    /// and decides how close to [`Authority::not_after`] is too close.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        const INPUT: &str = "CA certificate";
        let mut certificates = certificate_ders(cert_pem.as_bytes(), INPUT)?.into_iter();
        let cert_der = certificates.next().ok_or(PkiError::MissingPem {
            input: INPUT,
            label: CERTIFICATE_LABEL,
        })?;
        let mut chain_pem = String::new();
        for der in certificates {
            parse_certificate(&der, "CA certificate chain")?;
            chain_pem.push_str(&certificate_pem(&der));
        }
        let key = PrivateKey::read(key_pem.as_bytes(), "CA key")?;
        Self::assemble(cert_der, key, chain_pem)
    }

    /// Generates a self-signed root CA valid from now for `validity`. The
    /// returned PEM is what to store; the [`Authority`] is ready to issue.
    /// notBefore is not backdated: a CA is created well before its first
    /// leaves are used, so skew only matters in its first seconds.
    pub fn generate(
        common_name: &str,
        spec: KeySpec,
        validity: Duration,
    ) -> Result<(Self, GeneratedCa), PkiError> {
        let key = PrivateKey::generate(spec)?;
        let not_before = SystemTime::now();
        let not_after = add(not_before, validity)?;

        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial()?);
        set_validity(&mut params, not_before, not_after)?;

        let certificate = params
            .self_signed(key.key_pair())
            .map_err(|source| PkiError::Signing { source })?;
        let generated = GeneratedCa {
            cert_pem: certificate_pem(certificate.der()),
            key_pem: key.to_pkcs8_pem(),
        };
        let authority = Self::assemble(certificate.der().to_vec(), key, String::new())?;
        Ok((authority, generated))
    }

    /// The one constructor: every [`Authority`] passes the same checks.
    fn assemble(cert_der: Vec<u8>, key: PrivateKey, chain_pem: String) -> Result<Self, PkiError> {
        let certificate = parse_certificate(&cert_der, "CA certificate")?;
        let subject = certificate.subject().to_string();
        if let Some(reason) = [lacks_ca_basic_constraint, lacks_key_cert_sign]
            .iter()
            .find_map(|check| check(&certificate))
        {
            return Err(PkiError::NotAnAuthority { subject, reason });
        }
        if certificate.public_key().subject_public_key.data.as_ref() != key.public_key_bits() {
            return Err(PkiError::AuthorityKeyMismatch { subject });
        }
        let not_before = to_system_time(certificate.validity().not_before.timestamp())?;
        let not_after_unix = certificate.validity().not_after.timestamp();
        let not_after = to_system_time(not_after_unix)?;
        let serial = serial_hex(certificate.raw_serial());
        let key_spec = KeySpec::of_public_key(certificate.public_key());

        let unusable = |source| PkiError::UnusableAuthority {
            subject: subject.clone(),
            source,
        };
        let issuer = Issuer::from_ca_cert_der(&cert_der.as_slice().into(), key.into_key_pair())
            .map_err(unusable)?;
        if !issuer_name_round_trips(&issuer, certificate.subject().as_raw()).map_err(unusable)? {
            return Err(PkiError::UnrepresentableAuthoritySubject { subject });
        }
        Ok(Self {
            issuer,
            key_spec,
            subject,
            cert_pem: certificate_pem(&cert_der),
            fingerprint: fingerprint(&cert_der),
            cert_der,
            chain_pem,
            serial,
            not_before,
            not_after,
            not_after_unix,
        })
    }

    /// The CA certificate alone, as PEM: what goes into `ca.crt`.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate as DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Lowercase hex SHA-256 of the CA certificate's DER; identifies the CA
    /// across rotations (compare with [`Inspection::ca_fingerprint`](crate::Inspection::ca_fingerprint)).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The CA certificate's serial, lowercase hex.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// The CA certificate's subject in certificate order, for messages,
    /// e.g. `O=certflow, CN=certflow root`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The CA key's algorithm, `None` if outside [`KeySpec`].
    pub fn key_spec(&self) -> Option<KeySpec> {
        self.key_spec
    }

    /// The CA certificate's notBefore.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// The CA certificate's notAfter. Leaves may not outlive it.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Signs a certificate for `key`'s public half. The certificate gets a
    /// random 128-bit serial, the subject CN if one is given, the requested
    /// SANs and usages, basicConstraints, and subject and authority key
    /// identifiers so chains build unambiguously across CA rotations.
    ///
    /// A CA certificate (`request.is_ca`) gets CA:TRUE with
    /// pathLenConstraint 0 and a critical nameConstraints extension from
    /// `request.name_constraints`; without them it is refused with
    /// [`PkiError::CaWithoutNameConstraints`]. Leaves get CA:FALSE.
    pub fn issue(&self, request: &LeafRequest, key: &PrivateKey) -> Result<Issued, PkiError> {
        let common_name = request
            .common_name
            .as_deref()
            .filter(|common_name| !common_name.is_empty());
        if common_name.is_none() && !request.has_subject_alt_names() {
            return Err(PkiError::NoSubject);
        }
        let (is_ca, name_constraints) = ca_constraints(request)?;

        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        if let Some(common_name) = common_name {
            params
                .distinguished_name
                .push(DnType::CommonName, common_name);
        }
        params.subject_alt_names = subject_alt_names(request)?;
        params.key_usages = request.key_usages.iter().map(|u| u.to_rcgen()).collect();
        params.extended_key_usages = request
            .extended_key_usages
            .iter()
            .map(|u| u.to_rcgen())
            .collect();
        params.is_ca = is_ca;
        params.custom_extensions.extend(name_constraints);
        params.use_authority_key_identifier_extension = true;
        let serial = random_serial()?;
        params.serial_number = Some(serial.clone());
        let (not_before, not_after) =
            set_validity(&mut params, request.not_before, request.not_after)?;
        if not_after > self.not_after_unix {
            return Err(PkiError::OutlivesAuthority {
                requested: display_time(request.not_after),
                authority: display_time(self.not_after),
            });
        }

        let certificate = params
            .signed_by(key.key_pair(), &self.issuer)
            .map_err(|source| PkiError::Signing { source })?;
        let cert_pem = certificate_pem(certificate.der());
        let chain_pem = format!("{cert_pem}{}{}", self.cert_pem, self.chain_pem);
        Ok(Issued {
            cert_pem,
            chain_pem,
            serial: serial_hex(&serial.to_bytes()),
            not_before: to_system_time(not_before)?,
            not_after: to_system_time(not_after)?,
        })
    }

    /// Certifies `newer`, the CA that is to replace this one, so that trust
    /// survives the rotation: a leaf `newer` signed, served as
    /// `leaf + cross_sign`, chains to this CA for clients that trust only
    /// this CA, and stops at `newer` for clients that already trust it.
    ///
    /// The certificate carries `newer`'s subject, public key and subject key
    /// identifier, which is how leaves name their issuer; is issued by this
    /// CA under its key identifier; and keeps the limits `newer`'s own
    /// certificate has (pathLenConstraint, nameConstraints,
    /// extendedKeyUsage), so the second path never grants more than the
    /// first. It is valid for `newer`'s validity, cut short at this CA's
    /// notAfter; if nothing is left, [`PkiError::CrossSignOutsideValidity`].
    /// Returns the certificate as PEM.
    pub fn cross_sign(&self, newer: &Authority) -> Result<String, PkiError> {
        let newer_certificate = parse_certificate(&newer.cert_der, "CA certificate to cross-sign")?;
        let not_after = newer.not_after.min(self.not_after);
        if not_after <= newer.not_before {
            return Err(PkiError::CrossSignOutsideValidity {
                subject: newer.subject.clone(),
                not_before: display_time(newer.not_before),
                authority_not_after: display_time(self.not_after),
            });
        }
        let mismatch = |part| PkiError::CrossSignMismatch {
            subject: newer.subject.clone(),
            part,
        };

        let mut params = CertificateParams::default();
        params.distinguished_name =
            distinguished_name(newer_certificate.subject()).ok_or_else(|| mismatch("subject"))?;
        params.is_ca = IsCa::Ca(path_length(&newer_certificate));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.key_identifier_method = subject_key_identifier(&newer_certificate);
        params.use_authority_key_identifier_extension = true;
        params.custom_extensions = restrictions(&newer_certificate);
        params.serial_number = Some(random_serial()?);
        set_validity(&mut params, newer.not_before, not_after)?;

        let cross = params
            .signed_by(newer.issuer.key(), &self.issuer)
            .map_err(|source| PkiError::Signing { source })?;
        let cross_certificate = parse_certificate(cross.der(), "cross-signed certificate")?;
        if cross_certificate.subject().as_raw() != newer_certificate.subject().as_raw() {
            return Err(mismatch("subject"));
        }
        if cross_certificate.public_key().raw != newer_certificate.public_key().raw {
            return Err(mismatch("public key"));
        }
        Ok(certificate_pem(cross.der()))
    }
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = match self.key_spec {
            Some(spec) => format!("<redacted> {spec}"),
            None => "<redacted>".to_owned(),
        };
        f.debug_struct("Authority")
            .field("subject", &self.subject)
            .field("serial", &self.serial)
            .field("fingerprint", &self.fingerprint)
            .field("not_before", &display_time(self.not_before))
            .field("not_after", &display_time(self.not_after))
            .field("key", &key)
            .finish_non_exhaustive()
    }
}

/// rcgen rebuilds the CA's subject from its parsed attributes and cannot
/// represent every name: a repeated attribute type (`DC=example, DC=com`)
/// collapses to one. Leaves would then name an issuer that does not exist and
/// OpenSSL could not build the chain, so sign a throwaway certificate and
/// compare its issuer with the CA's subject byte for byte.
fn issuer_name_round_trips(
    issuer: &Issuer<'static, KeyPair>,
    ca_subject: &[u8],
) -> Result<bool, rcgen::Error> {
    let probe = CertificateParams::default().signed_by(issuer.key(), issuer)?;
    Ok(x509_parser::parse_x509_certificate(probe.der())
        .is_ok_and(|(_, probe)| probe.issuer().as_raw() == ca_subject))
}

fn lacks_ca_basic_constraint(certificate: &X509Certificate<'_>) -> Option<&'static str> {
    match certificate.basic_constraints() {
        Err(_) => Some("its basicConstraints extension is malformed or repeated"),
        Ok(None) => Some("it has no basicConstraints extension"),
        Ok(Some(constraints)) if !constraints.value.ca => Some("its basicConstraints say CA:FALSE"),
        Ok(Some(_)) => None,
    }
}

/// RFC 5280 §4.2.1.3: when keyUsage is present, keyCertSign must be set for
/// the key to sign certificates; verifiers reject chains otherwise.
fn lacks_key_cert_sign(certificate: &X509Certificate<'_>) -> Option<&'static str> {
    match certificate.key_usage() {
        Err(_) => Some("its keyUsage extension is malformed or repeated"),
        Ok(Some(usage)) if !usage.value.key_cert_sign() => {
            Some("its keyUsage does not include keyCertSign")
        }
        Ok(_) => None,
    }
}

/// basicConstraints for the request, and for a CA its nameConstraints
/// extension. pathLenConstraint 0: a tenant's CA signs leaves, never another
/// CA, so the constraints below cannot be escaped through a deeper chain.
fn ca_constraints(request: &LeafRequest) -> Result<(IsCa, Option<CustomExtension>), PkiError> {
    if !request.is_ca {
        // ExplicitNoCa rather than NoCa: rcgen only writes the subject key
        // identifier alongside basicConstraints.
        return Ok((IsCa::ExplicitNoCa, None));
    }
    let name_constraints = request
        .name_constraints
        .as_ref()
        .ok_or(PkiError::CaWithoutNameConstraints)?;
    Ok((
        IsCa::Ca(BasicConstraints::Constrained(0)),
        Some(name_constraints.to_extension()?),
    ))
}

/// rcgen's [`DistinguishedName`] for a parsed name, attribute by attribute,
/// keeping each value's string type so the DER comes out the same. rcgen
/// does this for issuers but does not expose it. `None` for names it cannot
/// hold (multi-valued RDNs, other string types); the caller still compares
/// the result byte for byte.
fn distinguished_name(name: &X509Name<'_>) -> Option<DistinguishedName> {
    use rcgen::string::{BmpString, UniversalString};
    use x509_parser::der_parser::asn1_rs::Tag;

    let mut distinguished = DistinguishedName::new();
    for rdn in name.iter() {
        let [attribute] = rdn.iter().collect::<Vec<_>>()[..] else {
            return None;
        };
        let oid: Vec<u64> = attribute.attr_type().iter()?.collect();
        let data = attribute.attr_value().data;
        let text = || std::str::from_utf8(data).ok();
        let value = match attribute.attr_value().header.tag() {
            Tag::BmpString => DnValue::BmpString(BmpString::from_utf16be(data.to_vec()).ok()?),
            Tag::Ia5String => DnValue::Ia5String(text()?.try_into().ok()?),
            Tag::PrintableString => DnValue::PrintableString(text()?.try_into().ok()?),
            Tag::T61String => DnValue::TeletexString(text()?.try_into().ok()?),
            Tag::UniversalString => {
                DnValue::UniversalString(UniversalString::from_utf32be(data.to_vec()).ok()?)
            }
            Tag::Utf8String => DnValue::Utf8String(text()?.to_owned()),
            _ => return None,
        };
        distinguished.push(DnType::from_oid(&oid), value);
    }
    Some(distinguished)
}

/// The CA's own pathLenConstraint, carried over to a certificate for the same
/// key. [`Authority::assemble`] has refused unreadable basicConstraints;
/// were that to change, this falls towards the narrower path.
fn path_length(certificate: &X509Certificate<'_>) -> BasicConstraints {
    match certificate.basic_constraints() {
        Ok(Some(constraints)) => match constraints.value.path_len_constraint {
            // Longer than any chain a verifier builds: as good as unlimited,
            // without claiming to be.
            Some(length) => BasicConstraints::Constrained(u8::try_from(length).unwrap_or(u8::MAX)),
            None => BasicConstraints::Unconstrained,
        },
        _ => BasicConstraints::Constrained(0),
    }
}

/// The key identifier a CA's leaves name it by: its subjectKeyIdentifier, or
/// without one the truncated SHA-256 rcgen's [`Issuer`] falls back to.
fn subject_key_identifier(certificate: &X509Certificate<'_>) -> KeyIdMethod {
    certificate
        .extensions()
        .iter()
        .find_map(|extension| match extension.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(identifier) => {
                Some(KeyIdMethod::PreSpecified(identifier.0.to_vec()))
            }
            _ => None,
        })
        .unwrap_or(KeyIdMethod::Sha256)
}

/// The extensions that narrow what a CA may certify, copied verbatim with
/// their criticality.
fn restrictions(certificate: &X509Certificate<'_>) -> Vec<CustomExtension> {
    const EXTENDED_KEY_USAGE_OID: [u64; 4] = [2, 5, 29, 37];
    certificate
        .extensions()
        .iter()
        .filter_map(|extension| {
            let oid: &[u64] = if extension.oid == OID_X509_EXT_NAME_CONSTRAINTS {
                &NAME_CONSTRAINTS_OID
            } else if extension.oid == OID_X509_EXT_EXTENDED_KEY_USAGE {
                &EXTENDED_KEY_USAGE_OID
            } else {
                return None;
            };
            let mut copy = CustomExtension::from_oid_content(oid, extension.value.to_vec());
            copy.set_criticality(extension.critical);
            Some(copy)
        })
        .collect()
}

fn subject_alt_names(request: &LeafRequest) -> Result<Vec<SanType>, PkiError> {
    let ia5 = |kind: &'static str, value: &String| {
        rcgen::string::Ia5String::try_from(value.as_str()).map_err(|source| PkiError::InvalidName {
            kind,
            value: value.clone(),
            source,
        })
    };
    let mut names = Vec::new();
    for name in &request.dns_names {
        names.push(SanType::DnsName(ia5("DNS name", name)?));
    }
    names.extend(request.ip_addresses.iter().copied().map(SanType::IpAddress));
    for uri in &request.uris {
        names.push(SanType::URI(ia5("URI", uri)?));
    }
    for email in &request.email_addresses {
        names.push(SanType::Rfc822Name(ia5("email address", email)?));
    }
    Ok(names)
}

/// Writes both bounds, truncated to the second, and returns them as Unix
/// seconds. An empty or inverted window is refused rather than written.
fn set_validity(
    params: &mut CertificateParams,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<(i64, i64), PkiError> {
    params.not_before = to_offset_date_time(not_before)?;
    params.not_after = to_offset_date_time(not_after)?;
    if params.not_after <= params.not_before {
        return Err(PkiError::EmptyValidity {
            not_before: display_time(not_before),
            not_after: display_time(not_after),
        });
    }
    Ok((
        params.not_before.unix_timestamp(),
        params.not_after.unix_timestamp(),
    ))
}

fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut serial = [0u8; SERIAL_BYTES];
    aws_lc_rs::rand::fill(&mut serial).map_err(|_| PkiError::Random)?;
    Ok(SerialNumber::from_slice(&serial))
}
