//! No control-plane process outlives its owner, even one killed with SIGKILL.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn every_child_dies_when_the_environment_process_is_killed() {
    let dir = std::env::temp_dir().join(certflow_testenv::unique_name("lifecycle"));
    let mut owner = Command::new(env!("CARGO_BIN_EXE_certflow-testenv"))
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start certflow-testenv");
    let stdout = owner.stdout.take().expect("stdout");
    let mut pids = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read stdout");
        if let Some((_, pid)) = line.split_once(" pid=") {
            pids.push(pid.parse::<u32>().expect("pid"));
        }
        if line.starts_with("ready:") {
            break;
        }
    }
    assert_eq!(
        pids.len(),
        4,
        "etcd, kube-apiserver, kube-controller-manager, nats-server"
    );
    assert!(pids.iter().all(|pid| alive(*pid)));

    owner.kill().expect("SIGKILL the owner");
    owner.wait().expect("reap the owner");

    let deadline = Instant::now() + Duration::from_secs(20);
    while pids.iter().any(|pid| alive(*pid)) {
        assert!(
            Instant::now() < deadline,
            "children still alive 20s after their owner was killed: {:?}",
            pids.iter().filter(|pid| alive(**pid)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A zombie (state Z) has exited; only its parent has not reaped it yet.
fn alive(pid: u32) -> bool {
    let stat = Path::new("/proc").join(pid.to_string()).join("stat");
    match std::fs::read_to_string(stat) {
        Ok(text) => !text
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
