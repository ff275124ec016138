//! certflow-watcher: wiring only; the logic lives in the library. Also the
//! bus's setup step (`certflow-watcher setup-bus`), which creates the NATS
//! streams and consumers every service only looks up.

use std::time::Duration;

use anyhow::Context as _;
use certflow_runtime::{
    CommonArgs, HealthHandle, Service, Shutdown, kube_client, nats::NATS_DEPENDENCY,
    parse_duration, telemetry,
};
use certflow_watcher::controller::{self, Settings};
use certflow_watcher::fairness::Cap;
use certflow_watcher::metrics::Metrics;
use clap::{Parser, Subcommand};

/// Watches ServiceCertificates, CertificateAuthorities and the Secrets
/// certflow manages, and publishes a work item whenever a certificate must be
/// (re)issued. Reads the Kubernetes API only; never writes to it.
///
/// Without a subcommand it runs the watcher. It waits (readiness
/// NOT_SERVING) until the NATS streams exist; `setup-bus` creates them.
#[derive(Debug, Parser)]
#[command(name = "certflow-watcher", version, about, long_about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

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

#[derive(Debug, Subcommand)]
enum Command {
    /// The setup step: creates the NATS JetStream streams and durable
    /// consumers of --bus-prefix, or updates them to this build's settings
    /// (--bus-replicas, --bus-max-deliver, --bus-retry-delays), prints what
    /// it created, updated or left unchanged, and exits (0 when all is in
    /// place). Run it before the services start, after changing one of those
    /// settings, and after NATS lost its storage; the services never create
    /// a stream. Takes the NATS and bus flags before the subcommand
    /// (`certflow-watcher --nats-url=... setup-bus`) or from their
    /// environment variables; connects as `certflow-setup`, its replies on
    /// `_INBOX.certflow-setup.>`. Its NATS user needs STREAM.INFO/CREATE/UPDATE
    /// on the streams and CONSUMER.INFO/CREATE on the consumers
    /// (deploy/base/nats/auth.conf's `setup` user).
    SetupBus,
}

/// The NATS connection name of `setup-bus`; its inbox prefix is
/// `_INBOX.certflow-setup`.
const SETUP_CONNECTION: &str = "certflow-setup";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.command {
        Some(Command::SetupBus) => setup_bus(args.common).await,
        None => watch(args).await,
    }
}

/// `certflow-watcher setup-bus`: connects, runs `certflow_bus::ensure`,
/// prints one line per stream and consumer.
async fn setup_bus(common: CommonArgs) -> anyhow::Result<()> {
    let telemetry = telemetry::init(common.log_format, &common.log_filter, None)?;
    let shutdown = Shutdown::on_signals(common.shutdown_grace)?;
    // No health server: a Job has no probes; the handle only takes the
    // connection's events.
    let (health, _) = HealthHandle::new(&[NATS_DEPENDENCY]).await;
    let topology = common.topology()?;
    let nats = certflow_runtime::connect_nats(&common, SETUP_CONNECTION, &health, &shutdown)
        .await
        .with_context(|| format!("setting up the bus at {}", common.nats_url))?;
    let js = async_nats::jetstream::new(nats.clone());
    let ensured = tokio::select! {
        ensured = certflow_bus::ensure(&js, &topology) => ensured,
        () = shutdown.requested() => anyhow::bail!("stopped before the bus was set up"),
    };
    let ensured = ensured.map_err(|error| {
        let user = common.nats_user.as_deref().unwrap_or("(none)");
        // NATS answers a request its permissions refuse with nothing at all.
        let hint = if error.is_transient() {
            "; JetStream did not answer: it is unreachable or busy, or NATS refused \
             this user the request, which also goes unanswered (only \
             deploy/base/nats/auth.conf's `setup` user may create streams and consumers)"
        } else {
            ""
        };
        anyhow::Error::new(error).context(format!(
            "setting up the streams and consumers of bus prefix {:?} as NATS user {user}{hint}",
            topology.prefix()
        ))
    })?;
    for ensured in &ensured.changes {
        println!("{}: {}", ensured.what, ensured.change);
    }
    println!(
        "bus prefix {:?} set up: {} replica(s), {} deliveries",
        topology.prefix(),
        topology.replicas(),
        topology.retry_policy().max_deliver()
    );
    nats.drain().await.ok();
    telemetry.shutdown_async().await;
    Ok(())
}

/// The watcher itself.
async fn watch(args: Args) -> anyhow::Result<()> {
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
    let stop = service.shutdown().token();
    if certflow_bus::open_when_created(&js, &topology, &stop)
        .await?
        .is_none()
    {
        service.stop().await?;
        return Ok(());
    }
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
    fn no_subcommand_runs_the_watcher_and_setup_bus_takes_the_flags_before_it() {
        let parse = |args: &[&str]| {
            Args::try_parse_from(std::iter::once("certflow-watcher").chain(args.iter().copied()))
        };
        let watcher = parse(&["--bus-prefix=p"]).expect("the watcher's flags parse");
        assert!(watcher.command.is_none());
        let setup =
            parse(&["--bus-prefix=p", "--bus-replicas=3", "setup-bus"]).expect("setup-bus parses");
        assert!(matches!(setup.command, Some(Command::SetupBus)));
        assert_eq!(setup.common.bus_prefix, "p");
        assert_eq!(setup.common.bus_replicas, 3);
        assert!(parse(&["setup-bus", "--no-such-flag"]).is_err());
        let help = Args::command().render_long_help().to_string();
        assert!(help.contains("setup-bus"), "{help}");
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
