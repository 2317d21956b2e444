"""``automation_inputs``: reports the inputs of strategy automation that live outside Dagster.

Every 60 s it hashes the base config file and reads each model strategy's champion from its audit log
(promotions, rollbacks and first versions are all recorded there), and records a materialisation of
``strategies/base_config`` or ``strategies/<Name>/champion`` only when that value differs from the
data version last recorded. The strategy assets' automation conditions react to those data versions
(see ``tradai_assets.automation``); an unchanged input records nothing, so nothing re-runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from dagster._core.definitions.data_version import DATA_VERSION_TAG

from resources.model_registry import ModelRegistry
from tradai_core.keys import BASE_CONFIG_KEY, champion_key
from tradai_core.strategy_config import BASE_CONFIG_PATH
from tradai_core.strategy_discovery import StrategySpec, source_hash

AUTOMATION_INPUTS_SENSOR = "automation_inputs"
INTERVAL_SECONDS = 60


def current_champion(audit_log: pd.DataFrame) -> int | None:
    """The champion after the latest audit event that left one, or None (never trained or promoted)."""
    after = audit_log["champion_after"].dropna()
    return None if after.empty else int(after.iloc[-1])


def recorded_version(instance: dg.DagsterInstance, key: dg.AssetKey) -> str | None:
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return None
    return (event.asset_materialization.tags or {}).get(DATA_VERSION_TAG)


def observed_inputs(
    models: Iterable[str], registry: ModelRegistry, base_path: Path
) -> dict[dg.AssetKey, tuple[str, dict[str, Any]]]:
    """Each input's data version now, with the metadata to record beside it."""
    try:
        digest = source_hash(base_path)
    except OSError as exc:
        raise RuntimeError(f"{base_path}: cannot read the base config ({exc})") from exc
    out = {BASE_CONFIG_KEY: (digest, {"path": str(base_path), "content_hash": digest})}
    for name in models:
        champion = current_champion(registry.audit_log(name))
        if champion is not None:
            out[champion_key(name)] = (f"v{champion}", {"champion_version": champion})
    return out


def build_automation_inputs_sensor(
    specs: Iterable[StrategySpec],
    base_path: Path = BASE_CONFIG_PATH,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    models = sorted(s.name for s in specs if s.is_model)

    @dg.sensor(
        name=AUTOMATION_INPUTS_SENSOR,
        minimum_interval_seconds=INTERVAL_SECONDS,
        default_status=default_status,
        description="Records a new data version of strategies/base_config or strategies/<Name>/champion when "
        "the base config file or a model's champion changed; strategy automation reacts to those.",
    )
    def automation_inputs(context: dg.SensorEvaluationContext, model_registry: ModelRegistry):
        events = []
        for key, (version, metadata) in observed_inputs(models, model_registry, base_path).items():
            before = recorded_version(context.instance, key)
            if before == version:
                continue
            context.log.info(f"{key.to_user_string()}: data version {before} -> {version}")
            events.append(
                dg.AssetMaterialization(
                    asset_key=key,
                    tags={DATA_VERSION_TAG: version},
                    metadata=metadata,
                    description=f"changed from {before}" if before else "first recorded",
                )
            )
        if not events:
            return dg.SkipReason("no automation input changed")
        return dg.SensorResult(asset_events=events)

    return automation_inputs
