use std::time::{Duration, SystemTime};

use certflow_api::condition::READY;
use certflow_api::{
    Condition, ConditionStatus, ServiceCertificate, ServiceCertificateSpec,
    ServiceCertificateStatus,
};
use certflow_proto::v1::Trigger;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

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
