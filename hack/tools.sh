#!/usr/bin/env bash
# Builds the pinned tools the harness needs into bin/, each only when it is missing or of another version.
# Everything comes from the Go module proxy; nothing is downloaded from anywhere else.
#
#   hack/tools.sh [tool ...]     tools: kube-apiserver etcd kubectl restic rest-server versitygw controller-gen helm
#                                the one-node cluster's (make cluster-up): kubelet kube-controller-manager
#                                kube-scheduler kube-proxy kube-router
#
# A stamp file bin/.<tool>.version records what was built, so a version bump in this file rebuilds.
set -euo pipefail

KUBERNETES_VERSION=${KUBERNETES_VERSION:-v1.37.2}   # kube-apiserver, kubectl
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
RESTIC_VERSION=${RESTIC_VERSION:-v0.18.1}
REST_SERVER_VERSION=${REST_SERVER_VERSION:-v0.14.0}
VERSITYGW_VERSION=${VERSITYGW_VERSION:-v1.8.0}      # S3 server for the S3 repository specs (≈3 min to build)
CONTROLLER_TOOLS_VERSION=${CONTROLLER_TOOLS_VERSION:-v0.23.0}
HELM_VERSION=${HELM_VERSION:-v3.22.0}
# NetworkPolicy enforcer of the one-node cluster (iptables + ipset). The module proxy serves upstream
# github.com/cloudnativelabs/kube-router/v2 only at v2.1.0, which has reported security flaws; k3s' fork (the
# netpol controller k3s ships) is served at v2.6.3-k3s1, and its go.mod keeps the upstream module path.
KUBE_ROUTER_MODULE=${KUBE_ROUTER_MODULE:-github.com/k3s-io/kube-router/v2}
KUBE_ROUTER_VERSION=${KUBE_ROUTER_VERSION:-v2.6.3-k3s1}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/bin}
mkdir -p "$BIN"
export GOFLAGS=-buildvcs=false
export CGO_ENABLED=${CGO_ENABLED:-0}
export GOTOOLCHAIN=local

log() { printf '[tools] %s\n' "$*" >&2; }

