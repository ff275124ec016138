//! `CertificateAuthority`: a platform operator's CA key pair and the policy
//! for who may have certificates signed by it.

// kube's KubeSchema derive copies each struct it derives, `pub` included,
// into a function body, where rustc reports the copy as unreachable.
#![allow(unreachable_pub)]

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    Condition, KeyAlgorithm, KeyUsage, SpecError, cel,
    condition::{READY, find_condition},
    error::parse_duration_field,
    service_certificate::MIN_DURATION,
};

/// The lifetime of a generated CA certificate when `spec.duration` is not
/// set: 10 years.
pub const DEFAULT_CA_DURATION: Duration = Duration::from_secs(87_600 * 3_600);

/// The smallest RSA key a CA accepts when `policy.minRSAKeySize` is not set.
pub const DEFAULT_MIN_RSA_KEY_SIZE: u32 = 2048;

/// How long the previous CA stays trusted after a key pair change when
/// `spec.rotation.overlap` is not set: 24 hours.
pub const DEFAULT_ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3_600);

/// How long before the CA certificate's notAfter the `ExpiringSoon`
/// condition turns True: 30 days.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 86_400);

/// Condition type on a CertificateAuthority: True within
/// [`EXPIRY_WARNING`] of its certificate's expiry.
pub const EXPIRING_SOON: &str = "ExpiringSoon";

/// Condition type on a CertificateAuthority: True when it has no
/// `spec.policy` and so signs any name for any namespace.
pub const POLICY_UNRESTRICTED: &str = "PolicyUnrestricted";

/// The usages a policy allows when `policy.allowedUsages` is not set: what a
/// TLS server or a mutual-TLS client needs, and nothing else.
pub const DEFAULT_ALLOWED_USAGES: [KeyUsage; 4] = [
    KeyUsage::DigitalSignature,
    KeyUsage::KeyEncipherment,
    KeyUsage::ServerAuth,
    KeyUsage::ClientAuth,
];

/// Where the CA key pair lives, how to generate it, and which requests it signs.
// Each printcolumn(...) repeats `type_ = ...`, which clippy mistakes for a
// duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[kube(
    group = "certflow.io",
    version = "v1alpha1",
    kind = "CertificateAuthority",
    shortname = "cfca",
    category = "certflow",
    status = "CertificateAuthorityStatus",
    derive = "PartialEq",
    doc = "A certificate authority that signs ServiceCertificates. Its key pair lives in a Secret in the \
           certflow control-plane namespace; its policy decides which namespaces may use it and for which names.",
    printcolumn(name = "Default", type_ = "boolean", json_path = ".spec.default"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(name = "Secret", type_ = "string", json_path = ".spec.secretName"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.notAfter"),
    printcolumn(
        name = "Fingerprint",
        type_ = "string",
        json_path = ".status.fingerprint",
        priority = "1"
    ),
    printcolumn(
        name = "Serial",
        type_ = "string",
        json_path = ".status.serialNumber",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = cel::key_size_fits(KeyAlgorithm::Ecdsa, "keyAlgorithm", "keySize"),
    validation = cel::key_size_fits(KeyAlgorithm::Rsa, "keyAlgorithm", "keySize"),
    validation = cel::key_size_fits(KeyAlgorithm::Ed25519, "keyAlgorithm", "keySize")
)]
#[schemars(transform = crate::schema::absent_not_null)]
#[schemars(transform = crate::schema::kubernetes_integer_formats)]
pub struct CertificateAuthoritySpec {
    /// Name of the Secret (in the certflow control-plane namespace) holding the
    /// CA certificate and key as tls.crt and tls.key.
    #[schemars(length(max = 253))]
    #[x_kube(validation = cel::dns1123_subdomain("Secret name", "internal-ca"))]
    pub secret_name: String,

    /// When true and the Secret does not exist, certflow generates a
    /// self-signed CA and stores it there on first use. When false, the Secret
    /// must be created by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<bool>,

    /// Common name of a generated CA certificate; defaults to the
    /// CertificateAuthority's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub common_name: Option<String>,

    /// Key algorithm of a generated CA: ECDSA (the default), Ed25519 or RSA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_algorithm: Option<KeyAlgorithm>,

    /// Key size of a generated CA: 256 (default) or 384 for ECDSA; 2048
    /// (default), 3072 or 4096 for RSA; not set for Ed25519.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_size: Option<u32>,

    /// Lifetime of a generated CA certificate, in hours: 87600h (10 years,
    /// the default). Days are not accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = cel::DURATION_MAX_LENGTH))]
    #[x_kube(
        validation = cel::go_duration(),
        validation = cel::go_duration_at_least_a_minute()
    )]
    pub duration: Option<String>,

    /// Makes this the cluster's default CertificateAuthority, used by
    /// ServiceCertificates without spec.issuerRef. Mark exactly one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<bool>,

    /// Who may use this CA and for what. Without a policy this CA signs any
    /// name for any namespace (only CA certificates are refused), and its
    /// status says so with the condition PolicyUnrestricted=True; set a
    /// policy unless every namespace in the cluster is trusted alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<IssuerPolicy>,

    /// How certificates move to a new key pair when this CA's changes (an
    /// operator replaced its Secret, or certflow regenerated it on request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationSpec>,
}

