//! The self-healing promise: work lost on the bus after the watcher
//! published it is published again, so the certificate is issued anyway.
//! When a work item is lost nothing the watcher watches changes; only time
//! brings the work back (`--republish-after`, 3 s here). No signer runs
//! until the loss is over, so the item is certainly still queued when it
//! goes, and nothing but a republication can issue the certificate. When
//! the streams themselves are lost, no service creates them again (their
//! NATS users may not): the watcher reports the missing work stream and
//! keeps its work until the operator's setup step (`certflow-watcher
//! setup-bus`, run here as the real binary) has created them.

use std::time::Duration;

use async_nats::jetstream;
use certflow_api::ServiceCertificate;
use certflow_bus::Topology;
use certflow_e2e::eventually;
use certflow_e2e::services::Services;
use certflow_e2e::workload::Workload;
use certflow_testenv::TestEnv;
use kube::Api;
use kube::api::DeleteParams;

const REPUBLISH_AFTER: &str = "3s";
const WAIT: Duration = Duration::from_secs(120);

const REPUBLISHED: &str = "certflow_watcher_republished_total";
const PENDING: &str = "certflow_watcher_decisions_pending";
const STREAM_MISSING: &str = "certflow_watcher_work_stream_missing_total";

/// One test's namespace, CA and services (no signer yet), and a JetStream
/// client to lose their work with.
struct Fixture {
    services: Services,
    workload: Workload,
    scerts: Api<ServiceCertificate>,
    js: jetstream::Context,
    topology: Topology,
}

impl Fixture {
    async fn start(env: &TestEnv, prefix: &str) -> Self {
        let namespace = env.create_namespace(prefix).await.expect("namespace");
        let mut services = Services::launch(env, &namespace, 0, &[], &[]).await;
        services.kill_watcher();
        services.start_watcher_with_args(&[&format!("--republish-after={REPUBLISH_AFTER}")]);
        let client = env.client().await.expect("client");
        let scerts = Api::namespaced(client.clone(), &namespace);
        let workload = Workload::create_authority(client, &namespace).await;
        let nats = async_nats::connect(env.nats_url())
            .await
            .expect("connect to NATS");
        // Only certflow-bus knows stream names; the prefix is the test's.
        let topology = Topology::new(&services.bus_prefix).expect("the services' bus prefix");
        Self {
            services,
            workload,
            scerts,
            js: jetstream::new(nats),
            topology,
        }
    }

    /// Work items in the work stream; `None` while it does not exist (or
    /// NATS does not answer).
    async fn queued(&self) -> Option<u64> {
        let stream = self.js.get_stream(self.topology.work_stream()).await.ok()?;
        Some(stream.cached_info().state.messages)
    }

    /// Waits until the work stream holds at least one work item.
    async fn await_queued(&self, what: &str) {
        let what = format!("{what}\n{}", self.services.logs());
        eventually(&what, WAIT, || async {
            self.queued().await.filter(|n| *n >= 1).map(|_| ())
        })
        .await;
    }

    /// Removes every work item from the work stream; returns how many.
    async fn purge(&self) -> u64 {
        let stream = self
            .js
            .get_stream(self.topology.work_stream())
            .await
            .expect("the work stream exists");
        stream.purge().await.expect("purge the work stream").purged
    }

    async fn watcher_metric(&self, metric: &str) -> f64 {
        match &self.services.watcher {
            Some(watcher) => watcher.metric_sum(metric).await,
            None => panic!("the watcher runs"),
        }
    }

    /// Waits until the watcher's `metric` is `value`.
    async fn await_watcher_metric(&self, metric: &str, value: f64) {
        let what = format!("{metric} to be {value}\n{}", self.services.logs());
        eventually(&what, WAIT, || async {
            let found = self.watcher_metric(metric).await;
            (found == value).then_some(())
        })
        .await;
    }

    /// Waits until the watcher's `metric` is at least `value`.
    async fn await_watcher_metric_at_least(&self, metric: &str, value: f64) {
        let what = format!("{metric} to reach {value}\n{}", self.services.logs());
        eventually(&what, WAIT, || async {
            let found = self.watcher_metric(metric).await;
            (found >= value).then_some(())
        })
        .await;
    }

