//! Exporting spans to a collector that is not there: the service goes on,
//! and shutting down gives up within the flush timeout instead of hanging.
//! The subscriber is global, so this test has a test binary (a process) of
//! its own.

use std::time::{Duration, Instant};

use certflow_runtime::LogFormat;
use certflow_runtime::telemetry::{self, FLUSH_TIMEOUT, OtlpExport};

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_collector_neither_slows_spans_nor_blocks_shutdown() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port());
    let Ok(port) = port else {
        panic!("no free port: {port:?}");
    };
    let export = OtlpExport {
        endpoint: format!("http://127.0.0.1:{port}"),
        service_name: "certflow-test",
    };
    let telemetry = match telemetry::init(LogFormat::Text, "info", Some(&export)) {
        Ok(telemetry) => telemetry,
        Err(error) => panic!("telemetry installs: {error}"),
    };
    assert!(telemetry.exports());

    let started = Instant::now();
    for item in 0..1_000 {
        let span = tracing::info_span!("work_item", item);
        span.in_scope(|| tracing::debug!("handled"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "spans are queued, not sent inline: {:?}",
        started.elapsed()
    );

    let stopping = Instant::now();
    telemetry.shutdown_async().await;
    assert!(
        stopping.elapsed() < FLUSH_TIMEOUT + Duration::from_secs(2),
        "shutdown gave up after {:?}",
        stopping.elapsed()
    );
}
