//! The issuance path end to end: ServiceCertificate → watcher → JetStream →
//! signer → Secret and status, with real processes against the real local
//! control plane.

use std::collections::BTreeMap;
use std::time::Duration;

use certflow_api::{
    IssuerRef, KeyAlgorithm, PrivateKeySpec, ServiceCertificate, ServiceCertificateSpec,
};
use certflow_e2e::eventually;
use certflow_e2e::fixtures::{inspect_secret, secret_data as data};
use certflow_e2e::tenant::Tenant;
use certflow_pki::Inspection;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt as _;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};

const WAIT: Duration = Duration::from_secs(90);

// One test's tenant, with what the issuance tests ask of it.
certflow_e2e::tenant_fixture!(Fixture);

impl Fixture {
    async fn start(prefix: &str, signers: usize) -> Self {
        Self(Tenant::builder(prefix).signers(signers).start().await)
    }

    fn spec(&self, secret_name: &str, dns_names: &[&str]) -> ServiceCertificateSpec {
        ServiceCertificateSpec {
            secret_name: secret_name.into(),
            dns_names: dns_names.iter().map(|s| (*s).to_owned()).collect(),
            issuer_ref: Some(IssuerRef::named(self.issuer.clone())),
            ..ServiceCertificateSpec::default()
        }
    }

    /// Waits until `name` is Ready for its current generation with a Secret
    /// whose serial matches status, and returns both.
    async fn ready(&self, name: &str) -> (ServiceCertificate, Secret) {
        let scerts = self.scerts();
        let secrets = self.secrets();
        let what = format!(
            "ServiceCertificate {name} to be Ready\n{}",
            self.services.logs()
        );
        eventually(&what, WAIT, || async {
            let scert = scerts.get(name).await.ok()?;
            let status = scert.status.clone()?;
            let current = status.observed_generation == scert.metadata.generation;
            if !current || !scert.ready_condition()?.is_true() {
                return None;
            }
            let secret = secrets.get(&scert.spec.secret_name).await.ok()?;
            let serial = secret.annotations().get("certflow.io/serial")?.clone();
            (Some(serial) == status.serial_number).then_some((scert, secret))
        })
        .await
    }
}

fn inspect(secret: &Secret) -> Inspection {
    inspect_secret(secret).expect("the Secret's certificate parses")
}

/// `openssl verify` of the Secret's leaf against its `ca.crt`.
fn openssl_verify(secret: &Secret) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = String::from_utf8(data(secret, "tls.crt")).expect("PEM");
    let leaf_end = chain
        .find("-----END CERTIFICATE-----")
        .expect("a certificate")
        + 25;
    std::fs::write(dir.path().join("leaf.pem"), &chain[..leaf_end]).expect("write leaf");
    std::fs::write(dir.path().join("ca.pem"), data(secret, "ca.crt")).expect("write ca");
    let output = std::process::Command::new("openssl")
        .args(["verify", "-CAfile", "ca.pem", "leaf.pem"])
        .current_dir(dir.path())
        .output()
        .expect("openssl is installed (make prerequisites)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "openssl verify failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let details = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in", "leaf.pem"])
        .current_dir(dir.path())
        .output()
        .expect("openssl x509");
    String::from_utf8_lossy(&details.stdout).into_owned()
}

