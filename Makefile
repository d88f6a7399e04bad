# greenhouse-relay. `make run` starts the local mode; `make test` runs every test.
# Tools a target needs are installed by that target, into .venv-tools (Python) or via apt/cargo,
# and each install says what it does.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
VENV := .venv-tools
SAM_VENV := .venv-sam

.PHONY: help run listen test test-rust test-infra api-fuzz validate validate-sam build deploy invoke coldstart conformance parity-aws bench-core bench-store bench-local fuzz mutants mutants-use-cases mutants-router mutants-adapters mutants-aws tools-mutants tools-wrk fmt lint

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

run: ## Build (release) and start the local mode on 127.0.0.1:3000 (see README for settings)
	@scripts/run-local.sh

listen: ## A callback receiver on 127.0.0.1:8081 (RECEIVER_ADDR) that checks and prints notifications (key: SIGNATURE_KEY, default change-me)
	$(CARGO) build --release --locked -p greenhouse-relay
	SIGNATURE_KEY=$${SIGNATURE_KEY:-change-me} $(TARGET_DIR)/release/greenhouse-relay listen

test: test-rust test-infra conformance api-fuzz parity-aws ## Every test: unit, property, end-to-end, crash, template, conformance (local and AWS), API fuzzing

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

api-fuzz: $(VENV)/.schemathesis ## schemathesis: generated requests against a fresh local mode, checked against docs/openapi.yaml
	$(CARGO) build --locked -p greenhouse-relay
	scripts/api-fuzz.sh $(TARGET_DIR)/debug/greenhouse-relay

$(VENV)/.schemathesis: $(VENV)/.installed
	@echo "installing schemathesis into $(VENV) (pip, about half a minute)"
	$(VENV)/bin/pip install -q 'schemathesis==4.32.5'
	touch $@

test-infra: validate ## cfn-lint and the template's property tests
	$(VENV)/bin/python infra/test_template.py

validate: $(VENV)/.installed ## cfn-lint on the SAM template
	$(VENV)/bin/cfn-lint infra/template.yaml

