//! certflow as real Pods on a local kubelet node (`certflow_testenv::Node`),
//! deployed from `deploy/overlays/local-node` with the images `make images`
//! builds, and what app owners see of it:
//!
//! - deploy/base's NATS, setup Job and three Deployments become Ready by
//!   their own probes, running as the image's non-root user;
//! - `examples/`: the app whose ServiceCertificate has a typo waits in
//!   ContainerCreating, and `kubectl describe pod` shows the kubelet's
//!   FailedMount beside certflow-reporter's Warning naming the typo; fixing
//!   the typo starts it with no restart; the correct app serves its
//!   certificate and a client Pod verifies it against `ca.crt`;
//! - a renewed certificate reaches the running server through the kubelet's
//!   Secret refresh, without a restart;
//! - the signer Deployment scaled 1 → 3 during a burst issues every
//!   certificate exactly once.
//!
//! One test: a host runs one node at a time, and every step needs certflow
//! rolled out on it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use certflow_api::ServiceCertificate;
use certflow_e2e::manifests::repo_root;
use certflow_e2e::services::{metrics_at, sum_metric};
use certflow_e2e::{eventually, run, run_ok};
use certflow_testenv::on_node::NAMESPACE;
use certflow_testenv::{CertflowOnNode, Node, TestEnv};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::ResourceExt as _;
use kube::api::{Api, ListParams};
use kube::runtime::watcher;

const WAIT: Duration = Duration::from_secs(120);
const SHOP: &str = "shop";

#[tokio::test]
async fn certflow_runs_as_pods_and_app_owners_see_it_work() {
    let env = certflow_testenv::shared();
    let started = Instant::now();
    let node = Node::start(env)
        .await
        .unwrap_or_else(|err| panic!("the node did not start: {err}"));
    let certflow = CertflowOnNode::deploy(env, &node)
        .await
        .unwrap_or_else(|err| panic!("certflow did not roll out: {err}"));
    eprintln!(
        "certflow rolled out {:?} after the node started",
        started.elapsed()
    );
    let client = env.client().await.expect("client");

    certflows_pods_are_ready_as_the_image_user(&client).await;
    let payments_ip = the_typo_waits_beside_its_warning_and_the_correct_app_serves(env).await;
    renewal_reaches_the_running_server(env, &client, &certflow, &payments_ip).await;
    a_signer_scaled_during_a_burst_issues_each_certificate_once(env, &client, &node).await;

    let footprint = node.footprint();
    drop(node);
    let leftovers = footprint.leftovers();
    assert!(
        leftovers.is_empty(),
        "the dropped node left behind:\n{}",
        leftovers.join("\n")
    );
    eprintln!("whole test {:?}", started.elapsed());
}

/// Every certflow Pod is Ready (its readiness probe passed on the kubelet),
/// never restarted, and runs as the user deploy/base asks for.
async fn certflows_pods_are_ready_as_the_image_user(client: &kube::Client) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let list = pods.list(&ListParams::default()).await.expect("pods");
    let mut seen = BTreeSet::new();
    for pod in list.items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.as_ref().expect("spec");
        let status = pod.status.as_ref().expect("status");
        if name.starts_with("certflow-nats-setup") {
            assert_eq!(status.phase.as_deref(), Some("Succeeded"), "{name}");
            continue;
        }
        for container in status.container_statuses.as_deref().unwrap_or_default() {
            assert!(container.ready, "{name}/{} is Ready", container.name);
            assert_eq!(
                container.restart_count, 0,
                "{name}/{} never restarted",
                container.name
            );
        }
        let run_as = spec.security_context.as_ref().and_then(|s| s.run_as_user);
        assert_eq!(run_as, Some(65532), "{name} runs as 65532");
        if let Some(component) = pod.labels().get("app.kubernetes.io/name") {
            seen.insert(component.clone());
        }
    }
    eprintln!("Ready: {seen:?}");
    for component in ["certflow-watcher", "certflow-signer", "certflow-reporter"] {
        assert!(
            seen.contains(component),
            "a Ready {component} Pod: {seen:?}"
        );
    }
}

