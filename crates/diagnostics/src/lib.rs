//! The diagnostic catalog: every reason certflow can refuse a
//! `ServiceCertificate`, and the named checks that find them.
//!
//! It consumes a `ServiceCertificateSpec` (and, for policy checks, the
//! requesting namespace and a `CertificateAuthority`'s `IssuerPolicy`; for
//! lookups the signer made, plain names) and produces [`Violation`]s: a
//! stable [`Reason`] word, the JSON path of the field at fault, the value
//! seen, why it is wrong and what to write instead. [`Violation::sentence`]
//! turns one into the text of the Warning Event and of
//! `status.lastFailure.message`: one sentence, at most 1 KiB, with every
//! quoted value escaped, shortened and never showing key material.
//!
//! It does no I/O, holds no state and never panics on any input: the signer
//! calls it before issuing, and the reporter only forwards what it produced.
//! Structural mistakes are already rejected by the CRD schema at apply time
//! (see `docs/errors.md`); this crate judges what needs context or judgement.
//!
//! ```
//! use certflow_api::ServiceCertificateSpec;
//! use certflow_diagnostics::{Reason, first_violation};
//!
//! let spec = ServiceCertificateSpec {
//!     secret_name: "web-tls".into(),
//!     dns_names: vec!["web.shop.svc".into(), "10.0.0.12".into()],
//!     ..Default::default()
//! };
//! let violation = first_violation(&spec).expect("an IP address in dnsNames");
//! assert_eq!(violation.reason, Reason::DNSNameIsIPAddress);
//! assert_eq!(
//!     violation.sentence("web"),
//!     "ServiceCertificate \"web\": spec.dnsNames[1] \"10.0.0.12\" is an IP address; clients \
//!      only match addresses listed in spec.ipAddresses; move \"10.0.0.12\" to spec.ipAddresses."
//! );
//! ```
#![forbid(unsafe_code)]

pub mod context;
pub mod duration;
pub mod key;
pub mod names;
pub mod policy;
mod reason;
pub mod suggest;
pub mod template;
mod text;
pub mod usage;
mod validate;
mod violation;

pub use context::{
    issuance_failed, issuer_not_found, issuer_not_ready, retries_exhausted, secret_conflict,
    secret_owned_by_other,
};
pub use policy::{
    SubCaNames, check_policy, diagnose, open_policy_violations, policy_violations, sub_ca_names,
};
pub use reason::{Reason, UnknownReason};
pub use text::is_invisible;
pub use validate::{
    MAX_NAMES, MAX_VIOLATIONS, first_violation, no_names, too_many_names, validate_spec,
};
pub use violation::{MAX_MESSAGE_BYTES, Violation};
