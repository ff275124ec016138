//! Graceful shutdown: one token that fires on SIGTERM or SIGINT (or when the
//! service itself gives up), and a grace period for in-flight work.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::RuntimeError;

/// Cloneable shutdown signal. Loops `select!` on [`Shutdown::requested`] to
/// stop taking new work, then finish what they hold within [`Shutdown::grace`].
#[derive(Clone, Debug)]
pub struct Shutdown {
    token: CancellationToken,
    grace: Duration,
}

impl Shutdown {
    /// A shutdown that fires only when [`Shutdown::request`] is called.
    pub fn new(grace: Duration) -> Self {
        Self {
            token: CancellationToken::new(),
            grace,
        }
    }

    /// A shutdown that also fires on SIGTERM (Kubernetes stopping the Pod) or
    /// SIGINT (Ctrl-C), logging which one arrived. Must be called inside a
    /// Tokio runtime.
    pub fn on_signals(grace: Duration) -> Result<Self, RuntimeError> {
        let shutdown = Self::new(grace);
        let signals = Signals::install()?;
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                name = signals.recv() => trigger.request(name),
                () = trigger.token.cancelled() => {}
            }
        });
        Ok(shutdown)
    }

    /// Fires the shutdown, logging `reason` the first time.
    pub fn request(&self, reason: &str) {
        if !self.token.is_cancelled() {
            info!(
                reason,
                grace_seconds = self.grace.as_secs_f64(),
                "shutting down"
            );
            self.token.cancel();
        }
    }

    /// Completes once shutdown was requested.
    pub async fn requested(&self) {
        self.token.cancelled().await;
    }

    /// True once shutdown was requested.
    pub fn is_requested(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The underlying token, for APIs that take a `CancellationToken`.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// How long in-flight work may take after shutdown was requested.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Waits for `work` (e.g. the consumer loop draining its in-flight
    /// messages) for at most the grace period. `None` if it did not finish; the
    /// messages it held are then redelivered by JetStream after their ack wait.
    pub async fn drain<F: Future>(&self, work: F) -> Option<F::Output> {
        match tokio::time::timeout(self.grace, work).await {
            Ok(output) => Some(output),
            Err(_) => {
                warn!(
                    grace_seconds = self.grace.as_secs_f64(),
                    "in-flight work did not finish within the grace period"
                );
                None
            }
        }
    }
}

#[cfg(unix)]
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> Result<Self, RuntimeError> {
        use tokio::signal::unix::{SignalKind, signal};
        let install = |kind| signal(kind).map_err(|source| RuntimeError::Signal { source });
        Ok(Self {
            terminate: install(SignalKind::terminate())?,
            interrupt: install(SignalKind::interrupt())?,
        })
    }

    async fn recv(mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> Result<Self, RuntimeError> {
        Ok(Self)
    }

    async fn recv(self) -> &'static str {
        // Only Ctrl-C exists here; if it cannot be watched, never fire.
        match tokio::signal::ctrl_c().await {
            Ok(()) => "Ctrl-C",
            Err(_) => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_wakes_every_clone() {
        let shutdown = Shutdown::new(Duration::from_secs(1));
        let waiter = shutdown.clone();
        let task = tokio::spawn(async move { waiter.requested().await });
        shutdown.request("test");
        assert!(task.await.is_ok());
        assert!(shutdown.is_requested());
    }

    #[tokio::test]
    async fn drain_returns_finished_work() {
        let shutdown = Shutdown::new(Duration::from_secs(5));
        assert_eq!(shutdown.drain(async { 7 }).await, Some(7));
    }

    #[tokio::test]
    async fn drain_gives_up_after_the_grace_period() {
        let shutdown = Shutdown::new(Duration::from_millis(20));
        let result = shutdown.drain(std::future::pending::<()>()).await;
        assert_eq!(result, None);
    }
}
