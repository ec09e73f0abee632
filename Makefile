# flowbus — the two commands a newcomer runs are `make demo` and `make test`.
#
# Everything the tests need from Debian (kcat as an independent Kafka client,
# protoc + grpcio to generate and run Hubble's Python stubs against our
# Observer API, iproute2 for the netns lab, clang/llvm/libbpf for
# `make generate`) is
# installed by the deps targets, only when missing.

GO        ?= go
BIN       ?= bin/flowbus
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
TEST_TIMEOUT ?= 19m

# Pinned eBPF toolchain: bpf2go runs clang-19 with these flags.
export BPF2GO_CC     := clang-19
export BPF2GO_STRIP  := llvm-strip-19
export BPF2GO_CFLAGS := -O2 -g -Wall -Werror -Wpadded -mcpu=v3

APT_GET := DEBIAN_FRONTEND=noninteractive apt-get

# The real hubble CLI, built from cilium's own source at the version go.mod
# pins, as an independent client for the Observer API tests (bin/hubble).
HUBBLE_CLI := bin/hubble

.PHONY: all build test test-nocgo hubble test-short demo bench generate generate-schemas generate-bpf generate-check lint cross deps-test deps-bpf clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/flowbus

## demo: the main job on the embedded default bus (no services to install).
demo: build
	./$(BIN) demo

## test: every test. Privileged tests (BPF, netns) run as root and skip with a reason otherwise.
test: deps-test $(HUBBLE_CLI)
	$(GO) vet ./...
	@# the pure-Go (klauspost) zstd files must keep building for CGO_ENABLED=0 agents
	CGO_ENABLED=0 $(GO) build ./agent/... ./schemas/... ./internal/flowcodec/...
	@fmt=$$(gofmt -l $$(git ls-files '*.go' | grep -v '_bpfel.go$$')); \
	  if [ -n "$$fmt" ]; then echo "gofmt would change:"; echo "$$fmt"; exit 1; fi
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	@$(MAKE) --no-print-directory test-nocgo

## test-nocgo: what a build without cgo serves (every macOS and Windows binary
## made by cross-compiling is one): observe, relay, and the demo, which says
## why it has no DuckDB table, tested in such a build.
test-nocgo:
	CGO_ENABLED=0 $(GO) test -count=1 ./internal/observer/... ./aggregator/relay/ ./aggregator/report/
	CGO_ENABLED=0 $(GO) test -count=1 -run 'Observe|Relay|HubbleCLI|Demo' ./cmd/flowbus/

test-short:
	$(GO) test -short -count=1 ./...

## bench: benchmarks of every hot path beside their baselines (see bench/RESULTS.md).
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./schemas/... ./internal/flowcodec/ ./bench/ ./aggregator/... ./agent/...
	@if [ "$$(id -u)" = 0 ]; then $(GO) test -run '^$$' -bench . ./bpf/; else echo "bpf benchmarks need root: skipped"; fi

## generate: rewrite all committed generated code: generate-schemas, then generate-bpf.
generate: generate-schemas generate-bpf

## generate-schemas: the per-column code of flow.v1 (codec, FlowRow, README table)
## from its declaration, schemas.Flow (internal/gencols; Go only, no clang).
generate-schemas:
	$(GO) generate ./schemas/...

## generate-bpf: rebuild the eBPF objects and bpf2go bindings (needs clang-19).
generate-bpf: deps-bpf
	$(GO) generate ./bpf/...

## generate-check: regenerate and fail if the committed output differs.
generate-check: generate
	git diff --exit-code -- bpf/ schemas/ internal/flowcodec/

## lint: gofmt, go vet and staticcheck (the version go.mod pins; checks in
## staticcheck.conf), then the cross builds. CI runs it before the tests.
lint:
	@fmt=$$(gofmt -l $$(git ls-files '*.go' | grep -v '_bpfel.go$$')); \
	  if [ -n "$$fmt" ]; then echo "gofmt would change:"; echo "$$fmt"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	@$(MAKE) --no-print-directory cross

## cross: flowbus and every package for macOS and Windows (go build of many
## packages links the binary and discards it), then go vet of the macOS build
## with its tests. Cross-compiling turns cgo off: no DuckDB (the demo's L7
## table), pure-Go zstd; the eBPF source and the lab say they need Linux.
CROSS ?= darwin/arm64 darwin/amd64 windows/amd64
cross:
	@set -e; for p in $(CROSS); do \
	  echo "GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build ./..."; \
	  GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build ./...; \
	done
	GOOS=darwin $(GO) vet ./...

# Install only what is missing; apt-get update only when something is.
deps-test:
	@missing=""; \
	  command -v kcat >/dev/null || missing="$$missing kcat"; \
	  command -v ip >/dev/null || missing="$$missing iproute2"; \
	  command -v protoc >/dev/null || missing="$$missing protobuf-compiler"; \
	  command -v grpc_python_plugin >/dev/null || missing="$$missing protobuf-compiler-grpc"; \
	  /usr/bin/python3 -c 'import grpc, google.protobuf' 2>/dev/null || missing="$$missing python3-grpcio python3-protobuf"; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ]; then echo "installing:$$missing"; $(APT_GET) update -qq && $(APT_GET) install -y -qq $$missing >/dev/null; \
	    else echo "missing:$$missing (tests that need them will skip; install them as root)"; fi; \
	  fi

deps-bpf:
	@missing=""; \
	  command -v clang-19 >/dev/null || missing="$$missing clang-19"; \
	  command -v llvm-strip-19 >/dev/null || missing="$$missing llvm-19"; \
	  [ -e /usr/include/bpf/bpf_helpers.h ] || missing="$$missing libbpf-dev"; \
	  if [ -n "$$missing" ]; then echo "installing:$$missing"; $(APT_GET) update -qq && $(APT_GET) install -y -qq $$missing >/dev/null; fi

hubble: $(HUBBLE_CLI)

$(HUBBLE_CLI): go.mod
	@v=$$($(GO) list -m -f '{{.Version}}' github.com/cilium/cilium) && \
	  echo "building the real hubble CLI from github.com/cilium/cilium@$$v (test client; once)" && \
	  $(GO) mod download github.com/cilium/cilium && \
	  src=$$(mktemp -d) && cp -r "$$($(GO) env GOMODCACHE)/github.com/cilium/cilium@$$v/." "$$src" && chmod -R u+w "$$src" && \
	  (cd "$$src" && GOFLAGS=-mod=mod $(GO) build -o "$(CURDIR)/$(HUBBLE_CLI)" ./hubble) >/dev/null; \
	  rc=$$?; rm -rf "$$src"; \
	  if [ $$rc != 0 ]; then echo "WARNING: could not build the hubble CLI: the tests against it will skip"; fi

clean:
	rm -rf bin flowbus-data
