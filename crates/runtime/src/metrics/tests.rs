//! The metrics server on loopback, read with a plain HTTP/1.0 request.

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

async fn get(addr: SocketAddr, path: &str) -> String {
    let mut stream = match TcpStream::connect(addr).await {
        Ok(stream) => stream,
        Err(error) => panic!("connect to the metrics server: {error}"),
    };
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut response = String::new();
    let exchanged = async {
        stream.write_all(request.as_bytes()).await?;
        stream.read_to_string(&mut response).await
    }
    .await;
    if let Err(error) = exchanged {
        panic!("HTTP exchange: {error}");
    }
    response
}

fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or_default()
}

async fn start(metrics: Metrics) -> RunningServer {
    match serve(([127, 0, 0, 1], 0).into(), metrics).await {
        Ok(server) => server,
        Err(error) => panic!("metrics server starts on loopback: {error}"),
    }
}

#[tokio::test]
async fn registered_counters_are_served_as_openmetrics() {
    let metrics = Metrics::new("certflow_test");
    let issued = Counter::<u64>::default();
    metrics.register("certificates_issued", "Certificates issued", issued.clone());
    issued.inc_by(3);

    let server = start(metrics).await;
    let response = get(server.local_addr(), "/metrics").await;

    assert!(status_line(&response).contains(" 200 "), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{response}"
    );
    assert!(
        response.contains("certflow_test_certificates_issued_total 3"),
        "{response}"
    );
    assert!(
        response.contains(&format!(
            "certflow_build_info{{service=\"certflow-test\",version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{response}"
    );
    assert_eq!(response.matches("# EOF").count(), 1, "{response}");
    assert!(response.trim_end().ends_with("# EOF"), "{response}");
    assert!(server.stop().await.is_ok());
}

#[tokio::test]
async fn metrics_registered_after_start_are_served_too() {
    let metrics = Metrics::new("certflow_test");
    let server = start(metrics.clone()).await;
    let late = Counter::<u64>::default();
    metrics.register("late", "Registered after the server started", late.clone());
    late.inc();

    let response = get(server.local_addr(), "/metrics").await;
    assert!(
        response.contains("certflow_test_late_total 1"),
        "{response}"
    );
    assert!(server.stop().await.is_ok());
}

#[tokio::test]
async fn other_paths_are_not_found() {
    let server = start(Metrics::new("certflow_test")).await;
    let response = get(server.local_addr(), "/").await;
    assert!(status_line(&response).contains(" 404 "), "{response}");
    assert!(server.stop().await.is_ok());
}