/// How a change of a CertificateAuthority's key pair is rolled out without
/// breaking trust between Pods that have and Pods that have not yet received
/// their re-issued certificates.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::absent_not_null)]
#[schemars(transform = crate::schema::kubernetes_integer_formats)]
pub struct RotationSpec {
    /// How long the previous CA stays trusted after the key pair changed,
    /// such as 24h (the default). Meanwhile every issued Secret's ca.crt
    /// holds the new CA certificate followed by the previous one, tls.crt
    /// carries a cross-signed chain that Pods trusting only the previous CA
    /// accept, and existing certificates are re-issued spread over the first
    /// half of this time. 0s trusts only the new CA and re-issues everything
    /// at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = cel::DURATION_MAX_LENGTH))]
    #[x_kube(validation = cel::go_duration())]
    pub overlap: Option<String>,
}

/// Which requests a CertificateAuthority signs. It fails closed: a kind of
/// subject alternative name (DNS name, IP address, URI, email address) whose
/// list is empty is refused, a common name must be one of the requested
/// names, and only the listed usages are signed. Patterns may use
/// {namespace} for the requesting namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerPolicy {
    /// Namespaces that may use this CA, as names or glob patterns such as
    /// team-*. Empty allows every namespace (each still gets only the names
    /// the lists below allow it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 63)))]
    #[x_kube(validation = cel::namespace_patterns())]
    pub allowed_namespaces: Vec<String>,

    /// DNS names a namespace may request, as patterns where {namespace} is the
    /// requesting namespace and * is one whole leftmost label, such as
    /// *.{namespace}.svc, *.{namespace}.svc.cluster.local or
    /// {namespace}.example.com. Empty refuses every DNS name.
    #[serde(
        default,
        rename = "allowedDNSNames",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = 64), inner(length(max = 253)))]
    #[x_kube(validation = cel::dns_name_patterns())]
    pub allowed_dns_names: Vec<String>,

    /// IP ranges, as CIDRs, that requested IP addresses must fall in, such as
    /// 10.0.0.0/8. Empty refuses every IP address.
    #[serde(
        default,
        rename = "allowedIPRanges",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = 64), inner(length(max = 49)))]
    #[x_kube(validation = cel::cidrs())]
    pub allowed_ip_ranges: Vec<String>,

    /// Prefixes that requested URIs must start with, such as
    /// spiffe://cluster.local/ns/{namespace}/. A URI must start with a
    /// prefix as written, and may have no "." or ".." path segment,
    /// percent-encoded or not. Empty refuses every URI.
    #[serde(
        default,
        rename = "allowedURIPrefixes",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = 64), inner(length(max = 2048)))]
    pub allowed_uri_prefixes: Vec<String>,

    /// Domains that requested email addresses must belong to, such as
    /// example.com. Empty refuses every email address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 253)))]
    pub allowed_email_domains: Vec<String>,

    /// The longest certificate this CA signs, such as 2160h. Longer requests
    /// are refused. Not set: no limit other than the CA's own expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = cel::DURATION_MAX_LENGTH))]
    #[x_kube(
        validation = cel::go_duration(),
        validation = cel::go_duration_at_least_a_minute()
    )]
    pub max_duration: Option<String>,

    /// Key algorithms requesters may use. Empty allows all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    pub allowed_key_algorithms: Vec<KeyAlgorithm>,

    /// The smallest RSA key size accepted: 2048 (the default), 3072 or 4096.
    #[serde(
        default,
        rename = "minRSAKeySize",
        skip_serializing_if = "Option::is_none"
    )]
    #[x_kube(validation = cel::rsa_key_size())]
    pub min_rsa_key_size: Option<u32>,

    /// Key usages and extended key usages requesters may ask for, such as
    /// "server auth". Not set: digital signature, key encipherment, server
    /// auth and client auth. "cert sign" and "crl sign" are governed by
    /// allowCA instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 13))]
    pub allowed_usages: Vec<KeyUsage>,

    /// Whether ServiceCertificates may request CA certificates (isCA: true).
    /// Defaults to false. An issued CA certificate may not sign further CAs
    /// (pathLenConstraint 0) and carries X.509 name constraints limiting it
    /// to the DNS names, IP ranges and email domains this policy allows the
    /// requesting namespace; it may sign no URIs.
    #[serde(default, rename = "allowCA", skip_serializing_if = "Option::is_none")]
    pub allow_ca: Option<bool>,
}

