//! The verifying client: `check --connect … --server-name … --ca …`.
//!
//! Observes a TLS server and a CA file; writes exactly one line per attempt
//! (`verified …` or `FAILED …`). Trusts only the CA file's certificates,
//! never the system roots.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use crate::{AppError, CertificateFacts, Lines, tls};

/// What to check and how often.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// `host:port` to connect to.
    pub connect: String,
    /// The DNS name (or IP address) the certificate must be valid for; also
    /// the SNI and the `Host` header.
    pub server_name: String,
    /// PEM file whose certificates are the only trust anchors; re-read on
    /// every attempt, so a rotated `ca.crt` is picked up.
    pub ca: PathBuf,
    /// Pause between attempts; `None` makes one attempt.
    pub every: Option<Duration>,
    /// With `every`, stop after this many attempts; `None` repeats until shut down.
    pub count: Option<u64>,
    /// Limit for connecting, handshaking and reading the reply, each attempt.
    pub timeout: Duration,
}

impl CheckOptions {
    /// One attempt with a 10 s timeout.
    pub fn new(
        connect: impl Into<String>,
        server_name: impl Into<String>,
        ca: impl Into<PathBuf>,
    ) -> Self {
        Self {
            connect: connect.into(),
            server_name: server_name.into(),
            ca: ca.into(),
            every: None,
            count: None,
            timeout: Duration::from_secs(10),
        }
    }
}

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The chain verified against the CA file and the name, and the server answered.
    Verified(CertificateFacts),
    /// Why the attempt failed, in words (rustls' reason for TLS failures).
    Failed(String),
}

impl Attempt {
    pub fn succeeded(&self) -> bool {
        matches!(self, Self::Verified(_))
    }

    /// `verified <server-name> at <connect>: serial <hex> issuer <dn> not after <rfc3339>`
    /// or `FAILED <server-name> at <connect>: <reason>`.
    pub fn line(&self, options: &CheckOptions) -> String {
        match self {
            Self::Verified(facts) => format!(
                "verified {} at {}: serial {} issuer {} not after {}",
                options.server_name, options.connect, facts.serial, facts.issuer, facts.not_after
            ),
            Self::Failed(reason) => format!(
                "FAILED {} at {}: {reason}",
                options.server_name, options.connect
            ),
        }
    }
}

/// Runs the attempts `options` asks for, writing one line each, and returns
/// whether the last completed attempt succeeded. Stops early, between or
/// during attempts, when `shutdown` is cancelled (an interrupted attempt
/// writes no line; with none completed the result is `true`, as a Pod deleted
/// before its first check did not fail one).
pub async fn check(
    options: &CheckOptions,
    lines: &dyn Lines,
    shutdown: &CancellationToken,
) -> bool {
    let mut last = true;
    let mut attempts: u64 = 0;
    loop {
        let attempt = tokio::select! {
            () = shutdown.cancelled() => return last,
            attempt = check_once(options) => attempt,
        };
        lines.line(&attempt.line(options));
        last = attempt.succeeded();
        attempts += 1;
        let Some(every) = options.every else {
            return last;
        };
        if options.count.is_some_and(|count| attempts >= count) {
            return last;
        }
        tokio::select! {
            () = shutdown.cancelled() => return last,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// One attempt: connect, handshake trusting only `options.ca`, send
/// `GET / HTTP/1.1`, read the reply.
pub async fn check_once(options: &CheckOptions) -> Attempt {
    match tokio::time::timeout(options.timeout, attempt(options)).await {
        Ok(Ok(facts)) => Attempt::Verified(facts),
        Ok(Err(reason)) => Attempt::Failed(reason),
        Err(_) => Attempt::Failed(format!("timed out after {:?}", options.timeout)),
    }
}

async fn attempt(options: &CheckOptions) -> Result<CertificateFacts, String> {
    let ca_pem = tokio::fs::read(&options.ca)
        .await
        .map_err(|source| AppError::Read {
            path: options.ca.clone(),
            source,
        })
        .map_err(|error| error.to_string())?;
    let config = tls::client_config(&ca_pem, &options.ca).map_err(|error| error.to_string())?;
    let server_name = ServerName::try_from(options.server_name.clone())
        .map_err(|source| AppError::ServerName {
            name: options.server_name.clone(),
            source,
        })
        .map_err(|error| error.to_string())?;

    let tcp = TcpStream::connect(&options.connect)
        .await
        .map_err(|error| format!("connect: {error}"))?;
    let mut stream = TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(|error| handshake_failure(&error, options))?;

    // The handshake verified the chain; these are the facts of what it verified.
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or_else(|| "server presented no certificate".to_owned())?;
    let facts = CertificateFacts::from_der(leaf, "the server's certificate")
        .map_err(|error| error.to_string())?;

    let request = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nUser-Agent: certflow-example-app\r\nConnection: close\r\n\r\n",
        options.server_name
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|error| format!("sending the request: {error}"))?;
    let mut reply = Vec::new();
    read_reply(&mut stream, &mut reply)
        .await
        .map_err(|error| format!("reading the reply: {error}"))?;
    let status_line = String::from_utf8_lossy(&reply)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    if !status_line.starts_with("HTTP/1.1 200") && !status_line.starts_with("HTTP/1.0 200") {
        return Err(format!("unexpected reply {status_line:?}"));
    }
    Ok(facts)
}

/// Reads to EOF; a peer that closes without close_notify after a complete
/// reply is tolerated (many servers do), since the handshake already proved
/// who it is.
async fn read_reply<S: AsyncReadExt + Unpin>(
    stream: &mut S,
    reply: &mut Vec<u8>,
) -> std::io::Result<()> {
    match stream.read_to_end(reply).await {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof && !reply.is_empty() => {
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// The handshake's reason, worded for the log: rustls' own text, except for
/// an unknown issuer, which names the CA file it was checked against.
fn handshake_failure(error: &std::io::Error, options: &CheckOptions) -> String {
    let rustls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)) => {
            format!(
                "unknown issuer: the server's certificate does not chain to a certificate in {}",
                options.ca.display()
            )
        }
        Some(rustls_error) => format!("handshake: {rustls_error}"),
        None => format!("handshake: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> CheckOptions {
        CheckOptions::new("app.demo.svc:8443", "app.demo.svc", "/etc/tls/ca.crt")
    }

    #[test]
    fn a_verified_line_names_serial_issuer_and_expiry() {
        let attempt = Attempt::Verified(CertificateFacts {
            serial: "01ff".to_owned(),
            subject: "CN=app".to_owned(),
            issuer: "CN=certflow demo CA, O=certflow".to_owned(),
            not_after: "2030-01-01T00:00:00Z".to_owned(),
        });
        assert_eq!(
            attempt.line(&options()),
            "verified app.demo.svc at app.demo.svc:8443: serial 01ff issuer CN=certflow demo CA, O=certflow not after 2030-01-01T00:00:00Z"
        );
    }

    #[test]
    fn a_failed_line_starts_with_failed_and_gives_the_reason() {
        let attempt = Attempt::Failed("connect: Connection refused (os error 111)".to_owned());
        assert_eq!(
            attempt.line(&options()),
            "FAILED app.demo.svc at app.demo.svc:8443: connect: Connection refused (os error 111)"
        );
        assert!(!attempt.succeeded());
    }
}
