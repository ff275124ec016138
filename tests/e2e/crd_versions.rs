//! The supported Kubernetes versions docs/deploy.md states, tested on the
//! oldest claimed release (`KUBE_OLDEST_VERSION` in
//! `scripts/tool-versions.env`), the one every other test runs
//! (`KUBERNETES_VERSION`) and the newest on the Go module proxy when pinned
//! (`KUBE_NEWEST_VERSION`). On each, a bare etcd + kube-apiserver of that
//! release takes `kubectl apply -k deploy/base` from that release's own
//! kubectl (the CRDs come in through the base's `../crds`), the CRDs become
//! Established, a valid ServiceCertificate and CertificateAuthority are
//! stored, objects the CEL rules refuse are refused with the rules' messages
//! (so the rules compile and run on that release, including `isCIDR()` and a
//! `messageExpression`), and a field selector on `spec.secretName` works (so
//! `selectableFields` was kept).
//!
//! No controller-manager, NATS or certflow service runs: everything asserted
//! is the API server's own answer. One API server runs at a time.

use std::time::Duration;

use certflow_e2e::manifests::repo_root;
use certflow_e2e::{run, run_ok};
use certflow_testenv::{ApiServerOnly, KubeRelease};
use serde_json::Value;

/// One API server at a time: the machine running the tests is small.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CRDS: [&str; 2] = [
    "servicecertificates.certflow.io",
    "certificateauthorities.certflow.io",
];
const ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn the_base_and_its_crds_install_and_validate_on_the_oldest_claimed_kubernetes() {
    let release = KubeRelease::oldest().unwrap_or_else(|err| panic!("{err}"));
    check_release(&release).await;
}

#[tokio::test]
async fn the_base_and_its_crds_install_and_validate_on_the_current_kubernetes() {
    let release = KubeRelease::current().unwrap_or_else(|err| panic!("{err}"));
    check_release(&release).await;
}

#[tokio::test]
async fn the_base_and_its_crds_install_and_validate_on_the_newest_kubernetes() {
    let release = KubeRelease::newest().unwrap_or_else(|err| panic!("{err}"));
    check_release(&release).await;
}

async fn check_release(release: &KubeRelease) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let env = ApiServerOnly::start(release)
        .await
        .unwrap_or_else(|err| panic!("kube-apiserver {} did not start: {err}", release.version));
    let v = &release.version;

    // The binaries are the pinned release: the server's /version and the
    // client's own.
    let info = env
        .client()
        .await
        .expect("client")
        .apiserver_version()
        .await
        .expect("/version answers");
    assert_eq!(
        &info.git_version, v,
        "the API server is not the pinned release"
    );
    let client_version: Value = serde_json::from_str(&run_ok(
        env.kubectl().args(["version", "--client", "-o", "json"]),
        "",
    ))
    .expect("kubectl version prints JSON");
    assert_eq!(
        client_version["clientVersion"]["gitVersion"], *v,
        "kubectl is not the pinned release"
    );

    // Install step 4 of docs/deploy.md, client-side apply as written there.
    let base = repo_root().join("deploy/base");
    let output = run(env.kubectl().arg("apply").arg("-k").arg(&base), "");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "kubectl apply -k deploy/base failed on Kubernetes {v}:\n{stdout}\n{stderr}"
    );
    let unexpected: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("Warning"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "kubectl apply -k deploy/base printed warnings on Kubernetes {v}:\n{stderr}"
    );
    for crd in CRDS {
        assert!(
            stdout.contains(&format!(
                "customresourcedefinition.apiextensions.k8s.io/{crd} created"
            )),
            "CRD {crd} was not created on Kubernetes {v}:\n{stdout}"
        );
    }
    let crd_names: Vec<String> = CRDS.iter().map(|crd| format!("crd/{crd}")).collect();
    run_ok(
        env.kubectl()
            .args(["wait", "--for=condition=Established"])
            .arg(format!("--timeout={}s", ESTABLISHED_TIMEOUT.as_secs()))
            .args(&crd_names),
        "",
    );

    // The server kept what older releases would drop or refuse.
    let stored: Value = serde_json::from_str(&run_ok(
        env.kubectl().args([
            "get",
            "crd",
            "servicecertificates.certflow.io",
            "-o",
            "json",
        ]),
        "",
    ))
    .expect("kubectl get prints JSON");
    assert_eq!(
        stored["spec"]["versions"][0]["selectableFields"],
        serde_json::json!([{"jsonPath": ".spec.secretName"}]),
        "Kubernetes {v} did not keep the ServiceCertificate CRD's selectableFields"
    );

    // Valid objects of both kinds are stored, exercising most CEL rules.
    run_ok(env.kubectl().args(["create", "namespace", "app"]), "");
    let created = run_ok(env.kubectl().args(["apply", "-f", "-"]), VALID_OBJECTS);
    assert!(
        created.contains("certificateauthority.certflow.io/internal created")
            && created.contains("servicecertificate.certflow.io/web created"),
        "valid objects were not created on Kubernetes {v}:\n{created}"
    );

    // The CEL rules run: each mistake is refused with its rule's message.
    for (what, manifest, message) in MISTAKES {
        let output = run(env.kubectl().args(["apply", "-f", "-"]), manifest);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "Kubernetes {v} accepted {what}:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
        assert!(
            stderr.contains(message),
            "Kubernetes {v} refused {what} without the rule's message {message:?}:\n{stderr}"
        );
    }

    // selectableFields works: a field selector on spec.secretName finds
    // exactly the matching ServiceCertificate.
    let select = |secret: &str| {
        run_ok(
            env.kubectl()
                .args(["-n", "app", "get", "servicecertificates", "-o", "name"])
                .arg(format!("--field-selector=spec.secretName={secret}")),
            "",
        )
    };
    assert_eq!(
        select("web-tls").trim(),
        "servicecertificate.certflow.io/web"
    );
    assert_eq!(select("other-tls").trim(), "");
}

