use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use certflow_api::ServiceCertificateSpec;
use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::{Authority, KeySpec, LeafRequest, PrivateKey};

const HOUR: Duration = Duration::from_secs(3600);
const BACKDATE: Duration = certflow_api::NOT_BEFORE_BACKDATE;

/// The CA that signs now, and another one.
fn authorities() -> &'static (Authority, Authority) {
    static CAS: OnceLock<(Authority, Authority)> = OnceLock::new();
    CAS.get_or_init(|| {
        let ca = |name| {
            Authority::generate(name, KeySpec::EcdsaP256, 30 * 24 * HOUR)
                .expect("CA")
                .0
        };
        (ca("current CA"), ca("other CA"))
    })
}

fn current() -> &'static Authority {
    &authorities().0
}

fn other() -> &'static Authority {
    &authorities().1
}

/// ServiceCertificate "web", generation 3, for a day, renewed with the
/// default third of it (8h) left.
fn scert() -> ServiceCertificate {
    let mut scert = ServiceCertificate::new(
        "web",
        ServiceCertificateSpec {
            secret_name: "web-tls".into(),
            dns_names: vec!["web.shop.svc".into(), "web".into()],
            ip_addresses: vec!["10.0.0.7".into()],
            duration: Some("24h".into()),
            ..ServiceCertificateSpec::default()
        },
    );
    scert.metadata.namespace = Some("shop".into());
    scert.metadata.uid = Some("uid-1".into());
    scert.metadata.generation = Some(3);
    scert
}

/// A certificate issued at `issued` and the Secret the signer writes for
/// it: what every case starts from.
struct Fixture {
    scert: ServiceCertificate,
    secret: Option<Secret>,
    ca: Option<String>,
    issued: SystemTime,
    serial: String,
}

impl Fixture {
    fn new() -> Self {
        let issued = SystemTime::now();
        let (secret, serial) = secret_for(&scert(), current(), issued);
        Self {
            scert: scert(),
            secret: Some(secret),
            ca: Some(current().fingerprint().to_owned()),
            issued,
            serial,
        }
    }

    fn secret(&mut self) -> &mut Secret {
        self.secret.as_mut().expect("a Secret")
    }

    fn set_data(&mut self, key: &str, value: &str) {
        self.secret()
            .data
            .get_or_insert_default()
            .insert(key.to_owned(), ByteString(value.as_bytes().to_vec()));
    }

    fn annotate(&mut self, key: &str, value: &str) {
        self.secret()
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(key.to_owned(), value.to_owned());
    }

    fn unannotate(&mut self, key: &str) {
        self.secret()
            .metadata
            .annotations
            .get_or_insert_default()
            .remove(key);
    }

    /// The certificate's renewal time: 24h - 8h after issue.
    fn renewal(&self) -> SystemTime {
        self.issued + 16 * HOUR
    }
}

/// The Secret as the signer writes it (managed label, owner, serial and
/// generation annotations, chain, key and CA), and the serial.
fn secret_for(scert: &ServiceCertificate, ca: &Authority, issued: SystemTime) -> (Secret, String) {
    let key = PrivateKey::generate(KeySpec::EcdsaP256).expect("key");
    let request = LeafRequest {
        dns_names: scert.spec.dns_names.clone(),
        ip_addresses: scert
            .spec
            .ip_addresses
            .iter()
            .map(|ip| ip.parse().expect("IP"))
            .collect(),
        ..LeafRequest::new(issued - BACKDATE, issued + 24 * HOUR)
    };
    let cert = ca.issue(&request, &key).expect("issue");
    let data = [
        (TLS_CERT_KEY, cert.chain_pem.clone()),
        (TLS_PRIVATE_KEY_KEY, key.to_pkcs8_pem()),
        (CA_CERT_KEY, ca.cert_pem().to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes())))
    .collect();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(scert.spec.secret_name.clone()),
            namespace: scert.metadata.namespace.clone(),
            labels: Some(BTreeMap::from([(
                labels::MANAGED.to_owned(),
                labels::MANAGED_VALUE.to_owned(),
            )])),
            annotations: Some(BTreeMap::from([
                (labels::SERVICE_CERTIFICATE.to_owned(), "web".to_owned()),
                (labels::SERIAL.to_owned(), cert.serial.clone()),
                (labels::GENERATION.to_owned(), "3".to_owned()),
            ])),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..Secret::default()
    };
    (secret, cert.serial)
}

