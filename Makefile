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

# A real kube-apiserver for the Kubernetes source's tests (internal/k8stest),
# built once from k8s.io/kubernetes at the release of the client-go that
# go.mod pins (v0.X.Y -> v1.X.Y). Its module is published without the
# ./staging modules it replaces itself with, so the build drops those
# replaces and requires the published k8s.io/* modules of the same release.
# Built only when absent (delete it after moving client-go to a new release).
KUBE_APISERVER := bin/kube-apiserver

.PHONY: all build test test-nocgo hubble kube-apiserver test-short fuzz faults demo bench soak deps-soak generate generate-schemas generate-bpf generate-check lint cross deps-test deps-bpf clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/flowbus

## demo: the main job on the embedded default bus (no services to install).
demo: build
	./$(BIN) demo

## test: every test. Privileged tests (BPF, netns) run as root and skip with a reason otherwise.
test: deps-test $(HUBBLE_CLI) $(KUBE_APISERVER)
	$(GO) vet ./...
	@# the pure-Go (klauspost) zstd files must keep building for CGO_ENABLED=0 agents
	CGO_ENABLED=0 $(GO) build ./agent/... ./schemas/... ./internal/flowcodec/...
	@fmt=$$(gofmt -l $$(git ls-files '*.go' | grep -v '_bpfel.go$$')); \
	  if [ -n "$$fmt" ]; then echo "gofmt would change:"; echo "$$fmt"; exit 1; fi
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	@$(MAKE) --no-print-directory test-nocgo
	@$(MAKE) --no-print-directory fuzz

## fuzz: each fuzz target of the L7 parsers and their stream tracker for FUZZTIME (the seed corpora run in
## every go test; this explores beyond them). A failure leaves its input in
## the package's testdata/fuzz/, to commit with the fix.
# A number of executions, not a duration: a duration's deadline can end a
# fuzz run as a failure ("context deadline exceeded") while a worker is busy
# under load, with no crasher. 100000 executions take ~5-15 s a target here.
FUZZTIME ?= 100000x
fuzz:
	@set -e; for p in $$($(GO) list ./agent/l7/...); do \
	  for f in $$(grep -hos '^func Fuzz[A-Za-z0-9_]*' $$($(GO) list -f '{{range .TestGoFiles}}{{$$.Dir}}/{{.}} {{end}}' $$p) | cut -d' ' -f2); do \
	    echo "fuzz $$p $$f ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$p; \
	  done; \
	done

## test-nocgo: what a build without cgo serves (every macOS and Windows binary
## made by cross-compiling is one): observe, relay, and the demo, which says
## why it has no DuckDB table, tested in such a build.
test-nocgo:
	CGO_ENABLED=0 $(GO) test -count=1 ./internal/observer/... ./aggregator/relay/ ./aggregator/report/
	CGO_ENABLED=0 $(GO) test -count=1 -run 'Observe|Relay|HubbleCLI|Demo' ./cmd/flowbus/

test-short:
	$(GO) test -short -count=1 ./...

## faults: the fault tests alone (each is also in make test): the bus down and back
## (NATS and Kafka: agent spool and replay, producers and consumers across broker
## restarts; 60 s here, 8-10 s in make test), aggregators crashing in-process and
## SIGKILLed as processes (exact DuckDB totals, Kafka static membership), the agent
## SIGKILLed and restarted, a full Parquet disk and a full spool disk (tmpfs, as root),
## two agents' clocks 5 minutes apart, a slow aggregator and a slow bus link, corrupt
## messages and spool segments, the HEC collector down, the relay and the Hubble source
## across restarts. Privileged cases skip without root.
FAULT_TESTS := Outage|Crash|SIGKILL|FullDisk|SpoolFull|Skew|SlowConsumer|Corrupt|Restart|HECDown|HECOutage|Readmits|ServerRestart|BrokerRestart
faults:
	FLOWBUS_FAULTS_FULL=1 $(GO) test -count=1 -timeout 30m -run '$(FAULT_TESTS)' ./agent/... ./aggregator/... ./sinks/... ./internal/... ./cmd/flowbus/

