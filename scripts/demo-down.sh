#!/usr/bin/env bash
# `make demo-down`: stops what `make demo` started (certflow-testenv, which
# stops the node, its Pods and the control plane) and removes .demo/.
set -uo pipefail
cd "$(dirname "$0")/.."
state=.demo
for name in testenv; do
  pid_file=$state/$name.pid
  [[ -f $pid_file ]] || continue
  pid=$(cat "$pid_file")
  if kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    echo "stopped $name (pid $pid)"
  fi
done
rm -rf "$state"
