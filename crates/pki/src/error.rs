//! The crate's one error type.
//!
//! Messages name the input that failed (`tls.crt`, `CA key`, ...) and, where
//! useful, the certificate subject; they never carry key bytes or PEM text, so
//! they are safe to put in logs, events and status conditions.

use x509_parser::error::{PEMError, X509Error};

/// Every way certificate work in this crate can fail.
///
/// All variants are permanent for the given input: retrying with the same
/// bytes or the same request gives the same answer, except [`PkiError::Random`]
/// and [`PkiError::KeyGeneration`], which report a failing crypto backend.
/// [`PkiError::reason`] gives a stable label for metrics.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// The input held no PEM block of the expected kind.
    #[error("{input}: no {label} PEM block found")]
    MissingPem {
        input: &'static str,
        label: &'static str,
    },

    /// A PEM block was malformed (bad header, truncated, bad base64).
    #[error("{input}: malformed PEM")]
    Pem {
        input: &'static str,
        #[source]
        source: PEMError,
    },

    /// A CERTIFICATE block did not hold a valid X.509 certificate.
    #[error("{input}: not a valid X.509 certificate")]
    Certificate {
        input: &'static str,
        #[source]
        source: X509Error,
    },

    /// The private key is encrypted or of a PEM type we do not read.
    #[error(
        "{input}: unsupported private key PEM type {label:?}; expected an unencrypted PKCS#8 (PRIVATE KEY), SEC1 (EC PRIVATE KEY) or PKCS#1 (RSA PRIVATE KEY) key"
    )]
    UnsupportedKeyFormat { input: &'static str, label: String },

    /// The private key block could not be decoded as the format its label claims,
    /// or holds an algorithm or size the backend refuses (for example RSA 1024).
    #[error("{input}: cannot load the {format} private key")]
    Key {
        input: &'static str,
        format: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// Key generation was asked for a spec this crate does not generate.
    #[error("cannot generate a {spec} key: {reason}")]
    UnsupportedKeySpec { spec: String, reason: &'static str },

    /// The crypto backend failed to generate a key.
    #[error("generating a {spec} key failed")]
    KeyGeneration {
        spec: String,
        #[source]
        source: rcgen::Error,
    },

    /// The CA certificate cannot sign certificates.
    #[error("CA certificate {subject:?} is not a certificate authority: {reason}")]
    NotAnAuthority {
        subject: String,
        reason: &'static str,
    },

    /// The CA key is not the key of the CA certificate.
    #[error("CA key does not match the public key of CA certificate {subject:?}")]
    AuthorityKeyMismatch { subject: String },

    /// The CA certificate parsed but rcgen cannot take its subject or key
    /// identifier as an issuer.
    #[error("CA certificate {subject:?} cannot be used as an issuer")]
    UnusableAuthority {
        subject: String,
        #[source]
        source: rcgen::Error,
    },

    /// Issued certificates could not name this CA exactly as its own subject
    /// does, so clients could not chain them to it.
    #[error(
        "CA certificate {subject:?} has a subject that cannot be reproduced exactly in issued certificates (for example a repeated attribute type)"
    )]
    UnrepresentableAuthoritySubject { subject: String },

    /// A requested name cannot be encoded in a certificate (for example a
    /// non-ASCII DNS name; IDNs must arrive already punycode-encoded).
    #[error("invalid {kind} {value:?}")]
    InvalidName {
        kind: &'static str,
        value: String,
        #[source]
        source: rcgen::Error,
    },

    /// A name constraint cannot be written, or would permit more than it
    /// says (an empty name matches every name of its kind).
    #[error("invalid {kind} name constraint {value:?}: {reason}")]
    InvalidNameConstraint {
        kind: &'static str,
        value: String,
        reason: &'static str,
    },

    /// Every CA certificate this crate issues is name-constrained: an
    /// unconstrained one could sign certificates for any name.
    #[error(
        "refusing to issue a CA certificate without name constraints: it could sign certificates for any name; say which names it may certify (an empty list permits none of that kind)"
    )]
    CaWithoutNameConstraints,

    /// The CA to cross-sign only becomes valid after the signing CA expires.
    #[error(
        "cannot cross-sign CA {subject:?}: it becomes valid at {not_before}, not before the signing CA expires at {authority_not_after}"
    )]
    CrossSignOutsideValidity {
        subject: String,
        not_before: String,
        authority_not_after: String,
    },

    /// The cross certificate would not carry the other CA's subject or key
    /// byte for byte, so certificates it issued would not chain through it.
    #[error("cannot cross-sign CA {subject:?}: its {part} cannot be reproduced exactly")]
    CrossSignMismatch { subject: String, part: &'static str },

    /// A certificate must identify its subject somehow.
    #[error("the request has neither a common name nor a subject alternative name")]
    NoSubject,

    /// notAfter is not strictly after notBefore (after truncation to seconds).
    #[error("notAfter {not_after} is not later than notBefore {not_before}")]
    EmptyValidity {
        not_before: String,
        not_after: String,
    },

    /// A leaf must not outlive the CA that signed it: clients would reject it
    /// once the CA expires, so the caller has to decide what to do instead.
    #[error("requested notAfter {requested} is later than the CA's notAfter {authority}")]
    OutlivesAuthority {
        requested: String,
        authority: String,
    },

    /// A time cannot be written into a certificate (before year 0 or after 9999).
    #[error("time {seconds_since_epoch}s since the Unix epoch cannot be encoded in a certificate")]
    TimeOutOfRange { seconds_since_epoch: i128 },

    /// rcgen refused to build or sign the certificate.
    #[error("signing the certificate failed")]
    Signing {
        #[source]
        source: rcgen::Error,
    },

    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

impl PkiError {
    /// A stable, low-cardinality label for metrics and status reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingPem { .. } => "MissingPem",
            Self::Pem { .. } => "MalformedPem",
            Self::Certificate { .. } => "MalformedCertificate",
            Self::UnsupportedKeyFormat { .. } => "UnsupportedKeyFormat",
            Self::Key { .. } => "MalformedKey",
            Self::UnsupportedKeySpec { .. } => "UnsupportedKeySpec",
            Self::KeyGeneration { .. } => "KeyGenerationFailed",
            Self::NotAnAuthority { .. } => "NotAnAuthority",
            Self::AuthorityKeyMismatch { .. } => "AuthorityKeyMismatch",
            Self::UnusableAuthority { .. } => "UnusableAuthority",
            Self::UnrepresentableAuthoritySubject { .. } => "UnrepresentableAuthoritySubject",
            Self::InvalidName { .. } => "InvalidName",
            Self::InvalidNameConstraint { .. } => "InvalidNameConstraint",
            Self::CaWithoutNameConstraints => "CaWithoutNameConstraints",
            Self::CrossSignOutsideValidity { .. } => "CrossSignOutsideValidity",
            Self::CrossSignMismatch { .. } => "CrossSignMismatch",
            Self::NoSubject => "NoSubject",
            Self::EmptyValidity { .. } => "EmptyValidity",
            Self::OutlivesAuthority { .. } => "OutlivesAuthority",
            Self::TimeOutOfRange { .. } => "TimeOutOfRange",
            Self::Signing { .. } => "SigningFailed",
            Self::Random => "RandomFailed",
        }
    }
}
