//! certflow-reporter: tells app owners what happened to their certificates
//! where they already look. It observes certificate outcomes (the durable
//! `reporter` JetStream consumer), ServiceCertificates (a slim cache indexed
//! by the Secret each one fills), the Pods of the cluster (a slim index of
//! which Secrets each Pod consumes) and reports arriving on its gRPC
//! `Report` API, and writes `events.k8s.io/v1` Events on the
//! ServiceCertificate, on every Pod that consumes its Secret, and on the
//! workload that owns each such Pod.
//!
//! Three sources of work share one delivery path ([`deliver`]):
//! [`outcomes`] (an outcome says when to tell), [`late_pods`] (a Pod that
//! appears is told the failures of the Secrets it consumes) and [`grpc`]
//! (other control-plane services' reports). Whether a certificate is failing
//! is what its own status says ([`certificates::active_failure`]), read
//! through the cache; the reporter keeps no copy of its own, so every
//! replica, and one restarted, knows the same. Repeats fold into one
//! Event's series, and a per-object token bucket keeps the API server safe.
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

pub mod auth;
pub mod certificates;
pub mod consumer;
pub mod deliver;
mod error;
pub mod events;
pub mod grpc;
pub mod late_pods;
pub mod metrics;
pub mod notices;
pub mod outcomes;
pub mod owners;
pub mod pods;
mod summary;

pub use error::Error;
