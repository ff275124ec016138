//! certflow-watcher: wiring only; the logic lives in the library.

use std::time::Duration;

use certflow_runtime::{CommonArgs, Service, kube_client, nats::NATS_DEPENDENCY, parse_duration};
use certflow_watcher::controller::{self, Settings};
use certflow_watcher::fairness::Cap;
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

    /// How long a certificate may stay short of what its spec and CA call
    /// for after its work item was published before the item is published
    /// again, in case it was lost on the way (the work stream purged, NATS
    /// restarted without its storage, a signer that gave up and could not
    /// write status). Further republications come after doubling intervals,
    /// up to eight times this (40m by default).
    #[arg(long, env = "CERTFLOW_REPUBLISH_AFTER", default_value = "5m", value_parser = positive_duration)]
    republish_after: Duration,

    /// The largest random delay added to each renewal, spreading renewals of
    /// certificates issued together.
    #[arg(long, env = "CERTFLOW_RENEWAL_JITTER", default_value = "60s", value_parser = parse_duration)]
    renewal_jitter: Duration,

    /// ServiceCertificates reconciled at once.
    #[arg(long, env = "CERTFLOW_WATCHER_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,

    /// ServiceCertificates of one namespace that may have a work item
    /// published and not yet seen done; the namespace's further work waits
    /// in the watcher, first come first served, so one namespace's flood
    /// delays another's certificates by at most this many items per busy
    /// namespace. 0: no limit.
    #[arg(long, env = "CERTFLOW_NAMESPACE_IN_FLIGHT", default_value_t = 16)]
    namespace_in_flight: usize,
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
    let metrics = service.metrics().with_registry(Metrics::new);
    let settings = Settings {
        failure_retry: args.failure_retry,
        republish_after: args.republish_after,
        renewal_jitter: args.renewal_jitter,
        concurrency: args.concurrency,
        namespace_in_flight: Cap::from_flag(args.namespace_in_flight),
        namespace: args.watch_namespace,
    };
    let shutdown = service.shutdown().clone();
    let health = service.health().clone();
    controller::run(
        client,
        js,
        topology,
        settings,
        metrics,
        service.metrics(),
        health,
        shutdown.token(),
    )
    .await;
    service.stop().await?;
    Ok(())
}

/// A duration flag that must be longer than zero.
fn positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err("must be longer than zero".to_owned()),
        duration => Ok(duration),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::*;

    #[test]
    fn every_flag_has_help_text() {
        for arg in Args::command().get_arguments() {
            if arg.get_id() != "help" && arg.get_id() != "version" {
                assert!(arg.get_help().is_some(), "--{} has no help", arg.get_id());
            }
        }
    }

    #[test]
    fn republish_after_is_five_minutes_unless_set_and_never_zero() {
        let parse = |args: &[&str]| {
            Args::try_parse_from(std::iter::once("certflow-watcher").chain(args.iter().copied()))
                .map(|args| args.republish_after)
        };
        if std::env::var_os("CERTFLOW_REPUBLISH_AFTER").is_none() {
            assert_eq!(parse(&[]).ok(), Some(Duration::from_secs(300)));
        }
        assert_eq!(
            parse(&["--republish-after=3s"]).ok(),
            Some(Duration::from_secs(3))
        );
        assert!(parse(&["--republish-after=0s"]).is_err());
        assert!(parse(&["--republish-after=soon"]).is_err());
    }

    #[test]
    fn namespace_in_flight_is_sixteen_unless_set_and_zero_lifts_the_cap() {
        let parse = |args: &[&str]| {
            Args::try_parse_from(std::iter::once("certflow-watcher").chain(args.iter().copied()))
                .map(|args| Cap::from_flag(args.namespace_in_flight))
        };
        if std::env::var_os("CERTFLOW_NAMESPACE_IN_FLIGHT").is_none() {
            assert_eq!(parse(&[]).ok(), Some(Cap::from_flag(16)));
        }
        assert_eq!(
            parse(&["--namespace-in-flight=0"]).ok(),
            Some(Cap::Unlimited)
        );
        assert!(parse(&["--namespace-in-flight=-1"]).is_err());
    }
}
