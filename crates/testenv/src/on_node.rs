//! certflow as Pods: `deploy/overlays/local-node` applied to a [`Node`],
//! as an operator would apply `deploy/base`.
//!
//! Observes the rollout (the NATS StatefulSet, the setup Job, the three
//! Deployments) until each is ready by its own probes. Writes, through the
//! API server: the namespace `certflow-system`, the Secret
//! `certflow-nats-users` an operator creates by hand (docs/deploy.md,
//! "Create the NATS passwords"), and the overlay's objects; on the node:
//! the project's images (`scripts/build-images.sh`). What only exists once
//! the node runs is added by a kustomization rendered into the node's
//! directory on top of the overlay: `hostAliases` mapping
//! `kubernetes.default.svc` (a name the API server's certificate holds) and
//! `certflow-nats` to the node's address, where the API server is forwarded
//! and the NATS server listens, and `KUBERNETES_SERVICE_HOST` and
//! `KUBERNETES_SERVICE_PORT`, which in-cluster clients read.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Deserialize as _;

use crate::error::{Error, Result, io};
use crate::tools::{ProjectImages, repo_root};
use crate::{Node, TestEnv};

/// The namespace deploy/base installs into.
pub const NAMESPACE: &str = "certflow-system";
/// The NATS users deploy/base/nats/auth.conf defines, each with a password.
const NATS_USERS: [&str; 5] = ["watcher", "signer", "reporter", "setup", "admin"];
/// How long the rollout may take on a busy 2-core machine.
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(180);

/// certflow running on a node, deployed from `deploy/overlays/local-node`.
#[derive(Debug)]
pub struct CertflowOnNode {
    images: ProjectImages,
    overlay: PathBuf,
}

impl CertflowOnNode {
    /// Imports the project's images into `node`, creates the namespace and
    /// the NATS users' Secret, applies the overlay with server-side apply
    /// and waits until NATS is ready, the setup Job complete and the three
    /// Deployments available.
    pub async fn deploy(env: &TestEnv, node: &Node) -> Result<Self> {
        let images = ProjectImages::locate()?;
        node.import_images(&[&images.certflow, &images.example_app])?;
        let overlay = node.dir().join("certflow-overlay");
        std::fs::create_dir_all(&overlay).map_err(io(format!("creating {}", overlay.display())))?;
        let rendered = kubectl(
            env.kubectl().args(["kustomize"]).arg(
                repo_root()
                    .join("deploy/overlays/local-node")
                    .display()
                    .to_string(),
            ),
            "rendering deploy/overlays/local-node",
        )?;
        write(&overlay.join("local-node.yaml"), &rendered)?;
        let infrastructure = overlay.join("infrastructure.yaml");
        write(&infrastructure, &without_workloads(&rendered)?)?;

        kubectl(
            env.kubectl().args(["create", "namespace", NAMESPACE]),
            "creating the namespace",
        )?;
        env.wait_for_default_service_account(NAMESPACE).await?;
        create_nats_users(env)?;
        kubectl(
            env.kubectl()
                .args(["apply", "--server-side", "-f"])
                .arg(&infrastructure),
            "applying deploy/overlays/local-node without its Deployments and Job",
        )?;
        let timeout = format!("--timeout={}s", ROLLOUT_TIMEOUT.as_secs());
        rollout(env, "statefulset/certflow-nats", &timeout)?;
        let nats_ip = kubectl(
            env.kubectl().args([
                "-n",
                NAMESPACE,
                "get",
                "pod",
                "certflow-nats-0",
                "-o",
                "jsonpath={.status.podIP}",
            ]),
            "reading the NATS Pod's address",
        )?;

        let api = node.api_address();
        write(
            &overlay.join("kustomization.yaml"),
            &node_kustomization(&api.ip().to_string(), api.port(), nats_ip.trim()),
        )?;
        kubectl(
            env.kubectl()
                .args(["apply", "--server-side", "-k"])
                .arg(&overlay),
            "applying deploy/overlays/local-node",
        )?;
        kubectl(
            env.kubectl().args([
                "-n",
                NAMESPACE,
                "wait",
                "--for=condition=complete",
                "job/certflow-nats-setup",
                &timeout,
            ]),
            "waiting for the setup Job",
        )?;
        for deployment in ["certflow-watcher", "certflow-signer", "certflow-reporter"] {
            rollout(env, &format!("deployment/{deployment}"), &timeout)?;
        }
        Ok(Self { images, overlay })
    }

    /// The name of the imported example-app image (`crates/example-app`).
    pub fn example_app_image(&self) -> &str {
        &self.images.example_app.name
    }

    /// The rendered kustomization that was applied.
    pub fn overlay(&self) -> &Path {
        &self.overlay
    }
}

