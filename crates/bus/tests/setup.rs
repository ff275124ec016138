//! The setup step and the services' look-up against a real nats-server:
//! [`open`] finds nothing before [`ensure`] ran and names what is missing,
//! finds everything after; [`ensure`] reports what it created, what it
//! left unchanged and what it updated; [`open_when_created`] waits for the
//! setup step and returns as soon as it ran, or when told to stop.

use std::time::Duration;

use async_nats::jetstream;
use certflow_bus::{BusError, Change, RetryPolicy, Topology, ensure, open, open_when_created};
use certflow_testenv::{NatsServer, Tools, unique_name};
use tokio_util::sync::CancellationToken;

struct Server {
    server: NatsServer,
    dir: std::path::PathBuf,
    js: jetstream::Context,
}

impl Server {
    async fn start(name: &str) -> Self {
        let tools = Tools::locate().unwrap_or_else(|err| panic!("{err}"));
        let dir = std::env::temp_dir().join(unique_name(name));
        let mut server = NatsServer::start(&tools.nats_server, &dir)
            .unwrap_or_else(|err| panic!("nats-server starts: {err}"));
        server
            .wait_ready()
            .await
            .unwrap_or_else(|err| panic!("nats-server is ready: {err}"));
        let client = async_nats::connect(server.url())
            .await
            .unwrap_or_else(|err| panic!("connect: {err}"));
        Self {
            server,
            dir,
            js: jetstream::new(client),
        }
    }

    fn stop(mut self) {
        self.server.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn topology() -> Topology {
    Topology::isolated("setup").unwrap_or_else(|err| panic!("topology: {err}"))
}

fn changes(streams: &certflow_bus::Streams) -> Vec<Change> {
    streams
        .changes
        .iter()
        .map(|ensured| ensured.change)
        .collect()
}

#[tokio::test]
async fn open_names_the_missing_stream_until_ensure_created_it() {
    let server = Server::start("bus-setup-open").await;
    let topology = topology();

    let missing = open(&server.js, &topology).await;
    match &missing {
        Err(error @ BusError::Missing { what }) => {
            assert_eq!(what, &format!("stream {}", topology.work_stream()));
            let message = error.to_string();
            assert!(
                message.contains("certflow-watcher setup-bus"),
                "the error names the command that creates it: {message}"
            );
            assert!(error.is_transient(), "a service waits for the setup step");
        }
        other => panic!("expected the work stream missing, got {other:?}"),
    }
    let created = server.js.get_stream(topology.work_stream()).await;
    assert!(created.is_err(), "open created nothing: {created:?}");

    let ensured = ensure(&server.js, &topology)
        .await
        .unwrap_or_else(|err| panic!("ensure: {err}"));
    assert_eq!(changes(&ensured), vec![Change::Created; 5]);
    assert_eq!(
        ensured.changes[3].what,
        format!("consumer signer on stream {}", topology.work_stream())
    );

    let opened = open(&server.js, &topology)
        .await
        .unwrap_or_else(|err| panic!("open after ensure: {err}"));
    assert!(opened.changes.is_empty());
    assert_eq!(opened.work.config.name, topology.work_stream());
    assert_eq!(opened.signer.cached_info().name, "signer");
    assert_eq!(opened.reporter.cached_info().name, "reporter");

    // A consumer lost on its own is named too.
    server
        .js
        .get_stream(topology.outcome_stream())
        .await
        .unwrap_or_else(|err| panic!("outcome stream: {err}"))
        .delete_consumer("reporter")
        .await
        .unwrap_or_else(|err| panic!("delete the reporter's consumer: {err}"));
    match open(&server.js, &topology).await {
        Err(BusError::Missing { what }) => assert_eq!(
            what,
            format!("consumer reporter on stream {}", topology.outcome_stream())
        ),
        other => panic!("expected the reporter's consumer missing, got {other:?}"),
    }
    server.stop();
}

#[tokio::test]
async fn ensure_again_changes_nothing_and_updates_what_a_setting_changed() {
    let server = Server::start("bus-setup-ensure").await;
    let topology = topology();
    ensure(&server.js, &topology)
        .await
        .unwrap_or_else(|err| panic!("ensure: {err}"));

    let again = ensure(&server.js, &topology)
        .await
        .unwrap_or_else(|err| panic!("ensure again: {err}"));
    assert_eq!(changes(&again), vec![Change::Unchanged; 5]);

    let fewer_deliveries = topology.clone().with_retry_policy(
        RetryPolicy::new(vec![Duration::from_secs(1)], 3).unwrap_or_else(|| panic!("policy")),
    );
    let updated = ensure(&server.js, &fewer_deliveries)
        .await
        .unwrap_or_else(|err| panic!("ensure with --bus-max-deliver=3: {err}"));
    assert_eq!(
        changes(&updated),
        vec![
            Change::Unchanged,
            Change::Unchanged,
            Change::Unchanged,
            Change::Updated,
            Change::Updated
        ]
    );
    assert_eq!(updated.signer.cached_info().config.max_deliver, 3);
    server.stop();
}

#[tokio::test]
async fn open_when_created_waits_for_the_setup_step_and_stops_when_told() {
    let server = Server::start("bus-setup-wait").await;
    let topology = topology();

    let stop = CancellationToken::new();
    let waiting = tokio::spawn({
        let (js, topology, stop) = (server.js.clone(), topology.clone(), stop.clone());
        async move { open_when_created(&js, &topology, &stop).await }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!waiting.is_finished(), "it waits while nothing exists");
    stop.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap_or_else(|_| panic!("it stops promptly when told"))
        .unwrap_or_else(|err| panic!("task: {err}"));
    assert!(matches!(stopped, Ok(None)), "{stopped:?}");

    let stop = CancellationToken::new();
    let waiting = tokio::spawn({
        let (js, topology, stop) = (server.js.clone(), topology.clone(), stop.clone());
        async move { open_when_created(&js, &topology, &stop).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    ensure(&server.js, &topology)
        .await
        .unwrap_or_else(|err| panic!("ensure: {err}"));
    let opened = tokio::time::timeout(Duration::from_secs(40), waiting)
        .await
        .unwrap_or_else(|_| panic!("it finds the streams once created"))
        .unwrap_or_else(|err| panic!("task: {err}"));
    assert!(matches!(opened, Ok(Some(_))), "{opened:?}");
    server.stop();
}