/// What certflow last observed about the CA. Written only by certflow.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::absent_not_null)]
#[schemars(transform = crate::schema::kubernetes_integer_formats)]
pub struct CertificateAuthorityStatus {
    /// Ready is True when the CA key pair is loaded and its certificate is
    /// valid now; when False, its reason (KeyPairMissing, KeyPairUnusable,
    /// Expired, NotYetValid) and message say what to do. ExpiringSoon is
    /// True within 30 days of the CA certificate's expiry.
    /// PolicyUnrestricted is True when spec.policy is not set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = crate::schema::conditions_by_type)]
    pub conditions: Vec<Condition>,
    /// Serial number of the CA certificate, in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// End of the CA certificate's validity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Time>,
    /// SHA-256 fingerprint of the CA certificate, in hex, to compare with the
    /// ca.crt clients trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Start of the CA certificate's validity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Time>,
    /// The CA certificate, PEM: the first certificate of every issued
    /// Secret's ca.crt. Public; the key never leaves the CA's Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// CA certificates this CA signed with before its key pair last changed,
    /// newest first, each kept until its retiredAt plus
    /// spec.rotation.overlap. Issued Secrets list them in ca.crt after the
    /// current CA certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous: Vec<PreviousAuthority>,
}

/// A CA certificate replaced by a key pair change, still trusted for the
/// rotation overlap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::absent_not_null)]
#[schemars(transform = crate::schema::kubernetes_integer_formats)]
pub struct PreviousAuthority {
    /// SHA-256 fingerprint of the previous CA certificate, in hex.
    pub fingerprint: String,
    /// The previous CA certificate, PEM.
    pub certificate: String,
    /// The certificate of the CA that replaced this one (its subject and
    /// key), signed by this one's key, PEM. Issued certificates are served
    /// followed by it, so clients that trust only this CA accept them.
    /// Absent when certflow no longer held this CA's key when it saw the
    /// change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_signed: Option<String>,
    /// When certflow saw the key pair change; the previous CA stays in
    /// ca.crt until this plus spec.rotation.overlap.
    pub retired_at: Time,
}

impl CertificateAuthoritySpec {
    /// Whether certflow may generate the key pair when the Secret is missing.
    pub fn generates(&self) -> bool {
        self.generate.unwrap_or(false)
    }

