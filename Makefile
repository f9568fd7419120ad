# Chitram: `make run` serves the API on its embedded defaults; `make test` runs every check.
# Both install what is missing first (uv from PyPI into .tools/, then the locked dependencies).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/backend/.venv
# Installed packages are compiled once here: with PYTHONDONTWRITEBYTECODE set (as on our machines),
# every process would otherwise compile them again at each start (about 10 s for a worker or server).
export UV_COMPILE_BYTECODE := 1

UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
RUN := cd backend && $(UV) run --frozen --no-sync
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: help setup system-deps run worker migrate strip-metadata test lint pytest format bench

help:
	@echo "make run    serve Chitram on $(HOST):$(PORT) (SQLite + local storage unless DATABASE_URL/STORAGE_BACKEND say otherwise)"
	@echo "make worker the worker tier: one job process per core (needs JOB_QUEUE=postgres and a PostgreSQL DATABASE_URL)"
	@echo "make test   lint, type check and the whole test suite (needs PostgreSQL on TEST_DATABASE_URL)"
	@echo "make lint   ruff, formatting, mypy and the house rules only"
	@echo "make strip-metadata  strip the metadata of originals stored before stripping (resumable)"
	@echo "make format apply ruff's fixes and formatting"
	@echo "make bench  measure against this machine's ceilings; writes docs/performance.md (BENCH_ARGS=--profile for py-spy)"

$(CURDIR)/.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

setup: $(if $(findstring .tools,$(UV)),$(CURDIR)/.tools/bin/uv)
	cd backend && $(UV) sync --frozen --quiet

migrate: setup
	$(RUN) alembic upgrade head

run: migrate
	$(RUN) env HOST=$(HOST) PORT=$(PORT) python -m app

# The worker tier (ADR 0016): with JOB_QUEUE=postgres, API processes queue jobs and these processes run
# them. Run it beside `make run` with the same DATABASE_URL, STORAGE_BACKEND and REDIS_URL.
worker: migrate
	$(RUN) python -m app.worker

# Rewrite originals stored before metadata stripping (docs/operations.md); safe to stop and run again.
strip-metadata: migrate
	$(RUN) python -m app.admin strip-metadata

# Debian packages the checks need (caddy, chromium, wrk, nginx, postgresql-client, and prometheus for its
# promtool); no-op when present.
system-deps:
	bash scripts/install-system-deps.sh

# The same hooks as .pre-commit-config.yaml (whitespace, ruff, mypy, hadolint, shellcheck, compose
# schema, private keys), then the deployment files for real (caddy validate, compose config, env names).
lint: setup system-deps
	$(RUN) pre-commit run --all-files --show-diff-on-failure
	bash scripts/lint-deploy.sh
	$(RUN) ruff check ../bench
	$(RUN) ruff format --check ../bench
	@# One place commits the request's session (app/database.py); services only flush.
	@if grep -rn '\.commit()' backend/app --include='*.py' | grep -v 'app/database.py'; then \
		echo "session.commit() outside app/database.py"; exit 1; fi

pytest: setup system-deps
	$(RUN) pytest

test: lint pytest

format: setup
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

bench: setup system-deps
	bash bench/run.sh $(BENCH_ARGS)
