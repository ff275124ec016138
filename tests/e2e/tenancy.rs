//! Tenant isolation against the real control plane: with the
//! CertificateAuthority policy that `examples/00-certificate-authority.yaml`
//! ships, an app owner in one namespace cannot obtain a certificate for
//! another namespace's identity through any kind of name (DNS, IP, URI,
//! email, common name), usage or a CA certificate of their own.
//!
//! Every refusal ends the way an app owner can read: `Ready=False` with the
//! reason, a Warning Event on the Pod that mounts the Secret, and no Secret
//! at all. In the same run a compliant request is issued, so a refusal is
//! never just a broken signer.

use std::time::Duration;

use certflow_api::{
    CertificateAuthority, ConditionStatus, IssuerPolicy, IssuerRef, KeyUsage, ServiceCertificate,
    ServiceCertificateSpec,
};
use certflow_e2e::fixtures::{create_generated_ca, secret_data};
use certflow_e2e::tenant::Tenant;
use certflow_e2e::{eventually, run};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt as _;
use kube::api::PostParams;

const WAIT: Duration = Duration::from_secs(90);
const EXAMPLE_CA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/00-certificate-authority.yaml"
);

/// The policy of the example CertificateAuthority, exactly as shipped.
fn shipped_policy() -> IssuerPolicy {
    let yaml = std::fs::read_to_string(EXAMPLE_CA)
        .unwrap_or_else(|err| panic!("cannot read {EXAMPLE_CA}: {err}"));
    let ca: CertificateAuthority = serde_yaml::from_str(&yaml).expect("the example parses");
    ca.spec.policy.expect("the example has a policy")
}

/// The example's policy plus the other kinds of name a mesh needs: its own
/// namespace's SPIFFE IDs, cluster IPs, one email domain, and sub-CAs.
fn mesh_policy() -> IssuerPolicy {
    IssuerPolicy {
        allowed_uri_prefixes: vec!["spiffe://cluster.local/ns/{namespace}/".into()],
        allowed_ip_ranges: vec!["10.0.0.0/8".into()],
        allowed_email_domains: vec!["example.com".into()],
        allow_ca: Some(true),
        ..shipped_policy()
    }
}

certflow_e2e::tenant_fixture!(Fixture);

impl Fixture {
    async fn start() -> Self {
        let tenant = Tenant::builder("tenancy")
            .issuer_prefix("shipped-ca")
            .policy(shipped_policy())
            .start()
            .await;
        Self(tenant)
    }

    /// A spec for Secret `<name>-tls` from `issuer`, with one DNS name of
    /// the tenant's own.
    fn spec(&self, issuer: &str, name: &str) -> ServiceCertificateSpec {
        ServiceCertificateSpec {
            secret_name: format!("{name}-tls"),
            dns_names: vec![format!("{name}.{}.svc", self.namespace())],
            issuer_ref: Some(IssuerRef::named(issuer.to_owned())),
            ..ServiceCertificateSpec::default()
        }
    }

    /// A Pod `<name>-pod` mounting `secret_name`, as the app would.
    async fn create_consumer(&self, name: &str, secret_name: &str) -> Pod {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("{name}-pod")},
            "spec": {
                "containers": [{
                    "name": "app",
                    "image": "registry.example/app:1",
                    "volumeMounts": [{"name": "tls", "mountPath": "/tls"}],
                }],
                "volumes": [{"name": "tls", "secret": {"secretName": secret_name}}],
            },
        }))
        .expect("a Pod");
        self.api::<Pod>()
            .create(&PostParams::default(), &pod)
            .await
            .expect("create the consuming Pod")
    }

    async fn create(&self, name: &str, spec: ServiceCertificateSpec) {
        self.scerts()
            .create(&PostParams::default(), &ServiceCertificate::new(name, spec))
            .await
            .unwrap_or_else(|err| {
                panic!("the API server refused ServiceCertificate {name}: {err}")
            });
    }

    /// The ServiceCertificate once judged for its current generation.
    async fn judged(&self, name: &str) -> ServiceCertificate {
        let scerts = self.scerts();
        let what = format!(
            "ServiceCertificate {name} to be judged\n{}",
            self.services.logs()
        );
        eventually(&what, WAIT, || async {
            let scert = scerts.get(name).await.ok()?;
            let status = scert.status.as_ref()?;
            (status.observed_generation == scert.metadata.generation
                && scert.ready_condition().is_some())
            .then_some(scert)
        })
        .await
    }

    /// The note of the Warning certflow-reporter wrote on `pod` for
    /// `reason`, once it exists.
    async fn pod_warning(&self, pod: &Pod, reason: &str) -> String {
        let uid = pod.uid().expect("uid");
        let what = format!("Pod {}", pod.name_any());
        self.certflow_warning(&uid, reason, &what, WAIT).await
    }

    /// The Secret of `name`, once it is Ready for its current generation.
    async fn issued(&self, name: &str) -> Secret {
        let scert = self.judged(name).await;
        let ready = scert.ready_condition().expect("Ready");
        assert_eq!(
            ready.status,
            ConditionStatus::True,
            "{name} was refused: {}",
            ready.message
        );
        self.secrets()
            .get(&scert.spec.secret_name)
            .await
            .expect("the issued Secret")
    }
}