## bench: every benchmark and whole-process measurement, beside their baselines, and
## bench/RESULTS.md rewritten from their output (bench/mkresults: the groups, their
## -count and -benchtime, the targets). The privileged groups (bpf, socket LB, the lab's
## agent) run as root under /tmp/flowbus-priv.lock, else their tables say "needs root".
## BENCHFLAGS: e.g. -groups 'codec|l7' -o /tmp/r.md to run a few groups.
BENCHFLAGS ?=
bench:
	$(GO) run ./bench/mkresults $(BENCHFLAGS)

## soak: 30 minutes at 10k Hubble flow records/s through the real agent (hubble-json on its
## stdin, paced), a NATS server in its own process (Debian's nats-server, installed when
## missing; else the embedded one) and the real aggregator writing Parquet; samples RSS,
## CPU, goroutines, bus lag and spool every 10 s and writes bench/soak.csv, the plots
## bench/soak-{rss,cpu,goroutines,lag,spool,load}.png and bench/soak.md (the RSS slope after
## the 5-minute warm-up in MB/h, the means and maxima, the exact totals: every flow
## written is in the Parquet, or it fails). SOAK_FLAGS adds flags (-duration 1m).
SOAK_FLAGS ?=
soak: build deps-soak
	$(GO) run ./bench/soak -flowbus $(BIN) -out bench $(SOAK_FLAGS)
	@echo "soak: bench/soak.md, bench/soak.csv, bench/soak-*.png"

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
	  command -v etcd >/dev/null || missing="$$missing etcd-server"; \
	  command -v ip >/dev/null || missing="$$missing iproute2"; \
	  command -v protoc >/dev/null || missing="$$missing protobuf-compiler"; \
	  command -v grpc_python_plugin >/dev/null || missing="$$missing protobuf-compiler-grpc"; \
	  /usr/bin/python3 -c 'import grpc, google.protobuf' 2>/dev/null || missing="$$missing python3-grpcio python3-protobuf"; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ]; then echo "installing:$$missing"; $(APT_GET) update -qq && $(APT_GET) install -y -qq $$missing >/dev/null; \
	    else echo "missing:$$missing (tests that need them will skip; install them as root)"; fi; \
	  fi

deps-soak:
	@if ! command -v nats-server >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then echo "installing: nats-server"; $(APT_GET) update -qq && $(APT_GET) install -y -qq nats-server >/dev/null; \
	  else echo "missing: nats-server (the soak runs the embedded server in a process of its own; install it as root)"; fi; \
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

kube-apiserver: $(KUBE_APISERVER)

$(KUBE_APISERVER):
	@v=$$($(GO) list -m -f '{{.Version}}' k8s.io/client-go) && kv=v1$${v#v0} && \
	  echo "building kube-apiserver from k8s.io/kubernetes@$$kv with k8s.io/* $$v (test API server; once: about 5 minutes on 2 cores with a cold build cache)" && \
	  GOWORK=off $(GO) mod download k8s.io/kubernetes@$$kv && \
	  src=$$(mktemp -d) && cp -r "$$($(GO) env GOMODCACHE)/k8s.io/kubernetes@$$kv/." "$$src" && chmod -R u+w "$$src" && \
	  (cd "$$src" && rm -f go.work go.work.sum && rm -rf vendor && \
	    for m in $$(sed -n 's,^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*,\1,p' go.mod); do echo "-dropreplace=$$m"; done > edits && \
	    for m in $$(sed -n 's,^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]v0\.0\.0$$,\1,p' go.mod); do echo "-require=$$m@$$v"; done >> edits && \
	    GOWORK=off $(GO) mod edit $$(cat edits) && \
	    echo "  resolving modules" && GOWORK=off GOFLAGS=-mod=mod $(GO) mod download && \
	    echo "  compiling ./cmd/kube-apiserver" && \
	    GOWORK=off GOFLAGS=-mod=mod $(GO) build -trimpath -o "$(CURDIR)/$(KUBE_APISERVER)" \
	      -ldflags "-X k8s.io/component-base/version.gitVersion=$$kv -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$$(echo $$v | cut -d. -f2)" \
	      ./cmd/kube-apiserver); \
	  rc=$$?; rm -rf "$$src"; \
	  if [ $$rc != 0 ]; then echo "WARNING: could not build kube-apiserver: the tests against a real API server will skip"; \
	  else echo "built $(KUBE_APISERVER)"; fi

clean:
	rm -rf bin flowbus-data
