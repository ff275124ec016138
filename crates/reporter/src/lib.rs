//! Turns certificate outcomes into Kubernetes Events on the Pods and workloads that consume them.
#![forbid(unsafe_code)]
