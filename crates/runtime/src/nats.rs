//! Connecting to NATS at start-up, with retries, and reporting the
//! connection's reachability to the health handle afterwards.
//!
//! async-nats can retry the first connection itself
//! (`ConnectOptions::retry_on_initial_connect`), and certflow does not use
//! it: the client it returns at once retries forever in the background, so
//! a service would run its start-up (stream and consumer checks) against a
//! connection that is not there, each call failing on its own timeout, and a
//! wrong URL or password would never end. The loop below is what the option
//! leaves out: a deadline (`--nats-connect-timeout`), and at the deadline
//! one exit message with the last connection error, the first thing an
//! operator reads in `kubectl logs`. After the first connection, reconnects
//! are async-nats' own.
//!
//! TLS (`--nats-tls-ca`, `--nats-tls-cert`, `--nats-tls-key`, or a `tls://`
//! URL) is async-nats' too; this module checks the files before each
//! attempt, so a wrong path or a key that does not match its certificate
//! ends start-up at once, naming the file, instead of being retried until
//! the deadline.

use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::{CommonArgs, HealthHandle, NatsTls, RuntimeError, Shutdown};

/// Name of the health dependency that tracks the NATS connection.
pub const NATS_DEPENDENCY: &str = "nats";

/// First delay between connection attempts; doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Connects to `--nats-url` as `connection_name` (shown by `nats server
/// report connections`), retrying with exponential backoff for up to
/// `--nats-connect-timeout` while NATS is not yet reachable (it often starts
/// alongside the service). Once connected the client reconnects on its own,
/// and every disconnect and reconnect flips the `nats` dependency of
/// `health`. Returns early with [`RuntimeError::ShutdownWhileConnecting`] if
/// `shutdown` fires. Installs rustls' crypto provider first, so a caller
/// without a [`crate::Service`] (`certflow-watcher setup-bus`) connects over
/// TLS too.
pub async fn connect_nats(
    args: &CommonArgs,
    connection_name: &str,
    health: &HealthHandle,
    shutdown: &Shutdown,
) -> Result<Client, RuntimeError> {
    crate::tls::install_crypto_provider();
    let deadline = Instant::now() + args.nats_connect_timeout;
    let mut delay = FIRST_RETRY_DELAY;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let options = options(args, connection_name, health).await?;
        let attempt = tokio::select! {
            attempt = options.connect(args.nats_servers()) => attempt,
            () = shutdown.requested() => {
                return Err(RuntimeError::ShutdownWhileConnecting { url: args.nats_url.clone() });
            }
        };
        match attempt {
            Ok(client) => {
                info!(url = %args.nats_url, attempts, "connected to NATS");
                health.set_ready(NATS_DEPENDENCY, true).await;
                return Ok(client);
            }
            Err(source) if Instant::now() + delay >= deadline => {
                return Err(RuntimeError::NatsConnect {
                    url: args.nats_url.clone(),
                    attempts,
                    tls_required: tls_required(args),
                    source,
                });
            }
            Err(error) => {
                warn!(url = %args.nats_url, attempts, %error, retry_in_ms = delay.as_millis(), "NATS not reachable yet");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.requested() => {
                        return Err(RuntimeError::ShutdownWhileConnecting { url: args.nats_url.clone() });
                    }
                }
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
        }
    }
}

async fn options(
    args: &CommonArgs,
    connection_name: &str,
    health: &HealthHandle,
) -> Result<ConnectOptions, RuntimeError> {
    let health = health.clone();
    let mut options = ConnectOptions::new()
        .name(connection_name)
        .custom_inbox_prefix(inbox_prefix(connection_name))
        .connection_timeout(Duration::from_secs(5))
        .event_callback(move |event| report_event(health.clone(), event));
    if let Some(path) = &args.nats_creds {
        options = options.credentials_file(path).await.map_err(|source| {
            RuntimeError::NatsCredentials {
                path: path.clone(),
                source,
            }
        })?;
    }
    match (&args.nats_user, &args.nats_password) {
        (Some(user), Some(password)) => {
            options = options.user_and_password(user.clone(), password.clone());
        }
        (None, None) => {}
        _ => return Err(RuntimeError::NatsUserWithoutPassword),
    }
    if let Some(tls) = args.nats_tls()? {
        options = with_tls(options, &tls)?;
    }
    Ok(options)
}

