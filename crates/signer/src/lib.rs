//! certflow-signer: consumes work items from the shared durable JetStream
//! consumer, checks each ServiceCertificate against the spec rules and its
//! CertificateAuthority's policy, generates the key and certificate, writes
//! the `kubernetes.io/tls` Secret and the ServiceCertificate status, and
//! publishes the outcome for the reporter. It reads ServiceCertificates
//! from a watch cache ([`caches`]) and never lists or watches Secrets
//! outside its control-plane namespace.
//!
//! It is the only certflow component that reads CA keys ([`authority`]). It
//! never modifies or deletes a Secret without certflow's managed label, never
//! lets two ServiceCertificates share a Secret, and never writes when the
//! Secret and status already say what it would write. Messages are
//! acknowledged only after every write they imply has succeeded.
#![forbid(unsafe_code)]

pub mod authority;
pub mod caches;
mod error;
pub mod handler;
pub mod metrics;
pub mod plan;
pub mod request;
pub mod worker;

pub use error::Error;