# Throwaway directories, removed when the script exits however it exits.
TMPDIRS=()
cleanup() { [[ ${#TMPDIRS[@]} -eq 0 ]] || rm -rf "${TMPDIRS[@]}"; }
trap cleanup EXIT
scratch() { SCRATCH=$(mktemp -d); TMPDIRS+=("$SCRATCH"); }

# fresh <tool> <version>: true when bin/<tool> exists and was built at <version>.
fresh() { [[ -x "$BIN/$1" && -f "$BIN/.$1.version" && "$(cat "$BIN/.$1.version")" == "$2" ]]; }
stamp() { echo "$2" >"$BIN/.$1.version"; }

# k8s_wrapper <dir>: a throwaway module that requires k8s.io/kubernetes and replaces every staging module
# (which kubernetes' own go.mod points at ./staging/...) with its published v0.Y.Z release.
k8s_wrapper() {
  local dir=$1 minor=v0${KUBERNETES_VERSION#v1}
  local gomodcache; gomodcache=$(go env GOMODCACHE)
  (cd "$dir" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" >/dev/null)
  local kmod="$gomodcache/cache/download/k8s.io/kubernetes/@v/$KUBERNETES_VERSION.mod"
  {
    echo "module custos.io/hack/kubernetes-tools"
    echo
    echo "go $(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/')"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    echo "replace ("
    # Only the staging modules that are published at this version; the two sample-* modules are not and
    # are not needed by any binary we build.
    awk '/=> \.\/staging\/src\// {print $1}' "$kmod" | while read -r m; do
      case "$m" in k8s.io/sample-*) continue ;; esac
      echo "	$m => $m $minor"
    done
    echo ")"
  } >"$dir/go.mod"
}

KUBERNETES_TOOLS=(kube-apiserver kubectl kubelet kube-controller-manager kube-scheduler kube-proxy)

build_kubernetes() { # <tool>: one wrapper module and one dependency download for every Kubernetes binary.
  local want=() t
  for t in "$@"; do fresh "$t" "$KUBERNETES_VERSION" || want+=("$t"); done
  [[ ${#want[@]} -gt 0 ]] || return 0
  local dir; scratch; dir=$SCRATCH
  log "building ${want[*]} $KUBERNETES_VERSION (a few minutes on 2 cores)"
  k8s_wrapper "$dir"
  local pkgs=()
  for t in "${want[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$t@$KUBERNETES_VERSION"); done
  (cd "$dir" && go get "${pkgs[@]}")
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)"
  for t in "${want[@]}"; do
    (cd "$dir" && go build -trimpath -ldflags "$ld" -o "$BIN/$t" "k8s.io/kubernetes/cmd/$t")
    stamp "$t" "$KUBERNETES_VERSION"
  done
}

build_etcd() {
  fresh etcd "$ETCD_VERSION" && return 0
  local dir; scratch; dir=$SCRATCH
  log "building etcd $ETCD_VERSION"
  cat >"$dir/go.mod" <<MOD
module custos.io/hack/etcd-tools

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION

replace (
	go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/pkg/v3 => go.etcd.io/etcd/client/pkg/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/v3 => go.etcd.io/etcd/client/v3 $ETCD_VERSION
	go.etcd.io/etcd/pkg/v3 => go.etcd.io/etcd/pkg/v3 $ETCD_VERSION
)
MOD
  (cd "$dir" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" && go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3)
  stamp etcd "$ETCD_VERSION"
}

# in_module <tool> <module> <version> <package dir>: go build inside the module directory that
# `go mod download` fills (the proxy refuses `go install pkg@version` for modules with replace directives).
in_module() {
  local tool=$1 mod=$2 ver=$3 pkg=$4
  fresh "$tool" "$ver" && return 0
  log "building $tool $ver"
  local dir tmp; scratch; tmp=$SCRATCH
  dir=$(cd "$tmp" && go mod download -json "$mod@$ver" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -d "$dir" ]] || { log "go mod download $mod@$ver gave no directory"; return 1; }
  (cd "$dir" && GOFLAGS="$GOFLAGS -mod=mod" go build -trimpath -ldflags "-s -w" -o "$BIN/$tool" "$pkg")
  stamp "$tool" "$ver"
}

build() {
  case "$1" in
    kube-apiserver | kubectl | kubelet | kube-controller-manager | kube-scheduler | kube-proxy) build_kubernetes "$1" ;;
    kube-router) in_module kube-router "$KUBE_ROUTER_MODULE" "$KUBE_ROUTER_VERSION" ./cmd/kube-router ;;
    etcd) build_etcd ;;
    restic) in_module restic github.com/restic/restic "$RESTIC_VERSION" ./cmd/restic ;;
    rest-server) in_module rest-server github.com/restic/rest-server "$REST_SERVER_VERSION" ./cmd/rest-server ;;
    versitygw) in_module versitygw github.com/versity/versitygw "$VERSITYGW_VERSION" ./cmd/versitygw ;;
    controller-gen) in_module controller-gen sigs.k8s.io/controller-tools "$CONTROLLER_TOOLS_VERSION" ./cmd/controller-gen ;;
    helm) in_module helm helm.sh/helm/v3 "$HELM_VERSION" ./cmd/helm ;;
    *) log "unknown tool $1"; return 2 ;;
  esac
}

if [[ $# -eq 0 ]]; then set -- controller-gen etcd restic rest-server helm kube-apiserver kubectl; fi
# The Kubernetes binaries asked for are built together (one wrapper module, one `go get`); the rest one by one.
k8s=() others=()
for t in "$@"; do
  case " ${KUBERNETES_TOOLS[*]} " in *" $t "*) k8s+=("$t") ;; *) others+=("$t") ;; esac
done
[[ ${#k8s[@]} -eq 0 ]] || build_kubernetes "${k8s[@]}"
for t in "${others[@]}"; do build "$t"; done
