#!/usr/bin/env bash
# Builds kube-apiserver from the Go module proxy into the leaf cache
# directory, once, for the Kubernetes tests (they start a real API server
# against Debian's etcd). k8s.io/kubernetes replaces its staging modules
# with local folders that its module zip lacks, so a throwaway module
# requires it and points each staging module at its published release of
# the same minor version. About 9 minutes and 2 GB of memory on 2 cores.
set -euo pipefail
KUBE_VERSION=${KUBE_VERSION:-v1.34.3}
STAGING_VERSION=v0.${KUBE_VERSION#v1.}
out="${XDG_CACHE_HOME:-$HOME/.cache}/leaf/kube-apiserver-$KUBE_VERSION"
[ -x "$out/kube-apiserver" ] && exit 0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export GOFLAGS=-mod=mod
cat > go.mod <<MOD
module leaf.local/kubeapiserver

go 1.24
MOD
cat > tools.go <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
go mod edit -require="k8s.io/kubernetes@$KUBE_VERSION"
# The staging modules are the ones k8s.io/kubernetes's go.mod replaces
# with ./staging/src/k8s.io/X; read them from that go.mod.
gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
for m in $(sed -n 's#^\s*\(k8s.io/[^ ]*\) => ./staging/src/.*#\1#p' "$gomod"); do
	go mod edit -replace="$m=$m@$STAGING_VERSION"
done
go mod tidy >/dev/null
mkdir -p "$out.tmp"
nice -n 19 go build -p 1 -trimpath -o "$out.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
mv "$out.tmp" "$out"
echo "built $out/kube-apiserver"
