//! A real local control plane (etcd, kube-apiserver, kube-controller-manager, nats-server) for tests, the demo and benchmarks.
#![forbid(unsafe_code)]
