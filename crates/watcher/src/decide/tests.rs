use std::time::{Duration, SystemTime};

use certflow_api::condition::READY;
use certflow_api::labels;
use certflow_api::secret::{CA_CERT_KEY, TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY};
use certflow_api::{CertificateAuthority, NOT_BEFORE_BACKDATE};
use certflow_api::{
    CertificateAuthoritySpec, CertificateAuthorityStatus, Condition, ConditionStatus,
    PreviousAuthority, RotationSpec, ServiceCertificate, ServiceCertificateSpec,
    ServiceCertificateStatus,
};
use certflow_pki::{Authority, Issued, KeySpec, LeafRequest, PrivateKey};
use certflow_proto::v1::Trigger;
use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::*;

fn scert() -> ServiceCertificate {
    let mut scert = ServiceCertificate::new(
        "web",
        ServiceCertificateSpec {
            secret_name: "web-tls".into(),
            dns_names: vec!["web.shop.svc".into()],
            ..ServiceCertificateSpec::default()
        },
    );
    scert.metadata.namespace = Some("shop".into());
    scert.metadata.uid = Some("uid-1".into());
    scert.metadata.generation = Some(3);
    scert
}

fn ready(mut scert: ServiceCertificate, renewal: SystemTime) -> ServiceCertificate {
    let mut condition = Condition::new(READY, ConditionStatus::True, "Issued", "ok");
    condition.observed_generation = Some(3);
    scert.status = Some(ServiceCertificateStatus {
        conditions: vec![condition],
        observed_generation: Some(3),
        serial_number: Some("abc".into()),
        renewal_time: Some(Time(
            k8s_openapi::jiff::Timestamp::try_from(renewal).expect("time"),
        )),
        ..ServiceCertificateStatus::default()
    });
    scert
}

fn observed(now: SystemTime) -> Observed<'static> {
    Observed {
        secret: None,
        issuer: None,
        now,
        failure_retry: Duration::from_secs(600),
    }
}

fn trigger(decision: &Decision) -> Option<Trigger> {
    match decision {
        Decision::Publish { trigger, .. } => Some(*trigger),
        _ => None,
    }
}

#[test]
fn a_new_service_certificate_is_published_as_created_with_uid_and_generation_as_id() {
    let decision = decide(&scert(), observed(SystemTime::now()));
    assert_eq!(
        decision,
        Decision::Publish {
            trigger: Trigger::Created,
            dedup_id: "uid-1/3".into(),
            detail: "generation not yet handled".into()
        }
    );
}

#[test]
fn a_changed_spec_is_published_as_spec_changed() {
    let mut scert = ready(scert(), SystemTime::now());
    scert.metadata.generation = Some(4);
    assert_eq!(
        trigger(&decide(&scert, observed(SystemTime::now()))),
        Some(Trigger::SpecChanged)
    );
}

#[test]
fn a_ready_certificate_whose_secret_is_gone_is_published_as_secret_missing() {
    let now = SystemTime::now();
    let scert = ready(scert(), now + Duration::from_secs(3600));
    assert_eq!(
        trigger(&decide(&scert, observed(now))),
        Some(Trigger::SecretMissing)
    );
}

#[test]
fn a_refused_request_is_re_examined_once_per_retry_period_only() {
    let mut scert = scert();
    scert.status = Some(ServiceCertificateStatus {
        observed_generation: Some(3),
        conditions: vec![Condition::new(
            READY,
            ConditionStatus::False,
            "InvalidDNSName",
            "bad",
        )],
        ..ServiceCertificateStatus::default()
    });
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(6000);
    let first = decide(&scert, observed(now));
    let same_period = decide(&scert, observed(now + Duration::from_secs(10)));
    let next_period = decide(&scert, observed(now + Duration::from_secs(600)));
    assert_eq!(first, same_period, "one work item per retry period");
    assert_ne!(first, next_period);
    assert_eq!(trigger(&first), Some(Trigger::Resync));
}

#[test]
fn the_dedup_id_is_the_same_for_every_watcher_that_sees_the_same_situation() {
    let now = SystemTime::now();
    assert_eq!(
        decide(&scert(), observed(now)),
        decide(&scert(), observed(now + Duration::from_secs(5)))
    );
}

