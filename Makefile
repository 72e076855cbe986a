# clusterctl — build, test and demo targets. `make help` lists them.
GO      ?= go
BIN     ?= bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: help build deps test unit e2e ci bench demo demo-down vet fuzz clean

help:
	@echo "make build      build bin/clusterctl and bin/clusterctl-agent (static, linux/amd64)"
	@echo "make deps       install the Debian packages the tests and demo need (root)"
	@echo "make unit       vet + unit tests (under a minute)"
	@echo "make e2e        end-to-end test: two real QEMU VMs in a private network namespace (root)"
	@echo "make test       unit + e2e: everything CI runs"
	@echo "make ci         deps + test (what .ci/run calls)"
	@echo "make bench      benchmarks (join detection vs 3 s polling, seed ISO build)"
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
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: the files above need formatting"; exit 1; }

unit: vet
	$(GO) test -race -count=1 ./...

e2e:
	$(GO) test -tags e2e -count=1 -v -timeout 60m ./test/e2e/

test: unit e2e

ci: deps
	CLUSTERCTL_REQUIRE_TOOLS=1 $(MAKE) test

bench:
	$(GO) test -run '^$$' -bench BenchmarkJoinDetection -benchtime 200x ./agent/
	$(GO) test -run '^$$' -bench BenchmarkPollBaseline -benchtime 20x ./agent/
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 20x -count 3 ./cloudinit/

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
