#!/usr/bin/env bash
# Builds certflow's container images without a Docker engine, as OCI image
# layout tars that `ctr -n k8s.io images import` takes (scripts/lib/oci-layout.sh):
#   certflow              certflow-watcher, certflow-signer and certflow-reporter
#                         in /usr/local/bin, as the Dockerfile's image has them:
#                         glibc and the CA bundle, no shell, user 65532:65532,
#                         no entrypoint and `certflow-watcher --help` as the
#                         command;
#   certflow-example-app  the demo's TLS server and client (crates/example-app),
#                         the same way.
# Both carry this host's glibc (libc, libm, libgcc_s and the loader, whatever
# `ldd` names) instead of distroless's, so the binaries run as built here.
# The Dockerfile stays the way to build the certflow image where Docker
# exists; tests/e2e/pods.rs checks that both agree (binaries, user, command).
#
# The tars go to target/images/ with images.txt, whose lines are
# "<file> <image name>" (what crates/testenv's Node imports). The binaries
# are stripped copies of those in --bin-dir (default target/debug, what
# `make build` leaves; `make images BIN_DIR=target/release` for release).
#
# Usage: scripts/build-images.sh [--bin-dir DIR] [--out DIR]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
bin_dir="$root/target/debug"
out="$root/target/images"
while (($#)); do
  case "$1" in
    --bin-dir) bin_dir=$(cd "$2" && pwd); shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

# shellcheck source=lib/common.sh
source "$here/lib/common.sh"
# shellcheck source=lib/oci-layout.sh
source "$here/lib/oci-layout.sh"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
[[ -n "$version" ]] || die "no workspace version in Cargo.toml"

# rootfs_for DIR BINARY...: a distroless-like root filesystem in DIR with the
# binaries stripped into /usr/local/bin and the shared libraries they load.
rootfs_for() {
  local rootfs="$1"; shift
  mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/tmp" "$rootfs/home/nonroot"
  chmod 1777 "$rootfs/tmp"
  chown 65532:65532 "$rootfs/home/nonroot"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
  printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
  [[ -f /etc/ssl/certs/ca-certificates.crt ]] && cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
  local binary lib
  for binary in "$@"; do
    [[ -x "$bin_dir/$binary" ]] || die "no $bin_dir/$binary: run 'cargo build --workspace --bins' (or 'make build') first"
    strip --strip-debug -o "$rootfs/usr/local/bin/$binary" "$bin_dir/$binary"
    for lib in $(ldd "$bin_dir/$binary" | awk '/=> \// { print $3 } /^\t\/[^ ]*ld-linux/ { print $1 }'); do
      mkdir -p "$rootfs$(dirname "$lib")"
      cp -L "$lib" "$rootfs$lib"
    done
  done
  find "$rootfs" -type d -exec chmod go+rx {} +
}

# image NAME TAR CONFIG_JSON BINARY...
image() {
  local name="$1" tar="$2" config="$3"; shift 3
  local rootfs
  rootfs=$(mktemp -d)
  rootfs_for "$rootfs" "$@"
  oci_layout "$name" "$rootfs" "$config" "$out/$tar"
  rm -rf "$rootfs"
  echo "$tar $name"
}

mkdir -p "$out"
start=$SECONDS
env='"Env":["PATH=/usr/local/bin:/usr/bin:/bin","SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"]'
{
  image "certflow.local/certflow:$version" certflow.tar \
    "{$env,\"User\":\"65532:65532\",\"Entrypoint\":[],\"Cmd\":[\"certflow-watcher\",\"--help\"],\"ExposedPorts\":{\"8081/tcp\":{},\"9090/tcp\":{},\"8082/tcp\":{}}}" \
    certflow-watcher certflow-signer certflow-reporter
  image "certflow.local/example-app:$version" example-app.tar \
    "{$env,\"User\":\"65532:65532\",\"Entrypoint\":[\"certflow-example-app\"],\"ExposedPorts\":{\"8443/tcp\":{}}}" \
    certflow-example-app
} >"$out/images.txt.tmp"
mv "$out/images.txt.tmp" "$out/images.txt"
log "images from $bin_dir ready in $out ($((SECONDS - start))s)"
