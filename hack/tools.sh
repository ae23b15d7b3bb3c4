#!/usr/bin/env bash
# Builds the tools podid's build and tests need into bin/, from the Go module
# proxy at pinned versions. Each tool is built once per pin into a cache outside
# the work tree (PODID_TOOLS_CACHE, default ~/.cache/podid-tools/<key>), so a
# fresh clone only copies it; changing a pin changes the key and rebuilds.
#
#   hack/tools.sh            build or copy every tool
#   hack/tools.sh NAME...    only these (kube, kubectl, node, containerd, coredns,
#                            controller-gen, minio, helm, promtool)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/bin"
cache="${PODID_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/podid-tools}"
mkdir -p "$bin" "$cache"

# Pins of the tools installed with `go install module@version`.
CONTROLLER_TOOLS_VERSION=v0.23.0
# MinIO has no semver tags; this is the proxy's @latest, a real third-party STS
# and S3 for the interop tests.
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
# Helm, for `helm lint` and rendering the chart in its golden tests.
HELM_VERSION=v3.22.0
# promtool, for the unit tests of the chart's alerting rules.
PROMETHEUS_VERSION=v0.316.0

gover=$(go env GOVERSION)

# key NAME INPUTS... prints a cache key over the Go version and the inputs.
key() {
	local name=$1; shift
	{ echo "$gover"; printf '%s\n' "$@"; } | sha256sum | cut -c1-16 | sed "s/^/$name-/"
}

# place DIR FILES... copies built files from a cache dir into bin/ when they differ.
place() {
	local dir=$1; shift
	for f in "$@"; do
		if ! cmp -s "$dir/$f" "$bin/$f"; then
			cp "$dir/$f" "$bin/$f.tmp" && mv "$bin/$f.tmp" "$bin/$f"
		fi
	done
}

