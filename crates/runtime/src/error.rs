//! The runtime error type.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can stop a service from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// `--log-filter` is not a valid `RUST_LOG`-style directive list.
    #[error("log filter {filter:?} is invalid: {source}")]
    InvalidLogFilter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },

    /// `--otlp-endpoint` cannot be used to export spans.
    #[error("OTLP span exporter for {endpoint}: {source}")]
    OtlpExporter {
        endpoint: String,
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },

    /// A global tracing subscriber was already installed.
    #[error("telemetry is already initialised: {source}")]
    TelemetryAlreadyInitialised {
        #[source]
        source: tracing_subscriber::util::TryInitError,
    },

    /// Listening on an address failed (in use, not permitted, ...).
    #[error("{server} server cannot listen on {addr}: {source}")]
    Bind {
        server: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    /// A server stopped with an error while serving.
    #[error("{server} server failed: {source}")]
    Serve {
        server: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A server task panicked or was aborted.
    #[error("{server} server task ended abnormally: {source}")]
    ServerTask {
        server: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },

    /// Installing the SIGTERM/SIGINT handlers failed.
    #[error("cannot listen for shutdown signals: {source}")]
    Signal {
        #[source]
        source: std::io::Error,
    },

    /// The NATS credentials file cannot be read.
    #[error("NATS credentials file {path}: {source}")]
    NatsCredentials {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// `--nats-user` was given without `--nats-password` or the other way round.
    #[error("--nats-user and --nats-password must be given together")]
    NatsUserWithoutPassword,

    /// `--nats-tls-cert` was given without `--nats-tls-key` or the other way round.
    #[error("--nats-tls-cert and --nats-tls-key must be given together")]
    NatsTlsCertWithoutKey,

    /// A NATS TLS file (`--nats-tls-ca`, `--nats-tls-cert`, `--nats-tls-key`)
    /// cannot be read or holds no usable PEM. The message names the file and
    /// what is wrong with it, never its contents.
    #[error("NATS TLS {flag} file {path}: {problem}")]
    NatsTlsFile {
        flag: &'static str,
        path: PathBuf,
        problem: String,
    },

    /// NATS stayed unreachable for the whole start-up deadline. With
    /// `tls_required`, the message says so: against a server without TLS the
    /// client's own error is only "received corrupt message".
    #[error(
        "NATS at {url} unreachable after {attempts} attempts{}: {source}",
        if *tls_required { " over TLS (required by --nats-tls-* or a tls:// URL)" } else { "" }
    )]
    NatsConnect {
        url: String,
        attempts: u32,
        tls_required: bool,
        #[source]
        source: async_nats::ConnectError,
    },

    /// Shutdown was requested while still connecting to NATS.
    #[error("shut down while connecting to NATS at {url}")]
    ShutdownWhileConnecting { url: String },

    /// The bus settings (`--bus-prefix`, `--bus-replicas`) are invalid.
    #[error("bus settings: {source}")]
    Bus {
        #[from]
        source: certflow_bus::BusError,
    },

    /// No Kubernetes client configuration was found or it is unusable.
    #[error("Kubernetes client configuration (in-cluster or KUBECONFIG): {source}")]
    KubeConfig {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// Rendering the metrics failed.
    #[error("encoding metrics: {source}")]
    MetricsEncoding {
        #[source]
        source: std::fmt::Error,
    },
}

impl RuntimeError {
    /// A short, stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidLogFilter { .. } => "invalid_log_filter",
            Self::OtlpExporter { .. } => "otlp_exporter",
            Self::TelemetryAlreadyInitialised { .. } => "telemetry_already_initialised",
            Self::Bind { .. } => "bind",
            Self::Serve { .. } => "serve",
            Self::ServerTask { .. } => "server_task",
            Self::Signal { .. } => "signal",
            Self::NatsCredentials { .. } => "nats_credentials",
            Self::NatsUserWithoutPassword => "nats_user_without_password",
            Self::NatsTlsCertWithoutKey => "nats_tls_cert_without_key",
            Self::NatsTlsFile { .. } => "nats_tls_file",
            Self::NatsConnect { .. } => "nats_connect",
            Self::ShutdownWhileConnecting { .. } => "shutdown_while_connecting",
            Self::Bus { .. } => "bus",
            Self::KubeConfig { .. } => "kube_config",
            Self::MetricsEncoding { .. } => "metrics_encoding",
        }
    }
}
