//! Starting and stopping a service on loopback, and NATS start-up failures.

use std::time::Duration;

use clap::Parser;

use super::*;
use crate::nats::NATS_DEPENDENCY;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

fn loopback_args(extra: &[&str]) -> CommonArgs {
    let args = [
        "certflow-test",
        "--health-addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "127.0.0.1:0",
    ];
    match Cli::try_parse_from(args.iter().chain(extra)) {
        Ok(cli) => cli.common,
        Err(error) => panic!("test flags parse: {error}"),
    }
}

async fn start(extra: &[&str]) -> Service {
    match Service::start_without_telemetry(
        "certflow-test",
        loopback_args(extra),
        &[NATS_DEPENDENCY],
    )
    .await
    {
        Ok(service) => service,
        Err(error) => panic!("service starts on loopback: {error}"),
    }
}

#[tokio::test]
async fn a_started_service_is_not_ready_before_nats_and_stops_cleanly() {
    let service = start(&[]).await;
    assert_ne!(service.health_addr().port(), 0);
    assert_ne!(service.metrics_addr().port(), 0);
    assert!(!service.health().is_serving());
    assert!(
        service.health().is_live(),
        "liveness does not wait for NATS"
    );

    service.health().set_ready(NATS_DEPENDENCY, true).await;
    assert!(service.health().is_serving());
    assert!(service.topology().is_ok());

    let health = service.health().clone();
    assert!(service.stop().await.is_ok());
    assert!(!health.is_serving());
}

#[tokio::test]
async fn an_unreachable_nats_fails_after_the_connect_timeout() {
    // Port 9 (discard) on loopback: nothing listens, connections are refused.
    let service = start(&[
        "--nats-url",
        "nats://127.0.0.1:9",
        "--nats-connect-timeout",
        "300ms",
    ])
    .await;
    let error = service.connect_nats().await.err();
    assert!(
        matches!(error, Some(RuntimeError::NatsConnect { .. })),
        "{error:?}"
    );
    assert!(!service.health().is_serving());
    assert!(service.stop().await.is_ok());
}

#[tokio::test]
async fn shutdown_interrupts_connecting() {
    let service = start(&[
        "--nats-url",
        "nats://127.0.0.1:9",
        "--nats-connect-timeout",
        "1h",
    ])
    .await;
    let shutdown = service.shutdown().clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        shutdown.request("test");
    });
    let error = tokio::time::timeout(Duration::from_secs(10), service.connect_nats()).await;
    assert!(
        matches!(error, Ok(Err(RuntimeError::ShutdownWhileConnecting { .. }))),
        "{error:?}"
    );
    assert!(service.stop().await.is_ok());
}
