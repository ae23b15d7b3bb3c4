# podid's build. `make test` is the one command that checks everything; CI runs it.
SHELL := /usr/bin/env bash -o pipefail
BIN   := $(CURDIR)/bin
export KUBEBUILDER_ASSETS := $(BIN)

.PHONY: all build tools js generate verify test bench sandbox clean

all: build

build: ## Build bin/podid and bin/podid-agent.
	go build -trimpath -o $(BIN)/podid ./cmd/podid
	go build -trimpath -o $(BIN)/podid-agent ./cmd/podid-agent

tools: ## Build the pinned kube-apiserver, etcd, the node's kubelet, controllers, kube-proxy, containerd and CoreDNS, controller-gen, MinIO and Helm into bin/ (cached by pin).
	hack/tools.sh

js: ## Install the pinned JS SDK clients (npm) the integration tests drive podid with.
	cd test/integration/js && npm ci --no-audit --no-fund --loglevel=error

generate: tools ## Regenerate deep-copy code, CRD and RBAC manifests from api/ and the markers.
	$(BIN)/controller-gen object paths=./api/...
	$(BIN)/controller-gen crd paths=./api/... output:crd:dir=config/crd
	$(BIN)/controller-gen rbac:roleName=podid-server paths=./internal/... output:rbac:dir=config/rbac
	mkdir -p config/crd/namespaced
	sed 's/^  scope: Cluster$$/  scope: Namespaced/' config/crd/podid.io_secretrotators.yaml > config/crd/namespaced/podid.io_secretrotators.yaml
	cp config/crd/*.yaml charts/podid/crds/
	go run ./hack/admission passrole > charts/podid/templates/passrole.yaml
	go run ./hack/admission check-requester > charts/podid/templates/podidentitycheck-requester.yaml

verify: generate ## Fail on unformatted code, vet findings or stale generated files.
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	go vet ./...
	@if [ -n "$$(git status --porcelain -- api config charts/podid/crds charts/podid/templates/passrole.yaml charts/podid/templates/podidentitycheck-requester.yaml)" ]; then \
		echo "generated files are stale: run 'make generate' and commit the result:"; \
		git status --porcelain -- api config charts/podid/crds; git diff -- api config charts/podid/crds | head -50; exit 1; fi
	$(BIN)/helm lint charts/podid --strict --kube-version 1.37.2 --set clusterName=lint,accountId=111122223333,region=eu-west-1

# One run: test/realnode starts after the internal/ packages, whose
# internal/netns test checks that the host holds no agent address, which the
# real node's agent legitimately puts on the host's lo.
test: verify js ## Everything: verification, unit, integration, node and real-node tests, with the race detector.
	go test -race -count=1 -timeout 40m ./...

bench: ## The benchmarks whose figures the docs quote, and the agent's load command.
	go test ./internal/association ./internal/auth ./internal/agent ./internal/sigv4 ./internal/credprovider ./cmd/podid-credential-provider -run '^$$' -bench . -benchmem
	go run ./test/load/agent
	go run ./test/load/rotator

sandbox: tools build ## Run podid on this machine: a real API server, podid server, a sample association.
	$(BIN)/podid-sandbox up

clean:
	rm -rf $(BIN)
