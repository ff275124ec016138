//! The metrics an SRE alerts on about certificates and CAs, computed on
//! each scrape from the watcher's caches of ServiceCertificates and
//! CertificateAuthorities: their status, which the signer writes from the
//! certificate it issued or the CA key pair it loaded.
//!
//! Nothing is kept between scrapes, so a deleted object's series end with it,
//! and the number of series is bounded by the objects: five per
//! ServiceCertificate (expiration, renewal, and ready for each of `True`,
//! `False`, `Unknown`) and four per CertificateAuthority. The names follow
//! cert-manager's (`certmanager_certificate_expiration_timestamp_seconds`,
//! …) so that its dashboards and alerts carry over with a prefix change.

use std::fmt;

use certflow_api::{CertificateAuthority, Condition, ConditionStatus, ServiceCertificate};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt as _;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

const STATUSES: [ConditionStatus; 3] = [
    ConditionStatus::True,
    ConditionStatus::False,
    ConditionStatus::Unknown,
];

/// Computes `certflow_certificate_*` and `certflow_ca_*` from the caches on
/// each scrape; register it with
/// [`certflow_runtime::Metrics::register_object_collector`].
pub struct ExpiryCollector {
    certificates: Store<ServiceCertificate>,
    authorities: Store<CertificateAuthority>,
}

impl ExpiryCollector {
    pub fn new(
        certificates: Store<ServiceCertificate>,
        authorities: Store<CertificateAuthority>,
    ) -> Self {
        Self {
            certificates,
            authorities,
        }
    }
}

impl fmt::Debug for ExpiryCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExpiryCollector").finish_non_exhaustive()
    }
}

