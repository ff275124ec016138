//! Helpers shared by the end-to-end tests in `tests/e2e/`: waiting for
//! conditions with a deadline, running `kubectl` with its output checked,
//! and calling the Report API as an authenticated ServiceAccount.
#![forbid(unsafe_code)]

pub mod fixtures;
pub mod manifests;
pub mod report_api;
pub mod services;
pub mod tenant;
pub mod workload;

use std::future::Future;
use std::process::Output;
use std::time::{Duration, Instant};

/// Polls `check` until it returns `Some`, failing with `what` after `timeout`.
/// This is how tests await a condition that no watch can deliver directly
/// (another process's effect on the cluster); the poll interval is short so
/// the wait ends as soon as the condition holds.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs a command to completion, feeding `stdin`, and fails the test with
/// its output if it exits non-zero.
pub fn run_ok(command: &mut std::process::Command, stdin: &str) -> String {
    let output = run(command, stdin);
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs a command to completion, feeding `stdin`, and returns its output.
pub fn run(command: &mut std::process::Command, stdin: &str) -> Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {command:?}: {err}"));
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin.as_bytes())
            .unwrap_or_else(|err| panic!("writing stdin of {command:?}: {err}"));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|err| panic!("waiting for {command:?}: {err}"))
}
