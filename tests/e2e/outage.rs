//! NATS or the API server unreachable for 30 s: every service keeps
//! running, reports NOT_SERVING on its gRPC health endpoint (readiness)
//! while its dependency is gone but stays SERVING on `liveness` (so
//! deploy/'s livenessProbe restarts nobody), and afterwards finishes every
//! piece of work, including the work that arrived during the outage.
//!
//! And the API server down for 3 minutes, longer than the signers' retry
//! budget, while 100 new certificates wait to be issued and 20 fall due for
//! renewal: every one is issued or renewed within the self-healing bound of
//! docs/reliability.md once it is back. Each test has its own control
//! plane, since it kills parts of it.

use std::time::{Duration, Instant, SystemTime};

use certflow_e2e::eventually;
use certflow_e2e::fixtures::inspect_secret;
use certflow_e2e::services::Services;
use certflow_e2e::workload::{Workload, secret_name};
use certflow_testenv::TestEnv;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

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

/// Waits out the rest of an outage of `outage` that began at `since`,
/// checking every second that no service has exited and every one is still
/// live.
async fn ride_out(services: &mut Services, since: Instant, outage: Duration) {
    while since.elapsed() < outage {
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
    ride_out(&mut services, since, OUTAGE).await;

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
    ride_out(&mut services, since, OUTAGE).await;

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

/// The long outage: three minutes, far past the signers' retry budget here.
const LONG_OUTAGE: Duration = Duration::from_secs(180);
/// The signers give up on an item after three deliveries, 1 s and 2 s
/// apart; their status write saying so fails too while the API server is
/// down, so the work is lost and only a republication brings it back.
const SHORT_RETRIES: [&str; 2] = ["--bus-max-deliver=3", "--bus-retry-delays=1s,2s"];
const REPUBLISH_AFTER: Duration = Duration::from_secs(5);
/// New certificates waiting to be issued when the API server goes.
const CREATED: usize = 100;
/// Certificates issued before the outage that fall due during it: a
/// one-hour certificate renewed 59 minutes before expiry is due a minute
/// after it was issued.
const RENEWING: usize = 20;
const RENEWING_DURATION: Duration = Duration::from_secs(3_600);
/// How long the watcher's watches may wait before reconnecting after a
/// long outage (5 s at most, plus up to as much again at random); until
/// then it does not see work done, so it cannot give a freed slot of
/// `--namespace-in-flight` to held work.
const WATCH_BACKOFF: Duration = Duration::from_secs(10);
/// The self-healing bound of docs/reliability.md: the next publication of
/// lost work comes at most 8 × `--republish-after` after the fault is over,
/// and the watches reconnect within their backoff. The margin covers the
/// signers issuing 120 certificates, 16 at a time, and this test's polling
/// on 2 busy cores.
const BOUND: Duration =
    Duration::from_secs(8 * REPUBLISH_AFTER.as_secs() + WATCH_BACKOFF.as_secs() + 60);

/// Sends `signal` (`STOP`, `CONT`) to every signer.
fn signal_signers(services: &Services, signal: &str) {
    for signer in &services.signers {
        let pid = signer.process.pid().expect("the signer runs");
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }
}

/// Those of `names` whose Secret in `namespace` holds a certificate
/// issued before `since` (or none), judged by its notAfter: issued at
/// notAfter − [`RENEWING_DURATION`], since notBefore is backdated.
async fn not_renewed_since(
    client: &kube::Client,
    namespace: &str,
    names: &[String],
    since: SystemTime,
) -> Result<Vec<String>, kube::Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut stale = Vec::new();
    for name in names {
        let secret = secrets.get(&secret_name(name)).await?;
        let renewed = inspect_secret(&secret)
            .is_ok_and(|inspection| inspection.not_after - RENEWING_DURATION >= since);
        if !renewed {
            stale.push(name.clone());
        }
    }
    Ok(stale)
}

#[tokio::test]
async fn with_the_api_server_down_for_three_minutes_every_new_and_due_certificate_is_issued_within_the_bound_after()
 {
    let env = TestEnv::start()
        .await
        .expect("a control plane of the test's own");
    let namespace = env
        .create_namespace("long-outage")
        .await
        .expect("namespace");
    let client = env.client().await.expect("client");
    let mut services = Services::start_with_common_args(&env, &namespace, 2, &SHORT_RETRIES).await;
    services.kill_watcher();
    services
        .start_watcher_with_args(&[&format!("--republish-after={}s", REPUBLISH_AFTER.as_secs())]);
    let mut workload = Workload::create_authority(client.clone(), &namespace).await;
    for n in 0..RENEWING {
        workload
            .add_valid_with(&format!("renewing-{n}"), |spec| {
                spec.duration = Some("1h".into());
                spec.renew_before = Some("59m".into());
            })
            .await;
    }
    promises_hold(&workload, &services).await;
    let renewing = workload.valid().to_vec();

    // The new certificates must still be waiting when the API server
    // goes: the signers are stopped (SIGSTOP) until it has, so the watcher
    // publishes the first of them (`--namespace-in-flight`) and holds the
    // rest, and the signers wake to work they cannot finish.
    signal_signers(&services, "STOP");
    for n in 0..CREATED {
        workload.add_valid(&format!("new-{n}")).await;
    }
    let watcher = services.watcher.as_ref().expect("the watcher runs");
    eventually(
        &format!("the watcher to see all {CREATED} new certificates"),
        WAIT,
        || async {
            let seen = watcher
                .metric_sum("certflow_watcher_decisions_pending")
                .await
                + watcher.metric_sum("certflow_watcher_decisions_held").await;
            (seen >= CREATED as f64).then_some(())
        },
    )
    .await;
    env.kill_apiserver();
    let since = Instant::now();
    let outage_began = SystemTime::now();
    signal_signers(&services, "CONT");
    ride_out(&mut services, since, LONG_OUTAGE).await;
    env.restart_apiserver()
        .await
        .expect("kube-apiserver restarts");
    let back = Instant::now();

    let deadline = back + BOUND;
    loop {
        let mut problems = workload.problems().await;
        match not_renewed_since(&client, &namespace, &renewing, outage_began).await {
            Ok(stale) => problems.extend(
                stale
                    .into_iter()
                    .map(|name| format!("{name}: not renewed since the outage began")),
            ),
            Err(error) => problems.push(format!("the API server did not answer: {error}")),
        }
        if problems.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} promises broken {BOUND:?} after the API server came back: {problems:#?}\n{}",
            problems.len(),
            services.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "{CREATED} issued and {RENEWING} renewed {:.1} s after the API server came back (bound {BOUND:?})",
        back.elapsed().as_secs_f64()
    );
    let republished = services
        .watcher
        .as_ref()
        .expect("the watcher runs")
        .metric_sum("certflow_watcher_republished_total")
        .await;
    assert!(
        republished >= 1.0,
        "the work lost during the outage came back by republication\n{}",
        services.logs()
    );
    assert!(services.exited().is_empty(), "{}", services.logs());
    services.stop();
}
