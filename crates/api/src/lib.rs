//! The `certflow.io/v1alpha1` API: the `ServiceCertificate` app owners write,
//! the `CertificateAuthority` platform operators write, the Go-style
//! durations both use, the well-known label and annotation keys, and the CRDs
//! generated from these types. It is plain data and pure functions: it never
//! talks to the API server, never reads a Secret, and never decides policy
//! (that is the signer's job; this crate only states the rules the CRD
//! schema enforces at apply time).
#![forbid(unsafe_code)]

mod cel;
mod certificate_authority;
pub mod condition;
pub mod crd;
mod duration;
mod error;
pub mod labels;
mod private_key;
mod schema;
pub mod secret;
mod service_certificate;
mod usage;

pub use certificate_authority::{
    CertificateAuthority, CertificateAuthoritySpec, CertificateAuthorityStatus,
    DEFAULT_ALLOWED_USAGES, DEFAULT_CA_DURATION, DEFAULT_MIN_RSA_KEY_SIZE,
    DEFAULT_ROTATION_OVERLAP, EXPIRING_SOON, EXPIRY_WARNING, IssuerPolicy, POLICY_UNRESTRICTED,
    PreviousAuthority, RotationSpec,
};
pub use condition::{Condition, ConditionStatus};
pub use duration::{
    DurationError, GO_DURATION_PATTERN, MAX_GO_DURATION, format_go_duration, parse_go_duration,
};
pub use error::SpecError;
pub use private_key::{KeyAlgorithm, PrivateKeySpec, RotationPolicy};
pub use service_certificate::{
    DEFAULT_DURATION, Failure, IssuerGroup, IssuerKind, IssuerRef, MIN_DURATION,
    NOT_BEFORE_BACKDATE, SecretTemplate, ServiceCertificate, ServiceCertificateSpec,
    ServiceCertificateStatus,
};
pub use usage::KeyUsage;
