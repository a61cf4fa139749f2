# twinstream — the two commands a newcomer needs are `make demo` and `make test`;
# both do all the set-up (scripts/setup.sh) first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
TW := $(VENV)/bin/twinstream
PYTEST_ARGS ?=
#: pytest-xdist processes for the unit lane (pure tests: they parallelise; the service lanes share one stack)
UNIT_WORKERS ?= auto

.PHONY: setup demo test test-fast lint lock format protos stack-up stack-down bench clean

setup: ## virtualenv from requirements.lock, broker jars, Debian packages (when root)
	@bash scripts/setup.sh

demo: setup ## the whole system end to end (faces when the data set is present, else digits)
	$(TW) demo

test: setup ## the full suite: the unit lane, then integration (one real service each) and system (the services together)
	$(PY) -m pytest tests/unit -n $(UNIT_WORKERS) $(PYTEST_ARGS)
	$(PY) -m pytest tests/integration tests/system $(PYTEST_ARGS)

test-fast: setup ## the unit lane: pure, no services, under a minute
	$(PY) -m pytest tests/unit -q -n $(UNIT_WORKERS) $(PYTEST_ARGS)

lint: setup ## ruff check + ruff format --check + mypy + the import layers (lint-imports)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

lock: ## re-resolve every dependency into requirements.lock (then commit it)
	$(PY) -m pip install -q "uv>=0.5"
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 \
	    --python-platform x86_64-manylinux_2_28 --no-header --annotation-style line -o requirements.lock

format:
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

protos: ## regenerate twinstream/_proto from protos/
	$(PY) -m cli.protogen

stack-up: setup
	$(TW) stack up

stack-down:
	$(TW) stack down

bench: setup
	$(TW) bench all

clean:
	rm -rf .twinstream .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
