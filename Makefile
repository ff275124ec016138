# certflow — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help prerequisites tools node-tools build images test chaos crds env demo demo-down bench lint fmt

help: ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

prerequisites: ## install the Debian packages the build needs, when missing
	@scripts/prerequisites.sh

tools: prerequisites ## build etcd, kube-apiserver, kube-controller-manager, kubectl, nats-server, helm, and the oldest and newest tested kube-apiserver and kubectl (cached per version)
	@scripts/install-tools.sh >/dev/null

node-tools: prerequisites ## build the local node's containerd, runc, CNI plugins, kubelet and kube-scheduler, and its pause and busybox images (cached per version)
	@scripts/install-node-tools.sh >/dev/null
	@scripts/build-node-images.sh >/dev/null

build: tools ## build every crate, tests included
	$(CARGO) build --workspace --all-targets

images: build ## build certflow's and the example app's container images from target/debug, without Docker (BIN_DIR=target/release for release binaries)
	@scripts/build-images.sh $(if $(BIN_DIR),--bin-dir $(BIN_DIR)) >/dev/null

test: build node-tools images ## run every test, unit and end-to-end, against the real local control plane (and a local kubelet node)
	rm -rf target/testenv
	CERTFLOW_TESTENV_ROOT=$(CURDIR)/target/testenv $(CARGO) test --workspace --no-fail-fast
	@scripts/scan-key-material.sh target/testenv
	@scripts/check-no-orphans.sh

chaos: build ## the full chaos test (500 valid, 100 broken, 30 kills; CERTFLOW_CHAOS_SEED=<n> replays a run)
	CERTFLOW_CHAOS_VALID=$${CERTFLOW_CHAOS_VALID:-500} CERTFLOW_CHAOS_BROKEN=$${CERTFLOW_CHAOS_BROKEN:-100} \
	CERTFLOW_CHAOS_KILLS=$${CERTFLOW_CHAOS_KILLS:-30} \
	$(CARGO) test -p certflow-e2e --test chaos -- --nocapture

demo: build node-tools images ## start the control plane and a kubelet node, roll certflow out on it from deploy/, apply examples/, show what app owners see (as root)
	@scripts/demo.sh

demo-down: ## stop what `make demo` started
	@scripts/demo-down.sh

crds: ## regenerate deploy/crds from the Rust types
	$(CARGO) run -q -p certflow-api --bin crdgen

env: tools ## run a local control plane in the foreground (state in .env-state/)
	$(CARGO) run -q -p certflow-testenv -- --dir .env-state

lint: ## formatting and clippy
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

bench: tools ## measure throughput (with API requests per certificate, beside a no-certflow floor), latency, scale, renewal storms and fairness (release build; tens of minutes)
	$(CARGO) build --release --workspace --bins
	CERTFLOW_BIN_DIR=target/release target/release/certflow-bench $(BENCH_ARGS)
