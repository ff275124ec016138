//! certflow-reporter: wiring only; the logic lives in the library.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use certflow_reporter::auth::Guard;
use certflow_reporter::certificates::{self, SharedCertificates};
use certflow_reporter::consumer::Consumer;
use certflow_reporter::deliver::Delivery;
use certflow_reporter::events::aggregate::AggregationSettings;
use certflow_reporter::events::limit::RateLimit;
use certflow_reporter::events::{EventWriter, MAX_WORD_BYTES, WriterSettings};
use certflow_reporter::grpc::{self, ReportService};
use certflow_reporter::late_pods::{KUBERNETES_DEPENDENCY, LatePods, PodEvents};
use certflow_reporter::metrics::{Metrics, report_sizes};
use certflow_reporter::outcomes::Outcomes;
use certflow_reporter::pods::{self, SharedPodIndex};
use certflow_runtime::{CommonArgs, Service, nats::NATS_DEPENDENCY, parse_duration};
use clap::Parser;

/// Tells app owners about their certificates where they already look: turns
/// the signer's outcomes (and reports from other control-plane services)
/// into Kubernetes Events on the ServiceCertificate, on every Pod that
/// consumes its Secret, and on the Pods' workloads. Never reads Secrets.
#[derive(Debug, Parser)]
#[command(name = "certflow-reporter", version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Watch Pods and ServiceCertificates of this namespace only (default:
    /// all namespaces).
    #[arg(long, env = "CERTFLOW_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,

    /// Address of the gRPC Report API (certflow.v1.Reporter). Every call
    /// must carry a ServiceAccount token for --grpc-token-audience, and its
    /// ServiceAccount needs `create` on servicecertificates/report in the
    /// namespace reported about.
    #[arg(long, env = "CERTFLOW_GRPC_ADDR", default_value = "127.0.0.1:8082")]
    grpc_addr: SocketAddr,

    /// The audience Report callers' tokens must be issued for (a projected
    /// serviceAccountToken volume with this audience); verified with a
    /// TokenReview. There is no way to turn authentication off.
    #[arg(
        long,
        env = "CERTFLOW_REPORTER_TOKEN_AUDIENCE",
        default_value = certflow_reporter::auth::DEFAULT_AUDIENCE
    )]
    grpc_token_audience: String,

    /// Outcomes handled at once (outcomes about one Secret are always
    /// handled one after the other).
    #[arg(long, env = "CERTFLOW_REPORTER_CONCURRENCY", default_value_t = 8)]
    concurrency: usize,

    /// The Events' reportingInstance: this replica's name (set it to the
    /// Pod name through the downward API). Defaults to the host name.
    #[arg(long, env = "CERTFLOW_POD_NAME")]
    reporting_instance: Option<String>,

    /// Event writes allowed at once per object and reason.
    #[arg(long, env = "CERTFLOW_EVENT_BURST", default_value_t = 25)]
    event_burst: u32,

    /// Time to regain one Event write per object and reason after the burst
    /// (e.g. `5m`).
    #[arg(long, env = "CERTFLOW_EVENT_REFILL", default_value = "5m", value_parser = parse_duration)]
    event_refill: Duration,

    /// Shortest time between two updates of one Event's repeat count.
    #[arg(long, env = "CERTFLOW_SERIES_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    series_interval: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let service = Service::start(
        "certflow-reporter",
        args.common.clone(),
        &[NATS_DEPENDENCY, KUBERNETES_DEPENDENCY],
    )
    .await?;
    let shutdown = service.shutdown().clone();
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

    // ServiceCertificates first: their status says which are failing, which
    // a Pod that appears must find.
    let certificates = SharedCertificates::default();
    let (cache_synced, mut cache_ready) = tokio::sync::watch::channel(false);
    let certificate_watch = tokio::spawn({
        let namespace = args.watch_namespace.clone();
        let client = client.clone();
        let cache = certificates.clone();
        let token = shutdown.token();
        async move {
            certificates::watch(client, namespace.as_deref(), cache, cache_synced, token).await;
        }
    });
    tokio::select! {
        () = shutdown.requested() => {}
        synced = cache_ready.wait_for(|synced| *synced) => { synced.context("the ServiceCertificate watch stopped")?; }
    }

    let writer = EventWriter::new(
        client.clone(),
        WriterSettings {
            instance: reporting_instance(args.reporting_instance),
            aggregation: AggregationSettings {
                limit: RateLimit {
                    burst: args.event_burst,
                    refill: args.event_refill,
                },
                series_interval: args.series_interval,
                ..AggregationSettings::default()
            },
        },
        metrics.clone(),
    );
    let pod_index = SharedPodIndex::default();
    let delivery = Arc::new(Delivery::new(
        client.clone(),
        pod_index.clone(),
        writer.clone(),
        metrics.clone(),
    ));
    let late_pods = Arc::new(LatePods::new(certificates.clone(), delivery.clone()));

    // Report callers are checked by the API server (TokenReview, then
    // SubjectAccessReview); always on.
    let guard = Arc::new(Guard::new(client.clone(), args.grpc_token_audience));

    // Then the Pods: outcomes need to know who consumes which Secret.
    let (synced_tx, mut synced) = tokio::sync::watch::channel(false);
    let (checked_tx, mut checked) = tokio::sync::watch::channel(false);
    let observer = Arc::new(PodEvents::new(
        late_pods,
        service.health().clone(),
        synced_tx,
        checked_tx,
    ));
    let pod_watch = tokio::spawn({
        let namespace = args.watch_namespace.clone();
        let index = pod_index.clone();
        let token = shutdown.token();
        async move { pods::watch(client, namespace.as_deref(), index, observer, token).await }
    });
    tokio::select! {
        () = shutdown.requested() => {}
        _ = synced.wait_for(|synced| *synced) => {}
    }

    // The flusher outlives the consumer and the gRPC server, so that the
    // series counts they leave owed are written last.
    let flusher_stop = tokio_util::sync::CancellationToken::new();
    let flusher = tokio::spawn(writer.run_flusher(flusher_stop.clone()));
    let sizes = tokio::spawn(report_sizes(
        pod_index,
        certificates.clone(),
        metrics,
        shutdown.token(),
    ));
    let (_, grpc_server) = grpc::serve(
        args.grpc_addr,
        ReportService::new(certificates.clone(), delivery.clone(), guard),
        shutdown.token(),
    )
    .await
    .with_context(|| format!("binding the gRPC Report API to {}", args.grpc_addr))?;
    // Outcomes only once the Pods present at start-up know which failures
    // were reported before (the rest, the outcomes will report).
    tokio::select! {
        () = shutdown.requested() => {}
        _ = checked.wait_for(|checked| *checked) => {}
    }
    let consumer = Consumer {
        outcomes: Arc::new(Outcomes::new(certificates, delivery)),
        consumer: streams.reporter,
        publisher,
        retry: topology.retry_policy().clone(),
        lanes: args.concurrency,
    };
    let run = tokio::spawn(consumer.run(shutdown.token()));

    shutdown.requested().await;
    let drained = shutdown
        .drain(async {
            let _ = run.await;
            let _ = grpc_server.await;
            flusher_stop.cancel();
            let _ = flusher.await;
        })
        .await;
    if drained.is_none() {
        tracing::warn!(
            "stopped before every in-flight outcome finished; JetStream redelivers them"
        );
    }
    pod_watch.abort();
    certificate_watch.abort();
    sizes.abort();
    service.stop().await?;
    Ok(())
}

/// `--reporting-instance`, else the host name (the Pod name in a cluster),
/// cut to what the API accepts.
fn reporting_instance(flag: Option<String>) -> String {
    let name = flag
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "certflow-reporter".to_owned());
    name.chars().take(MAX_WORD_BYTES).collect()
}