/// Applies `examples/` as `make demo` does. Returns the payments Pod's IP.
async fn the_typo_waits_beside_its_warning_and_the_correct_app_serves(env: &TestEnv) -> String {
    run_ok(
        env.kubectl().args(["apply", "-f", &repo_path("examples")]),
        "",
    );
    env.wait_for_default_service_account(SHOP)
        .await
        .expect("shop's default ServiceAccount");
    let client = env.client().await.expect("client");
    let pods: Api<Pod> = Api::namespaced(client.clone(), SHOP);

    let payments = running_pod(&pods, "app=payments").await;
    let payments_ip = payments
        .status
        .and_then(|s| s.pod_ip)
        .expect("payments has an IP");

    // The typo: the kubelet cannot mount the Secret certflow refuses to
    // issue, and certflow-reporter says why, on the same Pod.
    let checkout = eventually("a checkout Pod", WAIT, || async {
        pods.list(&ListParams::default().labels("app=checkout"))
            .await
            .ok()?
            .items
            .into_iter()
            .next()
    })
    .await;
    let checkout_name = checkout.metadata.name.clone().expect("name");
    let events: Api<Event> = Api::namespaced(client.clone(), SHOP);
    eventually(
        "FailedMount and certflow's Warning on checkout",
        WAIT,
        || async {
            let list = events
                .list(
                    &ListParams::default().fields(&format!("involvedObject.name={checkout_name}")),
                )
                .await
                .ok()?;
            let from = |component: &str| {
                list.items.iter().any(|e| {
                    e.type_.as_deref() == Some("Warning")
                        && (e.source.as_ref().and_then(|s| s.component.as_deref())
                            == Some(component)
                            || e.reporting_component.as_deref() == Some(component))
                })
            };
            (from("kubelet") && from("certflow-reporter")).then_some(())
        },
    )
    .await;
    let describe = run_ok(
        env.kubectl()
            .args(["-n", SHOP, "describe", "pod", &checkout_name]),
        "",
    );
    eprintln!("{describe}");
    for expected in [
        "ContainerCreating",
        "FailedMount",
        r#"secret "checkout-tls" not found"#,
        "certflow-reporter",
        "cluster.locl",
    ] {
        assert!(
            describe.contains(expected),
            "kubectl describe pod {checkout_name} shows {expected:?}:\n{describe}"
        );
    }

    // The fix: the same Pod starts, nobody restarts anything.
    let fixed = Instant::now();
    run_ok(
        env.kubectl().args([
            "-n",
            SHOP,
            "patch",
            "scert",
            "checkout-tls",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/dnsNames/0","value":"checkout.shop.svc.cluster.local"}]"#,
        ]),
        "",
    );
    let running = running_pod(&pods, "app=checkout").await;
    assert_eq!(
        running.metadata.name.as_deref(),
        Some(checkout_name.as_str())
    );
    eprintln!("checkout Running {:?} after the fix", fixed.elapsed());

    // The client verifies payments against its own Secret's ca.crt.
    let manifest = std::fs::read_to_string(repo_path("examples/client/verify-payments.yaml"))
        .expect("the client manifest")
        .replace("PAYMENTS_ADDRESS", &format!("{payments_ip}:8443"));
    run_ok(env.kubectl().args(["apply", "-f", "-"]), &manifest);
    let serial = issued_serial(&client, SHOP, "payments-tls").await;
    let line = eventually("the client's verified line", WAIT, || async {
        logs(env, SHOP, "shop-client")
            .lines()
            .find(|l| l.starts_with("verified "))
            .map(str::to_owned)
    })
    .await;
    eprintln!("{line}");
    assert!(
        line.starts_with(&format!(
            "verified payments.shop.svc at {payments_ip}:8443: serial {serial} issuer "
        )),
        "the client verified the issued certificate: {line}"
    );
    payments_ip
}

