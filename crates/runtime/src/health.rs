//! gRPC health (`grpc.health.v1`) for Kubernetes `grpc:` probes.
//!
//! The overall status (service name `""`, what a probe without `service`
//! asks for) is SERVING only while every dependency the service declared
//! (e.g. `nats`, `kubernetes`) has been reported reachable and no shutdown has
//! begun.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;
use tracing::{info, warn};

use crate::RuntimeError;
use crate::server::{RunningServer, bind};

/// Flips the service between SERVING and NOT_SERVING. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HealthHandle {
    reporter: HealthReporter,
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    dependencies: BTreeMap<String, bool>,
    shutting_down: bool,
}

impl State {
    fn serving(&self) -> bool {
        !self.shutting_down && self.dependencies.values().all(|ready| *ready)
    }
}

impl HealthHandle {
    /// A handle and the tonic service it controls, for servers that host the
    /// health service next to their own. Every dependency starts unreachable,
    /// so the status is NOT_SERVING until each was reported ready.
    pub async fn new(dependencies: &[&str]) -> (Self, HealthServer<impl Health>) {
        let (reporter, service) = tonic_health::server::health_reporter();
        let state = State {
            dependencies: dependencies
                .iter()
                .map(|name| ((*name).to_owned(), false))
                .collect(),
            shutting_down: false,
        };
        let handle = Self {
            reporter,
            state: Arc::new(Mutex::new(state)),
        };
        handle.publish().await;
        (handle, service)
    }

    /// Records whether `dependency` (e.g. `"nats"`) is reachable; a name not
    /// declared in [`HealthHandle::new`] is added.
    pub async fn set_ready(&self, dependency: &str, ready: bool) {
        let previous = self.update(|state| state.dependencies.insert(dependency.to_owned(), ready));
        if previous != Some(ready) {
            if ready {
                info!(dependency, "dependency reachable");
            } else {
                warn!(dependency, "dependency unreachable; reporting NOT_SERVING");
            }
        }
        self.publish().await;
    }

    /// Reports NOT_SERVING from now on, whatever the dependencies say; call
    /// when shutdown begins so that probes and load balancers stop sending work.
    pub async fn set_shutting_down(&self) {
        self.update(|state| state.shutting_down = true);
        self.publish().await;
    }

    /// Probes `dependency` every `interval` until `stop` fires, recording
    /// each answer with [`HealthHandle::set_ready`]; a probe that takes longer
    /// than `interval` counts as unreachable. For dependencies that have no
    /// connection events of their own, such as the Kubernetes API behind a
    /// request-per-call client.
    pub async fn probe_periodically<F, Fut>(
        self,
        dependency: &'static str,
        interval: Duration,
        stop: CancellationToken,
        mut probe: F,
    ) where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            let reachable = tokio::time::timeout(interval, probe())
                .await
                .unwrap_or(false);
            self.set_ready(dependency, reachable).await;
        }
    }

    /// True when the overall status is SERVING.
    pub fn is_serving(&self) -> bool {
        self.update(|state| state.serving())
    }

    fn update<T>(&self, change: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut state)
    }

    async fn publish(&self) {
        let status = if self.is_serving() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status("", status).await;
    }
}

/// Binds `addr` and serves `grpc.health.v1` in the background until stopped.
pub async fn serve(
    addr: SocketAddr,
    dependencies: &[&str],
) -> Result<(HealthHandle, RunningServer), RuntimeError> {
    let (listener, local_addr) = bind("health", addr).await?;
    let (handle, service) = HealthHandle::new(dependencies).await;
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), stopped.cancelled_owned())
            .await
            .map_err(|source| RuntimeError::Serve {
                server: "health",
                source: Box::new(source),
            })
    });
    info!(%local_addr, "serving grpc.health.v1");
    Ok((handle, RunningServer::new("health", local_addr, stop, task)))
}

#[cfg(test)]
mod tests;
