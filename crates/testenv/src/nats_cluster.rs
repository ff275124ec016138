//! A three-server NATS JetStream cluster on loopback, shaped like deploy/'s
//! StatefulSet: one cluster name, every server routed to every other, each
//! with its own server name and file store.
//!
//! For tests that show certflow survives losing one server: kill a node with
//! SIGKILL, start it again on the same store, or start it again without its
//! store, as when its volume is lost. The nodes are ordinary
//! [`ManagedProcess`]es, so they die with the test process like every other
//! child. The cluster is not part of [`crate::TestEnv`]: only the tests
//! that need it pay for three servers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result, io};
use crate::process::{ManagedProcess, free_ports, tail};

/// Servers in the cluster: the smallest JetStream quorum that survives the
/// loss of one, and what deploy/ runs.
pub const NODES: usize = 3;

/// How long a node may take to become healthy: a fresh cluster elects its
/// meta leader, and a restarted node catches up every stream it holds. Raft
/// elections alone take several seconds.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(100);

/// Three nats-servers forming one JetStream cluster.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<Node>,
}

#[derive(Debug)]
struct Node {
    name: String,
    process: ManagedProcess,
    client_port: u16,
    monitor_port: u16,
    store: PathBuf,
}

impl NatsCluster {
    /// Starts [`NODES`] servers of `binary` with their configurations, stores
    /// and logs under `dir` (`nats-<i>.conf`, `nats-<i>/jetstream`,
    /// `nats-<i>.log`), and waits until every one is healthy.
    pub async fn start(binary: &Path, dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let client_ports: [u16; NODES] = free_ports()?;
        let monitor_ports: [u16; NODES] = free_ports()?;
        let route_ports: [u16; NODES] = free_ports()?;
        let routes: Vec<String> = route_ports
            .iter()
            .map(|port| format!("    \"nats-route://127.0.0.1:{port}\""))
            .collect();
        let mut nodes = Vec::with_capacity(NODES);
        for i in 0..NODES {
            let name = format!("nats-{i}");
            let store = dir.join(&name).join("jetstream");
            let config = dir.join(format!("{name}.conf"));
            // max_file_store: every stream reserves its max_bytes on each
            // server that stores it, as in [`crate::nats`].
            let text = format!(
                "server_name: {name}\n\
                 listen: \"127.0.0.1:{client}\"\n\
                 http: \"127.0.0.1:{monitor}\"\n\
                 jetstream {{\n  store_dir: {store:?}\n  max_file_store: 1TB\n  max_memory_store: 1GB\n}}\n\
                 cluster {{\n  name: certflow-testenv\n  listen: \"127.0.0.1:{route}\"\n  routes: [\n{routes}\n  ]\n}}\n",
                client = client_ports[i],
                monitor = monitor_ports[i],
                route = route_ports[i],
                store = store.display().to_string(),
                routes = routes.join("\n"),
            );
            std::fs::write(&config, text).map_err(io(format!("writing {}", config.display())))?;
            let args = vec!["--config".into(), config.display().to_string()];
            let log = dir.join(format!("{name}.log"));
            let process = ManagedProcess::start(&name, binary, args, log)?;
            nodes.push(Node {
                name,
                process,
                client_port: client_ports[i],
                monitor_port: monitor_ports[i],
                store,
            });
        }
        let mut cluster = Self { nodes };
        for node in 0..NODES {
            cluster.wait_healthy(node).await?;
        }
        Ok(cluster)
    }

    /// Starts a cluster with `env`'s pinned nats-server, in a new directory
    /// of `env`'s (so its logs sit with the rest of the environment's).
    pub async fn start_beside(env: &crate::TestEnv) -> Result<Self> {
        let dir = env.dir().join(crate::unique_name("nats-cluster"));
        Self::start(&env.tools().nats_server, &dir).await
    }

    /// Every node's client URL, comma-separated, as `--nats-url` takes them.
    pub fn client_urls(&self) -> String {
        (0..NODES)
            .map(|node| self.client_url(node))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every node's client URL, for `async_nats::connect` (which takes a
    /// list, not a comma-separated string).
    pub fn servers(&self) -> Vec<String> {
        (0..NODES).map(|node| self.client_url(node)).collect()
    }

    /// The client URL of node `node` alone.
    pub fn client_url(&self, node: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[node].client_port)
    }

    /// Node `node`'s server name (`nats-<node>`), as JetStream reports it
    /// as a stream's leader or replica.
    pub fn server_name(&self, node: usize) -> &str {
        &self.nodes[node].name
    }

    /// The node whose server name is `name`.
    pub fn node_named(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.name == name)
    }

    /// Node `node`'s process, e.g. for its log.
    pub fn process(&self, node: usize) -> &ManagedProcess {
        &self.nodes[node].process
    }

    /// The name and process id of every running node.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.nodes
            .iter()
            .filter_map(|node| node.process.pid().map(|pid| (node.name.clone(), pid)))
            .collect()
    }

    /// SIGKILLs node `node` (no lame-duck mode, no clean shutdown).
    pub fn kill(&mut self, node: usize) {
        self.nodes[node].process.kill();
    }

    /// Starts node `node` again on its ports and store, and waits until it
    /// is healthy, which includes having caught up every stream it holds.
    pub async fn restart(&mut self, node: usize) -> Result<()> {
        self.nodes[node].process.restart()?;
        self.wait_healthy(node).await
    }

    /// Kills node `node`, deletes its store and starts it again with the
    /// same name and ports, as when its volume is lost; waits until it is
    /// healthy, that is, until it has copied back from the other nodes
    /// every stream it holds a replica of.
    pub async fn restart_with_empty_storage(&mut self, node: usize) -> Result<()> {
        self.kill(node);
        let store = &self.nodes[node].store;
        match std::fs::remove_dir_all(store) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(io(format!("deleting {}", store.display()))(err));
            }
            _ => {}
        }
        self.restart(node).await
    }

    /// Waits until node `node`'s `/healthz` answers 200: it runs, is part of
    /// the cluster with a meta leader, and every stream and consumer it
    /// holds is current (what deploy/'s startupProbe asks).
    pub async fn wait_healthy(&mut self, node: usize) -> Result<()> {
        let deadline = Instant::now() + HEALTHY_TIMEOUT;
        loop {
            let node = &mut self.nodes[node];
            node.process.check_running()?;
            let answer = tokio::time::timeout(
                Duration::from_secs(2),
                http_get(node.monitor_port, "/healthz"),
            )
            .await;
            let last = match answer {
                Ok(Ok((200, _))) => return Ok(()),
                Ok(Ok((status, body))) => format!("{status} {}", body.trim()),
                Ok(Err(err)) => err.to_string(),
                Err(_) => "no answer within 2s".to_owned(),
            };
            if Instant::now() > deadline {
                let log = node.process.log_path();
                return Err(Error::NotReady {
                    process: format!("{} (/healthz: {last})", node.name),
                    seconds: HEALTHY_TIMEOUT.as_secs(),
                    log: log.to_owned(),
                    tail: tail(log, 30),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops every node with SIGKILL. Dropping the cluster does the same.
    pub fn stop(&mut self) {
        for node in &mut self.nodes {
            node.process.kill();
        }
    }
}

/// A plain HTTP/1.0 GET on the loopback monitoring port: the status code
/// and the body.
async fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    Ok((status, body))
}
