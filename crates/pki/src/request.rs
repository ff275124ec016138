//! What a caller asks an [`Authority`](crate::Authority) to certify.
//!
//! The request is plain data: policy (which names are allowed, how long a
//! certificate may live, how far notBefore is backdated) is decided by the
//! caller before it gets here.

use std::net::IpAddr;
use std::time::SystemTime;

use crate::NameConstraints;

/// keyUsage bits (RFC 5280 §4.2.1.3) a certificate may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyUsage {
    DigitalSignature,
    KeyEncipherment,
    KeyAgreement,
    ContentCommitment,
    DataEncipherment,
    CertSign,
    CrlSign,
}

impl KeyUsage {
    pub(crate) fn to_rcgen(self) -> rcgen::KeyUsagePurpose {
        use rcgen::KeyUsagePurpose as Purpose;
        match self {
            Self::DigitalSignature => Purpose::DigitalSignature,
            Self::KeyEncipherment => Purpose::KeyEncipherment,
            Self::KeyAgreement => Purpose::KeyAgreement,
            Self::ContentCommitment => Purpose::ContentCommitment,
            Self::DataEncipherment => Purpose::DataEncipherment,
            Self::CertSign => Purpose::KeyCertSign,
            Self::CrlSign => Purpose::CrlSign,
        }
    }
}

/// extendedKeyUsage purposes (RFC 5280 §4.2.1.12) a certificate may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExtendedKeyUsage {
    ServerAuth,
    ClientAuth,
    CodeSigning,
    EmailProtection,
    OcspSigning,
    TimeStamping,
}

impl ExtendedKeyUsage {
    pub(crate) fn to_rcgen(self) -> rcgen::ExtendedKeyUsagePurpose {
        use rcgen::ExtendedKeyUsagePurpose as Purpose;
        match self {
            Self::ServerAuth => Purpose::ServerAuth,
            Self::ClientAuth => Purpose::ClientAuth,
            Self::CodeSigning => Purpose::CodeSigning,
            Self::EmailProtection => Purpose::EmailProtection,
            Self::OcspSigning => Purpose::OcspSigning,
            Self::TimeStamping => Purpose::TimeStamping,
        }
    }
}

/// The contents of one certificate to issue. Empty lists leave the
/// corresponding extension out; at least a common name or one SAN is required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafRequest {
    pub common_name: Option<String>,
    /// ASCII only: IDNs must already be punycode (`xn--...`).
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub email_addresses: Vec<String>,
    pub key_usages: Vec<KeyUsage>,
    pub extended_key_usages: Vec<ExtendedKeyUsage>,
    /// Sets basicConstraints CA:TRUE with pathLenConstraint 0 (the CA may
    /// sign leaves, not further CAs) and requires `name_constraints`;
    /// otherwise the certificate carries an explicit CA:FALSE.
    pub is_ca: bool,
    /// The names a CA certificate may certify, written as a critical
    /// nameConstraints extension. Required when `is_ca` is set (issuance
    /// fails closed without it); ignored for leaves.
    pub name_constraints: Option<NameConstraints>,
    /// Written as given, truncated to the second. The signer passes its
    /// current time less `certflow_api::NOT_BEFORE_BACKDATE`, never before
    /// the CA's own notBefore.
    pub not_before: SystemTime,
    /// Truncated to the second; must not be later than the CA's notAfter.
    pub not_after: SystemTime,
}

impl LeafRequest {
    /// A request with no names or usages, for filling in with struct update
    /// syntax: `LeafRequest { dns_names, ..LeafRequest::new(from, until) }`.
    pub fn new(not_before: SystemTime, not_after: SystemTime) -> Self {
        Self {
            common_name: None,
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            uris: Vec::new(),
            email_addresses: Vec::new(),
            key_usages: Vec::new(),
            extended_key_usages: Vec::new(),
            is_ca: false,
            name_constraints: None,
            not_before,
            not_after,
        }
    }

    pub(crate) fn has_subject_alt_names(&self) -> bool {
        !(self.dns_names.is_empty()
            && self.ip_addresses.is_empty()
            && self.uris.is_empty()
            && self.email_addresses.is_empty())
    }
}
