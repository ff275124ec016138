/// Why a reconcile could not finish; it is retried with backoff
/// ([`crate::schedule::Schedule::after_error`]).
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
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Bus(err) => err.is_transient(),
        }
    }
}