    /// Waits until every certificate of the workload is issued.
    async fn issued(&self) {
        let problems = self.workload.settle(WAIT).await;
        assert!(
            problems.is_empty(),
            "not issued after {WAIT:?}: {problems:#?}\n{}",
            self.services.logs()
        );
    }
}

#[tokio::test]
async fn a_work_item_purged_from_the_stream_is_published_again_and_the_certificate_issued() {
    let mut fx = Fixture::start(certflow_testenv::shared(), "purged").await;
    fx.workload.add_valid("purged").await;
    fx.await_queued("the watcher to publish the work item")
        .await;

    let purged = fx.purge().await;
    assert!(purged >= 1, "the purge removed the work item");
    fx.services.add_signer();

    fx.issued().await;
    assert!(
        fx.watcher_metric(REPUBLISHED).await >= 1.0,
        "the watcher counted its republication\n{}",
        fx.services.logs()
    );
    // The work is done: the watcher keeps nothing about the object.
    fx.await_watcher_metric(PENDING, 0.0).await;
    fx.services.stop();
}

#[tokio::test]
async fn nats_back_without_its_storage_is_reported_and_after_the_setup_step_the_lost_work_is_issued()
 {
    let env = TestEnv::start()
        .await
        .expect("a control plane of the test's own");
    let mut fx = Fixture::start(&env, "wiped").await;
    fx.workload.add_valid("wiped").await;
    fx.await_queued("the watcher to publish the work item")
        .await;

    env.restart_nats_with_empty_storage()
        .await
        .expect("nats-server restarts without its store");
    // The watcher republishes, finds the work stream missing, says so and
    // keeps the work; it creates no stream.
    fx.await_watcher_metric_at_least(STREAM_MISSING, 1.0).await;
    let watcher_log = fx
        .services
        .watcher
        .as_ref()
        .map(|watcher| std::fs::read_to_string(watcher.process.log_path()).unwrap_or_default())
        .unwrap_or_default();
    assert!(
        watcher_log.contains("the work stream is missing"),
        "the watcher warns\n{}",
        fx.services.logs()
    );
    assert_eq!(
        fx.queued().await,
        None,
        "no service created the work stream"
    );
    // A signer started now waits for its consumer, not ready.
    fx.services.add_signer();
    let signer = &fx.services.signers[0];
    let what = format!(
        "the signer to log that its stream is missing\n{}",
        fx.services.logs()
    );
    eventually(&what, WAIT, || async {
        let log = std::fs::read_to_string(signer.process.log_path()).unwrap_or_default();
        log.contains("certflow-watcher setup-bus").then_some(())
    })
    .await;
    assert_eq!(
        signer.serving().await,
        Some(false),
        "the waiting signer is not ready"
    );

    // The operator's setup step; no service restarts.
    let printed = fx.services.setup_bus().await;
    assert!(
        printed.contains(&format!("stream {}: created", fx.topology.work_stream())),
        "setup-bus says what it created: {printed}"
    );

    fx.issued().await;
    assert!(
        fx.watcher_metric(REPUBLISHED).await >= 1.0,
        "the watcher counted its republication\n{}",
        fx.services.logs()
    );
    assert!(fx.services.exited().is_empty(), "{}", fx.services.logs());
    fx.await_watcher_metric(PENDING, 0.0).await;
    fx.services.stop();
}

#[tokio::test]
async fn a_service_certificate_deleted_before_its_work_was_done_is_forgotten_by_the_watcher() {
    let mut fx = Fixture::start(certflow_testenv::shared(), "forgotten").await;
    fx.workload.add_valid("forgotten").await;
    fx.await_queued("the watcher to publish the work item")
        .await;
    fx.await_watcher_metric(PENDING, 1.0).await;

    fx.scerts
        .delete("forgotten", &DeleteParams::default())
        .await
        .expect("delete the ServiceCertificate");

    fx.await_watcher_metric(PENDING, 0.0).await;
    fx.services.stop();
}
