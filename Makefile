# Stowage — run `make help` for the targets.
SHELL := /bin/bash
CARGO ?= cargo
# The AWS emulator (moto + tests/fakeaws) and Helm (helm-python-sdk, for the chart tests) live in a
# venv outside the checkout so clones share it.
VENV ?= $(HOME)/.cache/stowage/venv
PYTHON := $(VENV)/bin/python
export STOWAGE_FAKEAWS_PYTHON := $(PYTHON)

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: test
test: fmt-check layering clippy unit ## Everything CI runs: fmt check, layering, clippy -D warnings, all tests.

.PHONY: fmt-check
fmt-check: ## cargo fmt --check.
	$(CARGO) fmt --all -- --check

.PHONY: fmt
fmt: ## Format the code.
	$(CARGO) fmt --all

.PHONY: clippy
clippy: ## Clippy on every crate and target, warnings denied.
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: layering
layering: ## Crate layering: api/solver/aws-catalog/bench compile no tokio/hyper/kube client; only crates/aws uses the AWS SDK.
	CARGO=$(CARGO) .ci/layering

.PHONY: lint
lint: fmt-check layering clippy ## fmt check + layering + clippy.

.PHONY: unit
unit: $(PYTHON) ## All tests (unit, integration against the AWS emulator, end to end).
	$(CARGO) test --workspace --all-targets

VENV_REQUIREMENTS := tests/fakeaws/requirements.txt tests/chart/requirements.txt

$(PYTHON): $(VENV_REQUIREMENTS)
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check $(addprefix -r ,$(VENV_REQUIREMENTS))
	touch $(PYTHON)

.PHONY: venv
venv: $(PYTHON) ## Create the test venv: the AWS emulator (moto) and Helm (helm-python-sdk).

.PHONY: crds
crds: ## Regenerate charts/stowage/crds from the Rust types.
	$(CARGO) run --quiet -p stowage -- crds --out-dir charts/stowage/crds

# The controller image. Needs docker or podman (BuildKit for the cache mounts).
CONTAINER_TOOL ?= $(shell command -v docker 2>/dev/null || command -v podman 2>/dev/null)
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
IMAGE ?= ghcr.io/stowage-dev/stowage:$(VERSION)

.PHONY: image
image: ## Build the controller image (Dockerfile: release build on distroless, non-root) as $(IMAGE).
	@test -n "$(CONTAINER_TOOL)" || { echo "make image needs docker or podman" >&2; exit 1; }
	DOCKER_BUILDKIT=1 $(CONTAINER_TOOL) build \
	  --build-arg VERSION=$(VERSION) \
	  --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
	  --build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) \
	  -t $(IMAGE) .

.PHONY: reference
reference: ## Regenerate docs/reference (CRD fields, metrics, settings) from the code.
	$(CARGO) run --quiet -p stowage -- reference --out-dir docs/reference

.PHONY: bench
bench: ## Solver benchmarks (release): the 20,000-pod diverse and generic runs.
	$(CARGO) run --release -p stowage-bench -- solve --pods 20000 --types 400 --mix diverse
	$(CARGO) run --release -p stowage-bench -- solve --pods 20000 --types 400 --mix generic
	$(CARGO) bench -p stowage-bench --bench solve -- --warm-up-time 1 --measurement-time 5

.PHONY: demo
demo: ## Run the quickstart simulation (the README's first command).
	$(CARGO) run --quiet -p stowage -- simulate

.PHONY: seed
seed: ## Run the seed scenario (1,000+ nodes) in release mode with an HTML report.
	$(CARGO) run --release -p stowage -- simulate --scenario seed --report report.html

.PHONY: seed-full
seed-full: ## Run the seed at full scale (3,200 nodes, 40,000 pods) in release mode with an HTML report.
	$(CARGO) run --release -p stowage -- simulate --scenario seed-full --report report-full.html

.PHONY: bench-controller
bench-controller: ## The controllers' own RSS and CPU at seed-full scale (a process apart from the simulator).
	$(CARGO) build --release -p stowage
	bench/controller-at-scale.sh 4 seed-full
