# twinstream — the two commands a newcomer needs are `make demo` and `make test`;
# both do all the set-up (scripts/setup.sh) first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
TW := $(VENV)/bin/twinstream
PYTEST_ARGS ?=

.PHONY: setup demo test test-unit lint format protos stack-up stack-down bench clean

setup: ## virtualenv, Python packages, broker jars, Debian packages (when root)
	@bash scripts/setup.sh

demo: setup ## the whole system end to end
	$(TW) demo

test: setup ## the full suite: unit, integration (real Kafka/Redis/Milvus/Ray/Prometheus), e2e
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: setup ## ruff check + ruff format --check + mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format:
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

protos: ## regenerate twinstream/_proto from protos/
	$(PY) -m twinstream.protogen

stack-up: setup
	$(TW) stack up

stack-down:
	$(TW) stack down

bench: setup
	$(TW) bench all

clean:
	rm -rf .twinstream .pytest_cache .mypy_cache .ruff_cache