/// A certificate of one minute renewed 40 s before it ends: the running
/// server serves each new serial once the kubelet refreshes the volume.
async fn renewal_reaches_the_running_server(
    env: &TestEnv,
    client: &kube::Client,
    certflow: &CertflowOnNode,
    payments_ip: &str,
) {
    let image = certflow.example_app_image();
    let manifest = format!(
        r#"apiVersion: certflow.io/v1alpha1
kind: ServiceCertificate
metadata: {{name: rotating-tls, namespace: shop}}
spec:
  secretName: rotating-tls
  dnsNames: [rotating.shop.svc]
  duration: 1m
  renewBefore: 40s
---
apiVersion: v1
kind: Pod
metadata: {{name: rotating, namespace: shop, labels: {{app: rotating}}}}
spec:
  securityContext: {{runAsNonRoot: true, runAsUser: 65532}}
  containers:
    - name: server
      image: {image}
      args: [serve, --cert-dir, /etc/tls]
      volumeMounts: [{{name: tls, mountPath: /etc/tls, readOnly: true}}]
  volumes: [{{name: tls, secret: {{secretName: rotating-tls}}}}]
"#
    );
    run_ok(env.kubectl().args(["apply", "-f", "-"]), &manifest);
    let pods: Api<Pod> = Api::namespaced(client.clone(), SHOP);
    let server = running_pod(&pods, "app=rotating").await;
    let server_ip = server.status.and_then(|s| s.pod_ip).expect("an IP");
    let first = issued_serial(client, SHOP, "rotating-tls").await;

    let scerts: Api<ServiceCertificate> = Api::namespaced(client.clone(), SHOP);
    let renewed = eventually("a renewal of rotating-tls", WAIT, || async {
        let serial = scerts
            .get("rotating-tls")
            .await
            .ok()?
            .status?
            .serial_number?;
        (serial != first).then_some(serial)
    })
    .await;
    let since = Instant::now();
    let addr: SocketAddr = format!("{server_ip}:8443").parse().expect("addr");
    let verified = eventually("the server to serve the renewed serial", WAIT, || async {
        let output = run(
            env.kubectl().args([
                "-n",
                SHOP,
                "exec",
                "shop-client",
                "--",
                "certflow-example-app",
                "check",
                "--connect",
                &addr.to_string(),
                "--server-name",
                "rotating.shop.svc",
                "--ca",
                "/etc/tls/ca.crt",
            ]),
            "",
        );
        let line = String::from_utf8_lossy(&output.stdout).into_owned();
        line.contains(&format!("serial {renewed} ")).then_some(line)
    })
    .await;
    let delay = since.elapsed();
    eprintln!("renewed serial {renewed} served {delay:?} after the status said so: {verified}");
    let server_log = logs(env, SHOP, "rotating");
    assert!(
        server_log.contains(&format!("serving serial {renewed} ")),
        "the server reloaded the renewed certificate:\n{server_log}"
    );
    let restarts = pods
        .get("rotating")
        .await
        .expect("rotating")
        .status
        .and_then(|s| s.container_statuses)
        .map(|c| c[0].restart_count);
    assert_eq!(restarts, Some(0), "no restart");
    // payments' client keeps verifying while this happens.
    assert!(
        logs(env, SHOP, "shop-client")
            .contains(&format!("verified payments.shop.svc at {payments_ip}")),
        "the client still verifies payments"
    );
    run_ok(
        env.kubectl()
            .args(["-n", SHOP, "delete", "scert", "rotating-tls"]),
        "",
    );
}

