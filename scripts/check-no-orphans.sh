#!/usr/bin/env bash
# Fails when a control-plane process built by install-tools.sh is still
# running: tests must never leave etcd, kube-apiserver, kube-controller-manager
# or nats-server behind, even when they fail.
set -euo pipefail
tools="$(dirname "$0")/install-tools.sh"
# The control plane, and the kube-apiserver releases crd_versions.rs starts.
pattern="^($("$tools" --print)|$("$tools" --print-oldest)|$("$tools" --print-newest))/"
# Children die through PR_SET_PDEATHSIG when their test binary exits; give the
# kernel a moment to deliver it.
for _ in $(seq 50); do
  pgrep -f "$pattern" >/dev/null || { echo "no control-plane processes left behind"; exit 0; }
  sleep 0.1
done
echo "orphaned control-plane processes:" >&2
pgrep -af "$pattern" >&2
exit 1
