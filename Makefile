# Two entry points, each doing its own set-up: `make up` runs the local mesh with the
# demo app; `make test` runs lint, type checks and the whole test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.PHONY: up test lint typecheck unit integration protos bench clean system-packages

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

# Traffic-capture tests (root, as in CI) need iptables, ip, nsenter/setpriv and Debian's CNI
# plugins; Mixer's redisquota tests need redis-server; the citadel signing benchmark (and its
# test) loads citadel with h2load (nghttp2-client). Install them when missing and root.
# Without root those tests skip themselves.
system-packages:
	@if [ "$$(id -u)" = 0 ] && ! { command -v iptables-restore >/dev/null && command -v ip >/dev/null && command -v setpriv >/dev/null && test -x /usr/lib/cni/bridge && command -v redis-server >/dev/null && command -v h2load >/dev/null; }; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			iptables iproute2 util-linux containernetworking-plugins redis-server nghttp2-client; fi

up: $(STAMP)
	$(BIN)/meshctl up examples/bookinfo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy meshcore meshconfig pilot galley citadel mixer agent protos localmesh benchmarks meshctl

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP) system-packages
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) tests/integration

test: lint typecheck system-packages
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) tests

protos: $(STAMP)
	$(BIN)/python -m protos.generate

bench: $(STAMP) system-packages
	$(BIN)/python -m benchmarks.envoy_types
	$(BIN)/python -m benchmarks.citadel_signing

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
