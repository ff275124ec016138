//! The start-up and stop sequence every certflow binary shares, so that a
//! `main.rs` only parses its flags, calls [`Service::start`], runs its own
//! loop until [`Shutdown::requested`], and calls [`Service::stop`].

use async_nats::Client;
use certflow_bus::Topology;
use tracing::info;

use crate::server::RunningServer;
use crate::telemetry::{OtlpExport, Telemetry};
use crate::{
    CommonArgs, HealthHandle, Metrics, RuntimeError, Shutdown, health, metrics, telemetry,
};

/// A started service: logging and span export, signal handling, health and
/// metrics servers.
#[derive(Debug)]
pub struct Service {
    name: &'static str,
    telemetry: Telemetry,
    args: CommonArgs,
    shutdown: Shutdown,
    health: HealthHandle,
    metrics: Metrics,
    health_server: RunningServer,
    metrics_server: RunningServer,
}

impl Service {
    /// Installs logging (and span export to `--otlp-endpoint`, as
    /// `service.name` = `name`), the TLS crypto provider ([`crate::tls`]), the
    /// SIGTERM/SIGINT handlers and the health and
    /// metrics servers. `name` (e.g. `certflow-signer`) names the NATS
    /// connection and, with `-` turned into `_`, prefixes every metric.
    /// Readiness reports NOT_SERVING until every one of `dependencies` (e.g.
    /// [`crate::nats::NATS_DEPENDENCY`], `"kubernetes"`) was reported ready,
    /// and again from the moment shutdown is requested; liveness is SERVING
    /// from the start for as long as the runtime beats its watchdog
    /// ([`crate::health`]).
    pub async fn start(
        name: &'static str,
        args: CommonArgs,
        dependencies: &[&str],
    ) -> Result<Self, RuntimeError> {
        let export = args.otlp_endpoint.clone().map(|endpoint| OtlpExport {
            endpoint,
            service_name: name,
        });
        let telemetry = telemetry::init(args.log_format, &args.log_filter, export.as_ref())?;
        Self::start_with_telemetry(name, args, dependencies, telemetry).await
    }

    /// [`Service::start`] for processes that installed their own subscriber
    /// (tests, or binaries that add layers).
    pub async fn start_without_telemetry(
        name: &'static str,
        args: CommonArgs,
        dependencies: &[&str],
    ) -> Result<Self, RuntimeError> {
        Self::start_with_telemetry(name, args, dependencies, Telemetry::default()).await
    }

    async fn start_with_telemetry(
        name: &'static str,
        args: CommonArgs,
        dependencies: &[&str],
        telemetry: Telemetry,
    ) -> Result<Self, RuntimeError> {
        crate::tls::install_crypto_provider();
        let shutdown = Shutdown::on_signals(args.shutdown_grace)?;
        let (health, health_server) = health::serve(args.health_addr, dependencies).await?;
        let metrics = Metrics::new(&name.replace('-', "_"));
        let metrics_server = metrics::serve(args.metrics_addr, metrics.clone()).await?;

        let on_shutdown = (shutdown.clone(), health.clone());
        tokio::spawn(async move {
            let (shutdown, health) = on_shutdown;
            shutdown.requested().await;
            health.set_shutting_down().await;
        });

        info!(
            service = name,
            version = env!("CARGO_PKG_VERSION"),
            exporting_spans = telemetry.exports(),
            "started"
        );
        Ok(Self {
            name,
            telemetry,
            args,
            shutdown,
            health,
            metrics,
            health_server,
            metrics_server,
        })
    }

    /// The service name given to [`Service::start`].
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The shared flags.
    pub fn args(&self) -> &CommonArgs {
        &self.args
    }

    /// Fires on SIGTERM/SIGINT; clone it into every loop.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Reports dependencies' reachability to the health server.
    pub fn health(&self) -> &HealthHandle {
        &self.health
    }

    /// Where the service registers its metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Address the health server actually listens on.
    pub fn health_addr(&self) -> std::net::SocketAddr {
        self.health_server.local_addr()
    }

    /// Address the metrics server actually listens on.
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        self.metrics_server.local_addr()
    }

    /// The bus topology from `--bus-prefix` and `--bus-replicas`.
    pub fn topology(&self) -> Result<Topology, RuntimeError> {
        self.args.topology()
    }

    /// Connects to the Kubernetes API with this service's client limit (see
    /// [`crate::kube_client::connect`]).
    pub async fn connect_kube(&self) -> Result<kube::Client, RuntimeError> {
        crate::kube_client::connect(&self.args).await
    }

    /// Connects to NATS (see [`crate::connect_nats`]) as this service.
    pub async fn connect_nats(&self) -> Result<Client, RuntimeError> {
        crate::connect_nats(&self.args, self.name, &self.health, &self.shutdown).await
    }

    /// Reports NOT_SERVING, then stops the health and metrics servers and
    /// exports the spans still buffered. Call after the service's own work
    /// has drained.
    pub async fn stop(self) -> Result<(), RuntimeError> {
        self.shutdown.request("service stopping");
        self.health.set_shutting_down().await;
        let metrics = self.metrics_server.stop().await;
        let health = self.health_server.stop().await;
        info!(service = self.name, "stopped");
        self.telemetry.shutdown_async().await;
        metrics.and(health)
    }
}

#[cfg(test)]
mod tests;
