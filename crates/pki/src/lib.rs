//! Certificate logic for certflow, with no I/O and no async: generating
//! keys ([`PrivateKey`]), loading or generating a CA ([`Authority`]),
//! signing leaf certificates and name-constrained sub-CA certificates from a
//! [`LeafRequest`], cross-signing a successor CA so trust survives a
//! rotation ([`Authority::cross_sign`]), [`inspect`]ing the `tls.crt` /
//! `tls.key` / `ca.crt` of a Secret, and [`assess`]ing whether a
//! ServiceCertificate's Secret is still good: the one rule the watcher and
//! the signer both apply. It consumes PEM bytes and returns PEM strings;
//! `assess` alone reads Kubernetes objects, as plain data handed to it.
//! Reading and writing Secrets is the signer's and watcher's job.
//!
//! It never issues an unconstrained CA: every CA certificate from
//! [`Authority::issue`] has pathLenConstraint 0 and a critical
//! nameConstraints extension, and [`NameConstraints`] fails closed (an empty
//! list permits nothing of its kind).
//!
//! This crate never logs, and never formats key material: the `Debug` output
//! of every type that holds a key ([`PrivateKey`], [`Authority`],
//! [`GeneratedCa`]) names the algorithm and redacts the key, and [`PkiError`]
//! messages never contain key bytes. The only ways to get a key out are
//! [`PrivateKey::to_pkcs8_pem`] and [`GeneratedCa::key_pem`], both explicit.
//!
//! Times are second-precision, as X.509 stores them: inputs are truncated and
//! outputs report what was actually written. Policy such as backdating
//! notBefore for clock skew, certificate lifetimes and allowed names belongs
//! to the caller.
#![forbid(unsafe_code)]

mod assess;
mod authority;
mod constraints;
mod encoding;
mod error;
mod inspect;
mod key;
mod request;

pub use assess::{Foreign, Found, Verdict, assess, renewal_time};
pub use authority::{Authority, GeneratedCa, Issued};
pub use constraints::NameConstraints;
pub use encoding::serial_hex;
pub use error::PkiError;
pub use inspect::{Inspection, fingerprint_pem, inspect};
pub use key::{KeySpec, PrivateKey};
pub use request::{ExtendedKeyUsage, KeyUsage, LeafRequest};
