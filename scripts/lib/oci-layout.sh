# shellcheck shell=bash
# OCI image layout tars without a Docker engine, for scripts/build-node-images.sh
# and scripts/build-images.sh. `ctr -n k8s.io images import` takes them and
# names each image after its io.containerd.image.name annotation.

sha() { sha256sum "$1" | cut -d' ' -f1; }

# oci_layout NAME ROOTFS CONFIG_JSON TAR: packs ROOTFS as one uncompressed
# layer (owned by root, mtimes 0, so the same input gives the same digest)
# into an OCI image layout tar named NAME. CONFIG_JSON is the image config's
# "config" object (Entrypoint, Cmd, Env, User).
oci_layout() {
  local name="$1" rootfs="$2" config="$3" tar="$4"
  local dir
  dir=$(mktemp -d)
  mkdir -p "$dir/blobs/sha256"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$rootfs" -cf "$dir/layer.tar" .
  local layer layer_size
  layer=$(sha "$dir/layer.tar")
  layer_size=$(stat -c %s "$dir/layer.tar")
  mv "$dir/layer.tar" "$dir/blobs/sha256/$layer"
  printf '{"architecture":"amd64","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"%s"}]}' \
    "$config" "$layer" "$(basename "$0")" >"$dir/config.json"
  local cfg cfg_size
  cfg=$(sha "$dir/config.json")
  cfg_size=$(stat -c %s "$dir/config.json")
  mv "$dir/config.json" "$dir/blobs/sha256/$cfg"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$cfg" "$cfg_size" "$layer" "$layer_size" >"$dir/manifest.json"
  local manifest manifest_size
  manifest=$(sha "$dir/manifest.json")
  manifest_size=$(stat -c %s "$dir/manifest.json")
  mv "$dir/manifest.json" "$dir/blobs/sha256/$manifest"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest" "$manifest_size" "$name" "${name##*:}" >"$dir/index.json"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$dir" -cf "$tar.tmp" oci-layout index.json blobs
  mv "$tar.tmp" "$tar"
  rm -rf "$dir"
}
