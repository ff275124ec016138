#!/usr/bin/env bash
# `make demo`: a local control plane, certflow's three services as separate
# processes, and two sample apps — one whose ServiceCertificate has a typo,
# one that is correct — then what their owners would see.
#
# Everything lives in .demo/ and keeps running until `make demo-down`.
# Running it again reuses what is already up.
set -euo pipefail
cd "$(dirname "$0")/.."

state=.demo
env_dir=$state/env     # the control plane's own state, wiped when it starts
bin=target/debug
logs=$state/logs
mkdir -p "$logs"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Waits up to $1 seconds for the command in the remaining arguments to succeed.
wait_for() {
  local timeout=$1; shift
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "timed out after ${timeout}s waiting for: $*" >&2
      return 1
    fi
    sleep 0.5
  done
}

if alive "$state/testenv.pid" && [[ -f $env_dir/env.sh ]]; then
  say "local control plane already running (pid $(cat "$state/testenv.pid"))"
else
  say "starting the local control plane (etcd, kube-apiserver, kube-controller-manager, nats-server)"
  scripts/demo-down.sh >/dev/null   # leftovers of a half-stopped demo
  mkdir -p "$logs"
  setsid nohup "$bin/certflow-testenv" --dir "$env_dir" >"$logs/testenv.log" 2>&1 </dev/null &
  echo $! >"$state/testenv.pid.tmp"
  wait_for 120 grep -q '^ready:' "$logs/testenv.log" || { tail -30 "$logs/testenv.log"; exit 1; }
  mv "$state/testenv.pid.tmp" "$state/testenv.pid"
fi
# shellcheck source=/dev/null
source "$env_dir/env.sh"

kubectl apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Namespace
metadata: {name: certflow-system}
YAML

# Each service: its own health and metrics ports on loopback.
start_service() {
  local name=$1 port=$2; shift 2
  if alive "$state/$name.pid"; then
    echo "$name already running (pid $(cat "$state/$name.pid"))"
    return
  fi
  setsid nohup "$bin/$name" \
    --nats-url "$CERTFLOW_NATS_URL" \
    --health-addr "127.0.0.1:$port" \
    --metrics-addr "127.0.0.1:$((port + 1))" \
    "$@" >"$logs/$name.log" 2>&1 </dev/null &
  echo $! >"$state/$name.pid"
  echo "$name started (pid $!, health 127.0.0.1:$port, metrics http://127.0.0.1:$((port + 1))/metrics)"
}
say "starting certflow-watcher, certflow-signer and certflow-reporter"
start_service certflow-watcher 18081
start_service certflow-signer 18083 --namespace certflow-system
start_service certflow-reporter 18085 --grpc-addr 127.0.0.1:18087

say "applying examples/ (a CertificateAuthority, an app with a typo, a correct app)"
kubectl apply -f examples/

say "waiting for the outcome"
wait_for 120 kubectl wait -n shop --for=condition=Ready scert/payments-tls --timeout=2s
wait_for 120 bash -c "kubectl get scert -n shop checkout-tls -o jsonpath='{.status.conditions[0].status}' | grep -q False"
checkout_has_warning() {
  local pod
  pod=$(kubectl get pods -n shop -l app=checkout -o jsonpath='{.items[0].metadata.name}')
  [[ -n $pod ]] && kubectl describe pod -n shop "$pod" | grep -q 'certflow-reporter'
}
wait_for 120 checkout_has_warning

say "kubectl get scert -A"
kubectl get scert -A

say "kubectl describe pod (checkout: the ServiceCertificate has a typo)"
kubectl describe pod -n shop -l app=checkout

say "kubectl describe pod (payments: correct)"
kubectl describe pod -n shop -l app=payments

say "the payments certificate, from its Secret"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
kubectl get secret -n shop payments-tls -o jsonpath='{.data.tls\.crt}' | base64 -d >"$tmp/chain.pem"
kubectl get secret -n shop payments-tls -o jsonpath='{.data.ca\.crt}' | base64 -d >"$tmp/ca.pem"
openssl x509 -in "$tmp/chain.pem" -noout -subject -issuer -dates -ext subjectAltName
openssl verify -CAfile "$tmp/ca.pem" "$tmp/chain.pem"

say "poke at it further"
cat <<TEXT
  source $env_dir/env.sh       # KUBECONFIG, CERTFLOW_NATS_URL and kubectl on PATH
  kubectl get scert -A
  kubectl edit scert -n shop checkout-tls   # fix the typo: cluster.locl -> cluster.local
  tail -f $logs/certflow-signer.log
  make demo-down                 # stop everything
TEXT
