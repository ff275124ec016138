//! Key usages and extended key usages, spelled as cert-manager spells them so
//! that manifests carry over.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the certificate's key may be used for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum KeyUsage {
    /// Key usage: verify signatures made with the key (TLS handshakes need it).
    #[serde(rename = "digital signature")]
    DigitalSignature,
    /// Key usage: encrypt keys for the holder (RSA key exchange).
    #[serde(rename = "key encipherment")]
    KeyEncipherment,
    /// Key usage: key agreement (ECDH).
    #[serde(rename = "key agreement")]
    KeyAgreement,
    /// Key usage: non-repudiation.
    #[serde(rename = "content commitment")]
    ContentCommitment,
    /// Key usage: encrypt data directly.
    #[serde(rename = "data encipherment")]
    DataEncipherment,
    /// Key usage: sign certificates (CA certificates only).
    #[serde(rename = "cert sign")]
    CertSign,
    /// Key usage: sign certificate revocation lists.
    #[serde(rename = "crl sign")]
    CrlSign,
    /// Extended key usage: TLS server.
    #[serde(rename = "server auth")]
    ServerAuth,
    /// Extended key usage: TLS client (mutual TLS).
    #[serde(rename = "client auth")]
    ClientAuth,
    /// Extended key usage: code signing.
    #[serde(rename = "code signing")]
    CodeSigning,
    /// Extended key usage: S/MIME email protection.
    #[serde(rename = "email protection")]
    EmailProtection,
    /// Extended key usage: signing OCSP responses.
    #[serde(rename = "ocsp signing")]
    OcspSigning,
    /// Extended key usage: trusted timestamping.
    #[serde(rename = "timestamping")]
    Timestamping,
}

impl KeyUsage {
    /// Every usage, in the order the API lists them.
    pub const ALL: [Self; 13] = [
        Self::DigitalSignature,
        Self::KeyEncipherment,
        Self::KeyAgreement,
        Self::ContentCommitment,
        Self::DataEncipherment,
        Self::CertSign,
        Self::CrlSign,
        Self::ServerAuth,
        Self::ClientAuth,
        Self::CodeSigning,
        Self::EmailProtection,
        Self::OcspSigning,
        Self::Timestamping,
    ];

    /// The usages of a certificate that does not list any: a TLS server's.
    pub const DEFAULT: [Self; 3] = [
        Self::DigitalSignature,
        Self::KeyEncipherment,
        Self::ServerAuth,
    ];

    /// The usage as written in the API, such as `server auth`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DigitalSignature => "digital signature",
            Self::KeyEncipherment => "key encipherment",
            Self::KeyAgreement => "key agreement",
            Self::ContentCommitment => "content commitment",
            Self::DataEncipherment => "data encipherment",
            Self::CertSign => "cert sign",
            Self::CrlSign => "crl sign",
            Self::ServerAuth => "server auth",
            Self::ClientAuth => "client auth",
            Self::CodeSigning => "code signing",
            Self::EmailProtection => "email protection",
            Self::OcspSigning => "ocsp signing",
            Self::Timestamping => "timestamping",
        }
    }

    /// Whether this is an extended key usage (an EKU purpose) rather than a
    /// bit of the X.509 key usage extension.
    pub fn is_extended(self) -> bool {
        matches!(
            self,
            Self::ServerAuth
                | Self::ClientAuth
                | Self::CodeSigning
                | Self::EmailProtection
                | Self::OcspSigning
                | Self::Timestamping
        )
    }
}

impl std::fmt::Display for KeyUsage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usages_serialize_with_cert_manager_spelling() {
        for usage in KeyUsage::ALL {
            let json = serde_json::to_value(usage).expect("serializes");
            assert_eq!(json, usage.as_str());
            let back: KeyUsage = serde_json::from_value(json).expect("deserializes");
            assert_eq!(back, usage);
        }
    }

    #[test]
    fn an_unknown_usage_is_refused() {
        assert!(serde_json::from_str::<KeyUsage>(r#""server-auth""#).is_err());
    }
}
