//! The Kubernetes API client every service uses: the usual configuration
//! (in-cluster, or `KUBECONFIG`), with an optional client-side rate limit.
//!
//! The API server's own Priority and Fairness is the main protection; the
//! client-side limit (`--kube-api-qps`, `--kube-api-burst`) is for clusters
//! where an operator wants each replica capped as well. It is tower's
//! fixed-window limit: at most `burst` requests in each window of
//! `burst / qps` seconds, so the average never exceeds `qps`. Requests
//! beyond it wait; none is refused. A long-lived watch counts once, when it
//! starts.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tower::limit::RateLimitLayer;

use crate::{CommonArgs, HealthHandle, RuntimeError};

/// Name of the health dependency that tracks the Kubernetes API.
pub const KUBERNETES_DEPENDENCY: &str = "kubernetes";

/// How often [`report_reachability`] asks the API server for its version.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Marks the `kubernetes` dependency of `health` ready, then keeps it
/// current until `stop` by asking the API server for its version every 5 s
/// (see [`HealthHandle::probe_periodically`]). Call it once the service's
/// caches are synced; spawn the future it returns.
pub async fn report_reachability(
    client: kube::Client,
    health: HealthHandle,
    stop: CancellationToken,
) {
    health.set_ready(KUBERNETES_DEPENDENCY, true).await;
    health
        .probe_periodically(KUBERNETES_DEPENDENCY, PROBE_INTERVAL, stop, move || {
            let client = client.clone();
            async move { client.apiserver_version().await.is_ok() }
        })
        .await;
}

/// Builds the client from the inferred configuration, limited as `args` say.
pub async fn connect(args: &CommonArgs) -> Result<kube::Client, RuntimeError> {
    let config = kube::Config::infer()
        .await
        .map_err(|source| RuntimeError::KubeConfig {
            source: Box::new(source),
        })?;
    let builder = kube::client::ClientBuilder::try_from(config).map_err(|source| {
        RuntimeError::KubeConfig {
            source: Box::new(source),
        }
    })?;
    Ok(match rate_limit(args.kube_api_qps, args.kube_api_burst) {
        Some(layer) => builder.with_layer(&layer).build(),
        None => builder.build(),
    })
}

/// The layer for `qps` requests per second with bursts of `burst`; none when
/// `qps` is 0 (no client-side limit). A burst below 1 counts as 1.
pub fn rate_limit(qps: u32, burst: u32) -> Option<RateLimitLayer> {
    if qps == 0 {
        return None;
    }
    let burst = burst.max(1);
    let window = Duration::from_secs_f64(f64::from(burst) / f64::from(qps));
    Some(RateLimitLayer::new(u64::from(burst), window))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::task::{Context, Poll};

    use tower::{Layer as _, Service, ServiceExt as _};

    use super::*;

    #[test]
    fn zero_qps_means_no_client_side_limit() {
        assert!(rate_limit(0, 100).is_none());
        assert!(rate_limit(1, 0).is_some());
    }

    /// Counts calls; always ready.
    #[derive(Clone, Default)]
    struct Counter(u32);

    impl Service<()> for Counter {
        type Response = ();
        type Error = Infallible;
        type Future = std::future::Ready<Result<(), Infallible>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, (): ()) -> Self::Future {
            self.0 += 1;
            std::future::ready(Ok(()))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_passes_at_once_and_the_rest_waits_for_the_next_window() {
        let Some(layer) = rate_limit(10, 20) else {
            panic!("a limit");
        };
        let mut service = layer.layer(Counter::default());
        let started = tokio::time::Instant::now();
        for _ in 0..20 {
            let _ = service.ready().await.map(|s| s.call(()));
        }
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "the burst is not delayed"
        );
        let _ = service.ready().await.map(|s| s.call(()));
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(2),
            "the 21st request waits for the next 2 s window (20 / 10 qps)"
        );
    }
}
