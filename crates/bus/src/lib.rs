//! NATS JetStream subjects, streams and consumers: the only crate that knows their names.
#![forbid(unsafe_code)]
