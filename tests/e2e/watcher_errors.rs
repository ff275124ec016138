//! The watcher's error policy against the real bus, when the work stream
//! is not what certflow set up: an operator replaced it by one of the same
//! name that captures no work item (memory storage, another subject). The
//! watcher creates no stream (its NATS user may not): it finds no stream
//! for its work item, counts it in `certflow_watcher_work_stream_missing_total`,
//! and retries with backoff (a transient error, never a stall), keeping the
//! work of every ServiceCertificate but one deleted meanwhile, until the
//! operator removes the impostor and runs the setup step
//! (`certflow-watcher setup-bus`); then the rest is issued. An error no
//! retry can fix (the bus refusing an item outright) cannot be provoked
//! against a real nats-server any more; `crates/watcher/src/retry.rs`'s
//! tests keep that policy.

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

/// How long the test watches for retries that must come: a third of the
/// watcher's `--failure-retry` (30 s, set by `Services`), so they are the
/// transient backoff's (after 1–2 s, then 2–4 s, ...), not the retry of a
/// stalled object.
const RETRY_WINDOW: Duration = Duration::from_secs(10);

const STALLED: &str = "certflow_watcher_decisions_stalled";
const PENDING: &str = "certflow_watcher_decisions_pending";
const ERRORS: &str = "certflow_watcher_reconcile_errors_total";
const STREAM_MISSING: &str = "certflow_watcher_work_stream_missing_total";

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

/// Waits until `service` has found the streams: each service registers its
/// metrics only after `certflow_bus::open_when_created` returned.
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
async fn a_work_stream_that_captures_no_work_is_reported_and_retried_with_backoff_until_set_up_again()
 {
    let env = certflow_testenv::shared();
    let namespace = env.create_namespace("stalled").await.expect("namespace");
    let mut services = Services::launch(env, &namespace, 0, &[], &[]).await;
    await_streams_ensured(&services, watcher(&services), "certflow_watcher_").await;
    let reporter = services.reporters.first().expect("a reporter");
    await_streams_ensured(&services, reporter, "certflow_reporter_").await;

    // The operator's mistake: the work stream replaced by one that does not
    // capture work items.
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

    // Both wait, each counted as finding the work stream missing, retried
    // with backoff as the transient error it is; neither is stalled.
    let what = format!(
        "two publications finding the stream missing\n{}",
        services.logs()
    );
    eventually(&what, WAIT, || async {
        (watcher(&services).metric_sum(STREAM_MISSING).await >= 2.0).then_some(())
    })
    .await;
    await_metric(&services, watcher(&services), PENDING, 2.0).await;
    assert!(
        errors(&services, true).await >= 2.0,
        "the errors are counted as transient\n{}",
        services.logs()
    );
    assert_eq!(errors(&services, false).await, 0.0, "{}", services.logs());
    assert_eq!(watcher(&services).metric_sum(STALLED).await, 0.0);

    // They keep being retried, well before --failure-retry.
    let missing = watcher(&services).metric_sum(STREAM_MISSING).await;
    tokio::time::sleep(RETRY_WINDOW).await;
    let later = watcher(&services).metric_sum(STREAM_MISSING).await;
    assert!(
        later >= missing + 2.0,
        "both were retried within {RETRY_WINDOW:?}: {missing} then {later}\n{}",
        services.logs()
    );

    // A waiting ServiceCertificate that is deleted leaves nothing behind.
    scerts
        .delete("doomed", &DeleteParams::default())
        .await
        .expect("delete ServiceCertificate doomed");
    await_metric(&services, watcher(&services), PENDING, 1.0).await;

    // The operator removes the impostor and runs the setup step; the
    // watcher publishes at its next retry, without a restart.
    js.delete_stream(&work_stream)
        .await
        .expect("delete the impostor stream");
    services.setup_bus().await;
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
