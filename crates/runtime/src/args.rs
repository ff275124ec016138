//! Command-line flags every certflow service shares.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use certflow_bus::{BusError, RetryPolicy, Topology};

use crate::RuntimeError;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, for terminals.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Flags shared by every service; `#[command(flatten)]` them into the
/// service's own `clap::Parser`.
#[derive(Clone, Debug, clap::Args)]
pub struct CommonArgs {
    /// Log line format.
    #[arg(long, env = "CERTFLOW_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Which log lines to write, in RUST_LOG syntax (e.g. `info,certflow_signer=debug`).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,

    /// OpenTelemetry collector to export spans to over OTLP/gRPC, e.g.
    /// `http://otel-collector:4317` (plain text: run the collector, or an
    /// agent, inside the cluster). Unset: no spans are exported; log lines
    /// still carry the `trace_id` that NATS headers propagate.
    #[arg(long, env = "CERTFLOW_OTLP_ENDPOINT", value_parser = parse_otlp_endpoint)]
    pub otlp_endpoint: Option<String>,

    /// NATS server URL(s), comma-separated (e.g. every server of a cluster;
    /// the client also learns the others from the first it reaches).
    #[arg(
        long,
        env = "CERTFLOW_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,

    /// NATS credentials file (JWT and NKey seed), if the server requires one.
    #[arg(long, env = "CERTFLOW_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,

    /// NATS user name; needs --nats-password.
    #[arg(long, env = "CERTFLOW_NATS_USER", requires = "nats_password")]
    pub nats_user: Option<String>,

    /// NATS password; needs --nats-user.
    #[arg(
        long,
        env = "CERTFLOW_NATS_PASSWORD",
        hide_env_values = true,
        requires = "nats_user"
    )]
    pub nats_password: Option<String>,

    /// PEM file of the CA certificate(s) that sign the NATS servers'
    /// certificates, trusted instead of the system roots for NATS only (the
    /// Kubernetes client is not affected). Giving it, or a client
    /// certificate, makes TLS required: the service never falls back to
    /// plain text.
    #[arg(long, env = "CERTFLOW_NATS_TLS_CA", value_name = "PATH")]
    pub nats_tls_ca: Option<PathBuf>,

    /// PEM file of this service's client certificate (and any intermediates)
    /// for NATS servers that verify clients (mutual TLS); needs
    /// --nats-tls-key. Makes TLS required.
    #[arg(
        long,
        env = "CERTFLOW_NATS_TLS_CERT",
        value_name = "PATH",
        requires = "nats_tls_key"
    )]
    pub nats_tls_cert: Option<PathBuf>,

    /// PEM file of the private key of --nats-tls-cert; needs
    /// --nats-tls-cert. Its contents never appear in logs or errors.
    #[arg(
        long,
        env = "CERTFLOW_NATS_TLS_KEY",
        value_name = "PATH",
        requires = "nats_tls_cert"
    )]
    pub nats_tls_key: Option<PathBuf>,

    /// How long to keep retrying the first NATS connection before giving up
    /// (e.g. `90s`, `2m`).
    #[arg(long, env = "CERTFLOW_NATS_CONNECT_TIMEOUT", default_value = "2m", value_parser = parse_duration)]
    pub nats_connect_timeout: Duration,

    /// Prefix of every NATS subject and (upper-cased) stream name; lets
    /// several installations or test runs share one NATS server.
    #[arg(long, env = "CERTFLOW_BUS_PREFIX", default_value = certflow_bus::settings::DEFAULT_PREFIX)]
    pub bus_prefix: String,

    /// Servers that store each JetStream stream and the reporter's
    /// key-value bucket (consumers follow their stream): 1 for a single
    /// server, 3 for deploy/'s three-server cluster, at most the number of
    /// servers. Every service must use the same value; a changed value is
    /// applied to existing streams in place at start-up.
    #[arg(long, env = "CERTFLOW_BUS_REPLICAS", default_value_t = 1)]
    pub bus_replicas: usize,

    /// Deliveries of a work item or outcome before it is given up: reported
    /// to its owner where possible, and moved to the dead-letter stream.
    /// Every service must use the same value.
    #[arg(long, env = "CERTFLOW_BUS_MAX_DELIVER", default_value_t = certflow_bus::settings::MAX_DELIVER)]
    pub bus_max_deliver: u32,

    /// Delays before the 1st, 2nd, ... redelivery after a transient failure
    /// (the last repeats), comma-separated, e.g. `1s,5s,15s,30s,1m,2m,5m`.
    #[arg(
        long,
        env = "CERTFLOW_BUS_RETRY_DELAYS",
        default_value = "1s,5s,15s,30s,1m,2m,5m",
        value_delimiter = ',',
        value_parser = parse_duration
    )]
    pub bus_retry_delays: Vec<Duration>,

    /// Client-side limit on Kubernetes API requests per second from this
    /// process; 0 (the default) leaves limiting to the API server's
    /// Priority and Fairness.
    #[arg(long, env = "CERTFLOW_KUBE_API_QPS", default_value_t = 0)]
    pub kube_api_qps: u32,

    /// Requests allowed at once above `--kube-api-qps` before waiting.
    #[arg(long, env = "CERTFLOW_KUBE_API_BURST", default_value_t = 100)]
    pub kube_api_burst: u32,

    /// Address of the gRPC health server (grpc.health.v1, for Kubernetes probes).
    #[arg(long, env = "CERTFLOW_HEALTH_ADDR", default_value = "0.0.0.0:8081")]
    pub health_addr: SocketAddr,

    /// Address of the HTTP server that serves Prometheus metrics at /metrics.
    #[arg(long, env = "CERTFLOW_METRICS_ADDR", default_value = "0.0.0.0:9090")]
    pub metrics_addr: SocketAddr,

    /// How long in-flight work may take to finish after SIGTERM (e.g. `30s`).
    #[arg(long, env = "CERTFLOW_SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

