//! The CRD schemas as an app owner or operator meets them: YAML applied with
//! `kubectl` against the real kube-apiserver, which evaluates the OpenAPI
//! schema and the CEL rules. A mistake is refused with a message that says
//! what to write instead; a correct object applies cleanly and `kubectl get`
//! shows the documented columns.
//!
//! No certflow service runs here: everything asserted is the API server's
//! own answer.

use std::path::Path;

use certflow_e2e::{run, run_ok};
use certflow_testenv::TestEnv;

const CRD_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/crds");

/// One object that `kubectl apply` must refuse, and the texts its error
/// output must contain.
struct Mistake {
    what: &'static str,
    manifest: String,
    says: &'static [&'static str],
}

fn service_certificate(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: certflow.io/v1alpha1\n\
         kind: ServiceCertificate\n\
         metadata:\n  name: {name}\n\
         spec: {spec}\n"
    )
}

fn certificate_authority(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: certflow.io/v1alpha1\n\
         kind: CertificateAuthority\n\
         metadata:\n  name: {name}\n\
         spec: {spec}\n"
    )
}

/// Applies every mistake in `namespace` and fails with all the rows whose
/// apply succeeded or whose error output lacks an expected text.
fn assert_refused(env: &TestEnv, namespace: &str, mistakes: &[Mistake]) {
    let mut failures = Vec::new();
    for mistake in mistakes {
        let output = run(
            env.kubectl().args(["apply", "-n", namespace, "-f", "-"]),
            &mistake.manifest,
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() {
            failures.push(format!(
                "{}: kubectl apply succeeded: {}",
                mistake.what,
                String::from_utf8_lossy(&output.stdout)
            ));
            continue;
        }
        let missing: Vec<_> = mistake
            .says
            .iter()
            .filter(|text| !stderr.contains(**text))
            .collect();
        if !missing.is_empty() {
            failures.push(format!(
                "{}: kubectl's error lacks {missing:?}; it said:\n{stderr}",
                mistake.what
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Runs `kubectl apply` and fails unless it succeeds without a word on
/// stderr (a warning, such as an unknown field, counts as a failure).
fn apply_cleanly(command: &mut std::process::Command, manifest: &str) -> String {
    let output = run(command, manifest);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success() && stderr.is_empty(),
        "kubectl apply ({}) said:\n{stdout}\n{stderr}",
        output.status
    );
    stdout.into_owned()
}

#[tokio::test]
async fn service_certificates_with_structural_mistakes_are_refused_with_what_to_write_instead() {
    let env = certflow_testenv::shared();
    let ns = env.create_namespace("schema").await.expect("namespace");
    let mistakes = [
        Mistake {
            what: "a cert-manager issuer kind",
            manifest: service_certificate(
                "cm-issuer",
                "{secretName: web-tls, dnsNames: [web.shop.svc], issuerRef: {name: internal-ca, kind: ClusterIssuer, group: cert-manager.io}}",
            ),
            says: &[
                r#"spec.issuerRef.kind: Unsupported value: "ClusterIssuer": supported values: "CertificateAuthority""#,
                r#"spec.issuerRef.group: Unsupported value: "cert-manager.io": supported values: "certflow.io""#,
            ],
        },
        Mistake {
            what: "no names at all",
            manifest: service_certificate("no-names", "{secretName: web-tls}"),
            says: &[
                r#"The ServiceCertificate "no-names" is invalid"#,
                "spec: Invalid value: a ServiceCertificate needs at least one name: \
                 set spec.commonName, spec.dnsNames, spec.ipAddresses, spec.uris or spec.emailAddresses",
            ],
        },
        Mistake {
            what: "a duration in days",
            manifest: service_certificate(
                "days",
                "{secretName: web-tls, dnsNames: [web.shop.svc], duration: 90d}",
            ),
            says: &[
                r#"spec.duration: Invalid value: "90d": "90d" is in days, which durations do not accept: write hours instead, 24h per day, such as 2160h for 90 days"#,
            ],
        },
        Mistake {
            // The type check comes before the CEL rules, so this is the API
            // server's own wording rather than certflow's.
            what: "a duration without a unit, which YAML reads as a number",
            manifest: service_certificate(
                "no-unit-number",
                "{secretName: web-tls, dnsNames: [web.shop.svc], duration: 2160}",
            ),
            says: &[
                r#"spec.duration: Invalid value: "integer": spec.duration in body must be of type string: "integer""#,
            ],
        },
        Mistake {
            what: "a duration without a unit, quoted",
            manifest: service_certificate(
                "no-unit-string",
                r#"{secretName: web-tls, dnsNames: [web.shop.svc], duration: "2160"}"#,
            ),
            says: &[
                r#"spec.duration: Invalid value: "2160": "2160" is not a duration: write a number and a unit (h, m or s), such as 2160h (90 days), 1h30m or 45m"#,
            ],
        },
        Mistake {
            what: "renewBefore longer than duration",
            manifest: service_certificate(
                "renew-late",
                "{secretName: web-tls, dnsNames: [web.shop.svc], duration: 720h, renewBefore: 1000h}",
            ),
            says: &[
                "spec.renewBefore: Invalid value: renewBefore 1000h must be shorter than \
                 duration 720h: renewal has to start before the certificate expires, \
                 for example renewBefore: 720h with duration: 2160h",
            ],
        },
        Mistake {
            what: "a key algorithm in the wrong case",
            manifest: service_certificate(
                "lowercase-algorithm",
                "{secretName: web-tls, dnsNames: [web.shop.svc], privateKey: {algorithm: ecdsa}}",
            ),
            says: &[
                r#"spec.privateKey.algorithm: Unsupported value: "ecdsa": supported values: "ECDSA", "Ed25519", "RSA""#,
            ],
        },
        Mistake {
            what: "an RSA key size with the default ECDSA algorithm",
            manifest: service_certificate(
                "rsa-size",
                "{secretName: web-tls, dnsNames: [web.shop.svc], privateKey: {size: 2048}}",
            ),
            says: &[
                "spec.privateKey.size: Invalid value: size is not an ECDSA key size: \
                 use 256 or 384, or set algorithm: RSA for 2048, 3072 or 4096 \
                 (ECDSA is the default algorithm)",
            ],
        },
        Mistake {
            what: "a usage spelled with a dash",
            manifest: service_certificate(
                "dashed-usage",
                r#"{secretName: web-tls, dnsNames: [web.shop.svc], usages: ["server-auth"]}"#,
            ),
            says: &[
                r#"spec.usages[0]: Unsupported value: "server-auth": supported values: "#,
                r#""server auth""#,
                r#""client auth""#,
            ],
        },
        Mistake {
            what: "cert sign on a certificate that is not a CA",
            manifest: service_certificate(
                "cert-sign",
                r#"{secretName: web-tls, dnsNames: [web.shop.svc], usages: ["digital signature", "cert sign"]}"#,
            ),
            says: &[
                r#"spec: Invalid value: spec.usages has "cert sign", which only a CA certificate may have: remove it (a service certificate does not sign others), or set spec.isCA: true"#,
            ],
        },
        Mistake {
            what: "a Secret name with capitals and an underscore",
            manifest: service_certificate(
                "capitals",
                "{secretName: Web_TLS, dnsNames: [web.shop.svc]}",
            ),
            says: &[
                r#"spec.secretName: Invalid value: "Web_TLS": "Web_TLS" is not a valid Secret name: use lowercase letters, digits, dashes and dots, starting and ending with a letter or digit, such as "web-tls""#,
            ],
        },
    ];
    assert_refused(env, &ns, &mistakes);
}

#[tokio::test]
async fn a_certificate_authority_with_a_bad_policy_is_refused_naming_every_mistake() {
    let env = certflow_testenv::shared();
    let ns = env.create_namespace("schema").await.expect("namespace");
    let name = certflow_testenv::unique_name("ca");
    let mistakes = [Mistake {
        what: "a minimum RSA size RSA does not have and a prefix longer than 32 bits",
        manifest: certificate_authority(
            &name,
            r#"{secretName: internal-ca, generate: true, policy: {minRSAKeySize: 1024, allowedIPRanges: ["10.0.0.0/33"]}}"#,
        ),
        says: &[
            "spec.policy.minRSAKeySize: Invalid value: 1024: minRSAKeySize is not an RSA \
             key size: use 2048, 3072 or 4096",
            "spec.policy.allowedIPRanges: Invalid value: each allowedIPRanges entry \
             must be a CIDR, such as 10.0.0.0/8 or fd00::/8",
        ],
    }];
    assert_refused(env, &ns, &mistakes);
}

#[tokio::test]
async fn a_correct_service_certificate_applies_and_kubectl_get_shows_its_columns() {
    let env = certflow_testenv::shared();
    let ns = env.create_namespace("schema").await.expect("namespace");
    let manifest = service_certificate(
        "web",
        "{secretName: web-tls, dnsNames: [web.shop.svc], duration: 2160h, renewBefore: 720h, \
         privateKey: {algorithm: RSA, size: 3072}, usages: [server auth, client auth], \
         issuerRef: {name: internal-ca, kind: CertificateAuthority, group: certflow.io}}",
    );
    let stdout = apply_cleanly(
        env.kubectl().args(["apply", "-n", &ns, "-f", "-"]),
        &manifest,
    );
    assert!(
        stdout.contains("servicecertificate.certflow.io/web created"),
        "kubectl said: {stdout}"
    );

    let table = run_ok(env.kubectl().args(["get", "scert", "-n", &ns]), "");
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "SECRET", "EXPIRES", "REASON", "AGE"],
        "kubectl get printed:\n{table}"
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        row.get(..2),
        Some(&["web", "web-tls"][..]),
        "no certflow service runs here, so the row has only the name, the Secret and the age:\n{table}"
    );
}

#[tokio::test]
async fn a_correct_certificate_authority_applies() {
    let env = certflow_testenv::shared();
    let name = certflow_testenv::unique_name("ca");
    let manifest = certificate_authority(
        &name,
        r#"{secretName: internal-ca, generate: true, keyAlgorithm: RSA, keySize: 4096, duration: 87600h, policy: {allowedNamespaces: [shop, team-*], allowedDNSNames: ["*.{namespace}.svc"], allowedIPRanges: [10.0.0.0/8, "fd00::/8"], maxDuration: 2160h, minRSAKeySize: 3072}}"#,
    );
    let stdout = apply_cleanly(env.kubectl().args(["apply", "-f", "-"]), &manifest);
    assert!(
        stdout.contains(&format!("certificateauthority.certflow.io/{name} created")),
        "kubectl said: {stdout}"
    );
}

#[tokio::test]
async fn a_certificate_authority_keeps_one_condition_per_type_and_o_wide_shows_its_fingerprint() {
    let env = certflow_testenv::shared();
    let name = certflow_testenv::unique_name("ca");
    apply_cleanly(
        env.kubectl().args(["apply", "-f", "-"]),
        &certificate_authority(&name, "{secretName: internal-ca, generate: true}"),
    );
    let ready = |status: &str| {
        format!(r#"{{"type":"Ready","status":"{status}","reason":"Loaded","message":""}}"#)
    };
    let patch_status = |status: String| {
        run(
            env.kubectl().args([
                "patch",
                "cfca",
                &name,
                "--subresource=status",
                "--type=merge",
                "-p",
                &format!(r#"{{"status":{status}}}"#),
            ]),
            "",
        )
    };

    let twice = patch_status(format!(
        r#"{{"conditions":[{},{}]}}"#,
        ready("True"),
        ready("False")
    ));
    let stderr = String::from_utf8_lossy(&twice.stderr);
    assert!(
        !twice.status.success() && stderr.contains("Duplicate value"),
        "two Ready conditions were not refused: {stderr}"
    );

    let fingerprint = "9f".repeat(32);
    let once = patch_status(format!(
        r#"{{"fingerprint":"{fingerprint}","serialNumber":"1a2b","conditions":[{}]}}"#,
        ready("True")
    ));
    assert!(
        once.status.success(),
        "{}",
        String::from_utf8_lossy(&once.stderr)
    );
    let table = run_ok(env.kubectl().args(["get", "cfca", &name, "-o", "wide"]), "");
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "DEFAULT",
            "READY",
            "SECRET",
            "EXPIRES",
            "FINGERPRINT",
            "SERIAL",
            "AGE"
        ],
        "kubectl get -o wide printed:\n{table}"
    );
    let row = lines.next().unwrap_or_default();
    assert!(
        row.contains(&fingerprint) && row.contains("1a2b") && row.contains("True"),
        "kubectl get -o wide printed:\n{table}"
    );
}

#[tokio::test]
async fn the_committed_crds_apply_server_side() {
    let env = certflow_testenv::shared();
    assert!(Path::new(CRD_DIR).is_dir(), "{CRD_DIR} is missing");
    let out = run_ok(
        env.kubectl()
            .args(["apply", "--server-side", "--dry-run=server", "-f", CRD_DIR]),
        "",
    );
    for crd in [
        "servicecertificates.certflow.io",
        "certificateauthorities.certflow.io",
    ] {
        assert!(
            out.contains(&format!(
                "customresourcedefinition.apiextensions.k8s.io/{crd} serverside-applied (server dry run)"
            )),
            "kubectl said: {out}"
        );
    }
}