fn test_ca() -> Authority {
    Authority::generate("test CA", KeySpec::EcdsaP256, 100 * DAY)
        .expect("CA")
        .0
}

/// How long the fixtures' certificates are valid: the spec's default, so
/// they renew with a third of it (30 days) left.
const LIFETIME: Duration = Duration::from_secs(90 * 86_400);

/// A managed Secret as the signer writes it for generation 3, holding a
/// certificate issued at `issued`; returns it with the certificate.
fn issued_secret(issued: SystemTime) -> (Secret, Issued) {
    issued_by(&test_ca(), issued)
}

/// Like [`issued_secret`], signed by `authority`, notBefore backdated as
/// the signer does.
fn issued_by(authority: &Authority, issued: SystemTime) -> (Secret, Issued) {
    let key = PrivateKey::generate(KeySpec::EcdsaP256).expect("key");
    let request = LeafRequest {
        dns_names: vec!["web.shop.svc".into()],
        ..LeafRequest::new(issued - NOT_BEFORE_BACKDATE, issued + LIFETIME)
    };
    let cert = authority.issue(&request, &key).expect("issue");
    let data = [
        (TLS_CERT_KEY, cert.chain_pem.clone()),
        (TLS_PRIVATE_KEY_KEY, key.to_pkcs8_pem()),
        (CA_CERT_KEY, authority.cert_pem().to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes())))
    .collect();
    let annotations = [
        (labels::SERVICE_CERTIFICATE.to_owned(), "web".to_owned()),
        (labels::SERIAL.to_owned(), cert.serial.clone()),
        (labels::GENERATION.to_owned(), "3".to_owned()),
    ]
    .into();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("web-tls".into()),
            resource_version: Some("7".into()),
            labels: Some([(labels::MANAGED.to_owned(), labels::MANAGED_VALUE.to_owned())].into()),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..Secret::default()
    };
    (secret, cert)
}

/// When `cert` is renewed, by the one rule.
fn renewal_of(scert: &ServiceCertificate, cert: &Issued) -> SystemTime {
    certflow_pki::renewal_time(scert, cert.not_before, cert.not_after)
}

/// `scert` Ready, with status naming `cert`.
fn naming(scert: ServiceCertificate, cert: &Issued) -> ServiceCertificate {
    let renewal = renewal_of(&scert, cert);
    let mut scert = ready(scert, renewal);
    scert.status.as_mut().expect("status").serial_number = Some(cert.serial.clone());
    scert
}

fn seeing(secret: &Secret, now: SystemTime) -> Observed<'_> {
    Observed {
        secret: Some(secret),
        ..observed(now)
    }
}

#[test]
fn a_renewed_secret_whose_status_is_still_being_written_is_left_to_the_signer() {
    // Status names serial "abc"; the Secret already holds the renewal.
    let issued = SystemTime::now() - Duration::from_secs(2);
    let scert = ready(scert(), issued + Duration::from_secs(3600));
    let (secret, _) = issued_secret(issued);
    let seen = seeing(&secret, issued + Duration::from_secs(1));
    match decide(&scert, seen) {
        Decision::WaitUntil(at) => assert!(
            at > issued && at <= issued + Duration::from_secs(31),
            "looks again shortly after the grace"
        ),
        other => panic!("expected to wait for the status write, got {other:?}"),
    }
}

#[test]
fn a_first_certificate_whose_status_is_still_being_written_is_left_to_the_signer() {
    // No status at all yet (first issuance), or status of the previous
    // generation (a spec change): the Secret already holds this
    // generation's certificate.
    let issued = SystemTime::now() - Duration::from_secs(2);
    let (secret, _) = issued_secret(issued);
    let mut spec_changed = ready(scert(), issued + Duration::from_secs(3600));
    spec_changed
        .status
        .as_mut()
        .expect("status")
        .observed_generation = Some(2);
    for (what, scert) in [("first issuance", scert()), ("spec change", spec_changed)] {
        match decide(&scert, seeing(&secret, issued + Duration::from_secs(1))) {
            Decision::WaitUntil(at) => assert!(
                at > issued && at <= issued + Duration::from_secs(31),
                "{what}: looks again shortly after the grace"
            ),
            other => panic!("{what}: expected to wait for the status write, got {other:?}"),
        }
    }
    // Past the grace, the generation is published again as not handled.
    let seen = seeing(&secret, SystemTime::now() + Duration::from_secs(60));
    assert_eq!(trigger(&decide(&scert(), seen)), Some(Trigger::Created));
}

