# greenhouse-relay. `make run` starts the local mode; `make test` runs every test.
# Tools a target needs are installed by that target, into .venv-tools (Python) or via apt/cargo,
# and each install says what it does.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
VENV := .venv-tools

.PHONY: help run test test-rust conformance parity-aws bench-core bench-local tools-wrk fmt lint

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

run: ## Build (release) and start the local mode on 127.0.0.1:3000 (see README for settings)
	@scripts/run-local.sh

test: test-rust conformance parity-aws ## Every test: unit, property, end-to-end, crash, conformance (local and AWS)

test-rust: $(VENV)/.installed ## cargo tests of the whole workspace (AWS ones against moto server)
	scripts/with-moto.sh $(CARGO) test --workspace --locked

# Python tools, pinned, in a project venv: moto server (DynamoDB + SQS emulator for the AWS
# runtime's tests), cargo-lambda and zig (Lambda builds and local runs), cfn-lint (template).
$(VENV)/.installed:
	@echo "installing moto[server], cargo-lambda, ziglang and cfn-lint into $(VENV) (pip, about a minute)"
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q 'moto[server]==5.2.5' 'cargo-lambda==1.9.2' 'ziglang==0.17.1' 'cfn-lint==1.58.0'
	touch $@

conformance: ## The contract's black-box check against a freshly started local mode
	$(CARGO) build --locked -p greenhouse-relay
	scripts/conformance.sh $(TARGET_DIR)/debug/greenhouse-relay

parity-aws: $(VENV)/.installed ## The conformance tool against the Lambdas (cargo lambda watch) on moto
	scripts/with-moto.sh scripts/lambda-parity.sh

bench-core: ## criterion: ingest core vs naive parse and floor (prints the ratios)
	$(CARGO) bench --locked -p relay-core --bench ingest

bench-local: tools-wrk ## wrk load on the local mode vs a bare hyper server (prints the ratios)
	$(CARGO) build --release --locked -p greenhouse-relay --bins --examples
	scripts/bench-local.sh $(TARGET_DIR)/release

tools-wrk:
	@command -v wrk >/dev/null || { echo "installing wrk (apt-get install wrk)"; \
	  (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null; }

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
