//! A JetStream-enabled nats-server with file storage on a loopback port.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result, io};
use crate::process::{ManagedProcess, free_ports};

/// A nats-server process. Its store directory survives [`Self::restart`], so
/// tests can show that JetStream's file storage keeps messages.
#[derive(Debug)]
pub struct NatsServer {
    process: ManagedProcess,
    url: String,
    port: u16,
    store: PathBuf,
}

impl NatsServer {
    /// Starts nats-server with JetStream storing under `dir`.
    pub fn start(binary: &Path, dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let [port] = free_ports()?;
        let store = dir.join("jetstream");
        // Every stream's max_bytes is reserved against the server's store
        // limit (by default a share of the free disk), and each test or
        // benchmark run creates its own streams; a generous limit keeps a
        // long run from failing with "insufficient storage resources".
        let config = dir.join("nats.conf");
        let text = format!(
            "listen: \"127.0.0.1:{port}\"\nserver_name: certflow-testenv\n\
             jetstream {{\n  store_dir: {store:?}\n  max_file_store: 1TB\n  max_memory_store: 1GB\n}}\n",
            store = store.display().to_string(),
        );
        std::fs::write(&config, text).map_err(io(format!("writing {}", config.display())))?;
        let args = vec!["--config".into(), config.display().to_string()];
        let process =
            ManagedProcess::start("nats-server", binary, args, dir.join("nats-server.log"))?;
        Ok(Self {
            process,
            url: format!("nats://127.0.0.1:{port}"),
            port,
            store,
        })
    }

    /// Fails with the log's tail if the server has exited.
    pub fn check_running(&mut self) -> Result<()> {
        self.process.check_running()
    }

    pub fn process(&self) -> &ManagedProcess {
        &self.process
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn store_dir(&self) -> &Path {
        &self.store
    }

    /// Waits until a client can connect and JetStream answers.
    pub async fn wait_ready(&mut self) -> Result<()> {
        let (url, log) = (self.url.clone(), self.process.log_path().to_owned());
        wait_for_jetstream(&url, &log, || self.process.check_running()).await
    }

    /// SIGKILLs the server (no clean shutdown).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Kills the server and deletes its store, as when it loses its volume:
    /// every stream, consumer and stored message is gone. Start it again
    /// with [`Self::restart`] or [`Self::respawn`].
    pub fn kill_and_wipe(&mut self) -> Result<()> {
        self.kill();
        match std::fs::remove_dir_all(&self.store) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(io(format!("deleting {}", self.store.display()))(err))
            }
            _ => Ok(()),
        }
    }

    /// Starts the server again on the same port and store, and waits for it.
    pub async fn restart(&mut self) -> Result<()> {
        self.process.restart()?;
        self.wait_ready().await
    }

    /// Starts the server again on the same port and store without waiting;
    /// see [`wait_for_jetstream`].
    pub fn respawn(&mut self) -> Result<()> {
        self.process.restart()
    }
}

/// Waits up to 30 s until a client can connect to `url` and JetStream
/// answers; `running` fails when the server (logging to `log`) has exited.
pub async fn wait_for_jetstream(
    url: &str,
    log: &Path,
    mut running: impl FnMut() -> Result<()>,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        running()?;
        if let Ok(client) = async_nats::connect(url).await {
            let js = async_nats::jetstream::new(client);
            if js.query_account().await.is_ok() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(Error::NotReady {
                process: "nats-server".into(),
                seconds: 30,
                log: log.to_owned(),
                tail: crate::process::tail(log, 30),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The setup step over a connection of its own: creates (or updates) the
/// streams and consumers of `topology` on the NATS servers at `url`
/// (comma-separated for a cluster) with `certflow_bus::ensure`. The
/// services only look their streams up, so this runs before any of them
/// starts: the demo runs it for the default prefix; the e2e tests and
/// benchmarks run the real `certflow-watcher setup-bus` for theirs.
pub async fn setup_bus(
    url: &str,
    topology: &certflow_bus::Topology,
) -> Result<certflow_bus::Streams> {
    let servers: Vec<&str> = url.split(',').map(str::trim).collect();
    let client = async_nats::connect(servers)
        .await
        .map_err(|source| Error::Nats {
            url: url.to_owned(),
            source,
        })?;
    let js = async_nats::jetstream::new(client);
    Ok(certflow_bus::ensure(&js, topology).await?)
}
