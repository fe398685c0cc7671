PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test run bench lint typecheck build clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml setup.py
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

build: $(STAMP)
	$(PY) setup.py --quiet build_ext --inplace

lint: $(STAMP)
	$(VENV)/bin/ruff check runtime tests bench examples
	$(VENV)/bin/ruff format --check runtime tests bench examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy runtime

test: build lint typecheck
	$(VENV)/bin/pytest -q tests

run: build
	$(PY) -m examples.main

bench: build
	$(VENV)/bin/pytest bench -q -p no:randomly --benchmark-only --benchmark-columns=min,median,mean,ops
	$(PY) -m bench.report

clean:
	rm -rf $(VENV) build runtime/*.so ext/*.c *.egg-info
