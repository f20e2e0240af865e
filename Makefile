# One entry point for every task. `make install` once, then `make up` (run) or `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: install protos protos-check lint test test-fast up down bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# Generated code is committed (gen/agents/...): services import it without a build step.
protos: install
	$(PY) -m services.common.protogen protos gen

# Fails when the committed generated code is stale.
protos-check: install
	$(PY) -m services.common.protogen --check protos gen

lint: install
	$(VENV)/bin/ruff check .

test: install protos-check lint
	$(VENV)/bin/pytest -q

test-fast: install
	$(VENV)/bin/pytest -q -m "not slow"

up: install
	$(PY) -m services.cluster up

down:
	$(PY) -m services.cluster down

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) .data
