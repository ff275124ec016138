//! Private keys: generation, loading from PEM, and naming their algorithm.
//!
//! Keys are always held and written as PKCS#8, whatever format they were read
//! in, so a Secret rewritten by certflow has one predictable key format.

use std::fmt;

use aws_lc_rs::encoding::AsDer as _;
use rcgen::{KeyPair, PublicKeyData as _, RsaKeySize};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer as _;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::PkiError;
use crate::encoding::pem_blocks;

/// A key algorithm and size that certflow can generate and recognise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeySpec {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    /// Generation accepts 2048, 3072 and 4096 bits; recognition reports the
    /// actual modulus size of any RSA key.
    Rsa {
        bits: u32,
    },
}

impl KeySpec {
    /// Human-readable name for messages and events, e.g. "ECDSA P-256", "RSA 2048".
    pub fn name(&self) -> String {
        match self {
            Self::EcdsaP256 => "ECDSA P-256".to_owned(),
            Self::EcdsaP384 => "ECDSA P-384".to_owned(),
            Self::Ed25519 => "Ed25519".to_owned(),
            Self::Rsa { bits } => format!("RSA {bits}"),
        }
    }

    /// Recognises the key in a certificate or key's SubjectPublicKeyInfo;
    /// `None` for algorithms outside [`KeySpec`] (P-521, DSA, ...).
    pub(crate) fn of_public_key(spki: &SubjectPublicKeyInfo<'_>) -> Option<Self> {
        let algorithm = &spki.algorithm.algorithm;
        if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = spki.algorithm.parameters.as_ref()?.as_oid().ok()?;
            if curve == OID_EC_P256 {
                Some(Self::EcdsaP256)
            } else if curve == OID_NIST_EC_P384 {
                Some(Self::EcdsaP384)
            } else {
                None
            }
        } else if *algorithm == OID_SIG_ED25519 {
            Some(Self::Ed25519)
        } else if *algorithm == OID_PKCS1_RSAENCRYPTION {
            match spki.parsed().ok()? {
                PublicKey::RSA(rsa) => Some(Self::Rsa {
                    bits: modulus_bits(rsa.modulus)?,
                }),
                _ => None,
            }
        } else {
            None
        }
    }
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Bit length of a DER INTEGER magnitude. Counted here rather than with
/// x509-parser's `key_size`, which assumes a leading sign byte.
fn modulus_bits(modulus: &[u8]) -> Option<u32> {
    let start = modulus.iter().position(|byte| *byte != 0)?;
    let significant = &modulus[start..];
    let whole_bytes = u32::try_from(significant.len()).ok()?;
    Some(whole_bytes * 8 - significant[0].leading_zeros())
}

/// A private key. Its `Debug` output names the algorithm and nothing else;
/// the only way to get key material out is [`PrivateKey::to_pkcs8_pem`].
pub struct PrivateKey(KeyPair);

