//! certflow's benchmarks (`make bench`): scenarios that drive a real local
//! control plane with certflow's services as separate processes and measure
//! what users feel — issuance throughput and latency, memory and API load at
//! scale, a renewal storm, one namespace's flood against another's first
//! certificate — reported as medians of repeated runs. Never part
//! of `make test`: figures depend on the machine.
#![forbid(unsafe_code)]

pub mod apiserver;
pub mod cert_manager;
pub mod fairness;
pub mod floor;
pub mod poll;
pub mod process;
pub mod scale;
pub mod scenarios;
pub mod stats;
pub mod storm;
