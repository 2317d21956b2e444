"""What the Dagster instance recorded of the product's assets, read the same way by assets and sensors."""

from __future__ import annotations

from typing import Any

import dagster as dg

from tradai_core.keys import deployment_key


def latest_deployment(instance: dg.DagsterInstance, name: str) -> tuple[float, dict[str, Any]] | None:
    """(timestamp, metadata values) of the deployment's latest materialisation, or None."""
    event = instance.get_latest_materialization_event(deployment_key(name))
    if event is None or event.asset_materialization is None:
        return None
    return event.timestamp, {k: v.value for k, v in event.asset_materialization.metadata.items()}
