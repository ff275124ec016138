//! Creating the streams and consumers, or bringing them up to date.

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::context::{CreateStreamError, CreateStreamErrorKind};
use async_nats::jetstream::{self, stream};
use tracing::{debug, instrument, warn};

use crate::{BusError, Topology};

/// The streams and durable consumers of one topology, as the server reported
/// them after [`ensure`].
#[derive(Debug)]
pub struct Streams {
    /// Info of `<PREFIX>_WORK` as created or updated.
    pub work: stream::Info,
    /// Info of `<PREFIX>_OUTCOMES` as created or updated.
    pub outcomes: stream::Info,
    /// Info of `<PREFIX>_DEAD` as created or updated.
    pub dead_letters: stream::Info,
    /// The signer's durable pull consumer on the work stream.
    pub signer: PullConsumer,
    /// The reporter's durable pull consumer on the outcome stream.
    pub reporter: PullConsumer,
}

/// Creates every stream and consumer of `topology`, or updates them to the
/// configuration in this build. Idempotent and safe to run from every replica
/// at start-up: an existing stream or consumer with the same configuration is
/// left as it is. A change the server cannot apply in place (retention or
/// storage of an existing stream) fails with [`BusError::Stream`].
#[instrument(skip_all, fields(prefix = topology.prefix()))]
pub async fn ensure(js: &jetstream::Context, topology: &Topology) -> Result<Streams, BusError> {
    let work = ensure_stream(js, topology.work_stream_config()).await?;
    let outcomes = ensure_stream(js, topology.outcome_stream_config()).await?;
    let dead_letters = ensure_stream(js, topology.dead_letter_stream_config()).await?;
    let signer = ensure_consumer(js, &work.config.name, topology.signer_consumer_config()).await?;
    let reporter = ensure_consumer(
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
    })
}

async fn ensure_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Info, BusError> {
    let name = config.name.clone();
    let info = create_or_update(js, config)
        .await
        .map_err(|source| BusError::Stream {
            stream: name.clone(),
            source,
        })?;
    debug!(stream = %name, messages = info.state.messages, "stream ready");
    Ok(info)
}

/// Creates the stream, or updates it when it exists with another
/// configuration, asking again when a request goes unanswered.
///
/// Create comes first, unlike async-nats' `create_or_update_stream`, which
/// sends an update and creates only when that finds nothing. On a JetStream
/// cluster (nats-server 2.15) concurrent updates of one replicated stream
/// go unanswered, and so do creates behind them: four services starting
/// together with `--bus-replicas=3` all timed out and exited. Concurrent
/// creates are each answered, and a create of a stream that exists with the
/// same configuration is answered as done, so an update is sent only when
/// the configuration changed (`crates/bus/tests/replicas.rs` shows both).
async fn create_or_update(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Info, CreateStreamError> {
    retry_unanswered(&config.name, timed_out, || async {
        match js.create_stream(config.clone()).await {
            Ok(stream) => Ok(stream.cached_info().clone()),
            Err(error) if exists_with_another_configuration(&error) => {
                js.update_stream(&config).await
            }
            Err(error) => Err(error),
        }
    })
    .await
}

/// Requests about one stream before [`ensure`] gives up on it.
const ATTEMPTS: u32 = 3;

/// Runs `attempt` again, up to [`ATTEMPTS`] times, while its error is
/// `unanswered` (the request timed out).
///
/// Updates still race when every service restarts with a changed setting
/// (a raised `--bus-replicas`): all but one go unanswered. Asking again is
/// safe, since a create or update with the configuration in place changes
/// nothing, and finds the stream updated, so no service exits over it.
async fn retry_unanswered<T, E, F, Fut>(
    what: &str,
    unanswered: impl Fn(&E) -> bool,
    mut attempt: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempts = 1;
    loop {
        match attempt().await {
            Err(error) if unanswered(&error) && attempts < ATTEMPTS => {
                warn!(what, attempts, "JetStream did not answer; asking again");
                attempts += 1;
            }
            done => return done,
        }
    }
}

/// The request got no answer in time.
fn timed_out(error: &CreateStreamError) -> bool {
    error.kind() == CreateStreamErrorKind::TimedOut
}

/// The server's answer to a create of a stream that exists with another
/// configuration (and only then: the same configuration is answered as done).
fn exists_with_another_configuration(error: &CreateStreamError) -> bool {
    matches!(
        error.kind(),
        CreateStreamErrorKind::JetStream(error)
            if error.error_code() == jetstream::ErrorCode::STREAM_NAME_EXIST
    )
}

async fn ensure_consumer(
    js: &jetstream::Context,
    stream: &str,
    config: jetstream::consumer::pull::Config,
) -> Result<PullConsumer, BusError> {
    let consumer = config.durable_name.clone().unwrap_or_default();
    // The server's "create" action creates or updates the durable in place.
    let handle = js
        .create_consumer_on_stream(config, stream)
        .await
        .map_err(|source| BusError::Consumer {
            stream: stream.to_owned(),
            consumer: consumer.clone(),
            source,
        })?;
    debug!(stream, consumer, "consumer ready");
    Ok(handle)
}
