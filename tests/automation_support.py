"""Strategy automation over the offline spot sample: a code location that is rebuilt from its files on
every ``reload()`` (as Dagster reloads a code location), and automation ticks run in-process against a
real Dagster instance: the ``automation_inputs`` sensor, whose asset events are stored as the sensor
daemon stores them, then one evaluation of every automation condition with the previous tick's cursor."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import yaml

from resources.model_registry import ModelRegistry
from sensors.automation_inputs import build_automation_inputs_sensor
from tests.backtest_support import BacktestLocation, copy_strategies
from tradai_assets.automation import AUTOMATION_SENSOR, build_automation_sensor
from tradai_core.strategy_config import BASE_CONFIG_PATH

STRATEGIES = ("SampleStrategy", "RsiMeanReversion")


class AutomationLocation:
    def __init__(self, root: Path, strategies: tuple[str, ...] = STRATEGIES, pairs: list[str] | None = None):
        """``pairs``: the spot sample's pairs the universe keeps and the base config trades (all ten when None)."""
        self.root = root
        self.pairs = pairs
        self.strategies_dir = copy_strategies(root / "strategies", *strategies)
        self.base_path = root / "backtest_base.yaml"
        base = BASE_CONFIG_PATH.read_text()
        if pairs:
            shipped = yaml.safe_load(base)["exchange"]["pair_whitelist"]
            base = base.replace(f"pair_whitelist: [{', '.join(shipped)}]", f"pair_whitelist: [{', '.join(pairs)}]")
            assert yaml.safe_load(base)["exchange"]["pair_whitelist"] == list(pairs), "the base config's pairs moved"
        self.base_path.write_text(base)
        self.cursor = None
        self.reload()

    def reload(self) -> None:
        """Rebuild the definitions from the strategy files and the base config, as a code-location reload does."""
        self.location = BacktestLocation(self.root, self.strategies_dir, base_path=self.base_path, spot_pairs=self.pairs)
        specs = self.location.strategies.specs
        self.registry = ModelRegistry(tracking_uri=self.location.tracking_uri, store=self.location.arctic)
        self.inputs_sensor = build_automation_inputs_sensor(specs, self.base_path)
        self.automation_sensor = build_automation_sensor(specs)
        self.defs = self.location.defs

    def tick(self, instance: dg.DagsterInstance) -> set[dg.AssetKey]:
        """One automation tick; returns the asset keys it requested."""
        with dg.build_sensor_context(instance=instance, resources={"model_registry": self.registry}) as context:
            outcome = self.inputs_sensor(context)
        for event in getattr(outcome, "asset_events", None) or []:
            instance.report_runless_asset_event(event)
        result = dg.evaluate_automation_conditions(
            defs=self.defs,
            instance=instance,
            cursor=self.cursor,
            asset_selection=self.automation_sensor.asset_selection,
        )
        self.cursor = result.cursor
        return {r.key for r in result.results if r.true_subset.size}

    def materialise(self, instance: dg.DagsterInstance, keys) -> None:
        result = self.location.job.execute_in_process(
            instance=instance, asset_selection=list(keys), raise_on_error=False
        )
        assert result.success, [e.message for e in result.all_events if e.is_failure]


__all__ = ["AUTOMATION_SENSOR", "AutomationLocation"]
