//! SIGTERM reaches every `Shutdown` in the process, so this test runs in its
//! own test binary (its own process), away from the unit tests.
#![cfg(unix)]

use std::time::Duration;

use certflow_runtime::Shutdown;

#[tokio::test]
async fn sigterm_requests_shutdown() {
    let shutdown = match Shutdown::on_signals(Duration::from_secs(1)) {
        Ok(shutdown) => shutdown,
        Err(error) => panic!("signal handlers install: {error}"),
    };
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status();
    assert!(status.is_ok_and(|s| s.success()));
    let fired = tokio::time::timeout(Duration::from_secs(10), shutdown.requested()).await;
    assert!(fired.is_ok(), "SIGTERM did not request shutdown");
    assert!(shutdown.is_requested());
}
