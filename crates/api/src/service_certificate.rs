//! `ServiceCertificate`: an app owner's request for a TLS certificate in a
//! Secret of their namespace.

// kube's KubeSchema derive copies each struct it derives, `pub` included,
// into a function body, where rustc reports the copy as unreachable.
#![allow(unreachable_pub)]

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    Condition, KeyAlgorithm, KeyUsage, PrivateKeySpec, RotationPolicy, SpecError, cel,
    condition::{READY, find_condition},
    error::parse_duration_field,
};

/// The certificate lifetime when `spec.duration` is not set: 90 days.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(2_160 * 3_600);

/// The shortest `spec.duration` the API accepts. Short enough for tests that
/// watch a renewal happen; production certificates should live for days.
pub const MIN_DURATION: Duration = Duration::from_secs(60);

/// How far before the moment of issue a certificate's notBefore is set, so a
/// peer whose clock runs a little behind the signer's already accepts it.
/// Never earlier than the issuing CA's own notBefore; notAfter is still the
/// moment of issue plus `spec.duration`.
pub const NOT_BEFORE_BACKDATE: Duration = Duration::from_secs(5 * 60);

/// What certificate to issue, and into which Secret.
// Each printcolumn(...) repeats `type_ = ...`, which clippy mistakes for a
// duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[kube(
    group = "certflow.io",
    version = "v1alpha1",
    kind = "ServiceCertificate",
    namespaced,
    shortname = "scert",
    category = "certflow",
    status = "ServiceCertificateStatus",
    derive = "PartialEq",
    doc = "A TLS certificate that certflow issues into a Secret in this namespace and renews before it expires. \
           Problems are reported on this object and as Events on the Pods that mount the Secret.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(name = "Secret", type_ = "string", json_path = ".spec.secretName"),
    // A string, not a date: kubectl prints future dates as "<invalid>".
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.notAfter"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    selectable = ".spec.secretName"
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = cel::at_least_one_name(),
    validation = cel::cert_sign_only_on_a_ca(),
    validation = cel::renew_before_shorter_than_duration("2160h")
)]
#[schemars(transform = crate::schema::absent_not_null)]
#[schemars(transform = crate::schema::kubernetes_integer_formats)]
pub struct ServiceCertificateSpec {
    /// Name of the Secret (type kubernetes.io/tls, in this namespace) that
    /// receives tls.crt, tls.key and ca.crt. certflow creates it; it never
    /// overwrites a Secret it did not create.
    #[schemars(length(max = 253))]
    #[x_kube(validation = cel::dns1123_subdomain("Secret name", "web-tls"))]
    pub secret_name: String,

    /// Subject common name, at most 64 characters. Clients check dnsNames, not
    /// this; set it only for software that still reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub common_name: Option<String>,

    /// DNS names the certificate is valid for, such as
    /// web.shop.svc.cluster.local. A leading "*." requests a wildcard. The
    /// issuer's policy decides which names this namespace may use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(max = 253)))]
    pub dns_names: Vec<String>,

    /// IP addresses the certificate is valid for, such as 10.0.0.12 or fd00::1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(max = 45)))]
    pub ip_addresses: Vec<String>,

    /// URIs the certificate is valid for, such as spiffe://cluster.local/ns/shop/sa/web.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(max = 2048)))]
    pub uris: Vec<String>,

    /// Email addresses the certificate is valid for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(max = 254)))]
    pub email_addresses: Vec<String>,

    /// How long the certificate is valid, as hours, minutes and seconds:
    /// 2160h (90 days, the default), 720h, 1h30m. Days are not accepted
    /// (write 2160h, not 90d). At least 1m; the issuer may set a maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = cel::DURATION_MAX_LENGTH))]
    #[x_kube(
        validation = cel::go_duration(),
        validation = cel::go_duration_at_least_a_minute()
    )]
    pub duration: Option<String>,

    /// How long before expiry certflow issues the next certificate, such as
    /// 720h. Defaults to one third of duration; must be shorter than duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = cel::DURATION_MAX_LENGTH))]
    #[x_kube(validation = cel::go_duration(), validation = cel::go_duration_positive())]
    pub renew_before: Option<String>,

    /// The private key: algorithm (ECDSA by default), size and rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<PrivateKeySpec>,

    /// What the key may be used for, such as "server auth" and "client auth"
    /// for mutual TLS. Defaults to "digital signature", "key encipherment" and
    /// "server auth".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub usages: Vec<KeyUsage>,

    /// Request a CA certificate that can sign other certificates. Most issuers
    /// refuse this (policy.allowCA).
    #[serde(default, rename = "isCA", skip_serializing_if = "Option::is_none")]
    pub is_ca: Option<bool>,

    /// The CertificateAuthority that signs the certificate. Leave it out to
    /// use the cluster's default CertificateAuthority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,

    /// Extra labels and annotations for the Secret, such as those a reloader
    /// watches. Keys under certflow.io/ are reserved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_template: Option<SecretTemplate>,
}

