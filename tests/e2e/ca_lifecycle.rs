//! A CertificateAuthority's lifecycle cannot silently change trust: a lost
//! key pair is replaced only when the operator confirms it, a CA outside its
//! validity signs nothing, one close to expiry says so, and a key pair
//! change keeps Pods that trust only the previous CA verifying their
//! re-issued peers. Every CA has a status whether or not anything uses it,
//! and a broken key pair is found once, not per certificate. Real processes
//! against the real local control plane.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, SystemTime};

use certflow_api::condition::find_condition;
use certflow_api::{
    CertificateAuthority, CertificateAuthoritySpec, Condition, ConditionStatus, EXPIRING_SOON,
    IssuerPolicy, IssuerRef, POLICY_UNRESTRICTED, ServiceCertificate, ServiceCertificateSpec,
};
use certflow_e2e::fixtures::{inspect_secret, secret_data as data};
use certflow_e2e::tenant::Tenant;
use certflow_e2e::{eventually, run_ok};
use certflow_pki::{Authority, KeySpec};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};

const WAIT: Duration = Duration::from_secs(90);
const OPENSSL: &str = "/usr/bin/openssl";

certflow_e2e::tenant_fixture!(Fixture);

impl Fixture {
    async fn start(prefix: &str) -> Self {
        Self(Tenant::builder(prefix).start().await)
    }

    fn cas(&self) -> Api<CertificateAuthority> {
        Api::all(self.client.clone())
    }

    /// Secrets of the control-plane namespace, where CA key pairs live.
    fn control_plane_secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.services.control_plane_namespace)
    }

    /// Waits until the watcher exports CA `name`'s expiry as `not_after`
    /// (`certflow_ca_expiration_timestamp_seconds`, from the status the
    /// signer wrote).
    async fn await_ca_expiry_exported(&self, name: &str, not_after: SystemTime) {
        let seconds = not_after
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let sample = format!("certflow_ca_expiration_timestamp_seconds{{ca=\"{name}\"}} {seconds}");
        let watcher = self.services.watcher.as_ref().expect("the watcher runs");
        eventually(&format!("the watcher to export {sample}"), WAIT, || async {
            watcher.metrics().await.contains(&sample).then_some(())
        })
        .await;
    }

    /// The tenant CA's key pair Secret (see `create_generated_ca`).
    fn key_pair_secret(&self) -> String {
        format!("{}-key-pair", self.issuer)
    }

    async fn apply(&self, name: &str, issuer: &str, duration: Option<&str>) {
        let spec = ServiceCertificateSpec {
            secret_name: format!("{name}-tls"),
            dns_names: vec![format!("{name}.{}.svc", self.namespace())],
            duration: duration.map(str::to_owned),
            issuer_ref: Some(IssuerRef::named(issuer.to_owned())),
            ..ServiceCertificateSpec::default()
        };
        self.0.apply(name, spec).await;
    }

    /// Waits until `name` is Ready with a Secret whose serial status names.
    async fn ready(&self, name: &str) -> (ServiceCertificate, Secret) {
        let what = format!(
            "ServiceCertificate {name} to be Ready\n{}",
            self.services.logs()
        );
        eventually(&what, WAIT, || async {
            let scert = self.scerts().get(name).await.ok()?;
            let status = scert.status.clone()?;
            if status.observed_generation != scert.metadata.generation
                || !scert.ready_condition()?.is_true()
            {
                return None;
            }
            let secret = self.secrets().get(&scert.spec.secret_name).await.ok()?;
            let serial = secret.annotations().get("certflow.io/serial")?.clone();
            (Some(serial) == status.serial_number).then_some((scert, secret))
        })
        .await
    }

    /// Waits until `name` is refused, and returns its Ready condition.
    async fn refused(&self, name: &str) -> Condition {
        let what = format!(
            "ServiceCertificate {name} to be refused\n{}",
            self.services.logs()
        );
        eventually(&what, WAIT, || async {
            let scert = self.scerts().get(name).await.ok()?;
            let ready = scert.ready_condition()?;
            (!ready.is_true()).then(|| ready.clone())
        })
        .await
    }

    /// Waits until CA `name`'s condition `type_` satisfies `check`, and
    /// returns the CA.
    async fn ca_condition(
        &self,
        name: &str,
        type_: &str,
        check: impl Fn(&Condition) -> bool,
    ) -> CertificateAuthority {
        let what = format!(
            "CertificateAuthority {name}'s {type_} condition\n{}",
            self.services.logs()
        );
        eventually(&what, WAIT, || async {
            let ca = self.cas().get(name).await.ok()?;
            let status = ca.status.as_ref()?;
            find_condition(&status.conditions, type_)
                .is_some_and(&check)
                .then_some(ca)
        })
        .await
    }

    /// Creates CertificateAuthority `name` with `spec`.
    async fn create_ca(&self, name: &str, spec: CertificateAuthoritySpec) {
        self.cas()
            .create(
                &PostParams::default(),
                &CertificateAuthority::new(name, spec),
            )
            .await
            .expect("create CertificateAuthority");
    }

    /// Writes a CA key pair Secret into the control-plane namespace, as an
    /// operator would.
    async fn put_key_pair(&self, name: &str, cert_pem: &str, key_pem: &str) {
        let data = BTreeMap::from([
            (
                "tls.crt".to_owned(),
                ByteString(cert_pem.as_bytes().to_vec()),
            ),
            (
                "tls.key".to_owned(),
                ByteString(key_pem.as_bytes().to_vec()),
            ),
        ]);
        let secrets = self.control_plane_secrets();
        if secrets.get_opt(name).await.expect("read Secret").is_some() {
            let patch = serde_json::json!({ "data": data });
            secrets
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .expect("replace the key pair");
        } else {
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    ..ObjectMeta::default()
                },
                type_: Some("kubernetes.io/tls".to_owned()),
                data: Some(data),
                ..Secret::default()
            };
            secrets
                .create(&PostParams::default(), &secret)
                .await
                .expect("create the key pair Secret");
        }
    }
}

