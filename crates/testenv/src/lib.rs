//! certflow's envtest: a real local control plane for tests, the demo and
//! benchmarks.
//!
//! [`TestEnv::start`] runs etcd, kube-apiserver (RBAC on, loopback only, its
//! own serving CA, service-account signing keys so TokenRequest works),
//! kube-controller-manager and a JetStream-enabled nats-server, each on free
//! loopback ports, waits until each is ready, writes an admin kubeconfig that
//! plain `kubectl` can use, and installs the CRDs from `deploy/crds/`.
//! [`shared`] starts one environment per test binary; tests isolate
//! themselves with their own namespace ([`TestEnv::create_namespace`]) and bus
//! prefix ([`unique_name`]). Tests that take a NATS server away from a
//! JetStream cluster start their own [`NatsCluster`] of three. Tests of the
//! API server alone, possibly of another Kubernetes release
//! ([`KubeRelease`]), start an [`ApiServerOnly`]. Tests of real Pods start a
//! [`Node`]: containerd and a kubelet registered with the environment's API
//! server.
//!
//! Children never outlive the test process (see [`process`]; a node's
//! shims and containers are swept by [`node`]); their logs stay in the
//! environment's directory and the tail is printed when start-up fails.
//! Binaries come from `scripts/install-tools.sh` (the node's from
//! `scripts/install-node-tools.sh` and `scripts/build-node-images.sh`); a
//! missing one is an error naming that command, never a skipped test. This
//! crate never talks to anything but loopback addresses and a node's own
//! private address, on the bridge interface the node creates.
#![forbid(unsafe_code)]

pub mod apiserver_only;
pub mod error;
pub mod forward;
pub mod kubeconfig;
pub mod nats;
pub mod nats_cluster;
pub mod node;
pub mod on_node;
pub mod pki;
pub mod process;
pub mod tools;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};

pub use apiserver_only::ApiServerOnly;
pub use error::{Error, Result};
pub use nats::NatsServer;
pub use nats_cluster::NatsCluster;
pub use node::Node;
pub use on_node::CertflowOnNode;
use process::{ManagedProcess, free_ports};
pub use tools::{KubeRelease, NodeImage, NodeTools, ProjectImages, Tools};

/// How long each component may take to become ready on a busy 2-core machine.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(100);

/// A running local control plane. Dropping it stops every process.
#[derive(Debug)]
pub struct TestEnv {
    dir: PathBuf,
    tools: Tools,
    api_url: String,
    kubeconfig: PathBuf,
    pki: pki::Pki,
    // Mutexes so that fault tests can stop and restart a component through a
    // shared reference; order of fields is the order of shutdown on drop.
    nats: Mutex<NatsServer>,
    controller_manager: Mutex<ManagedProcess>,
    apiserver: Mutex<ManagedProcess>,
    etcd: Mutex<ManagedProcess>,
}

/// A name no other test in this process (or recent process) uses: `prefix`,
/// the process id and a counter. Valid as a namespace and a NATS token.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// The environment shared by every test in this test binary, started on
/// first use. Panics with the start-up error (including the failing
/// process's log tail) when it cannot start, so a missing tool fails the
/// test with the command that installs it.
pub fn shared() -> &'static TestEnv {
    static SHARED: OnceLock<std::result::Result<TestEnv, String>> = OnceLock::new();
    let env = SHARED.get_or_init(|| {
        // A runtime of its own: the caller's runtime ends with its test, and
        // nothing the environment keeps may depend on it.
        std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| err.to_string())?;
            runtime
                .block_on(TestEnv::start())
                .map_err(|err| err.to_string())
        })
        .join()
        .unwrap_or_else(|_| Err("the start-up thread panicked".to_owned()))
    });
    match env {
        Ok(env) => env,
        Err(message) => panic!("the local control plane did not start: {message}"),
    }
}

