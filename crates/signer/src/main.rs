//! certflow-signer: wiring only; the logic lives in the library.

use std::sync::Arc;

use certflow_runtime::kube_client::{self, KUBERNETES_DEPENDENCY};
use certflow_runtime::{CommonArgs, Service, nats::NATS_DEPENDENCY};
use certflow_signer::authority::Authorities;
use certflow_signer::caches::Caches;
use certflow_signer::handler::Handler;
use certflow_signer::metrics::Metrics;
use certflow_signer::worker::Worker;
use clap::Parser;

/// Issues certificates for ServiceCertificates: consumes work items from
/// JetStream, validates them against the spec rules and the issuer's policy,
/// writes the Secret and status, and publishes the outcome. Run N replicas;
/// they share one durable consumer.
#[derive(Debug, Parser)]
#[command(name = "certflow-signer", version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// The control-plane namespace: where CertificateAuthority key pairs
    /// live. Only this namespace's Secrets are ever read for CA keys.
    #[arg(long, env = "CERTFLOW_NAMESPACE", default_value = "certflow-system")]
    namespace: String,

    /// Cache ServiceCertificates of this namespace only (default: all
    /// namespaces). Items from other namespaces read their object from the
    /// API, so this only narrows the watch, e.g. when RBAC is granted per
    /// namespace.
    #[arg(long, env = "CERTFLOW_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,

    /// Work items handled at once by this replica.
    #[arg(long, env = "CERTFLOW_SIGNER_CONCURRENCY", default_value_t = 32)]
    concurrency: usize,

    /// The field manager name used for Secret and status writes.
    #[arg(
        long,
        env = "CERTFLOW_FIELD_MANAGER",
        default_value = "certflow-signer"
    )]
    field_manager: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let service = Service::start(
        "certflow-signer",
        args.common.clone(),
        &[NATS_DEPENDENCY, KUBERNETES_DEPENDENCY],
    )
    .await?;
    let client = service.connect_kube().await?;
    let nats = service.connect_nats().await?;
    let js = async_nats::jetstream::new(nats);
    let topology = service.topology()?;
    // The setup step creates the streams; until it has, wait (readiness
    // stays NOT_SERVING) or stop when asked to.
    let stop = service.shutdown().token();
    let Some(streams) = certflow_bus::open_when_created(&js, &topology, &stop).await? else {
        service.stop().await?;
        return Ok(());
    };
    let publisher = certflow_bus::Publisher::new(js, topology.clone());
    let metrics = service.metrics().with_registry(Metrics::new);

    let (authorities, watches) =
        Authorities::new(client.clone(), &args.namespace, &args.field_manager);
    tokio::spawn(watches);
    authorities.wait_ready().await;
    let authorities = Arc::new(authorities);
    tokio::spawn({
        let authorities = authorities.clone();
        let shutdown = service.shutdown().token();
        async move { authorities.maintain(shutdown).await }
    });
    tokio::spawn(kube_client::report_reachability(
        client.clone(),
        service.health().clone(),
        service.shutdown().token(),
    ));

    // Not awaited: until the first listing completes, and whenever the
    // watch is down (or forbidden), work items read their object instead.
    let (caches, watch) = Caches::new(client.clone(), args.watch_namespace.as_deref());
    tokio::spawn(watch);
    let handler = Handler::new(
        client,
        caches,
        authorities,
        publisher.clone(),
        metrics.clone(),
        &args.field_manager,
    );
    let worker = Worker {
        handler,
        consumer: streams.signer,
        publisher,
        retry: topology.retry_policy().clone(),
        metrics,
        concurrency: args.concurrency,
    };
    let shutdown = service.shutdown().clone();
    let run = tokio::spawn(worker.run(shutdown.token()));
    shutdown.requested().await;
    if shutdown.drain(run).await.is_none() {
        tracing::warn!(
            "stopped before every in-flight work item finished; JetStream redelivers them"
        );
    }
    service.stop().await?;
    Ok(())
}
