"""Fixtures for the deployment tests: each stack evaluated once under Pulumi's mocks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.offline import StackRecord, record_stack, stack_config
from resources import aws_contract

REPO = Path(__file__).resolve().parents[2]


def pytest_configure(config):
    # pulumi_aws warns about its own deprecated classes whenever a module is imported.
    config.addinivalue_line("filterwarnings", r"ignore::DeprecationWarning:pulumi_aws\..*")


STACKS = aws_contract.ENVIRONMENTS


@pytest.fixture(scope="session")
def stacks() -> dict[str, StackRecord]:
    return {stack: record_stack(stack) for stack in STACKS}


@pytest.fixture(scope="session")
def dev_with_api() -> StackRecord:
    """dev with the optional values set: the HTTP API's command and a Route 53 zone."""
    config = stack_config("dev")
    config["tradai:apiCommand"] = json.dumps(["tradai-api", "--port", str(aws_contract.API_PORT)])
    config["tradai:hostedZoneId"] = "Z0123456789ABCDEFGHIJ"
    return record_stack("dev", config)


@pytest.fixture(scope="session")
def dagster_yaml() -> dict[str, Any]:
    return yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())


@pytest.fixture(scope="session")
def workspace_yaml() -> dict[str, Any]:
    return yaml.safe_load((REPO / "deploy" / "workspace.yaml").read_text())