impl TestEnv {
    /// Starts the whole control plane in a new directory `env-<pid>-<n>`
    /// under `$CERTFLOW_TESTENV_ROOT` when set (the caller owns that
    /// directory: nothing in it is removed, so logs can be checked after the
    /// tests, as `make test` does), else under the system temp dir's
    /// `certflow-testenv/`, where directories of exited processes are removed.
    pub async fn start() -> Result<Self> {
        let root = match std::env::var_os(ROOT_VARIABLE) {
            Some(root) => PathBuf::from(root),
            None => {
                let root = std::env::temp_dir().join("certflow-testenv");
                remove_dirs_of_dead_processes(&root);
                root
            }
        };
        let dir = root.join(unique_name("env"));
        Self::start_in(dir).await
    }

    /// Starts the whole control plane with its state and logs in `dir`.
    pub async fn start_in(dir: PathBuf) -> Result<Self> {
        let tools = Tools::locate()?;
        std::fs::create_dir_all(&dir).map_err(error::io(format!("creating {}", dir.display())))?;
        let pki = pki::Pki::generate(&dir)?;
        let audit_policy = dir.join("audit-policy.yaml");
        std::fs::write(&audit_policy, AUDIT_POLICY)
            .map_err(error::io(format!("writing {}", audit_policy.display())))?;
        let [etcd_client, etcd_peer, api_port] = free_ports()?;

        let etcd = ManagedProcess::start(
            "etcd",
            &tools.etcd,
            etcd_args(&dir, etcd_client, etcd_peer),
            dir.join("etcd.log"),
        )?;
        let etcd = Mutex::new(etcd);
        wait_for_tcp(&etcd, etcd_client).await?;

        let api_url = format!("https://127.0.0.1:{api_port}");
        let apiserver = ManagedProcess::start(
            "kube-apiserver",
            &tools.kube_apiserver,
            apiserver_args(&dir, &pki, etcd_client, api_port),
            dir.join("kube-apiserver.log"),
        )?;
        let apiserver = Mutex::new(apiserver);
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
        wait_for_apiserver(&apiserver, &kubeconfig).await?;

        let controller_manager = ManagedProcess::start(
            "kube-controller-manager",
            &tools.kube_controller_manager,
            controller_manager_args(&pki, &kubeconfig),
            dir.join("kube-controller-manager.log"),
        )?;
        let controller_manager = Mutex::new(controller_manager);

        let mut nats = NatsServer::start(&tools.nats_server, &dir.join("nats"))?;
        nats.wait_ready().await?;
        let env = Self {
            dir,
            tools,
            api_url,
            kubeconfig,
            pki,
            nats: Mutex::new(nats),
            controller_manager,
            apiserver,
            etcd,
        };
        env.wait_for_controller_manager().await?;
        env.install_crds().await?;
        tracing::info!(dir = %env.dir.display(), api = %env.api_url, "local control plane ready");
        Ok(env)
    }

    /// A new client for the admin kubeconfig. Each call builds its own, so a
    /// client never outlives the runtime of the test that made it.
    pub async fn client(&self) -> Result<kube::Client> {
        kubeconfig::client(&self.kubeconfig).await
    }

    /// The admin kubeconfig, usable with plain `kubectl --kubeconfig`.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The API server's port on 127.0.0.1.
    pub fn api_port(&self) -> u16 {
        self.api_url
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .expect("the API URL ends in its port")
    }

    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// The NATS client URL (`nats://127.0.0.1:<port>`).
    pub fn nats_url(&self) -> String {
        self.nats().url().to_owned()
    }

    /// Locks the NATS server, e.g. to restart it in a fault test.
    pub fn nats(&self) -> std::sync::MutexGuard<'_, NatsServer> {
        self.nats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops nats-server with SIGKILL (fault tests); see [`Self::restart_nats`].
    pub fn kill_nats(&self) {
        self.nats().kill();
    }

    /// Starts nats-server again on the same port and store and waits until
    /// JetStream answers (without holding the lock across the wait).
    pub async fn restart_nats(&self) -> Result<()> {
        let (url, log) = {
            let mut nats = self.nats();
            nats.respawn()?;
            (nats.url().to_owned(), nats.process().log_path().to_owned())
        };
        nats::wait_for_jetstream(&url, &log, || self.nats().check_running()).await
    }