#[test]
fn a_secret_status_never_caught_up_with_is_repaired_after_the_grace() {
    let issued = SystemTime::now() - Duration::from_secs(31);
    let scert = ready(scert(), issued + Duration::from_secs(3600));
    let (secret, _) = issued_secret(issued);
    let seen = seeing(&secret, SystemTime::now());
    assert_eq!(trigger(&decide(&scert, seen)), Some(Trigger::SecretInvalid));
}

#[test]
fn a_secret_for_an_older_generation_is_repaired_at_once() {
    let now = SystemTime::now();
    let scert = ready(scert(), now + Duration::from_secs(3600));
    let (mut secret, _) = issued_secret(now);
    secret
        .annotations_mut()
        .insert(labels::GENERATION.to_owned(), "2".to_owned());
    let seen = seeing(&secret, now);
    assert_eq!(trigger(&decide(&scert, seen)), Some(Trigger::SecretInvalid));
}

#[test]
fn an_intact_secret_status_names_is_waited_on_until_renewal() {
    let now = SystemTime::now();
    let (secret, cert) = issued_secret(now - Duration::from_secs(5));
    let scert = naming(scert(), &cert);
    let renewal = renewal_of(&scert, &cert);
    assert!(renewal > now + 59 * DAY, "a third of 90 days before expiry");
    assert_eq!(
        decide(&scert, seeing(&secret, now)),
        Decision::WaitUntil(renewal)
    );
}

#[test]
fn an_intact_secret_whose_renewal_time_has_come_is_published_as_renewal_due() {
    let now = SystemTime::now();
    let (secret, cert) = issued_secret(now - 61 * DAY);
    let scert = naming(scert(), &cert);
    assert_eq!(
        decide(&scert, seeing(&secret, now)),
        Decision::Publish {
            trigger: Trigger::RenewalDue,
            dedup_id: format!("uid-1/3/renew/{}", cert.serial),
            detail: "the renewal time has come".into(),
        }
    );
}

#[test]
fn a_secret_status_names_but_certflow_did_not_create_is_left_to_the_signer_to_refuse() {
    let now = SystemTime::now();
    let (mut secret, cert) = issued_secret(now - DAY);
    let scert = naming(scert(), &cert);
    secret.metadata.labels = None;
    assert_eq!(
        decide(&scert, seeing(&secret, now)),
        Decision::Publish {
            trigger: Trigger::SecretInvalid,
            dedup_id: "uid-1/3/repair/7".into(),
            detail: "the Secret was not created by certflow".into(),
        }
    );
}

/// An edit to a Secret; the second argument is a CA that did not sign it.
type Tamper = fn(&mut Secret, &Authority);

#[test]
fn every_secret_the_signer_would_reissue_is_repaired() {
    let now = SystemTime::now();
    let other = test_ca();
    let cases: [(&str, Tamper); 5] = [
        ("created for another ServiceCertificate", |secret, _| {
            secret
                .annotations_mut()
                .insert(labels::SERVICE_CERTIFICATE.into(), "api".into());
        }),
        ("tls.crt unreadable", |secret, _| {
            secret
                .data
                .get_or_insert_default()
                .insert(TLS_CERT_KEY.into(), ByteString(b"garbage".to_vec()));
        }),
        ("a foreign tls.key", |secret, _| {
            let key = PrivateKey::generate(KeySpec::EcdsaP256).expect("key");
            secret.data.get_or_insert_default().insert(
                TLS_PRIVATE_KEY_KEY.into(),
                ByteString(key.to_pkcs8_pem().into_bytes()),
            );
        }),
        ("ca.crt of a CA that did not sign", |secret, other| {
            secret.data.get_or_insert_default().insert(
                CA_CERT_KEY.into(),
                ByteString(other.cert_pem().as_bytes().to_vec()),
            );
        }),
        ("an edited serial annotation", |secret, _| {
            secret
                .annotations_mut()
                .insert(labels::SERIAL.into(), "01".into());
        }),
    ];
    for (name, change) in cases {
        // Status names the certificate, so only the Secret is wrong.
        let (mut secret, cert) = issued_secret(now - DAY);
        let scert = naming(scert(), &cert);
        change(&mut secret, &other);
        assert_eq!(
            trigger(&decide(&scert, seeing(&secret, now))),
            Some(Trigger::SecretInvalid),
            "{name}"
        );
    }
}

