//! Looking up the streams and consumers the setup step created: what every
//! service does at start-up. Reads JetStream's `STREAM.INFO` and
//! `CONSUMER.INFO` only, so a service's NATS user needs no permission to
//! create or change a stream or consumer; a missing one is reported as
//! [`BusError::Missing`], naming it and the command that creates it.

use std::time::Duration;

use async_nats::jetstream::consumer::{PullConsumer, pull};
use async_nats::jetstream::{self, stream};
use backon::{ExponentialBuilder, Retryable as _};
use tokio_util::sync::CancellationToken;
use tracing::{debug, instrument, warn};

use crate::ensure::{consumer_not_found, stream_not_found};
use crate::{BusError, Streams, Topology};

/// The command that creates the streams and consumers, as error messages
/// and warnings name it.
pub const SETUP_COMMAND: &str = "`certflow-watcher setup-bus` (deploy/'s Job certflow-nats-setup)";

/// The first wait before looking again after [`open`] failed; doubles up to
/// [`MAX_WAIT`], with up to as much again at random.
const FIRST_WAIT: Duration = Duration::from_millis(500);

/// The longest wait between two looks, before jitter: a service finds the
/// streams within about half a minute of the setup step creating them.
const MAX_WAIT: Duration = Duration::from_secs(15);

/// Looks up every stream and durable consumer of `topology`, changing
/// nothing. A stream or consumer that does not exist fails with
/// [`BusError::Missing`] (the first one found missing); one whose settings
/// differ from this build's (e.g. `--bus-replicas` or `--bus-max-deliver`
/// changed, and the setup step not run since) is used as it is, with a
/// warning.
#[instrument(skip_all, fields(prefix = topology.prefix()))]
pub async fn open(js: &jetstream::Context, topology: &Topology) -> Result<Streams, BusError> {
    let work = stream_info(js, topology.work_stream_config()).await?;
    let outcomes = stream_info(js, topology.outcome_stream_config()).await?;
    let dead_letters = stream_info(js, topology.dead_letter_stream_config()).await?;
    let signer = consumer(js, &work.config.name, topology.signer_consumer_config()).await?;
    let reporter = consumer(
        js,
        &outcomes.config.name,
        topology.reporter_consumer_config(),
    )
    .await?;
    Ok(Streams {
        work,
        outcomes,
        dead_letters,
        signer,
        reporter,
        changes: Vec::new(),
    })
}

/// [`open`], looked up again with growing waits while a stream or consumer
/// is missing or JetStream does not answer, until everything is there or
/// `stop` fires (then `Ok(None)`). Each failed look logs one warning
/// naming what is missing and [`SETUP_COMMAND`]. Other errors (a refused
/// permission, say) are returned at once.
pub async fn open_when_created(
    js: &jetstream::Context,
    topology: &Topology,
    stop: &CancellationToken,
) -> Result<Option<Streams>, BusError> {
    let backoff = ExponentialBuilder::default()
        .with_min_delay(FIRST_WAIT)
        .with_max_delay(MAX_WAIT)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    let looking = (|| open(js, topology))
        .retry(backoff)
        .when(BusError::is_transient)
        .notify(|error, wait| {
            warn!(
                %error,
                retry_in_ms = wait.as_millis(),
                "the bus is not set up yet; waiting (readiness stays NOT_SERVING)"
            );
        });
    tokio::select! {
        opened = looking => opened.map(Some),
        () = stop.cancelled() => Ok(None),
    }
}

async fn stream_info(
    js: &jetstream::Context,
    expected: stream::Config,
) -> Result<stream::Info, BusError> {
    let name = expected.name;
    let info = match js.get_stream(&name).await {
        Ok(stream) => stream.cached_info().clone(),
        Err(error) if stream_not_found(&error) => {
            return Err(BusError::Missing {
                what: format!("stream {name}"),
            });
        }
        Err(source) => {
            return Err(BusError::StreamInfo {
                stream: name,
                source,
            });
        }
    };
    if info.config.num_replicas != expected.num_replicas {
        warn!(
            stream = %name,
            replicas = info.config.num_replicas,
            expected = expected.num_replicas,
            "the stream's replicas differ from --bus-replicas; run {SETUP_COMMAND} to apply it"
        );
    }
    debug!(stream = %name, messages = info.state.messages, "stream found");
    Ok(info)
}

async fn consumer(
    js: &jetstream::Context,
    stream: &str,
    expected: pull::Config,
) -> Result<PullConsumer, BusError> {
    let name = expected.durable_name.clone().unwrap_or_default();
    let handle: PullConsumer = match js.get_consumer_from_stream(&name, stream).await {
        Ok(handle) => handle,
        Err(error) if consumer_not_found(&error) => {
            return Err(BusError::Missing {
                what: format!("consumer {name} on stream {stream}"),
            });
        }
        Err(source) => {
            return Err(BusError::Consumer {
                stream: stream.to_owned(),
                consumer: name,
                source,
            });
        }
    };
    let config = &handle.cached_info().config;
    if config.max_deliver != expected.max_deliver || config.backoff != expected.backoff {
        warn!(
            stream,
            consumer = %name,
            max_deliver = config.max_deliver,
            expected = expected.max_deliver,
            "the consumer's deliveries or retry delays differ from --bus-max-deliver and \
             --bus-retry-delays; run {SETUP_COMMAND} to apply them"
        );
    }
    debug!(stream, consumer = %name, "consumer found");
    Ok(handle)
}
