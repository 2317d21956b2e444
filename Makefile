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
export TRADAI_DAGSTER_GRAPHQL_URL ?= http://127.0.0.1:3000/graphql
# Local dry-run bots trade on the local simulated Binance exchange (simulator/binance.py) that
# `make dev` starts; `make dev TRADAI_LOCAL_EXCHANGE_URL=` sends them to the real exchange instead.
# Only for `make dev`: tests start their own exchange.
LOCAL_EXCHANGE_URL := http://127.0.0.1:8300
dev: export TRADAI_LOCAL_EXCHANGE_URL ?= $(LOCAL_EXCHANGE_URL)

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
	$(BIN)/python -m tradai_assets.bootstrap
	@echo "Dagster UI http://127.0.0.1:3000 - MLflow UI http://127.0.0.1:5000 - API http://127.0.0.1:8000/docs - Ctrl-C stops all"
	@echo "Local simulated exchange (dry-run bots): $${TRADAI_LOCAL_EXCHANGE_URL:-off, bots use the real exchange}"
	@echo "API token (12 h, development secret): export TRADAI_API_TOKEN=$$($(BIN)/tradai token)"
	@trap 'kill 0' INT TERM; \
	if [ "$$TRADAI_LOCAL_EXCHANGE_URL" = "$(LOCAL_EXCHANGE_URL)" ]; then \
		$(BIN)/python -m simulator.binance --host 127.0.0.1 --port 8300 & \
	fi; \
	$(BIN)/mlflow server --backend-store-uri "$$MLFLOW_TRACKING_URI" \
		--default-artifact-root "$$TRADAI_HOME/mlartifacts" --host 127.0.0.1 --port 5000 & \
	(cd "$$DAGSTER_HOME" && $(CURDIR)/$(BIN)/dagster dev --host 127.0.0.1 --port 3000 \
		--workspace $(CURDIR)/workspace.yaml) & \
	$(BIN)/uvicorn --factory tradai_api.app:create_app_from_environment --host 127.0.0.1 --port 8000 & \
	wait

# Two workers, a module's tests on one of them (pyproject's --dist loadfile): its fixtures are built once.
test: env
	$(BIN)/python -m pytest -n 2

clean:
	rm -rf .tradai

include deploy/images.mk
