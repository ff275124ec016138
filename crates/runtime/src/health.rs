//! gRPC health (`grpc.health.v1`) for Kubernetes `grpc:` probes: two
//! answers for two questions.
//!
//! - **Readiness** ([`READINESS`], and the overall status `""`, what a probe
//!   without `service` asks for) is SERVING only while every dependency the
//!   service declared (e.g. `nats`, `kubernetes`) has been reported
//!   reachable and no shutdown has begun: "send me work".
//! - **Liveness** ([`LIVENESS`]) is SERVING while the process's runtime keeps
//!   beating its [`Watchdog`], whatever the dependencies say and also while
//!   shutting down: "do not restart me". It is worked out when asked (a
//!   `Check`), not pushed, so a stuck process cannot leave a stale SERVING
//!   behind; `Watch` is not offered for it (kubelet only calls `Check`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService, WatchStream};
use tracing::{info, warn};

use crate::RuntimeError;
use crate::server::{RunningServer, bind};
use crate::watchdog::{self, Watchdog};

/// The health service a liveness probe names (`grpc: {service: liveness}`).
pub const LIVENESS: &str = "liveness";

/// The health service a readiness probe names; the same status as `""`.
pub const READINESS: &str = "readiness";

/// Flips readiness between SERVING and NOT_SERVING, and holds the watchdog
/// liveness follows. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HealthHandle {
    reporter: HealthReporter,
    state: Arc<Mutex<State>>,
    watchdog: Watchdog,
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
    /// so readiness is NOT_SERVING until each was reported ready. Liveness
    /// follows the handle's [`Watchdog`]; nothing beats it until
    /// [`serve`] (or the caller) spawns [`Watchdog::keep_beating`].
    pub async fn new(dependencies: &[&str]) -> (Self, HealthServer<impl Health>) {
        let (handle, checks) = Self::with_checks(dependencies).await;
        (handle, HealthServer::new(checks))
    }

    async fn with_checks(dependencies: &[&str]) -> (Self, Checks) {
        let reporter = HealthReporter::new();
        let watchdog = Watchdog::default();
        let checks = Checks {
            statuses: HealthService::from_health_reporter(reporter.clone()),
            watchdog: watchdog.clone(),
        };
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
            watchdog,
        };
        handle.publish().await;
        (handle, checks)
    }

    /// Records whether `dependency` (e.g. `"nats"`) is reachable; a name not
    /// declared in [`HealthHandle::new`] is added.
    pub async fn set_ready(&self, dependency: &str, ready: bool) {
        let previous = self.update(|state| state.dependencies.insert(dependency.to_owned(), ready));
        if previous != Some(ready) {
            if ready {
                info!(dependency, "dependency reachable");
            } else {
                warn!(
                    dependency,
                    "dependency unreachable; reporting readiness NOT_SERVING"
                );
            }
        }
        self.publish().await;
    }

    /// Reports readiness NOT_SERVING from now on, whatever the dependencies
    /// say; call when shutdown begins so that probes and load balancers stop
    /// sending work. Liveness is unaffected: a draining process is alive.
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

    /// True when readiness (the overall status) is SERVING.
    pub fn is_serving(&self) -> bool {
        self.update(|state| state.serving())
    }

    /// True when liveness is SERVING: the watchdog was beaten recently.
    pub fn is_live(&self) -> bool {
        self.watchdog.is_alive()
    }

    /// The watchdog liveness follows.
    pub fn watchdog(&self) -> &Watchdog {
        &self.watchdog
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
        for service in ["", READINESS] {
            self.reporter.set_service_status(service, status).await;
        }
    }
}

/// `grpc.health.v1` with [`LIVENESS`] worked out at each `Check`, and every
/// other service as the [`HealthReporter`] last set it.
#[derive(Debug)]
struct Checks {
    statuses: HealthService,
    watchdog: Watchdog,
}

#[tonic::async_trait]
impl Health for Checks {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        if request.get_ref().service != LIVENESS {
            return self.statuses.check(request).await;
        }
        let status = if self.watchdog.is_alive() {
            WireStatus::Serving
        } else {
            warn!(
                since_last_beat_seconds = self.watchdog.since_last_beat().as_secs_f64(),
                "the runtime stopped beating its watchdog; reporting liveness NOT_SERVING"
            );
            WireStatus::NotServing
        };
        Ok(Response::new(HealthCheckResponse {
            status: status as i32,
        }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        if request.get_ref().service == LIVENESS {
            return Err(Status::unimplemented(
                "liveness is worked out at each Check; it cannot be watched",
            ));
        }
        self.statuses.watch(request).await
    }
}

/// Binds `addr` and serves `grpc.health.v1` in the background until stopped,
/// beating the handle's watchdog every [`watchdog::TICK`] from a task on the
/// calling runtime meanwhile.
pub async fn serve(
    addr: SocketAddr,
    dependencies: &[&str],
) -> Result<(HealthHandle, RunningServer), RuntimeError> {
    let (listener, local_addr) = bind("health", addr).await?;
    let (handle, service) = HealthHandle::new(dependencies).await;
    let stop = CancellationToken::new();
    tokio::spawn(
        handle
            .watchdog
            .clone()
            .keep_beating(watchdog::TICK, stop.clone()),
    );
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