#[tokio::test]
async fn every_key_algorithm_gets_a_certificate_with_exactly_the_requested_names_usages_and_validity()
 {
    let fx = Fixture::start("algorithms", 1).await;
    let cases = [
        ("ecdsa-p256", KeyAlgorithm::Ecdsa, None, "id-ecPublicKey"),
        ("ecdsa-p384", KeyAlgorithm::Ecdsa, Some(384), "secp384r1"),
        ("ed25519", KeyAlgorithm::Ed25519, None, "ED25519"),
        ("rsa-2048", KeyAlgorithm::Rsa, Some(2048), "(2048 bit)"),
        ("rsa-4096", KeyAlgorithm::Rsa, Some(4096), "(4096 bit)"),
    ];
    for (name, algorithm, size, _) in &cases {
        let mut spec = fx.spec(
            &format!("{name}-tls"),
            &[&format!("{name}.{}.svc", fx.namespace())],
        );
        spec.ip_addresses = vec!["10.1.2.3".into()];
        spec.common_name = Some(format!("{name}.{}.svc", fx.namespace()));
        spec.duration = Some("48h".into());
        spec.usages = vec![
            certflow_api::KeyUsage::DigitalSignature,
            certflow_api::KeyUsage::ServerAuth,
            certflow_api::KeyUsage::ClientAuth,
        ];
        spec.private_key = Some(PrivateKeySpec {
            algorithm: Some(*algorithm),
            size: *size,
            ..PrivateKeySpec::default()
        });
        fx.apply(name, spec).await;
    }
    for (name, _, _, openssl_marker) in &cases {
        let (scert, secret) = fx.ready(name).await;
        let found = inspect(&secret);
        let dns = format!("{name}.{}.svc", fx.namespace());
        assert!(found.key_matches, "{name}: tls.key matches tls.crt");
        assert!(found.signed_by_ca, "{name}: signed by ca.crt");
        assert_eq!(found.dns_names, vec![dns.clone()], "{name}: DNS names");
        assert_eq!(
            found.ip_addresses,
            vec!["10.1.2.3".parse::<std::net::IpAddr>().expect("ip")]
        );
        assert_eq!(found.common_name.as_deref(), Some(dns.as_str()));
        let lifetime = found
            .not_after
            .duration_since(found.not_before)
            .expect("validity");
        // notBefore is backdated by up to NOT_BEFORE_BACKDATE (less when the
        // CA itself is younger); notAfter is the moment of issue plus 48h.
        let backdated = lifetime.checked_sub(Duration::from_secs(48 * 3600));
        assert!(
            backdated.is_some_and(|by| by <= certflow_api::NOT_BEFORE_BACKDATE),
            "{name}: validity is the requested duration plus at most the backdate: {lifetime:?}"
        );
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        assert!(
            String::from_utf8(data(&secret, "tls.key"))
                .expect("PEM")
                .starts_with("-----BEGIN PRIVATE KEY-----"),
            "PKCS#8"
        );
        let text = openssl_verify(&secret);
        assert!(
            text.contains(openssl_marker),
            "{name}: openssl shows {openssl_marker}:\n{text}"
        );
        assert!(
            text.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
            "{name}: usages:\n{text}"
        );
        assert!(
            text.contains("Digital Signature"),
            "{name}: key usage:\n{text}"
        );
        let status_not_after = scert
            .status
            .and_then(|s| s.not_after)
            .expect("status.notAfter");
        assert_eq!(
            std::time::SystemTime::from(status_not_after.0),
            found.not_after,
            "{name}: status.notAfter is the certificate's"
        );
    }
}

