//! The NATS JetStream contract of certflow: subject names, stream and consumer
//! names and settings, message ids, trace headers, and the encoding and
//! decoding of `certflow.v1` payloads on them. The setup step creates the
//! streams with [`ensure`]; services look them up with [`open`] (never
//! creating one), publish through [`Publisher`], and decode deliveries
//! with [`decode_work`] / [`decode_outcome`]; no other crate spells a subject
//! or a stream name. This crate never decides what a message means, never
//! talks to Kubernetes, and never acks on a consumer's behalf.
#![forbid(unsafe_code)]

mod config;
pub mod delivery;
mod ensure;
mod error;
mod open;
pub mod progress;
pub mod publish;
pub mod pull;
pub mod settings;
pub mod token;
mod topology;
pub mod trace;

pub use delivery::{Delivery, DeliveryInfo, dead_letter_for, decode_outcome, decode_work};
pub use ensure::{Change, Ensured, Streams, ensure};
pub use error::BusError;
pub use open::{SETUP_COMMAND, open, open_when_created};
pub use progress::{InProgress, Progress};
pub use publish::{PublishReceipt, Publisher};
pub use pull::Puller;
pub use settings::{Retry, RetryPolicy};
pub use topology::{SubjectKind, SubjectRef, Topology};
pub use trace::{TraceId, TraceParent, headers_with_trace, trace_id};

/// The message definitions this crate carries, re-exported for convenience.
pub use certflow_proto::v1 as proto;