/// The Secret an operator creates before applying (docs/deploy.md, "Create
/// the NATS passwords"): a password and its bcrypt hash per user, only the
/// hash of the admin's.
fn create_nats_users(env: &TestEnv) -> Result<()> {
    let mut create = env.kubectl();
    create.args([
        "-n",
        NAMESPACE,
        "create",
        "secret",
        "generic",
        "certflow-nats-users",
    ]);
    for user in NATS_USERS {
        let password = random_password();
        let hash =
            bcrypt::hash(&password, 10).map_err(|err| Error::Other(format!("bcrypt: {err}")))?;
        if user != "admin" {
            create.arg(format!("--from-literal={user}={password}"));
        }
        // Quoted, as docs/deploy.md says: nats-server reads the value as
        // configuration, where a bare `$` starts a variable.
        create.arg(format!("--from-literal={user}-bcrypt=\"{hash}\""));
    }
    kubectl(&mut create, "creating the Secret certflow-nats-users").map(drop)
}

/// Waits for `kubectl rollout status` of `object` in the namespace; on
/// timeout the error carries what `kubectl describe` says of its Pods.
fn rollout(env: &TestEnv, object: &str, timeout: &str) -> Result<()> {
    let waited = kubectl(
        env.kubectl()
            .args(["-n", NAMESPACE, "rollout", "status", object, timeout]),
        &format!("waiting for {object}"),
    );
    waited.map(drop).map_err(|err| {
        let pods = env
            .kubectl()
            .args(["-n", NAMESPACE, "describe", "pods"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        Error::Other(format!("{err}\nkubectl describe pods:\n{pods}"))
    })
}

/// The rendered overlay without its Deployments and Job, which need the
/// NATS Pod's address.
fn without_workloads(rendered: &str) -> Result<String> {
    let mut kept = Vec::new();
    for document in serde_yaml::Deserializer::from_str(rendered) {
        let object = serde_yaml::Value::deserialize(document)
            .map_err(|err| Error::Other(format!("the rendered overlay: {err}")))?;
        if !matches!(object["kind"].as_str(), Some("Deployment" | "Job")) {
            kept.push(
                serde_yaml::to_string(&object)
                    .map_err(|err| Error::Other(format!("the rendered overlay: {err}")))?,
            );
        }
    }
    Ok(kept.join("---\n"))
}

/// The kustomization on top of the rendered overlay: every Pod of
/// certflow's reaches the API server at the node's address and NATS at its
/// Pod's.
fn node_kustomization(node_ip: &str, api_port: u16, nats_ip: &str) -> String {
    let pod_patch = |kind: &str| {
        format!(
            r#"  - target:
      kind: {kind}
    patch: |-
      - op: add
        path: /spec/template/spec/hostAliases
        value:
          - ip: "{node_ip}"
            hostnames: ["kubernetes.default.svc"]
          - ip: "{nats_ip}"
            hostnames: ["certflow-nats"]
      - op: add
        path: /spec/template/spec/containers/0/env/-
        value: {{name: KUBERNETES_SERVICE_HOST, value: kubernetes.default.svc}}
      - op: add
        path: /spec/template/spec/containers/0/env/-
        value: {{name: KUBERNETES_SERVICE_PORT, value: "{api_port}"}}
"#
        )
    };
    format!(
        "# Rendered by certflow_testenv::CertflowOnNode for this node.\n\
         apiVersion: kustomize.config.k8s.io/v1beta1\n\
         kind: Kustomization\n\
         resources:\n  - local-node.yaml\n\
         patches:\n{}{}",
        pod_patch("Deployment"),
        pod_patch("Job"),
    )
}

/// 24 random bytes as hex, as `openssl rand -hex 24` in docs/deploy.md.
fn random_password() -> String {
    let mut bytes = [0u8; 24];
    rand::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).map_err(io(format!("writing {}", path.display())))
}

/// Runs a kubectl command, returning stdout, or an error with its output.
fn kubectl(command: &mut Command, what: &str) -> Result<String> {
    let output = command
        .output()
        .map_err(io(format!("running kubectl: {what}")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(Error::Other(format!(
            "{what}: kubectl failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_layer_points_deployments_and_jobs_at_the_node() {
        let text = node_kustomization("10.213.0.1", 41234, "10.213.0.5");
        let value: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
        let patches = value["patches"].as_sequence().expect("patches");
        let kinds: Vec<&str> = patches
            .iter()
            .map(|p| p["target"]["kind"].as_str().expect("kind"))
            .collect();
        assert_eq!(kinds, ["Deployment", "Job"]);
        for patch in patches {
            let ops: serde_yaml::Value =
                serde_yaml::from_str(patch["patch"].as_str().expect("patch")).expect("ops");
            assert_eq!(ops[0]["value"][0]["ip"], "10.213.0.1");
            assert_eq!(ops[0]["value"][1]["ip"], "10.213.0.5");
            assert_eq!(ops[2]["value"]["value"], "41234");
        }
    }

    #[test]
    fn passwords_are_48_hex_digits_and_differ() {
        let (a, b) = (random_password(), random_password());
        assert_eq!(a.len(), 48);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