/// The verdict's variant, with the owner a foreign Secret names.
fn kind(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Missing => "Missing".into(),
        Verdict::Foreign(Foreign::Unmanaged) => "Foreign(Unmanaged)".into(),
        Verdict::Foreign(Foreign::OwnedBy(owner)) => format!("Foreign(OwnedBy({owner:?}))"),
        Verdict::Unreadable => "Unreadable".into(),
        Verdict::KeyMismatch => "KeyMismatch".into(),
        Verdict::NotSignedByCa => "NotSignedByCa".into(),
        Verdict::SerialAnnotationDiffers(_) => "SerialAnnotationDiffers".into(),
        Verdict::OtherGeneration(_) => "OtherGeneration".into(),
        Verdict::NamesDiffer(_) => "NamesDiffer".into(),
        Verdict::IssuerChanged { .. } => "IssuerChanged".into(),
        Verdict::RenewalDue(_) => "RenewalDue".into(),
        Verdict::Good(_) => "Good".into(),
    }
}

type Change = fn(&mut Fixture);

/// One row: what is changed from the signer's own Secret, how long after
/// issue it is assessed, and the expected verdict.
struct Case {
    name: &'static str,
    change: Change,
    after: Duration,
    expected: &'static str,
}

const fn case(name: &'static str, change: Change, after: Duration, expected: &'static str) -> Case {
    Case {
        name,
        change,
        after,
        expected,
    }
}

const SOON: Duration = Duration::from_secs(60);

