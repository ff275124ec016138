//! The TLS server: `serve --cert-dir … --addr …`.
//!
//! Observes `<cert-dir>/tls.crt` and `<cert-dir>/tls.key`, re-reading them
//! every [`ServeOptions::reload_every`]; writes a `serving …` line per
//! certificate loaded and a `cannot load …` line per distinct load error;
//! answers every connection with the serial it presented. Never writes files
//! and never prints key material.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::{AppError, CertificateFacts, Lines, tls};

/// How the server finds and refreshes its certificate.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Directory holding `tls.crt` (leaf first, then chain) and `tls.key`.
    pub cert_dir: PathBuf,
    /// How often the files are re-read and compared with what is served.
    pub reload_every: Duration,
}

impl ServeOptions {
    /// Re-reads the files every second: the kubelet refreshes Secret volumes
    /// far less often, and a read of two small files costs nothing.
    pub fn new(cert_dir: impl Into<PathBuf>) -> Self {
        Self {
            cert_dir: cert_dir.into(),
            reload_every: Duration::from_secs(1),
        }
    }
}

/// How long a client may take to send its request after the handshake.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests longer than this are answered anyway, without reading further.
const MAX_REQUEST: usize = 8 * 1024;

/// A certificate ready to serve: its TLS config and what the lines say about it.
#[derive(Debug)]
struct Loaded {
    config: Arc<ServerConfig>,
    facts: CertificateFacts,
}

/// Serves TLS on `listener` until `shutdown` is cancelled, then returns
/// `Ok(())` without waiting for open connections.
///
/// Before a certificate could be loaded, connections are accepted and closed
/// at once (the client sees a reset or an unexpected EOF); the server keeps
/// retrying the files.
pub async fn serve(
    listener: TcpListener,
    options: ServeOptions,
    lines: Arc<dyn Lines>,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    let (current_tx, current) = watch::channel(None::<Arc<Loaded>>);
    let reloader = tokio::spawn(keep_loading(
        options,
        lines,
        current_tx,
        shutdown.child_token(),
    ));
    let result = accept_until(listener, current, &shutdown).await;
    shutdown.cancel();
    // The reloader ends at the cancellation; its panic would be a bug worth seeing.
    if let Err(error) = reloader.await
        && error.is_panic()
    {
        std::panic::resume_unwind(error.into_panic());
    }
    result
}

async fn accept_until(
    listener: TcpListener,
    current: watch::Receiver<Option<Arc<Loaded>>>,
    shutdown: &CancellationToken,
) -> Result<(), AppError> {
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => accepted.map_err(|source| AppError::Accept { source })?,
        };
        let loaded = current.borrow().clone();
        let Some(loaded) = loaded else {
            debug!(%peer, "no certificate loaded yet; closing the connection");
            continue;
        };
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                result = answer(stream, &loaded) => {
                    if let Err(error) = result {
                        debug!(%peer, %error, "connection ended with an error");
                    }
                }
            }
        });
    }
}

/// One connection: handshake with the certificate current at accept time,
/// read the request, answer with that certificate's serial, close.
async fn answer(stream: TcpStream, loaded: &Loaded) -> std::io::Result<()> {
    let mut tls = TlsAcceptor::from(Arc::clone(&loaded.config))
        .accept(stream)
        .await?;
    tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut tls))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request in time"))??;
    let body = format!("serial {}\n", loaded.facts.serial);
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(response.as_bytes()).await?;
    tls.shutdown().await
}

/// Reads an HTTP request head (up to the blank line), or a single line when
/// the first line is not an HTTP request line (`openssl s_client` typing).
async fn read_request<S: AsyncReadExt + Unpin>(stream: &mut S) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buffer = [0_u8; 1024];
    loop {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buffer[..read]);
        if request_complete(&request) || request.len() >= MAX_REQUEST {
            return Ok(());
        }
    }
}

fn request_complete(request: &[u8]) -> bool {
    let Some(first_line_end) = request.iter().position(|byte| *byte == b'\n') else {
        return false;
    };
    let first_line = String::from_utf8_lossy(&request[..first_line_end]);
    if !first_line.trim_end().contains(" HTTP/1.") {
        return true;
    }
    request.windows(4).any(|window| window == b"\r\n\r\n")
        || request.windows(2).any(|window| window == b"\n\n")
}