fn is_ready(condition: &Condition) -> bool {
    condition.is_true()
}

/// The certificates of a PEM bundle, each as PEM.
fn certificates(pem: &[u8]) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    String::from_utf8_lossy(pem)
        .split_inclusive(END)
        .filter(|block| block.contains(END))
        .map(|block| format!("{}\n", block.trim()))
        .collect()
}

fn fingerprint(pem: &str) -> String {
    certflow_pki::fingerprint_pem(pem.as_bytes()).expect("a certificate")
}

/// `openssl verify -CAfile <trusted> -untrusted <chain> leaf.pem` for the
/// Secret's tls.crt, as a client trusting only `trusted` would verify the
/// peer presenting it. Returns openssl's output; fails the test when it is
/// missing.
fn openssl_verify(secret: &Secret, trusted: &str) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let served = certificates(&data(secret, "tls.crt"));
    std::fs::write(dir.path().join("leaf.pem"), &served[0]).expect("write leaf");
    std::fs::write(dir.path().join("chain.pem"), served[1..].concat()).expect("write chain");
    std::fs::write(dir.path().join("trusted.pem"), trusted).expect("write trusted");
    Command::new(OPENSSL)
        .args([
            "verify",
            "-CAfile",
            "trusted.pem",
            "-untrusted",
            "chain.pem",
            "leaf.pem",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap_or_else(|err| {
            panic!("{OPENSSL} cannot run ({err}); install it with: apt-get install -y openssl")
        })
}

#[tokio::test]
async fn a_deleted_ca_secret_is_not_replaced_until_the_operator_confirms_and_then_certificates_flow_again()
 {
    let fx = Fixture::start("ca-lost").await;
    fx.apply("first", &fx.issuer, None).await;
    fx.ready("first").await;
    let ca = fx.ca_condition(&fx.issuer, "Ready", is_ready).await;
    let lost = ca
        .status
        .as_ref()
        .and_then(|s| s.fingerprint.clone())
        .expect("status.fingerprint");

    // The tenant's CA has no policy: its status and the signer's log say so.
    let unrestricted = fx
        .ca_condition(&fx.issuer, POLICY_UNRESTRICTED, Condition::is_true)
        .await;
    let condition = find_condition(
        &unrestricted.status.expect("status").conditions,
        POLICY_UNRESTRICTED,
    )
    .cloned()
    .expect("PolicyUnrestricted");
    assert_eq!(condition.reason, "NoPolicy");
    assert!(
        condition
            .message
            .contains("signs any name for any namespace")
    );

    fx.control_plane_secrets()
        .delete(&fx.key_pair_secret(), &DeleteParams::default())
        .await
        .expect("delete the CA key pair Secret");
    let ca = fx
        .ca_condition(&fx.issuer, "Ready", |c| c.reason == "KeyPairMissing")
        .await;
    let ready = ca.ready_condition().expect("Ready").clone();
    assert_eq!(ready.status, ConditionStatus::False);
    let command = format!(
        "kubectl annotate certificateauthority {} certflow.io/regenerate={lost} --overwrite",
        fx.issuer
    );
    assert!(
        ready.message.contains(&command),
        "the message gives the exact command:\n{}",
        ready.message
    );

    // Certificates using the CA are refused meanwhile, and nothing is minted.
    fx.apply("second", &fx.issuer, None).await;
    let refused = fx.refused("second").await;
    assert_eq!(refused.reason, "IssuerNotReady", "{}", refused.message);
    assert!(
        fx.control_plane_secrets()
            .get_opt(&fx.key_pair_secret())
            .await
            .expect("read")
            .is_none(),
        "no new CA key pair was generated on its own"
    );
    assert!(
        fx.secrets()
            .get_opt("second-tls")
            .await
            .expect("read")
            .is_none(),
        "nothing was issued"
    );

    // The operator runs the command from the message, as written.
    let words: Vec<&str> = command.split_whitespace().collect();
    run_ok(fx.env.kubectl().args(&words[1..]), "");
    let ca = fx.ca_condition(&fx.issuer, "Ready", is_ready).await;
    let regenerated = ca
        .status
        .as_ref()
        .and_then(|s| s.fingerprint.clone())
        .expect("status.fingerprint");
    assert_ne!(regenerated, lost, "a new key pair");
    let (_, secret) = fx.ready("second").await;
    assert_eq!(
        fingerprint(&certificates(&data(&secret, "ca.crt"))[0]),
        regenerated,
        "issued by the new CA"
    );
    assert!(inspect_secret(&secret).expect("inspect").signed_by_ca);

    let log = fx.services.signers[0].process.tail(5_000);
    assert_eq!(
        log.matches("has no spec.policy").count(),
        1,
        "the policy-less CA is warned about once:\n{log}"
    );
}

#[tokio::test]
async fn an_expired_ca_is_not_ready_and_signs_nothing() {
    let fx = Fixture::start("ca-expired").await;
    let (authority, pem) =
        Authority::generate("expired CA", KeySpec::EcdsaP256, Duration::from_secs(1)).expect("CA");
    if let Ok(left) = authority.not_after().duration_since(SystemTime::now()) {
        tokio::time::sleep(left + Duration::from_secs(1)).await;
    }
    let name = certflow_testenv::unique_name("expired");
    let secret_name = format!("{name}-key-pair");
    fx.put_key_pair(&secret_name, &pem.cert_pem, &pem.key_pem)
        .await;
    let supplied = fx
        .control_plane_secrets()
        .get(&secret_name)
        .await
        .expect("read");
    fx.create_ca(
        &name,
        CertificateAuthoritySpec {
            secret_name: secret_name.clone(),
            ..CertificateAuthoritySpec::default()
        },
    )
    .await;

    fx.apply("web", &name, None).await;
    let refused = fx.refused("web").await;
    assert_eq!(refused.reason, "IssuerNotReady", "{}", refused.message);
    assert!(
        refused.message.contains("expired"),
        "the owner reads why: {}",
        refused.message
    );
    let ca = fx
        .ca_condition(&name, "Ready", |c| c.reason == "Expired")
        .await;
    let ready = ca.ready_condition().expect("Ready");
    assert_eq!(ready.status, ConditionStatus::False);
    assert!(
        ready.message.contains(&format!(
            "Secret {}/{secret_name}",
            fx.services.control_plane_namespace
        )),
        "{}",
        ready.message
    );
    assert!(
        fx.secrets()
            .get_opt("web-tls")
            .await
            .expect("read")
            .is_none(),
        "no Secret is written"
    );
    let after = fx
        .control_plane_secrets()
        .get(&secret_name)
        .await
        .expect("read");
    assert_eq!(
        after.resource_version(),
        supplied.resource_version(),
        "the operator's Secret is left alone"
    );
}

#[tokio::test]
async fn a_ca_within_thirty_days_of_expiry_stays_ready_says_so_and_caps_certificates() {
    let fx = Fixture::start("ca-expiring").await;
    let name = certflow_testenv::unique_name("expiring");
    fx.create_ca(
        &name,
        CertificateAuthoritySpec {
            secret_name: format!("{name}-key-pair"),
            generate: Some(true),
            duration: Some("720h".into()),
            ..CertificateAuthoritySpec::default()
        },
    )
    .await;
    // 90 days asked for (the default), 30 days left on the CA.
    fx.apply("web", &name, None).await;
    let (scert, secret) = fx.ready("web").await;
    let message = &scert.ready_condition().expect("Ready").message;
    assert!(
        message.contains(&format!(
            ", shortened to CertificateAuthority {name:?}'s own expiry."
        )),
        "{message}"
    );
    let ca = fx
        .ca_condition(&name, EXPIRING_SOON, Condition::is_true)
        .await;
    assert!(
        ca.ready_condition().expect("Ready").is_true(),
        "still signs"
    );
    let not_after = SystemTime::from(ca.status.and_then(|s| s.not_after).expect("notAfter").0);
    assert_eq!(
        inspect_secret(&secret).expect("inspect").not_after,
        not_after,
        "the certificate ends with the CA"
    );

    fx.await_ca_expiry_exported(&name, not_after).await;
}

#[tokio::test]
async fn a_replaced_ca_key_pair_keeps_pods_that_trust_only_the_old_ca_verifying_renewed_peers() {
    let fx = Fixture::start("ca-rotation").await;
    // A minute of overlap: re-issues come within its first half.
    let patch = serde_json::json!({"spec": {"rotation": {"overlap": "1m"}}});
    fx.cas()
        .patch(&fx.issuer, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("set the overlap");
    fx.apply("web", &fx.issuer, None).await;
    let (_, before) = fx.ready("web").await;
    let old_ca = certificates(&data(&before, "ca.crt")).remove(0);

    // The operator replaces the key pair.
    let (new_authority, pem) = Authority::generate(
        &format!("certflow {} G2", fx.issuer),
        KeySpec::EcdsaP256,
        Duration::from_secs(365 * 86_400),
    )
    .expect("CA");
    fx.put_key_pair(&fx.key_pair_secret(), &pem.cert_pem, &pem.key_pem)
        .await;

    let what = format!(
        "the certificate to be re-issued by the new CA\n{}",
        fx.services.logs()
    );
    let after = eventually(&what, WAIT, || async {
        let secret = fx.secrets().get("web-tls").await.ok()?;
        let ca_crt = certificates(&data(&secret, "ca.crt"));
        (fingerprint(&ca_crt[0]) == new_authority.fingerprint()).then_some(secret)
    })
    .await;

    let ca_crt = certificates(&data(&after, "ca.crt"));
    assert_eq!(
        ca_crt,
        vec![new_authority.cert_pem().to_owned(), old_ca.clone()],
        "ca.crt holds the new CA, then the old one"
    );
    let found = inspect_secret(&after).expect("inspect");
    assert!(found.key_matches && found.signed_by_ca);

    let old_only = openssl_verify(&after, &old_ca);
    assert!(
        old_only.status.success(),
        "a Pod trusting only the old CA verifies the renewed peer: {}{}",
        String::from_utf8_lossy(&old_only.stdout),
        String::from_utf8_lossy(&old_only.stderr)
    );
    let new_only = openssl_verify(&after, new_authority.cert_pem());
    assert!(
        new_only.status.success(),
        "a Pod trusting only the new CA verifies it too: {}{}",
        String::from_utf8_lossy(&new_only.stdout),
        String::from_utf8_lossy(&new_only.stderr)
    );

    let ca = fx.cas().get(&fx.issuer).await.expect("CA");
    let status = ca.status.expect("status");
    assert_eq!(
        status.fingerprint.as_deref(),
        Some(new_authority.fingerprint())
    );
    let previous = status
        .previous
        .first()
        .expect("the old CA in status.previous");
    assert_eq!(previous.fingerprint, fingerprint(&old_ca));
    assert!(
        previous.cross_signed.is_some(),
        "cross-signed by the old key"
    );
}

#[tokio::test]
async fn every_ca_has_a_status_before_any_certificate_uses_it() {
    let fx = Fixture::start("ca-unused").await;

    // The tenant's generated CA, which nothing has named yet, says so.
    let waiting = fx
        .ca_condition(&fx.issuer, "Ready", |c| c.reason == "KeyPairNotLoaded")
        .await;
    let ready = waiting.ready_condition().expect("Ready");
    assert_eq!(ready.status, ConditionStatus::Unknown);
    assert!(
        ready.message.contains(&format!(
            "generates its key pair into Secret {}",
            fx.key_pair_secret()
        )),
        "{}",
        ready.message
    );
    assert!(
        fx.control_plane_secrets()
            .get_opt(&fx.key_pair_secret())
            .await
            .expect("read")
            .is_none(),
        "no key pair is generated before a certificate asks for one"
    );

    // An operator-supplied CA is loaded and Ready without any certificate.
    let (authority, pem) = Authority::generate(
        "operator CA",
        KeySpec::EcdsaP256,
        Duration::from_secs(365 * 86_400),
    )
    .expect("CA");
    let name = certflow_testenv::unique_name("unused");
    let secret_name = format!("{name}-key-pair");
    fx.put_key_pair(&secret_name, &pem.cert_pem, &pem.key_pem)
        .await;
    fx.create_ca(
        &name,
        CertificateAuthoritySpec {
            secret_name,
            policy: Some(IssuerPolicy {
                allowed_dns_names: vec!["*.{namespace}.svc".into()],
                ..IssuerPolicy::default()
            }),
            ..CertificateAuthoritySpec::default()
        },
    )
    .await;
    let ca = fx.ca_condition(&name, "Ready", is_ready).await;
    let status = ca.status.clone().expect("status");
    assert_eq!(
        find_condition(&status.conditions, "Ready")
            .expect("Ready")
            .reason,
        "KeyPairLoaded"
    );
    assert_eq!(status.fingerprint.as_deref(), Some(authority.fingerprint()));
    assert_eq!(status.certificate.as_deref(), Some(authority.cert_pem()));
    assert_eq!(
        status.not_after.map(|t| SystemTime::from(t.0)),
        Some(authority.not_after())
    );
    let expiring = find_condition(&status.conditions, EXPIRING_SOON).expect("ExpiringSoon");
    assert_eq!(
        (expiring.status, expiring.reason.as_str()),
        (ConditionStatus::False, "CertificateValid")
    );
    let policy = find_condition(&status.conditions, POLICY_UNRESTRICTED).expect("policy");
    assert_eq!(
        (policy.status, policy.reason.as_str()),
        (ConditionStatus::False, "PolicySet")
    );
    fx.await_ca_expiry_exported(&name, authority.not_after())
        .await;
}

#[tokio::test]
async fn a_broken_ca_key_pair_is_reported_on_the_ca_once_and_not_found_again_per_certificate() {
    let fx = Fixture::start("ca-broken").await;
    let name = certflow_testenv::unique_name("broken");
    let secret_name = format!("{name}-key-pair");
    fx.put_key_pair(&secret_name, "not a certificate", "not a key")
        .await;
    fx.create_ca(
        &name,
        CertificateAuthoritySpec {
            secret_name: secret_name.clone(),
            ..CertificateAuthoritySpec::default()
        },
    )
    .await;

    // Reported on the CA before anything uses it.
    let broken = fx
        .ca_condition(&name, "Ready", |c| c.reason == "KeyPairUnusable")
        .await;
    let ready = broken.ready_condition().expect("Ready");
    assert_eq!(ready.status, ConditionStatus::False);
    assert!(
        ready.message.contains(&format!(
            "Secret {}/{secret_name} is unusable",
            fx.services.control_plane_namespace
        )),
        "{}",
        ready.message
    );

    let names = ["one", "two", "three"];
    for scert in names {
        fx.apply(scert, &name, None).await;
    }
    for scert in names {
        let refused = fx.refused(scert).await;
        assert_eq!(refused.reason, "IssuerNotReady", "{}", refused.message);
        assert!(
            refused.message.contains("its key pair is unusable"),
            "the owner reads why: {}",
            refused.message
        );
    }
    let after = fx.cas().get(&name).await.expect("CA");
    assert_eq!(
        after.resource_version(),
        broken.resource_version(),
        "refusing certificates wrote nothing more to the CA"
    );
    let log = fx.services.signers[0].process.tail(5_000);
    let found: Vec<&str> = log
        .lines()
        .filter(|line| {
            line.contains("the CA key pair Secret cannot be used") && line.contains(&name)
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "the broken Secret is parsed once, not per certificate:\n{log}"
    );

    // The operator puts a working key pair in; every refused certificate
    // is issued.
    let (authority, pem) = Authority::generate(
        "repaired CA",
        KeySpec::EcdsaP256,
        Duration::from_secs(365 * 86_400),
    )
    .expect("CA");
    fx.put_key_pair(&secret_name, &pem.cert_pem, &pem.key_pem)
        .await;
    for scert in names {
        let (_, secret) = fx.ready(scert).await;
        assert_eq!(
            fingerprint(&certificates(&data(&secret, "ca.crt"))[0]),
            authority.fingerprint()
        );
    }
}