#[tokio::test]
async fn spec_changes_deleted_and_edited_secrets_and_renewal_all_lead_to_a_fresh_certificate() {
    let fx = Fixture::start("lifecycle", 1).await;
    let ns = fx.namespace().to_owned();
    let first_name = format!("web.{ns}.svc");
    let mut spec = fx.spec("web-tls", &[&first_name]);
    spec.duration = Some("10m".into());
    fx.apply("web", spec.clone()).await;
    let (_, first) = fx.ready("web").await;

    // Spec change: new names.
    let second_name = format!("api.{ns}.svc");
    spec.dns_names = vec![first_name.clone(), second_name.clone()];
    fx.apply("web", spec.clone()).await;
    let (_, second) = fx.ready("web").await;
    let mut names = inspect(&second).dns_names;
    names.sort();
    assert_eq!(names, vec![second_name.clone(), first_name.clone()]);
    assert_ne!(inspect(&first).serial, inspect(&second).serial);

    // Secret deleted: re-issued.
    fx.secrets()
        .delete("web-tls", &DeleteParams::default())
        .await
        .expect("delete");
    let (_, third) = fx.ready("web").await;
    assert_ne!(inspect(&third).serial, inspect(&second).serial);

    // Secret edited by hand: a foreign key in tls.key is repaired.
    let foreign =
        certflow_pki::PrivateKey::generate(certflow_pki::KeySpec::EcdsaP256).expect("key");
    let patch =
        serde_json::json!({"data": {"tls.key": ByteString(foreign.to_pkcs8_pem().into_bytes())}});
    fx.secrets()
        .patch("web-tls", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("edit the Secret");
    let repaired = eventually("the edited Secret to be repaired", WAIT, || async {
        let secret = fx.secrets().get("web-tls").await.ok()?;
        let found = inspect(&secret);
        (found.key_matches && found.serial != inspect(&third).serial).then_some(found)
    })
    .await;
    assert!(repaired.signed_by_ca);

    // Renewal: with a 2m duration and renewBefore 1m50s, renewal is due 10s
    // after issuance.
    spec.duration = Some("2m".into());
    spec.renew_before = Some("1m50s".into());
    fx.apply("web", spec).await;
    let (renewing, before) = fx.ready("web").await;
    let renewal_time = renewing
        .status
        .and_then(|s| s.renewal_time)
        .expect("renewalTime");
    let renewed = eventually("the certificate to be renewed", WAIT, || async {
        let secret = fx.secrets().get("web-tls").await.ok()?;
        (inspect(&secret).serial != inspect(&before).serial).then_some(secret)
    })
    .await;
    // notBefore is backdated (NOT_BEFORE_BACKDATE, clamped to the CA's own
    // notBefore); notAfter is the moment of issue plus the 2m duration.
    let renewed_at = inspect(&renewed).not_after - Duration::from_secs(120);
    assert!(
        renewed_at >= std::time::SystemTime::from(renewal_time.0) - Duration::from_secs(1),
        "renewed at or after renewalTime"
    );
}

#[tokio::test]
async fn a_secret_certflow_did_not_create_is_left_byte_for_byte_and_reported_as_a_conflict() {
    let fx = Fixture::start("conflict", 1).await;
    let existing = Secret {
        metadata: ObjectMeta {
            name: Some("db-credentials".into()),
            labels: Some(BTreeMap::from([("owner".into(), "team-db".into())])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "password".into(),
            ByteString(b"hunter2".to_vec()),
        )])),
        ..Secret::default()
    };
    let before = fx
        .secrets()
        .create(&PostParams::default(), &existing)
        .await
        .expect("create");
    let spec = fx.spec("db-credentials", &[&format!("db.{}.svc", fx.namespace())]);
    fx.apply("db", spec).await;

    let scerts = fx.scerts();
    let reason = eventually(
        "the ServiceCertificate to report SecretConflict",
        WAIT,
        || async {
            let scert = scerts.get("db").await.ok()?;
            let ready = scert.ready_condition()?;
            (!ready.is_true()).then(|| ready.reason.clone())
        },
    )
    .await;
    assert_eq!(reason, "SecretConflict");
    let after = fx
        .secrets()
        .get("db-credentials")
        .await
        .expect("still there");
    assert_eq!(after.data, before.data, "data unchanged");
    assert_eq!(
        after.metadata.labels, before.metadata.labels,
        "labels unchanged"
    );
    assert_eq!(
        after.resource_version(),
        before.resource_version(),
        "never written"
    );
}

/// Creates `count` ServiceCertificates named `cert-<i>` with `algorithm`.
async fn create_many(fx: &Fixture, count: usize, algorithm: KeyAlgorithm) {
    let scerts = fx.scerts();
    let pp = PostParams::default();
    for i in 0..count {
        let mut spec = fx.spec(
            &format!("cert-{i}-tls"),
            &[&format!("cert-{i}.{}.svc", fx.namespace())],
        );
        spec.private_key = Some(PrivateKeySpec {
            algorithm: Some(algorithm),
            ..PrivateKeySpec::default()
        });
        scerts
            .create(&pp, &ServiceCertificate::new(&format!("cert-{i}"), spec))
            .await
            .expect("create ServiceCertificate");
    }
}