build: $(VENV)/.installed ## The three Lambdas for arm64 (cargo lambda + zig): target/lambda/<fn>/bootstrap.zip
	rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1 || true
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(CARGO) lambda build --release --arm64 --output-format zip \
	  --bin ingest --bin instances --bin delivery
	@ls -l $(TARGET_DIR)/lambda/*/bootstrap.zip

validate-sam: $(SAM_VENV)/.installed ## sam validate --lint (SAM CLI in .venv-sam)
	cd infra && AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} SAM_CLI_TELEMETRY=0 ../$(SAM_VENV)/bin/sam validate --lint -t template.yaml

$(SAM_VENV)/.installed:
	@echo "installing aws-sam-cli into $(SAM_VENV) (pip, about two minutes)"
	python3 -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q aws-sam-cli
	touch $@

deploy: $(SAM_VENV)/.installed $(VENV)/.installed ## sam build + deploy (guided the first time, then samconfig.toml)
	cd infra && PATH="$(CURDIR)/$(VENV)/bin:$$PATH" ../$(SAM_VENV)/bin/sam build -t template.yaml
	cd infra && if [ -f samconfig.toml ]; then ../$(SAM_VENV)/bin/sam deploy; else ../$(SAM_VENV)/bin/sam deploy --guided; fi

invoke: $(VENV)/.installed ## Run a function locally on a sample: make invoke FN=ingest EVENT=events/ingest-apigw-v2.json
	scripts/with-moto.sh scripts/invoke.sh $(or $(FN),ingest) $(or $(EVENT),events/ingest-apigw-v2.json)

coldstart: ## Cold start of the ingest binary vs a hello-world lambda_runtime binary (release, same run)
	$(CARGO) build --release --locked -p ingest -p delivery --bins --examples
	scripts/coldstart.py -n 40 -b 2 $(TARGET_DIR)/release/examples/hello_lambda \
		$(TARGET_DIR)/release/examples/hello_lambda_single_thread $(TARGET_DIR)/release/ingest $(TARGET_DIR)/release/delivery

parity-aws: $(VENV)/.schemathesis ## The conformance tool against the Lambdas (cargo lambda watch) on moto
	scripts/with-moto.sh scripts/lambda-parity.sh

bench-core: ## criterion: ingest core vs naive parse and floor (prints the ratios)
	$(CARGO) bench --locked -p relay-core --bench ingest

bench-store: ## criterion: the local worker's claim and the failed list on a 100k history, vs baselines
	$(CARGO) bench --locked -p relay-sqlite --bench store

bench-local: tools-wrk ## wrk load on the local mode vs a bare hyper server (prints the ratios)
	$(CARGO) build --release --locked -p greenhouse-relay --bins --examples
	scripts/bench-local.sh $(TARGET_DIR)/release

# cargo-fuzz passes nightly flags (-Zsanitizer); this machine has the stable toolchain only, and
# RUSTC_BOOTSTRAP=1 lets it take them. The corpus starts from the Greenhouse fixtures.
fuzz: ## libFuzzer on the ingest parser for FUZZ_SECONDS (default 300); installs cargo-fuzz
	@command -v cargo-fuzz >/dev/null || { echo "installing cargo-fuzz (cargo install cargo-fuzz)"; \
	  $(CARGO) install cargo-fuzz --locked; }
	mkdir -p fuzz/corpus
	RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run parse_webhook fuzz/corpus ../shared/fixtures/greenhouse -- \
		-max_total_time=$${FUZZ_SECONDS:-300} -max_len=8192

# cargo-mutants changes the core's code one mutant at a time (an operator swapped, a function's
# body replaced) and runs the tests of MUTANTS_TESTS on each: a mutant no test fails is behaviour
# nothing checks. It builds in a copy of the tree with a target directory of its own (hence `env -u
# CARGO_TARGET_DIR`: cargo names a workspace crate's artifacts by its path inside the workspace, so
# in a shared target directory the copies would overwrite each other's and the tree's). Its baseline
# runs relay-core's tests only, so with other suites the timeout is set (240 s), not derived.
MUTANTS_FILES ?= json greenhouse notification instance network retry
MUTANTS_TESTS ?= relay-core
tools-mutants:
	@command -v cargo-mutants >/dev/null || { echo "installing cargo-mutants (cargo install cargo-mutants)"; \
	  $(CARGO) install cargo-mutants --locked; }

mutants: tools-mutants ## cargo-mutants on the core's domain modules (MUTANTS_FILES; about 1 h on 2 cores); installs cargo-mutants
	env -u CARGO_TARGET_DIR PROPTEST_CASES=$${PROPTEST_CASES:-64} $(CARGO) mutants -p relay-core \
	  --test-package $(MUTANTS_TESTS) $(if $(filter-out relay-core,$(MUTANTS_TESTS)),--timeout 240) \
	  -o .mutants $(foreach f,$(MUTANTS_FILES),-f shared/core/src/$(f).rs)

mutants-use-cases: ## cargo-mutants on the ingest, delivery and management use cases, with the local mode's suites (about 1.5 h)
	$(MAKE) mutants MUTANTS_FILES="ingest delivery manage" MUTANTS_TESTS=relay-core,greenhouse-relay PROPTEST_CASES=16

mutants-router: ## cargo-mutants on the HTTP router, with the local mode's suites (about 70 min)
	$(MAKE) mutants MUTANTS_FILES=api MUTANTS_TESTS=relay-core,greenhouse-relay PROPTEST_CASES=16

mutants-adapters: tools-mutants ## cargo-mutants on the callback client and the SQLite store, with their own tests and the local mode's suites (about 2 h)
	env -u CARGO_TARGET_DIR PROPTEST_CASES=16 $(CARGO) mutants -p relay-callback -p relay-sqlite \
	  --test-package relay-callback,relay-sqlite,greenhouse-relay --timeout 240 -o .mutants

mutants-aws: tools-mutants $(VENV)/.installed ## cargo-mutants on the AWS adapters (DynamoDB, SQS, the Lambda glue) with their tests against moto server (about 1.5 h, two at a time)
	env -u CARGO_TARGET_DIR PROPTEST_CASES=8 scripts/with-moto.sh $(CARGO) mutants -p relay-aws \
	  --test-package relay-aws --timeout 150 -j 2 -o .mutants

tools-wrk:
	@command -v wrk >/dev/null || { echo "installing wrk (apt-get install wrk)"; \
	  (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null; }

fmt: ## rustfmt the workspace and the fuzz crate (rustfmt.toml: width 120)
	$(CARGO) fmt --all
	cd fuzz && $(CARGO) fmt

lint: ## rustfmt check + clippy with warnings as errors (.ci/run runs it)
	$(CARGO) fmt --all --check
	cd fuzz && $(CARGO) fmt --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
