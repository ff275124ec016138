//! Consumes work items, validates them, issues certificates into Secrets and writes status.
#![forbid(unsafe_code)]
