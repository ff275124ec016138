//! certflow's own services as separate processes against the shared local
//! control plane, isolated per test: their own bus prefix (streams), their
//! own control-plane namespace for CA key pairs, and a watcher and a
//! reporter scoped to the test's namespace. The services only look their
//! streams up, so [`Services::launch_on`] first runs the setup step
//! (`certflow-watcher setup-bus`, as an operator does) for the test's bus
//! prefix and flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use certflow_testenv::process::{ManagedProcess, free_ports};
use certflow_testenv::{TestEnv, unique_name};

/// The certflow binary `name`: from `CERTFLOW_BIN_DIR` when set, else built
/// next to the running executable (a benchmark in `target/<profile>/`) or
/// one level up (a test in `target/<profile>/deps/`). `make test` builds
/// every binary before running tests.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let candidates: Vec<PathBuf> = match std::env::var_os("CERTFLOW_BIN_DIR") {
        Some(dir) => vec![PathBuf::from(dir).join(name)],
        None => exe
            .ancestors()
            .skip(1)
            .take(2)
            .map(|dir| dir.join(name))
            .collect(),
    };
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "{name} is missing (looked at {candidates:?}): build it with `cargo build --workspace` \
                 (`make test` does)"
            )
        })
}

/// One running service process and the ports it serves on.
#[derive(Debug)]
pub struct Service {
    pub process: ManagedProcess,
    pub metrics_port: u16,
    pub health_port: u16,
    /// The gRPC Report API's port (reporters only).
    pub grpc_port: Option<u16>,
}

impl Service {
    /// The service's `/metrics` text.
    pub async fn metrics(&self) -> String {
        metrics_at(SocketAddr::from(([127, 0, 0, 1], self.metrics_port))).await
    }

    /// Whether the service's gRPC health check (readiness) answers SERVING;
    /// `None` when it does not answer at all (the process is down or still
    /// starting).
    pub async fn serving(&self) -> Option<bool> {
        self.health("").await
    }

    /// Whether the service's liveness check (health service `liveness`, what
    /// deploy/'s livenessProbe asks) answers SERVING; `None` as above.
    pub async fn live(&self) -> Option<bool> {
        self.health("liveness").await
    }

    async fn health(&self, service: &str) -> Option<bool> {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::health_client::HealthClient;
        let endpoint = tonic::transport::Endpoint::from_shared(format!(
            "http://127.0.0.1:{}",
            self.health_port
        ))
        .ok()?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(2));
        let channel = endpoint.connect().await.ok()?;
        let response = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .ok()?;
        Some(response.into_inner().status() == ServingStatus::Serving)
    }

    /// The sum of every sample of `metric` (all label sets).
    pub async fn metric_sum(&self, metric: &str) -> f64 {
        sum_metric(&self.metrics().await, metric)
    }
}

