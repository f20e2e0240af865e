# One entry point for every task. `make install` once, then `make up` (run) or `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

BUF    := .tools/node_modules/.bin/buf

.PHONY: install protos protos-check proto-lint proto-breaking lint test test-fast up down sandbox bench clean

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

# buf (the npm package ships the real binary) lints the API; breaking compares with main.
$(BUF):
	mkdir -p .tools
	[ -f .tools/package.json ] || echo '{"name": "agents-tools", "private": true}' > .tools/package.json
	cd .tools && npm install --silent --no-audit --no-fund @bufbuild/buf@1.75.0

proto-lint: $(BUF)
	$(BUF) lint

proto-breaking: $(BUF)
	$(BUF) breaking --against '.git#branch=main'

lint: install
	$(VENV)/bin/ruff check .

test: install protos-check proto-lint lint
	$(VENV)/bin/pytest -q

test-fast: install
	$(VENV)/bin/pytest -q -m "not slow"

up: install
	$(PY) -m services.cluster up

down:
	$(PY) -m services.cluster down

# A fake Mattermost (:8065) and fake OpenAI (:8081) to try the README's walkthrough against.
sandbox: install
	$(PY) -m tests.fakes.sandbox

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) .data
