#!/usr/bin/env bash
# Scans every log the end-to-end suite left under a test-environment root
# (service logs, saved /metrics scrapes, control-plane logs, and the API
# server's audit log of every Event and certflow status written) for
# private-key material: PEM headers, their base64 form, and the DER openings
# of PKCS#8 keys of every algorithm certflow issues. `make test` runs it on
# target/testenv after the tests.
#
# usage: scripts/scan-key-material.sh <root>
set -euo pipefail

root=${1:?usage: $0 <test-environment root, e.g. target/testenv>}

# Fixed strings that only key material contains: PEM labels, and the
# openings of base64-encoded DER keys (PKCS#8, which certflow writes, and
# SEC1/PKCS#1, which it reads) for every algorithm and size it supports.
patterns=(
  'PRIVATE KEY'                            # PEM header or footer, any key type
  'LS0tLS1CRUdJTi'                         # base64 of "-----BEGIN"
  'MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEH'   # PKCS#8 ECDSA P-256
  'MIG2AgEAMBAGByqGSM49AgEGBSuBBAAi'       # PKCS#8 ECDSA P-384
  'MC4CAQAwBQYDK2VwBCIEI'                  # PKCS#8 Ed25519
  'IBADANBgkqhkiG9w0BAQEFAASC'             # PKCS#8 RSA 2048-4096
  'MHcCAQEEI'                              # SEC1 ECDSA P-256
  'MIGkAgEBBD'                             # SEC1 ECDSA P-384
  'AIBAAKCAQEA' 'AIBAAKCAYEA' 'AIBAAKCAgEA' # PKCS#1 RSA 2048, 3072, 4096
)

# Prints every match of a pattern in the *.log files under $1.
scan() {
  local args=()
  for pattern in "${patterns[@]}"; do args+=(-e "$pattern"); done
  grep -rn --include='*.log' -F "${args[@]}" "$1" || true
}

# The scan must find what it looks for: plant a real key and expect it.
planted=$(mktemp -d)
trap 'rm -rf "$planted"' EXIT
key() { openssl genpkey -algorithm "$@" 2>/dev/null; }
key EC -pkeyopt ec_paramgen_curve:P-256 | sed 's/^/  value: /' >"$planted/pem.log"
key EC -pkeyopt ec_paramgen_curve:P-256 | base64 -w0 >"$planted/base64-pem.log"
key RSA -pkeyopt rsa_keygen_bits:2048 | openssl pkcs8 -topk8 -nocrypt -outform DER \
  | base64 -w0 >"$planted/pkcs8-rsa.log"
key EC -pkeyopt ec_paramgen_curve:P-384 -outform DER | base64 -w0 >"$planted/sec1-p384.log"
for file in pem base64-pem pkcs8-rsa sec1-p384; do
  if ! scan "$planted" | grep -q "/$file.log:"; then
    echo "scan-key-material: the scan does not notice a key planted in $file.log" >&2
    exit 1
  fi
done

if [[ ! -d $root ]]; then
  echo "scan-key-material: $root does not exist; run the tests with CERTFLOW_TESTENV_ROOT=$root" >&2
  exit 1
fi
logs=$(find "$root" -name '*.log' | wc -l)
metrics=$(find "$root" -name '*.metrics.log' | wc -l)
written=$(cat $(find "$root" -name audit.log) /dev/null | grep -c '"resource":"events"' || true)
if (( logs == 0 || metrics == 0 || written == 0 )); then
  echo "scan-key-material: nothing to scan under $root ($logs logs, $metrics metrics scrapes, $written Event writes audited)" >&2
  exit 1
fi

found=$(scan "$root")
if [[ -n $found ]]; then
  echo "scan-key-material: key material in logs or Events under $root:" >&2
  # Show where, not what: the file, line number and pattern only.
  cut -d: -f1,2 <<<"$found" | sort -u >&2
  exit 1
fi
echo "scan-key-material: no key material in $logs logs ($metrics of them metrics scrapes, $written Event writes audited) under $root"
