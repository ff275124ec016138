//! Fairness between namespaces: the watcher lets at most
//! `--namespace-in-flight` objects of one namespace have work on the bus and
//! not yet done, holds the rest, and publishes every held one in its turn;
//! another namespace's work is not held by the full one. No signer runs at
//! first, so what the watcher published stays in the work stream to count.
//!
//! One watcher watches every namespace, as deployed (the test services'
//! watcher watches only the test's), so the test runs its own control plane:
//! on the shared one that watcher would publish other tests' work.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream;
use certflow_api::IssuerRef;
use certflow_api::{KeyAlgorithm, PrivateKeySpec, ServiceCertificate, ServiceCertificateSpec};
use certflow_bus::Topology;
use certflow_e2e::eventually;
use certflow_e2e::fixtures::create_generated_ca;
use certflow_e2e::services::Services;
use certflow_testenv::TestEnv;
use futures::TryStreamExt as _;
use kube::Api;
use kube::api::PostParams;

const IN_FLIGHT: usize = 2;
const FLOOD: usize = 10;
const WAIT: Duration = Duration::from_secs(60);

const HELD: &str = "certflow_watcher_decisions_held";
const PENDING: &str = "certflow_watcher_decisions_pending";

fn scert(name: &str, namespace: &str, issuer: &str) -> ServiceCertificate {
    ServiceCertificate::new(
        name,
        ServiceCertificateSpec {
            secret_name: format!("{name}-tls"),
            dns_names: vec![format!("{name}.{namespace}.svc")],
            issuer_ref: Some(IssuerRef::named(issuer.to_owned())),
            private_key: Some(PrivateKeySpec {
                algorithm: Some(KeyAlgorithm::Ecdsa),
                ..PrivateKeySpec::default()
            }),
            ..ServiceCertificateSpec::default()
        },
    )
}

/// Work items queued in the work stream, by namespace.
async fn queued(
    js: &jetstream::Context,
    topology: &Topology,
    namespaces: &[&str],
) -> BTreeMap<String, usize> {
    let stream = js
        .get_stream(topology.work_stream())
        .await
        .expect("the work stream exists");
    let mut by_namespace = BTreeMap::new();
    for namespace in namespaces {
        let filter = topology
            .work_filter_for_namespace(namespace)
            .expect("a valid namespace");
        let subjects: Vec<(String, usize)> = stream
            .info_with_subjects(filter)
            .await
            .expect("stream info")
            .try_collect()
            .await
            .expect("per-subject counts");
        by_namespace.insert(
            (*namespace).to_owned(),
            subjects.iter().map(|(_, count)| count).sum(),
        );
    }
    by_namespace
}

#[tokio::test]
async fn a_namespace_over_its_in_flight_cap_waits_in_the_watcher_and_every_certificate_is_issued() {
    let env = TestEnv::start()
        .await
        .expect("a control plane of the test's own");
    let client = env.client().await.expect("client");
    let busy = env.create_namespace("busy").await.expect("namespace");
    let quiet = env.create_namespace("quiet").await.expect("namespace");
    let mut services = Services::launch(&env, &busy, 0, &[], &[]).await;
    services.kill_watcher();
    services.start_watcher_of_every_namespace(&[&format!("--namespace-in-flight={IN_FLIGHT}")]);
    let issuer = certflow_testenv::unique_name("fair-ca");
    create_generated_ca(&client, &issuer, None)
        .await
        .expect("CertificateAuthority");
    let nats = async_nats::connect(env.nats_url())
        .await
        .expect("connect to NATS");
    let js = jetstream::new(nats);
    let topology = Topology::new(&services.bus_prefix).expect("the services' bus prefix");

    let busy_scerts: Api<ServiceCertificate> = Api::namespaced(client.clone(), &busy);
    let quiet_scerts: Api<ServiceCertificate> = Api::namespaced(client.clone(), &quiet);
    for i in 0..FLOOD {
        busy_scerts
            .create(
                &PostParams::default(),
                &scert(&format!("busy-{i}"), &busy, &issuer),
            )
            .await
            .expect("create");
    }
    quiet_scerts
        .create(&PostParams::default(), &scert("first", &quiet, &issuer))
        .await
        .expect("create");

    // Every look must find the cap kept; the wait ends once the watcher
    // has published the quiet namespace's item and holds the rest.
    let watcher = services.watcher.as_ref().expect("the watcher runs");
    let logs = services.logs();
    eventually(
        &format!("2 busy items and the quiet one queued, 8 held\n{logs}"),
        WAIT,
        || async {
            let queued = queued(&js, &topology, &[&busy, &quiet]).await;
            assert!(
                queued[&busy] <= IN_FLIGHT,
                "the busy namespace has more than {IN_FLIGHT} items queued: {queued:?}"
            );
            let held = watcher.metric_sum(HELD).await;
            let done = queued[&busy] == IN_FLIGHT
                && queued[&quiet] == 1
                && held == (FLOOD - IN_FLIGHT) as f64;
            done.then_some(())
        },
    )
    .await;
    assert_eq!(
        watcher.metric_sum(PENDING).await,
        (IN_FLIGHT + 1) as f64,
        "held objects are not counted as pending on the bus"
    );

    services.add_signer();
    for (api, count) in [(&busy_scerts, FLOOD), (&quiet_scerts, 1)] {
        eventually(
            &format!("{count} Ready ServiceCertificates\n{}", services.logs()),
            WAIT,
            || async {
                let list = api.list(&Default::default()).await.ok()?;
                let ready = list
                    .items
                    .iter()
                    .filter(|scert| scert.ready_condition().is_some_and(|c| c.is_true()))
                    .count();
                (ready == count).then_some(())
            },
        )
        .await;
    }
    let watcher = services.watcher.as_ref().expect("the watcher runs");
    eventually("nothing held or pending", WAIT, || async {
        let (held, pending) = (
            watcher.metric_sum(HELD).await,
            watcher.metric_sum(PENDING).await,
        );
        (held == 0.0 && pending == 0.0).then_some(())
    })
    .await;
    assert!(services.exited().is_empty(), "{}", services.logs());
    services.stop();
}