/// A reference to the CertificateAuthority that signs a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// Name of the CertificateAuthority (a cluster-scoped object; list them
    /// with kubectl get certificateauthorities).
    #[schemars(length(max = 253))]
    #[x_kube(validation = cel::dns1123_subdomain("CertificateAuthority name", "internal-ca"))]
    pub name: String,
    /// Kind of the issuer: CertificateAuthority, the only kind there is (the
    /// default), as in cert-manager's issuerRef.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<IssuerKind>,
    /// API group of the issuer: certflow.io, the only group there is (the
    /// default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<IssuerGroup>,
}

impl IssuerRef {
    /// A reference to the CertificateAuthority `name`.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// The kinds of issuer `spec.issuerRef.kind` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum IssuerKind {
    /// A certflow.io CertificateAuthority.
    #[default]
    CertificateAuthority,
}

/// The API groups `spec.issuerRef.group` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum IssuerGroup {
    /// certflow's own API group.
    #[default]
    #[serde(rename = "certflow.io")]
    CertflowIo,
}

/// Labels and annotations copied onto the Secret.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretTemplate {
    /// Labels added to the Secret. Values are what Kubernetes accepts as
    /// label values: at most 63 letters, digits, "-", "_" and ".", starting
    /// and ending with a letter or digit.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 64,
        "additionalProperties" = {
            "type": "string",
            "maxLength": 63,
            "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
        }
    ))]
    #[x_kube(validation = cel::no_reserved_keys("secretTemplate.labels"))]
    pub labels: BTreeMap<String, String>,

    /// Annotations added to the Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = cel::no_reserved_keys("secretTemplate.annotations"))]
    pub annotations: BTreeMap<String, String>,
}

/// What certflow last observed and did. Written only by certflow.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::absent_not_null)]
#[schemars(transform = crate::schema::kubernetes_integer_formats)]
pub struct ServiceCertificateStatus {
    /// Ready is True when the Secret holds a valid certificate for the current
    /// spec; when False, its reason and message say what to fix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = crate::schema::conditions_by_type)]
    pub conditions: Vec<Condition>,
    /// The metadata.generation of the spec certflow last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Start of the current certificate's validity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Time>,
    /// End of the current certificate's validity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Time>,
    /// When certflow will issue the next certificate (notAfter - renewBefore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_time: Option<Time>,
    /// Serial number of the current certificate, in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// The most recent failure to issue, kept until an issuance succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Failure>,
    /// Failed issuance attempts since the last success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_attempts: Option<u32>,
}

/// Why certflow could not issue the certificate.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// A CamelCase word for the failure, such as InvalidDNSName or PolicyViolation.
    pub reason: String,
    /// What is wrong and what to write instead.
    pub message: String,
    /// The spec field at fault, such as spec.dnsNames[1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_path: Option<String>,
    /// The value certflow saw in that field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// When the failure happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
}

impl ServiceCertificateSpec {
    /// The certificate lifetime: `spec.duration`, or [`DEFAULT_DURATION`].
    ///
    /// Errors when the value does not parse or is below [`MIN_DURATION`],
    /// which the CRD schema normally rules out already.
    pub fn effective_duration(&self) -> Result<Duration, SpecError> {
        let Some(value) = &self.duration else {
            return Ok(DEFAULT_DURATION);
        };
        parse_duration_field("spec.duration", value, MIN_DURATION)
    }

    /// How long before expiry to renew: `spec.renewBefore`, or one third of
    /// [`effective_duration`](Self::effective_duration).
    ///
    /// Errors when either value is malformed, or `renewBefore` is zero or not
    /// shorter than the duration (the CRD schema normally rules these out).
    pub fn effective_renew_before(&self) -> Result<Duration, SpecError> {
        let duration = self.effective_duration()?;
        let Some(value) = &self.renew_before else {
            return Ok(duration / 3);
        };
        let renew_before = parse_duration_field("spec.renewBefore", value, Duration::ZERO)?;
        if renew_before >= duration {
            return Err(SpecError::RenewBeforeNotShorter {
                renew_before,
                duration,
            });
        }
        Ok(renew_before)
    }

