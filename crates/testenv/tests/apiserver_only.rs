//! `ApiServerOnly` runs the chosen release's kube-apiserver, and nothing but
//! it and etcd, and stops both when dropped.

use std::path::Path;
use std::time::{Duration, Instant};

use certflow_testenv::{ApiServerOnly, KubeRelease};

#[tokio::test]
async fn the_oldest_release_serves_its_own_version_and_stops_on_drop() {
    let release = KubeRelease::oldest().unwrap_or_else(|err| panic!("{err}"));
    let env = ApiServerOnly::start(&release)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let info = env
        .client()
        .await
        .expect("client")
        .apiserver_version()
        .await
        .expect("/version answers");
    assert_eq!(info.git_version, release.version);

    let pids = env.pids();
    let names: Vec<&str> = pids.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["etcd", "kube-apiserver"]);
    assert!(pids.iter().all(|(_, pid)| alive(*pid)));

    drop(env);
    let deadline = Instant::now() + Duration::from_secs(20);
    while pids.iter().any(|(_, pid)| alive(*pid)) {
        assert!(
            Instant::now() < deadline,
            "still running 20s after the drop: {pids:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
