//! certflow-watcher: wiring only; the logic lives in the library.

use std::time::Duration;

use certflow_runtime::{CommonArgs, Service, kube_client, nats::NATS_DEPENDENCY, parse_duration};
use certflow_watcher::controller::{self, Settings};
use certflow_watcher::metrics::Metrics;
use clap::Parser;

/// Watches ServiceCertificates, CertificateAuthorities and the Secrets
/// certflow manages, and publishes a work item whenever a certificate must be
/// (re)issued. Reads the Kubernetes API only; never writes to it.
#[derive(Debug, Parser)]
#[command(name = "certflow-watcher", version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "CERTFLOW_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,

    /// How often a refused ServiceCertificate is re-examined when nothing it
    /// depends on visibly changed (e.g. a conflicting Secret was deleted).
    #[arg(long, env = "CERTFLOW_FAILURE_RETRY", default_value = "10m", value_parser = parse_duration)]
    failure_retry: Duration,

    /// The largest random delay added to each renewal, spreading renewals of
    /// certificates issued together.
    #[arg(long, env = "CERTFLOW_RENEWAL_JITTER", default_value = "60s", value_parser = parse_duration)]
    renewal_jitter: Duration,

    /// ServiceCertificates reconciled at once.
    #[arg(long, env = "CERTFLOW_WATCHER_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let service = Service::start(
        "certflow-watcher",
        args.common.clone(),
        &[NATS_DEPENDENCY, kube_client::KUBERNETES_DEPENDENCY],
    )
    .await?;
    let client = service.connect_kube().await?;
    let nats = service.connect_nats().await?;
    let js = async_nats::jetstream::new(nats);
    let topology = service.topology()?;
    certflow_bus::ensure(&js, &topology).await?;
    let publisher = certflow_bus::Publisher::new(js, topology);
    let metrics = service.metrics().with_registry(Metrics::new);
    let settings = Settings {
        failure_retry: args.failure_retry,
        renewal_jitter: args.renewal_jitter,
        concurrency: args.concurrency,
        namespace: args.watch_namespace,
    };
    let shutdown = service.shutdown().clone();
    let health = service.health().clone();
    controller::run(
        client,
        publisher,
        settings,
        metrics,
        health,
        shutdown.token(),
    )
    .await;
    service.stop().await?;
    Ok(())
}