    /// The requested usages, or [`KeyUsage::DEFAULT`] when none are listed.
    pub fn effective_usages(&self) -> &[KeyUsage] {
        if self.usages.is_empty() {
            &KeyUsage::DEFAULT
        } else {
            &self.usages
        }
    }

    /// The requested key algorithm, or ECDSA.
    pub fn key_algorithm(&self) -> KeyAlgorithm {
        self.private_key
            .as_ref()
            .map(PrivateKeySpec::effective_algorithm)
            .unwrap_or_default()
    }

    /// The requested key size, or the algorithm's default; `None` for Ed25519.
    pub fn key_size(&self) -> Option<u32> {
        match &self.private_key {
            Some(key) => key.effective_size(),
            None => KeyAlgorithm::default().default_size(),
        }
    }

    /// The requested rotation policy, or `Always`.
    pub fn rotation_policy(&self) -> RotationPolicy {
        self.private_key
            .as_ref()
            .map(PrivateKeySpec::effective_rotation_policy)
            .unwrap_or_default()
    }

    /// Whether a CA certificate is requested.
    pub fn is_ca(&self) -> bool {
        self.is_ca.unwrap_or(false)
    }

    /// The named CertificateAuthority, or `None` for the cluster default.
    pub fn issuer_name(&self) -> Option<&str> {
        self.issuer_ref.as_ref().map(|issuer| issuer.name.as_str())
    }
}

impl ServiceCertificateStatus {
    /// The `Ready` condition, if certflow has set one.
    pub fn ready_condition(&self) -> Option<&Condition> {
        find_condition(&self.conditions, READY)
    }
}

impl ServiceCertificate {
    /// The `Ready` condition, if certflow has set one.
    pub fn ready_condition(&self) -> Option<&Condition> {
        self.status.as_ref()?.ready_condition()
    }

    /// The named CertificateAuthority, or `None` for the cluster default.
    pub fn issuer_name(&self) -> Option<&str> {
        self.spec.issuer_name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConditionStatus, condition::set_condition};
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    fn spec() -> ServiceCertificateSpec {
        ServiceCertificateSpec {
            secret_name: "web-tls".to_owned(),
            dns_names: vec!["web.shop.svc".to_owned()],
            ..Default::default()
        }
    }