#[test]
fn every_verdict_from_the_first_failing_check() {
    let cases = [
        case("the Secret as the signer wrote it", |_| {}, SOON, "Good"),
        case("no Secret", |fx| fx.secret = None, SOON, "Missing"),
        case(
            "no managed label",
            |fx| fx.secret().metadata.labels = None,
            SOON,
            "Foreign(Unmanaged)",
        ),
        case(
            "managed label not \"true\"",
            |fx| {
                fx.secret()
                    .metadata
                    .labels
                    .get_or_insert_default()
                    .insert(labels::MANAGED.into(), "false".into());
            },
            SOON,
            "Foreign(Unmanaged)",
        ),
        case(
            "issued for another ServiceCertificate",
            |fx| fx.annotate(labels::SERVICE_CERTIFICATE, "api"),
            SOON,
            "Foreign(OwnedBy(\"api\"))",
        ),
        case(
            "no owner annotation",
            |fx| fx.unannotate(labels::SERVICE_CERTIFICATE),
            SOON,
            "Foreign(OwnedBy(\"\"))",
        ),
        case(
            "an unmanaged Secret is foreign even when unreadable",
            |fx| {
                fx.secret().metadata.labels = None;
                fx.set_data(TLS_CERT_KEY, "garbage");
            },
            SOON,
            "Foreign(Unmanaged)",
        ),
        case(
            "tls.crt is not PEM",
            |fx| fx.set_data(TLS_CERT_KEY, "garbage"),
            SOON,
            "Unreadable",
        ),
        case(
            "tls.key is missing",
            |fx| {
                fx.secret()
                    .data
                    .get_or_insert_default()
                    .remove(TLS_PRIVATE_KEY_KEY);
            },
            SOON,
            "Unreadable",
        ),
        case(
            "ca.crt is not PEM",
            |fx| fx.set_data(CA_CERT_KEY, "garbage"),
            SOON,
            "Unreadable",
        ),
        case(
            "tls.key was replaced",
            |fx| {
                let key = PrivateKey::generate(KeySpec::EcdsaP256).expect("key");
                fx.set_data(TLS_PRIVATE_KEY_KEY, &key.to_pkcs8_pem());
            },
            SOON,
            "KeyMismatch",
        ),
        case(
            "a replaced key wins over a replaced CA",
            |fx| {
                let key = PrivateKey::generate(KeySpec::EcdsaP256).expect("key");
                fx.set_data(TLS_PRIVATE_KEY_KEY, &key.to_pkcs8_pem());
                fx.set_data(CA_CERT_KEY, other().cert_pem());
            },
            SOON,
            "KeyMismatch",
        ),
        case(
            "ca.crt holds another CA",
            |fx| fx.set_data(CA_CERT_KEY, other().cert_pem()),
            SOON,
            "NotSignedByCa",
        ),
        case(
            "ca.crt is empty",
            |fx| fx.set_data(CA_CERT_KEY, ""),
            SOON,
            "NotSignedByCa",
        ),
        case(
            "the serial annotation was edited",
            |fx| fx.annotate(labels::SERIAL, "01"),
            SOON,
            "SerialAnnotationDiffers",
        ),
        case(
            "no serial annotation",
            |fx| fx.unannotate(labels::SERIAL),
            SOON,
            "SerialAnnotationDiffers",
        ),
        case(
            "issued for an older generation",
            |fx| fx.annotate(labels::GENERATION, "2"),
            SOON,
            "OtherGeneration",
        ),
        case(
            "the spec has a newer generation",
            |fx| fx.scert.metadata.generation = Some(4),
            SOON,
            "OtherGeneration",
        ),
        case(
            "no generation annotation",
            |fx| fx.unannotate(labels::GENERATION),
            SOON,
            "OtherGeneration",
        ),
        case(
            "the spec asks for another DNS name",
            |fx| fx.scert.spec.dns_names.push("www.shop.svc".into()),
            SOON,
            "NamesDiffer",
        ),
        case(
            "the spec asks for a common name the certificate lacks",
            |fx| fx.scert.spec.common_name = Some("web".into()),
            SOON,
            "NamesDiffer",
        ),
        case(
            "the spec asks for another IP address",
            |fx| fx.scert.spec.ip_addresses = vec!["10.0.0.8".into()],
            SOON,
            "NamesDiffer",
        ),
        case(
            "the spec lists the same names reordered and repeated",
            |fx| {
                fx.scert.spec.dns_names = vec!["web".into(), "web.shop.svc".into(), "web".into()];
            },
            SOON,
            "Good",
        ),
        case(
            "names that differ win over a changed CA",
            |fx| {
                fx.scert.spec.dns_names.push("www.shop.svc".into());
                fx.ca = Some(other().fingerprint().to_owned());
            },
            SOON,
            "NamesDiffer",
        ),
        case(
            "another CA signs now",
            |fx| fx.ca = Some(other().fingerprint().to_owned()),
            SOON,
            "IssuerChanged",
        ),
        case(
            "a changed CA wins over a renewal that is due",
            |fx| fx.ca = Some(other().fingerprint().to_owned()),
            17 * HOUR,
            "IssuerChanged",
        ),
        case(
            "the CA that signs now is unknown",
            |fx| fx.ca = None,
            SOON,
            "Good",
        ),
        case(
            "the CA that signs now is unknown and renewal is due",
            |fx| fx.ca = None,
            17 * HOUR,
            "RenewalDue",
        ),
        case(
            "ca.crt lists a previous CA before the signing one",
            |fx| {
                let bundle = format!("{}{}", other().cert_pem(), current().cert_pem());
                fx.set_data(CA_CERT_KEY, &bundle);
            },
            SOON,
            "Good",
        ),
        case(
            "a second before renewal",
            |_| {},
            16 * HOUR - Duration::from_secs(1),
            "Good",
        ),
        case("at the renewal time", |_| {}, 16 * HOUR, "RenewalDue"),
        case("after expiry", |_| {}, 25 * HOUR, "RenewalDue"),
    ];
    let mut failures = Vec::new();
    for case in cases {
        let mut fx = Fixture::new();
        (case.change)(&mut fx);
        let verdict = assess(
            &fx.scert,
            fx.secret.as_ref(),
            fx.ca.as_deref(),
            fx.issued + case.after,
        );
        if kind(&verdict) != case.expected {
            failures.push(format!(
                "{}: expected {}, got {}",
                case.name,
                case.expected,
                kind(&verdict)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_good_verdict_carries_the_certificate_and_its_renewal_time() {
    let fx = Fixture::new();
    let verdict = assess(&fx.scert, fx.secret.as_ref(), fx.ca.as_deref(), fx.issued);
    let Verdict::Good(found) = &verdict else {
        panic!("expected Good, got {verdict:?}")
    };
    assert_eq!(found.inspection.serial, fx.serial);
    // The certificate stores whole seconds.
    let renewal = found
        .renewal
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs();
    let expected = fx
        .renewal()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs();
    assert_eq!(renewal, expected);
    assert!(verdict.is_good());
    assert_eq!(verdict.intact(), Some(found));
}

#[test]
fn an_issuer_change_names_the_ca_that_signed() {
    let mut fx = Fixture::new();
    fx.ca = Some(other().fingerprint().to_owned());
    let verdict = assess(&fx.scert, fx.secret.as_ref(), fx.ca.as_deref(), fx.issued);
    let Verdict::IssuerChanged { signed_by, found } = &verdict else {
        panic!("expected IssuerChanged, got {verdict:?}")
    };
    assert_eq!(signed_by, current().fingerprint());
    assert_eq!(found.inspection.serial, fx.serial);
}

#[test]
fn only_a_secret_as_the_signer_writes_it_for_this_generation_is_intact() {
    let mut fx = Fixture::new();
    fx.annotate(labels::GENERATION, "2");
    let stale = assess(&fx.scert, fx.secret.as_ref(), None, fx.issued);
    assert!(stale.found().is_some(), "{stale:?}");
    assert_eq!(stale.intact(), None);

    let mut fx = Fixture::new();
    fx.annotate(labels::SERIAL, "01");
    let edited = assess(&fx.scert, fx.secret.as_ref(), None, fx.issued);
    assert!(edited.found().is_some(), "{edited:?}");
    assert_eq!(edited.intact(), None);

    let mut fx = Fixture::new();
    fx.scert.spec.dns_names.push("www.shop.svc".into());
    let renamed = assess(&fx.scert, fx.secret.as_ref(), None, fx.issued);
    assert!(renamed.intact().is_some(), "{renamed:?}");

    assert_eq!(Verdict::KeyMismatch.found(), None);
    assert_eq!(Verdict::Missing.intact(), None);
}

#[test]
fn renewal_is_renew_before_ahead_of_expiry() {
    let mut scert = scert();
    scert.spec.renew_before = Some("1h".into());
    let not_before = SystemTime::UNIX_EPOCH + 1000 * HOUR;
    let not_after = not_before + 24 * HOUR;
    assert_eq!(
        renewal_time(&scert, not_before, not_after),
        not_after - HOUR
    );
}

#[test]
fn renewal_falls_back_to_a_third_of_a_lifetime_the_ca_shortened() {
    // renewBefore 20h of a 24h duration, but the CA's expiry cut the
    // certificate to 12h: renewing 20h ahead would renew at once.
    let mut scert = scert();
    scert.spec.renew_before = Some("20h".into());
    let not_before = SystemTime::UNIX_EPOCH + 1000 * HOUR;
    let not_after = not_before + 12 * HOUR;
    assert_eq!(
        renewal_time(&scert, not_before, not_after),
        not_after - 4 * HOUR
    );
}

#[test]
fn renewal_falls_back_to_a_third_when_renew_before_is_unusable() {
    let mut scert = scert();
    scert.spec.renew_before = Some("tomorrow".into());
    let not_before = SystemTime::UNIX_EPOCH + 1000 * HOUR;
    let not_after = not_before + 24 * HOUR;
    assert_eq!(
        renewal_time(&scert, not_before, not_after),
        not_after - 8 * HOUR
    );
}
