//! certflow-reporter: tells app owners what happened to their certificates
//! where they already look. It observes certificate outcomes (the durable
//! `reporter` JetStream consumer), the Pods of the cluster (a slim watch
//! index of which Secrets each Pod consumes) and reports arriving on its
//! gRPC `Report` API, and writes `events.k8s.io/v1` Events on the
//! ServiceCertificate, on every Pod that consumes its Secret, and on the
//! workload that owns each such Pod. Active failures live in a JetStream
//! key-value bucket, so a Pod that appears later (seen by this replica, a
//! second one, or one restarted since) still gets the current Warning.
//! Repeats fold into one Event's series, and a per-object token bucket keeps
//! the API server safe.
//!
//! Report callers are Kubernetes identities: a ServiceAccount token for the
//! reporter's audience, checked with a TokenReview, and RBAC's `create` on
//! `servicecertificates/report` in the namespace reported about, checked with
//! a SubjectAccessReview ([`auth`]).
//!
//! It never reads Secrets (Pod specs name them, which is all it needs),
//! never writes anything but Events, and acknowledges an outcome only after
//! the Events it implies were written or deliberately deferred by the rate
//! limit.
#![forbid(unsafe_code)]

pub mod active;
pub mod auth;
pub mod consumer;
mod error;
pub mod events;
pub mod grpc;
pub mod metrics;
pub mod observer;
pub mod owners;
pub mod pods;
pub mod report;

pub use error::Error;
