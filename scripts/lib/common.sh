# shellcheck shell=bash
# What the scripts that build, cache and install certflow's tools share: the
# pinned versions (scripts/tool-versions.env), the cache root, logging and
# installing Debian packages. Source it; `log` names the sourcing script.

# shellcheck source=../tool-versions.env
source "$(dirname "${BASH_SOURCE[0]}")/../tool-versions.env"

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/certflow/tools"

log() { printf '[%s %s] %s\n' "$(basename "$0" .sh)" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# apt_install PACKAGE...: installs the Debian packages not installed yet (as
# root; otherwise fails naming the command to run).
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  [[ $(id -u) -eq 0 ]] || die "not root: run 'sudo apt-get update && sudo apt-get install -y ${missing[*]}'"
  log "installing ${missing[*]} with apt"
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]}"
}
