# leaf — build, generate, test, demo. See README.md.
SHELL := /bin/bash
GO ?= go
# The BPF toolchain is pinned: objects are committed and must regenerate
# byte for byte, which only holds for one compiler version.
CLANG ?= clang-14
STRIP ?= llvm-strip-14
ARCH_INCLUDE := /usr/include/$(shell uname -m)-linux-gnu
BPF_CFLAGS := -O2 -g -target bpf -Wall -Werror -fno-ident \
	-fdebug-prefix-map=$(CURDIR)=. -I$(ARCH_INCLUDE)

BPF_SOURCES := $(wildcard packages/*/*.bpf.c examples/*/*.bpf.c testdata/packages/*/*.bpf.c testdata/l3af/*/*.bpf.c testdata/chain/*.bpf.c bench/bpf/*.bpf.c)
BPF_OBJECTS := $(BPF_SOURCES:.c=.o)
# Shared headers (the packet-parsing prologue): every object is rebuilt
# when one changes.
BPF_HEADERS := $(wildcard packages/include/*.h)
BIN := bin

.PHONY: all build docs package generate crds check-generate test vet fmt-check demo bench clean deps cross-build bench-kube

all: build

deps:
	@scripts/install-deps.sh

# leaf version / leafd --version / leaf_build_info report this.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X github.com/leaf-ebpf/leaf/internal/version.Version=$(VERSION)

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# Regenerates the config reference in docs/leafd.md from internal/config
# and leafd's flags (go test ./cmd/leafd fails while it is stale).
docs:
	$(GO) test ./cmd/leafd -run TestConfigReference -count=1 -update

# leaf is a client and package manager on Linux, macOS and Windows (leafd
# is Linux-only): build it for each, stripped, and show the sizes.
CROSS_OS := linux darwin windows
cross-build:
	@mkdir -p $(BIN)/cross
	@for os in $(CROSS_OS); do ext=; [ $$os = windows ] && ext=.exe; \
		GOOS=$$os GOARCH=amd64 CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w $(LDFLAGS)' -o $(BIN)/cross/leaf-$$os-amd64$$ext ./cmd/leaf || exit 1; done
	@ls -l $(BIN)/cross

# The .deb and .rpm (leafd, leaf, systemd unit, sysusers, tmpfiles,
# config, completions) into bin/pkg: docs/install.md.
package:
	scripts/package.sh bin/pkg

# Compile every BPF source to an object next to it, and write the CRDs
# from their Go types. Both are committed.
generate: $(BPF_OBJECTS) crds

crds:
	$(GO) run ./internal/kube/crdgen/cmd deploy/kubernetes/crds

%.bpf.o: %.bpf.c $(BPF_HEADERS)
	cd $(dir $<) && $(CLANG) $(BPF_CFLAGS) -c $(notdir $<) -o $(notdir $@)
	$(STRIP) -g $@

# Fails if the committed objects differ from what the sources produce.
check-generate:
	touch $(BPF_SOURCES)
	$(MAKE) --no-print-directory generate
	git diff --exit-code -- '*.bpf.o' || (echo "generated BPF objects are stale: run make generate" >&2; exit 1)
	git diff --exit-code -- deploy/kubernetes/crds || (echo "generated CRDs are stale: run make generate" >&2; exit 1)

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Every test, the real-kernel ones included. Needs root. Artefacts (the
# console's screenshots) land in bin/artifacts unless LEAF_TEST_ARTIFACTS
# names another directory.
test: deps fmt-check vet check-generate cross-build
	LEAF_TEST_ARTIFACTS=$${LEAF_TEST_ARTIFACTS:-$(CURDIR)/$(BIN)/artifacts} $(GO) test -race -count=1 -timeout 30m ./...

demo: deps build
	scripts/demo.sh

# Measures leafd on this machine, as root: apply latency (1 program, 50
# programs on 50 veths, no-op re-apply), idle RSS, binary sizes. It makes
# and removes its own namespaces, veths, bpffs and temporary directories.
# More runs: make bench BENCH_FLAGS='-runs 50'. The same applies as Go
# benchmarks: go test -run '^$' -bench . -benchtime 20x ./bench/
# Then the cost per packet of chains of 1, 2, 5 and 10 XDP members against
# one program doing the same work and an l3afd-style tail-call chain
# (BPF_PROG_TEST_RUN): leafbench chain, flags in CHAIN_FLAGS, Go benchmark
# go test -run '^$' -bench ChainCost -benchtime 1000000x ./bench/
# Then the cost per packet of each package in packages/, and the firewall
# against iptables and nftables at 10 to 100 000 rules (leafbench packages,
# leafbench firewall; a few minutes, in a throwaway network namespace).
# Figures and method: docs/benchmarks.md.
bench: deps
	$(GO) build -o $(BIN)/leafbench ./bench/cmd/leafbench
	$(BIN)/leafbench $(BENCH_FLAGS)
	$(BIN)/leafbench chain $(CHAIN_FLAGS)
	$(BIN)/leafbench packages
	$(BIN)/leafbench firewall

# The Kubernetes scale run (docs/kubernetes.md): 1000 agents with the
# kernel replaced by a recorder against one real API server.
bench-kube: deps
	$(GO) test -run '^$$' -bench Fleet -benchtime 1x -timeout 60m ./internal/kube/controller/ -fleet.agents $(or $(FLEET_AGENTS),1000)

clean:
	rm -rf $(BIN)
