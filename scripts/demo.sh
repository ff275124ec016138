#!/usr/bin/env bash
# `make demo`: a local control plane and a kubelet node, certflow rolled out
# on it from deploy/overlays/local-node as real Deployments (their
# ServiceAccounts, RBAC, probes and NATS users), then examples/: an app whose
# ServiceCertificate has a typo and one that is correct, and what their
# owners see. Needs root (the node's containers) and `make node-tools images`
# (the Makefile runs both).
#
# Everything lives in .demo/ and keeps running until `make demo-down`.
set -euo pipefail
cd "$(dirname "$0")/.."

state=.demo
env_dir=$state/env     # the control plane's and the node's state, wiped when it starts
logs=$state/logs

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
  say "the local control plane and node already run (pid $(cat "$state/testenv.pid")); make demo-down starts afresh"
else
  say "starting the local control plane and a kubelet node, and rolling certflow out on it"
  scripts/demo-down.sh >/dev/null   # leftovers of a half-stopped demo
  mkdir -p "$logs"
  setsid nohup target/debug/certflow-testenv --dir "$env_dir" --node >"$logs/testenv.log" 2>&1 </dev/null &
  echo $! >"$state/testenv.pid"
  wait_for 400 grep -q '^ready:' "$logs/testenv.log" || { tail -40 "$logs/testenv.log"; exit 1; }
  grep -E '^(node|certflow rolled out)' "$logs/testenv.log"
fi
# shellcheck source=/dev/null
source "$env_dir/env.sh"

say "kubectl get pods -n certflow-system -o wide (deploy/base, on the node)"
kubectl get pods -n certflow-system -o wide

say "applying examples/ (a CertificateAuthority, an app with a typo, a correct app)"
kubectl apply -f examples/

say "waiting for the outcome"
wait_for 120 kubectl wait -n shop --for=condition=Ready scert/payments-tls --timeout=2s
wait_for 120 kubectl -n shop rollout status deployment/payments --timeout=2s
checkout_pod() { kubectl get pods -n shop -l app=checkout -o jsonpath='{.items[0].metadata.name}'; }
both_events() {
  local described
  described=$(kubectl describe pod -n shop "$(checkout_pod)")
  grep -q 'certflow-reporter' <<<"$described" && grep -q 'FailedMount' <<<"$described"
}
wait_for 120 both_events

say "kubectl get pods -n shop"
kubectl get pods -n shop -o wide

say "kubectl describe pod (checkout: its ServiceCertificate has a typo)"
kubectl describe pod -n shop "$(checkout_pod)"

say "the owner fixes the typo (what 'kubectl edit scert -n shop checkout-tls' would do): cluster.locl -> cluster.local"
fixed=$SECONDS
kubectl patch scert -n shop checkout-tls --type=json \
  -p '[{"op":"replace","path":"/spec/dnsNames/0","value":"checkout.shop.svc.cluster.local"}]'
wait_for 120 kubectl -n shop rollout status deployment/checkout --timeout=2s
echo "checkout Running $((SECONDS - fixed))s after the fix, with no restart:"
kubectl get pods -n shop -l app=checkout

say "a client Pod verifies payments against ca.crt (examples/client/verify-payments.yaml)"
payments_ip=$(kubectl get pods -n shop -l app=payments -o jsonpath='{.items[0].status.podIP}')
sed "s/PAYMENTS_ADDRESS/$payments_ip:8443/" examples/client/verify-payments.yaml | kubectl apply -f -
wait_for 120 bash -c "kubectl logs -n shop shop-client 2>/dev/null | grep -q '^verified '"
kubectl logs -n shop shop-client | grep -m1 '^verified '

say "poke at it further"
cat <<TEXT
  source $env_dir/env.sh       # KUBECONFIG and kubectl on PATH
  kubectl get scert -A
  kubectl get pods -A -o wide
  kubectl logs -n shop shop-client -f                    # one verification every 2 s
  kubectl logs -n certflow-system deploy/certflow-signer
  make demo-down                 # stop everything
TEXT
