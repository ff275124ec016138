#!/usr/bin/env bash
# Builds the local node's binaries from the Go module proxy: containerd 2.x
# (containerd, containerd-shim-runc-v2, ctr), runc, the CNI plugins bridge,
# host-local, loopback and portmap, and kubelet and kube-scheduler of
# KUBERNETES_VERSION. crates/testenv's Node runs them
# (docs/design/20261203-local-node-research.md).
#
# Versions come from scripts/tool-versions.env. Binaries are cached under
# ${XDG_CACHE_HOME:-$HOME/.cache}/certflow/tools/node-<versions>/bin, apart from
# scripts/install-tools.sh's, and a binary already there is not rebuilt.
# Nothing is written inside the repository. runc links libseccomp, so
# libseccomp-dev is installed with apt when missing (as root).
#
# Usage: scripts/install-node-tools.sh          build what is missing
#        scripts/install-node-tools.sh --print  print the bin directory and exit
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
source "$here/lib/common.sh"

tag="node-k8s-${KUBERNETES_VERSION}_containerd-${CONTAINERD_VERSION}_runc-${RUNC_VERSION}_cni-${CNI_PLUGINS_VERSION}"
prefix="$cache_root/$tag"
bin="$prefix/bin"
work="$prefix/work"

if [[ "${1:-}" == "--print" ]]; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || die "go is not on PATH; install Go 1.26 (e.g. apt-get install golang-go, or from the Go toolchain image)"
mkdir -p "$bin" "$work"
export GOFLAGS="-mod=mod"
export CGO_ENABLED=0

have() { [[ -x "$bin/$1" ]]; }

build_containerd() {
  have containerd && have containerd-shim-runc-v2 && have ctr && return 0
  log "building containerd $CONTAINERD_VERSION"
  local m="github.com/containerd/containerd/v2" v="$CONTAINERD_VERSION"
  # The version package's -X flags make `containerd --version` name the pin;
  # the tags leave out snapshotters the node never uses (they need cgo).
  GOBIN="$bin" go install -trimpath \
    -tags "no_btrfs no_devmapper no_zfs urfave_cli_no_docs" \
    -ldflags "-s -w -X $m/version.Version=$v -X $m/version.Revision=module" \
    "$m/cmd/containerd@$v" "$m/cmd/containerd-shim-runc-v2@$v" "$m/cmd/ctr@$v" \
    || die "go install containerd, containerd-shim-runc-v2 and ctr @$v"
}

build_runc() {
  have runc && return 0
  apt_install libseccomp-dev gcc pkg-config
  log "building runc $RUNC_VERSION"
  # Upstream also builds with the libpathrs tag, a Rust library Debian lacks;
  # without it runc uses its pure-Go fallback.
  CGO_ENABLED=1 GOBIN="$bin" go install -trimpath -tags "seccomp urfave_cli_no_docs" \
    -ldflags "-s -w -X main.version=${RUNC_VERSION#v}" \
    "github.com/opencontainers/runc@$RUNC_VERSION" \
    || die "go install github.com/opencontainers/runc@$RUNC_VERSION"
}

build_cni() {
  local p missing=0
  for p in bridge host-local loopback portmap; do have "$p" || missing=1; done
  [[ $missing == 1 ]] || return 0
  log "building CNI plugins $CNI_PLUGINS_VERSION"
  local m="github.com/containernetworking/plugins" v="$CNI_PLUGINS_VERSION"
  GOBIN="$bin" go install -trimpath -ldflags "-s -w" \
    "$m/plugins/main/bridge@$v" "$m/plugins/ipam/host-local@$v" \
    "$m/plugins/main/loopback@$v" "$m/plugins/meta/portmap@$v" \
    || die "go install the CNI plugins @$v"
}

# build_k8s VERSION BIN_DIR WORK_DIR CMD... (shared with install-tools.sh)
# shellcheck source=build-k8s.sh
source "$here/build-k8s.sh"

# timed STEP...: runs a build step and logs how long it took, when it built
# something (a cached step takes no time).
timed() {
  local t=$SECONDS
  "$@"
  ((SECONDS == t)) || log "$1: $((SECONDS - t))s"
}

start=$SECONDS
timed build_containerd
timed build_runc
timed build_cni
timed build_k8s "$KUBERNETES_VERSION" "$bin" "$work/kubernetes" kubelet kube-scheduler
for b in containerd containerd-shim-runc-v2 ctr runc bridge host-local loopback portmap kubelet kube-scheduler; do
  have "$b" || die "$b missing from $bin after the build"
done
log "node tools ready in $bin ($((SECONDS - start))s)"
echo "$bin"
