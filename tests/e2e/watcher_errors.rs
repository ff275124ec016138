//! The watcher's error policy against the real bus. An error no retry can
//! fix is provoked for real: the work stream is replaced by one of the same
//! name that certflow cannot update (memory storage, another subject), so
//! the watcher finds no stream for its work item and cannot create it again
//! (`BusError::Stream`, which the bus classifies as permanent). The watcher
//! must then count its ServiceCertificates as stalled and the errors as
//! permanent, try again only after `--failure-retry` (30 s in these tests)
//! instead of looping, forget a stalled ServiceCertificate that is deleted,
//! and issue the rest once an operator removes the cause.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use certflow_api::{ServiceCertificate, ServiceCertificateSpec};
use certflow_bus::Topology;
use certflow_e2e::eventually;
use certflow_e2e::services::{Service, Services};
use certflow_e2e::workload::Workload;
use kube::Api;
use kube::api::{DeleteParams, PostParams};

const WAIT: Duration = Duration::from_secs(120);

/// How long the test watches for a retry that must not come: a third of
/// the watcher's `--failure-retry` (30 s, set by `Services`). A transient
/// error would have been retried twice in this time (after 1–2 s, then
/// 2–4 s).
const NO_RETRY_WINDOW: Duration = Duration::from_secs(10);

const STALLED: &str = "certflow_watcher_decisions_stalled";
const PENDING: &str = "certflow_watcher_decisions_pending";
const ERRORS: &str = "certflow_watcher_reconcile_errors_total";

fn watcher(services: &Services) -> &Service {
    services.watcher.as_ref().expect("the watcher runs")
}

/// The reconcile errors the watcher counted with `transient="<transient>"`.
async fn errors(services: &Services, transient: bool) -> f64 {
    let label = format!("transient=\"{transient}\"");
    watcher(services)
        .metrics()
        .await
        .lines()
        .filter(|line| line.starts_with(ERRORS) && line.contains(&label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn await_metric(services: &Services, service: &Service, metric: &str, value: f64) {
    let what = format!("{metric} to be {value}\n{}", services.logs());
    eventually(&what, WAIT, || async {
        (service.metric_sum(metric).await == value).then_some(())
    })
    .await;
}

/// Waits until `service` has created the streams: each service registers
/// its metrics only after `certflow_bus::ensure` returned.
async fn await_streams_ensured(services: &Services, service: &Service, metric_prefix: &str) {
    let what = format!("{metric_prefix} metrics\n{}", services.logs());
    eventually(&what, WAIT, || async {
        service
            .metrics()
            .await
            .contains(metric_prefix)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_work_stream_it_cannot_restore_stalls_certificates_without_a_retry_loop_until_fixed() {
    let env = certflow_testenv::shared();
    let namespace = env.create_namespace("stalled").await.expect("namespace");
    let mut services = Services::launch(env, &namespace, 0, &[], &[]).await;
    await_streams_ensured(&services, watcher(&services), "certflow_watcher_").await;
    let reporter = services.reporters.first().expect("a reporter");
    await_streams_ensured(&services, reporter, "certflow_reporter_").await;

    // The operator's mistake: the work stream replaced by one that does not
    // capture work items and whose storage certflow may not change.
    let js = jetstream::new(
        async_nats::connect(env.nats_url())
            .await
            .expect("connect to NATS"),
    );
    let topology = Topology::new(&services.bus_prefix).expect("the services' bus prefix");
    let work_stream = topology.work_stream();
    js.delete_stream(&work_stream)
        .await
        .expect("delete the work stream");
    js.create_stream(stream::Config {
        name: work_stream.clone(),
        subjects: vec![format!("{work_stream}.not-work")],
        storage: stream::StorageType::Memory,
        ..Default::default()
    })
    .await
    .expect("create the stream that takes the work stream's name");

    let client = env.client().await.expect("client");
    let mut workload = Workload::create_authority(client.clone(), &namespace).await;
    workload.add_valid("stuck").await;
    let scerts: Api<ServiceCertificate> = Api::namespaced(client, &namespace);
    let doomed = ServiceCertificate::new(
        "doomed",
        ServiceCertificateSpec {
            secret_name: "doomed-tls".to_owned(),
            dns_names: vec![format!("doomed.{namespace}.svc")],
            ..ServiceCertificateSpec::default()
        },
    );
    scerts
        .create(&PostParams::default(), &doomed)
        .await
        .expect("create ServiceCertificate doomed");

    // Both are stalled, each by a permanent error.
    await_metric(&services, watcher(&services), STALLED, 2.0).await;
    let permanent = errors(&services, false).await;
    let transient = errors(&services, true).await;
    assert!(
        permanent >= 2.0,
        "two permanent errors, one per ServiceCertificate, were counted: {permanent}\n{}",
        services.logs()
    );

    // No retry loop. Nothing can be awaited here: the promise is that
    // nothing happens for a while.
    tokio::time::sleep(NO_RETRY_WINDOW).await;
    assert_eq!(
        (
            errors(&services, false).await,
            errors(&services, true).await
        ),
        (permanent, transient),
        "the watcher retried a permanent error within {NO_RETRY_WINDOW:?}\n{}",
        services.logs()
    );

    // A stalled ServiceCertificate that is deleted leaves nothing behind.
    scerts
        .delete("doomed", &DeleteParams::default())
        .await
        .expect("delete ServiceCertificate doomed");
    await_metric(&services, watcher(&services), STALLED, 1.0).await;
    await_metric(&services, watcher(&services), PENDING, 1.0).await;

    // The operator removes the impostor; the signer creates the streams
    // again when it starts, and the watcher publishes at its next retry.
    js.delete_stream(&work_stream)
        .await
        .expect("delete the impostor stream");
    services.add_signer();
    let problems = workload.settle(WAIT).await;
    assert!(
        problems.is_empty(),
        "not issued after {WAIT:?}: {problems:#?}\n{}",
        services.logs()
    );
    await_metric(&services, watcher(&services), STALLED, 0.0).await;
    await_metric(&services, watcher(&services), PENDING, 0.0).await;
    assert!(services.exited().is_empty(), "{}", services.logs());
    services.stop();
}