/// One request from the tenant that its CA must refuse.
struct Refusal {
    name: &'static str,
    spec: ServiceCertificateSpec,
    reason: &'static str,
    /// Texts the Pod's Warning must contain.
    shows: Vec<String>,
}

#[tokio::test]
async fn no_kind_of_name_usage_or_ca_gets_another_namespaces_identity_past_the_shipped_policy() {
    let fx = Fixture::start().await;
    let ns = fx.namespace().to_owned();
    let shipped = fx.issuer.clone();
    let mesh = certflow_testenv::unique_name("mesh-ca");
    create_generated_ca(&fx.client, &mesh, Some(mesh_policy()))
        .await
        .expect("create the mesh CertificateAuthority");
    let other = "payments";
    let spec = |name: &str| fx.spec(&shipped, name);
    let mesh_spec = |name: &str| fx.spec(&mesh, name);

    let cases = vec![
        Refusal {
            name: "dns-name",
            spec: ServiceCertificateSpec {
                dns_names: vec![format!("api.{other}.svc")],
                ..spec("dns-name")
            },
            reason: "PolicyViolation",
            shows: vec![format!("\"{other}\" is another namespace")],
        },
        Refusal {
            name: "ip-address",
            spec: ServiceCertificateSpec {
                ip_addresses: vec!["10.96.0.10".into()],
                ..spec("ip-address")
            },
            reason: "PolicyViolation",
            shows: vec![
                "spec.ipAddresses[0]".into(),
                "allowedIPRanges is empty".into(),
            ],
        },
        Refusal {
            // The request of the issue that found the hole: a workload
            // identity of another namespace, for mutual TLS.
            name: "spiffe-id",
            spec: ServiceCertificateSpec {
                uris: vec![format!("spiffe://cluster.local/ns/{other}/sa/api")],
                usages: vec![KeyUsage::ClientAuth, KeyUsage::DigitalSignature],
                ..spec("spiffe-id")
            },
            reason: "PolicyViolation",
            shows: vec!["spec.uris[0]".into(), "allowedURIPrefixes is empty".into()],
        },
        Refusal {
            name: "email-address",
            spec: ServiceCertificateSpec {
                email_addresses: vec![format!("api@{other}.example.com")],
                ..spec("email-address")
            },
            reason: "PolicyViolation",
            shows: vec!["allowedEmailDomains is empty".into()],
        },
        Refusal {
            name: "service-account-cn",
            spec: ServiceCertificateSpec {
                common_name: Some(format!("system:serviceaccount:{other}:api")),
                ..spec("service-account-cn")
            },
            reason: "CommonNameNotInSANs",
            shows: vec![format!("\"system:serviceaccount:{other}:api\"")],
        },
        Refusal {
            name: "database-user-cn",
            spec: ServiceCertificateSpec {
                common_name: Some(format!("{other}_db")),
                ..spec("database-user-cn")
            },
            reason: "CommonNameNotInSANs",
            shows: vec!["remove spec.commonName".into()],
        },
        Refusal {
            name: "double-dot-cn",
            spec: ServiceCertificateSpec {
                common_name: Some(format!("api.{other}.svc..")),
                ..spec("double-dot-cn")
            },
            reason: "CommonNameNotInSANs",
            shows: vec!["spec.commonName".into()],
        },
        Refusal {
            name: "code-signing",
            spec: ServiceCertificateSpec {
                usages: vec![KeyUsage::DigitalSignature, KeyUsage::CodeSigning],
                ..spec("code-signing")
            },
            reason: "UsageNotAllowed",
            shows: vec!["\"code signing\"".into(), format!("\"{shipped}\"")],
        },
        Refusal {
            name: "own-ca",
            spec: ServiceCertificateSpec {
                is_ca: Some(true),
                usages: vec![KeyUsage::CertSign, KeyUsage::DigitalSignature],
                ..spec("own-ca")
            },
            reason: "CANotAllowed",
            shows: vec!["spec.isCA".into()],
        },
        Refusal {
            // Upper case where the namespace is: another identity to a
            // case-sensitive verifier, refused rather than folded.
            name: "upper-case-identity",
            spec: ServiceCertificateSpec {
                uris: vec![format!(
                    "spiffe://cluster.local/ns/{}/sa/api",
                    ns.to_uppercase()
                )],
                ..mesh_spec("upper-case-identity")
            },
            reason: "PolicyViolation",
            shows: vec!["spec.uris[0]".into()],
        },
        Refusal {
            // As written it starts with the tenant's prefix; decoded, a
            // resolving reader sees payments' identity.
            name: "encoded-identity",
            spec: ServiceCertificateSpec {
                uris: vec![format!(
                    "spiffe://cluster.local/ns/{ns}%2F..%2F{other}/sa/api"
                )],
                ..mesh_spec("encoded-identity")
            },
            reason: "PolicyViolation",
            shows: vec!["spec.uris[0]".into(), "\"..\"".into()],
        },
        Refusal {
            name: "encoded-namespace",
            spec: ServiceCertificateSpec {
                uris: vec!["spiffe://cluster.local/ns/%70ayments/sa/api".into()],
                ..mesh_spec("encoded-namespace")
            },
            reason: "PolicyViolation",
            shows: vec!["spec.uris[0]".into()],
        },
        Refusal {
            name: "other-email-domain",
            spec: ServiceCertificateSpec {
                email_addresses: vec!["api@example.org".into()],
                ..mesh_spec("other-email-domain")
            },
            reason: "PolicyViolation",
            shows: vec!["did you mean \"api@example.com\"?".into()],
        },
    ];

    // The controls, in the same run: what each CA does allow is issued.
    let compliant = ServiceCertificateSpec {
        common_name: Some(format!("web.{ns}.svc")),
        ..spec("web")
    };
    let mesh_compliant = ServiceCertificateSpec {
        uris: vec![format!("spiffe://cluster.local/ns/{ns}/sa/api")],
        ip_addresses: vec!["10.96.0.11".into()],
        email_addresses: vec!["api@example.com".into()],
        usages: vec![KeyUsage::ClientAuth, KeyUsage::DigitalSignature],
        ..mesh_spec("mesh")
    };

    let mut pods = Vec::new();
    for case in &cases {
        pods.push(fx.create_consumer(case.name, &case.spec.secret_name).await);
        fx.create(case.name, case.spec.clone()).await;
    }
    fx.create("web", compliant).await;
    fx.create("mesh", mesh_compliant).await;

    for (case, pod) in cases.iter().zip(&pods) {
        let scert = fx.judged(case.name).await;
        let ready = scert.ready_condition().expect("Ready");
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (ConditionStatus::False, case.reason),
            "{}: {}",
            case.name,
            ready.message
        );
        let note = fx.pod_warning(pod, case.reason).await;
        for text in &case.shows {
            assert!(
                note.contains(text.as_str()),
                "{}: the Pod's Warning lacks {text:?}: {note}",
                case.name
            );
        }
        let secret = fx
            .secrets()
            .get_opt(&case.spec.secret_name)
            .await
            .expect("read Secret");
        assert!(
            secret.is_none(),
            "{}: a Secret was written for a refused request",
            case.name
        );
    }
    let web = certflow_e2e::fixtures::inspect_secret(&fx.issued("web").await).expect("parses");
    assert_eq!(web.common_name, Some(format!("web.{ns}.svc")));
    let mesh_secret =
        certflow_e2e::fixtures::inspect_secret(&fx.issued("mesh").await).expect("parses");
    assert_eq!(
        mesh_secret.uris,
        vec![format!("spiffe://cluster.local/ns/{ns}/sa/api")]
    );
}

