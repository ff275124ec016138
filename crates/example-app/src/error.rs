use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in this crate, with the file or peer it
/// concerns. The server retries the load errors; the checker turns any of them
/// into a `FAILED` line.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A certificate or key file could not be read (missing volume, permissions).
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A PEM file held nothing of the expected kind, or was malformed.
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    /// A certificate's DER could not be parsed as X.509.
    #[error("cannot parse the certificate in {what}: {message}")]
    X509 { what: String, message: String },
    /// rustls refused the certificate and key (mismatched key, unsupported algorithm).
    #[error("cannot use the certificate and key from {dir}: {source}")]
    Tls {
        dir: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// A CA file's certificate cannot serve as a trust anchor, or the
    /// client configuration cannot be built.
    #[error("cannot trust the certificates in {path}: {source}")]
    TrustAnchor {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// `--server-name` is not a valid DNS name or IP address.
    #[error("invalid server name {name:?}: {source}")]
    ServerName {
        name: String,
        #[source]
        source: rustls::pki_types::InvalidDnsNameError,
    },
    /// The listening socket failed.
    #[error("accepting connections: {source}")]
    Accept {
        #[source]
        source: io::Error,
    },
}
