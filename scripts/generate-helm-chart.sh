#!/usr/bin/env bash
# Regenerates deploy/helm/certflow from deploy/base (and deploy/optional/keda,
# deploy/optional/prometheus): templates/*.yaml, crds/*.yaml and values.yaml.
# Run it after changing anything under deploy/base or deploy/optional;
# tests/e2e/helm.rs fails until the committed chart is what this writes.
# The hand-written files (Chart.yaml, templates/_helpers.tpl, README.md) are
# left alone.
#
# Usage: scripts/generate-helm-chart.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# kubectl (for `kubectl kustomize`) comes from the tools cache.
scripts/install-tools.sh >/dev/null
exec cargo run -q -p certflow-e2e --bin generate-helm-chart
