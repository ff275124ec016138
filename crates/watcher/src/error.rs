/// Why a reconcile could not finish; it is retried with backoff.
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
}
