//! `--bus-replicas` against real servers. With 3 on a three-server
//! JetStream cluster (certflow_testenv's, shaped like deploy/'s), every
//! stream and both durable consumers are stored on all three servers, also
//! when several clients run `ensure` at once;
//! raising it from 1 to 3 moves an installation's streams in place. With 3
//! on a single server, `ensure` fails instead of retrying or leaving behind
//! streams that a lost server would take with it.

use async_nats::jetstream::{self, stream, stream::ClusterInfo};
use certflow_bus::{Streams, Topology, ensure};
use certflow_testenv::{NatsCluster, NatsServer, Tools, unique_name};

fn tools() -> Tools {
    Tools::locate().unwrap_or_else(|err| panic!("{err}"))
}

fn topology(replicas: usize) -> Topology {
    Topology::isolated("replicas")
        .and_then(|t| t.with_replicas(replicas))
        .unwrap_or_else(|err| panic!("topology: {err}"))
}

/// The setup step from `clients` connections at once, as overlapping
/// setup runs (or, before the setup step, services starting together) do.
/// Fails the test unless each one succeeds.
async fn ensure_from_each(cluster: &NatsCluster, topology: &Topology, clients: usize) -> Streams {
    let mut starting = Vec::new();
    for _ in 0..clients {
        let (servers, topology) = (cluster.servers(), topology.clone());
        starting.push(tokio::spawn(async move {
            let client = async_nats::connect(servers)
                .await
                .unwrap_or_else(|err| panic!("connect to the cluster: {err}"));
            let js = jetstream::new(client);
            ensure(&js, &topology).await
        }));
    }
    let mut last = None;
    for (i, started) in futures::future::join_all(starting)
        .await
        .into_iter()
        .enumerate()
    {
        match started {
            Ok(Ok(streams)) => last = Some(streams),
            Ok(Err(err)) => panic!("client {i} of {clients}: {err:?}"),
            Err(err) => panic!("client {i}: {err}"),
        }
    }
    last.unwrap_or_else(|| panic!("no client"))
}

async fn start_cluster(name: &str) -> (NatsCluster, std::path::PathBuf, jetstream::Context) {
    let dir = std::env::temp_dir().join(unique_name(name));
    let cluster = NatsCluster::start(&tools().nats_server, &dir)
        .await
        .unwrap_or_else(|err| panic!("the cluster starts: {err}"));
    let client = async_nats::connect(cluster.servers())
        .await
        .unwrap_or_else(|err| panic!("connect to the cluster: {err}"));
    (cluster, dir, jetstream::new(client))
}

async fn stream_info(js: &jetstream::Context, name: &str) -> stream::Info {
    js.get_stream(name)
        .await
        .unwrap_or_else(|err| panic!("stream {name}: {err}"))
        .info()
        .await
        .unwrap_or_else(|err| panic!("info of {name}: {err}"))
        .clone()
}

/// Servers holding a stream or consumer: its leader and its followers.
fn servers(cluster: Option<&ClusterInfo>) -> usize {
    cluster.map_or(0, |c| c.leader.iter().count() + c.replicas.len())
}

#[tokio::test]
async fn services_starting_together_store_every_stream_and_consumer_on_all_three_servers() {
    let (mut cluster, dir, _) = start_cluster("bus-replicas").await;
    let topology = topology(3);

    // Four at once: before create came first, every one of them timed out.
    let streams = ensure_from_each(&cluster, &topology, 4).await;
    for info in [&streams.work, &streams.outcomes, &streams.dead_letters] {
        let name = &info.config.name;
        assert_eq!(info.config.num_replicas, 3, "{name}");
        assert_eq!(servers(info.cluster.as_ref()), 3, "{name} on three servers");
    }
    for (name, mut consumer) in [("signer", streams.signer), ("reporter", streams.reporter)] {
        let info = consumer
            .info()
            .await
            .unwrap_or_else(|err| panic!("{name} consumer info: {err}"));
        assert_eq!(servers(info.cluster.as_ref()), 3, "the {name} consumer");
    }
    // Restarted services find everything in place.
    ensure_from_each(&cluster, &topology, 2).await;
    cluster.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn raising_the_replicas_from_one_to_three_moves_the_streams_onto_three_servers_in_place() {
    let (mut cluster, dir, js) = start_cluster("bus-replicas-raise").await;
    let single = topology(1);
    let streams = ensure_from_each(&cluster, &single, 1).await;
    assert_eq!(servers(streams.work.cluster.as_ref()), 1);
    let stored = js
        .publish(
            format!("{}.work.v1.ns.name", single.prefix()),
            "work".into(),
        )
        .await
        .unwrap_or_else(|err| panic!("publish: {err}"))
        .await;
    assert!(stored.is_ok(), "{stored:?}");

    let raised = single
        .clone()
        .with_replicas(3)
        .unwrap_or_else(|err| panic!("{err}"));
    ensure_from_each(&cluster, &raised, 2).await;
    for name in [raised.work_stream(), raised.outcome_stream()] {
        assert_eq!(
            stream_info(&js, &name).await.config.num_replicas,
            3,
            "{name}"
        );
    }
    assert_eq!(
        stream_info(&js, &raised.work_stream()).await.state.messages,
        1,
        "the stored work item stays"
    );
    cluster.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn three_replicas_on_a_single_server_are_refused_at_ensure() {
    let dir = std::env::temp_dir().join(unique_name("bus-replicas-single"));
    let mut server = NatsServer::start(&tools().nats_server, &dir)
        .unwrap_or_else(|err| panic!("nats-server starts: {err}"));
    server
        .wait_ready()
        .await
        .unwrap_or_else(|err| panic!("nats-server is ready: {err}"));
    let client = async_nats::connect(server.url())
        .await
        .unwrap_or_else(|err| panic!("connect: {err}"));
    let js = jetstream::new(client);
    let topology = topology(3);

    let refused = ensure(&js, &topology).await;
    let message = refused.as_ref().err().map(|err| format!("{err:?}"));
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("replicas > 1 not supported")),
        "the server's reason reaches the caller: {message:?}"
    );
    // No retry fixes it, so a service started this way exits with the reason.
    assert!(refused.is_err_and(|err| !err.is_transient()));
    let left = js.get_stream(topology.work_stream()).await;
    assert!(left.is_err(), "no stream was created: {left:?}");
    server.kill();
    let _ = std::fs::remove_dir_all(&dir);
}