    /// Whether this is the cluster's default CertificateAuthority.
    pub fn is_default(&self) -> bool {
        self.default.unwrap_or(false)
    }

    /// The algorithm of a generated CA key, or ECDSA.
    pub fn key_algorithm(&self) -> KeyAlgorithm {
        self.key_algorithm.unwrap_or_default()
    }

    /// The size of a generated CA key, or the algorithm's default; `None`
    /// for Ed25519.
    pub fn key_size(&self) -> Option<u32> {
        self.key_size
            .or_else(|| self.key_algorithm().default_size())
    }

    /// The lifetime of a generated CA: `spec.duration`, or
    /// [`DEFAULT_CA_DURATION`].
    pub fn effective_duration(&self) -> Result<Duration, SpecError> {
        match &self.duration {
            None => Ok(DEFAULT_CA_DURATION),
            Some(value) => parse_duration_field("spec.duration", value, MIN_DURATION),
        }
    }

    /// How long the previous CA stays trusted after a key pair change:
    /// `spec.rotation.overlap`, or [`DEFAULT_ROTATION_OVERLAP`]. Zero turns
    /// the overlap off.
    pub fn rotation_overlap(&self) -> Result<Duration, SpecError> {
        match self.rotation.as_ref().and_then(|r| r.overlap.as_deref()) {
            None => Ok(DEFAULT_ROTATION_OVERLAP),
            Some(value) => {
                crate::parse_go_duration(value).map_err(|source| SpecError::InvalidDuration {
                    field: "spec.rotation.overlap",
                    source,
                })
            }
        }
    }
}

impl IssuerPolicy {
    /// The longest certificate allowed, or `None` for no limit.
    pub fn max_duration(&self) -> Result<Option<Duration>, SpecError> {
        self.max_duration
            .as_deref()
            .map(|value| parse_duration_field("spec.policy.maxDuration", value, MIN_DURATION))
            .transpose()
    }

    /// The smallest RSA key accepted, or [`DEFAULT_MIN_RSA_KEY_SIZE`].
    pub fn min_rsa_key_size(&self) -> u32 {
        self.min_rsa_key_size.unwrap_or(DEFAULT_MIN_RSA_KEY_SIZE)
    }

    /// Whether CA certificates may be requested.
    pub fn allows_ca(&self) -> bool {
        self.allow_ca.unwrap_or(false)
    }

    /// Whether `algorithm` may be requested.
    pub fn allows_key_algorithm(&self, algorithm: KeyAlgorithm) -> bool {
        self.allowed_key_algorithms.is_empty() || self.allowed_key_algorithms.contains(&algorithm)
    }

    /// The usages that may be requested: `allowedUsages`, or
    /// [`DEFAULT_ALLOWED_USAGES`] when it is not set.
    pub fn allowed_usages(&self) -> &[KeyUsage] {
        if self.allowed_usages.is_empty() {
            &DEFAULT_ALLOWED_USAGES
        } else {
            &self.allowed_usages
        }
    }
}

impl CertificateAuthorityStatus {
    /// The `Ready` condition, if certflow has set one.
    pub fn ready_condition(&self) -> Option<&Condition> {
        find_condition(&self.conditions, READY)
    }

    /// When the CA certificate with `fingerprint` was replaced, if it is
    /// still listed in `previous`.
    pub fn retired_at(&self, fingerprint: &str) -> Option<&Time> {
        self.previous
            .iter()
            .find(|previous| previous.fingerprint == fingerprint)
            .map(|previous| &previous.retired_at)
    }

    /// When the key pair last changed, while that change is still within its
    /// overlap.
    pub fn last_rotation(&self) -> Option<&Time> {
        self.previous
            .iter()
            .map(|previous| &previous.retired_at)
            .max_by_key(|time| time.0)
    }
}

impl CertificateAuthority {
    /// The `Ready` condition, if certflow has set one.
    pub fn ready_condition(&self) -> Option<&Condition> {
        self.status.as_ref()?.ready_condition()
    }
}