/// Adds the `--nats-tls-*` files to `options`, after checking them (see
/// [`crate::tls::check_nats_tls_files`]). TLS becomes required: against a
/// server that does not offer it the connection fails rather than carrying
/// the password in plain text. A `tls://` URL requires TLS on its own, with
/// the system roots unless `--nats-tls-ca` is given.
fn with_tls(mut options: ConnectOptions, tls: &NatsTls) -> Result<ConnectOptions, RuntimeError> {
    crate::tls::check_nats_tls_files(tls)?;
    if let Some(ca) = &tls.ca {
        // Replaces the system roots: async-nats loads them only when no
        // root certificate was added.
        options = options.add_root_certificates(ca.clone());
    }
    if let Some(client) = &tls.client {
        options = options.add_client_certificate(client.cert.clone(), client.key.clone());
    }
    Ok(options.require_tls(true))
}

/// Whether this service connects only over TLS: a `--nats-tls-*` flag is
/// given, or a `--nats-url` server is `tls://`.
fn tls_required(args: &CommonArgs) -> bool {
    args.nats_tls_ca.is_some()
        || args.nats_tls_cert.is_some()
        || args
            .nats_servers()
            .iter()
            .any(|url| url.starts_with("tls://"))
}

/// Where the replies to this service's requests (JetStream API calls, pulled
/// messages) arrive: `_INBOX.<connection name>`, so that NATS permissions can
/// let each service's user read its own replies and no other's
/// (`deploy/base/nats/auth.conf`).
pub fn inbox_prefix(connection_name: &str) -> String {
    format!("_INBOX.{connection_name}")
}

/// Logs a connection event and mirrors reachability into `health`.
async fn report_event(health: HealthHandle, event: Event) {
    match event {
        Event::Connected => health.set_ready(NATS_DEPENDENCY, true).await,
        Event::Disconnected | Event::Closed => health.set_ready(NATS_DEPENDENCY, false).await,
        Event::LameDuckMode => warn!("NATS server entered lame duck mode"),
        other => warn!(event = %other, "NATS client event"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        common: CommonArgs,
    }

    fn args(flags: &[&str]) -> CommonArgs {
        Cli::try_parse_from(std::iter::once("certflow-test").chain(flags.iter().copied()))
            .map(|cli| cli.common)
            .unwrap_or_else(|error| panic!("{flags:?}: {error}"))
    }

    #[test]
    fn tls_is_required_by_a_tls_flag_or_a_tls_url() {
        let nothing_set = [
            "CERTFLOW_NATS_TLS_CA",
            "CERTFLOW_NATS_TLS_CERT",
            "CERTFLOW_NATS_TLS_KEY",
        ]
        .into_iter()
        .all(|name| std::env::var_os(name).is_none());
        if nothing_set {
            assert!(!tls_required(&args(&["--nats-url=nats://a:4222"])));
        }
        for flags in [
            &["--nats-url=tls://a:4222"][..],
            &["--nats-url=nats://a:4222,tls://b:4222"],
            &["--nats-url=nats://a:4222", "--nats-tls-ca=ca.crt"],
            &[
                "--nats-url=nats://a:4222",
                "--nats-tls-cert=tls.crt",
                "--nats-tls-key=tls.key",
            ],
        ] {
            assert!(tls_required(&args(flags)), "{flags:?}");
        }
    }

    #[tokio::test]
    async fn a_missing_tls_file_ends_connecting_at_once_naming_it() {
        let (health, _server) = HealthHandle::new(&[NATS_DEPENDENCY]).await;
        let shutdown = Shutdown::new(Duration::from_secs(1));
        // Nothing listens on port 9, and the deadline is far away: only the
        // file check can end this quickly.
        let args = args(&[
            "--nats-url=nats://127.0.0.1:9",
            "--nats-connect-timeout=1h",
            "--nats-tls-ca=/nonexistent/certflow/ca.crt",
        ]);
        let attempt = tokio::time::timeout(
            Duration::from_secs(10),
            connect_nats(&args, "certflow-test", &health, &shutdown),
        )
        .await;
        let error = match attempt {
            Ok(Err(error)) => error.to_string(),
            other => panic!("expected an error at once, got {other:?}"),
        };
        assert!(
            error.contains("--nats-tls-ca") && error.contains("/nonexistent/certflow/ca.crt"),
            "{error}"
        );
    }
}
