#!/usr/bin/env bash
# Installs what building, testing and the demo need and a fresh Debian 12
# machine lacks. Safe to run again: it only installs what is missing.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have clang-14      || need+=(clang-14)
have llvm-strip-14 || need+=(llvm-14)
have bpftool       || need+=(bpftool)
have ip            || need+=(iproute2)
have ping          || need+=(iputils-ping)
[ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
[ -f /usr/include/linux/bpf.h ]       || need+=(linux-libc-dev)
# xdp-tools ships BPF objects built by someone else (xdp-filter's); the
# chain tests run one, unmodified, in the middle of a chain.
ls /usr/lib/*/bpf/xdpfilt_alw_all.o >/dev/null 2>&1 || need+=(xdp-tools)
# etcd backs the real kube-apiserver the Kubernetes tests start.
have etcd          || need+=(etcd-server)
# Debian's docker-registry is distribution 2.8 (no referrers API): the
# registry tests run it on loopback with a generated config.
[ -x /usr/bin/docker-registry ] || need+=(docker-registry)
# The console's browser test: Debian's Chromium driven by playwright-core
# (npm); promtool for the alerting rules; dpkg, rpm and systemd-analyze
# for the package test.
[ -x /usr/bin/chromium ] || need+=(chromium)
have node          || need+=(nodejs)
have npm           || need+=(npm)
have promtool      || need+=(prometheus)
have rpm           || need+=(rpm)
have systemd-analyze || need+=(systemd)
# The package library's tests and leafbench firewall: tshark and text2pcap
# decode the exported IPFIX; iptables-legacy and nft hold the rule sets
# the firewall is compared with (in throwaway namespaces only).
have tshark          || need+=(tshark)
have text2pcap       || need+=(wireshark-common)
have iptables-legacy || need+=(iptables)
have nft             || need+=(nftables)
# The doc test runs the docs' sh blocks with dash; the demo test runs
# make demo on a terminal through script(1).
have dash            || need+=(dash)
have script          || need+=(bsdutils)

if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "missing packages: ${need[*]} (run as root to install them)" >&2
		exit 1
	fi
	echo "installing: ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v go >/dev/null || { echo "Go is required (see go.mod for the version)" >&2; exit 1; }

# cosign, for the signature interoperability tests (internal/signature,
# e2e): built once from the Go module proxy into the cache directory the
# tests look in (internal/testenv.Cosign), so they run rather than skip.
COSIGN_VERSION=v2.6.5
cosign_dir="${XDG_CACHE_HOME:-$HOME/.cache}/leaf/cosign-$COSIGN_VERSION"
if [ ! -x "$cosign_dir/cosign" ]; then
	echo "building cosign $COSIGN_VERSION (a few minutes, once)"
	(cd /tmp && GOFLAGS= GOBIN="$cosign_dir" go install "github.com/sigstore/cosign/v2/cmd/cosign@$COSIGN_VERSION") ||
		echo "warning: cosign could not be built; the cosign interoperability tests will skip, saying so" >&2
fi

# kube-apiserver, for the Kubernetes tests (internal/kube/...): built once
# from the Go module proxy into the cache directory they look in
# (internal/kube/kubetest), about 10 minutes and 2 GB the first time.
"$(dirname "$0")/build-kube-apiserver.sh" ||
	echo "warning: kube-apiserver could not be built; the Kubernetes tests will skip, saying so" >&2
# playwright-core for the console's browser test (e2e/console, locked by
# its package-lock.json); it drives /usr/bin/chromium and never downloads
# a browser.
if [ ! -d "$(dirname "$0")/../e2e/console/node_modules/playwright-core" ]; then
	(cd "$(dirname "$0")/../e2e/console" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund) ||
		echo "warning: npm ci failed; the console browser test will skip, saying so" >&2
fi
