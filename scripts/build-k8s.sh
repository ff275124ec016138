# Sourced by scripts/install-tools.sh and scripts/install-node-tools.sh, which
# define log and die and export GOFLAGS=-mod=mod and CGO_ENABLED=0 first.
# shellcheck shell=bash

# build_k8s VERSION BIN_DIR WORK_DIR CMD...: builds the named commands of
# k8s.io/kubernetes VERSION into BIN_DIR (a command already there is kept).
# k8s.io/kubernetes points its staging modules (k8s.io/api, ...) at ./staging,
# which a module download lacks, so a wrapper module replaces each of them with
# its published v0.<minor>.<patch> version.
build_k8s() {
  local v="$1" out="$2" dir="$3"
  shift 3
  local cmds=("$@") missing=0 cmd
  for cmd in "${cmds[@]}"; do [[ -x "$out/$cmd" ]] || missing=1; done
  [[ $missing == 1 ]] || return 0
  local staging="v0.${v#v1.}" major=1 minor
  minor=$(echo "$v" | cut -d. -f2)
  log "building ${cmds[*]} $v (staging modules $staging)"
  mkdir -p "$out"
  rm -rf "$dir" && mkdir -p "$dir"
  (
    cd "$dir"
    local upstream_mod
    upstream_mod=$(go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    [[ -f "$upstream_mod" ]] || { echo "could not download k8s.io/kubernetes@$v" >&2; exit 1; }
    {
      echo "module certflow.local/kubernetes"
      grep -E '^go [0-9]' "$upstream_mod"
      grep -E '^godebug' "$upstream_mod" || true
      echo "require k8s.io/kubernetes $v"
      # Every staging module the upstream go.mod points at ./staging is
      # replaced with its published version instead.
      grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$upstream_mod" \
        | awk -v s="$staging" '{print "replace " $1 " => " $1 " " s}'
    } >go.mod
    {
      printf '//go:build tools\n\npackage tools\n\nimport (\n'
      for cmd in "${cmds[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$cmd"; done
      printf ')\n'
    } >tools.go
    go mod tidy -e >/dev/null 2>tidy.log || { cat tidy.log >&2; exit 1; }
    local ld="-s -w" pkg
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ld+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
      ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    for cmd in "${cmds[@]}"; do
      [[ -x "$out/$cmd" ]] && continue
      log "  go build $cmd $v"
      go build -trimpath -ldflags "$ld" -o "$out/$cmd" "k8s.io/kubernetes/cmd/$cmd" || exit 1
    done
  ) || die "building Kubernetes $v in $dir (see the go output above)"
}
