#!/usr/bin/env bash
# Fails when a test left something running or mounted: a control-plane
# process built by install-tools.sh (etcd, kube-apiserver,
# kube-controller-manager, nats-server), a node process built by
# install-node-tools.sh (kubelet, containerd, a containerd shim, runc), or
# what crates/testenv's Node takes away when it is dropped: mounts under a
# node's directory (Secret tmpfs, overlay root filesystems, network
# namespaces), the kubelet's /kubepods cgroups and a node's cfn<pid>n<n>
# interface.
set -euo pipefail
here="$(dirname "$0")"
tools="$here/install-tools.sh"
# The control plane, the kube-apiserver releases crd_versions.rs starts, and
# the node's binaries.
pattern="^($("$tools" --print)|$("$tools" --print-oldest)|$("$tools" --print-newest)|$("$here/install-node-tools.sh" --print))/"
# A node's directory is <environment>/node-<pid>-<n>/.
node_mounts() { awk '$5 ~ /\/node-[0-9]+-[0-9]+(\/|$)/ { print $5 }' /proc/self/mountinfo; }
pod_cgroups() { find /sys/fs/cgroup -mindepth 2 -maxdepth 2 -type d -name kubepods 2>/dev/null || true; }
node_links() { ip -o link show 2>/dev/null | awk -F': ' '$2 ~ /^cfn[0-9]+n[0-9]+(@|$)/ { print $2 }' || true; }
leftovers() {
  pgrep -af "$pattern" || true
  node_mounts | sed 's/^/mount /'
  pod_cgroups | sed 's/^/cgroup /'
  node_links | sed 's/^/interface /'
}
# Children die through PR_SET_PDEATHSIG when their test binary exits; give the
# kernel a moment to deliver it.
for _ in $(seq 50); do
  [[ -z "$(leftovers)" ]] && { echo "no control-plane or node processes, mounts, cgroups or interfaces left behind"; exit 0; }
  sleep 0.1
done
echo "left behind by the tests:" >&2
leftovers >&2
exit 1
