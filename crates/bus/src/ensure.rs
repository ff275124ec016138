//! Creating the streams and consumers, or bringing them up to date.

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{self, stream};
use tracing::{debug, instrument};

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
    let info = js
        .create_or_update_stream(config)
        .await
        .map_err(|source| BusError::Stream {
            stream: name.clone(),
            source,
        })?;
    debug!(stream = %name, messages = info.state.messages, "stream ready");
    Ok(info)
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
