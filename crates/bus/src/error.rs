//! The bus error type. The retry decision ([`BusError::is_transient`]) and the
//! metric label ([`BusError::kind`]) come from the variant, never from text.

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{
    CreateStreamError, CreateStreamErrorKind, GetStreamError, GetStreamErrorKind, PublishError,
    PublishErrorKind,
};
use async_nats::jetstream::stream::{ConsumerError, ConsumerErrorKind};

/// Everything that can go wrong between certflow and JetStream.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The configured prefix cannot be used in subjects and stream names.
    #[error("bus prefix {prefix:?} is invalid: {reason}")]
    InvalidPrefix {
        prefix: String,
        reason: &'static str,
    },

    /// A setting of the topology is out of range.
    #[error("bus setting {setting} is invalid: {reason}")]
    InvalidSetting {
        setting: &'static str,
        reason: String,
    },

    /// A namespace or name cannot be turned into a subject token.
    #[error("{field} {value:?} cannot be used in a subject: {reason}")]
    InvalidSubjectToken {
        field: &'static str,
        value: String,
        reason: &'static str,
    },

    /// A message about to be published is incomplete (a bug in the caller).
    #[error("{message} cannot be published: {reason}")]
    InvalidMessage {
        message: &'static str,
        reason: String,
    },

    /// Creating or updating a stream failed.
    #[error("stream {stream}: {source}")]
    Stream {
        stream: String,
        #[source]
        source: CreateStreamError,
    },

    /// A stream or durable consumer a service needs does not exist: the
    /// setup step (`certflow-watcher setup-bus`, deploy/'s
    /// `certflow-nats-setup` Job) has not run since NATS lost it or since
    /// the bus prefix was chosen. Services do not create streams.
    #[error(
        "{what} does not exist: the setup step creates it; run {}, also after NATS lost its storage",
        crate::open::SETUP_COMMAND
    )]
    Missing { what: String },

    /// Looking up a stream failed (other than finding none).
    #[error("looking up stream {stream}: {source}")]
    StreamInfo {
        stream: String,
        #[source]
        source: GetStreamError,
    },

    /// Creating, updating or looking up a durable consumer failed.
    #[error("consumer {consumer} on stream {stream}: {source}")]
    Consumer {
        stream: String,
        consumer: String,
        #[source]
        source: ConsumerError,
    },

    /// Publishing, or waiting for the stream's acknowledgement, failed.
    #[error("publishing to {subject}: {source}")]
    Publish {
        subject: String,
        #[source]
        source: PublishError,
    },

    /// A message was not delivered by a JetStream consumer (no `$JS.ACK` reply).
    #[error("message on {subject} is not a JetStream delivery: {source}")]
    NotJetStream {
        subject: String,
        #[source]
        source: async_nats::Error,
    },

    /// The payload is not a valid protobuf message of the expected type.
    #[error("payload on {subject} does not decode as {message}: {source}")]
    Undecodable {
        subject: String,
        message: &'static str,
        #[source]
        source: prost::DecodeError,
    },

    /// The payload decodes but declares a schema version this build does not read.
    #[error("{message} on {subject} has schema_version {found}; this build reads {expected}")]
    UnsupportedSchemaVersion {
        subject: String,
        message: &'static str,
        found: u32,
        expected: u32,
    },

    /// Sending an acknowledgement (ack, nak, term, progress) failed.
    #[error("acknowledging message on {subject}: {source}")]
    Ack {
        subject: String,
        #[source]
        source: async_nats::Error,
    },
}

impl BusError {
    /// True when the same operation may succeed if retried later (the server
    /// was unreachable or slow); false when retrying cannot help (bad input,
    /// undecodable payload, a configuration the server refuses).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::InvalidPrefix { .. }
            | Self::InvalidSetting { .. }
            | Self::InvalidSubjectToken { .. }
            | Self::InvalidMessage { .. }
            | Self::NotJetStream { .. }
            | Self::Undecodable { .. }
            | Self::UnsupportedSchemaVersion { .. } => false,
            Self::Stream { source, .. } => match source.kind() {
                CreateStreamErrorKind::TimedOut | CreateStreamErrorKind::JetStreamUnavailable => {
                    true
                }
                // A cluster without a quorum yet (servers starting) recovers.
                CreateStreamErrorKind::JetStream(error) => {
                    error.error_code() == ErrorCode::CLUSTER_NOT_AVAILABLE
                }
                _ => false,
            },
            // The setup step may create it any time.
            Self::Missing { .. } => true,
            Self::StreamInfo { source, .. } => match source.kind() {
                GetStreamErrorKind::Request => true,
                GetStreamErrorKind::JetStream(error) => {
                    error.error_code() == ErrorCode::CLUSTER_NOT_AVAILABLE
                }
                _ => false,
            },
            Self::Consumer { source, .. } => matches!(
                source.kind(),
                ConsumerErrorKind::TimedOut | ConsumerErrorKind::Request
            ),
            Self::Publish { source, .. } => match source.kind() {
                // StreamNotFound means "no responders": the stream is being
                // created or the server is restarting; both pass.
                PublishErrorKind::TimedOut
                | PublishErrorKind::BrokenPipe
                | PublishErrorKind::StreamNotFound
                | PublishErrorKind::MaxAckPending
                | PublishErrorKind::Other => true,
                PublishErrorKind::WrongLastMessageId
                | PublishErrorKind::WrongLastSequence
                | PublishErrorKind::MaxPayloadExceeded => false,
            },
            Self::Ack { .. } => true,
        }
    }

    /// Whether a publish failed because no stream captures its subject
    /// (JetStream answered "no responders"): the stream is being created,
    /// the server is restarting, or the stream is gone and the setup step
    /// must create it again ([`crate::ensure`]).
    pub fn is_stream_missing(&self) -> bool {
        matches!(self, Self::Publish { source, .. } if source.kind() == PublishErrorKind::StreamNotFound)
    }

    /// A short, stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidPrefix { .. } => "invalid_prefix",
            Self::InvalidSetting { .. } => "invalid_setting",
            Self::InvalidSubjectToken { .. } => "invalid_subject_token",
            Self::InvalidMessage { .. } => "invalid_message",
            Self::Stream { .. } => "stream",
            Self::Missing { .. } => "missing",
            Self::StreamInfo { .. } => "stream_info",
            Self::Consumer { .. } => "consumer",
            Self::Publish { .. } => "publish",
            Self::NotJetStream { .. } => "not_jetstream",
            Self::Undecodable { .. } => "undecodable",
            Self::UnsupportedSchemaVersion { .. } => "unsupported_schema_version",
            Self::Ack { .. } => "ack",
        }
    }
}
