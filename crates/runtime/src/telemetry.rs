//! Logging: one global `tracing` subscriber writing text or JSON lines.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::{LogFormat, RuntimeError};

/// Installs the global subscriber. `filter` uses `RUST_LOG` syntax. Call once,
/// first thing in `main`; a second call fails with
/// [`RuntimeError::TelemetryAlreadyInitialised`].
pub fn init(format: LogFormat, filter: &str) -> Result<(), RuntimeError> {
    let filter = parse_filter(filter)?;
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_target(true))
            .try_init(),
        // Span fields (namespace, name, trace_id, ...) are flattened into each
        // line so log queries can filter on them directly.
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
    };
    installed.map_err(|source| RuntimeError::TelemetryAlreadyInitialised { source })
}

fn parse_filter(filter: &str) -> Result<EnvFilter, RuntimeError> {
    EnvFilter::try_new(filter).map_err(|source| RuntimeError::InvalidLogFilter {
        filter: filter.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_directives_are_accepted() {
        assert!(parse_filter("info,certflow_signer=debug,async_nats=warn").is_ok());
    }

    #[test]
    fn malformed_filters_are_refused() {
        let error = parse_filter("certflow=loud").err();
        assert!(
            matches!(error, Some(RuntimeError::InvalidLogFilter { .. })),
            "{error:?}"
        );
    }
}