/// A burst of ServiceCertificates with RSA 4096 keys, whose generation keeps
/// one signer busy for many seconds; the signer Deployment scaled from 1 to
/// 3 with `kubectl scale` while it runs. Every Secret ever holds one
/// certificate (a watch from before the burst sees each write), and the new
/// replicas took part.
async fn a_signer_scaled_during_a_burst_issues_each_certificate_once(
    env: &TestEnv,
    client: &kube::Client,
    node: &Node,
) {
    const COUNT: usize = 40;
    let ns = env.create_namespace("burst").await.expect("namespace");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let certificates = tokio::spawn(async move {
        let mut seen: BTreeMap<String, BTreeSet<Vec<u8>>> = BTreeMap::new();
        let mut events = std::pin::pin!(watcher(secrets, watcher::Config::default()).boxed());
        while let Some(event) = events.next().await {
            let secret = match event {
                Ok(watcher::Event::Apply(secret) | watcher::Event::InitApply(secret)) => secret,
                Ok(_) => continue,
                Err(err) => panic!("the Secret watch failed: {err}"),
            };
            let name = secret.metadata.name.clone().unwrap_or_default();
            if let Some(crt) = secret.data.and_then(|d| d.get("tls.crt").cloned()) {
                seen.entry(name).or_default().insert(crt.0);
                if seen.len() == COUNT && seen.values().all(|c| !c.is_empty()) {
                    // Keep watching a little for late rewrites.
                    let _ = tokio::time::timeout(Duration::from_secs(5), async {
                        while let Some(Ok(watcher::Event::Apply(secret))) = events.next().await {
                            let name = secret.metadata.name.clone().unwrap_or_default();
                            if let Some(crt) = secret.data.and_then(|d| d.get("tls.crt").cloned()) {
                                seen.entry(name).or_default().insert(crt.0);
                            }
                        }
                    })
                    .await;
                    return seen;
                }
            }
        }
        seen
    });
    let manifests: String = (0..COUNT)
        .map(|i| {
            format!(
                "apiVersion: certflow.io/v1alpha1\nkind: ServiceCertificate\n\
                 metadata: {{name: svc-{i}}}\n\
                 spec: {{secretName: svc-{i}-tls, dnsNames: [svc-{i}.{ns}.svc], \
                 privateKey: {{algorithm: RSA, size: 4096}}}}\n---\n"
            )
        })
        .collect();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let first_signers: BTreeSet<String> = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=certflow-signer"))
        .await
        .expect("signer pods")
        .items
        .into_iter()
        .filter_map(|pod| pod.metadata.name)
        .collect();
    assert_eq!(first_signers.len(), 1, "one signer before the burst");
    let burst = Instant::now();
    run_ok(
        env.kubectl().args(["-n", &ns, "apply", "-f", "-"]),
        &manifests,
    );
    run_ok(
        env.kubectl().args([
            "-n",
            NAMESPACE,
            "scale",
            "deployment/certflow-signer",
            "--replicas=3",
        ]),
        "",
    );
    run_ok(
        env.kubectl().args([
            "-n",
            NAMESPACE,
            "rollout",
            "status",
            "deployment/certflow-signer",
            "--timeout=120s",
        ]),
        "",
    );
    let seen = tokio::time::timeout(WAIT, certificates)
        .await
        .expect("every Secret issued in time")
        .expect("the watch task");
    eprintln!(
        "{COUNT} certificates in {:?} with the signer scaled to 3",
        burst.elapsed()
    );
    let rewritten: Vec<_> = seen
        .iter()
        .filter(|(_, c)| c.len() != 1)
        .map(|(n, _)| n)
        .collect();
    assert!(
        rewritten.is_empty(),
        "Secrets issued more than once: {rewritten:?}"
    );
    assert_eq!(seen.len(), COUNT);

    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let signers = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=certflow-signer"))
        .await
        .expect("signer pods");
    assert_eq!(signers.items.len(), 3, "three signer Pods");
    let mut by_new_replicas = 0.0;
    for pod in &signers.items {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .expect("an IP");
        let text = metrics_at(format!("{ip}:9090").parse().expect("addr")).await;
        let issued = sum_metric(&text, "certflow_signer_certificates_issued_total");
        eprintln!(
            "signer {name} on {}: {issued} certificates issued",
            node.name()
        );
        if !first_signers.contains(name) {
            by_new_replicas += issued;
        }
    }
    assert!(
        by_new_replicas > 0.0,
        "the replicas added during the burst issued some of it"
    );
}

/// The Pod with `labels`, once Running with every container ready.
async fn running_pod(pods: &Api<Pod>, labels: &str) -> Pod {
    eventually(&format!("a Running, ready Pod {labels}"), WAIT, || async {
        pods.list(&ListParams::default().labels(labels))
            .await
            .ok()?
            .items
            .into_iter()
            .find(|pod| {
                let Some(status) = pod.status.as_ref() else {
                    return false;
                };
                status.phase.as_deref() == Some("Running")
                    && status
                        .container_statuses
                        .as_deref()
                        .unwrap_or_default()
                        .iter()
                        .all(|c| c.ready)
            })
    })
    .await
}

/// The serial number the ServiceCertificate's status names, once issued.
async fn issued_serial(client: &kube::Client, namespace: &str, name: &str) -> String {
    let scerts: Api<ServiceCertificate> = Api::namespaced(client.clone(), namespace);
    eventually(&format!("{name} issued"), WAIT, || async {
        scerts.get(name).await.ok()?.status?.serial_number
    })
    .await
}

fn logs(env: &TestEnv, namespace: &str, pod: &str) -> String {
    let output = run(env.kubectl().args(["-n", namespace, "logs", pod]), "");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn repo_path(path: &str) -> String {
    repo_root().join(path).display().to_string()
}
