//! `certflow-example-app`: wiring only; see the library for what it does.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use certflow_example_app::{CheckOptions, ServeOptions, Stdout, check, serve};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// The example application certflow's demo and end-to-end tests run in Pods:
/// a TLS server that serves the certificate from a mounted Secret, and a
/// client that verifies it against the CA and prints what it saw.
///
/// Protocol lines go to stdout (one per event, formats below); diagnostics go
/// to stderr (RUST_LOG, default `info`). Serials are lowercase hex without
/// colons. SIGTERM and Ctrl-C end either subcommand promptly.
#[derive(Debug, Parser)]
#[command(name = "certflow-example-app", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve TLS with <cert-dir>/tls.crt and tls.key, reloading them when they change.
    ///
    /// Prints `serving serial <hex> subject <dn> not after <rfc3339>` for each
    /// certificate loaded, and `cannot load certificate from <dir>: <error>;
    /// retrying` once per distinct error while the files are missing or bad.
    /// Every connection is answered `HTTP/1.1 200 OK` with the body
    /// `serial <hex>`, then closed.
    Serve {
        /// Directory of the mounted kubernetes.io/tls Secret.
        #[arg(long, default_value = "/etc/tls")]
        cert_dir: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0:8443")]
        addr: SocketAddr,
        /// Seconds between re-reads of the certificate files.
        #[arg(long, default_value_t = 1.0, value_parser = seconds)]
        reload_every: f64,
    },
    /// Connect, verify the server against a CA file and a name, and print the result.
    ///
    /// Prints one line per attempt: `verified <server-name> at <connect>:
    /// serial <hex> issuer <dn> not after <rfc3339>`, or `FAILED <server-name>
    /// at <connect>: <reason>`. Exits 0 if the last attempt verified, 1 if not.
    Check {
        /// host:port to connect to.
        #[arg(long)]
        connect: String,
        /// DNS name the certificate must be valid for (also SNI and Host).
        #[arg(long)]
        server_name: String,
        /// PEM file of the only CA certificates to trust (no system roots).
        #[arg(long, default_value = "/etc/tls/ca.crt")]
        ca: PathBuf,
        /// Repeat every this many seconds, retrying failures, until terminated.
        #[arg(long, value_parser = seconds)]
        every: Option<f64>,
        /// With --every, stop after this many attempts.
        #[arg(long, requires = "every")]
        count: Option<u64>,
        /// Seconds allowed per attempt for connect, handshake and reply.
        #[arg(long, default_value_t = 10.0, value_parser = seconds)]
        timeout: f64,
    },
}

fn seconds(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds > 0.0 => Ok(seconds),
        _ => Err(format!("{value:?} is not a positive number of seconds")),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // kubectl logs shows escape codes verbatim.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));

    match cli.command {
        Command::Serve {
            cert_dir,
            addr,
            reload_every,
        } => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?;
            tracing::info!(%addr, cert_dir = %cert_dir.display(), "listening");
            let options = ServeOptions {
                reload_every: Duration::from_secs_f64(reload_every),
                ..ServeOptions::new(cert_dir)
            };
            serve(listener, options, Arc::new(Stdout), shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            connect,
            server_name,
            ca,
            every,
            count,
            timeout,
        } => {
            let options = CheckOptions {
                every: every.map(Duration::from_secs_f64),
                count,
                timeout: Duration::from_secs_f64(timeout),
                ..CheckOptions::new(connect, server_name, ca)
            };
            let verified = check(&options, &Stdout, &shutdown).await;
            Ok(if verified {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// Cancels on SIGTERM (Pod deletion) or SIGINT.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the app");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}
