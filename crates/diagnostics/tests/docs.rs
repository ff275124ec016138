//! Keeps `docs/errors.md` true: every reason has a section, every section is
//! a reason, and each section's example is what the code really says.

use std::collections::BTreeSet;

use certflow_api::{
    IssuerPolicy, KeyAlgorithm, KeyUsage, PrivateKeySpec, SecretTemplate, ServiceCertificateSpec,
};
use certflow_diagnostics::{
    Reason, Violation, diagnose, issuance_failed, issuer_not_found, issuer_not_ready,
    retries_exhausted, secret_conflict, secret_owned_by_other,
};

const ERRORS_MD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/errors.md");

fn names(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

fn spec() -> ServiceCertificateSpec {
    ServiceCertificateSpec {
        secret_name: "web-tls".to_owned(),
        dns_names: names(&["web.shop.svc"]),
        ..Default::default()
    }
}

fn policy() -> IssuerPolicy {
    IssuerPolicy {
        allowed_namespaces: names(&["shop", "team-*"]),
        allowed_dns_names: names(&["*.{namespace}.svc", "*.{namespace}.svc.cluster.local"]),
        max_duration: Some("2160h".to_owned()),
        allowed_key_algorithms: vec![KeyAlgorithm::Ecdsa],
        min_rsa_key_size: Some(3072),
        ..Default::default()
    }
}

fn signer(spec: ServiceCertificateSpec) -> Option<Violation> {
    diagnose(&spec, "shop", "internal", Some(&policy()))
}

fn key(algorithm: Option<KeyAlgorithm>, size: Option<u32>) -> Option<PrivateKeySpec> {
    Some(PrivateKeySpec {
        algorithm,
        size,
        ..Default::default()
    })
}

/// One realistic example per reason, produced by the real checks.
fn examples() -> Vec<Option<Violation>> {
    vec![
        signer(ServiceCertificateSpec {
            dns_names: vec![],
            ..spec()
        }),
        signer(ServiceCertificateSpec {
            dns_names: (0..120).map(|i| format!("s{i}.shop.svc")).collect(),
            ..spec()
        }),
        signer(ServiceCertificateSpec {
            dns_names: names(&["web.shop.svc", "web.shop.svc"]),
            ..spec()
        }),
        signer(ServiceCertificateSpec {
            dns_names: names(&["web.shop.svc\n"]),
            ..spec()
        }),
        signer(ServiceCertificateSpec {
            dns_names: names(&["wеb.shop.svc"]),
            ..spec()
        }),
        signer(ServiceCertificateSpec {
            dns_names: names(&["web_api.shop.svc"]),
            ..spec()
        }),
        signer(ServiceCertificateSpec {
            dns_names: names(&["10.0.0.12"]),
            ..spec()
        }),
        signer(ServiceCertificateSpec {
            dns_names: names(&["https://web.shop.svc/"]),
            ..spec()
        }),
        signer(ServiceCertificateSpec {
            dns_names: names(&["ops@example.com"]),
            ..spec()
        }),
        signer(ServiceCertificateSpec {
            dns_names: names(&["web-*.shop.svc"]),
            ..spec()
        }),
        signer(ServiceCertificateSpec {
            dns_names: vec![format!("{}.shop.svc", ["abcdefghij"; 24].join("."))],
            ..spec()
        }),
        signer(ServiceCertificateSpec {
            dns_names: vec![format!("{}.shop.svc", "w".repeat(64))],
            ..spec()
        }),
        signer(ServiceCertificateSpec {
            ip_addresses: names(&["10.0.0.0/24"]),
            ..spec()
        }),
        signer(ServiceCertificateSpec {
            uris: names(&["cluster.local/ns/shop/sa/web"]),
            ..spec()
        }),
        signer(ServiceCertificateSpec {
            email_addresses: names(&["mailto:ops@example.com"]),
            ..spec()
        }),
        signer(ServiceCertificateSpec {
            common_name: Some(" web.shop.svc".to_owned()),
            ..spec()
        }),
        signer(ServiceCertificateSpec {
            common_name: Some(format!("{}.shop.svc", "w".repeat(60))),
            ..spec()
        }),
        signer(ServiceCertificateSpec {
            secret_name: "Web_TLS".to_owned(),
            ..spec()
        }),
        signer(ServiceCertificateSpec {
            secret_template: Some(SecretTemplate {
                labels: [("team".to_owned(), "Payments Team".to_owned())].into(),
                ..Default::default()
            }),
            ..spec()
        }),
        signer(ServiceCertificateSpec {
            duration: Some("90d".to_owned()),
            ..spec()
        }),
        signer(ServiceCertificateSpec {
            duration: Some("30s".to_owned()),
            ..spec()
        }),
        signer(ServiceCertificateSpec {
            duration: Some("720h".to_owned()),
            renew_before: Some("720h".to_owned()),
            ..spec()
        }),
        signer(ServiceCertificateSpec {
            renew_before: Some("0s".to_owned()),
            ..spec()
        }),
        signer(ServiceCertificateSpec {
            private_key: key(None, Some(2048)),
            ..spec()
        }),
        signer(ServiceCertificateSpec {
            usages: vec![KeyUsage::DigitalSignature, KeyUsage::CertSign],
            ..spec()
        }),
        Some(issuer_not_found(
            "intenral",
            &names(&["internal", "public-acme"]),
        )),
        Some(issuer_not_ready(
            "internal",
            Some("Secret certflow/internal-ca has no tls.key"),
        )),
        diagnose(
            &spec(),
            "shop",
            "internal",
            Some(&IssuerPolicy {
                max_duration: Some("90d".to_owned()),
                ..policy()
            }),
        ),
        diagnose(&spec(), "payments", "internal", Some(&policy())),
        signer(ServiceCertificateSpec {
            dns_names: names(&["web.shpo.svc"]),
            ..spec()
        }),
        signer(ServiceCertificateSpec {
            duration: Some("8760h".to_owned()),
            ..spec()
        }),
        signer(ServiceCertificateSpec {
            private_key: key(Some(KeyAlgorithm::Rsa), None),
            ..spec()
        }),
        diagnose(
            &ServiceCertificateSpec {
                private_key: key(Some(KeyAlgorithm::Rsa), None),
                ..spec()
            },
            "shop",
            "internal",
            Some(&IssuerPolicy {
                allowed_key_algorithms: vec![],
                ..policy()
            }),
        ),
        signer(ServiceCertificateSpec {
            is_ca: Some(true),
            ..spec()
        }),
        signer(ServiceCertificateSpec {
            usages: vec![KeyUsage::DigitalSignature, KeyUsage::CodeSigning],
            ..spec()
        }),
        signer(ServiceCertificateSpec {
            common_name: Some("system:serviceaccount:payments:api".to_owned()),
            ..spec()
        }),
        Some(secret_conflict("web-tls")),
        Some(secret_owned_by_other("web-tls", "web-old")),
        Some(retries_exhausted(
            5,
            "Secret shop/web-tls: the server is currently unable to handle the request",
        )),
        Some(issuance_failed(
            "kubernetes API, applying the Secret: secrets \"web-tls\" is forbidden: \
             ValidatingAdmissionPolicy 'secrets-need-team' with binding 'secrets-need-team' \
             denied request: Secrets need a team label (422 Invalid)",
        )),
    ]
}

/// The `### Name` headings under `## Reasons` (the last `##` section).
fn documented_reasons(doc: &str) -> BTreeSet<String> {
    let (_, reasons) = doc
        .split_once("\n## Reasons\n")
        .expect("docs/errors.md has a `## Reasons` section");
    reasons
        .lines()
        .filter_map(|line| line.strip_prefix("### "))
        .map(|heading| heading.trim().trim_matches('`').to_owned())
        .collect()
}

fn read_doc() -> String {
    std::fs::read_to_string(ERRORS_MD).unwrap_or_else(|e| panic!("cannot read {ERRORS_MD}: {e}"))
}

#[test]
fn every_reason_has_a_section_in_docs_errors_md() {
    let documented = documented_reasons(&read_doc());
    let missing: Vec<&str> = Reason::ALL
        .iter()
        .map(|reason| reason.as_str())
        .filter(|reason| !documented.contains(*reason))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/errors.md has no `### <Reason>` section for: {}",
        missing.join(", ")
    );
}

