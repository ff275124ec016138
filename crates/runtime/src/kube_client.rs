//! The Kubernetes API client every service uses: the usual configuration
//! (in-cluster, or `KUBECONFIG`), with an optional client-side rate limit,
//! and the one rule for which of its errors are worth retrying
//! ([`is_transient`]).
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

/// Whether a failed Kubernetes API call may succeed when the same work is
/// tried again later, unchanged. Every service's retry decision for a
/// Kubernetes error is this one function (the signer's and the reporter's
/// `Error::is_transient`), so two services never disagree about the same
/// answer. Transient means "retry with backoff"; the rest is reported at once.
///
/// By the API server's answer:
///
/// - **401 Unauthorized, 403 Forbidden**: transient. They mean a credential
///   or an RBAC rule that an operator is fixing (or a projected token being
///   rotated); treating them as permanent would turn every queued item into
///   a reported failure while the fix rolls out. An admission webhook's
///   denial is also a 403 unless the webhook sets a code; it is retried
///   until the retry budget ends, because only its message tells it apart.
/// - **403 with the cause `NamespaceTerminating`**: permanent. The namespace
///   is being deleted and nothing can be created in it again (a Secret, an
///   Event); retrying only spends the budget of work that can never finish.
/// - **408 Request Timeout**: transient. The request was not wrong, the
///   server (or a proxy in front of it) gave up waiting for it.
/// - **409 Conflict**: transient. A resourceVersion precondition failed, or
///   a create-only call found the object already made; the retry re-reads
///   the object and decides again.
/// - **410 Gone**: transient. A resourceVersion or list continuation expired;
///   the retry reads afresh.
/// - **429 Too Many Requests**: transient. API Priority and Fairness is
///   shedding load.
/// - **5xx**: transient. The API server, etcd or a webhook it calls is
///   failing or starting; nothing says the request is wrong.
/// - **any other code** (400 Bad Request, 404 Not Found, 405, 413, 415,
///   422 Invalid, …): permanent. The request itself is wrong or its object
///   is gone, and sending it again gets the same answer. (Callers to whom
///   absence is normal ask with `get_opt` or match 404 themselves.)
///
/// Every error without an API answer is transient: most are the API server
/// being unreachable (connection refused or reset, TLS, a token that could
/// not be refreshed, a body cut off). The few that are not (a request that
/// cannot be built, a response that does not decode during an upgrade's
/// version skew) are rare, and retrying them costs only the retry budget:
/// the work still ends reported when it runs out.
pub fn is_transient(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(status) if namespace_terminating(status) => false,
        kube::Error::Api(status) => {
            matches!(status.code, 401 | 403 | 408 | 409 | 410 | 429) || status.code >= 500
        }
        _ => true,
    }
}

/// True for the API server's refusal to create objects in a namespace that
/// is being deleted (a 403 whose details carry the cause
/// `NamespaceTerminating`).
fn namespace_terminating(status: &kube::core::Status) -> bool {
    status
        .details
        .as_ref()
        .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::task::{Context, Poll};

    use kube::core::response::{StatusCause, StatusDetails};
    use tower::{Layer as _, Service, ServiceExt as _};

    use super::*;

    /// An API error answered with `code`, carrying `cause` in its details.
    fn api(code: u16, cause: Option<&str>) -> kube::Error {
        let mut status = kube::core::Status::failure("refused", "Refused").with_code(code);
        status.details = cause.map(|reason| StatusDetails {
            name: String::new(),
            group: String::new(),
            kind: String::new(),
            uid: String::new(),
            causes: vec![StatusCause {
                reason: reason.to_owned(),
                message: String::new(),
                field: "metadata.namespace".to_owned(),
            }],
            retry_after_seconds: 0,
        });
        kube::Error::Api(status.boxed())
    }

    #[test]
    fn api_errors_are_retried_only_when_the_same_request_may_succeed_later() {
        let cases = [
            (400, None, false, "the request is malformed"),
            (401, None, true, "credentials being fixed or rotated"),
            (403, None, true, "RBAC being fixed"),
            (
                403,
                Some("NamespaceTerminating"),
                false,
                "the namespace is being deleted",
            ),
            (
                403,
                Some("FieldValueForbidden"),
                true,
                "only NamespaceTerminating is final",
            ),
            (404, None, false, "the object is gone"),
            (405, None, false, "the verb is not supported"),
            (408, None, true, "the server gave up waiting"),
            (409, None, true, "a conflict is re-read and retried"),
            (410, None, true, "an expired resourceVersion is read afresh"),
            (413, None, false, "the object is too large"),
            (422, None, false, "the object is invalid"),
            (429, None, true, "Priority and Fairness shed load"),
            (500, None, true, "server error"),
            (503, None, true, "server unavailable"),
            (504, None, true, "server timeout"),
        ];
        for (code, cause, transient, why) in cases {
            assert_eq!(
                is_transient(&api(code, cause)),
                transient,
                "{code} {cause:?}: {why}"
            );
        }
    }

    #[test]
    fn errors_without_an_api_answer_are_retried() {
        let unreachable = kube::Error::Service("connection refused".into());
        assert!(is_transient(&unreachable));
        let cut_off = kube::Error::ReadEvents(std::io::ErrorKind::ConnectionReset.into());
        assert!(is_transient(&cut_off));
    }

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
