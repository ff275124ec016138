//! Protobuf messages and gRPC services shared by the certflow services.
#![forbid(unsafe_code)]
