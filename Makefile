# kubeftp developer entry points. `make test` is what CI runs.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: test deps run fmt-check tools cluster-up cluster-down crds bench-ftp

## Install the system packages the tests drive (FTP clients, netns tooling).
deps:
	@./hack/install-deps.sh

## Everything CI checks.
test: deps fmt-check tools
	$(CARGO) test --workspace --locked -- --test-threads=4

fmt-check:
	$(CARGO) fmt --all -- --check

## The server standalone, serving ./ftp-root on 127.0.0.1:2121.
run:
	$(CARGO) run --release -p kubeftp-server

## Build the pinned Kubernetes, etcd and helm binaries (e2e/tools/VERSIONS) into the cache; skips what exists.
tools:
	@./e2e/tools/build.sh >/dev/null

# Where cluster-up keeps its pid file, log and kubeconfig.
CLUSTER_DIR ?= $(CURDIR)/target/cluster

## Start a local control plane in the background and print its kubeconfig path.
cluster-up: tools
	@$(CARGO) run -q -p kubeftp-testenv-cli -- up --dir $(CLUSTER_DIR)

## Stop the control plane started by cluster-up and remove its files.
cluster-down:
	@$(CARGO) run -q -p kubeftp-testenv-cli -- down --dir $(CLUSTER_DIR)

## Regenerate the FtpServer CRD (crds/ and the Helm chart) from crates/api.
crds:
	$(CARGO) run -q -p kubeftp-operator -- crd > crds/ftpserver.yaml
	cp crds/ftpserver.yaml charts/kubeftp/crds/ftpserver.yaml

## Benchmark kubeftp-server against vsftpd on loopback (root; ~10 minutes).
bench-ftp:
	@command -v vsftpd >/dev/null && command -v iperf3 >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq vsftpd iperf3; }
	$(CARGO) build --release -p kubeftp-server -p kubeftp-bench
	./target/release/kubeftp-bench --server-bin target/release/kubeftp-server
