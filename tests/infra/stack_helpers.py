"""Reading the recorded stacks: task definitions, policies."""

from __future__ import annotations

import json
from typing import Any

from infra.offline import StackRecord


def containers(record: StackRecord, family_suffix: str) -> list[dict[str, Any]]:
    """Container definitions of the task definition ``tradai-<env>-<family_suffix>``."""
    task = next(
        r
        for r in record.of_type("aws:ecs/taskDefinition:TaskDefinition")
        if r.inputs["family"] == f"tradai-{record.stack}-{family_suffix}"
    )
    return json.loads(task.inputs["containerDefinitions"])


def environment(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("environment", [])}


def secret_refs(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["valueFrom"] for item in container.get("secrets", [])}


def policy_documents(record: StackRecord) -> dict[str, dict[str, Any]]:
    """Inline IAM policies by role name, a role's several policies merged into one document."""
    # A role's mock id is its name, and a RolePolicy names its role by id.
    merged: dict[str, dict[str, Any]] = {}
    for r in record.of_type("aws:iam/rolePolicy:RolePolicy"):
        document = json.loads(r.inputs["policy"])
        entry = merged.setdefault(r.inputs["role"], {"Version": document["Version"], "Statement": []})
        entry["Statement"] += statements(document)
    return merged


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    found = document["Statement"]
    return found if isinstance(found, list) else [found]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


SECRET_SIGNATURE = "4dabf18193072939515e22adb298388d"  # how Pulumi marks a secret value on the wire


def secret_value(value: Any) -> Any:
    """The plain value of a Pulumi secret input; fails if the input is not marked secret."""
    assert isinstance(value, dict) and SECRET_SIGNATURE in value, f"not a secret: {value!r}"
    return value["value"]
