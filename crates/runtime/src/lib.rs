//! Plumbing every certflow service binary shares, so that each `main.rs` is
//! wiring: the common flags ([`CommonArgs`]), logging and optional OTLP span
//! export ([`telemetry`]), gRPC
//! health for Kubernetes probes ([`health`]), Prometheus metrics
//! ([`metrics`]), graceful shutdown on SIGTERM ([`Shutdown`]) and the NATS
//! connection ([`connect_nats`]), and the Kubernetes API client with its
//! optional rate limit and the one rule for which of its errors are
//! transient ([`kube_client`]); [`Service`] runs them in order.
//! This crate never reads or writes Kubernetes objects, never names a
//! subject or stream (that is `certflow-bus`), and holds no business logic.
#![forbid(unsafe_code)]

mod args;
mod error;
pub mod health;
pub mod kube_client;
pub mod metrics;
pub mod nats;
mod server;
mod service;
mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod watchdog;

pub use args::{ClientCertificate, CommonArgs, LogFormat, NatsTls, parse_duration};
pub use error::RuntimeError;
pub use health::HealthHandle;
pub use metrics::Metrics;
pub use nats::connect_nats;
pub use server::RunningServer;
pub use service::Service;
pub use shutdown::Shutdown;
pub use watchdog::Watchdog;