    /// Kills nats-server, deletes its JetStream store and starts it again on
    /// the same port, as when it comes back without its volume (fault
    /// tests): clients reconnect to a server that knows no stream.
    pub async fn restart_nats_with_empty_storage(&self) -> Result<()> {
        self.nats().kill_and_wipe()?;
        self.restart_nats().await
    }

    /// Stops kube-apiserver with SIGKILL (fault tests); see [`Self::restart_apiserver`].
    pub fn kill_apiserver(&self) {
        lock(&self.apiserver).kill();
    }

    /// Starts kube-apiserver again with the same flags and waits until ready.
    pub async fn restart_apiserver(&self) -> Result<()> {
        lock(&self.apiserver).restart()?;
        wait_for_apiserver(&self.apiserver, &self.kubeconfig).await
    }

    /// The name and process id of every running child, for checks that
    /// nothing is left behind.
    pub fn pids(&self) -> Vec<(String, u32)> {
        let nats = self.nats();
        let processes = [
            lock(&self.etcd),
            lock(&self.apiserver),
            lock(&self.controller_manager),
        ];
        processes
            .iter()
            .map(|p| (p.name().to_owned(), p.pid()))
            .chain([(nats.process().name().to_owned(), nats.process().pid())])
            .filter_map(|(name, pid)| pid.map(|pid| (name, pid)))
            .collect()
    }

