# syntax=docker/dockerfile:1.7
#
# One image with certflow's three services; each Deployment picks its binary
# with `command`. Build from the repository root:
#
#   docker build -t certflow:0.1.0 .
#
# The builder needs no protoc (protox compiles proto/ in Rust) and no network
# after `cargo fetch`. The runtime image is distroless (glibc and CA
# certificates, no shell, no package manager) and runs as UID 65532.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
# aws-lc-rs (TLS and signing) builds its C code with cmake.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target directory between builds; the
# binaries are copied out because the cache mount is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p certflow-watcher -p certflow-signer -p certflow-reporter \
 && mkdir -p /out \
 && cp target/release/certflow-watcher target/release/certflow-signer \
       target/release/certflow-reporter /out/

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="certflow" \
      org.opencontainers.image.description="certflow-watcher, certflow-signer and certflow-reporter" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/ /usr/local/bin/
# distroless's `nonroot` user; the Deployments also set runAsUser 65532,
# runAsNonRoot and a read-only root filesystem.
USER 65532:65532
# 8081: grpc.health.v1 (probes); 9090: Prometheus /metrics; 8082: the
# reporter's gRPC Report API (deploy/ sets --grpc-addr=0.0.0.0:8082; its
# default is loopback only).
EXPOSE 8081 9090 8082
# No default: choose the service, e.g. `docker run certflow:0.1.0 certflow-signer --help`.
ENTRYPOINT []
CMD ["certflow-watcher", "--help"]
