//! A real kubelet node (`certflow_testenv::Node`: containerd, runc and a
//! kubelet registered with the local API server): a host-network Pod runs
//! the locally built busybox image with a Secret mounted and its output is
//! what `kubectl logs` shows; a Pod whose Secret does not exist stays
//! ContainerCreating with the kubelet's own FailedMount event; and dropping
//! the node leaves no process, mount, cgroup or interface behind.

use std::time::{Duration, Instant};

use certflow_e2e::{eventually, run, run_ok};
use certflow_testenv::Node;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams};

const WAIT: Duration = Duration::from_secs(60);

/// A host-network Pod bound to `node` by name (no scheduler runs), mounting
/// Secret `secret` at /etc/greeting and printing its `message`.
fn pod(name: &str, node: &Node, secret: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: {node_name}
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: {image}
      imagePullPolicy: Never
      command: ["sh", "-c", "echo \"uid=$(id -u) says: $(cat /etc/greeting/message)\"; exec sleep 3600"]
      volumeMounts:
        - name: greeting
          mountPath: /etc/greeting
          readOnly: true
  volumes:
    - name: greeting
      secret:
        secretName: {secret}
"#,
        node_name = node.name(),
        image = node.busybox_image(),
    )
}

#[tokio::test]
async fn pods_run_on_a_real_kubelet_a_missing_secret_is_its_failed_mount_and_the_node_leaves_nothing_behind()
 {
    let env = certflow_testenv::shared();
    let started = Instant::now();
    let node = Node::start(env)
        .await
        .unwrap_or_else(|err| panic!("the node did not start: {err}"));
    eprintln!("node {} Ready after {:?}", node.name(), started.elapsed());
    let ns = env.create_namespace("node").await.expect("namespace");
    let client = env.client().await.expect("client");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);

    run_ok(
        env.kubectl().args([
            "-n",
            &ns,
            "create",
            "secret",
            "generic",
            "greeting",
            "--from-literal=message=hello from a Secret",
        ]),
        "",
    );
    let manifests = format!(
        "{}---\n{}",
        pod("greeter", &node, "greeting"),
        pod("typo", &node, "greting")
    );
    run_ok(
        env.kubectl().args(["-n", &ns, "apply", "-f", "-"]),
        &manifests,
    );

    // The greeter runs, and its output is the container's stdout as the
    // kubelet serves it to kubectl (API server → kubelet on the node's IP).
    let since = Instant::now();
    eventually("the greeter Pod to be Running and ready", WAIT, || async {
        let pod = pods.get("greeter").await.ok()?;
        let status = pod.status?;
        let ready = status
            .container_statuses?
            .iter()
            .any(|c| c.name == "main" && c.ready);
        (status.phase.as_deref() == Some("Running") && ready).then_some(())
    })
    .await;
    eprintln!("greeter Running after {:?}", since.elapsed());
    let logs = eventually("the greeter's output in kubectl logs", WAIT, || async {
        let output = run(env.kubectl().args(["-n", &ns, "logs", "greeter"]), "");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.contains("says:").then_some(text)
    })
    .await;
    assert_eq!(logs.trim(), "uid=0 says: hello from a Secret");

    // The Secret is a tmpfs the kubelet mounted under the node's directory:
    // the sweep below has something to take away.
    let secret_mounts = mounts_under(node.dir());
    assert!(
        secret_mounts
            .iter()
            .any(|m| m.contains("kubernetes.io~secret/greeting")),
        "the greeter's Secret volume is mounted under {}: {secret_mounts:?}",
        node.dir().display()
    );

    // The typo: ContainerCreating, with the kubelet's FailedMount event
    // naming the missing Secret, as an app owner sees it in describe.
    let events: Api<Event> = Api::namespaced(client, &ns);
    let failed_mount = eventually("the kubelet's FailedMount event on typo", WAIT, || async {
        let list = events
            .list(&ListParams::default().fields("involvedObject.name=typo"))
            .await
            .ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("FailedMount"))
    })
    .await;
    let message = failed_mount.message.unwrap_or_default();
    assert!(
        message.contains(r#"secret "greting" not found"#),
        "FailedMount names the missing Secret: {message}"
    );
    assert_eq!(
        failed_mount.source.and_then(|s| s.component).as_deref(),
        Some("kubelet"),
        "the kubelet wrote it"
    );
    let describe = run_ok(
        env.kubectl().args(["-n", &ns, "describe", "pod", "typo"]),
        "",
    );
    for expected in [
        "ContainerCreating",
        "FailedMount",
        r#"secret "greting" not found"#,
        &format!("{}/{}", node.name(), node.ip()),
    ] {
        assert!(
            describe.contains(expected),
            "kubectl describe pod typo shows {expected:?}:\n{describe}"
        );
    }

    // Dropping the node stops everything and leaves nothing behind.
    let footprint = node.footprint();
    let dir = node.dir().to_owned();
    let since = Instant::now();
    drop(node);
    eprintln!("node dropped in {:?}", since.elapsed());
    let leftovers = footprint.leftovers();
    assert!(
        leftovers.is_empty(),
        "the dropped node left behind:\n{}",
        leftovers.join("\n")
    );
    assert_eq!(
        mounts_under(&dir),
        Vec::<String>::new(),
        "no mount under the node's directory"
    );
    eprintln!("whole test {:?}", started.elapsed());
}

/// Mount points under `dir`, read here rather than through testenv, so the
/// check does not share the sweep's code.
fn mounts_under(dir: &std::path::Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| point.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}
