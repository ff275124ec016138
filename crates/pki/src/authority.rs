//! A certificate authority that issues leaf certificates.
//!
//! An [`Authority`] is built from a CA certificate and its key, either loaded
//! from PEM (a CA Secret) or generated, and only ever built after checking that
//! the certificate is a CA and that the key is its key. It is immutable and
//! `Send + Sync`, so one instance can serve concurrent issuances.

use std::fmt;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use x509_parser::certificate::X509Certificate;

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

    /// The CA certificate's notAfter. Leaves may not outlive it.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Signs a certificate for `key`'s public half. The certificate gets a
    /// random 128-bit serial, the subject CN if one is given, the requested
    /// SANs and usages, basicConstraints (CA:TRUE only if asked), and subject
    /// and authority key identifiers so chains build unambiguously across CA
    /// rotations.
    pub fn issue(&self, request: &LeafRequest, key: &PrivateKey) -> Result<Issued, PkiError> {
        let common_name = request
            .common_name
            .as_deref()
            .filter(|common_name| !common_name.is_empty());
        if common_name.is_none() && !request.has_subject_alt_names() {
            return Err(PkiError::NoSubject);
        }

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
        // ExplicitNoCa rather than NoCa: rcgen only writes the subject key
        // identifier alongside basicConstraints.
        params.is_ca = if request.is_ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
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