    /// The directory holding state, credentials and every process's log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn tools(&self) -> &Tools {
        &self.tools
    }

    /// The environment's credentials, e.g. to sign a client certificate.
    pub fn pki(&self) -> &pki::Pki {
        &self.pki
    }

    /// The CA that signed kube-apiserver's serving certificate (PEM).
    pub fn serving_ca_pem(&self) -> &str {
        &self.pki.serving_ca_pem
    }

    /// A `kubectl` command already pointed at this cluster as admin.
    pub fn kubectl(&self) -> std::process::Command {
        let mut command = std::process::Command::new(&self.tools.kubectl);
        command.env("KUBECONFIG", &self.kubeconfig);
        command
    }

    /// Creates a namespace named after `prefix` that no other test uses.
    pub async fn create_namespace(&self, prefix: &str) -> Result<String> {
        let name = unique_name(prefix);
        let namespaces: Api<Namespace> = Api::all(self.client().await?);
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        namespaces
            .create(&PostParams::default(), &namespace)
            .await?;
        self.wait_for_default_service_account(&name).await?;
        Ok(name)
    }

    /// Waits until kube-controller-manager has created `namespace`'s
    /// `default` ServiceAccount: until then the ServiceAccount admission
    /// plugin refuses every Pod that names none.
    pub async fn wait_for_default_service_account(&self, namespace: &str) -> Result<()> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client().await?, namespace);
        let deadline = Instant::now() + READY_TIMEOUT;
        while accounts.get_opt("default").await?.is_none() {
            if Instant::now() > deadline {
                return Err(Error::Other(format!(
                    "no ServiceAccount default in namespace {namespace} after {}s",
                    READY_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    /// Writes a kubeconfig that authenticates as ServiceAccount
    /// `namespace/name` with a token from the TokenRequest API (creating the
    /// ServiceAccount if needed), so a component can run with exactly the
    /// rights its RBAC grants. Returns the kubeconfig's path.
    pub async fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> Result<PathBuf> {
        let token = self
            .service_account_token(namespace, name, SERVICE_ACCOUNT_ISSUER)
            .await?;
        let path = self.dir.join(format!("kubeconfig-{namespace}-{name}"));
        kubeconfig::write(
            &path,
            &self.api_url,
            &self.pki.serving_ca_pem,
            &format!("system:serviceaccount:{namespace}:{name}"),
            kubeconfig::Credentials::Token(&token),
        )?;
        Ok(path)
    }

    /// A token of ServiceAccount `namespace/name` (created if needed) from
    /// the TokenRequest API, valid for a day and for `audience` only: what a
    /// projected serviceAccountToken volume with that audience holds.
    pub async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        audience: &str,
    ) -> Result<String> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client().await?, namespace);
        let account = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        match accounts.create(&PostParams::default(), &account).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(err) => return Err(err.into()),
        }
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(vec![audience.to_owned()]),
                expiration_seconds: Some(24 * 3600),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await?
            .status
            .and_then(|status| status.token)
            .ok_or_else(|| Error::Other("TokenRequest returned no token".to_owned()))
    }

    /// Server-side-applies every CRD in `deploy/crds/` and waits until each
    /// is Established.
    async fn install_crds(&self) -> Result<()> {
        let crd_dir = tools::repo_root().join("deploy/crds");
        let client = self.client().await?;
        let crds: Api<CustomResourceDefinition> = Api::all(client);
        let mut names = Vec::new();
        for crd in read_crds(&crd_dir)? {
            let name = crd.metadata.name.clone().unwrap_or_default();
            crds.patch(
                &name,
                &PatchParams::apply("certflow-testenv").force(),
                &Patch::Apply(&crd),
            )
            .await?;
            names.push(name);
        }
        for name in names {
            let deadline = Instant::now() + READY_TIMEOUT;
            loop {
                let crd = crds.get(&name).await?;
                let established = crd
                    .status
                    .and_then(|status| status.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                if established {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(Error::Other(format!(
                        "CRD {name} was not Established in time"
                    )));
                }
                tokio::time::sleep(POLL).await;
            }
        }
        Ok(())
    }

    /// kube-controller-manager is working once its service-account
    /// controller has created the `default` ServiceAccount.
    async fn wait_for_controller_manager(&self) -> Result<()> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client().await?, "default");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            lock(&self.controller_manager).check_running()?;
            if accounts.get_opt("default").await?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(not_ready(&self.controller_manager));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The issuer and audience of service-account tokens in the test cluster
/// (the API server's own audience).
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

fn etcd_args(dir: &Path, client: u16, peer: u16) -> Vec<String> {
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    vec![
        format!("--data-dir={}", dir.join("etcd").display()),
        format!("--listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster=default={peer_url}"),
        // Tests do not need durability across power loss; fsync dominates
        // etcd latency on a shared disk.
        "--unsafe-no-fsync".into(),
        "--log-level=warn".into(),
        "--quota-backend-bytes=8589934592".into(),
    ]
}

/// The environment variable naming where [`TestEnv::start`] puts its directories.
pub const ROOT_VARIABLE: &str = "CERTFLOW_TESTENV_ROOT";

/// The API server's audit policy: the body of every write of an Event or of
/// a certflow status, the texts certflow writes for people to read, so that
/// a test can check them for key material (`scripts/scan-key-material.sh`).
/// Nothing else is recorded; Secrets in particular are not.
const AUDIT_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
  - level: Request
    verbs: ["create", "update", "patch"]
    resources:
      - group: ""
        resources: ["events"]
      - group: "events.k8s.io"
        resources: ["events"]
      - group: "certflow.io"
        resources: ["servicecertificates/status", "certificateauthorities/status"]
  - level: None
"#;

fn apiserver_args(dir: &Path, pki: &pki::Pki, etcd_client: u16, port: u16) -> Vec<String> {
    let path = |p: &Path| p.display().to_string();
    vec![
        format!(
            "--audit-policy-file={}",
            path(&dir.join("audit-policy.yaml"))
        ),
        format!("--audit-log-path={}", path(&dir.join("audit.log"))),
        format!("--etcd-servers=http://127.0.0.1:{etcd_client}"),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={port}"),
        format!("--cert-dir={}", dir.join("apiserver-certs").display()),
        format!("--tls-cert-file={}", path(&pki.serving_cert)),
        format!("--tls-private-key-file={}", path(&pki.serving_key)),
        format!("--client-ca-file={}", path(&pki.client_ca)),
        format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"),
        format!("--api-audiences={SERVICE_ACCOUNT_ISSUER}"),
        format!(
            "--service-account-key-file={}",
            path(&pki.service_account_pub)
        ),
        format!(
            "--service-account-signing-key-file={}",
            path(&pki.service_account_key)
        ),
        "--service-cluster-ip-range=10.96.0.0/16".into(),
        // Node lets a kubelet (`system:node:<name>`, see `node.rs`) read and
        // write what its own Pods need and nothing else.
        "--authorization-mode=Node,RBAC".into(),
        // For `kubectl logs` and `exec` of Pods on a `Node`.
        format!(
            "--kubelet-client-certificate={}",
            path(&pki.kubelet_client_cert)
        ),
        format!("--kubelet-client-key={}", path(&pki.kubelet_client_key)),
        // A kubelet's Hostname address is its node name, which no DNS knows;
        // its InternalIP is the node's own private address.
        "--kubelet-preferred-address-types=InternalIP".into(),
        "--profiling=false".into(),
        // Benchmarks create thousands of objects quickly.
        "--max-requests-inflight=1600".into(),
        "--max-mutating-requests-inflight=800".into(),
        "--v=1".into(),
    ]
}

fn controller_manager_args(pki: &pki::Pki, kubeconfig: &Path) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        "--bind-address=127.0.0.1".into(),
        // Port 0 turns off its HTTPS endpoint: nothing here scrapes it.
        "--secure-port=0".into(),
        "--leader-elect=false".into(),
        format!(
            "--service-account-private-key-file={}",
            pki.service_account_key.display()
        ),
        format!("--root-ca-file={}", pki.serving_ca.display()),
        "--use-service-account-credentials=false".into(),
        "--kube-api-qps=200".into(),
        "--kube-api-burst=400".into(),
        "--concurrent-replicaset-syncs=10".into(),
        "--concurrent-deployment-syncs=10".into(),
        "--v=1".into(),
    ]
}

