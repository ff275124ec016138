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
    Condition, KeyAlgorithm, SpecError, cel,
    condition::{READY, find_condition},
    error::parse_duration_field,
    service_certificate::MIN_DURATION,
};

/// The lifetime of a generated CA certificate when `spec.duration` is not
/// set: 10 years.
pub const DEFAULT_CA_DURATION: Duration = Duration::from_secs(87_600 * 3_600);

/// The smallest RSA key a CA accepts when `policy.minRSAKeySize` is not set.
pub const DEFAULT_MIN_RSA_KEY_SIZE: u32 = 2048;

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

    /// Who may use this CA and for what. Without a policy, any namespace may
    /// request any name, but not CA certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<IssuerPolicy>,
}

/// Which requests a CertificateAuthority signs. Every list left empty allows
/// anything; patterns may use {namespace} for the requesting namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerPolicy {
    /// Namespaces that may use this CA, as names or glob patterns such as
    /// team-*. Empty allows every namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 63)))]
    #[x_kube(validation = cel::namespace_patterns())]
    pub allowed_namespaces: Vec<String>,

    /// DNS names a namespace may request, as patterns where {namespace} is the
    /// requesting namespace and * is one whole leftmost label, such as
    /// *.{namespace}.svc, *.{namespace}.svc.cluster.local or
    /// {namespace}.example.com. Empty allows any name.
    #[serde(
        default,
        rename = "allowedDNSNames",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = 64), inner(length(max = 253)))]
    #[x_kube(validation = cel::dns_name_patterns())]
    pub allowed_dns_names: Vec<String>,

    /// IP ranges, as CIDRs, that requested IP addresses must fall in, such as
    /// 10.0.0.0/8. Empty allows any address.
    #[serde(
        default,
        rename = "allowedIPRanges",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = 64), inner(length(max = 49)))]
    #[x_kube(validation = cel::cidrs())]
    pub allowed_ip_ranges: Vec<String>,

    /// Prefixes that requested URIs must start with, such as
    /// spiffe://cluster.local/ns/{namespace}/. Empty allows any URI.
    #[serde(
        default,
        rename = "allowedURIPrefixes",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = 64), inner(length(max = 2048)))]
    pub allowed_uri_prefixes: Vec<String>,

    /// Domains that requested email addresses must belong to, such as
    /// example.com. Empty allows any address.
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

    /// Whether ServiceCertificates may request CA certificates (isCA: true).
    /// Defaults to false.
    #[serde(default, rename = "allowCA", skip_serializing_if = "Option::is_none")]
    pub allow_ca: Option<bool>,
}

/// What certflow last observed about the CA. Written only by certflow.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::absent_not_null)]
pub struct CertificateAuthorityStatus {
    /// Ready is True when the CA key pair is loaded and valid; when False, its
    /// reason and message say what to fix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
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
}

impl CertificateAuthorityStatus {
    /// The `Ready` condition, if certflow has set one.
    pub fn ready_condition(&self) -> Option<&Condition> {
        find_condition(&self.conditions, READY)
    }
}

impl CertificateAuthority {
    /// The `Ready` condition, if certflow has set one.
    pub fn ready_condition(&self) -> Option<&Condition> {
        self.status.as_ref()?.ready_condition()
    }
}
