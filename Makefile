# podid's build. `make test` is the one command that checks everything; CI runs it.
SHELL := /usr/bin/env bash -o pipefail
BIN   := $(CURDIR)/bin
export KUBEBUILDER_ASSETS := $(BIN)

.PHONY: all build tools check-tools js generate check verify test test-unit test-integration test-realnode bench sandbox clean

all: build

# The three binaries users install, and the sandbox, which links the
# emulators and harness they must not (test/deptest checks it).
build: ## Build bin/podid, bin/podid-agent, bin/podid-credential-provider and bin/podid-sandbox.
	go build -trimpath -o $(BIN)/podid ./cmd/podid
	go build -trimpath -o $(BIN)/podid-agent ./cmd/podid-agent
	go build -trimpath -o $(BIN)/podid-credential-provider ./cmd/podid-credential-provider
	go build -trimpath -o $(BIN)/podid-sandbox ./cmd/podid-sandbox

tools: ## Build the pinned kube-apiserver, etcd, kubectl, the node's kubelet, controllers, kube-proxy, containerd and CoreDNS, controller-gen, MinIO, Helm and promtool into bin/ (cached by pin).
	hack/tools.sh

check-tools: ## Build only what `make check` needs: controller-gen and Helm.
	hack/tools.sh controller-gen helm

js: ## Install the pinned JS SDK clients (npm) the integration tests drive podid with.
	cd test/integration/js && npm ci --no-audit --no-fund --loglevel=error

generate: check-tools ## Regenerate deep-copy code, CRD and RBAC manifests from api/ and the markers.
	$(BIN)/controller-gen object paths=./api/...
	$(BIN)/controller-gen crd paths=./api/... output:crd:dir=config/crd
	$(BIN)/controller-gen rbac:roleName=podid-server paths=./internal/... output:rbac:dir=config/rbac
	mkdir -p config/crd/namespaced
	sed 's/^  scope: Cluster$$/  scope: Namespaced/' config/crd/podid.io_secretrotators.yaml > config/crd/namespaced/podid.io_secretrotators.yaml
	cp config/crd/*.yaml charts/podid/crds/
	go run ./hack/admission passrole > charts/podid/templates/passrole.yaml
	go run ./hack/admission check-requester > charts/podid/templates/podidentitycheck-requester.yaml
	go run ./hack/admission agent-node > charts/podid/templates/agent-node-policy.yaml

GENERATED := api config charts/podid/crds charts/podid/templates/passrole.yaml charts/podid/templates/podidentitycheck-requester.yaml charts/podid/templates/agent-node-policy.yaml

check: generate ## Fast checks, no cluster: gofmt, vet, stale generated files, helm lint.
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	go vet ./...
	@if [ -n "$$(git status --porcelain -- $(GENERATED))" ]; then \
		echo "generated files are stale: run 'make generate' and commit the result:"; \
		git status --porcelain -- $(GENERATED); git diff -- $(GENERATED) | head -50; exit 1; fi
	$(BIN)/helm lint charts/podid --strict --kube-version 1.37.2 --set clusterName=lint,accountId=111122223333,region=eu-west-1

verify: check

# The tiers. Unit: the product's packages (some start a real kube-apiserver
# and etcd). Integration: test/ — the emulators, the harness, the sandbox,
# the chart, the JS SDKs, end to end. Real node: the chart on a kubelet and
# containerd on this machine (root; PODID_REALNODE=require fails instead of
# skipping).
GO_TEST          := go test -race -count=1
UNIT_PKGS        := ./api/... ./cmd/... ./internal/... ./config/... ./hack/...
INTEGRATION_PKGS  = $(shell go list ./test/... | grep -v '/test/realnode$$')
REALNODE_PKGS    := ./test/realnode

test-unit: ## The product's own tests.
	hack/tools.sh kube
	$(GO_TEST) -timeout 15m $(UNIT_PKGS)

test-integration: js ## The tests under test/ but the real node's.
	hack/tools.sh
	$(GO_TEST) -timeout 20m $(INTEGRATION_PKGS)

test-realnode: ## podid's chart on a real node on this machine (about 12 minutes).
	hack/tools.sh
	$(GO_TEST) -timeout 30m $(REALNODE_PKGS)

# Everything, in one `go test` so that packages run side by side: the real
# node, which mostly waits on the kubelet's clock, first, and the other tiers
# beside it.
test: check tools js ## Everything: check, unit, integration and real-node tests, with the race detector.
	$(GO_TEST) -timeout 40m $(REALNODE_PKGS) $(UNIT_PKGS) $(INTEGRATION_PKGS)

bench: ## The benchmarks whose figures the docs quote, and the agent's load command.
	go test ./internal/association ./internal/auth ./internal/agent ./internal/sigv4 ./internal/credprovider ./cmd/podid-credential-provider -run '^$$' -bench . -benchmem
	go run ./test/load/agent
	go run ./test/load/rotator

sandbox: tools build ## Run podid on this machine: a real API server, podid server, a sample association.
	$(BIN)/podid-sandbox up

clean:
	rm -rf $(BIN)
