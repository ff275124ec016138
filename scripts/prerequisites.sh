#!/usr/bin/env bash
# Installs the system packages certflow's build and tests need, when missing:
# a C toolchain and cmake (aws-lc-rs), openssl (tests verify certificates with
# `openssl verify`), setpriv from util-linux (test processes die with their
# owner) and ip from iproute2 (crates/testenv's Node creates its interface).
# The node's own packages (libseccomp-dev for runc, busybox-static for its
# image) are installed by scripts/install-node-tools.sh and
# scripts/build-node-images.sh. Go and Rust are expected on PATH and are checked, not installed.
set -euo pipefail

missing=()
for pair in gcc:gcc make:make cmake:cmake openssl:openssl setpriv:util-linux pgrep:procps ip:iproute2; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
  echo "[prerequisites] installing: ${missing[*]}" >&2
  if [[ $(id -u) -ne 0 ]]; then
    echo "[prerequisites] not root: run 'sudo apt-get update && sudo apt-get install -y ${missing[*]}'" >&2
    exit 1
  fi
  apt-get update -qq && apt-get install -y -qq "${missing[@]}"
fi
command -v go >/dev/null || { echo "Go 1.26 is required on PATH to build the control plane (https://go.dev/doc/install)" >&2; exit 1; }
command -v cargo >/dev/null || { echo "Rust (cargo) is required on PATH: https://rustup.rs" >&2; exit 1; }

# Disk: a cold `make test` needs about 4 GiB for target/ and 1.5 GiB for the
# test environments' logs (docs/testing.md). A compiler that runs out of space
# mid-build dies with an error that names neither the disk nor the fix.
need_gib=2
[[ -d target/debug ]] || need_gib=6
free_gib=$(df -P -BG . | awk 'NR == 2 { sub("G", "", $4); print $4 }')
if ((free_gib < need_gib)); then
  echo "[prerequisites] only ${free_gib} GiB free on $(df -P . | awk 'NR == 2 { print $6 }'); the build and tests need ${need_gib} GiB: free some space (cargo clean in an old checkout, rm -rf target/testenv)" >&2
  exit 1
fi
