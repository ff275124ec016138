//! certflow on a three-server NATS JetStream cluster, as deploy/ runs it
//! (`--bus-replicas=3`), losing one server in the middle of a burst of
//! valid and broken ServiceCertificates: the server leading the work stream
//! is SIGKILLed, or killed and started again without its store. Either way
//! every valid one is issued exactly once (one certificate serial in the
//! outcome stream, the one in its Secret, and one Secret write counted),
//! every broken one is reported as a Warning on its Pod, no work is left
//! behind, and every stream ends stored on all three servers again.
//!
//! The control plane is the shared one; each test runs its own cluster and
//! services, so it can take a server away without touching the others.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use certflow_api::ServiceCertificate;
use certflow_bus::Topology;
use certflow_bus::delivery::decode_outcome_payload;
use certflow_bus::proto::outcome;
use certflow_bus::settings::{REPORTER_CONSUMER, SIGNER_CONSUMER};
use certflow_e2e::eventually;
use certflow_e2e::fixtures::inspect_secret;
use certflow_e2e::services::Services;
use certflow_e2e::workload::Workload;
use certflow_testenv::NatsCluster;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};

/// ServiceCertificates per test; every fourth is broken.
const BURST: usize = 32;
/// How many must be issued before the server goes, so the loss lands while
/// work is moving on the bus.
const ISSUED_BEFORE_THE_LOSS: usize = 4;
/// Generous for a 2-core machine: a Raft election takes seconds, and a
/// signer's retry after a failed write waits 1 s, 5 s, 15 s, ...
const WAIT: Duration = Duration::from_secs(120);

struct Fixture {
    cluster: NatsCluster,
    services: Services,
    workload: Workload,
    topology: Topology,
    js: jetstream::Context,
    client: kube::Client,
    namespace: String,
}

impl Fixture {
    /// A cluster of three, and a watcher, two signers and a reporter storing
    /// every stream on all three servers.
    async fn start(prefix: &str) -> Self {
        let env = certflow_testenv::shared();
        let cluster = NatsCluster::start_beside(env)
            .await
            .unwrap_or_else(|err| panic!("the NATS cluster starts: {err}"));
        let namespace = env.create_namespace(prefix).await.expect("namespace");
        let client = env.client().await.expect("client");
        let services = Services::launch_on(
            env,
            &cluster.client_urls(),
            &namespace,
            2,
            &[],
            &["--bus-replicas=3"],
        )
        .await;
        let topology = Topology::new(&services.bus_prefix).expect("the services' bus prefix");
        let nats = async_nats::connect(cluster.servers())
            .await
            .unwrap_or_else(|err| panic!("connect to the cluster: {err}"));
        let workload = Workload::create_authority(client.clone(), &namespace).await;
        Self {
            cluster,
            services,
            workload,
            topology,
            js: jetstream::new(nats),
            client,
            namespace,
        }
    }

    /// The node leading the work stream, once the services have created it.
    async fn work_stream_leader(&self) -> usize {
        let stream = self.topology.work_stream();
        eventually("the work stream to have a leader", WAIT, || async {
            let info = self
                .js
                .get_stream(&stream)
                .await
                .ok()?
                .info()
                .await
                .ok()?
                .clone();
            self.cluster.node_named(&info.cluster?.leader?)
        })
        .await
    }

    async fn ready_count(&self) -> usize {
        let scerts: Api<ServiceCertificate> = Api::namespaced(self.client.clone(), &self.namespace);
        scerts.list(&ListParams::default()).await.map_or(0, |list| {
            list.items
                .iter()
                .filter(|s| s.ready_condition().is_some_and(|c| c.is_true()))
                .count()
        })
    }

    async fn wait_until_issued(&self, at_least: usize) {
        eventually(
            &format!("{at_least} certificates to be issued"),
            WAIT,
            || async { (self.ready_count().await >= at_least).then_some(()) },
        )
        .await;
    }

    /// Every promise of the workload holds, and no service exited.
    async fn promises_hold(&mut self) {
        let problems = self.workload.settle(WAIT).await;
        assert!(
            problems.is_empty(),
            "promises broken after {WAIT:?}: {problems:#?}\n{}",
            self.services.logs()
        );
        let exited = self.services.exited();
        assert!(
            exited.is_empty(),
            "{exited:?} exited\n{}",
            self.services.logs()
        );
    }

    /// Waits until no work item is stored and neither consumer has anything
    /// pending or unacknowledged: after this no delivery can come, so the
    /// counts below are final.
    async fn drained(&self) {
        let (work, outcomes) = (self.topology.work_stream(), self.topology.outcome_stream());
        eventually("the bus to be drained", WAIT, || async {
            let stored = self
                .js
                .get_stream(&work)
                .await
                .ok()?
                .info()
                .await
                .ok()?
                .state
                .messages;
            let signer = self.idle(SIGNER_CONSUMER, &work).await?;
            let reporter = self.idle(REPORTER_CONSUMER, &outcomes).await?;
            (stored == 0 && signer && reporter).then_some(())
        })
        .await;
    }

    async fn idle(&self, consumer: &str, stream: &str) -> Option<bool> {
        let mut consumer = self
            .js
            .get_consumer_from_stream::<pull::Config, _, _>(consumer, stream)
            .await
            .ok()?;
        let info = consumer.info().await.ok()?;
        Some(info.num_pending == 0 && info.num_ack_pending == 0)
    }