impl CommonArgs {
    /// The bus topology named by `--bus-prefix`, `--bus-replicas`,
    /// `--bus-max-deliver` and `--bus-retry-delays`.
    pub fn topology(&self) -> Result<Topology, RuntimeError> {
        let retry = RetryPolicy::new(self.bus_retry_delays.clone(), self.bus_max_deliver)
            .ok_or_else(|| BusError::InvalidSetting {
                setting: "retry",
                reason: "--bus-max-deliver must be at least 1 and --bus-retry-delays not empty"
                    .into(),
            })?;
        Ok(Topology::new(&self.bus_prefix)?
            .with_replicas(self.bus_replicas)?
            .with_retry_policy(retry))
    }
}

impl CommonArgs {
    /// The servers named by `--nats-url`, split at commas. async-nats takes
    /// a list: the whole comma-separated text would be one invalid URL.
    pub fn nats_servers(&self) -> Vec<&str> {
        self.nats_url
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .collect()
    }
}

impl CommonArgs {
    /// The TLS files for NATS named by `--nats-tls-ca`, `--nats-tls-cert`
    /// and `--nats-tls-key`; `None` when none is given (TLS then follows the
    /// URL scheme and the server). A certificate without its key, or a key
    /// without its certificate, is an error (clap refuses it on the command
    /// line; this catches arguments built in code).
    pub fn nats_tls(&self) -> Result<Option<NatsTls>, RuntimeError> {
        let client = match (&self.nats_tls_cert, &self.nats_tls_key) {
            (Some(cert), Some(key)) => Some(ClientCertificate {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None) => None,
            _ => return Err(RuntimeError::NatsTlsCertWithoutKey),
        };
        if self.nats_tls_ca.is_none() && client.is_none() {
            return Ok(None);
        }
        Ok(Some(NatsTls {
            ca: self.nats_tls_ca.clone(),
            client,
        }))
    }
}

/// TLS to NATS as the flags ask for it. When present, TLS is required.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsTls {
    /// CA certificates to trust instead of the system roots.
    pub ca: Option<PathBuf>,
    /// The certificate to present to servers that verify clients.
    pub client: Option<ClientCertificate>,
}