# kube-apiserver and etcd: the module in hack/tools/kube pins them.
tool_kube() {
	local mod="$root/hack/tools/kube"
	local kv; kv=$(awk '$1 == "k8s.io/kubernetes" { print $2 }' "$mod/go.mod")
	local minor; minor=$(echo "$kv" | cut -d. -f2)
	# Stamp the release into the binary, or it answers /version with v0.0.0-master.
	local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$kv -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
	local k; k=$(key kube "$ldflags" "$(cat "$mod/go.mod" "$mod/go.sum" "$mod/etcd/main.go")")
	local dir="$cache/$k"
	if [ ! -x "$dir/kube-apiserver" ] || [ ! -x "$dir/etcd" ]; then
		echo "tools: building kube-apiserver and etcd ($k); the first build takes about 5 minutes" >&2
		mkdir -p "$dir.tmp"
		(cd "$mod" && go build -trimpath -ldflags="$ldflags" -o "$dir.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)
		(cd "$mod" && go build -trimpath -ldflags='-s -w' -o "$dir.tmp/etcd" ./etcd)
		rm -rf "$dir" && mv "$dir.tmp" "$dir"
	fi
	place "$dir" kube-apiserver etcd
}

# module_build NAME MODDIR CGO LDFLAGS TAGS PKG...: builds each package of a
# tools module (hack/tools/MODDIR), cached by the module's pins. CGO is
# CGO_ENABLED's value, or "" for Go's default: the node's binaries take the
# default like kube-apiserver, so that they reuse its compiled packages.
module_build() {
	local name=$1 moddir=$2 cgo=$3 ldflags=$4 tags=$5; shift 5
	local mod="$root/hack/tools/$moddir"
	local k; k=$(key "$name" "cgo=$cgo" "$ldflags" "$tags" "$*" "$(cat "$mod"/go.mod "$mod"/go.sum "$mod"/*.go)")
	local dir="$cache/$k" files=() p
	# outname PKG: the binary's name; "." is the module's own main, named NAME.
	outname() { if [ "$1" = . ]; then echo "$name"; else basename "$1"; fi; }
	for p in "$@"; do files+=("$(outname "$p")"); done
	local missing=
	for f in "${files[@]}"; do [ -x "$dir/$f" ] || missing=1; done
	if [ -n "$missing" ]; then
		echo "tools: building ${files[*]} ($k)" >&2
		mkdir -p "$dir.tmp"
		for p in "$@"; do
			(cd "$mod" && CGO_ENABLED=${cgo:-$(go env CGO_ENABLED)} go build -trimpath -tags "$tags" -ldflags="$ldflags" -o "$dir.tmp/$(outname "$p")" "$p")
		done
		rm -rf "$dir" && mv "$dir.tmp" "$dir"
	fi
	place "$dir" "${files[@]}"
}

# The real node's kubelet, controllers and kube-proxy (test/harness/localnode), at
# kube-apiserver's release.
tool_node() {
	local kv; kv=$(awk '$1 == "k8s.io/kubernetes" { print $2 } $1 == "require" && $2 == "k8s.io/kubernetes" { print $3 }' "$root/hack/tools/node/go.mod")
	local minor; minor=$(echo "$kv" | cut -d. -f2)
	module_build node node "" "-s -w -X k8s.io/component-base/version.gitVersion=$kv -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean" "" \
		k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy
}

# kubectl, at kube-apiserver's release, for the tests that drive podid as
# users do (apply, explain, get).
tool_kubectl() {
	local kv; kv=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" { print $3 }' "$root/hack/tools/kubectl/go.mod")
	local minor; minor=$(echo "$kv" | cut -d. -f2)
	module_build kubectl kubectl "" "-s -w -X k8s.io/component-base/version.gitVersion=$kv -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$kv -X k8s.io/component-base/version.gitTreeState=clean" "" \
		k8s.io/kubernetes/cmd/kubectl
}

# containerd v2, its runc shim and ctr (runc and the CNI plugins are Debian's).
tool_containerd() {
	local v; v=$(awk '$1 == "github.com/containerd/containerd/v2" { print $2 } $1 == "require" && $2 == "github.com/containerd/containerd/v2" { print $3 }' "$root/hack/tools/containerd/go.mod")
	module_build containerd containerd 0 "-s -w -X github.com/containerd/containerd/v2/version.Version=$v" "no_btrfs no_devmapper no_zfs urfave_cli_no_docs" \
		github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
		github.com/containerd/containerd/v2/cmd/ctr
}

# CoreDNS with the plugins a cluster DNS needs (hack/tools/coredns/main.go).
tool_coredns() { module_build coredns coredns 0 "-s -w" "" .; }

# go_install NAME PACKAGE VERSION: a tool that `go install pkg@version` builds.
go_install() {
	local name=$1 pkg=$2 version=$3
	local k; k=$(key "$name" "$pkg@$version")
	local dir="$cache/$k"
	if [ ! -x "$dir/$name" ]; then
		echo "tools: building $name $version" >&2
		mkdir -p "$dir.tmp"
		GOBIN="$dir.tmp" go install -trimpath "$pkg@$version"
		rm -rf "$dir" && mv "$dir.tmp" "$dir"
	fi
	place "$dir" "$name"
}

tool_controller-gen() { go_install controller-gen sigs.k8s.io/controller-tools/cmd/controller-gen "$CONTROLLER_TOOLS_VERSION"; }
tool_minio() { go_install minio github.com/minio/minio "$MINIO_VERSION"; }
tool_helm() { go_install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"; }
tool_promtool() { go_install promtool github.com/prometheus/prometheus/cmd/promtool "$PROMETHEUS_VERSION"; }

tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(kube kubectl node containerd coredns controller-gen minio helm promtool)
for t in "${tools[@]}"; do
	if ! declare -F "tool_$t" >/dev/null; then
		echo "tools: unknown tool '$t' (known: kube kubectl node containerd coredns controller-gen minio helm promtool)" >&2
		exit 2
	fi
	"tool_$t"
done
