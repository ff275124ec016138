//! Certificate logic for certflow, with no I/O, no Kubernetes and no async:
//! generating keys ([`PrivateKey`]), loading or generating a CA
//! ([`Authority`]), signing leaf certificates from a [`LeafRequest`], and
//! [`inspect`]ing the `tls.crt` / `tls.key` / `ca.crt` of a Secret so callers
//! can decide whether it needs reissuing. It consumes PEM bytes and returns
//! PEM strings; reading and writing Secrets is the signer's and watcher's job.
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

mod authority;
mod encoding;
mod error;
mod inspect;
mod key;
mod request;

pub use authority::{Authority, GeneratedCa, Issued};
pub use error::PkiError;
pub use inspect::{Inspection, fingerprint_pem, inspect};
pub use key::{KeySpec, PrivateKey};
pub use request::{ExtendedKeyUsage, KeyUsage, LeafRequest};
