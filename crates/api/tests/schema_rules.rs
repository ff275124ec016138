//! The CRDs' CEL rules, evaluated client-side by kube's CEL validator: each
//! table row is an object an app owner or operator might apply and the
//! message the API server would answer with (none for a good object).
//!
//! A real kube-apiserver also checks these rules in the end-to-end tests;
//! here they run in milliseconds and cover many more rows.

use certflow_api::{CertificateAuthority, DurationError, ServiceCertificate, parse_go_duration};
use kube::CustomResourceExt;
use kube::core::cel::{
    CompiledSchema, ErrorKind, ScopeContext, WarningKind, analyze_rule, compile_schema,
    validate_compiled,
};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::LazyLock;

fn compiled<K: CustomResourceExt>() -> CompiledSchema {
    compile_schema(&open_api_schema::<K>())
}

static SERVICE_CERTIFICATE_SCHEMA: LazyLock<CompiledSchema> =
    LazyLock::new(compiled::<ServiceCertificate>);

fn open_api_schema<K: CustomResourceExt>() -> Value {
    let crd = K::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|schema| schema.open_api_v3_schema.as_ref())
        .expect("the CRD has an openAPIV3Schema");
    serde_json::to_value(schema).expect("the schema serializes")
}

/// The messages of every failed rule. A rule that cannot be evaluated (as
/// opposed to one that evaluates to false) is a bug in the rule: it fails the
/// test instead of counting as a rejection.
fn violations(schema: &CompiledSchema, object: &Value) -> Vec<String> {
    let Err(errors) = validate_compiled(schema, object, None) else {
        return Vec::new();
    };
    errors
        .iter()
        .map(|error| {
            assert_eq!(
                error.kind,
                ErrorKind::ValidationFailure,
                "rule {:?} did not evaluate on {object}: {error}",
                error.rule
            );
            error.to_string()
        })
        .collect()
}

fn scert(spec: Value) -> Value {
    json!({
        "apiVersion": "certflow.io/v1alpha1",
        "kind": "ServiceCertificate",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": spec,
    })
}

fn cfca(spec: Value) -> Value {
    json!({
        "apiVersion": "certflow.io/v1alpha1",
        "kind": "CertificateAuthority",
        "metadata": {"name": "internal"},
        "spec": spec,
    })
}

/// `base` with the keys of `changes` replaced (`null` removes a key).
fn with(base: &Value, changes: Value) -> Value {
    let mut merged = base.clone();
    if let (Some(target), Value::Object(changes)) = (merged.as_object_mut(), changes) {
        for (key, value) in changes {
            if value.is_null() {
                target.remove(&key);
            } else {
                target.insert(key, value);
            }
        }
    }
    merged
}

