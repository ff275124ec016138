//! Private key settings: algorithm, size and rotation.

// kube's KubeSchema derive copies each struct it derives, `pub` included,
// into a function body, where rustc reports the copy as unreachable.
#![allow(unreachable_pub)]

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A key algorithm certflow can generate.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
)]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 (size 256, the default) or P-384 (size 384).
    #[default]
    #[serde(rename = "ECDSA")]
    Ecdsa,
    /// Ed25519; has no size. Not every TLS client accepts Ed25519 certificates.
    Ed25519,
    /// RSA with 2048 (the default), 3072 or 4096 bits.
    #[serde(rename = "RSA")]
    Rsa,
}

impl KeyAlgorithm {
    /// Every algorithm, in the order the API lists them.
    pub const ALL: [Self; 3] = [Self::Ecdsa, Self::Ed25519, Self::Rsa];

    /// The algorithm as written in the API: `ECDSA`, `Ed25519` or `RSA`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ecdsa => "ECDSA",
            Self::Ed25519 => "Ed25519",
            Self::Rsa => "RSA",
        }
    }

    /// The sizes that may be requested; empty for Ed25519, whose size is fixed.
    pub fn allowed_sizes(self) -> &'static [u32] {
        match self {
            Self::Ecdsa => &[256, 384],
            Self::Ed25519 => &[],
            Self::Rsa => &[2048, 3072, 4096],
        }
    }

    /// The size used when none is requested; `None` for Ed25519.
    pub fn default_size(self) -> Option<u32> {
        self.allowed_sizes().first().copied()
    }
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to the private key when the certificate is renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
pub enum RotationPolicy {
    /// Generate a new private key for every certificate (the default).
    #[default]
    Always,
    /// Keep the private key already in the Secret, if it still matches the
    /// requested algorithm and size.
    Never,
}

/// The private key of the certificate.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = crate::cel::key_size_fits(KeyAlgorithm::Ecdsa, "algorithm", "size"),
    validation = crate::cel::key_size_fits(KeyAlgorithm::Rsa, "algorithm", "size"),
    validation = crate::cel::key_size_fits(KeyAlgorithm::Ed25519, "algorithm", "size")
)]
pub struct PrivateKeySpec {
    /// Key algorithm: ECDSA (the default), Ed25519 or RSA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<KeyAlgorithm>,
    /// Key size in bits: 256 (default) or 384 for ECDSA; 2048 (default), 3072
    /// or 4096 for RSA; not set for Ed25519.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u32>,
    /// Always (the default) generates a new key on every renewal; Never keeps
    /// the existing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_policy: Option<RotationPolicy>,
}

impl PrivateKeySpec {
    /// The requested algorithm, or ECDSA.
    pub fn effective_algorithm(&self) -> KeyAlgorithm {
        self.algorithm.unwrap_or_default()
    }

    /// The requested size, or the algorithm's default; `None` for Ed25519.
    pub fn effective_size(&self) -> Option<u32> {
        self.size
            .or_else(|| self.effective_algorithm().default_size())
    }

    /// The requested rotation policy, or `Always`.
    pub fn effective_rotation_policy(&self) -> RotationPolicy {
        self.rotation_policy.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_private_key_spec_means_ecdsa_p256_rotated_always() {
        let spec = PrivateKeySpec::default();
        assert_eq!(spec.effective_algorithm(), KeyAlgorithm::Ecdsa);
        assert_eq!(spec.effective_size(), Some(256));
        assert_eq!(spec.effective_rotation_policy(), RotationPolicy::Always);
    }

    #[test]
    fn rsa_defaults_to_2048_bits_and_ed25519_has_no_size() {
        let rsa = PrivateKeySpec {
            algorithm: Some(KeyAlgorithm::Rsa),
            ..Default::default()
        };
        let ed25519 = PrivateKeySpec {
            algorithm: Some(KeyAlgorithm::Ed25519),
            ..Default::default()
        };
        assert_eq!(rsa.effective_size(), Some(2048));
        assert_eq!(ed25519.effective_size(), None);
    }

    #[test]
    fn algorithms_serialize_as_the_api_spells_them() {
        for algorithm in KeyAlgorithm::ALL {
            let json = serde_json::to_value(algorithm).expect("serializes");
            assert_eq!(json, algorithm.as_str());
        }
    }
}