impl PrivateKey {
    /// Generates a fresh key. RSA 4096 takes seconds; callers on an async
    /// runtime should run this on a blocking thread.
    pub fn generate(spec: KeySpec) -> Result<Self, PkiError> {
        let generated = match spec {
            KeySpec::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeySpec::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            KeySpec::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
            KeySpec::Rsa { bits } => {
                let size = match bits {
                    2048 => RsaKeySize::_2048,
                    3072 => RsaKeySize::_3072,
                    4096 => RsaKeySize::_4096,
                    _ => {
                        return Err(PkiError::UnsupportedKeySpec {
                            spec: spec.name(),
                            reason: "RSA keys must be 2048, 3072 or 4096 bits",
                        });
                    }
                };
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size)
            }
        };
        let key_pair = generated.map_err(|source| PkiError::KeyGeneration {
            spec: spec.name(),
            source,
        })?;
        ed25519_as_pkcs8_v1(key_pair)
            .map(Self)
            .map_err(|source| PkiError::Key {
                input: "generated key",
                format: "PKCS#8",
                source,
            })
    }

    /// Reads the first private key block: unencrypted PKCS#8 (`PRIVATE KEY`),
    /// SEC1 (`EC PRIVATE KEY`, P-256 or P-384) or PKCS#1 (`RSA PRIVATE KEY`).
    /// Other blocks, such as a certificate in the same file, are skipped.
    pub fn from_pem(pem: &str) -> Result<Self, PkiError> {
        Self::read(pem.as_bytes(), "private key")
    }

    /// [`PrivateKey::from_pem`] with the input named in errors (`tls.key`, `CA key`).
    pub(crate) fn read(pem: &[u8], input: &'static str) -> Result<Self, PkiError> {
        let block = pem_blocks(pem, input)?
            .into_iter()
            .find(|block| block.label.ends_with("PRIVATE KEY"))
            .ok_or(PkiError::MissingPem {
                input,
                label: "PRIVATE KEY",
            })?;
        let (format, pkcs8) = match block.label.as_str() {
            "PRIVATE KEY" => ("PKCS#8", Ok(block.contents)),
            "EC PRIVATE KEY" => ("SEC1", sec1_to_pkcs8(&block.contents)),
            "RSA PRIVATE KEY" => ("PKCS#1", pkcs1_to_pkcs8(&block.contents)),
            other => {
                return Err(PkiError::UnsupportedKeyFormat {
                    input,
                    label: other.to_owned(),
                });
            }
        };
        let key_error = |source| PkiError::Key {
            input,
            format,
            source,
        };
        let pkcs8 = pkcs8.map_err(key_error)?;
        let key_pair =
            KeyPair::try_from(pkcs8.as_slice()).map_err(|source| key_error(Box::new(source)))?;
        ed25519_as_pkcs8_v1(key_pair).map(Self).map_err(key_error)
    }

    /// The key as a PKCS#8 `PRIVATE KEY` PEM block, the format certflow
    /// writes to `tls.key`. This is the one place key material leaves the type.
    pub fn to_pkcs8_pem(&self) -> String {
        self.0.serialize_pem()
    }

    /// The key's algorithm, or `None` for keys outside [`KeySpec`] (P-521).
    pub fn spec(&self) -> Option<KeySpec> {
        let spki = self.public_key_der();
        let (_, parsed) = SubjectPublicKeyInfo::from_der(&spki).ok()?;
        KeySpec::of_public_key(&parsed)
    }

    /// The public half as DER SubjectPublicKeyInfo, e.g. to compare with a
    /// certificate's key or to pin it.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.0.subject_public_key_info()
    }

    /// The subjectPublicKey BIT STRING contents, for comparing against a
    /// certificate without depending on how the algorithm parameters are
    /// encoded (RSA's NULL parameters are sometimes omitted).
    pub(crate) fn public_key_bits(&self) -> &[u8] {
        self.0.public_key_raw()
    }

    pub(crate) fn key_pair(&self) -> &KeyPair {
        &self.0
    }

    pub(crate) fn into_key_pair(self) -> KeyPair {
        self.0
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.spec() {
            Some(spec) => write!(f, "PrivateKey(<redacted> {spec})"),
            None => f.write_str("PrivateKey(<redacted> unrecognised algorithm)"),
        }
    }
}

type ConversionError = Box<dyn std::error::Error + Send + Sync>;

/// SEC1 carries the curve inside the key, but aws-lc wants to be told which
/// curve to expect, so try the two certflow supports.
fn sec1_to_pkcs8(sec1: &[u8]) -> Result<Vec<u8>, ConversionError> {
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair,
    };
    let key = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_ASN1_SIGNING, sec1)
        .or_else(|_| EcdsaKeyPair::from_private_key_der(&ECDSA_P384_SHA384_ASN1_SIGNING, sec1))?;
    Ok(key.to_pkcs8v1()?.as_ref().to_vec())
}

/// aws-lc writes Ed25519 keys as PKCS#8 v2 (RFC 5958, with the public key),
/// which OpenSSL 3.0 cannot read; v1 is read everywhere, so that is what
/// certflow holds and writes.
fn ed25519_as_pkcs8_v1(key_pair: KeyPair) -> Result<KeyPair, ConversionError> {
    if key_pair.algorithm() != &rcgen::PKCS_ED25519 {
        return Ok(key_pair);
    }
    let v1 = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(
        key_pair.serialized_der(),
    )?
    .to_pkcs8v1()?;
    Ok(KeyPair::try_from(v1.as_ref())?)
}

fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Result<Vec<u8>, ConversionError> {
    let key = aws_lc_rs::rsa::KeyPair::from_der(pkcs1)?;
    Ok(key.as_der()?.as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modulus_bits_ignores_the_sign_byte() {
        assert_eq!(modulus_bits(&[0x00, 0x80, 0x00]), Some(16));
        assert_eq!(modulus_bits(&[0x01, 0x00]), Some(9));
        assert_eq!(modulus_bits(&[0x00]), None);
    }

    #[test]
    fn rsa_sizes_other_than_2048_3072_4096_are_refused() {
        let refused = PrivateKey::generate(KeySpec::Rsa { bits: 1024 });
        assert!(matches!(
            refused,
            Err(PkiError::UnsupportedKeySpec { ref spec, .. }) if spec == "RSA 1024"
        ));
    }
}
