//! Service plumbing shared by the certflow binaries: telemetry, health, metrics, shutdown.
#![forbid(unsafe_code)]
