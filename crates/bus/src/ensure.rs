//! Creating the streams and consumers, or bringing them up to date: the
//! setup step's work (`certflow-watcher setup-bus`, the `certflow-nats-setup`
//! Job). Reads and writes JetStream's stream and consumer API only
//! (`STREAM.INFO/CREATE/UPDATE`, `CONSUMER.INFO/CREATE`); the services never
//! call it, they look the streams up with [`crate::open`].

use std::fmt;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::context::{
    CreateStreamError, CreateStreamErrorKind, GetStreamError, GetStreamErrorKind,
};
use async_nats::jetstream::stream::{ConsumerError, ConsumerErrorKind};
use async_nats::jetstream::{self, stream};
use tracing::{debug, instrument, warn};

use crate::{BusError, Topology};

/// What [`ensure`] did to one stream or consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// It did not exist and was created.
    Created,
    /// It existed with another configuration and was brought up to date.
    Updated,
    /// It existed with this build's configuration.
    Unchanged,
}

impl Change {
    /// A short, stable word for output and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
        }
    }

    fn of<T: PartialEq>(before: Option<&T>, after: &T) -> Self {
        match before {
            None => Self::Created,
            Some(before) if before == after => Self::Unchanged,
            Some(_) => Self::Updated,
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of what [`ensure`] did: `what` (e.g. `stream CERTFLOW_WORK`,
/// `consumer signer on stream CERTFLOW_WORK`) and its [`Change`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ensured {
    /// The stream or consumer, in words.
    pub what: String,
    /// What was done to it.
    pub change: Change,
}

/// The streams and durable consumers of one topology, as the server reported
/// them after [`ensure`] or [`crate::open`].
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
    /// What [`ensure`] did to each, streams first; empty from
    /// [`crate::open`], which changes nothing.
    pub changes: Vec<Ensured>,
}

/// Creates every stream and consumer of `topology`, or updates them to the
/// configuration in this build, and says which it did to each
/// ([`Streams::changes`]). Idempotent, and safe to run while services run
/// and from several processes at once: an existing stream or consumer with
/// the same configuration is left as it is. A change the server cannot
/// apply in place (retention or storage of an existing stream) fails with
/// [`BusError::Stream`]. Needs `STREAM.INFO/CREATE/UPDATE` on the three
/// streams and `CONSUMER.INFO/CREATE` on the two durables: the setup user's
/// permissions, not a service's.
#[instrument(skip_all, fields(prefix = topology.prefix()))]
pub async fn ensure(js: &jetstream::Context, topology: &Topology) -> Result<Streams, BusError> {
    let mut changes = Vec::new();
    let work = ensure_stream(js, topology.work_stream_config(), &mut changes).await?;
    let outcomes = ensure_stream(js, topology.outcome_stream_config(), &mut changes).await?;
    let dead_letters =
        ensure_stream(js, topology.dead_letter_stream_config(), &mut changes).await?;
    let signer = ensure_consumer(
        js,
        &work.config.name,
        topology.signer_consumer_config(),
        &mut changes,
    )
    .await?;
    let reporter = ensure_consumer(
        js,
        &outcomes.config.name,
        topology.reporter_consumer_config(),
        &mut changes,
    )
    .await?;
    Ok(Streams {
        work,
        outcomes,
        dead_letters,
        signer,
        reporter,
        changes,
    })
}

async fn ensure_stream(
    js: &jetstream::Context,
    config: stream::Config,
    changes: &mut Vec<Ensured>,
) -> Result<stream::Info, BusError> {
    let name = config.name.clone();
    let before = stream_config(js, &name).await?;
    let info = create_or_update(js, config)
        .await
        .map_err(|source| BusError::Stream {
            stream: name.clone(),
            source,
        })?;
    let change = Change::of(before.as_ref(), &info.config);
    debug!(stream = %name, messages = info.state.messages, %change, "stream ready");
    changes.push(Ensured {
        what: format!("stream {name}"),
        change,
    });
    Ok(info)
}

/// The configuration of stream `name` as the server has it; `None` when
/// there is no such stream.
async fn stream_config(
    js: &jetstream::Context,
    name: &str,
) -> Result<Option<stream::Config>, BusError> {
    // Unanswered while another client's create of the same replicated
    // stream is under way: asked again, as the create is.
    let found = retry_unanswered(name, lookup_timed_out, || js.get_stream(name)).await;
    match found {
        Ok(stream) => Ok(Some(stream.cached_info().config.clone())),
        Err(error) if stream_not_found(&error) => Ok(None),
        Err(source) => Err(BusError::StreamInfo {
            stream: name.to_owned(),
            source,
        }),
    }
}

/// The server's answer to a lookup of a stream that does not exist.
pub(crate) fn stream_not_found(error: &GetStreamError) -> bool {
    matches!(
        error.kind(),
        GetStreamErrorKind::JetStream(error)
            if error.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// The server's answer to a lookup of a consumer that does not exist.
pub(crate) fn consumer_not_found(error: &ConsumerError) -> bool {
    matches!(
        error.kind(),
        ConsumerErrorKind::JetStream(error)
            if error.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND
    )
}

/// Creates the stream, or updates it when it exists with another
/// configuration, asking again when a request goes unanswered.
///
/// Create comes first, unlike async-nats' `create_or_update_stream`, which
/// sends an update and creates only when that finds nothing. On a JetStream
/// cluster (nats-server 2.15) concurrent updates of one replicated stream
/// go unanswered, and so do creates behind them: four clients running
/// `ensure` together with `--bus-replicas=3` (as every service did at
/// start-up before the setup step took it over; two setup runs can still
/// overlap) all timed out. Concurrent
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
/// Updates still race when several clients apply a changed setting at once
/// (a raised `--bus-replicas`): all but one go unanswered. Asking again is
/// safe, since a create or update with the configuration in place changes
/// nothing, and finds the stream updated, so none of them fails over it.
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

/// The lookup got no answer in time.
fn lookup_timed_out(error: &GetStreamError) -> bool {
    use std::error::Error as _;
    error.kind() == GetStreamErrorKind::Request
        && error
            .source()
            .and_then(|source| source.downcast_ref::<jetstream::context::RequestError>())
            .is_some_and(|source| source.kind() == jetstream::context::RequestErrorKind::TimedOut)
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
    changes: &mut Vec<Ensured>,
) -> Result<PullConsumer, BusError> {
    let consumer = config.durable_name.clone().unwrap_or_default();
    let error = |source| BusError::Consumer {
        stream: stream.to_owned(),
        consumer: consumer.clone(),
        source,
    };
    let before = match retry_unanswered(
        &consumer,
        |error: &ConsumerError| error.kind() == ConsumerErrorKind::TimedOut,
        || {
            js.get_consumer_from_stream::<jetstream::consumer::pull::Config, _, _>(
                &consumer, stream,
            )
        },
    )
    .await
    {
        Ok(existing) => Some(existing.cached_info().config.clone()),
        Err(found) if consumer_not_found(&found) => None,
        Err(source) => return Err(error(source)),
    };
    // The server's "create" action creates or updates the durable in place.
    let handle = js
        .create_consumer_on_stream(config, stream)
        .await
        .map_err(error)?;
    let change = Change::of(before.as_ref(), &handle.cached_info().config);
    debug!(stream, consumer, %change, "consumer ready");
    changes.push(Ensured {
        what: format!("consumer {consumer} on stream {stream}"),
        change,
    });
    Ok(handle)
}
