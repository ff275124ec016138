use certflow_api::{
    Condition, ConditionStatus, ServiceCertificateSpec, ServiceCertificateStatus, condition::READY,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::*;

/// A ServiceCertificate fixture, built up step by step.
struct Scert(ServiceCertificate);

impl Scert {
    fn new(name: &str, secret_name: &str) -> Self {
        let mut scert = ServiceCertificate::new(
            name,
            ServiceCertificateSpec {
                secret_name: secret_name.into(),
                ..ServiceCertificateSpec::default()
            },
        );
        scert.metadata.namespace = Some("shop".into());
        scert.metadata.uid = Some(format!("uid-{name}"));
        Self(scert)
    }

    fn uid(mut self, uid: &str) -> Self {
        self.0.metadata.uid = Some(uid.into());
        self
    }

    fn status(&mut self) -> &mut ServiceCertificateStatus {
        self.0.status.get_or_insert_with(Default::default)
    }

    fn ready(mut self, status: ConditionStatus, reason: &str, since: i64) -> Self {
        let mut condition = Condition::new(READY, status, reason, "test".to_owned());
        condition.last_transition_time = Some(time(since));
        self.status().conditions = vec![condition];
        self
    }

    fn failed(mut self, reason: &str, message: &str, at: i64) -> Self {
        self.status().last_failure = Some(Failure {
            reason: reason.into(),
            message: message.into(),
            field_path: Some("spec.dnsNames[0]".into()),
            value: Some("web.shop.svc.cluster.locl".into()),
            time: Some(time(at)),
        });
        self = self.ready(ConditionStatus::False, reason, at);
        self
    }

    fn issued(mut self, serial: &str, at: i64) -> Self {
        let status = self.status();
        status.last_failure = None;
        status.serial_number = Some(serial.into());
        self.ready(ConditionStatus::True, "Issued", at)
    }

    fn summary(&self) -> CertificateSummary {
        CertificateSummary::of(&self.0).expect("a complete object")
    }
}

fn time(seconds: i64) -> Time {
    Time(Timestamp::from_second(seconds).expect("a valid time"))
}

fn names(certificates: &[CertificateSummary]) -> Vec<&str> {
    certificates.iter().map(|c| c.name.as_str()).collect()
}

fn synced(certificates: &[&Scert]) -> CertificateIndex {
    let mut index = CertificateIndex::default();
    index.apply(Event::Init);
    for scert in certificates {
        index.apply(Event::InitApply(scert.summary()));
    }
    index.apply(Event::InitDone);
    index
}

#[test]
fn a_certificate_is_failing_while_its_status_reports_a_failure_and_it_is_not_ready() {
    let cases = [
        ("no status yet", Scert::new("web", "web-tls"), false),
        (
            "refused",
            Scert::new("web", "web-tls").failed("PolicyViolation", "bad", 10),
            true,
        ),
        (
            "issued",
            Scert::new("web", "web-tls").issued("0a", 10),
            false,
        ),
        (
            "a failure left in status beside Ready=True",
            Scert::new("web", "web-tls")
                .failed("PolicyViolation", "bad", 10)
                .ready(ConditionStatus::True, "Issued", 20),
            false,
        ),
        (
            "a failure while Ready is Unknown",
            Scert::new("web", "web-tls")
                .failed("IssuerNotFound", "no CA", 10)
                .ready(ConditionStatus::Unknown, "Pending", 10),
            true,
        ),
    ];
    for (what, scert, failing) in cases {
        assert_eq!(active_failure(&scert.0).is_some(), failing, "{what}");
        assert_eq!(scert.summary().failure.is_some(), failing, "{what}");
    }
}

#[test]
fn the_warning_for_a_status_failure_is_the_outcomes_warning() {
    let scert = Scert::new("web", "web-tls").failed(
        "PolicyViolation",
        "ServiceCertificate \"web\": bad.",
        10,
    );
    let failure = scert.summary().failure.expect("failing");
    let from_outcome = failure_notice(&Failed {
        reason: "PolicyViolation".into(),
        message: "ServiceCertificate \"web\": bad.".into(),
        suggestion: "a suggestion the sentence already holds".into(),
        ..Failed::default()
    });
    assert_eq!(failure.notice(), from_outcome);
    assert_eq!(failure.at, Some(10));
}

#[test]
fn certificates_are_found_by_the_secret_they_write() {
    let web = Scert::new("web", "web-tls").failed("PolicyViolation", "bad", 10);
    let web_v2 = Scert::new("web-v2", "web-tls").issued("0a", 10);
    let db = Scert::new("db", "db-tls").failed("IssuerNotFound", "no CA", 10);
    let index = synced(&[&web, &web_v2, &db]);
    assert!(index.is_synced());
    assert_eq!(index.len(), 3);
    assert_eq!(index.failing(), 2);
    let mut writing = index.writing("shop", "web-tls");
    writing.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(names(&writing), ["web", "web-v2"]);
    assert_eq!(names(&index.failing_for("shop", "web-tls")), ["web"]);
    assert!(index.writing("elsewhere", "web-tls").is_empty());
    assert!(index.writing("shop", "other-tls").is_empty());
    assert_eq!(
        index.failing_secrets().into_iter().collect::<Vec<_>>(),
        [
            ("shop".to_owned(), "db-tls".to_owned()),
            ("shop".to_owned(), "web-tls".to_owned())
        ]
    );
    assert_eq!(
        index.get("shop", "db").map(|c| c.uid),
        Some("uid-db".into())
    );
}

#[test]
fn a_changed_secret_name_moves_the_certificate_and_a_deletion_forgets_it() {
    let mut index = synced(&[&Scert::new("web", "web-tls")]);
    index.apply(Event::Apply(Scert::new("web", "web-tls-2").summary()));
    assert!(index.writing("shop", "web-tls").is_empty());
    assert_eq!(names(&index.writing("shop", "web-tls-2")), ["web"]);
    index.apply(Event::Delete(Scert::new("web", "web-tls-2").summary()));
    assert!(index.is_empty());
    assert!(index.writing("shop", "web-tls-2").is_empty());
}

#[test]
fn a_relist_replaces_the_contents_at_once() {
    let mut index = synced(&[
        &Scert::new("web", "web-tls").failed("PolicyViolation", "bad", 10),
        &Scert::new("gone", "gone-tls"),
    ]);
    index.apply(Event::Init);
    index.apply(Event::InitApply(
        Scert::new("web", "web-tls").issued("0a", 20).summary(),
    ));
    // Until the relist is done, the old contents answer.
    assert_eq!(index.failing(), 1);
    assert!(index.get("shop", "gone").is_some());
    index.apply(Event::InitDone);
    assert_eq!(index.failing(), 0);
    assert_eq!(index.get("shop", "gone"), None);
    assert_eq!(
        index.get("shop", "web").and_then(|c| c.cleared),
        Some(Cleared {
            reason: "PolicyViolation".into(),
            serial: "0a".into()
        }),
        "the failure the relist found cleared is remembered"
    );
}

#[test]
fn the_failure_an_issuance_cleared_is_remembered_while_its_serial_is_current() {
    let mut index = synced(&[&Scert::new("web", "web-tls").failed("PolicyViolation", "bad", 10)]);
    let cleared = || Cleared {
        reason: "PolicyViolation".into(),
        serial: "0a".into(),
    };
    index.apply(Event::Apply(
        Scert::new("web", "web-tls").issued("0a", 20).summary(),
    ));
    assert_eq!(
        index.get("shop", "web").and_then(|c| c.cleared),
        Some(cleared())
    );

    // Another change with the same serial keeps it.
    let mut relabelled = Scert::new("web", "web-tls").issued("0a", 20);
    relabelled.0.metadata.labels = Some([("team".to_owned(), "a".to_owned())].into());
    index.apply(Event::Apply(relabelled.summary()));
    assert_eq!(
        index.get("shop", "web").and_then(|c| c.cleared),
        Some(cleared())
    );

    // A renewal is another serial: that issuance ended nothing.
    index.apply(Event::Apply(
        Scert::new("web", "web-tls").issued("0b", 20).summary(),
    ));
    assert_eq!(index.get("shop", "web").and_then(|c| c.cleared), None);
}

#[test]
fn nothing_is_cleared_by_a_first_issuance_or_across_a_recreation() {
    let mut index = synced(&[&Scert::new("web", "web-tls")]);
    index.apply(Event::Apply(
        Scert::new("web", "web-tls").issued("0a", 20).summary(),
    ));
    assert_eq!(
        index.get("shop", "web").and_then(|c| c.cleared),
        None,
        "first issuance"
    );

    index.apply(Event::Apply(
        Scert::new("web", "web-tls")
            .failed("PolicyViolation", "bad", 30)
            .summary(),
    ));
    index.apply(Event::Apply(
        Scert::new("web", "web-tls")
            .uid("uid-new")
            .issued("0c", 40)
            .summary(),
    ));
    assert_eq!(
        index.get("shop", "web").and_then(|c| c.cleared),
        None,
        "re-created"
    );
}

#[test]
fn a_secret_has_a_verdict_once_a_certificate_writing_it_is_ready_or_failing() {
    let in_flight = Scert::new("web", "web-tls");
    let failing = Scert::new("db", "db-tls").failed("IssuerNotFound", "no CA", 10);
    let issued = Scert::new("api", "api-tls").issued("0a", 10);
    let index = synced(&[&in_flight, &failing, &issued]);
    assert!(!index.has_verdict("shop", "web-tls"), "in flight");
    assert!(index.has_verdict("shop", "db-tls"), "failing");
    assert!(index.has_verdict("shop", "api-tls"), "Ready");
    assert!(
        !index.has_verdict("shop", "app-config"),
        "no certificate writes it"
    );
    assert!(
        !index.has_verdict("elsewhere", "db-tls"),
        "another namespace"
    );
}
