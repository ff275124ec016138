//! etcd and the kube-apiserver of a chosen Kubernetes release, nothing else:
//! for tests of what the API server alone does with certflow's manifests,
//! such as whether the CRDs install on each Kubernetes minor the docs claim
//! (`tests/e2e/crd_versions.rs`).
//!
//! [`ApiServerOnly::start`] runs the release's kube-apiserver with the same
//! flags, PKI and admin kubeconfig as [`crate::TestEnv`], but starts no
//! controller-manager or NATS and installs no CRDs: what the caller applies is
//! what the API server holds. Its state and logs go to a directory as
//! [`crate::TestEnv::start`]'s do; its processes stop when it is dropped.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{self, Result};
use crate::process::{ManagedProcess, free_ports};
use crate::tools::{KubeRelease, Tools};
use crate::{AUDIT_POLICY, ROOT_VARIABLE, kubeconfig, pki, unique_name};

/// A running etcd and kube-apiserver. Dropping it stops both.
#[derive(Debug)]
pub struct ApiServerOnly {
    dir: PathBuf,
    release: KubeRelease,
    api_url: String,
    kubeconfig: PathBuf,
    // Shut down in field order: the API server before its etcd.
    apiserver: Mutex<ManagedProcess>,
    etcd: Mutex<ManagedProcess>,
}

impl ApiServerOnly {
    /// Starts etcd (the pinned one of [`Tools::locate`]) and `release`'s
    /// kube-apiserver in a new directory `apiserver-<pid>-<n>` under
    /// `$CERTFLOW_TESTENV_ROOT` when set, else under the system temp dir's
    /// `certflow-testenv/` (where directories of exited processes are
    /// removed), and waits until `/readyz` answers.
    pub async fn start(release: &KubeRelease) -> Result<Self> {
        let root = match std::env::var_os(ROOT_VARIABLE) {
            Some(root) => PathBuf::from(root),
            None => {
                let root = std::env::temp_dir().join("certflow-testenv");
                crate::remove_dirs_of_dead_processes(&root);
                root
            }
        };
        let dir = root.join(unique_name("apiserver"));
        let tools = Tools::locate()?;
        std::fs::create_dir_all(&dir).map_err(error::io(format!("creating {}", dir.display())))?;
        let pki = pki::Pki::generate(&dir)?;
        let audit_policy = dir.join("audit-policy.yaml");
        std::fs::write(&audit_policy, AUDIT_POLICY)
            .map_err(error::io(format!("writing {}", audit_policy.display())))?;
        let [etcd_client, etcd_peer, api_port] = free_ports()?;

        let etcd = Mutex::new(ManagedProcess::start(
            "etcd",
            &tools.etcd,
            crate::etcd_args(&dir, etcd_client, etcd_peer),
            dir.join("etcd.log"),
        )?);
        crate::wait_for_tcp(&etcd, etcd_client).await?;

        let api_url = format!("https://127.0.0.1:{api_port}");
        let mut args = crate::apiserver_args(&dir, &pki, etcd_client, api_port);
        // Since v1.37 the endpoint reconciler refuses the loopback
        // --advertise-address; nothing here reads the `kubernetes` Service's
        // endpoints, so it is turned off (a flag every supported release has).
        args.push("--endpoint-reconciler-type=none".into());
        let apiserver = Mutex::new(ManagedProcess::start(
            "kube-apiserver",
            &release.kube_apiserver,
            args,
            dir.join("kube-apiserver.log"),
        )?);
        let kubeconfig = dir.join("kubeconfig");
        kubeconfig::write(
            &kubeconfig,
            &api_url,
            &pki.serving_ca_pem,
            "admin",
            kubeconfig::Credentials::ClientCertificate {
                cert_pem: &pki.admin_cert_pem,
                key_pem: &pki.admin_key_pem,
            },
        )?;
        crate::wait_for_apiserver(&apiserver, &kubeconfig).await?;
        tracing::info!(
            dir = %dir.display(),
            api = %api_url,
            version = %release.version,
            "kube-apiserver ready"
        );
        Ok(Self {
            dir,
            release: release.clone(),
            api_url,
            kubeconfig,
            apiserver,
            etcd,
        })
    }

    /// A new client for the admin kubeconfig.
    pub async fn client(&self) -> Result<kube::Client> {
        kubeconfig::client(&self.kubeconfig).await
    }

    /// The admin kubeconfig, usable with plain `kubectl --kubeconfig`.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// The release this API server is.
    pub fn release(&self) -> &KubeRelease {
        &self.release
    }

    /// The release's own `kubectl`, already pointed at this API server as admin.
    pub fn kubectl(&self) -> std::process::Command {
        let mut command = std::process::Command::new(&self.release.kubectl);
        command.env("KUBECONFIG", &self.kubeconfig);
        command
    }

    /// The directory holding state, credentials and both processes' logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The process ids of etcd and kube-apiserver while they run.
    pub fn pids(&self) -> Vec<(String, u32)> {
        [&self.etcd, &self.apiserver]
            .iter()
            .map(|process| crate::lock(process))
            .filter_map(|p| p.pid().map(|pid| (p.name().to_owned(), pid)))
            .collect()
    }
}