/// Waits until every `cert-<i>` is Ready with a valid, matching Secret.
async fn all_ready(fx: &Fixture, count: usize) {
    for i in 0..count {
        let (scert, secret) = fx.ready(&format!("cert-{i}")).await;
        let found = inspect(&secret);
        assert!(found.key_matches && found.signed_by_ca, "cert-{i} is valid");
        assert_eq!(
            found.dns_names, scert.spec.dns_names,
            "cert-{i} has its names"
        );
    }
}

#[tokio::test]
async fn two_signer_replicas_issue_three_hundred_certificates_each_exactly_once() {
    let fx = Fixture::start("replicas", 2).await;
    create_many(&fx, 300, KeyAlgorithm::Ecdsa).await;
    all_ready(&fx, 300).await;
    // Let any late duplicate deliveries land before counting.
    let writes = eventually("signer metrics to be readable", WAIT, || async {
        let writes = fx
            .services
            .signer_metric_sum("certflow_signer_secret_writes_total")
            .await;
        (writes >= 300.0).then_some(writes)
    })
    .await;
    let per_replica: Vec<f64> = futures::future::join_all(
        fx.services
            .signers
            .iter()
            .map(|s| s.metric_sum("certflow_signer_secret_writes_total")),
    )
    .await;
    assert_eq!(
        writes, 300.0,
        "each Secret written exactly once (per replica: {per_replica:?})"
    );
    assert!(
        per_replica.iter().all(|w| *w > 0.0),
        "both replicas shared the work: {per_replica:?}"
    );
}

#[tokio::test]
async fn a_signer_killed_mid_way_loses_no_work_item() {
    let mut fx = Fixture::start("sigkill", 1).await;
    // RSA keys take tens of milliseconds each, so the kill lands mid-way.
    create_many(&fx, 300, KeyAlgorithm::Rsa).await;
    let scerts = fx.scerts();
    let ready_at_kill = eventually("some certificates to be issued", WAIT, || async {
        let list = scerts.list(&Default::default()).await.ok()?;
        let ready = list
            .items
            .iter()
            .filter(|s| s.ready_condition().is_some_and(|c| c.is_true()))
            .count();
        (ready >= 20).then_some(ready)
    })
    .await;
    fx.services.signers[0].process.kill();
    assert!(
        ready_at_kill < 300,
        "the signer was killed before it finished ({ready_at_kill} ready)"
    );
    fx.services.signers[0]
        .process
        .restart()
        .expect("restart the signer");
    all_ready(&fx, 300).await;
}

#[tokio::test]
async fn a_signer_stopped_with_sigterm_drains_in_flight_work_and_a_new_one_finishes_the_rest() {
    let mut fx = Fixture::start("sigterm", 1).await;
    create_many(&fx, 100, KeyAlgorithm::Rsa).await;
    let scerts = fx.scerts();
    eventually("some certificates to be issued", WAIT, || async {
        let list = scerts.list(&Default::default()).await.ok()?;
        let ready = list
            .items
            .iter()
            .filter(|s| s.ready_condition().is_some_and(|c| c.is_true()))
            .count();
        (ready >= 10).then_some(())
    })
    .await;
    let status = fx.services.signers[0]
        .process
        .terminate(Duration::from_secs(30));
    let log = fx.services.signers[0].process.tail(400);
    assert!(
        status.is_some_and(|s| s.success()),
        "the signer exits cleanly on SIGTERM ({status:?}):\n{log}"
    );
    assert!(
        log.contains("draining in-flight work items"),
        "it drained:\n{log}"
    );
    fx.services.add_signer();
    all_ready(&fx, 100).await;
}

#[tokio::test]
async fn a_watcher_restarted_after_certificates_were_created_while_it_was_down_issues_them_all() {
    let mut fx = Fixture::start("watcher-restart", 1).await;
    fx.services.kill_watcher();
    create_many(&fx, 20, KeyAlgorithm::Ecdsa).await;
    fx.services.start_watcher();
    all_ready(&fx, 20).await;
}
