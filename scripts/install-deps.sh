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
