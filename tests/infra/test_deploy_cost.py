"""The cost estimate in docs/deploy.md is the program's, itemised, and dev stays within 100 USD."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra import cost
from resources import aws_contract

DOCS = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text()


@pytest.fixture(scope="module")
def estimates():
    return {stack: cost.stack_estimate(stack) for stack in aws_contract.ENVIRONMENTS}


def test_dev_costs_at_most_100_usd_a_month(estimates):
    assert cost.total(estimates["dev"]) <= 100


@pytest.mark.parametrize("stack", aws_contract.ENVIRONMENTS)
def test_docs_show_the_itemised_estimate_of_each_stack(estimates, stack):
    assert cost.markdown(stack, estimates[stack]) in DOCS


def test_the_estimate_follows_the_resources(estimates):
    items = {stack: {line.item: line for line in lines} for stack, lines in estimates.items()}
    assert "NAT instance" in items["dev"] and "NAT gateways" not in items["dev"]
    assert "NAT gateways" in items["prod"] and "Multi-AZ" in items["prod"]["RDS PostgreSQL"].basis
    assert items["prod"]["RDS PostgreSQL"].usd > 2 * items["dev"]["RDS PostgreSQL"].usd
    for name in ("webserver", "daemon", "code-location", "mlflow", "api"):
        assert "FARGATE_SPOT" in items["dev"][f"ECS service {name}"].basis
        assert items["prod"][f"ECS service {name}"].basis.endswith(", FARGATE")
    assert cost.total(estimates["prod"]) > cost.total(estimates["dev"])