/// Polls the files and publishes each new certificate, until cancelled.
async fn keep_loading(
    options: ServeOptions,
    lines: Arc<dyn Lines>,
    current: watch::Sender<Option<Arc<Loaded>>>,
    shutdown: CancellationToken,
) {
    let mut last_files: Option<Files> = None;
    let mut last_error: Option<String> = None;
    let mut ticker = tokio::time::interval(options.reload_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let files = match Files::read(&options.cert_dir).await {
            Ok(Some(files)) => files,
            // The volume was being swapped between two reads; the next tick sees it whole.
            Ok(None) => continue,
            Err(error) => {
                report_once(&*lines, &mut last_error, &options.cert_dir, &error);
                last_files = None;
                continue;
            }
        };
        if last_files.as_ref() == Some(&files) {
            continue;
        }
        match load(&files, &options.cert_dir) {
            Ok(loaded) => {
                lines.line(&serving_line(&loaded.facts));
                last_error = None;
                current.send_replace(Some(Arc::new(loaded)));
            }
            Err(error) => report_once(&*lines, &mut last_error, &options.cert_dir, &error),
        }
        last_files = Some(files);
    }
}

/// `serving serial <hex> subject <dn> not after <rfc3339>`.
pub fn serving_line(facts: &CertificateFacts) -> String {
    format!(
        "serving serial {} subject {} not after {}",
        facts.serial, facts.subject, facts.not_after
    )
}

/// `cannot load certificate from <dir>: <error>`, unless it repeats the last one.
fn report_once(lines: &dyn Lines, last_error: &mut Option<String>, dir: &Path, error: &AppError) {
    let line = format!(
        "cannot load certificate from {}: {error}; retrying",
        dir.display()
    );
    if last_error.as_deref() != Some(line.as_str()) {
        lines.line(&line);
        *last_error = Some(line);
    }
}

/// The bytes of `tls.crt` and `tls.key` as read together.
#[derive(PartialEq, Eq)]
struct Files {
    certificate: Vec<u8>,
    key: Vec<u8>,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files")
            .field("certificate_bytes", &self.certificate.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Files {
    /// Reads both files; `Ok(None)` when `tls.crt` changed while the key was
    /// read (the kubelet swapped `..data` in between), so a certificate is
    /// never paired with the key of another.
    async fn read(dir: &Path) -> Result<Option<Self>, AppError> {
        let certificate_path = dir.join("tls.crt");
        let certificate = read(&certificate_path).await?;
        let key = read(&dir.join("tls.key")).await?;
        if read(&certificate_path).await? != certificate {
            return Ok(None);
        }
        Ok(Some(Self { certificate, key }))
    }
}

async fn read(path: &Path) -> Result<Vec<u8>, AppError> {
    tokio::fs::read(path)
        .await
        .map_err(|source| AppError::Read {
            path: path.to_owned(),
            source,
        })
}

fn load(files: &Files, dir: &Path) -> Result<Loaded, AppError> {
    let certificate_path = dir.join("tls.crt");
    let chain = tls::certificates_from_pem(&files.certificate, &certificate_path)?;
    let facts = CertificateFacts::from_der(&chain[0], &certificate_path.display().to_string())?;
    let key = tls::private_key_from_pem(&files.key, &dir.join("tls.key"))?;
    let config = tls::server_config(chain, key, dir)?;
    Ok(Loaded {
        config: Arc::new(config),
        facts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_request_is_complete_at_the_blank_line() {
        assert!(!request_complete(b"GET / HTTP/1.1\r\nHost: a\r\n"));
        assert!(request_complete(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(request_complete(b"GET / HTTP/1.0\n\n"));
    }

    #[test]
    fn a_line_that_is_not_http_is_a_whole_request() {
        assert!(request_complete(b"hello\n"));
        assert!(!request_complete(b"hello"));
    }

    #[test]
    fn the_serving_line_names_serial_subject_and_expiry() {
        let facts = CertificateFacts {
            serial: "0abc".to_owned(),
            subject: "CN=app".to_owned(),
            issuer: "CN=ca".to_owned(),
            not_after: "2030-01-01T00:00:00Z".to_owned(),
        };
        assert_eq!(
            serving_line(&facts),
            "serving serial 0abc subject CN=app not after 2030-01-01T00:00:00Z"
        );
    }
}
