//! The example application the demo and the end-to-end tests run in real
//! Pods, to show that a certificate certflow issued actually works.
//!
//! [`serve`] observes `<cert-dir>/tls.crt` and `<cert-dir>/tls.key` (a
//! mounted `kubernetes.io/tls` Secret), serves TLS with them, picks up a
//! renewed certificate without a restart, and writes one line per
//! certificate loaded (`serving serial <hex> subject <dn> not after
//! <rfc3339>`) and per distinct load error to its [`Lines`]. Every connection
//! gets `HTTP/1.1 200 OK` with the body `serial <hex>\n`.
//!
//! [`check`] observes a server and a CA file (`ca.crt`): it verifies the
//! server's chain against that file's certificates only and the server name,
//! and writes exactly one line per attempt (`verified …` or `FAILED …`).
//!
//! Serials are always lowercase hex of the serial's minimal big-endian
//! magnitude in whole bytes, without colons: the form `certflow-pki` uses
//! and `openssl x509 -serial` prints in uppercase.
//!
//! Never reads or writes anything in the Kubernetes API or on the bus, never
//! writes files, and never prints key material.
#![forbid(unsafe_code)]

pub mod check;
mod error;
pub mod facts;
mod lines;
pub mod serve;
mod tls;

pub use check::{Attempt, CheckOptions, check, check_once};
pub use error::AppError;
pub use facts::CertificateFacts;
pub use lines::{Lines, Stdout};
pub use serve::{ServeOptions, serve};
