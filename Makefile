# fibgate — `make help` lists the targets.
SHELL      := /bin/bash
GO         ?= go
BIN        ?= bin
NETNS      ?=
PKGS       := ./...
GOFLAGS    ?=
# Debian packages the tests need (iproute2 for namespaces; frr for later labs).
APT_PKGS   := iproute2

.PHONY: help build test test-short vet fmt-check deps bench fuzz monitor clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build the binaries into ./bin
	$(GO) build -o $(BIN)/ ./gobgpd-ext/cmd/...

deps: ## install missing apt packages (needs root)
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

vet: ## go vet and gofmt check
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

test: deps vet ## all tests with the race detector (real-kernel tests need root)
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

test-short: ## quick tests
	$(GO) test -short -count=1 $(PKGS)

bench: ## benchmarks of the FIB trie and the kernel codec
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./plugin/fib/... ./plugin/kernel/...

fuzz: ## run each fuzz target for 60 s
	$(GO) test -run '^$$' -fuzz FuzzDecodeRoute -fuzztime 60s ./plugin/kernel/
	$(GO) test -run '^$$' -fuzz FuzzTable -fuzztime 60s ./plugin/fib/internal/trie/

monitor: build ## watch kernel route events with hardware flags (NETNS=name to pick a namespace)
	./$(BIN)/fibgate monitor --dump $(if $(NETNS),--netns $(NETNS))

clean: ## remove build output
	rm -rf $(BIN)
