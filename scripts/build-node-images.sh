#!/usr/bin/env bash
# Builds the local node's container images without a Docker engine, as OCI
# image layout tars that `ctr -n k8s.io images import` takes (each names its
# image in the io.containerd.image.name annotation):
#   pause    the sandbox image: `gcc -static` of build/pause/linux/pause.c from
#            the k8s.io/kubernetes module of KUBERNETES_VERSION;
#   busybox  Debian's busybox-static with its applets linked under /bin;
#   nats     the static nats-server of NATS_SERVER_VERSION that
#            scripts/install-tools.sh builds, in /usr/local/bin (what
#            deploy/overlays/local-node runs for deploy/base's `nats` image).
# No registry is ever asked: the node cannot pull.
#
# The tars are cached under
# ${XDG_CACHE_HOME:-$HOME/.cache}/certflow/tools/node-images-<KUBERNETES_VERSION>/
# beside images.txt, whose lines are "<file> <image name>" (what
# crates/testenv's Node imports and names in Pods). Nothing is written inside
# the repository. gcc, libc6-dev and busybox-static are installed with apt when
# missing (as root).
#
# Usage: scripts/build-node-images.sh          build what is missing
#        scripts/build-node-images.sh --print  print the image directory and exit
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
source "$here/lib/common.sh"

out="$cache_root/node-images-${KUBERNETES_VERSION}"

if [[ "${1:-}" == "--print" ]]; then
  echo "$out"
  exit 0
fi

# shellcheck source=lib/oci-layout.sh
source "$here/lib/oci-layout.sh"

build_pause() {
  local name="certflow.local/pause:${KUBERNETES_VERSION}"
  [[ -f "$out/pause.tar" ]] && { echo "pause.tar $name"; return 0; }
  apt_install gcc libc6-dev
  command -v go >/dev/null || die "go is not on PATH (it finds k8s.io/kubernetes's pause.c in the module cache)"
  local src
  src="$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')/build/pause/linux/pause.c"
  [[ -f "$src" ]] || die "no pause.c at $src"
  log "building the pause image $name from $src"
  local rootfs
  rootfs=$(mktemp -d)
  gcc -Os -Wall -Werror -static -DVERSION="certflow-${KUBERNETES_VERSION}" -o "$rootfs/pause" "$src" || die "gcc -static $src"
  strip "$rootfs/pause"
  chmod 0755 "$rootfs" "$rootfs/pause"
  oci_layout "$name" "$rootfs" '{"Entrypoint":["/pause"],"User":"65535:65535"}' "$out/pause.tar"
  rm -rf "$rootfs"
  echo "pause.tar $name"
}

build_busybox() {
  apt_install busybox-static
  local version name
  version=$(dpkg-query -W -f='${Version}' busybox-static | sed 's/^[0-9]*://; s/-.*//')
  name="certflow.local/busybox:${version}"
  [[ -f "$out/busybox-${version}.tar" ]] && { echo "busybox-${version}.tar $name"; return 0; }
  log "building the busybox image $name"
  local rootfs applet busybox
  busybox=$(dpkg -L busybox-static | grep -m1 '/bin/busybox$') || die "busybox-static installs no bin/busybox"
  rootfs=$(mktemp -d)
  mkdir -p "$rootfs/bin" "$rootfs/tmp"
  chmod 0755 "$rootfs" "$rootfs/bin"
  chmod 1777 "$rootfs/tmp"
  install -m 0755 "$busybox" "$rootfs/bin/busybox"
  for applet in $("$busybox" --list); do
    [[ "$applet" == busybox ]] || ln -s busybox "$rootfs/bin/$applet"
  done
  oci_layout "$name" "$rootfs" '{"Env":["PATH=/bin"],"Cmd":["sh"]}' "$out/busybox-${version}.tar"
  rm -rf "$rootfs"
  echo "busybox-${version}.tar $name"
}

build_nats() {
  local version="${NATS_SERVER_VERSION#v}"
  local name="certflow.local/nats:${version}"
  [[ -f "$out/nats-${version}.tar" ]] && { echo "nats-${version}.tar $name"; return 0; }
  local server
  server="$("$here/install-tools.sh" --print)/nats-server"
  [[ -x "$server" ]] || die "no $server: run scripts/install-tools.sh first"
  log "building the NATS image $name"
  local rootfs
  rootfs=$(mktemp -d)
  mkdir -p "$rootfs/usr/local/bin" "$rootfs/tmp"
  chmod 0755 "$rootfs" "$rootfs/usr" "$rootfs/usr/local" "$rootfs/usr/local/bin"
  chmod 1777 "$rootfs/tmp"
  install -m 0755 "$server" "$rootfs/usr/local/bin/nats-server"
  oci_layout "$name" "$rootfs" '{"Env":["PATH=/usr/local/bin"],"Entrypoint":["nats-server"],"User":"65532:65532"}' "$out/nats-${version}.tar"
  rm -rf "$rootfs"
  echo "nats-${version}.tar $name"
}

mkdir -p "$out"
start=$SECONDS
{
  build_pause
  build_busybox
  build_nats
} >"$out/images.txt.tmp"
mv "$out/images.txt.tmp" "$out/images.txt"
log "images ready in $out ($((SECONDS - start))s)"
echo "$out"