fn lock(process: &Mutex<ManagedProcess>) -> std::sync::MutexGuard<'_, ManagedProcess> {
    process
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn not_ready(process: &Mutex<ManagedProcess>) -> Error {
    let process = lock(process);
    Error::NotReady {
        process: process.name().to_owned(),
        seconds: READY_TIMEOUT.as_secs(),
        log: process.log_path().to_owned(),
        tail: process.tail(30),
    }
}

async fn wait_for_tcp(process: &Mutex<ManagedProcess>, port: u16) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        lock(process).check_running()?;
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(not_ready(process));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Ready means `/readyz` answers 200, which includes etcd and the
/// bootstrap RBAC policy being in place.
async fn wait_for_apiserver(process: &Mutex<ManagedProcess>, kubeconfig: &Path) -> Result<()> {
    let client = kubeconfig::client(kubeconfig).await?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        lock(process).check_running()?;
        let request = http_get("/readyz")?;
        if let Ok(body) = client.request_text(request).await
            && body.trim() == "ok"
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(not_ready(process));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn http_get(path: &str) -> Result<http::Request<Vec<u8>>> {
    http::Request::get(path)
        .body(Vec::new())
        .map_err(|err| Error::Other(err.to_string()))
}

fn read_crds(dir: &Path) -> Result<Vec<CustomResourceDefinition>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(error::io(format!("reading {}", dir.display())))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    let mut crds = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(error::io(format!("reading {}", file.display())))?;
        for document in serde_yaml::Deserializer::from_str(&text) {
            let crd: CustomResourceDefinition = serde::Deserialize::deserialize(document)
                .map_err(|err| Error::Other(format!("{}: {err}", file.display())))?;
            crds.push(crd);
        }
    }
    Ok(crds)
}

/// Environments of processes that are gone (killed test runs) leave their
/// directories behind; remove them so /tmp does not fill up.
fn remove_dirs_of_dead_processes(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .split('-')
            .nth(1)
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