#[test]
fn every_section_of_docs_errors_md_is_a_reason() {
    let stale: Vec<String> = documented_reasons(&read_doc())
        .into_iter()
        .filter(|heading| heading.parse::<Reason>().is_err())
        .collect();
    assert!(
        stale.is_empty(),
        "docs/errors.md documents reasons the code does not have: {}",
        stale.join(", ")
    );
}

#[test]
fn every_reason_has_an_example_produced_by_the_real_checks() {
    let covered: BTreeSet<Reason> = examples().into_iter().flatten().map(|v| v.reason).collect();
    let missing: Vec<&str> = Reason::ALL
        .iter()
        .filter(|reason| !covered.contains(reason))
        .map(|reason| reason.as_str())
        .collect();
    assert!(missing.is_empty(), "no example for: {}", missing.join(", "));
}

#[test]
fn the_examples_in_docs_errors_md_are_what_certflow_really_says() {
    let doc = read_doc();
    for violation in examples().into_iter().flatten() {
        let sentence = violation.sentence("web");
        let section = format!("### {}", violation.reason);
        let body = doc
            .split_once(&section)
            .map(|(_, rest)| rest.split("\n### ").next().unwrap_or_default())
            .unwrap_or_default();
        assert!(
            body.contains(&sentence),
            "the {section} section of docs/errors.md should contain the example:\n\n{sentence}\n"
        );
    }
}
