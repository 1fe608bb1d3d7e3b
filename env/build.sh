#!/usr/bin/env bash
# Builds the local environment's binaries from the Go module proxy, once per machine.
#
# Every part lands in $CHATOPS_ENV_CACHE/<part>-<version>/bin and is marked done only
# when its build finished, so an interrupted build resumes and a warm run does nothing.
# Usage: env/build.sh [part...]
#   (default: all of k8s etcd kwok ferretdb mongotools bsondump helm redis gatewayapi
#   prometheus promtool traefik containers pythonbase; the side-by-side benchmark's peers
#   flagger argo-rollouts argo-gatewayapi-plugin are built only when named)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${CHATOPS_ENV_CACHE:-$HOME/.cache/chatops-env}
export GOPATH=${GOPATH:-$HOME/go}
export GOFLAGS="-buildvcs=false -trimpath"
export CGO_ENABLED=0
mkdir -p "$cache"

log() { printf '[build %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# done_or_build PART VERSION FUNCTION: runs FUNCTION in a fresh work dir unless done.
done_or_build() {
  local part=$1 version=$2 fn=$3 dir="$cache/$1-$2"
  if [ -f "$dir/.done" ]; then log "$part $version: cached in $dir"; return; fi
  log "$part $version: building (first run on this machine)"
  local start=$SECONDS
  rm -rf "$dir" && mkdir -p "$dir/bin" "$dir/src"
  (cd "$dir/src" && "$fn" "$dir/bin")
  touch "$dir/.done"
  log "$part $version: built in $((SECONDS - start)) s"
}

k8s_staging="api apiextensions-apiserver apimachinery apiserver cli-runtime client-go
cloud-provider cluster-bootstrap code-generator component-base component-helpers
controller-manager cri-api cri-client csi-translation-lib dynamic-resource-allocation
endpointslice externaljwt kms kube-aggregator kube-controller-manager kube-proxy
kube-scheduler kubectl kubelet metrics mount-utils pod-security-admission sample-apiserver
sample-cli-plugin sample-controller"

build_k8s() {
  local bin=$1 staging=v0${K8S_VERSION#v1} minor
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  go mod init chatops-env/k8s >/dev/null 2>&1
  for m in $k8s_staging; do
    local v=$staging o
    for o in $K8S_STAGING_OVERRIDES; do [ "${o%%=*}" = "$m" ] && v=${o#*=}; done
    go mod edit -replace "k8s.io/$m=k8s.io/$m@$v"
  done
  go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" \
    "k8s.io/kubernetes/cmd/kube-controller-manager@$K8S_VERSION" \
    "k8s.io/kubernetes/cmd/kube-scheduler@$K8S_VERSION" \
    "k8s.io/kubernetes/cmd/kubectl@$K8S_VERSION"
  local ld="" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  done
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    log "k8s: go build $cmd"
    go build -ldflags "-s -w $ld" -o "$bin/$cmd" "k8s.io/kubernetes/cmd/$cmd"
  done
}

build_kwok() {
  GOBIN=$1 go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
}

build_ferretdb() {
  # `go install` of FerretDB panics at start (its version.txt is missing): a wrapper
  # module builds the same main package with the file in place.
  go mod init chatops-env/ferretdb >/dev/null 2>&1
  go get -tool "github.com/FerretDB/FerretDB/cmd/ferretdb@$FERRETDB_VERSION"
  local mod
  mod=$(go list -m -f '{{.Dir}}' github.com/FerretDB/FerretDB)
  if [ ! -s "$mod/build/version/version.txt" ]; then
    chmod -R u+w "$mod/build/version" && echo "$FERRETDB_VERSION" >"$mod/build/version/version.txt"
  fi
  go build -tags ferretdb_no_postgresql -o "$1/ferretdb" github.com/FerretDB/FerretDB/cmd/ferretdb \
    || go build -o "$1/ferretdb" github.com/FerretDB/FerretDB/cmd/ferretdb
}

build_mongotools() {
  # mongo-tools tags (100.x) are not Go semver: the proxy serves pseudo-versions only,
  # and the checksum database does not know them, hence GONOSUMDB for this one module.
  export GONOSUMDB=github.com/mongodb/mongo-tools
  go mod init chatops-env/mongotools >/dev/null 2>&1
  go get -tool "github.com/mongodb/mongo-tools/mongodump/main@$MONGO_TOOLS_VERSION" \
    "github.com/mongodb/mongo-tools/mongorestore/main@$MONGO_TOOLS_VERSION"
  local tool
  for tool in mongodump mongorestore; do
    go build -ldflags "-X main.VersionStr=$MONGO_TOOLS_RELEASE" -o "$1/$tool" \
      "github.com/mongodb/mongo-tools/$tool/main"
  done
}

build_bsondump() {
  # bsondump reads the archives' oplog.bson as a human would; its own part (and cache
  # directory), so a machine that built mongodump/mongorestore before keeps them.
  export GONOSUMDB=github.com/mongodb/mongo-tools
  go mod init chatops-env/bsondump >/dev/null 2>&1
  go get -tool "github.com/mongodb/mongo-tools/bsondump/main@$MONGO_TOOLS_VERSION"
  go build -ldflags "-X main.VersionStr=$MONGO_TOOLS_RELEASE" -o "$1/bsondump" \
    "github.com/mongodb/mongo-tools/bsondump/main"
}

build_etcd() {
  # Debian's etcd 3.4.23 lacks what kube-apiserver needs for RequestWatchProgress, and
  # kwok's client-go then loses its watches for minutes: pods stay Pending. etcd 3.5 has
  # no main package in a tagged module, so a two-line wrapper calls etcdmain.
  go mod init chatops-env/etcd >/dev/null 2>&1
  printf '%s\n' 'package main' '' 'import (' '	"os"' '' '	"go.etcd.io/etcd/server/v3/etcdmain"' ')' '' \
    'func main() { etcdmain.Main(os.Args) }' >main.go
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go mod tidy
  go build -ldflags "-s -w" -o "$1/etcd" .
}

build_helm() {
  GOBIN=$1 go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

build_redis() {
  # A Redis-protocol server (RESP over TCP, AUTH, PING, pub/sub...): miniredis, in-memory,
  # run by a small main that listens where it is told, with the password of
  # $REDIS_PASSWORD when set (never on the command line, where `ps` would show it).
  go mod init chatops-env/redis >/dev/null 2>&1
  cat >main.go <<'GO'
package main

import (
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/alicebob/miniredis/v2"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:6379", "listen address")
	flag.Parse()
	m := miniredis.NewMiniRedis()
	if password := os.Getenv("REDIS_PASSWORD"); password != "" {
		m.RequireAuth(password)
	}
	if err := m.StartAddr(*addr); err != nil {
		log.Fatal(err)
	}
	log.Printf("redis (miniredis) listening on %s", m.Addr())
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
	m.Close()
}
GO
  go get "github.com/alicebob/miniredis/v2@$MINIREDIS_VERSION"
  go mod tidy
  go build -ldflags "-s -w" -o "$1/redis-server" .
}

build_gatewayapi() {
  # The module zip carries the CRDs; nothing is compiled.
  go mod init chatops-env/gatewayapi >/dev/null 2>&1
  go mod download "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION"
  local mod
  mod="$(go env GOMODCACHE)/sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION"
  local f
  for f in "$mod"/config/crd/standard/*.yaml; do echo "---"; cat "$f"; done >"$1/gateway-api-standard.yaml"
}

build_traefik() {
  # `go install` refuses traefik (its go.mod has replace directives): build its main package
  # inside a writable copy of the downloaded module, resolving what its go.mod leaves open.
  go mod init chatops-env/traefik >/dev/null 2>&1
  local mod r
  mod=$(go mod download -json "github.com/traefik/traefik/v3@$TRAEFIK_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  cp -r "$mod" traefik && chmod -R u+w traefik && cd traefik
  # A nested module (an extension point of empty types) is left out of the module zip and
  # is not on the proxy: give the replace directive the empty package it points to.
  local ext=pkg/config/dynamic/ext
  if grep -q "=> ./$ext" go.mod && [ ! -f "$ext/go.mod" ]; then
    mkdir -p "$ext"
    printf '%s\n' 'module github.com/traefik/traefik/dynamic/ext' '' 'go 1.24.0' >"$ext/go.mod"
    printf '%s\n' '// Package ext holds extension points of the dynamic configuration (none here).' \
      'package ext' '' 'type HTTP struct{}' '' 'type Router struct{}' >"$ext/ext.go"
  fi
  for r in $TRAEFIK_REPLACES; do go mod edit -replace "$r"; done
  log "traefik: go build ./cmd/traefik (niced)"
  GOFLAGS="$GOFLAGS -mod=mod" nice go build \
    -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION" \
    -o "$1/traefik" ./cmd/traefik
}

build_prometheus() {
  # Debian's prometheus is built without Kubernetes service discovery, which the
  # environment needs (role pod, as on a real cluster). Prometheus' Go module is
  # github.com/prometheus/prometheus v0.<minor>.<patch> for 2.<minor>.<patch>. Built in a
  # writable copy of its module directory with only the Kubernetes discovery plugin (the
  # cloud SDKs of the others would triple the build), and without the React UI (no
  # `builtinassets` tag: the API, which is all the tests use, is there).
  local module="github.com/prometheus/prometheus" version="v0.${PROMETHEUS_VERSION#v2.}"
  go mod download "$module@$version"
  cp -r "$(go env GOMODCACHE)/$module@$version/." . && chmod -R u+w .
  printf '%s\n' '// Rewritten by chatops env/build.sh: Kubernetes discovery only (and minimum.go).' \
    '' 'package plugins' '' 'import _ "github.com/prometheus/prometheus/discovery/kubernetes"' \
    >plugins/plugins.go
  # Discovery hands new targets to the scrape manager every 5 s (hard-coded); 1 s here,
  # so a new pod is scraped a second or two after it is Ready (see README: a real
  # cluster's Prometheus takes up to 5 s more, which `initialDelay` covers).
  sed -i 's/updatert:    5 \* time.Second/updatert:    1 * time.Second/' discovery/manager.go
  grep -q 'updatert:    1 \* time.Second' discovery/manager.go
  local pkg=github.com/prometheus/common/version
  GOFLAGS="$GOFLAGS -mod=mod" nice go build \
    -ldflags "-s -w -X $pkg.Version=${PROMETHEUS_VERSION#v} -X $pkg.Branch=release" \
    -o "$1/prometheus" ./cmd/prometheus
}

build_promtool() {
  # promtool, from the same module as prometheus and with the same Kubernetes-only
  # plugins: `promtool test rules` runs the cost and drain-gate queries on Prometheus' own
  # engine over series shaped as the label contract gives them (tests/e2e).
  local module="github.com/prometheus/prometheus" version="v0.${PROMETHEUS_VERSION#v2.}"
  go mod download "$module@$version"
  cp -r "$(go env GOMODCACHE)/$module@$version/." . && chmod -R u+w .
  printf '%s\n' '// Rewritten by chatops env/build.sh: Kubernetes discovery only (and minimum.go).' \
    '' 'package plugins' '' 'import _ "github.com/prometheus/prometheus/discovery/kubernetes"' \
    >plugins/plugins.go
  local pkg=github.com/prometheus/common/version
  GOFLAGS="$GOFLAGS -mod=mod" nice go build \
    -ldflags "-s -w -X $pkg.Version=${PROMETHEUS_VERSION#v} -X $pkg.Branch=release" \
    -o "$1/promtool" ./cmd/promtool
}

build_flagger() {
  # A peer of the side-by-side benchmark (bench/sidebyside.py), run out of cluster. The
  # proxy's version list stops at v1.36.1 but the tag resolves; its CRDs are in the module.
  GOBIN=$1 nice go install "github.com/fluxcd/flagger/cmd/flagger@$FLAGGER_VERSION"
  cp "$(go env GOMODCACHE)/github.com/fluxcd/flagger@$FLAGGER_VERSION/kustomize/base/flagger/crd.yaml" \
    "$1/flagger-crds.yaml"
}

argo_module() {
  # A writable copy of Argo Rollouts' module in ./argo-rollouts (it needs a newer Go than
  # the machine's: GOTOOLCHAIN fetches it from the proxy).
  local mod
  mod=$(go mod download -json "github.com/argoproj/argo-rollouts@$ARGO_ROLLOUTS_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  cp -r "$mod" argo-rollouts && chmod -R u+w argo-rollouts
}

build_argo_rollouts() {
  # The other peer of the side-by-side benchmark: the controller and its CRDs.
  export GOTOOLCHAIN=$ARGO_GO_TOOLCHAIN
  argo_module && cd argo-rollouts
  GOFLAGS="$GOFLAGS -mod=mod" nice go build -ldflags "-s -w" -o "$1/rollouts-controller" ./cmd/rollouts-controller
  local f
  for f in manifests/crds/*-crd.yaml; do echo "---"; cat "$f"; done >"$1/argo-rollouts-crds.yaml"
}

build_argo_gatewayapi_plugin() {
  # The upstream Gateway API traffic plugin is refused by the proxy: the benchmark's own
  # (bench/argo-gatewayapi-plugin), built inside Argo's module on its plugin RPC package.
  export GOTOOLCHAIN=$ARGO_GO_TOOLCHAIN
  argo_module && cd argo-rollouts
  mkdir -p cmd/chatops-gatewayapi-plugin
  cp "$here/../bench/argo-gatewayapi-plugin/"*.go cmd/chatops-gatewayapi-plugin/
  GOFLAGS="$GOFLAGS -mod=mod" nice go build -ldflags "-s -w" -o "$1/gatewayapi-plugin" ./cmd/chatops-gatewayapi-plugin
}

install_containers() {
  # The image is built and run without a Docker engine: Debian's buildah builds the
  # Dockerfile, runc runs the built image (tests/e2e/test_image.py), mmdebstrap makes the
  # Python base the build starts from. Debian packages, checked each time (not cached).
  local tool missing=()
  for tool in buildah runc mmdebstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  [ ${#missing[@]} -eq 0 ] && return
  log "containers: apt-get install ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then echo "as root: apt-get install -y ${missing[*]}" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${missing[@]}" >&2 ||
    { apt-get update -q >&2 && apt-get install -y -q "${missing[@]}" >&2; }
}

build_pythonbase() {
  # The base image of a build without a registry (env/image.sh): Debian's Python from
  # Debian packages, as a root filesystem tarball. Only what a run and the builder stage
  # need: the essential set (a shell and coreutils for the builder's RUN), python3 with
  # venv (its bundled pip wheel installs the wheels), tzdata (schedules' time zones). Not:
  # apt, documentation, locales, glibc's iconv modules (Python has its own codecs), perl
  # (bookworm's usrmerge pulls it in; only dpkg's scripts use it, and dpkg is done once
  # the tree is made). dpkg's database stays, so image scanners see every package.
  install_containers
  local root=$PWD/root
  local excludes=('/usr/share/doc/*' '/usr/share/man/*' '/usr/share/info/*'
    '/usr/share/locale/*' '/usr/lib/*/gconv/*')
  mmdebstrap --variant=essential --include=python3,python3-venv,tzdata \
    --aptopt='APT::Install-Recommends "false"' \
    "${excludes[@]/#/--dpkgopt=path-exclude=}" "$PYTHON_BASE_SUITE" "$root"
  chroot "$root" dpkg-query -W -f '${Package}\n' | grep -E 'perl|^usrmerge$' |
    xargs chroot "$root" dpkg --purge --force-remove-essential --force-depends >&2
  rm -rf "$root"/var/cache/* "$root"/var/log/* "$root"/var/lib/apt/lists/*
  tar -C "$root" --numeric-owner -cf "$1/python-base.tar" .
  rm -rf "$root"
}

plugin_hash() { cat "$here/../bench/argo-gatewayapi-plugin/"*.go | sha256sum | cut -c1-8; }

main() {
  local part
  for part in ${*:-k8s etcd kwok ferretdb mongotools bsondump helm redis gatewayapi prometheus promtool traefik containers pythonbase}; do
    case $part in
      k8s) done_or_build k8s "$K8S_VERSION" build_k8s ;;
      etcd) done_or_build etcd "$ETCD_VERSION" build_etcd ;;
      kwok) done_or_build kwok "$KWOK_VERSION" build_kwok ;;
      ferretdb) done_or_build ferretdb "$FERRETDB_VERSION" build_ferretdb ;;
      mongotools) done_or_build mongotools "$MONGO_TOOLS_VERSION" build_mongotools ;;
      bsondump) done_or_build bsondump "$MONGO_TOOLS_VERSION" build_bsondump ;;
      helm) done_or_build helm "$HELM_VERSION" build_helm ;;
      redis) done_or_build redis "$MINIREDIS_VERSION" build_redis ;;
      gatewayapi) done_or_build gatewayapi "$GATEWAY_API_VERSION" build_gatewayapi ;;
      prometheus) done_or_build prometheus "$PROMETHEUS_VERSION" build_prometheus ;;
      promtool) done_or_build promtool "$PROMETHEUS_VERSION" build_promtool ;;
      traefik) done_or_build traefik "$TRAEFIK_VERSION" build_traefik ;;
      flagger) done_or_build flagger "$FLAGGER_VERSION" build_flagger ;;
      argo-rollouts) done_or_build argo-rollouts "$ARGO_ROLLOUTS_VERSION" build_argo_rollouts ;;
      argo-gatewayapi-plugin)
        done_or_build argo-gatewayapi-plugin "$ARGO_ROLLOUTS_VERSION-$(plugin_hash)" build_argo_gatewayapi_plugin ;;
      containers) install_containers ;;
      pythonbase) done_or_build pythonbase "$PYTHON_BASE_VERSION" build_pythonbase ;;
      *) echo "unknown part: $part" >&2; exit 2 ;;
    esac
  done
}

main "$@"; exit
