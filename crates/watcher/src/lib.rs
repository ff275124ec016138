//! certflow-watcher: watches ServiceCertificates, CertificateAuthorities and
//! the Secrets certflow manages, and publishes a work item to JetStream
//! whenever a certificate must be (re)issued: created, spec changed, Secret
//! missing or tampered with, issuer rotated, renewal due.
//!
//! It only reads from the Kubernetes API; it never writes there and never
//! reads CA keys. Only Secrets carrying certflow's managed label are watched
//! and cached, so its memory does not grow with the cluster's other Secrets.
//! Work items carry a de-duplication id naming the exact situation, so two
//! watchers or a replayed watch never cause double work. A decision that
//! still holds `--republish-after` after it was published is published
//! again under a new id ([`schedule`]), so work lost on the bus is redone.
#![forbid(unsafe_code)]

pub mod controller;
pub mod decide;
mod error;
pub mod ledger;
pub mod metrics;
pub mod schedule;

pub use error::Error;
