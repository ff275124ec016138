//! The committed CRDs in `deploy/crds` are the ones the types generate, and
//! have the shape an API server accepts and `kubectl get` shows.

use std::path::Path;

use certflow_api::crd::{REGENERATE_COMMAND, crds, render_crd};
use certflow_api::{CertificateAuthority, ServiceCertificate};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::Value;

const CRD_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/crds");

#[test]
fn committed_crds_match_the_types() {
    for (file_name, crd) in crds() {
        let path = Path::new(CRD_DIR).join(file_name);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        let generated = render_crd(&crd).expect("the CRD renders as YAML");
        assert!(
            committed == generated,
            "deploy/crds/{file_name} is missing or differs from the types in crates/api; \
             regenerate it with `{REGENERATE_COMMAND}` and commit the result"
        );
    }
}

#[test]
fn committed_crds_parse_back_into_the_generated_objects() {
    for (file_name, crd) in crds() {
        let text = render_crd(&crd).expect("renders");
        let parsed: CustomResourceDefinition = serde_yaml::from_str(&text).expect("parses");
        assert_eq!(parsed, crd, "{file_name}");
    }
}

fn schema_json<K: CustomResourceExt>() -> Value {
    serde_json::to_value(&K::crd().spec.versions[0].schema).expect("serializes")
}

/// Every key anywhere under `node`.
fn keys(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            for (key, value) in map {
                out.push(key.clone());
                // Property names are data, not schema keywords.
                if key != "properties" {
                    keys(value, out);
                } else if let Value::Object(properties) = value {
                    properties.values().for_each(|property| keys(property, out));
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| keys(item, out)),
        _ => {}
    }
}

#[test]
fn schemas_are_structural_without_combinators_or_nulls() {
    for (kind, schema) in [
        ("ServiceCertificate", schema_json::<ServiceCertificate>()),
        (
            "CertificateAuthority",
            schema_json::<CertificateAuthority>(),
        ),
    ] {
        let mut found = Vec::new();
        keys(&schema, &mut found);
        for forbidden in [
            "anyOf",
            "oneOf",
            "allOf",
            "not",
            "$ref",
            "const",
            "uniqueItems",
        ] {
            assert!(
                !found.iter().any(|key| key == forbidden),
                "{kind} schema has {forbidden}"
            );
        }
        // Only `status` (added by kube for the optional root field) may be
        // nullable; spec fields are pruned when null instead.
        let nullable = found.iter().filter(|key| *key == "nullable").count();
        assert_eq!(
            nullable, 1,
            "{kind} schema has nullable fields besides status"
        );
    }
}

#[test]
fn service_certificate_names_and_columns_are_as_documented() {
    let crd = ServiceCertificate::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("servicecertificates.certflow.io")
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.short_names, Some(vec!["scert".to_owned()]));
    assert_eq!(crd.spec.names.categories, Some(vec!["certflow".to_owned()]));

    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(
        version
            .subresources
            .as_ref()
            .is_some_and(|s| s.status.is_some())
    );
    let columns: Vec<(&str, &str)> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|column| (column.name.as_str(), column.json_path.as_str()))
        .collect();
    assert_eq!(
        columns,
        [
            ("Ready", r#".status.conditions[?(@.type=="Ready")].status"#),
            ("Secret", ".spec.secretName"),
            ("Expires", ".status.notAfter"),
            ("Reason", r#".status.conditions[?(@.type=="Ready")].reason"#),
            ("Age", ".metadata.creationTimestamp"),
        ]
    );
}

#[test]
fn certificate_authority_names_and_columns_are_as_documented() {
    let crd = CertificateAuthority::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("certificateauthorities.certflow.io")
    );
    assert_eq!(crd.spec.scope, "Cluster");
    assert_eq!(crd.spec.names.short_names, Some(vec!["cfca".to_owned()]));
    assert_eq!(crd.spec.names.categories, Some(vec!["certflow".to_owned()]));

    let version = &crd.spec.versions[0];
    assert!(
        version
            .subresources
            .as_ref()
            .is_some_and(|s| s.status.is_some())
    );
    let columns: Vec<&str> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|column| column.name.as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "Default",
            "Ready",
            "Secret",
            "Expires",
            "Fingerprint",
            "Serial",
            "Age"
        ]
    );
}

#[test]
fn schemas_carry_the_cel_rules_and_field_docs() {
    let scert = serde_json::to_string(&schema_json::<ServiceCertificate>()).expect("serializes");
    for expected in [
        "a ServiceCertificate needs at least one name",
        "which only a CA certificate may have",
        "must be shorter than duration",
        "is not a valid Secret name",
        "days are not accepted, so write 2160h for 90 days",
        "is not an ECDSA key size",
        "Ed25519 keys have a fixed size",
        "How long the certificate is valid",
        "Key algorithm: ECDSA (the default), Ed25519 or RSA.",
    ] {
        assert!(
            scert.contains(expected),
            "ServiceCertificate schema lacks {expected:?}"
        );
    }

    let cfca = serde_json::to_string(&schema_json::<CertificateAuthority>()).expect("serializes");
    for expected in [
        "allowedDNSNames",
        "allowedIPRanges",
        "allowedURIPrefixes",
        "minRSAKeySize",
        "allowCA",
        "isCIDR",
        "may use * only as the whole leftmost label",
    ] {
        assert!(
            cfca.contains(expected),
            "CertificateAuthority schema lacks {expected:?}"
        );
    }
}