#[test]
fn without_the_certificate_authority_the_issuer_is_not_checked() {
    let now = SystemTime::now();
    let (secret, cert) = issued_secret(now - DAY);
    let scert = naming(scert(), &cert);
    let mut ca = rotated_ca(&test_ca(), &test_ca(), now, "24h");
    ca.status = None;
    let renewal = renewal_of(&scert, &cert);
    assert_eq!(
        decide(&scert, seeing(&secret, now)),
        Decision::WaitUntil(renewal),
        "no CertificateAuthority"
    );
    assert_eq!(
        decide(&scert, with_issuer(&secret, &ca, now)),
        Decision::WaitUntil(renewal),
        "a CertificateAuthority without status"
    );
}

#[test]
fn a_secret_renewed_by_a_ca_the_watcher_does_not_know_yet_is_left_to_the_signer() {
    // The signer already signs with `new`; the watcher's cache still has
    // the CertificateAuthority naming `old`, and status the old serial.
    let (old, new) = (test_ca(), test_ca());
    let issued = SystemTime::now() - Duration::from_secs(2);
    let ca = rotated_ca(&old, &test_ca(), issued - DAY, "24h");
    let scert = ready(scert(), issued + DAY);
    let (secret, _) = issued_by(&new, issued);
    assert!(matches!(
        decide(
            &scert,
            with_issuer(&secret, &ca, issued + Duration::from_secs(1))
        ),
        Decision::WaitUntil(_)
    ));
}

const DAY: Duration = Duration::from_secs(86_400);

/// A CA whose key pair changed from `previous` to `current` at
/// `retired_at`, with `spec.rotation.overlap: overlap`.
fn rotated_ca(
    current: &Authority,
    previous: &Authority,
    retired_at: SystemTime,
    overlap: &str,
) -> CertificateAuthority {
    let mut ca = CertificateAuthority::new(
        "internal",
        CertificateAuthoritySpec {
            secret_name: "internal-ca".into(),
            rotation: Some(RotationSpec {
                overlap: Some(overlap.into()),
            }),
            ..CertificateAuthoritySpec::default()
        },
    );
    ca.status = Some(CertificateAuthorityStatus {
        fingerprint: Some(current.fingerprint().to_owned()),
        previous: vec![PreviousAuthority {
            fingerprint: previous.fingerprint().to_owned(),
            certificate: previous.cert_pem().to_owned(),
            cross_signed: None,
            retired_at: Time(Timestamp::try_from(retired_at).expect("time")),
        }],
        ..CertificateAuthorityStatus::default()
    });
    ca
}

/// ServiceCertificate `uid`, Ready, whose Secret `old` signed at
/// `issued`; with that Secret and the certificate's renewal time.
fn signed_by_previous(
    uid: &str,
    old: &Authority,
    issued: SystemTime,
) -> (ServiceCertificate, Secret, SystemTime) {
    let (secret, cert) = issued_by(old, issued);
    let mut scert = naming(scert(), &cert);
    scert.metadata.uid = Some(uid.to_owned());
    let renewal = renewal_of(&scert, &cert);
    (scert, secret, renewal)
}

fn with_issuer<'a>(
    secret: &'a Secret,
    ca: &'a CertificateAuthority,
    now: SystemTime,
) -> Observed<'a> {
    Observed {
        secret: Some(secret),
        issuer: Some(ca),
        ..observed(now)
    }
}