/// A client certificate and its key, as PEM file paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertificate {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Accepts an `http://host:port` OTLP/gRPC endpoint. `https://` is refused
/// here rather than failing at the first export: the exporter is built
/// without TLS.
fn parse_otlp_endpoint(text: &str) -> Result<String, String> {
    let text = text.trim();
    match text.strip_prefix("http://") {
        Some(rest) if !rest.is_empty() => Ok(text.to_owned()),
        _ if text.starts_with("https://") => Err(
            "TLS to the collector is not supported: give an http:// endpoint (a collector or agent next to the service)".to_owned(),
        ),
        _ => Err("expected http://host:port".to_owned()),
    }
}

/// Parses a flag's duration with the same Go syntax the CRDs use (`500ms`,
/// `30s`, `2m`, `1h30m`), so there is one duration grammar in certflow.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    certflow_api::parse_go_duration(text.trim()).map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        common: CommonArgs,
    }

    fn parse(args: &[&str]) -> Result<CommonArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("certflow-test").chain(args.iter().copied()))
            .map(|cli| cli.common)
    }

    // Tests read defaults without touching the process environment, so they
    // stay correct when CERTFLOW_* or RUST_LOG happen to be set: only flags
    // whose env var is unset are compared with their default.
    fn env_unset(name: &str) -> bool {
        std::env::var_os(name).is_none()
    }

    #[test]
    fn the_default_retry_flags_are_the_bus_defaults() {
        if env_unset("CERTFLOW_BUS_RETRY_DELAYS") && env_unset("CERTFLOW_BUS_MAX_DELIVER") {
            let topology = parse(&[]).ok().map(|args| args.topology());
            let Some(Ok(topology)) = topology else {
                panic!("the defaults make a topology: {topology:?}");
            };
            assert_eq!(topology.retry_policy(), &RetryPolicy::default());
        }
    }

    #[test]
    fn retry_flags_shape_the_policy_and_nonsense_is_refused() {
        let args = parse(&["--bus-retry-delays=200ms,1s", "--bus-max-deliver=3"]);
        let policy = args.ok().and_then(|args| args.topology().ok());
        let expected =
            RetryPolicy::new(vec![Duration::from_millis(200), Duration::from_secs(1)], 3);
        assert_eq!(policy.map(|t| t.retry_policy().clone()), expected);
        let zero = parse(&["--bus-max-deliver=0"]).map(|args| args.topology().is_err());
        assert!(matches!(zero, Ok(true)), "{zero:?}");
        assert!(parse(&["--bus-retry-delays=soon"]).is_err());
    }

    #[test]
    fn defaults_match_the_documented_ports_and_prefix() {
        let args = parse(&[]);
        let args = match args {
            Ok(args) => args,
            Err(error) => panic!("no flags are required: {error}"),
        };
        if env_unset("CERTFLOW_NATS_URL") {
            assert_eq!(args.nats_url, "nats://127.0.0.1:4222");
        }
        if env_unset("CERTFLOW_BUS_PREFIX") {
            assert_eq!(args.bus_prefix, "certflow");
        }
        if env_unset("CERTFLOW_HEALTH_ADDR") {
            assert_eq!(args.health_addr.to_string(), "0.0.0.0:8081");
        }
        if env_unset("CERTFLOW_METRICS_ADDR") {
            assert_eq!(args.metrics_addr.to_string(), "0.0.0.0:9090");
        }
        if env_unset("CERTFLOW_SHUTDOWN_GRACE") {
            assert_eq!(args.shutdown_grace, Duration::from_secs(30));
        }
        if env_unset("CERTFLOW_LOG_FORMAT") {
            assert_eq!(args.log_format, LogFormat::Text);
        }
        if env_unset("RUST_LOG") {
            assert_eq!(args.log_filter, "info");
        }
        if env_unset("CERTFLOW_NATS_CREDS") {
            assert_eq!(args.nats_creds, None);
        }
        if env_unset("CERTFLOW_OTLP_ENDPOINT") {
            assert_eq!(args.otlp_endpoint, None);
        }
    }

    #[test]
    fn flags_override_defaults() {
        let args = parse(&[
            "--log-format",
            "json",
            "--log-filter",
            "debug",
            "--nats-url",
            "nats://nats:4222",
            "--bus-prefix",
            "e2e",
            "--bus-replicas",
            "3",
            "--health-addr",
            "127.0.0.1:1",
            "--metrics-addr",
            "127.0.0.1:2",
            "--shutdown-grace",
            "5s",
        ]);
        let args = match args {
            Ok(args) => args,
            Err(error) => panic!("valid flags: {error}"),
        };
        assert_eq!(args.log_format, LogFormat::Json);
        assert_eq!(args.log_filter, "debug");
        assert_eq!(args.nats_url, "nats://nats:4222");
        assert_eq!(args.health_addr.port(), 1);
        assert_eq!(args.metrics_addr.port(), 2);
        assert_eq!(args.shutdown_grace, Duration::from_secs(5));
        let topology = args.topology().ok();
        assert_eq!(topology.as_ref().map(Topology::prefix), Some("e2e"));
        assert_eq!(topology.map(|t| t.replicas()), Some(3));
    }

    #[test]
    fn a_comma_separated_nats_url_names_each_server() {
        let args = parse(&["--nats-url", "nats://a:4222, nats://b:4222,nats://c:4222,"]);
        let servers = args.as_ref().map(CommonArgs::nats_servers).ok();
        assert_eq!(
            servers,
            Some(vec!["nats://a:4222", "nats://b:4222", "nats://c:4222"])
        );
        // Why the split is ours: the client parses a string as one URL.
        let whole = "nats://a:4222,nats://b:4222".parse::<async_nats::ServerAddr>();
        assert!(whole.is_err(), "{whole:?}");
    }

    #[test]
    fn the_otlp_endpoint_must_be_plain_http() {
        let endpoint = |value: &str| parse(&["--otlp-endpoint", value]).map(|a| a.otlp_endpoint);
        assert_eq!(
            endpoint("http://collector:4317").ok(),
            Some(Some("http://collector:4317".to_owned()))
        );
        assert!(endpoint("https://collector:4317").is_err());
        assert!(endpoint("collector:4317").is_err());
        assert!(endpoint("http://").is_err());
    }

    #[test]
    fn a_user_without_a_password_is_refused() {
        assert!(parse(&["--nats-user", "signer"]).is_err());
        assert!(parse(&["--nats-user", "signer", "--nats-password", "pw"]).is_ok());
    }

    #[test]
    fn the_nats_tls_flags_name_a_ca_and_a_client_certificate() {
        let args = parse(&[
            "--nats-tls-ca=/etc/certflow/nats-tls/ca.crt",
            "--nats-tls-cert=/etc/certflow/nats-tls/tls.crt",
            "--nats-tls-key=/etc/certflow/nats-tls/tls.key",
        ]);
        let tls = args.ok().map(|args| args.nats_tls().ok());
        let expected = NatsTls {
            ca: Some("/etc/certflow/nats-tls/ca.crt".into()),
            client: Some(ClientCertificate {
                cert: "/etc/certflow/nats-tls/tls.crt".into(),
                key: "/etc/certflow/nats-tls/tls.key".into(),
            }),
        };
        assert_eq!(tls, Some(Some(Some(expected))));
    }

    #[test]
    fn a_ca_alone_or_a_client_certificate_alone_asks_for_tls() {
        let tls = |flags: &[&str]| parse(flags).ok().and_then(|a| a.nats_tls().ok());
        if env_unset("CERTFLOW_NATS_TLS_CERT") && env_unset("CERTFLOW_NATS_TLS_KEY") {
            let ca_only = tls(&["--nats-tls-ca=ca.crt"]);
            assert_eq!(
                ca_only,
                Some(Some(NatsTls {
                    ca: Some("ca.crt".into()),
                    client: None
                }))
            );
        }
        if env_unset("CERTFLOW_NATS_TLS_CA") {
            let client_only = tls(&["--nats-tls-cert=tls.crt", "--nats-tls-key=tls.key"]);
            assert!(
                client_only.as_ref().is_some_and(|t| t
                    .as_ref()
                    .is_some_and(|t| t.ca.is_none() && t.client.is_some())),
                "{client_only:?}"
            );
        }
        let nothing_set = [
            "CERTFLOW_NATS_TLS_CA",
            "CERTFLOW_NATS_TLS_CERT",
            "CERTFLOW_NATS_TLS_KEY",
        ]
        .into_iter()
        .all(env_unset);
        if nothing_set {
            assert_eq!(tls(&[]), Some(None), "no flag: TLS follows the URL");
        }
    }

    #[test]
    fn a_client_certificate_without_its_key_is_refused_naming_the_missing_flag() {
        for (given, missing) in [
            ("--nats-tls-cert=tls.crt", "--nats-tls-key"),
            ("--nats-tls-key=tls.key", "--nats-tls-cert"),
        ] {
            let other_env = if missing == "--nats-tls-key" {
                "CERTFLOW_NATS_TLS_KEY"
            } else {
                "CERTFLOW_NATS_TLS_CERT"
            };
            if !env_unset(other_env) {
                continue;
            }
            let error = parse(&[given])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.contains(missing), "{given}: {error:?}");
        }
        // Arguments built in code get the same answer when connecting.
        let mut args = parse(&[]).expect("no flags are required");
        args.nats_tls_cert = Some("tls.crt".into());
        args.nats_tls_key = None;
        assert!(matches!(
            args.nats_tls(),
            Err(RuntimeError::NatsTlsCertWithoutKey)
        ));
    }

    #[test]
    fn the_nats_tls_flags_are_settable_from_the_environment() {
        use clap::CommandFactory;
        let command = Cli::command();
        for (flag, env) in [
            ("nats_tls_ca", "CERTFLOW_NATS_TLS_CA"),
            ("nats_tls_cert", "CERTFLOW_NATS_TLS_CERT"),
            ("nats_tls_key", "CERTFLOW_NATS_TLS_KEY"),
        ] {
            let arg = command.get_arguments().find(|a| a.get_id() == flag);
            assert_eq!(
                arg.and_then(|a| a.get_env()).and_then(|e| e.to_str()),
                Some(env),
                "{flag}"
            );
        }
    }

    #[test]
    fn an_unknown_log_format_is_refused() {
        assert!(parse(&["--log-format", "yaml"]).is_err());
    }

    #[test]
    fn a_bad_bus_prefix_is_reported_when_the_topology_is_built() {
        let args = parse(&["--bus-prefix", "Bad.Prefix"]);
        assert!(args.is_ok_and(|a| a.topology().is_err()));
    }

    #[test]
    fn every_flag_has_help_text() {
        use clap::CommandFactory;
        let command = Cli::command();
        for arg in command.get_arguments() {
            if arg.get_id() == "help" {
                continue;
            }
            assert!(arg.get_help().is_some(), "--{} has no help", arg.get_id());
        }
    }

    #[test]
    fn durations_accept_common_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(
            parse_duration("7").is_err(),
            "a unit is required, as in the CRDs"
        );
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("s").is_err());
    }
}
