//! The health server on loopback, queried with tonic-health's own client.

use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus as Wire;
use tonic_health::pb::health_client::HealthClient;

use super::*;

async fn status(addr: SocketAddr) -> Wire {
    match status_of(addr, "").await {
        Ok(status) => status,
        Err(status) => panic!("health check: {status}"),
    }
}

/// The status of health service `service`, or the gRPC error.
async fn status_of(addr: SocketAddr, service: &str) -> Result<Wire, tonic::Status> {
    let endpoint = match Endpoint::from_shared(format!("http://{addr}")) {
        Ok(endpoint) => endpoint,
        Err(error) => panic!("endpoint: {error}"),
    };
    let channel = match endpoint.connect().await {
        Ok(channel) => channel,
        Err(error) => panic!("connect to the health server: {error}"),
    };
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map(|response| response.into_inner().status())
}

/// Readiness under both of its names, then liveness; `None` for an error.
async fn probes(addr: SocketAddr) -> [Option<Wire>; 3] {
    [
        status_of(addr, "").await.ok(),
        status_of(addr, READINESS).await.ok(),
        status_of(addr, LIVENESS).await.ok(),
    ]
}

async fn start(dependencies: &[&str]) -> (HealthHandle, RunningServer) {
    let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
    match serve(addr, dependencies).await {
        Ok(started) => started,
        Err(error) => panic!("health server starts on loopback: {error}"),
    }
}

#[tokio::test]
async fn a_service_is_not_serving_until_its_dependencies_are_ready() {
    let (handle, server) = start(&["nats", "kubernetes"]).await;
    let addr = server.local_addr();
    assert_eq!(status(addr).await, Wire::NotServing);

    handle.set_ready("nats", true).await;
    assert_eq!(status(addr).await, Wire::NotServing);

    handle.set_ready("kubernetes", true).await;
    assert_eq!(status(addr).await, Wire::Serving);

    handle.set_ready("nats", false).await;
    assert_eq!(status(addr).await, Wire::NotServing);

    assert!(server.stop().await.is_ok());
}

#[tokio::test]
async fn shutting_down_wins_over_ready_dependencies() {
    let (handle, server) = start(&["nats"]).await;
    handle.set_ready("nats", true).await;
    assert_eq!(status(server.local_addr()).await, Wire::Serving);

    handle.set_shutting_down().await;
    assert_eq!(status(server.local_addr()).await, Wire::NotServing);
    assert!(!handle.is_serving());

    assert!(server.stop().await.is_ok());
}

#[tokio::test]
async fn a_service_without_dependencies_serves_at_once() {
    let (handle, server) = start(&[]).await;
    assert!(handle.is_serving());
    assert_eq!(status(server.local_addr()).await, Wire::Serving);
    assert!(server.stop().await.is_ok());
}

#[tokio::test]
async fn a_taken_port_is_reported_with_the_server_name() {
    let (_handle, server) = start(&[]).await;
    let error = serve(server.local_addr(), &[]).await.err();
    assert!(
        matches!(
            error,
            Some(RuntimeError::Bind {
                server: "health",
                ..
            })
        ),
        "{error:?}"
    );
    assert!(server.stop().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_periodic_probe_follows_the_dependency_and_a_hung_probe_counts_as_unreachable() {
    use std::sync::atomic::{AtomicU8, Ordering};
    const UP: u8 = 0;
    const DOWN: u8 = 1;
    const HUNG: u8 = 2;
    let (handle, server) = start(&["kubernetes"]).await;
    let answer = Arc::new(AtomicU8::new(UP));
    let stop = CancellationToken::new();
    let probed = answer.clone();
    let probe = tokio::spawn(handle.clone().probe_periodically(
        "kubernetes",
        Duration::from_secs(2),
        stop.clone(),
        move || {
            let answer = probed.load(Ordering::SeqCst);
            async move {
                if answer == HUNG {
                    std::future::pending::<()>().await;
                }
                answer == UP
            }
        },
    ));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(handle.is_serving());
    answer.store(DOWN, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!handle.is_serving());
    answer.store(UP, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(handle.is_serving());
    answer.store(HUNG, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(!handle.is_serving());

    stop.cancel();
    assert!(probe.await.is_ok());
    assert!(server.stop().await.is_ok());
}

#[tokio::test]
async fn liveness_stays_serving_while_a_dependency_is_unreachable_and_while_shutting_down() {
    use Wire::{NotServing, Serving};
    let (handle, server) = start(&["nats"]).await;
    let addr = server.local_addr();
    assert_eq!(
        probes(addr).await,
        [Some(NotServing), Some(NotServing), Some(Serving)]
    );
    assert!(handle.is_live());

    handle.set_ready("nats", true).await;
    assert_eq!(
        probes(addr).await,
        [Some(Serving), Some(Serving), Some(Serving)]
    );

    handle.set_ready("nats", false).await;
    assert_eq!(
        probes(addr).await,
        [Some(NotServing), Some(NotServing), Some(Serving)]
    );

    handle.set_ready("nats", true).await;
    handle.set_shutting_down().await;
    assert_eq!(
        probes(addr).await,
        [Some(NotServing), Some(NotServing), Some(Serving)]
    );
    assert!(server.stop().await.is_ok());
}

#[tokio::test]
async fn a_probe_naming_an_unknown_service_fails_with_not_found() {
    let (_handle, server) = start(&[]).await;
    let answer = status_of(server.local_addr(), "livenes").await;
    assert_eq!(
        answer.map_err(|status| status.code()),
        Err(tonic::Code::NotFound)
    );
    assert!(server.stop().await.is_ok());
}

/// The health service in-process, on paused time, with nobody beating its
/// watchdog: a runtime that stopped ticking.
#[tokio::test(start_paused = true)]
async fn liveness_turns_not_serving_when_the_watchdog_goes_stale_and_back_on_the_next_beat() {
    let (handle, checks) = HealthHandle::with_checks(&[]).await;
    let liveness = || async {
        let request = Request::new(HealthCheckRequest {
            service: LIVENESS.to_owned(),
        });
        checks
            .check(request)
            .await
            .map(|response| response.into_inner().status())
            .ok()
    };
    assert_eq!(liveness().await, Some(Wire::Serving));

    tokio::time::sleep(watchdog::STALE_AFTER).await;
    assert_eq!(liveness().await, Some(Wire::NotServing));
    assert!(!handle.is_live());
    assert!(handle.is_serving(), "readiness does not depend on it");

    handle.watchdog().beat();
    assert_eq!(liveness().await, Some(Wire::Serving));

    let watch = checks
        .watch(Request::new(HealthCheckRequest {
            service: LIVENESS.to_owned(),
        }))
        .await;
    assert_eq!(
        watch.err().map(|status| status.code()),
        Some(tonic::Code::Unimplemented)
    );
}

#[tokio::test]
async fn the_server_keeps_beating_the_watchdog() {
    let (handle, server) = start(&[]).await;
    let beaten = handle.watchdog().since_last_beat();
    tokio::time::sleep(watchdog::TICK * 2).await;
    assert!(
        handle.watchdog().since_last_beat() < watchdog::TICK * 2,
        "beaten {beaten:?} after start, not since"
    );
    assert!(server.stop().await.is_ok());
}
