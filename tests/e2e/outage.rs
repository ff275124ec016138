//! NATS or the API server unreachable for 30 s: every service keeps
//! running, reports NOT_SERVING on its gRPC health endpoint (readiness)
//! while its dependency is gone but stays SERVING on `liveness` (so
//! deploy/'s livenessProbe restarts nobody), and afterwards finishes every
//! piece of work, including the work that arrived during the outage. Each
//! test has its own control plane, since it kills parts of it.

use std::time::{Duration, Instant};

use certflow_e2e::services::Services;
use certflow_e2e::workload::Workload;
use certflow_testenv::TestEnv;

const OUTAGE: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(120);

/// Waits until every service's health says `serving`.
async fn all_serving(services: &Services, serving: bool, what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut answers = Vec::new();
        for service in services.all() {
            answers.push((service.process.name(), service.serving().await));
        }
        if answers.iter().all(|(_, answer)| *answer == Some(serving)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}: {answers:?}\n{}",
            services.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every promise of `workload` holds.
async fn promises_hold(workload: &Workload, services: &Services) {
    let problems = workload.settle(WAIT).await;
    assert!(
        problems.is_empty(),
        "promises broken after {WAIT:?}: {problems:#?}\n{}",
        services.logs()
    );
}

/// Waits out the rest of the outage that began at `since`, checking every
/// second that no service has exited and every one is still live.
async fn ride_out(services: &mut Services, since: Instant) {
    while since.elapsed() < OUTAGE {
        let exited = services.exited();
        assert!(
            exited.is_empty(),
            "{exited:?} exited during the outage\n{}",
            services.logs()
        );
        let mut not_live = Vec::new();
        for service in services.all() {
            let live = service.live().await;
            if live != Some(true) {
                not_live.push((service.process.name(), live));
            }
        }
        assert!(
            not_live.is_empty(),
            "liveness failed during the outage: {not_live:?}\n{}",
            services.logs()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn start(prefix: &str) -> (TestEnv, Services, Workload) {
    let env = TestEnv::start()
        .await
        .expect("a control plane of the test's own");
    let namespace = env.create_namespace(prefix).await.expect("namespace");
    let client = env.client().await.expect("client");
    let services = Services::start(&env, &namespace, 1).await;
    let mut workload = Workload::create_authority(client, &namespace).await;
    workload.add_valid("before").await;
    workload.add_broken("broken-before").await;
    promises_hold(&workload, &services).await;
    all_serving(&services, true, "every service to be SERVING").await;
    (env, services, workload)
}

#[tokio::test]
async fn with_nats_down_for_thirty_seconds_services_report_not_serving_and_then_finish_every_item()
{
    let (env, mut services, mut workload) = start("nats-outage").await;

    env.kill_nats();
    let since = Instant::now();
    all_serving(
        &services,
        false,
        "every service to report NOT_SERVING without NATS",
    )
    .await;
    // Work arrives while the bus is gone: the API server takes it, the
    // watcher cannot publish it yet.
    workload.add_valid("during").await;
    workload.add_broken("broken-during").await;
    ride_out(&mut services, since).await;

    env.restart_nats().await.expect("nats-server restarts");
    all_serving(&services, true, "every service to be SERVING again").await;
    workload.add_valid("after").await;
    promises_hold(&workload, &services).await;
    assert!(services.exited().is_empty(), "{}", services.logs());
    services.stop();
}

#[tokio::test]
async fn with_the_api_server_down_for_thirty_seconds_services_report_not_serving_and_then_finish_every_item()
 {
    let (env, mut services, mut workload) = start("api-outage").await;

    // Work in flight when the API server goes: created, maybe published,
    // maybe half-issued.
    for n in 0..5 {
        workload.add_valid(&format!("in-flight-{n}")).await;
    }
    workload.add_broken("broken-in-flight").await;
    env.kill_apiserver();
    let since = Instant::now();
    all_serving(
        &services,
        false,
        "every service to report NOT_SERVING without the API server",
    )
    .await;
    ride_out(&mut services, since).await;

    env.restart_apiserver()
        .await
        .expect("kube-apiserver restarts");
    all_serving(&services, true, "every service to be SERVING again").await;
    workload.add_valid("after").await;
    workload.add_broken("broken-after").await;
    promises_hold(&workload, &services).await;
    assert!(services.exited().is_empty(), "{}", services.logs());
    services.stop();
}