/// Sums the samples of `metric` in Prometheus/OpenMetrics text.
pub fn sum_metric(text: &str, metric: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The watcher, signers and reporters of one test.
#[derive(Debug)]
pub struct Services {
    pub namespace: String,
    pub control_plane_namespace: String,
    pub bus_prefix: String,
    pub watcher: Option<Service>,
    pub signers: Vec<Service>,
    pub reporters: Vec<Service>,
    kubeconfig: PathBuf,
    nats_url: String,
    common_args: Vec<String>,
    log_dir: PathBuf,
}

impl Services {
    /// Starts a watcher for `namespace`, `signers` signer replicas and one
    /// reporter.
    pub async fn start(env: &TestEnv, namespace: &str, signers: usize) -> Self {
        Self::launch(env, namespace, signers, &[], &[]).await
    }

    /// [`Services::start`] with extra flags for every service (e.g. the bus
    /// retry schedule, which all of them must agree on).
    pub async fn start_with_common_args(
        env: &TestEnv,
        namespace: &str,
        signers: usize,
        common_args: &[&str],
    ) -> Self {
        Self::launch(env, namespace, signers, &[], common_args).await
    }

    /// [`Services::start`] with extra flags for the reporter and for every
    /// service.
    pub async fn launch(
        env: &TestEnv,
        namespace: &str,
        signers: usize,
        reporter_args: &[&str],
        common_args: &[&str],
    ) -> Self {
        let nats_url = env.nats_url();
        Self::launch_on(
            env,
            &nats_url,
            namespace,
            signers,
            reporter_args,
            common_args,
        )
        .await
    }

    /// [`Services::launch`] against the NATS servers at `nats_url` (e.g. a
    /// [`certflow_testenv::NatsCluster`]'s, comma-separated) instead of the
    /// environment's own nats-server.
    pub async fn launch_on(
        env: &TestEnv,
        nats_url: &str,
        namespace: &str,
        signers: usize,
        reporter_args: &[&str],
        common_args: &[&str],
    ) -> Self {
        let control_plane_namespace = env
            .create_namespace("certflow-system")
            .await
            .expect("control-plane namespace");
        let mut services = Self {
            namespace: namespace.to_owned(),
            control_plane_namespace,
            bus_prefix: unique_name("t").replace('-', "_"),
            watcher: None,
            signers: Vec::new(),
            reporters: Vec::new(),
            kubeconfig: env.kubeconfig().to_owned(),
            nats_url: nats_url.to_owned(),
            common_args: common_args.iter().map(|arg| (*arg).to_owned()).collect(),
            log_dir: env.dir().join(unique_name("services")),
        };
        std::fs::create_dir_all(&services.log_dir).expect("log dir");
        services.setup_bus().await;
        services.start_watcher();
        for _ in 0..signers {
            services.add_signer();
        }
        services.add_reporter_with_args(reporter_args);
        services
    }

    /// Runs the setup step, `certflow-watcher setup-bus`, with the
    /// services' NATS URL, bus prefix and common flags (so `--bus-replicas`
    /// and the retry flags apply), as an operator runs it; panics with its
    /// output unless it exits 0. Returns what it printed.
    pub async fn setup_bus(&self) -> String {
        let mut args = vec![
            format!("--nats-url={}", self.nats_url),
            format!("--bus-prefix={}", self.bus_prefix),
        ];
        args.extend_from_slice(&self.common_args);
        args.push("setup-bus".to_owned());
        let run = tokio::process::Command::new(binary("certflow-watcher"))
            .args(&args)
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(120), run)
            .await
            .expect("certflow-watcher setup-bus finishes within 2 minutes")
            .expect("run certflow-watcher setup-bus");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "certflow-watcher {args:?} failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    fn spawn(&self, name: &str, binary_name: &str, extra: &[String]) -> Service {
        let [metrics_port, health_port] = free_ports().expect("ports");
        let mut args = vec![
            format!("--nats-url={}", self.nats_url),
            format!("--bus-prefix={}", self.bus_prefix),
            format!("--metrics-addr=127.0.0.1:{metrics_port}"),
            format!("--health-addr=127.0.0.1:{health_port}"),
        ];
        args.extend_from_slice(&self.common_args);
        args.extend_from_slice(extra);
        let envs = vec![
            (
                "KUBECONFIG".to_owned(),
                self.kubeconfig.display().to_string(),
            ),
            ("RUST_LOG".to_owned(), "info".to_owned()),
        ];
        let log = self.log_dir.join(format!("{name}.log"));
        let process = ManagedProcess::start_with_env(name, &binary(binary_name), args, envs, log)
            .expect("start service");
        Service {
            process,
            metrics_port,
            health_port,
            grpc_port: None,
        }
    }

    /// Starts (or restarts) the watcher.
    pub fn start_watcher(&mut self) {
        self.start_watcher_with_args(&[]);
    }

    /// Starts (or restarts) the watcher with `extra` flags on top of the
    /// defaults.
    pub fn start_watcher_with_args(&mut self, extra: &[&str]) {
        let scope = format!("--watch-namespace={}", self.namespace);
        self.spawn_watcher(Some(scope), extra);
    }

    /// Starts (or restarts) the watcher watching every namespace, as
    /// deployed, instead of only the test's, with `extra` flags on top of
    /// the defaults. For tests and benchmarks that use several namespaces;
    /// the control plane should be the test's own, since this watcher sees
    /// every other test's objects too.
    pub fn start_watcher_of_every_namespace(&mut self, extra: &[&str]) {
        self.spawn_watcher(None, extra);
    }

    fn spawn_watcher(&mut self, scope: Option<String>, extra: &[&str]) {
        let mut args: Vec<String> = scope.into_iter().collect();
        args.push("--failure-retry=30s".to_owned());
        args.push("--renewal-jitter=1s".to_owned());
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        self.watcher = Some(self.spawn("watcher", "certflow-watcher", &args));
    }

    /// Stops the watcher with SIGKILL.
    pub fn kill_watcher(&mut self) {
        if let Some(mut watcher) = self.watcher.take() {
            watcher.process.kill();
        }
    }

    /// Starts one more signer replica.
    pub fn add_signer(&mut self) {
        let name = format!("signer-{}", self.signers.len());
        let args = [format!("--namespace={}", self.control_plane_namespace)];
        let signer = self.spawn(&name, "certflow-signer", &args);
        self.signers.push(signer);
    }

    /// Starts one more reporter replica, watching the test's namespace.
    pub fn add_reporter(&mut self) {
        self.add_reporter_with_args(&[]);
    }

    /// Starts one more reporter replica with extra flags.
    pub fn add_reporter_with_args(&mut self, extra: &[&str]) {
        let name = format!("reporter-{}", self.reporters.len());
        let [grpc_port] = free_ports().expect("port");
        let mut args = vec![
            format!("--watch-namespace={}", self.namespace),
            format!("--grpc-addr=127.0.0.1:{grpc_port}"),
            format!("--reporting-instance={name}"),
        ];
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        let mut reporter = self.spawn(&name, "certflow-reporter", &args);
        reporter.grpc_port = Some(grpc_port);
        self.reporters.push(reporter);
    }

    /// The sum of `metric` across every reporter replica.
    pub async fn reporter_metric_sum(&self, metric: &str) -> f64 {
        let mut sum = 0.0;
        for reporter in &self.reporters {
            sum += reporter.metric_sum(metric).await;
        }
        sum
    }

    /// The sum of `metric` across every signer replica.
    pub async fn signer_metric_sum(&self, metric: &str) -> f64 {
        let mut sum = 0.0;
        for signer in &self.signers {
            sum += signer.metric_sum(metric).await;
        }
        sum
    }

    /// Every running service, watcher first.
    pub fn all(&self) -> impl Iterator<Item = &Service> {
        self.watcher
            .iter()
            .chain(&self.signers)
            .chain(&self.reporters)
    }

    /// Every running service, mutably.
    pub fn all_mut(&mut self) -> impl Iterator<Item = &mut Service> {
        self.watcher
            .iter_mut()
            .chain(self.signers.iter_mut())
            .chain(self.reporters.iter_mut())
    }

    /// The names of the services whose process has exited.
    pub fn exited(&mut self) -> Vec<String> {
        self.all_mut()
            .filter_map(|s| {
                s.process
                    .check_running()
                    .err()
                    .map(|_| s.process.name().to_owned())
            })
            .collect()
    }

    /// The last lines of every service's log, for failure messages.
    pub fn logs(&self) -> String {
        self.all()
            .map(|s| format!("--- {} ---\n{}", s.process.name(), s.process.tail(40)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Writes every running service's `/metrics` text next to its log, as
    /// `<name>.metrics.log`, so that `make test`'s key-material scan reads
    /// the metrics too.
    pub async fn save_metrics(&self) {
        for service in self.all() {
            let path = self
                .log_dir
                .join(format!("{}.metrics.log", service.process.name()));
            std::fs::write(&path, service.metrics().await)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
    }

    /// Sends SIGTERM to every service and waits for them to exit.
    pub fn stop(&mut self) {
        for service in self.all_mut() {
            let _ = service.process.terminate(Duration::from_secs(20));
        }
    }
}

/// The `/metrics` text served at `addr` (HTTP/1.0, the whole response with
/// its headers), or empty when nothing answers.
pub async fn metrics_at(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    let request = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    response
}
