//! Logging and tracing: one global `tracing` subscriber writing text or JSON
//! lines and, when `--otlp-endpoint` is set, exporting every span over
//! OTLP/gRPC as an OpenTelemetry span of the service's trace.
//!
//! Without an endpoint no OpenTelemetry layer is installed: spans cost what
//! they did before, and `certflow-bus` carries the trace id in message
//! headers by hand. With one, `tracing-opentelemetry` turns spans into
//! OpenTelemetry spans (their ids are the ones propagated in `traceparent`)
//! and a batch processor sends them on its own thread; [`Telemetry::shutdown`]
//! (called by [`crate::Service::stop`]) exports what is still buffered.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::warn;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::{Layer as _, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::{LogFormat, RuntimeError};

/// How long [`Telemetry::shutdown`] waits for the last spans to be exported.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Targets whose spans are never exported: the exporter's own gRPC stack,
/// whose spans (at debug level) would each cause another export.
const EXPORT_MACHINERY: [&str; 5] = ["h2", "hyper", "tonic", "tower", "opentelemetry"];

/// Where and as whom spans are exported.
#[derive(Clone, Debug)]
pub struct OtlpExport {
    /// The collector's OTLP/gRPC endpoint, e.g. `http://otel-collector:4317`.
    pub endpoint: String,
    /// `service.name` of every span, e.g. `certflow-signer`.
    pub service_name: &'static str,
}

/// The installed subscriber's exporter, if any; keep it until the process
/// ends and call [`Telemetry::shutdown`] on the way out.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// True when spans are exported.
    pub fn exports(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still buffered (waiting at most [`FLUSH_TIMEOUT`])
    /// and stops exporting. Does nothing without an exporter or the second
    /// time. Blocks the calling thread; async code uses
    /// [`Telemetry::shutdown_async`].
    pub fn shutdown(&self) {
        if let Some(provider) = &self.provider {
            shut_down(provider);
        }
    }

    /// [`Telemetry::shutdown`] on a blocking thread, so that the exporter,
    /// which needs the Tokio runtime's I/O, is never waited for on one of
    /// its workers.
    pub async fn shutdown_async(&self) {
        if let Some(provider) = self.provider.clone() {
            let _ = tokio::task::spawn_blocking(move || shut_down(&provider)).await;
        }
    }
}

fn shut_down(provider: &SdkTracerProvider) {
    match provider.shutdown_with_timeout(FLUSH_TIMEOUT) {
        Ok(()) | Err(opentelemetry_sdk::error::OTelSdkError::AlreadyShutdown) => {}
        Err(error) => warn!(%error, "exporting the last spans failed"),
    }
}

impl Drop for Telemetry {
    /// A service that exits on an error without [`crate::Service::stop`]
    /// still exports its last spans, which tell how it ended.
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Installs the global subscriber. `filter` uses `RUST_LOG` syntax and
/// applies to exported spans too. Call once, first thing in `main` and
/// inside the Tokio runtime; a second call fails with
/// [`RuntimeError::TelemetryAlreadyInitialised`].
pub fn init(
    format: LogFormat,
    filter: &str,
    export: Option<&OtlpExport>,
) -> Result<Telemetry, RuntimeError> {
    let filter = parse_filter(filter)?;
    let provider = export.map(tracer_provider).transpose()?;
    let spans = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("certflow"))
            .with_filter(filter_fn(|metadata| {
                !EXPORT_MACHINERY
                    .iter()
                    .any(|target| metadata.target().starts_with(target))
            }))
    });
    let registry = tracing_subscriber::registry().with(filter).with(spans);
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
    installed.map_err(|source| RuntimeError::TelemetryAlreadyInitialised { source })?;
    Ok(Telemetry { provider })
}

/// A tracer provider batching spans to `export.endpoint`.
fn tracer_provider(export: &OtlpExport) -> Result<SdkTracerProvider, RuntimeError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(export.endpoint.clone())
        .build()
        .map_err(|source| RuntimeError::OtlpExporter {
            endpoint: export.endpoint.clone(),
            source,
        })?;
    let resource = Resource::builder()
        .with_service_name(export.service_name)
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
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

    #[tokio::test]
    async fn a_malformed_endpoint_is_refused_when_the_exporter_is_built() {
        let export = OtlpExport {
            endpoint: "http://exa mple:4317".to_owned(),
            service_name: "certflow-test",
        };
        let error = tracer_provider(&export).err();
        assert!(
            matches!(error, Some(RuntimeError::OtlpExporter { .. })),
            "{error:?}"
        );
    }

    #[test]
    fn without_an_exporter_shutdown_does_nothing() {
        let telemetry = Telemetry::default();
        assert!(!telemetry.exports());
        telemetry.shutdown();
    }
}
