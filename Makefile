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
	@echo "Dagster UI http://127.0.0.1:3000 - MLflow UI http://127.0.0.1:5000 - Ctrl-C stops both"
	@trap 'kill 0' INT TERM; \
	$(BIN)/mlflow server --backend-store-uri "$$MLFLOW_TRACKING_URI" \
		--default-artifact-root "$$TRADAI_HOME/mlartifacts" --host 127.0.0.1 --port 5000 & \
	(cd "$$DAGSTER_HOME" && $(CURDIR)/$(BIN)/dagster dev --host 127.0.0.1 --port 3000 \
		--workspace $(CURDIR)/workspace.yaml) & \
	wait

test: env
	$(BIN)/python -m pytest

clean:
	rm -rf .tradai

include deploy/images.mk