#[test]
fn after_a_key_pair_change_each_certificate_waits_for_its_own_turn_within_half_the_overlap() {
    let (old, new) = (test_ca(), test_ca());
    let issued = SystemTime::now() - 3_600 * Duration::from_secs(1);
    let rotated = SystemTime::now();
    let ca = rotated_ca(&new, &old, rotated, "24h");
    let mut turns = Vec::new();
    for i in 0..40 {
        let uid = format!("uid-{i}");
        let (scert, secret, _) = signed_by_previous(&uid, &old, issued);
        let decision = decide(&scert, with_issuer(&secret, &ca, rotated));
        let Decision::WaitUntil(turn) = decision else {
            panic!("{uid}: expected to wait for its turn, got {decision:?}")
        };
        assert!(
            turn >= rotated && turn < rotated + 12 * 3_600 * Duration::from_secs(1),
            "{uid}: the turn falls in the first half of the overlap"
        );
        assert_eq!(
            decide(
                &scert,
                with_issuer(&secret, &ca, rotated + Duration::from_secs(1))
            ),
            Decision::WaitUntil(turn),
            "{uid}: the same turn every time it is asked"
        );
        turns.push(turn);
    }
    turns.sort();
    turns.dedup();
    assert!(
        turns.len() > 30,
        "turns are spread, not shared: {} distinct of 40",
        turns.len()
    );
}

#[test]
fn when_its_turn_comes_a_certificate_is_published_as_issuer_changed() {
    let (old, new) = (test_ca(), test_ca());
    let rotated = SystemTime::now();
    let ca = rotated_ca(&new, &old, rotated, "24h");
    let (scert, secret, _) = signed_by_previous("uid-7", &old, rotated);
    let turn = reissue_turn("uid-7", &ca, Some(old.fingerprint())).expect("a turn");
    assert_eq!(
        decide(&scert, with_issuer(&secret, &ca, turn)),
        Decision::Publish {
            trigger: Trigger::IssuerChanged,
            dedup_id: format!("uid-7/3/issuer/{}", new.fingerprint()),
            detail: "the CertificateAuthority's key pair changed".into(),
        }
    );
}

#[test]
fn a_renewal_due_before_its_turn_is_waited_for_first() {
    let (old, new) = (test_ca(), test_ca());
    let rotated = SystemTime::now();
    let ca = rotated_ca(&new, &old, rotated, "24h");
    // Issued so that renewal falls two seconds after the change: 60 of its
    // 90 days earlier.
    let issued = rotated + Duration::from_secs(2) - 60 * DAY;
    let (scert, secret, renewal) = signed_by_previous("uid-3", &old, issued);
    assert!(renewal > rotated && renewal <= rotated + Duration::from_secs(2));
    // "uid-3" has a turn later than two seconds after the change.
    let turn = reissue_turn("uid-3", &ca, Some(old.fingerprint())).expect("a turn");
    assert!(turn > renewal);
    assert_eq!(
        decide(&scert, with_issuer(&secret, &ca, rotated)),
        Decision::WaitUntil(renewal)
    );
}

#[test]
fn a_certificate_from_a_ca_no_longer_in_its_overlap_is_reissued_at_once() {
    let (oldest, old, new) = (test_ca(), test_ca(), test_ca());
    let rotated = SystemTime::now();
    // The status lists `old` as previous; the Secret was signed by `oldest`.
    let ca = rotated_ca(&new, &old, rotated, "24h");
    let (scert, secret, _) = signed_by_previous("uid-1", &oldest, rotated);
    assert_eq!(
        trigger(&decide(&scert, with_issuer(&secret, &ca, rotated))),
        Some(Trigger::IssuerChanged)
    );
}

#[test]
fn a_zero_overlap_reissues_at_once() {
    let (old, new) = (test_ca(), test_ca());
    let rotated = SystemTime::now();
    let ca = rotated_ca(&new, &old, rotated, "0s");
    let (scert, secret, _) = signed_by_previous("uid-1", &old, rotated);
    assert_eq!(
        trigger(&decide(&scert, with_issuer(&secret, &ca, rotated))),
        Some(Trigger::IssuerChanged)
    );
}

#[test]
fn a_certificate_from_the_current_ca_is_not_reissued() {
    let (old, new) = (test_ca(), test_ca());
    let rotated = SystemTime::now();
    let ca = rotated_ca(&new, &old, rotated, "24h");
    let (scert, secret, renewal) = signed_by_previous("uid-1", &new, rotated);
    assert_eq!(
        decide(&scert, with_issuer(&secret, &ca, rotated)),
        Decision::WaitUntil(renewal)
    );
}
