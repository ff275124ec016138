//! certflow's benchmarks (`make bench`): scenarios that drive a real local
//! control plane with certflow's services as separate processes and measure
//! what users feel — issuance throughput and latency — reported as medians
//! of repeated runs. Never part of `make test`: figures depend on the machine.
#![forbid(unsafe_code)]

pub mod scenarios;
pub mod stats;