/// A CertificateAuthority and a ServiceCertificate that use the fields CEL
/// rules guard, each with a value the rules accept.
const VALID_OBJECTS: &str = r#"
apiVersion: certflow.io/v1alpha1
kind: CertificateAuthority
metadata: {name: internal}
spec:
  secretName: internal-ca
  generate: true
  default: true
  keyAlgorithm: RSA
  keySize: 3072
  duration: 87600h
  rotation: {overlap: 24h}
  policy:
    allowedDNSNames: ["*.{namespace}.svc", "{namespace}.example.com"]
    allowedIPRanges: ["10.0.0.0/8", "fd00::/8"]
    allowedNamespaces: ["app", "team-*"]
    maxDuration: 2160h
    minRSAKeySize: 2048
---
apiVersion: certflow.io/v1alpha1
kind: ServiceCertificate
metadata: {name: web, namespace: app}
spec:
  secretName: web-tls
  issuerRef: {name: internal}
  dnsNames: [web.app.svc]
  ipAddresses: [10.1.2.3]
  duration: 720h
  privateKey: {algorithm: ECDSA, size: 384}
  secretTemplate:
    labels: {team: web}
    annotations: {reloader.example.com/watch: "true"}
"#;

/// Objects the CEL rules refuse, and a text of the refusing rule's message.
const MISTAKES: [(&str, &str, &str); 3] = [
    (
        "a CertificateAuthority whose allowedIPRanges holds a non-CIDR (isCIDR)",
        r#"
apiVersion: certflow.io/v1alpha1
kind: CertificateAuthority
metadata: {name: bad-ranges}
spec:
  secretName: bad-ranges
  policy: {allowedIPRanges: ["10.0.0.0/33"]}
"#,
        "each allowedIPRanges entry must be a CIDR",
    ),
    (
        "a ServiceCertificate whose duration is in days (messageExpression)",
        r#"
apiVersion: certflow.io/v1alpha1
kind: ServiceCertificate
metadata: {name: in-days, namespace: app}
spec:
  secretName: in-days-tls
  dnsNames: [in-days.app.svc]
  duration: 90d
"#,
        "\"90d\" is in days, which durations do not accept",
    ),
    (
        "a ServiceCertificate with an RSA size for the default ECDSA key",
        r#"
apiVersion: certflow.io/v1alpha1
kind: ServiceCertificate
metadata: {name: wrong-size, namespace: app}
spec:
  secretName: wrong-size-tls
  dnsNames: [wrong-size.app.svc]
  privateKey: {size: 2048}
"#,
        "size is not an ECDSA key size",
    ),
];