    /// Each valid ServiceCertificate was issued once: one serial among the
    /// Issued outcomes, the one its Secret holds, and the signers wrote one
    /// Secret per certificate. Each broken one has a Failed outcome and no
    /// Issued one.
    async fn each_issued_exactly_once(&self) {
        let (issued, failed) = self.outcomes().await;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        for name in self.workload.valid() {
            let secret = secrets.get(&format!("{name}-tls")).await.expect("Secret");
            let serial = inspect_secret(&secret).expect("the Secret parses").serial;
            let serials = issued.get(name).cloned().unwrap_or_default();
            assert_eq!(
                serials,
                BTreeSet::from([serial]),
                "{name}: exactly one certificate issued, the one in its Secret"
            );
        }
        for name in self.workload.broken() {
            assert!(!issued.contains_key(name), "{name}: nothing issued");
            assert!(failed.contains(name), "{name}: a Failed outcome");
        }
        // Not certificates_issued_total: a signer counts an issuance only
        // once its outcome is published, and a publish the lost server
        // never acknowledged is finished on redelivery as "up to date".
        let valid = self.workload.valid().len() as f64;
        let metric = "certflow_signer_secret_writes_total";
        let writes = self.services.signer_metric_sum(metric).await;
        assert_eq!(writes, valid, "{metric} across both signers");
    }

    /// The outcome stream read back: the serials issued for each name, and
    /// the names with a Failed outcome.
    async fn outcomes(&self) -> (BTreeMap<String, BTreeSet<String>>, BTreeSet<String>) {
        let mut stream = self
            .js
            .get_stream(self.topology.outcome_stream())
            .await
            .expect("the outcome stream");
        let state = stream
            .info()
            .await
            .expect("outcome stream info")
            .state
            .clone();
        let (mut issued, mut failed) = (BTreeMap::<_, BTreeSet<_>>::new(), BTreeSet::new());
        for sequence in state.first_sequence..=state.last_sequence {
            let message = stream
                .get_raw_message(sequence)
                .await
                .unwrap_or_else(|err| panic!("outcome {sequence}: {err}"));
            let outcome = decode_outcome_payload(&message.subject, &message.payload)
                .unwrap_or_else(|err| panic!("outcome {sequence}: {err}"));
            match outcome.result {
                Some(outcome::Result::Issued(done)) => {
                    issued
                        .entry(outcome.name)
                        .or_default()
                        .insert(done.serial_number);
                }
                Some(outcome::Result::Failed(_)) => {
                    failed.insert(outcome.name);
                }
                None => panic!("outcome {sequence} has no result"),
            }
        }
        (issued, failed)
    }

    /// Every stream is on a leader and two current followers: whatever server came back has its copy again.
    async fn stored_on_every_server(&self) {
        let names = [
            self.topology.work_stream(),
            self.topology.outcome_stream(),
            self.topology.dead_letter_stream(),
        ];
        for name in names {
            eventually(
                &format!("{name} on three current servers"),
                WAIT,
                || async {
                    let info = self
                        .js
                        .get_stream(&name)
                        .await
                        .ok()?
                        .info()
                        .await
                        .ok()?
                        .clone();
                    let cluster = info.cluster?;
                    let followers = &cluster.replicas;
                    (cluster.leader.is_some()
                        && followers.len() == 2
                        && followers.iter().all(|peer| peer.current && !peer.offline))
                    .then_some(())
                },
            )
            .await;
        }
    }
}

/// Creates ServiceCertificates `range` of the burst: every fourth broken
/// (with its Pod), the rest valid.
async fn burst(workload: &mut Workload, range: Range<usize>) {
    for i in range {
        if i % 4 == 3 {
            workload.add_broken(&format!("broken-{i}")).await;
        } else {
            workload.add_valid(&format!("valid-{i}")).await;
        }
    }
}

#[tokio::test]
async fn a_nats_server_killed_mid_burst_loses_no_work_and_issues_each_certificate_once() {
    let mut fx = Fixture::start("nats-kill").await;
    burst(&mut fx.workload, 0..BURST / 2).await;
    fx.wait_until_issued(ISSUED_BEFORE_THE_LOSS).await;
    let leader = fx.work_stream_leader().await;
    fx.cluster.kill(leader);
    // The rest arrives while the cluster runs on two servers.
    burst(&mut fx.workload, BURST / 2..BURST).await;

    fx.promises_hold().await;
    fx.drained().await;
    fx.each_issued_exactly_once().await;

    fx.cluster
        .restart(leader)
        .await
        .unwrap_or_else(|err| panic!("the killed server rejoins: {err}"));
    fx.stored_on_every_server().await;
    fx.services.stop();
}

#[tokio::test]
async fn a_nats_server_back_without_its_storage_mid_burst_loses_no_work_and_issues_each_certificate_once()
 {
    let mut fx = Fixture::start("nats-wipe").await;
    burst(&mut fx.workload, 0..BURST / 2).await;
    fx.wait_until_issued(ISSUED_BEFORE_THE_LOSS).await;
    let leader = fx.work_stream_leader().await;
    // The server comes back empty at once and copies every stream back from
    // the other two while the rest of the burst arrives.
    let (rejoined, ()) = tokio::join!(
        fx.cluster.restart_with_empty_storage(leader),
        burst(&mut fx.workload, BURST / 2..BURST),
    );
    rejoined.unwrap_or_else(|err| panic!("the wiped server rejoins: {err}"));

    fx.promises_hold().await;
    fx.drained().await;
    fx.each_issued_exactly_once().await;
    fx.stored_on_every_server().await;
    fx.services.stop();
}
