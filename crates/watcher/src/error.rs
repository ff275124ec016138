/// Why a reconcile could not finish. Whether it is retried soon or only
/// after `--failure-retry` comes from the variant ([`Error::is_transient`],
/// [`crate::retry`]). The reconcile reads only the watcher's caches, so no
/// Kubernetes API error reaches it; a variant for one would take its rule
/// from `certflow_runtime::kube_client::is_transient`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("publishing a work item: {0}")]
    Bus(#[from] certflow_bus::BusError),
}

impl Error {
    /// A short, stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Bus(_) => "bus",
        }
    }

    /// Whether the same reconcile may succeed soon (the bus unreachable,
    /// slow or full); false when only a change by an operator can help.
    /// Bus errors follow `certflow_bus::BusError::is_transient`, the one
    /// rule every service shares.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Bus(err) => err.is_transient(),
        }
    }
}
