#!/usr/bin/env bash
# Builds cert-manager's controller from the Go module proxy for the side-by-side
# benchmark (issue 6, scenario 5), and extracts its CRDs. Nothing is written
# inside the repository.
#
# The version comes from CERT_MANAGER_VERSION in scripts/tool-versions.env.
# Everything is cached under
#   ${XDG_CACHE_HOME:-$HOME/.cache}/certflow/cert-manager/<version>/
#     bin/cert-manager-controller   the controller (rebuilt only if missing)
#     crds/*.yaml                   Certificate, CertificateRequest, Issuer,
#                                   ClusterIssuer, Order, Challenge CRDs
#
# Why a wrapper main package: upstream's `cmd/controller` is the nested module
# github.com/cert-manager/cert-manager/controller-binary (its go.mod has
# `replace github.com/cert-manager/cert-manager => ../../`). It is not tagged,
# so the module proxy does not have it, and the root module's zip excludes the
# nested module's directory: `go install .../cmd/controller@<version>` fails
# with "module ... found, but does not contain package". The controllers
# themselves (pkg/controller/...) are in the root module, so this script writes
# a small main package that wires them up the way upstream's app.Run does. See
# docs/design/20261127-cert-manager-comparison.md for what differs upstream.
#
# Usage: scripts/install-cert-manager.sh              build what is missing
#        scripts/install-cert-manager.sh --print      print the bin directory and exit
#        scripts/install-cert-manager.sh --print-crds print the CRD directory and exit
#
# Run it: cert-manager-controller --kubeconfig=<file> --leader-elect=false \
#           [--namespace=<ns>] [--concurrent-workers=5] [--metrics-listen-address=127.0.0.1:9402]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
source "$here/lib/common.sh"
: "${CERT_MANAGER_VERSION:?CERT_MANAGER_VERSION is not set in scripts/tool-versions.env}"

prefix="${XDG_CACHE_HOME:-$HOME/.cache}/certflow/cert-manager/$CERT_MANAGER_VERSION"
bin="$prefix/bin"
crds="$prefix/crds"
work="$prefix/work"

case "${1:-}" in
  --print) echo "$bin"; exit 0 ;;
  --print-crds) echo "$crds"; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--print|--print-crds]" >&2; exit 2 ;;
esac

command -v go >/dev/null || die "go is not on PATH; install Go 1.26"
mkdir -p "$bin" "$work"
export GOFLAGS="-mod=mod"
export CGO_ENABLED=0
module=github.com/cert-manager/cert-manager

