# clusterctl — build, test and demo targets. `make help` lists them.
GO      ?= go
# go.mod's toolchain line names a Go with every crypto/tls and crypto/x509
# fix (internal/toolchain); "auto" makes go fetch it through the module
# proxy when the installed one is older (a machine whose go.env says
# "local" would build with an unpatched Go, and TestBuiltWithPatchedGo
# fails then).
export GOTOOLCHAIN ?= auto
BIN     ?= bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
# staticcheck, pinned; `go run` fetches and builds it once into the Go build
# cache, so a fresh machine needs nothing installed. Its settings, and why:
# staticcheck.conf.
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
# The provider-omitting build tags (cmd/clusterctl/providers_omit.go).
PROVIDERS := ec2 openstack qemu virtualbox
comma     := ,
empty     :=
space     := $(empty) $(empty)
OMIT_ALL  := $(subst $(space),$(comma),$(foreach p,$(PROVIDERS),clusterctl_omit_$(p)))

.PHONY: help build deps test unit e2e ci bench scale demo demo-down vet lint size fuzz clean

help:
	@echo "make build      build bin/clusterctl and bin/clusterctl-agent (static, linux/amd64)"
	@echo "make deps       install the Debian packages the tests and demo need (root)"
	@echo "make unit       vet + staticcheck + unit tests"
	@echo "make lint       staticcheck (staticcheck.conf) in the default, all-providers-omitted and e2e builds; shellcheck over the shell scripts"
	@echo "make size       size of the stripped CLI with each provider left out (build tags clusterctl_omit_*)"
	@echo "make e2e        end-to-end tests: two real QEMU VMs in a private network namespace, EC2 under moto with 2 and 20 instances (root)"
	@echo "make test       unit + e2e: everything CI runs"
	@echo "make ci         deps + test (what .ci/run calls)"
	@echo "make bench      benchmarks (join detection vs 3 s polling, seed ISO build)"
	@echo "make scale      membership harness: real agents on loopback addresses, N = 50 and 200 (SCALE_FLAGS=... for more)"
	@echo "make demo       bring up a real two-node QEMU cluster and show its status (root)"
	@echo "make demo-down  remove the demo cluster and its network namespace"

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/clusterctl ./cmd/clusterctl
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/clusterctl-agent ./cmd/clusterctl-agent

deps:
	sh scripts/deps.sh

vet:
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/e2e/
	$(GO) vet -tags $(OMIT_ALL) ./cmd/clusterctl/
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: the files above need formatting"; exit 1; }

# One staticcheck run over three build configurations; it reports a finding
# once, and an identifier as unused only if no configuration uses it.
# shellcheck (scripts/deps.sh installs it) over every shell script;
# install-agent.sh has no shebang (cloud-init runs it with sh -ec).
lint:
	printf 'default:\nomitall: -tags $(OMIT_ALL)\ne2e: -tags e2e\n' | $(STATICCHECK) -matrix ./...
	shellcheck scripts/*.sh test/e2e/*.sh
	shellcheck --shell=sh templates/install-agent.sh

unit: vet lint
	$(GO) test -race -count=1 ./...

# The second run is TestEC2Agents again with 20 instances: status right
# after up must show every node alive (about 30 s on 2 cores).
e2e:
	$(GO) test -tags e2e -count=1 -v -timeout 60m ./test/e2e/
	CLUSTERCTL_EC2_E2E_COUNT=20 CLUSTERCTL_EC2_E2E_JOIN=5m $(GO) test -tags e2e -count=1 -v -timeout 10m -run TestEC2Agents ./test/e2e/

test: unit e2e

ci: deps
	CLUSTERCTL_REQUIRE_TOOLS=1 $(MAKE) test

bench:
	$(GO) test -run '^$$' -bench BenchmarkJoinDetection -benchtime 200x ./agent/
	$(GO) test -run '^$$' -bench BenchmarkPollBaseline -benchtime 20x ./agent/
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 20x -count 3 ./cloudinit/

# The stripped CLI (-ldflags '-s -w', as `make build`) with every provider,
# without each one, and without all: a Markdown table for docs/benchmarks.md.
size:
	@d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && \
	size() { $(GO) build -ldflags '-s -w' -tags "$$1" -o "$$d/clusterctl" ./cmd/clusterctl && stat -c %s "$$d/clusterctl"; } && \
	row() { awk -v n="$$1" -v t="$$2" -v b="$$3" -v f="$$full" 'BEGIN { printf "| %s | %s | %d | %.1f | %.1f MB (%.0f%%) |\n", n, t, b, b/1e6, (f-b)/1e6, 100*(f-b)/f }'; } && \
	full=$$(size "") && \
	echo "| build | -tags | bytes | MB | saved |" && echo "|---|---|---:|---:|---:|" && \
	row "all providers" "" "$$full" && \
	for p in $(PROVIDERS); do b=$$(size clusterctl_omit_$$p) && row "without $$p" "clusterctl_omit_$$p" "$$b" || exit 1; done && \
	b=$$(size $(OMIT_ALL)) && row "no provider" "$(OMIT_ALL)" "$$b"

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzRender -fuzztime 60s ./cloudinit/
	$(GO) test -run '^$$' -fuzz FuzzParseConfig -fuzztime 60s ./cluster/
	$(GO) test -run '^$$' -fuzz FuzzParseConfig -fuzztime 60s ./provider/openstack/

demo: deps build
	sh scripts/demo.sh up

demo-down:
	sh scripts/demo.sh down

clean:
	rm -rf $(BIN)

# The membership harness (test/scale): real agent processes, one per
# loopback address; prints the table docs/benchmarks.md quotes.
scale:
	$(GO) run ./test/scale $(SCALE_FLAGS)