/// Checks every row: `None` means accepted, `Some(text)` means exactly one
/// violation, whose message contains `text`.
fn check_table(
    schema: &CompiledSchema,
    wrap: fn(Value) -> Value,
    base: &Value,
    rows: &[(&str, Value, Option<&str>)],
) {
    let mut failures = Vec::new();
    for (name, changes, expected) in rows {
        let object = wrap(with(base, changes.clone()));
        let found = violations(schema, &object);
        let ok = match expected {
            None => found.is_empty(),
            Some(text) => found.len() == 1 && found[0].contains(text),
        };
        if !ok {
            failures.push(format!("{name}: expected {expected:?}, got {found:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn service_certificate_rules_accept_good_specs_and_explain_bad_ones() {
    let schema = compiled::<ServiceCertificate>();
    let base = json!({"secretName": "web-tls", "dnsNames": ["web.shop.svc"]});
    let rows: &[(&str, Value, Option<&str>)] = &[
        ("minimal", json!({}), None),
        (
            "everything set",
            json!({
                "commonName": "web",
                "ipAddresses": ["10.0.0.1"],
                "uris": ["spiffe://cluster.local/ns/shop/sa/web"],
                "emailAddresses": ["ops@example.com"],
                "duration": "720h",
                "renewBefore": "240h",
                "privateKey": {"algorithm": "RSA", "size": 3072, "rotationPolicy": "Never"},
                "usages": ["server auth", "client auth"],
                "isCA": false,
                "issuerRef": {"name": "internal-ca"},
                "secretTemplate": {"labels": {"app": "web"}, "annotations": {"reloader/match": "true"}},
            }),
            None,
        ),
        (
            "cert sign without isCA",
            json!({"usages": ["digital signature", "cert sign"]}),
            Some(r#"spec.usages has "cert sign", which only a CA certificate may have"#),
        ),
        (
            "cert sign with isCA false",
            json!({"usages": ["cert sign"], "isCA": false}),
            Some("or set spec.isCA: true"),
        ),
        (
            "cert sign on a CA certificate",
            json!({"usages": ["cert sign", "crl sign"], "isCA": true}),
            None,
        ),
        (
            "secret name with capitals",
            json!({"secretName": "Web_TLS"}),
            Some(
                r#"spec.secretName: "Web_TLS" is not a valid Secret name: use lowercase letters, digits, dashes and dots"#,
            ),
        ),
        (
            "secret name empty",
            json!({"secretName": ""}),
            Some(r#""" is not a valid Secret name"#),
        ),
        (
            "no names",
            json!({"dnsNames": null}),
            Some(
                "a ServiceCertificate needs at least one name: set spec.commonName, spec.dnsNames, spec.ipAddresses, spec.uris or spec.emailAddresses",
            ),
        ),
        (
            "only empty names",
            json!({"dnsNames": [], "commonName": ""}),
            Some("needs at least one name"),
        ),
        (
            "only a common name",
            json!({"dnsNames": null, "commonName": "web"}),
            None,
        ),
        (
            "only an IP address",
            json!({"dnsNames": null, "ipAddresses": ["10.0.0.1"]}),
            None,
        ),
        (
            "only a URI",
            json!({"dnsNames": null, "uris": ["spiffe://x/y"]}),
            None,
        ),
        (
            "only an email address",
            json!({"dnsNames": null, "emailAddresses": ["a@b.c"]}),
            None,
        ),
        ("duration in hours", json!({"duration": "2160h"}), None),
        ("duration with minutes", json!({"duration": "1h30m"}), None),
        (
            "duration with a fraction",
            json!({"duration": "1.5h"}),
            None,
        ),
        (
            "duration in microseconds",
            json!({"duration": "60000000us"}),
            None,
        ),
        (
            "duration with a micro sign",
            json!({"duration": "60000000µs"}),
            Some(r#""60000000µs" is not a duration"#),
        ),
        ("shortest duration", json!({"duration": "1m"}), None),
        (
            "duration in days",
            json!({"duration": "90d"}),
            Some(
                r#"spec.duration: "90d" is in days, which durations do not accept: write hours instead, 24h per day, such as 2160h for 90 days"#,
            ),
        ),
        (
            "duration in words",
            json!({"duration": "90 days"}),
            Some(
                r#""90 days" is not a duration: write a number and a unit (h, m or s), such as 2160h (90 days), 1h30m or 45m; days are not accepted, so write 2160h for 90 days"#,
            ),
        ),
        (
            "duration without unit",
            json!({"duration": "3600"}),
            Some(r#""3600" is not a duration"#),
        ),
        (
            "negative duration",
            json!({"duration": "-1h"}),
            Some(r#""-1h" is not a duration"#),
        ),
        (
            "duration too short",
            json!({"duration": "30s"}),
            Some(r#"spec.duration: "30s" is too short: the shortest accepted duration is 1m"#),
        ),
        (
            "renewBefore zero",
            json!({"renewBefore": "0s"}),
            Some(r#"spec.renewBefore: "0s" must be longer than zero"#),
        ),
        (
            "renewBefore in days",
            json!({"renewBefore": "30d"}),
            Some(
                r#"spec.renewBefore: "30d" is in days, which durations do not accept: write hours instead, 24h per day, such as 2160h for 90 days"#,
            ),
        ),
        (
            "renewBefore not shorter than the default duration",
            json!({"renewBefore": "2160h"}),
            Some(
                "spec.renewBefore: renewBefore 2160h must be shorter than duration 2160h (the default)",
            ),
        ),
        (
            "renewBefore longer than duration",
            json!({"duration": "1h", "renewBefore": "90m"}),
            Some(
                "renewBefore 90m must be shorter than duration 1h: renewal has to start before the certificate expires",
            ),
        ),
        (
            "renewBefore shorter than duration",
            json!({"duration": "1h", "renewBefore": "59m"}),
            None,
        ),
        (
            "malformed duration with renewBefore reports only the format",
            json!({"duration": "90d", "renewBefore": "720h"}),
            Some(r#""90d" is in days"#),
        ),
        (
            "ECDSA P-384",
            json!({"privateKey": {"algorithm": "ECDSA", "size": 384}}),
            None,
        ),
        (
            "size alone means ECDSA",
            json!({"privateKey": {"size": 256}}),
            None,
        ),
        (
            "RSA size without an algorithm",
            json!({"privateKey": {"size": 2048}}),
            Some(
                "spec.privateKey.size: size is not an ECDSA key size: use 256 or 384, or set algorithm: RSA for 2048, 3072 or 4096 (ECDSA is the default algorithm)",
            ),
        ),
        (
            "RSA too small",
            json!({"privateKey": {"algorithm": "RSA", "size": 1024}}),
            Some("spec.privateKey.size: size is not an RSA key size: use 2048, 3072 or 4096"),
        ),
        (
            "Ed25519 without size",
            json!({"privateKey": {"algorithm": "Ed25519"}}),
            None,
        ),
        (
            "Ed25519 with a size",
            json!({"privateKey": {"algorithm": "Ed25519", "size": 256}}),
            Some("spec.privateKey.size: Ed25519 keys have a fixed size: remove size"),
        ),
        (
            "issuer name with spaces",
            json!({"issuerRef": {"name": "Internal CA"}}),
            Some(r#"spec.issuerRef.name: "Internal CA" is not a valid CertificateAuthority name"#),
        ),
        (
            "reserved label",
            json!({"secretTemplate": {"labels": {"certflow.io/managed": "false"}}}),
            Some(
                "spec.secretTemplate.labels: secretTemplate.labels keys under certflow.io/ are set by certflow itself",
            ),
        ),
        (
            "reserved annotation",
            json!({"secretTemplate": {"annotations": {"certflow.io/serial": "1"}}}),
            Some("secretTemplate.annotations keys under certflow.io/"),
        ),
    ];
    check_table(&schema, scert, &base, rows);
}

#[test]
fn certificate_authority_rules_accept_good_specs_and_explain_bad_ones() {
    let schema = compiled::<CertificateAuthority>();
    let base = json!({"secretName": "internal-ca"});
    let rows: &[(&str, Value, Option<&str>)] = &[
        ("minimal", json!({}), None),
        (
            "everything set",
            json!({
                "generate": true,
                "commonName": "certflow internal CA",
                "keyAlgorithm": "RSA",
                "keySize": 4096,
                "duration": "87600h",
                "default": true,
                "rotation": {"overlap": "24h"},
                "policy": {
                    "allowedNamespaces": ["shop", "team-*"],
                    "allowedDNSNames": ["*.{namespace}.svc", "*.{namespace}.svc.cluster.local", "{namespace}.example.com"],
                    "allowedIPRanges": ["10.0.0.0/8", "fd00::/8"],
                    "allowedURIPrefixes": ["spiffe://cluster.local/ns/{namespace}/"],
                    "allowedEmailDomains": ["example.com"],
                    "maxDuration": "2160h",
                    "allowedKeyAlgorithms": ["ECDSA", "RSA"],
                    "minRSAKeySize": 3072,
                    "allowCA": false,
                },
            }),
            None,
        ),
        (
            "bad secret name",
            json!({"secretName": "CA"}),
            Some(r#"spec.secretName: "CA" is not a valid Secret name"#),
        ),
        (
            "CA duration in days",
            json!({"duration": "3650d"}),
            Some(
                r#"spec.duration: "3650d" is in days, which durations do not accept: write hours instead, 24h per day, such as 2160h for 90 days"#,
            ),
        ),
        (
            "RSA key too small",
            json!({"keyAlgorithm": "RSA", "keySize": 1024}),
            Some("spec.keySize: keySize is not an RSA key size: use 2048, 3072 or 4096"),
        ),
        (
            "ECDSA key with an RSA size",
            json!({"keySize": 4096}),
            Some(
                "spec.keySize: keySize is not an ECDSA key size: use 256 or 384, or set keyAlgorithm: RSA for 2048, 3072 or 4096 (ECDSA is the default keyAlgorithm)",
            ),
        ),
        (
            "namespace pattern with capitals",
            json!({"policy": {"allowedNamespaces": ["Team_A"]}}),
            Some(
                "spec.policy.allowedNamespaces: each allowedNamespaces entry must be a namespace name or a glob pattern",
            ),
        ),
        (
            "wildcard in the middle of a DNS pattern",
            json!({"policy": {"allowedDNSNames": ["web.*.svc"]}}),
            Some("each allowedDNSNames pattern may use * only as the whole leftmost label"),
        ),
        (
            "partial-label wildcard",
            json!({"policy": {"allowedDNSNames": ["web-*.{namespace}.svc"]}}),
            Some("may use * only as the whole leftmost label"),
        ),
        (
            "IP range that is not a CIDR",
            json!({"policy": {"allowedIPRanges": ["10.0.0.0/33"]}}),
            Some(
                "spec.policy.allowedIPRanges: each allowedIPRanges entry must be a CIDR, such as 10.0.0.0/8 or fd00::/8",
            ),
        ),
        (
            "IP address without prefix length",
            json!({"policy": {"allowedIPRanges": ["10.0.0.1"]}}),
            Some("must be a CIDR"),
        ),
        (
            "max duration in days",
            json!({"policy": {"maxDuration": "90d"}}),
            Some(
                r#"spec.policy.maxDuration: "90d" is in days, which durations do not accept: write hours instead, 24h per day, such as 2160h for 90 days"#,
            ),
        ),
        (
            "rotation overlap off",
            json!({"rotation": {"overlap": "0s"}}),
            None,
        ),
        (
            "rotation overlap in days",
            json!({"rotation": {"overlap": "2d"}}),
            Some(
                r#"spec.rotation.overlap: "2d" is in days, which durations do not accept: write hours instead, 24h per day, such as 2160h for 90 days"#,
            ),
        ),
        (
            "min RSA key size that RSA does not have",
            json!({"policy": {"minRSAKeySize": 1024}}),
            Some(
                "spec.policy.minRSAKeySize: minRSAKeySize is not an RSA key size: use 2048, 3072 or 4096",
            ),
        ),
    ];
    check_table(&schema, cfca, &base, rows);
}

/// Every rule and message expression, with the schema node it is attached to.
fn rules(node: &Value, out: &mut Vec<(String, Value)>) {
    if let Some(Value::Array(validations)) = node.get("x-kubernetes-validations") {
        for validation in validations {
            for key in ["rule", "messageExpression"] {
                if let Some(Value::String(expression)) = validation.get(key) {
                    out.push((expression.clone(), node.clone()));
                }
            }
        }
    }
    match node {
        Value::Object(map) => map.values().for_each(|child| rules(child, out)),
        Value::Array(items) => items.iter().for_each(|child| rules(child, out)),
        _ => {}
    }
}

#[test]
fn every_rule_is_within_the_cost_budget() {
    for schema in [
        open_api_schema::<ServiceCertificate>(),
        open_api_schema::<CertificateAuthority>(),
    ] {
        let mut found = Vec::new();
        rules(&schema, &mut found);
        assert!(
            found.len() > 10,
            "expected the CRD to carry its rules, found {}",
            found.len()
        );
        for (rule, node) in found {
            // kube-cel 0.8 reports the variables of all()/exists() as out of
            // scope, so only the cost findings are checked.
            let warnings: Vec<_> =
                analyze_rule(&rule, &compile_schema(&node), ScopeContext::CrdValidation)
                    .into_iter()
                    .filter(|warning| warning.kind != WarningKind::WrongScope)
                    .collect();
            assert!(warnings.is_empty(), "rule {rule:?}: {warnings:?}");
        }
    }
}

/// kube-apiserver estimates the cost of `string()` on a number as unbounded
/// and rejects the whole CRD, while kube-cel's analysis above lets it pass;
/// messages that need a number are static `message`s instead.
#[test]
fn no_expression_calls_string_which_the_api_server_cannot_cost() {
    for schema in [
        open_api_schema::<ServiceCertificate>(),
        open_api_schema::<CertificateAuthority>(),
    ] {
        let mut found = Vec::new();
        rules(&schema, &mut found);
        for (expression, _) in found {
            assert!(
                !expression.contains("string("),
                "expression {expression:?} calls string(), which the API server refuses to cost"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    /// The schema accepts a duration exactly when the signer can parse it,
    /// so nothing the API server stores fails later in the signer. (Values
    /// above about 292 years are the exception: the pattern admits them and
    /// the API server's `duration()` then fails to evaluate, which still
    /// rejects the object.)
    #[test]
    fn the_schema_and_the_parser_agree_on_durations(
        duration in "([0-9]{0,4}(\\.[0-9]{0,3})?(h|m|s|ms|us|µs|ns|d|H| )?){1,3}"
    ) {
        let parsed = parse_go_duration(&duration);
        prop_assume!(!matches!(parsed, Err(DurationError::TooLarge { .. })));
        let object = scert(json!({"secretName": "web-tls", "dnsNames": ["web"], "duration": duration}));
        let found = violations(&SERVICE_CERTIFICATE_SCHEMA, &object);
        let format_refused = found.iter().any(|m| m.contains("is not a duration") || m.contains("is in days"));
        prop_assert_eq!(format_refused, parsed.is_err(), "{:?}", found);
    }
}
