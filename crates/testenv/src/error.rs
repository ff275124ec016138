use std::path::PathBuf;

/// Everything that can stop the local control plane from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{tool} not found at {path}: build the local control plane with `scripts/install-tools.sh` \
         (or `make tools`); the first build takes a while, later runs reuse the cache"
    )]
    ToolMissing { tool: &'static str, path: PathBuf },

    #[error(
        "{what} not found at {path}: build it with `{command}`; the first build takes a while, \
         later runs reuse the cache"
    )]
    NodeToolMissing {
        what: String,
        path: PathBuf,
        command: &'static str,
    },

    #[error("reading the pinned tool versions in {path}: {source}")]
    Versions {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{process} did not become ready within {seconds}s; last lines of {log}:\n{tail}")]
    NotReady {
        process: String,
        seconds: u64,
        log: PathBuf,
        tail: String,
    },

    #[error("{process} exited during start-up ({status}); last lines of {log}:\n{tail}")]
    Exited {
        process: String,
        status: String,
        log: PathBuf,
        tail: String,
    },

    #[error("generating test PKI: {0}")]
    Pki(#[from] rcgen::Error),

    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),

    #[error("connecting to NATS at {url}: {source}")]
    Nats {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },

    #[error("setting up the bus (streams and consumers): {0}")]
    Bus(#[from] certflow_bus::BusError),

    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}
