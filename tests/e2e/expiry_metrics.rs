//! The expiry metrics an SRE alerts on, scraped from a running watcher and
//! held against what the API server and the issued Secrets say: a
//! certificate's expiration is its Secret's notAfter, its renewal time is
//! its status', its readiness follows its Ready condition; a CA's
//! expiration and readiness follow its status; a deleted certificate's
//! series go with it.

use std::time::{Duration, UNIX_EPOCH};

use certflow_api::{CertificateAuthority, ServiceCertificate};
use certflow_e2e::eventually;
use certflow_e2e::fixtures::inspect_secret;
use certflow_e2e::services::{Service, Services};
use certflow_e2e::workload::{Workload, secret_name};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::DeleteParams;

const WAIT: Duration = Duration::from_secs(120);

/// The value of the one sample of `metric` whose labels contain every one
/// of `labels` (`key="value"`), if there is one.
fn sample(text: &str, metric: &str, labels: &[String]) -> Option<i64> {
    let prefix = format!("{metric}{{");
    text.lines()
        .filter(|line| line.starts_with(&prefix))
        .filter(|line| labels.iter().all(|label| line.contains(label.as_str())))
        .find_map(|line| line.rsplit(' ').next()?.parse::<i64>().ok())
}

fn watcher(services: &Services) -> &Service {
    services.watcher.as_ref().expect("the watcher runs")
}

#[tokio::test]
async fn expiry_and_readiness_metrics_match_the_secrets_and_statuses() {
    let env = certflow_testenv::shared();
    let namespace = env.create_namespace("expiry").await.expect("namespace");
    let client = env.client().await.expect("client");
    let mut services = Services::start(env, &namespace, 1).await;
    let mut workload = Workload::create_authority(client.clone(), &namespace).await;
    workload.add_valid("web").await;
    workload.add_broken("typo").await;
    let problems = workload.settle(WAIT).await;
    assert!(problems.is_empty(), "{problems:#?}\n{}", services.logs());

    let scerts: Api<ServiceCertificate> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let web = scerts.get("web").await.expect("web");
    let issued = inspect_secret(&secrets.get(&secret_name("web")).await.expect("its Secret"))
        .expect("an issued certificate");
    let not_after = issued
        .not_after
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let renewal = web
        .status
        .as_ref()
        .and_then(|status| status.renewal_time.as_ref())
        .expect("status.renewalTime")
        .0
        .as_second();
    let ca = Api::<CertificateAuthority>::all(client.clone())
        .get(workload.issuer())
        .await
        .expect("the CA");
    let ca_not_after = ca
        .status
        .as_ref()
        .and_then(|status| status.not_after.as_ref())
        .expect("the CA's status.notAfter")
        .0
        .as_second();

    let of = |name: &str| {
        vec![
            format!(r#"namespace="{namespace}""#),
            format!(r#"name="{name}""#),
            format!(r#"issuer="{}""#, workload.issuer()),
        ]
    };
    let with = |mut labels: Vec<String>, extra: String| {
        labels.push(extra);
        labels
    };
    let ca_labels = vec![format!(r#"ca="{}""#, workload.issuer())];
    let expected = [
        (
            "certflow_certificate_expiration_timestamp_seconds",
            of("web"),
            i64::try_from(not_after).expect("fits"),
        ),
        (
            "certflow_certificate_renewal_timestamp_seconds",
            of("web"),
            renewal,
        ),
        (
            "certflow_certificate_ready_status",
            with(of("web"), r#"condition="True""#.to_owned()),
            1,
        ),
        (
            "certflow_certificate_ready_status",
            with(of("typo"), r#"condition="False""#.to_owned()),
            1,
        ),
        (
            "certflow_certificate_ready_status",
            with(of("typo"), r#"condition="True""#.to_owned()),
            0,
        ),
        (
            "certflow_ca_expiration_timestamp_seconds",
            ca_labels.clone(),
            ca_not_after,
        ),
        (
            "certflow_ca_ready_status",
            with(ca_labels.clone(), r#"condition="True""#.to_owned()),
            1,
        ),
    ];
    // The watcher's caches follow the API server by a watch event.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let text = watcher(&services).metrics().await;
        let wrong: Vec<String> = expected
            .iter()
            .filter(|(metric, labels, value)| sample(&text, metric, labels) != Some(*value))
            .map(|(metric, labels, value)| {
                let seen = sample(&text, metric, labels);
                format!("{metric}{labels:?} is {seen:?}, not {value}")
            })
            .collect();
        if wrong.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{wrong:#?}\nthe watcher serves:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        sample(
            &watcher(&services).metrics().await,
            "certflow_certificate_expiration_timestamp_seconds",
            &of("typo")
        )
        .is_none(),
        "a certificate never issued has no expiration"
    );

    scerts
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete web");
    let what = format!("web's series to go\n{}", services.logs());
    eventually(&what, WAIT, || async {
        let text = watcher(&services).metrics().await;
        (!text.contains(&format!(r#"namespace="{namespace}",name="web""#))).then_some(())
    })
    .await;
    services.stop();
}