#[tokio::test]
async fn a_tenants_own_ca_cannot_sign_names_its_parent_would_refuse() {
    let fx = Fixture::start().await;
    let ns = fx.namespace().to_owned();
    let parent = certflow_testenv::unique_name("parent-ca");
    create_generated_ca(&fx.client, &parent, Some(mesh_policy()))
        .await
        .expect("create the CertificateAuthority that allows sub-CAs");
    let ca_name = format!("ca.{ns}.svc");
    fx.create(
        "sub-ca",
        ServiceCertificateSpec {
            secret_name: "sub-ca-tls".into(),
            common_name: Some(ca_name.clone()),
            dns_names: vec![ca_name],
            is_ca: Some(true),
            usages: vec![KeyUsage::CertSign, KeyUsage::DigitalSignature],
            issuer_ref: Some(IssuerRef::named(parent)),
            ..ServiceCertificateSpec::default()
        },
    )
    .await;
    let secret = fx.issued("sub-ca").await;
    let text = |key: &str| String::from_utf8(secret_data(&secret, key)).expect("PEM is text");
    let sub_ca = certflow_pki::Authority::from_pem(&text("tls.crt"), &text("tls.key"))
        .expect("the issued CA certificate can sign");

    let dir = tempfile::tempdir().expect("tempdir");
    let write = |file: &str, pem: &str| {
        let path = dir.path().join(file);
        std::fs::write(&path, pem).expect("write PEM");
        path.display().to_string()
    };
    let root = write("root.pem", &text("ca.crt"));
    let intermediate = write("sub-ca.pem", sub_ca.cert_pem());
    let verify = |name: &str| {
        let leaf = sign_leaf(&sub_ca, name);
        let leaf = write(&format!("{name}.pem"), &leaf);
        let output = run(
            std::process::Command::new(openssl()).args([
                "verify",
                "-CAfile",
                &root,
                "-untrusted",
                &intermediate,
                &leaf,
            ]),
            "",
        );
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    };
    let (ok, said) = verify(&format!("api.{ns}.svc"));
    assert!(
        ok,
        "a name the parent allows verifies under the sub-CA: {said}"
    );
    for forbidden in ["api.payments.svc", "api.payments.svc.cluster.local"] {
        let (ok, said) = verify(forbidden);
        assert!(
            !ok && said.contains("subtree violation"),
            "a leaf for {forbidden} under the tenant's CA must not verify: {said}"
        );
    }
}

/// A leaf for `dns_name` signed by `ca`, as a tenant holding a CA
/// certificate could make one offline.
fn sign_leaf(ca: &certflow_pki::Authority, dns_name: &str) -> String {
    let key = certflow_pki::PrivateKey::generate(certflow_pki::KeySpec::EcdsaP256).expect("key");
    let now = std::time::SystemTime::now();
    let request = certflow_pki::LeafRequest {
        dns_names: vec![dns_name.to_owned()],
        key_usages: vec![certflow_pki::KeyUsage::DigitalSignature],
        extended_key_usages: vec![certflow_pki::ExtendedKeyUsage::ServerAuth],
        ..certflow_pki::LeafRequest::new(now, now + Duration::from_secs(3600))
    };
    ca.issue(&request, &key).expect("sign a leaf").cert_pem
}

/// `openssl`, or a failure that says how to install it.
fn openssl() -> &'static str {
    const OPENSSL: &str = "/usr/bin/openssl";
    assert!(
        std::path::Path::new(OPENSSL).exists(),
        "openssl is missing: install it with `apt-get install -y openssl` (scripts/prerequisites.sh does)"
    );
    OPENSSL
}