    fn full_example() -> serde_json::Value {
        json!({
            "apiVersion": "certflow.io/v1alpha1",
            "kind": "ServiceCertificate",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "secretName": "web-tls",
                "commonName": "web",
                "dnsNames": ["web.shop.svc", "web.shop.svc.cluster.local"],
                "ipAddresses": ["10.0.0.12"],
                "uris": ["spiffe://cluster.local/ns/shop/sa/web"],
                "emailAddresses": ["ops@example.com"],
                "duration": "720h",
                "renewBefore": "240h",
                "privateKey": {"algorithm": "RSA", "size": 3072, "rotationPolicy": "Never"},
                "usages": ["digital signature", "server auth", "client auth"],
                "isCA": false,
                "issuerRef": {"name": "internal-ca"},
                "secretTemplate": {
                    "labels": {"app": "web"},
                    "annotations": {"reloader.stakater.com/match": "true"},
                },
            },
            "status": {
                "conditions": [{
                    "type": "Ready",
                    "status": "False",
                    "reason": "InvalidDNSName",
                    "message": "spec.dnsNames[1]: ...",
                    "lastTransitionTime": "2025-01-02T03:04:05Z",
                    "observedGeneration": 2,
                }],
                "observedGeneration": 2,
                "notBefore": "2025-01-01T00:00:00Z",
                "notAfter": "2025-01-31T00:00:00Z",
                "renewalTime": "2025-01-21T00:00:00Z",
                "serialNumber": "0a1b2c",
                "lastFailure": {
                    "reason": "InvalidDNSName",
                    "message": "spec.dnsNames[1]: ...",
                    "fieldPath": "spec.dnsNames[1]",
                    "value": "web_shop",
                    "time": "2025-01-02T03:04:05Z",
                },
                "failedAttempts": 1,
            },
        })
    }

    #[test]
    fn a_full_object_round_trips_through_json() {
        let object: ServiceCertificate =
            serde_json::from_value(full_example()).expect("the example deserializes");

        assert_eq!(
            object.spec.private_key.as_ref().and_then(|key| key.size),
            Some(3072)
        );
        assert_eq!(object.spec.is_ca, Some(false));
        assert_eq!(object.issuer_name(), Some("internal-ca"));
        let ready = object.ready_condition().expect("the example has Ready");
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (ConditionStatus::False, "InvalidDNSName")
        );

        let back = serde_json::to_value(&object).expect("serializes");
        assert_eq!(back, full_example());
    }

    #[test]
    fn a_full_object_round_trips_through_yaml() {
        let object: ServiceCertificate =
            serde_json::from_value(full_example()).expect("the example deserializes");
        let yaml = serde_yaml::to_string(&object).expect("serializes");
        let back: ServiceCertificate = serde_yaml::from_str(&yaml).expect("deserializes");
        assert_eq!(back, object);
    }

    #[test]
    fn unset_fields_are_left_out_of_the_json() {
        let object = ServiceCertificate::new("web", spec());
        let json = serde_json::to_value(&object).expect("serializes");
        assert_eq!(
            json["spec"],
            json!({"secretName": "web-tls", "dnsNames": ["web.shop.svc"]})
        );
    }

    #[test]
    fn a_minimal_spec_gets_the_documented_defaults() {
        let spec: ServiceCertificateSpec =
            serde_json::from_value(json!({"secretName": "web-tls", "dnsNames": ["web"]}))
                .expect("deserializes");

        assert_eq!(
            spec.effective_duration(),
            Ok(Duration::from_secs(2_160 * 3_600))
        );
        assert_eq!(
            spec.effective_renew_before(),
            Ok(Duration::from_secs(720 * 3_600))
        );
        assert_eq!(
            spec.effective_usages(),
            [
                KeyUsage::DigitalSignature,
                KeyUsage::KeyEncipherment,
                KeyUsage::ServerAuth
            ]
        );
        assert_eq!(spec.key_algorithm(), KeyAlgorithm::Ecdsa);
        assert_eq!(spec.key_size(), Some(256));
        assert_eq!(spec.rotation_policy(), RotationPolicy::Always);
        assert!(!spec.is_ca());
        assert_eq!(spec.issuer_name(), None);
    }

    #[test]
    fn renew_before_defaults_to_a_third_of_the_requested_duration() {
        let spec = ServiceCertificateSpec {
            duration: Some("1h30m".to_owned()),
            ..spec()
        };
        assert_eq!(
            spec.effective_renew_before(),
            Ok(Duration::from_secs(30 * 60))
        );
    }

    #[test]
    fn listed_usages_replace_the_defaults() {
        let spec = ServiceCertificateSpec {
            usages: vec![KeyUsage::ClientAuth],
            ..spec()
        };
        assert_eq!(spec.effective_usages(), [KeyUsage::ClientAuth]);
    }

    #[test]
    fn durations_the_schema_refuses_are_errors_naming_the_field() {
        let cases: &[(Option<&str>, Option<&str>, &str)] = &[
            (
                Some("90d"),
                None,
                r#"spec.duration: "90d" uses the unknown unit "d""#,
            ),
            (
                Some("30s"),
                None,
                r#"spec.duration: "30s" is too short: the shortest accepted duration is 1m"#,
            ),
            (
                None,
                Some("0s"),
                r#"spec.renewBefore: "0s" is too short: it must be longer than zero"#,
            ),
            (
                Some("1h"),
                Some("1h"),
                "spec.renewBefore: 1h must be shorter than the duration 1h",
            ),
            (
                None,
                Some("2160h"),
                "spec.renewBefore: 2160h must be shorter than the duration 2160h",
            ),
        ];
        for (duration, renew_before, expected) in cases {
            let spec = ServiceCertificateSpec {
                duration: duration.map(str::to_owned),
                renew_before: renew_before.map(str::to_owned),
                ..spec()
            };
            let message = spec
                .effective_renew_before()
                .expect_err("the durations are refused")
                .to_string();
            assert!(message.starts_with(expected), "{message}");
        }
    }

    #[test]
    fn ready_condition_is_none_until_certflow_sets_it() {
        let mut object = ServiceCertificate::new("web", spec());
        assert!(object.ready_condition().is_none());

        let mut status = ServiceCertificateStatus::default();
        let now = Time(Timestamp::UNIX_EPOCH);
        set_condition(
            &mut status.conditions,
            Condition::new(READY, ConditionStatus::True, "Issued", "certificate issued"),
            now,
        );
        object.status = Some(status);
        assert!(object.ready_condition().is_some_and(Condition::is_true));
    }
}
