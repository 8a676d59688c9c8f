# Switchyard: the single entry point. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv
PY := $(VENV)/bin/python
PROTO_OUT := libs/gateway-proto/src
PROTOS := $(shell find proto -name '*.proto' | sort)
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) uv.lock pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml devtools/pyproject.toml)
	$(UV) sync --frozen --all-packages --group dev
	@touch $@

.PHONY: install
install: $(VENV)/.synced ## Create .venv and install the pinned dependencies (uv.lock)

.PHONY: lock
lock: $(UV) ## Re-resolve uv.lock after changing a pyproject.toml
	$(UV) lock

.PHONY: proto
proto: install ## Generate gRPC code from proto/ into libs/gateway-proto
	$(PY) -m devtools.protogen --proto-dir proto --out $(PROTO_OUT)

.PHONY: proto-check
proto-check: install ## Fail if the committed generated code differs from proto/
	$(PY) -m devtools.protogen --proto-dir proto --out $(PROTO_OUT) --check

.PHONY: run
run: install proto-check ## Run the whole gateway (NATS, five services, fake provider) in the foreground
	$(PY) -m devtools.run

.PHONY: lint
lint: install ## Ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

.PHONY: format
format: install ## Ruff format and fix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: typecheck
typecheck: install ## mypy over the services and libraries
	$(VENV)/bin/mypy libs/gateway-common/src services/*/src devtools/src

.PHONY: test-unit
test-unit: install promtool-deps pg-deps ## Unit tests of every package (no processes started)
	$(PY) -m pytest -q -n 2 libs services devtools tests/conformance tests/deploy

NODE_CLIENT := tests/integration/node

.PHONY: node-deps
node-deps: ## Install the pinned OpenAI Node SDK for the integration tests (skipped without npm)
	@if command -v npm >/dev/null 2>&1; then \
		cd $(NODE_CLIENT) && npm ci --no-audit --no-fund --loglevel=error; \
	else \
		echo "npm not found: the Node SDK client test will be skipped"; \
	fi

.PHONY: promtool-deps
promtool-deps: ## Install Debian's prometheus package for promtool (the alert-rule tests) when missing (root, Debian)
	@if ! command -v promtool >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; \
		else \
			echo "promtool missing and not root with apt-get: tests/deploy/test_alert_rules.py's promtool tests will be skipped"; \
		fi; \
	fi

.PHONY: browser-deps
browser-deps: ## Install Debian's chromium for the console's browser test when missing (root, Debian)
	@if ! command -v chromium >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
		else \
			echo "chromium missing and not root with apt-get: the console browser test will be skipped"; \
		fi; \
	fi

.PHONY: test-integration
test-integration: install node-deps browser-deps pg-deps ## Integration tests: real nats-server, services, SQLite and PostgreSQL
	$(PY) -m pytest -q -n 2 --dist loadgroup tests/integration

.PHONY: k8s-check
k8s-check: install ## Render every deploy/k8s overlay (kubectl kustomize) and validate it offline against the Kubernetes schemas
	$(PY) -m devtools.k8scheck

.PHONY: test
test: proto-check lint typecheck k8s-check test-unit test-integration ## Everything CI runs

.PHONY: bench-rag
bench-rag: install ## Retrieval quality (recall@5, MRR) and speed at 10,000 chunks on SQLite and PostgreSQL; installs rag's 'local' extra; figures in docs/benchmarks.md (BENCH_RAG_ARGS="--chunks 1000")
	$(UV) sync --frozen --all-packages --group dev --extra local
	HF_HUB_OFFLINE=1 $(PY) -m devtools.bench.rag --write $(BENCH_RAG_ARGS)

.PHONY: pg-deps
pg-deps: ## pgvector for the local PostgreSQL when missing (root, Debian: the package, else Debian's pgvector source built here), then CREATE EXTENSION in template1 and test; never fails: without it rag's vector-index tests skip and say why
	@sh devtools/scripts/pg-deps.sh

.PHONY: bench-deps
bench-deps: ## Install the benchmark's system tools (nginx-light, wrk) when missing (root, Debian)
	@if ! command -v wrk >/dev/null || ! { command -v nginx >/dev/null || test -x /usr/sbin/nginx; }; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk; \
	fi

.PHONY: bench
bench: install bench-deps ## Same load on nginx, LiteLLM and Switchyard; figures in docs/benchmarks.md (BENCH_ARGS="--duration 3 --rounds 1 --only switchyard")
	$(PY) -m devtools.bench $(BENCH_ARGS)

.PHONY: soak
soak: install bench-deps ## Soak: 1,000,000 mixed requests through the whole stack; flat memory, exact ledger (SOAK_ARGS="--requests 30000")
	$(PY) -m devtools.bench.soak $(SOAK_ARGS)

.PHONY: bench-scaleout
bench-scaleout: install bench-deps ## Scale-out: 1, 2, 4 edge+router replicas on one NATS; req/s, CPU and shared-state cost per request (SCALEOUT_ARGS="--seconds 5")
	$(PY) -m devtools.bench.scaleout $(SCALEOUT_ARGS)

.PHONY: drills
drills: install ## Reliability drills, full forms: one line each; the table goes to docs/reliability.md (DRILLS_ARGS="--only d09")
	$(PY) -m devtools.drills --full $(DRILLS_ARGS)

.PHONY: precommit
precommit: proto format lint typecheck test-unit ## Before a commit: generate, format, lint, typecheck, unit tests

.PHONY: check
check: precommit ## precommit, then fail if that changed the tree
	@git diff --exit-code --stat || (echo "the tree changed: commit the result of make precommit"; exit 1)

.PHONY: clean
clean: ## Remove the virtualenv and embedded data
	rm -rf $(VENV) .data
