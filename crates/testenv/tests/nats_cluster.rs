//! The three-server JetStream cluster: a stream stored on all three keeps
//! every message when its leader is SIGKILLed and when that server comes
//! back without its store, and no server outlives the cluster.

use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage, stream};
use certflow_testenv::{NatsCluster, Tools, unique_name};

/// Longer than a Raft election (several seconds) on a busy machine.
const ELECTION: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_replicated_stream_keeps_every_message_through_a_killed_leader_and_a_wiped_store() {
    let tools = Tools::locate().unwrap_or_else(|err| panic!("{err}"));
    let dir = std::env::temp_dir().join(unique_name("nats-cluster"));
    let mut cluster = NatsCluster::start(&tools.nats_server, &dir)
        .await
        .unwrap_or_else(|err| panic!("the cluster starts: {err}"));
    assert_eq!(cluster.client_urls().split(',').count(), 3);
    let client = async_nats::connect(cluster.servers())
        .await
        .unwrap_or_else(|err| panic!("connect to the cluster: {err}"));
    let js = jetstream::new(client);
    let name = "REPLICATED";
    js.create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec!["replicated.>".to_owned()],
        storage: stream::StorageType::File,
        num_replicas: 3,
        ..Default::default()
    })
    .await
    .unwrap_or_else(|err| panic!("create an R3 stream: {err}"));
    for i in 0..10 {
        publish(&js, i).await;
    }

    let leader = leader_of(&js, name).await;
    let leader = cluster
        .node_named(&leader)
        .unwrap_or_else(|| panic!("{leader} is one of the cluster's servers"));
    cluster.kill(leader);
    // The two left elect a new leader and take the next messages.
    for i in 10..20 {
        publish(&js, i).await;
    }
    cluster
        .restart_with_empty_storage(leader)
        .await
        .unwrap_or_else(|err| panic!("the wiped node rejoins: {err}"));

    let info = stream_info(&js, name).await;
    assert_eq!(info.state.messages, 20, "no message lost or repeated");
    let peers = info.cluster.map(|c| c.replicas).unwrap_or_default();
    assert_eq!(peers.len(), 2, "two followers beside the leader: {peers:?}");
    assert!(
        peers.iter().all(|peer| peer.current && !peer.offline),
        "every replica, the wiped one included, is current: {peers:?}"
    );

    let pids = cluster.pids();
    assert_eq!(pids.len(), 3, "{pids:?}");
    cluster.stop();
    assert!(
        pids.iter()
            .all(|(_, pid)| !Path::new(&format!("/proc/{pid}")).exists()),
        "stop kills and reaps every node: {pids:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Publishes message `i` until the stream stores it; the same message id on
/// every attempt, so a retry after a lost acknowledgement stores nothing twice.
async fn publish(js: &jetstream::Context, i: u32) {
    let deadline = Instant::now() + ELECTION;
    loop {
        let publish = PublishMessage::build()
            .payload(format!("message {i}").into())
            .message_id(format!("message-{i}"));
        let stored = match js.send_publish(format!("replicated.{i}"), publish).await {
            Ok(ack) => ack.await.map(drop).map_err(|err| err.to_string()),
            Err(err) => Err(err.to_string()),
        };
        match stored {
            Ok(()) => return,
            Err(err) => assert!(
                Instant::now() < deadline,
                "message {i} not stored within {ELECTION:?}: {err}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn stream_info(js: &jetstream::Context, name: &str) -> stream::Info {
    let mut stream = js
        .get_stream(name)
        .await
        .unwrap_or_else(|err| panic!("stream {name}: {err}"));
    stream
        .info()
        .await
        .unwrap_or_else(|err| panic!("info of {name}: {err}"))
        .clone()
}

async fn leader_of(js: &jetstream::Context, name: &str) -> String {
    stream_info(js, name)
        .await
        .cluster
        .and_then(|cluster| cluster.leader)
        .unwrap_or_else(|| panic!("stream {name} has a leader"))
}
