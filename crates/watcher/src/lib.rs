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
//! No namespace has more than `--namespace-in-flight` objects with work
//! published and not yet seen done; its further decisions wait in the
//! watcher for their turn ([`fairness`]), so one namespace's flood cannot
//! queue ahead of every other namespace's work. A failed reconcile is
//! retried by the error's variant ([`retry`]): a transient one backs off per
//! object, a permanent one waits `--failure-retry` and shows in
//! `certflow_watcher_decisions_stalled`.
#![forbid(unsafe_code)]

pub mod controller;
pub mod decide;
mod error;
pub mod expiry;
pub mod fairness;
pub mod ledger;
pub mod metrics;
pub mod retry;
pub mod schedule;

pub use error::Error;
