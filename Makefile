# Two entry points, each doing its own set-up: `make up` runs the local mesh with the
# demo app; `make test` runs lint, type checks and the whole test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.PHONY: up test lint typecheck unit integration protos bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

up: $(STAMP)
	$(BIN)/meshctl up examples/bookinfo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy meshcore meshconfig pilot galley citadel mixer agent protos localmesh benchmarks meshctl

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) tests/integration

test: lint typecheck
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) tests

protos: $(STAMP)
	$(BIN)/python -m protos.generate

bench: $(STAMP)
	$(BIN)/python -m benchmarks.envoy_types

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
