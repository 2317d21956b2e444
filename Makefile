# make dev   - build the environment from uv.lock, load the offline sample, start the product
# make test  - build the environment from uv.lock and run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tradai/tools

export TRADAI_HOME ?= $(CURDIR)/.tradai
export DAGSTER_HOME ?= $(TRADAI_HOME)/dagster
export MLFLOW_TRACKING_URI ?= sqlite:///$(TRADAI_HOME)/mlflow.db
export TRADAI_ENV ?= local
# The API's local signing secret (hs256). Development only: AWS verifies Cognito tokens (docs/api.md).
export TRADAI_API_JWT_SECRET ?= tradai-local-development-secret-not-for-aws
# `make dev` (tradai_dev/devserver.py) serves on 127.0.0.1 at TRADAI_DAGSTER_PORT (3000),
# TRADAI_MLFLOW_PORT (5000), TRADAI_API_PORT (8000) and TRADAI_LOCAL_EXCHANGE_PORT (8300); local
# dry-run bots trade on the simulated exchange it starts, unless TRADAI_LOCAL_EXCHANGE_URL is set
# (`make dev TRADAI_LOCAL_EXCHANGE_URL=` sends them to the real exchange).

UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(TOOLS)/bin/uv
endif
VENV := .venv
BIN := $(VENV)/bin

.PHONY: dev test env clean

$(TOOLS)/bin/uv:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

env: $(UV)
	$(UV) sync --frozen --python $(PYTHON) --quiet

dev: env
	@$(BIN)/python -m tradai_dev.devserver

# Two workers, a module's tests on one of them (pyproject's --dist loadfile): its fixtures are built once.
test: env
	$(BIN)/python -m pytest -n 2

clean:
	rm -rf .tradai

include deploy/images.mk