/// One gauge family: `values` gives each object's labels and value, if it
/// has one.
fn gauges<L, I>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    values: I,
) -> fmt::Result
where
    L: prometheus_client::encoding::EncodeLabelSet,
    I: IntoIterator<Item = (L, i64)>,
{
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in values {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn seconds(time: Option<&Time>) -> Option<i64> {
    time.map(|time| time.0.as_second())
}

/// 1 for the Ready condition's status (`Unknown` while there is none), 0 for
/// the other two: one series per possible status, as cert-manager does.
fn ready_series(ready: Option<&Condition>) -> impl Iterator<Item = (&'static str, i64)> {
    let current = ready.map_or(ConditionStatus::Unknown, |condition| condition.status);
    STATUSES
        .into_iter()
        .map(move |status| (status.as_str(), i64::from(status == current)))
}

impl Collector for ExpiryCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let mut certificates = self.certificates.state();
        certificates.sort_by_key(|scert| (scert.namespace(), scert.name_any()));
        let labels = |scert: &ServiceCertificate| {
            [
                ("namespace", scert.namespace().unwrap_or_default()),
                ("name", scert.name_any()),
                ("issuer", scert.issuer_name().unwrap_or_default().to_owned()),
            ]
        };
        gauges(
            &mut encoder,
            "certificate_expiration_timestamp_seconds",
            "When the ServiceCertificate's current certificate expires (status.notAfter), in Unix seconds.",
            certificates.iter().filter_map(|scert| {
                let status = scert.status.as_ref()?;
                Some((labels(scert), seconds(status.not_after.as_ref())?))
            }),
        )?;
        gauges(
            &mut encoder,
            "certificate_renewal_timestamp_seconds",
            "When certflow renews the ServiceCertificate's certificate (status.renewalTime), in Unix seconds.",
            certificates.iter().filter_map(|scert| {
                let status = scert.status.as_ref()?;
                Some((labels(scert), seconds(status.renewal_time.as_ref())?))
            }),
        )?;
        gauges(
            &mut encoder,
            "certificate_ready_status",
            "1 for the status of the ServiceCertificate's Ready condition (Unknown before certflow set one), 0 for the others.",
            certificates.iter().flat_map(|scert| {
                let [namespace, name, issuer] = labels(scert);
                ready_series(scert.ready_condition()).map(move |(status, value)| {
                    let labels = [
                        namespace.clone(),
                        name.clone(),
                        issuer.clone(),
                        ("condition", status.to_owned()),
                    ];
                    (labels, value)
                })
            }),
        )?;

        let mut authorities = self.authorities.state();
        authorities.sort_by_key(|ca| ca.name_any());
        gauges(
            &mut encoder,
            "ca_expiration_timestamp_seconds",
            "When the CertificateAuthority's CA certificate expires (status.notAfter), in Unix seconds.",
            authorities.iter().filter_map(|ca| {
                let status = ca.status.as_ref()?;
                Some(([("ca", ca.name_any())], seconds(status.not_after.as_ref())?))
            }),
        )?;
        gauges(
            &mut encoder,
            "ca_ready_status",
            "1 for the status of the CertificateAuthority's Ready condition (Unknown before certflow set one), 0 for the others.",
            authorities.iter().flat_map(|ca| {
                let name = ca.name_any();
                ready_series(ca.ready_condition()).map(move |(status, value)| {
                    (
                        [("ca", name.clone()), ("condition", status.to_owned())],
                        value,
                    )
                })
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use certflow_api::{
        CertificateAuthorityStatus, Condition, ServiceCertificateSpec, ServiceCertificateStatus,
    };
    use certflow_runtime::Metrics;
    use k8s_openapi::jiff::Timestamp;
    use kube::api::ObjectMeta;
    use kube::runtime::{reflector, watcher};

    use super::*;

    fn time(second: i64) -> Time {
        Time(Timestamp::from_second(second).expect("a valid timestamp"))
    }

    fn ready(status: ConditionStatus) -> Condition {
        Condition {
            type_: certflow_api::condition::READY.to_owned(),
            status,
            ..Condition::default()
        }
    }

    fn scert(name: &str, status: Option<ServiceCertificateStatus>) -> ServiceCertificate {
        ServiceCertificate {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some("shop".to_owned()),
                ..ObjectMeta::default()
            },
            spec: ServiceCertificateSpec {
                secret_name: format!("{name}-tls"),
                ..ServiceCertificateSpec::default()
            },
            status,
        }
    }

    fn scrape(
        certificates: Vec<ServiceCertificate>,
        authorities: Vec<CertificateAuthority>,
    ) -> String {
        let (certificate_store, mut certificate_writer) = reflector::store();
        for scert in certificates {
            certificate_writer.apply_watcher_event(&watcher::Event::Apply(scert));
        }
        let (authority_store, mut authority_writer) = reflector::store();
        for ca in authorities {
            authority_writer.apply_watcher_event(&watcher::Event::Apply(ca));
        }
        let metrics = Metrics::new("certflow_watcher");
        metrics.register_object_collector(ExpiryCollector::new(certificate_store, authority_store));
        metrics.encode().expect("the metrics encode")
    }

    #[test]
    fn an_issued_certificate_exports_its_expiry_renewal_and_readiness() {
        let issued = ServiceCertificateStatus {
            conditions: vec![ready(ConditionStatus::True)],
            not_after: Some(time(1_800_000_000)),
            renewal_time: Some(time(1_790_000_000)),
            ..ServiceCertificateStatus::default()
        };
        let text = scrape(vec![scert("web", Some(issued))], Vec::new());
        let labels = r#"namespace="shop",name="web",issuer="""#;
        for line in [
            format!("certflow_certificate_expiration_timestamp_seconds{{{labels}}} 1800000000"),
            format!("certflow_certificate_renewal_timestamp_seconds{{{labels}}} 1790000000"),
            format!(r#"certflow_certificate_ready_status{{{labels},condition="True"}} 1"#),
            format!(r#"certflow_certificate_ready_status{{{labels},condition="False"}} 0"#),
            format!(r#"certflow_certificate_ready_status{{{labels},condition="Unknown"}} 0"#),
        ] {
            assert!(text.contains(&line), "{line} missing from:\n{text}");
        }
    }

    #[test]
    fn a_certificate_not_yet_issued_is_unknown_and_has_no_expiry() {
        let text = scrape(vec![scert("new", None)], Vec::new());
        assert!(
            text.contains(
                r#"certflow_certificate_ready_status{namespace="shop",name="new",issuer="",condition="Unknown"} 1"#
            ),
            "{text}"
        );
        assert!(
            !text.contains(r#"certflow_certificate_expiration_timestamp_seconds{"#),
            "{text}"
        );
    }

    #[test]
    fn a_ca_exports_its_expiry_and_readiness() {
        let ca = CertificateAuthority {
            metadata: ObjectMeta {
                name: Some("internal".to_owned()),
                ..ObjectMeta::default()
            },
            spec: certflow_api::CertificateAuthoritySpec::default(),
            status: Some(CertificateAuthorityStatus {
                conditions: vec![ready(ConditionStatus::False)],
                not_after: Some(time(1_900_000_000)),
                ..CertificateAuthorityStatus::default()
            }),
        };
        let text = scrape(Vec::new(), vec![ca]);
        for line in [
            r#"certflow_ca_expiration_timestamp_seconds{ca="internal"} 1900000000"#,
            r#"certflow_ca_ready_status{ca="internal",condition="False"} 1"#,
            r#"certflow_ca_ready_status{ca="internal",condition="True"} 0"#,
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }

    #[test]
    fn a_deleted_certificate_leaves_no_series() {
        let (store, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Apply(scert("gone", None)));
        writer.apply_watcher_event(&watcher::Event::Delete(scert("gone", None)));
        let (authorities, _writer) = reflector::store();
        let metrics = Metrics::new("certflow_watcher");
        metrics.register_object_collector(ExpiryCollector::new(store, authorities));
        let text = metrics.encode().expect("the metrics encode");
        assert!(!text.contains(r#"name="gone""#), "{text}");
    }
}
