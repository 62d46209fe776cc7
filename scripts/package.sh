#!/bin/bash
# Builds the leaf .deb and .rpm into ${1:-bin/pkg}: leafd and leaf
# (static, stripped), shell completions, the systemd unit, sysusers and
# tmpfiles entries, the default config. nfpm is a Go module run with
# `go run` at a pinned version: nothing to install.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${1:-bin/pkg}")
NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0
export LEAF_VERSION=${LEAF_VERSION:-0.0.0~git$(git rev-parse --short HEAD)}
export LEAF_ARCH=${LEAF_ARCH:-$(go env GOARCH)}
LEAF_BIN=$OUT/build
rm -rf "$LEAF_BIN" "$OUT/packaging"
mkdir -p "$LEAF_BIN/completions"
cp -r packaging "$OUT/"
ldflags="-s -w -X github.com/leaf-ebpf/leaf/internal/version.Version=$LEAF_VERSION"
CGO_ENABLED=0 GOARCH=$LEAF_ARCH go build -trimpath -ldflags "$ldflags" -o "$LEAF_BIN/" ./cmd/leafd ./cmd/leaf
"$LEAF_BIN/leaf" completion bash >"$LEAF_BIN/completions/leaf.bash"
"$LEAF_BIN/leaf" completion zsh >"$LEAF_BIN/completions/_leaf"
"$LEAF_BIN/leaf" completion fish >"$LEAF_BIN/completions/leaf.fish"
for p in deb rpm; do
	(cd "$OUT" && go run "$NFPM" package --config packaging/nfpm.yaml --packager "$p" --target "$OUT/")
done
ls -l "$OUT"/*.deb "$OUT"/*.rpm
