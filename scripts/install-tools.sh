#!/usr/bin/env bash
# Builds the local control plane's binaries from the Go module proxy:
# etcd, kube-apiserver, kube-controller-manager, kubectl and nats-server, and
# helm (which renders and lints deploy/helm/certflow), and kube-apiserver and
# kubectl of the oldest Kubernetes release the docs claim (KUBE_OLDEST_VERSION)
# and of the newest one on the proxy (KUBE_NEWEST_VERSION).
#
# Versions come from scripts/tool-versions.env. Binaries are cached per version
# set under ${XDG_CACHE_HOME:-$HOME/.cache}/certflow/tools/<versions>/bin, helm
# on its own under .../certflow/tools/helm-<HELM_VERSION>/bin and the oldest and
# newest releases' under .../certflow/tools/kubernetes-<version>/bin (so
# changing one of those versions never rebuilds the others), and a binary
# already there is not rebuilt. Nothing is written inside the repository.
#
# Usage: scripts/install-tools.sh                 build what is missing
#        scripts/install-tools.sh --print         print the bin directory and exit
#        scripts/install-tools.sh --print-helm    print the helm binary's path and exit
#        scripts/install-tools.sh --print-oldest  print the oldest release's bin directory and exit
#        scripts/install-tools.sh --print-newest  print the newest release's bin directory and exit
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
source "$here/lib/common.sh"

tag="k8s-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}_nats-${NATS_SERVER_VERSION}"
prefix="$cache_root/$tag"
bin="$prefix/bin"
work="$prefix/work"
helm_bin="$cache_root/helm-${HELM_VERSION}/bin"
# kube-apiserver and kubectl of one more release: release_prefix VERSION.
release_prefix() { echo "$cache_root/kubernetes-$1"; }

if [[ "${1:-}" == "--print" ]]; then
  echo "$bin"
  exit 0
fi
if [[ "${1:-}" == "--print-helm" ]]; then
  echo "$helm_bin/helm"
  exit 0
fi
if [[ "${1:-}" == "--print-oldest" ]]; then
  echo "$(release_prefix "$KUBE_OLDEST_VERSION")/bin"
  exit 0
fi
if [[ "${1:-}" == "--print-newest" ]]; then
  echo "$(release_prefix "$KUBE_NEWEST_VERSION")/bin"
  exit 0
fi

command -v go >/dev/null || die "go is not on PATH; install Go 1.26 (e.g. apt-get install golang-go, or from the Go toolchain image)"
mkdir -p "$bin" "$work" "$helm_bin"
export GOFLAGS="-mod=mod"
export CGO_ENABLED=0

have() { [[ -x "$bin/$1" ]]; }

build_nats() {
  have nats-server && return 0
  log "building nats-server $NATS_SERVER_VERSION"
  GOBIN="$bin" go install "github.com/nats-io/nats-server/v2@${NATS_SERVER_VERSION}" \
    || die "go install nats-server@${NATS_SERVER_VERSION}"
}

build_etcd() {
  have etcd && return 0
  log "building etcd $ETCD_VERSION (wrapper module around etcdmain.Main)"
  local dir="$work/etcd"
  rm -rf "$dir" && mkdir -p "$dir"
  cat >"$dir/main.go" <<'GO'
// Command etcd runs etcd's own entry point; it exists because
// go.etcd.io/etcd/server/v3 cannot be `go install`ed directly.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (
    cd "$dir"
    go mod init certflow.local/etcd >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" >/dev/null
    go mod tidy >/dev/null
    go build -trimpath -o "$bin/etcd" .
  ) || die "building etcd ${ETCD_VERSION} in $dir"
}

# build_k8s VERSION BIN_DIR WORK_DIR CMD... (shared with install-node-tools.sh)
# shellcheck source=build-k8s.sh
source "$here/build-k8s.sh"

build_kubernetes() {
  build_k8s "$KUBERNETES_VERSION" "$bin" "$work/kubernetes" \
    kube-apiserver kube-controller-manager kubectl
}

# The oldest Kubernetes release the docs claim and the newest on the proxy:
# only their kube-apiserver and kubectl, with which tests/e2e/crd_versions.rs
# applies deploy/base to each.
build_kube_releases() {
  local v
  for v in "$KUBE_OLDEST_VERSION" "$KUBE_NEWEST_VERSION"; do
    build_k8s "$v" "$(release_prefix "$v")/bin" "$(release_prefix "$v")/work" kube-apiserver kubectl
  done
}

build_helm() {
  [[ -x "$helm_bin/helm" ]] && return 0
  log "building helm $HELM_VERSION"
  # helm's go.mod has no replace directives, so `go install` works; the -X
  # flag makes `helm version` report the full pinned version.
  GOBIN="$helm_bin" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}" \
    "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" \
    || die "go install helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
}

start=$(date +%s)
build_nats
build_etcd
build_kubernetes
build_kube_releases
build_helm
for b in etcd kube-apiserver kube-controller-manager kubectl nats-server; do
  have "$b" || die "$b missing from $bin after the build"
done
[[ -x "$helm_bin/helm" ]] || die "helm missing from $helm_bin after the build"
for v in "$KUBE_OLDEST_VERSION" "$KUBE_NEWEST_VERSION"; do
  for b in kube-apiserver kubectl; do
    [[ -x "$(release_prefix "$v")/bin/$b" ]] || die "$b missing from $(release_prefix "$v")/bin after the build"
  done
done
log "tools ready in $bin ($(($(date +%s) - start))s)"
echo "$bin"
