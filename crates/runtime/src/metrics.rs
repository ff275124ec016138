//! Prometheus metrics: a shared registry and an HTTP server that renders it
//! at `/metrics` in the OpenMetrics text format.

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Metric, Registry};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::RuntimeError;
use crate::server::{RunningServer, bind};

/// Content type of the OpenMetrics text exposition format.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A metric registry shared between the code that records and the server
/// that renders. Cheap to clone; metrics can be registered at any time.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<RwLock<Registry>>,
    /// Metrics named `certflow_<name>` whichever service exports them:
    /// `certflow_build_info`, and those about the cluster's objects
    /// ([`Self::register_object_collector`]).
    unprefixed: Arc<RwLock<Registry>>,
}

impl Metrics {
    /// A registry whose metric names all start with `<prefix>_`, e.g.
    /// `certflow_signer`, beside `certflow_build_info{service, version}`
    /// (the service is the prefix with dashes: `certflow-signer`).
    pub fn new(prefix: &str) -> Self {
        let mut unprefixed = Registry::with_prefix("certflow");
        unprefixed.register(
            "build",
            "Which certflow service and version this process runs; always 1.",
            Info::new(vec![
                ("service", prefix.replace('_', "-")),
                ("version", env!("CARGO_PKG_VERSION").to_owned()),
            ]),
        );
        Self {
            registry: Arc::new(RwLock::new(Registry::with_prefix(prefix))),
            unprefixed: Arc::new(RwLock::new(unprefixed)),
        }
    }

    /// Registers a collector of metrics about the cluster's objects (a
    /// certificate's expiry, a CA's readiness), named `certflow_<name>` as
    /// alerting rules expect whichever service computes them. It runs on
    /// each scrape.
    pub fn register_object_collector(&self, collector: impl Collector) {
        self.unprefixed
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .register_collector(Box::new(collector));
    }

    /// Registers `metric` (keep a clone to record into; prometheus-client
    /// metrics share their state between clones).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        let mut registry = self
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        registry.register(name, help, metric);
    }

    /// Gives direct access to the registry, e.g. for sub-registries or units.
    pub fn with_registry<T>(&self, change: impl FnOnce(&mut Registry) -> T) -> T {
        let mut registry = self
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        change(&mut registry)
    }

    /// Renders every metric in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, RuntimeError> {
        let registry = self.registry.read().unwrap_or_else(PoisonError::into_inner);
        let mut text = String::new();
        let unprefixed = self
            .unprefixed
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        encode_registry(&mut text, &unprefixed)
            .and_then(|()| encode_registry(&mut text, &registry))
            .and_then(|()| encode_eof(&mut text))
            .map_err(|source| RuntimeError::MetricsEncoding { source })?;
        Ok(text)
    }
}

/// Binds `addr` and serves `GET /metrics` in the background until stopped.
pub async fn serve(addr: SocketAddr, metrics: Metrics) -> Result<RunningServer, RuntimeError> {
    let (listener, local_addr) = bind("metrics", addr).await?;
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move { render(&metrics) }
        }),
    );
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stopped.cancelled_owned())
            .await
            .map_err(|source| RuntimeError::Serve {
                server: "metrics",
                source: Box::new(source),
            })
    });
    info!(%local_addr, "serving metrics at /metrics");
    Ok(RunningServer::new("metrics", local_addr, stop, task))
}

fn render(metrics: &Metrics) -> Response {
    match metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], text).into_response(),
        Err(err) => {
            error!(error = %err, "cannot render metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response()
        }
    }
}

#[cfg(test)]
mod tests;
