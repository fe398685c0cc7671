PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: check test run tour bench lint typecheck build clean system-deps docker-up

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip 'setuptools>=77' wheel

$(STAMP): $(PY) pyproject.toml setup.py
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

build: $(STAMP)
	$(PY) setup.py --quiet build_ext --inplace

lint: $(STAMP)
	$(VENV)/bin/ruff check runtime tests bench examples
	$(VENV)/bin/ruff format --check runtime tests bench examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# Debian packages the tests use for real (a headless browser opens the HTML reports, curl runs a
# custom runtime, redis-server backs the several-node tests: the tests start their own);
# installed when missing and we are root on a Debian-like machine, otherwise the
# tests that need them skip.
system-deps:
	@if ! command -v chromium >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium (headless checks of HTML reports)"; \
		apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi
	@if ! command -v curl >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing curl (the shell custom runtime of tests/runtimeapi)"; \
		apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null; \
	fi
	@if ! command -v redis-server >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing redis-server (the tests start their own on a free loopback port)"; \
		apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
		systemctl disable --now redis-server >/dev/null 2>&1 || service redis-server stop >/dev/null 2>&1 || true; \
	fi

# A Docker Engine and the container tests' image (installs docker.io and starts dockerd when
# root on a Debian-like machine). Without one the container tests skip; under CI it is an error.
docker-up:
	@bash scripts/docker-up || [ -z "$$CI" ]

# The fast loop: lint, types, and the unit tests that start no process and no service.
check: build lint typecheck
	$(VENV)/bin/pytest -q tests/core/test_scheduler.py \
		tests/core/test_selector.py tests/core/test_config.py tests/core/test_configfile.py \
		tests/core/test_schedule.py tests/core/test_protocol.py tests/service/test_apigw.py \
		tests/service/test_auth.py tests/batch/test_batch_rules.py tests/batch/test_batch_model.py \
		tests/core/test_agent_portable.py tests/core/test_layout.py

test: build lint typecheck system-deps docker-up
	$(VENV)/bin/pytest -q tests
	WARMSTART_BENCH_QUICK=1 $(VENV)/bin/pytest -q bench --benchmark-disable

run: build
	$(PY) -m examples.serve

tour: build
	$(PY) -m examples.main

bench: build
	mkdir -p .benchmarks
	$(VENV)/bin/pytest bench -q --benchmark-only --benchmark-columns=min,median,mean \
		--benchmark-json=.benchmarks/latest.json
	$(PY) -m bench.report .benchmarks/latest.json

clean:
	rm -rf $(VENV) build runtime/*.so ext/*.c *.egg-info
