# kubeftp developer entry points. `make test` is what CI runs.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: test test-latest test-oldest tools-all deps deps-cluster run fmt-check lint tools cluster-up cluster-down crds bench-ftp bench-operator \
	images up down e2e

## Install the system packages the tests drive (FTP clients, netns tooling).
deps:
	@./hack/install-deps.sh

## ...and those the local cluster runs on (containerd, runc, CNI plugins, umoci).
deps-cluster:
	@./hack/install-deps.sh --cluster

## Everything `make test` checks; CI then runs `make e2e`.
test: deps tools-all fmt-check lint
	$(CARGO) test --workspace --locked --exclude kubeftp-e2e -- --test-threads=4
	$(CARGO) test --locked -p kubeftp-e2e --lib
	$(CARGO) build --locked -p kubeftp-e2e --tests
	$(MAKE) --no-print-directory test-latest
	$(MAKE) --no-print-directory test-oldest

# The test targets that run against the control plane (crates/testenv).
CONTROL_PLANE_TESTS = --test operator --test chart --test malformed --test crd_validation \
	--test binary --test api --test controllers

## The control-plane tests again, against the kube-apiserver,
## kube-controller-manager and kubectl of the newest Kubernetes
## (KUBERNETES_LATEST_VERSION in e2e/tools/VERSIONS), or of the oldest the
## operator supports (KUBERNETES_OLDEST_VERSION). The same packages and
## features as `make test`, so nothing is compiled again.
test-latest test-oldest:
	dir=$$(./e2e/tools/build.sh --$(@:test-%=%)) && \
	echo "$@: $$("$$dir/kube-apiserver" --version), kubectl $$("$$dir/kubectl" version --client | sed -n 's/^Client Version: //p') in $$dir" && \
	KUBEFTP_TOOLS_DIR="$$dir" $(CARGO) test --workspace --locked --exclude kubeftp-e2e \
		$(CONTROL_PLANE_TESTS) -- --test-threads=4

fmt-check:
	$(CARGO) fmt --all -- --check

## Shell scripts (shellcheck) and GitHub workflows (actionlint, which also
## shellchecks their run: steps).
lint: deps tools
	shellcheck -x $$(git ls-files '*.sh' .ci/run)
	$(TOOLS_BIN)/actionlint

## The server standalone, serving ./ftp-root on 127.0.0.1:2121.
run:
	$(CARGO) run --release -p kubeftp-server

## Build the pinned Kubernetes, etcd and helm binaries (e2e/tools/VERSIONS) into the cache; skips what exists.
tools:
	@./e2e/tools/build.sh >/dev/null

## ...and the newest and the oldest supported Kubernetes' kube-apiserver,
## kube-controller-manager and kubectl, for test-latest and test-oldest (one
## build, so the Go caches serve all three before they are removed).
tools-all:
	@./e2e/tools/build.sh --latest --oldest >/dev/null

# Where cluster-up keeps its pid file, log and kubeconfig.
CLUSTER_DIR ?= $(CURDIR)/target/cluster

## Start a local control plane in the background and print its kubeconfig path.
cluster-up: tools
	@$(CARGO) run -q -p kubeftp-testenv-cli -- up --dir $(CLUSTER_DIR)

## Stop the control plane started by cluster-up and remove its files.
cluster-down:
	@$(CARGO) run -q -p kubeftp-testenv-cli -- down --dir $(CLUSTER_DIR)

# The local cluster: its state directory, and a load-balancer address the
# e2e tests may move a Service to (kubeftp-cluster hands out .10-.249).
CLUSTER_STATE := /var/lib/kubeftp-cluster
SPARE_LB_IP := 10.203.0.250
TOOLS_BIN = $(shell ./e2e/tools/build.sh --print)

## Build the operator, server and pause images as OCI archives in target/images.
images: tools
	$(CARGO) build --release --locked -p kubeftp-server -p kubeftp-operator
	./e2e/images/build.sh target/images

## A local single-node cluster with the operator and an example FtpServer (root).
up: deps deps-cluster tools images
	@./e2e/local/up.sh

## Remove the local cluster and everything in it.
down:
	@$(CARGO) run -q --locked -p kubeftp-cluster -- down

## End-to-end tests on the local cluster (started, then removed, if not running).
e2e: deps deps-cluster tools images
	@running=$$(test -f $(CLUSTER_STATE)/kubeconfig && echo yes); \
	./e2e/local/up.sh >/dev/null || exit 1; \
	KUBECONFIG=$(CLUSTER_STATE)/kubeconfig PATH=$(TOOLS_BIN):$$PATH \
		KUBEFTP_E2E_SPARE_LB_IP=$(SPARE_LB_IP) ./e2e/test.sh; status=$$?; \
	[ -n "$$running" ] || target/debug/kubeftp-cluster down; \
	exit $$status

## Regenerate the FtpServer CRD (crds/ and the Helm chart) from crates/api.
crds:
	$(CARGO) run -q -p kubeftp-operator -- crd > crds/ftpserver.yaml
	cp crds/ftpserver.yaml charts/kubeftp/crds/ftpserver.yaml

## Benchmark kubeftp-server against vsftpd on loopback (root; 11-20 minutes).
bench-ftp:
	@command -v vsftpd >/dev/null && command -v iperf3 >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq vsftpd iperf3; }
	$(CARGO) build --release --locked -p kubeftp-server -p kubeftp-bench
	./target/release/kubeftp-bench ftp --server-bin target/release/kubeftp-server

## Benchmark the operator with 500 FtpServers on a real control plane (~6 minutes).
bench-operator: tools
	$(CARGO) build --release --locked -p kubeftp-operator -p kubeftp-bench
	./target/release/kubeftp-bench operator --operator-bin target/release/kubeftp-operator