extract_crds() {
  [[ -f "$crds/cert-manager.io_certificates.yaml" ]] && return 0
  log "extracting CRDs from $module@$CERT_MANAGER_VERSION (deploy/crds)"
  local dir
  dir=$(go mod download -json "$module@$CERT_MANAGER_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [[ -d "$dir/deploy/crds" ]] || die "no deploy/crds in $module@$CERT_MANAGER_VERSION ($dir)"
  # deploy/crds holds plain controller-gen output (the Helm-templated copies are
  # under deploy/charts); refuse to install a templated file if that changes.
  if grep -l '{{' "$dir"/deploy/crds/*.yaml >&2; then
    die "the CRDs above contain Helm templating; strip it before applying"
  fi
  rm -rf "$crds.tmp" && mkdir -p "$crds.tmp"
  cp "$dir"/deploy/crds/*.yaml "$crds.tmp"/
  chmod u+w "$crds.tmp"/*.yaml
  rm -rf "$crds" && mv "$crds.tmp" "$crds"
}

build_controller() {
  [[ -x "$bin/cert-manager-controller" ]] && return 0
  log "building cert-manager-controller $CERT_MANAGER_VERSION (wrapper main around $module/pkg/controller)"
  local dir="$work/controller"
  rm -rf "$dir" && mkdir -p "$dir"
  cat >"$dir/go.mod" <<MOD
// Under $module/ only so that main.go may import cert-manager's internal packages.
module $module/certflow-controller

go 1.26.0

require $module $CERT_MANAGER_VERSION
MOD
  cat >"$dir/main.go" <<'GO'
// Command cert-manager-controller runs cert-manager's controller loops (package
// github.com/cert-manager/cert-manager/pkg/controller and the controllers that
// register with it) the way upstream's cmd/controller does: one ContextFactory,
// every enabled controller's Run(workers, ctx), then the shared informers.
//
// It exists because upstream's main package and its flag/config glue live in
// the nested module github.com/cert-manager/cert-manager/controller-binary
// (directory cmd/controller), which is not on the Go module proxy. This
// module's path sits under github.com/cert-manager/cert-manager/ only so that
// it may import cert-manager's internal packages, as the upstream one does.
//
// Written by scripts/install-cert-manager.sh; see
// docs/design/20261127-cert-manager-comparison.md. Defaults are copied from
// cert-manager's internal/apis/config/controller/v1alpha1/defaults.go; that
// package is not imported because it links the Venafi issuer, whose dependency
// (github.com/Venafi/vcert/v5 v5.13.7) this machine's module proxy refuses.
// Not supported: the Venafi issuer, leader election, healthz, pprof, --config.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/sets"
	logsapi "k8s.io/component-base/logs/api/v1"

	"github.com/cert-manager/cert-manager/internal/controller/feature"
	"github.com/cert-manager/cert-manager/pkg/controller"
	dnsutil "github.com/cert-manager/cert-manager/pkg/issuer/acme/dns/util"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"
	utilfeature "github.com/cert-manager/cert-manager/pkg/util/feature"

	// Controllers register themselves with pkg/controller (all of upstream's
	// defaults except certificaterequests-issuer-venafi).
	_ "github.com/cert-manager/cert-manager/pkg/controller/acmechallenges"
	_ "github.com/cert-manager/cert-manager/pkg/controller/acmeorders"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificate-shim/ingresses"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/acme"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/vault"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/metrics"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	// Issuer implementations register themselves with pkg/issuer.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/acme"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/vault"
)

// Upstream's DefaultEnabledControllers without certificaterequests-issuer-venafi.
var defaultControllers = []string{
	"issuers", "clusterissuers", "certificates-metrics", "ingress-shim", "orders", "challenges",
	"certificaterequests-issuer-acme", "certificaterequests-approver", "certificaterequests-issuer-ca",
	"certificaterequests-issuer-selfsigned", "certificaterequests-issuer-vault",
	"certificates-trigger", "certificates-issuing", "certificates-key-manager",
	"certificates-request-manager", "certificates-readiness", "certificates-revision-manager",
}

func main() {
	logf.InitLogs()
	defer logf.FlushLogs()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:])
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, pflag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	o := controller.ContextOptions{}
	var controllers []string
	var workers int
	var metricsAddr string
	var leaderElect bool
	featureGates := map[string]bool{}
	logging := logsapi.NewLoggingConfiguration()

	fs := pflag.NewFlagSet("cert-manager-controller", pflag.ContinueOnError)
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "path to a kubeconfig (default: in-cluster config)")
	fs.StringVar(&o.APIServerHost, "master", "", "API server address (overrides the kubeconfig)")
	fs.Float32Var(&o.KubernetesAPIQPS, "kube-api-qps", 20, "client QPS; ignored when the API server answers with API Priority and Fairness headers")
	fs.IntVar(&o.KubernetesAPIBurst, "kube-api-burst", 50, "client burst; ignored like --kube-api-qps")
	fs.StringVar(&o.Namespace, "namespace", "", "only watch this namespace (the clusterissuers controller is then disabled)")
	fs.StringVar(&o.ClusterResourceNamespace, "cluster-resource-namespace", "kube-system", "namespace of ClusterIssuer secrets")
	fs.StringSliceVar(&controllers, "controllers", []string{"*"}, "controllers to run: '*' (the defaults), 'name', '-name'")
	fs.IntVar(&workers, "concurrent-workers", 5, "workers per controller")
	fs.StringVar(&metricsAddr, "metrics-listen-address", "0.0.0.0:9402", "Prometheus metrics address; empty disables it")
	fs.BoolVar(&o.EnableOwnerRef, "enable-certificate-owner-ref", false, "make Certificates owners of their Secrets")
	fs.BoolVar(&o.ClusterIssuerAmbientCredentials, "cluster-issuer-ambient-credentials", true, "let ClusterIssuers use ambient credentials")
	fs.BoolVar(&o.IssuerAmbientCredentials, "issuer-ambient-credentials", false, "let Issuers use ambient credentials")
	fs.Var(mapFlag(featureGates), "feature-gates", "comma-separated Name=true|false pairs")
	fs.BoolVar(&leaderElect, "leader-elect", false, "accepted for compatibility; only false is supported")
	logf.AddFlags(logging, fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if leaderElect {
		return errors.New("--leader-elect=true is not supported by this build; run one replica")
	}
	if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(featureGates); err != nil {
		return err
	}
	if err := logf.ValidateAndApply(logging); err != nil {
		return err
	}
	ctx = logf.NewContext(ctx, logf.Log, "cert-manager-controller")
	log := logf.FromContext(ctx)

	// The remaining upstream defaults (defaults.go in cert-manager v1.21.2).
	o.IngressShimOptions = controller.IngressShimOptions{
		DefaultIssuerKind:                 "Issuer",
		DefaultIssuerGroup:                "cert-manager.io",
		DefaultAutoCertificateAnnotations: []string{"kubernetes.io/tls-acme"},
		ExtraCertificateAnnotations:       []string{},
		GatewayAPIExtraProtocols:          sets.New[string](),
	}
	o.CertificateOptions.CopiedAnnotationPrefixes = []string{"*", "-kubectl.kubernetes.io/", "-fluxcd.io/", "-argocd.argoproj.io/"}
	o.CertificateOptions.CertificateRequestMinimumBackoffDuration = time.Hour
	o.CertificateOptions.CertificateRequestMaximumBackoffDuration = 32 * time.Hour
	o.SchedulerOptions.MaxConcurrentChallenges = 60
	o.ACMEOptions = controller.ACMEOptions{
		HTTP01SolverImage:                 "quay.io/jetstack/cert-manager-acmesolver:" + util.AppVersion,
		HTTP01SolverResourceRequestCPU:    resource.MustParse("10m"),
		HTTP01SolverResourceRequestMemory: resource.MustParse("64Mi"),
		HTTP01SolverResourceLimitsCPU:     resource.MustParse("100m"),
		HTTP01SolverResourceLimitsMemory:  resource.MustParse("64Mi"),
		ACMEHTTP01SolverRunAsNonRoot:      true,
		DNS01CheckAuthoritative:           true,
		DNS01Nameservers:                  dnsutil.RecursiveNameservers,
		DNS01CheckRetryPeriod:             10 * time.Second,
	}

	enabled := sets.New[string]()
	for _, c := range controllers {
		switch {
		case c == "*":
			enabled.Insert(defaultControllers...)
		case !strings.HasPrefix(c, "-"):
			enabled.Insert(c)
		}
	}
	for _, c := range controllers {
		if strings.HasPrefix(c, "-") {
			enabled.Delete(c[1:])
		}
	}
	if o.Namespace != "" {
		enabled.Delete("clusterissuers")
	}

	ctxFactory, err := controller.NewContextFactory(ctx, o)
	if err != nil {
		return err
	}
	cctx, err := ctxFactory.Build()
	if err != nil {
		return err
	}
	log.Info("starting", "controllers", sets.List(enabled), "namespace", o.Namespace, "workers", workers,
		"kubeAPIQPS", o.KubernetesAPIQPS, "kubeAPIBurst", o.KubernetesAPIBurst,
		"clientRateLimit", fmt.Sprintf("qps=%v burst=%v (-1: none, the API server uses API Priority and Fairness)", cctx.RESTConfig.QPS, cctx.RESTConfig.Burst))

	g, ctx := errgroup.WithContext(ctx)
	if metricsAddr != "" {
		ln, err := net.Listen("tcp", metricsAddr)
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		srv := cctx.Metrics.NewServer(ln)
		g.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		g.Go(func() error { <-ctx.Done(); return srv.Close() })
	}
	started := 0
	for name, fn := range controller.Known() {
		if !enabled.Has(name) {
			continue
		}
		iface, err := fn(ctxFactory)
		if err != nil {
			return fmt.Errorf("controller %s: %w", name, err)
		}
		started++
		g.Go(func() error { return iface.Run(workers, ctx) })
	}
	if started != enabled.Len() {
		return fmt.Errorf("%d controllers enabled but only %d are built in (known: %v)", enabled.Len(), started, sets.List(sets.KeySet(controller.Known())))
	}
	cctx.SharedInformerFactory.Start(ctx.Done())
	cctx.KubeSharedInformerFactory.Start(ctx.Done())
	cctx.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())
	if utilfeature.DefaultFeatureGate.Enabled(feature.ExperimentalGatewayAPISupport) && o.EnableGatewayAPI {
		cctx.GWShared.Start(ctx.Done())
	}
	return g.Wait()
}

type mapFlag map[string]bool

func (m mapFlag) String() string { return "" }
func (m mapFlag) Type() string   { return "mapStringBool" }
func (m mapFlag) Set(s string) error {
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || (v != "true" && v != "false") {
			return fmt.Errorf("feature gate %q: want Name=true|false", kv)
		}
		m[k] = v == "true"
	}
	return nil
}
GO
  (
    cd "$dir"
    go mod tidy >/dev/null 2>tidy.log || { cat tidy.log >&2; exit 1; }
    go build -trimpath -ldflags "-s -w -X $module/pkg/util.AppVersion=$CERT_MANAGER_VERSION" \
      -o "$bin/cert-manager-controller" .
  ) || die "building cert-manager-controller $CERT_MANAGER_VERSION in $dir (see the go output above)"
}

start=$(date +%s)
extract_crds
build_controller
[[ -x "$bin/cert-manager-controller" ]] || die "cert-manager-controller missing from $bin after the build"
log "cert-manager $CERT_MANAGER_VERSION ready in $bin, CRDs in $crds ($(($(date +%s) - start))s)"
echo "$bin"
