# fibgate — `make help` lists the targets.
SHELL      := /bin/bash
# GO is the go command: the one on PATH, else the official tarball's
# /usr/local/go/bin/go, which sudo's secure_path leaves out. Without either,
# a target that needs Go stops with one line saying how to install it
# (README "Prerequisites"); targets that do not (help, deps) still run.
GO_VERSION := $(shell awk '$$1 == "go" {print $$2; exit}' go.mod)
GO         ?= $(shell command -v go 2>/dev/null || { test -x /usr/local/go/bin/go && echo /usr/local/go/bin/go; })
ifeq ($(strip $(GO)),)
GO          = $(error Go not found on PATH nor in /usr/local/go: install Go $(GO_VERSION) as root with curl -fsSL https://go.dev/dl/go$(GO_VERSION).linux-amd64.tar.gz | tar -C /usr/local -xz (README "Prerequisites"))
else
GO         := $(GO)
# The tests and the lab run go themselves (stock gobgpd is built from go.mod):
# they find the same one.
ifneq ($(filter /%,$(GO)),)
export PATH := $(patsubst %/,%,$(dir $(GO))):$(PATH)
endif
endif
BIN        ?= bin
NETNS      ?=
PKGS       := ./...
GOFLAGS    ?=
# Debian packages the tests need: iproute2 for namespaces, frr as the BGP
# neighbour that must not see a prefix too early, procps for sysctl, bird2
# as the full-table source and observer of the scale benchmark, gobgpd for
# Debian's GoBGP 3.10, the oldest release the sidecar e2e test runs fibgated
# against (its systemd unit starts nothing without /etc/gobgpd.conf).
APT_PKGS   := iproute2 frr procps bird2 gobgpd
# Debian packages of the netdevsim VM test (e2e/netdevsim): qemu boots the
# kernel, busybox-static fills the initramfs. Installed without their
# recommendations (qemu's bring a GUI).
APT_PKGS_VM := qemu-system-x86 busybox-static
# The netdevsim kernel: built by `make netdevsim-kernel` from Debian's
# source package (tinyconfig plus e2e/netdevsim/kernel.config.frag).
NETDEVSIM_KERNEL   ?= $(BIN)/netdevsim/bzImage
NETDEVSIM_SRC      := $(BIN)/netdevsim/linux-source-6.1
APT_PKGS_KERNEL    := linux-source-6.1 build-essential flex bison bc libelf-dev xz-utils
# Code generators for proto/, pinned and built from source into bin/tools
# (proto/buf.gen.yaml names them there). protoc-gen-go follows the
# google.golang.org/protobuf version in go.mod, so generated code always
# matches the runtime it is compiled against.
TOOLS      := $(CURDIR)/bin/tools
BUF_VERSION                := v1.75.0
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
# staticcheck, pinned and run with go run rather than as a go.mod tool: as
# a tool its dependencies (golang.org/x/tools, BurntSushi/toml) would join
# the module graph and could raise versions the binaries build with.
# -tags scale checks the scale benchmark's files too.
STATICCHECK_VERSION        := v0.8.2

.PHONY: help build test-toggle test-gobgpd-versions docker test test-short vet fmt-check deps netdevsim-kernel bench bench-scale bench-churn fuzz monitor lab lab-down blackhole-report clean proto proto-tools proto-check
LAB        ?= e2e/labs/fabric/fabric.clab.yml

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build the binaries (gobgpd-ext, fibgated, fibgate, fiblab, stock gobgpd and gobgp) into ./bin
	$(GO) build -o $(BIN)/ ./gobgpd-ext/cmd/... ./e2e/cmd/fiblab github.com/osrg/gobgp/v3/cmd/gobgpd github.com/osrg/gobgp/v3/cmd/gobgp

test-toggle: ## run plugin/gobgp's tests with the in-process Speakers releasing by HOLD toggle (fibgated's release) instead of re-export
	FIBGATE_TEST_RELEASE=toggle $(GO) test -count=1 $(TESTFLAGS) ./plugin/gobgp/

# GOBGPD_VERSIONS are the stock gobgpd releases test-gobgpd-versions runs
# fibgated against (built from the Go module proxy): `make test` takes the
# oldest v3 release (the newest is the module's own, in TestFabric, and
# Debian's 3.10 runs in TestSidecarOnPackagedGobgpd); README.md, "Supported
# GoBGP versions", lists what else was run.
GOBGPD_VERSIONS ?= v3.0.0

test-gobgpd-versions: ## run e2e TestSidecarOnPackagedGobgpd and plugin/gobgp's TestEstablishedPeersOverBothAdapters against each stock gobgpd in GOBGPD_VERSIONS (root; e.g. GOBGPD_VERSIONS="v3.0.0 v3.20.0 v3.36.0")
	@set -e; for v in $(GOBGPD_VERSIONS); do \
	  GOBIN=$(abspath $(BIN))/gobgpd-$$v $(GO) install github.com/osrg/gobgp/v3/cmd/gobgpd@$$v; \
	  echo "== fibgated on gobgpd $$v"; \
	  FIBGATE_SIDECAR_GOBGPD=$(abspath $(BIN))/gobgpd-$$v/gobgpd $(GO) test -count=1 $(TESTFLAGS) -run '^TestSidecarOnPackagedGobgpd$$' ./e2e/; \
	  FIBGATE_SIDECAR_GOBGPD=$(abspath $(BIN))/gobgpd-$$v/gobgpd $(GO) test -count=1 $(TESTFLAGS) -run '^TestEstablishedPeersOverBothAdapters$$' ./plugin/gobgp/; \
	done

docker: ## build the container image (IMAGE=name:tag, default fibgate:dev; deploy/README.md)
	docker build -f deploy/Dockerfile -t $(or $(IMAGE),fibgate:dev) .

lab: deps build ## bring up the leaf-spine lab from $(LAB) with namespaces, FRR and fibgate (root)
	./$(BIN)/fiblab up -bin $(CURDIR)/$(BIN) $(LAB)

lab-down: ## take the lab down
	./$(BIN)/fiblab down $(LAB)

blackhole-report: deps ## measure probes lost with and without the gate at 100ms/300ms/1s; writes docs/blackhole.{md,svg} (root)
	FIBGATE_BLACKHOLE_LATENCIES=100ms,300ms,1s FIBGATE_BLACKHOLE_REPORT=$(CURDIR)/docs $(GO) test -count=1 -timeout 20m -run TestBlackhole -v ./e2e/ | grep -E 'lost|^(ok|FAIL|---)'

# bench-scale's settings: table sizes (counts such as 20k or 1m, or full),
# leaves (ext, ext-fib, ext-kernel, ext-copy, sidecar, sidecar-kernel, gobgpd, frr,
# originated, or all), rounds, and families (ipv4,ipv6 or ipv4); PPROF=dir
# also takes the CPU profile of the leaf's first 15 s (gobgpd-ext, stock
# gobgpd, or fibgated in the sidecar leaves) and a 5 s execution trace in
# their middle.
SIZES      ?= 120k
MODES      ?= all
ROUNDS     ?= 1
FAMILIES   ?= ipv4,ipv6

bench-scale: deps build ## time until a BGP neighbour has the table, per leaf (SIZES=120k,full MODES=all ROUNDS=1); writes docs/scale.{md,svg} (root)
	set -o pipefail; FIBGATE_SCALE_BIN=$(CURDIR)/$(BIN) FIBGATE_SCALE_SIZES=$(SIZES) FIBGATE_SCALE_MODES=$(MODES) \
	  FIBGATE_SCALE_ROUNDS=$(ROUNDS) FIBGATE_SCALE_FAMILIES=$(FAMILIES) FIBGATE_SCALE_PPROF=$(PPROF) FIBGATE_SCALE_REPORT=$(CURDIR)/docs \
	  FIBGATE_SCALE_COMMAND="make bench-scale SIZES=$(SIZES) MODES=$(MODES) ROUNDS=$(ROUNDS) FAMILIES=$(FAMILIES)" \
	  $(GO) test -tags scale -count=1 -timeout 12h -run TestScaleBench -v ./e2e/scale/ | grep -E 'round [0-9]+:|^(ok|FAIL|---|panic)|_test.go'

# bench-churn's settings besides SIZES, ROUNDS and FAMILIES: the leaves
# (CHURN_MODES: ext, ext-fib, ext-copy, sidecar, gobgpd, frr), changes per second,
# how long, a directory for gobgpd-ext's (or, for the sidecar, fibgated's) profiles of the churn, one for
# every change's times (CSV), the gated leaves' audit.interval (0s: off), and MOVES=1 for best paths
# that move to a backup source and back instead of going and coming.
CHURN_MODES ?= ext,ext-copy,sidecar,gobgpd
RATE        ?= 1000
CHURN_FOR   ?= 30s
PPROF       ?=
CSV         ?=
AUDIT       ?=
MOVES       ?=

bench-churn: deps build ## steady churn on top of the table, source API to observer per change, per leaf (SIZES=120k RATE=1000 CHURN_FOR=30s); writes its section of docs/scale.md (root)
	set -o pipefail; FIBGATE_SCALE_BIN=$(CURDIR)/$(BIN) FIBGATE_SCALE_SIZES=$(SIZES) FIBGATE_SCALE_MODES=$(CHURN_MODES) \
	  FIBGATE_SCALE_ROUNDS=$(ROUNDS) FIBGATE_SCALE_FAMILIES=$(FAMILIES) FIBGATE_SCALE_CHURN=$(RATE) FIBGATE_SCALE_CHURN_FOR=$(CHURN_FOR) \
	  FIBGATE_SCALE_PPROF=$(PPROF) FIBGATE_SCALE_CHURN_CSV=$(CSV) FIBGATE_SCALE_CHURN_AUDIT=$(AUDIT) FIBGATE_SCALE_CHURN_MOVES=$(MOVES) FIBGATE_SCALE_REPORT=$(CURDIR)/docs \
	  FIBGATE_SCALE_COMMAND="make bench-churn SIZES=$(SIZES) CHURN_MODES=$(CHURN_MODES) RATE=$(RATE) CHURN_FOR=$(CHURN_FOR) ROUNDS=$(ROUNDS) FAMILIES=$(FAMILIES)$(if $(AUDIT), AUDIT=$(AUDIT))$(if $(MOVES), MOVES=$(MOVES))" \
	  $(GO) test -tags scale -count=1 -timeout 12h -run TestSteadyChurn -v ./e2e/scale/ | grep -E 'round [0-9]+:|^(ok|FAIL|---|panic)|_test.go'

deps: ## install missing apt packages (needs root)
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	vm=""; for p in $(APT_PKGS_VM); do dpkg -s $$p >/dev/null 2>&1 || vm="$$vm $$p"; done; \
	if [ -n "$$missing$$vm" ]; then echo "installing:$$missing$$vm"; apt-get update -qq && \
	  { [ -z "$$missing" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; } && \
	  { [ -z "$$vm" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$vm; }; fi

netdevsim-kernel: ## build the kernel of e2e/netdevsim (Linux 6.1 + netdevsim and rocker) into bin/netdevsim/bzImage from Debian's linux-source-6.1 (root for apt; ~10 min on 2 cores)
	@missing=""; for p in $(APT_PKGS_KERNEL); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi
	@if [ ! -f $(NETDEVSIM_SRC)/Makefile ]; then echo "unpacking /usr/src/linux-source-6.1.tar.xz"; \
	  mkdir -p $(dir $(NETDEVSIM_SRC)) && tar -C $(dir $(NETDEVSIM_SRC)) -xJf /usr/src/linux-source-6.1.tar.xz; fi
	$(MAKE) -C $(NETDEVSIM_SRC) tinyconfig
	cd $(NETDEVSIM_SRC) && scripts/kconfig/merge_config.sh -m .config $(CURDIR)/e2e/netdevsim/kernel.config.frag
	$(MAKE) -C $(NETDEVSIM_SRC) olddefconfig
	@for c in $$(grep '^CONFIG_' e2e/netdevsim/kernel.config.frag); do \
	  grep -qx "$$c" $(NETDEVSIM_SRC)/.config || { echo "$$c did not survive olddefconfig"; exit 1; }; done
	$(MAKE) -C $(NETDEVSIM_SRC) -j$$(nproc) bzImage
	@mkdir -p $(dir $(NETDEVSIM_KERNEL)) && cp $(NETDEVSIM_SRC)/arch/x86/boot/bzImage $(NETDEVSIM_KERNEL)
	@echo "$(NETDEVSIM_KERNEL): $$(sha256sum < $(NETDEVSIM_KERNEL) | cut -c1-64)"
	@echo "run the tests with it: FIBGATE_NETDEVSIM_KERNEL=$(abspath $(NETDEVSIM_KERNEL)) go test -run TestNetdevsim -v ./e2e/netdevsim/"

vet: ## go vet, staticcheck, gofmt check, and go.mod/go.sum tidy (go mod tidy -diff)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy (the diff above is what it changes)"; exit 1; }
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) -tags scale $(PKGS)

test: deps vet ## all tests with the race detector (real-kernel tests need root), then plugin/gobgp's in process on the HOLD toggle (test-toggle) and fibgated against the oldest gobgpd v3 (test-gobgpd-versions)
	$(GO) test -race -count=1 -timeout 15m $(PKGS)
	$(MAKE) test-toggle
	$(MAKE) test-gobgpd-versions

test-short: ## quick tests
	$(GO) test -short -count=1 $(PKGS)

bench: ## benchmarks of the FIB trie and the kernel codec
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./plugin/fib/... ./plugin/kernel/...

fuzz: ## run each fuzz target for 60 s
	$(GO) test -run '^$$' -fuzz FuzzDecodeRoute -fuzztime 60s ./plugin/kernel/
	$(GO) test -run '^$$' -fuzz FuzzTable -fuzztime 60s ./plugin/fib/internal/trie/

monitor: build ## watch kernel route events with hardware flags (NETNS=name to pick a namespace)
	./$(BIN)/fibgate monitor --dump $(if $(NETNS),--netns $(NETNS))

proto-tools: ## build the pinned buf, protoc-gen-go and protoc-gen-go-grpc into bin/tools
	@mkdir -p $(TOOLS)
	@tool() { stamp="$(TOOLS)/.$$1@$$2"; [ -f "$$stamp" ] && [ -x "$(TOOLS)/$$1" ] && return 0; \
	  echo "building $$1 $$2"; GOBIN="$(TOOLS)" $(GO) install "$$3@$$2" && rm -f "$(TOOLS)/.$$1@"* && touch "$$stamp"; }; \
	tool buf $(BUF_VERSION) github.com/bufbuild/buf/cmd/buf && \
	tool protoc-gen-go "$$($(GO) list -m -f '{{.Version}}' google.golang.org/protobuf)" google.golang.org/protobuf/cmd/protoc-gen-go && \
	tool protoc-gen-go-grpc $(PROTOC_GEN_GO_GRPC_VERSION) google.golang.org/grpc/cmd/protoc-gen-go-grpc

proto: proto-tools ## regenerate the Go code beside the .proto files
	find proto -name '*.pb.go' -delete
	cd proto && $(TOOLS)/buf generate

proto-check: proto-tools ## buf lint, format check, regenerate, and fail if generated code drifted
	cd proto && $(TOOLS)/buf lint
	cd proto && $(TOOLS)/buf format -d --exit-code
	@$(MAKE) --no-print-directory proto
	git diff --exit-code -- proto/
	@new=$$(git ls-files --others --exclude-standard -- proto/); \
	  if [ -n "$$new" ]; then echo "generated files not in git:"; echo "$$new"; exit 1; fi

clean: ## remove build output
	rm -rf $(BIN)
