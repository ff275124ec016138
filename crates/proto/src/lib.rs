//! The wire format between certflow services: protobuf messages carried on
//! NATS (`WorkItem`, `Outcome`, `DeadLetter`) and the gRPC `Reporter` service,
//! generated at build time from `proto/certflow/v1/*.proto` without a system
//! `protoc`. This crate only defines shapes; it never decides subjects, never
//! touches NATS or Kubernetes, and holds no behaviour beyond the generated code.
#![forbid(unsafe_code)]

/// Package `certflow.v1`. Changes within it are additive only (see
/// `proto/certflow/v1/work.proto`); a breaking change is a new package.
pub mod v1 {
    tonic::include_proto!("certflow.v1");

    /// Value of `schema_version` in every message of this package.
    pub const SCHEMA_VERSION: u32 = 1;

    /// The encoded `FileDescriptorSet` of this package (with its imports), for
    /// gRPC reflection and for tools that decode payloads by descriptor.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/certflow_v1_descriptor.bin"));
}

#[cfg(test)]
mod tests;
