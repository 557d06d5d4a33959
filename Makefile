# kubeftp developer entry points. `make test` is what CI runs.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: test deps run fmt-check

## Install the system packages the tests drive (FTP clients, netns tooling).
deps:
	@./hack/install-deps.sh

## Everything CI checks.
test: deps fmt-check
	$(CARGO) test --workspace --locked -- --test-threads=4

fmt-check:
	$(CARGO) fmt --all -- --check

## The server standalone, serving ./ftp-root on 127.0.0.1:2121.
run:
	$(CARGO) run --release -p kubeftp-server
