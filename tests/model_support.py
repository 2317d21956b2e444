"""A code location with model strategies over the offline spot sample: market data, strategies (config,
backtest and model assets), MLflow on SQLite and ArcticDB on LMDB, all in a temporary directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from resources.arctic import ArcticStore
from resources.backtest_store import BacktestStore
from resources.exchange import ExchangeResource
from resources.freqtrade_runner import FreqtradeRunner
from resources.mlflow_tracker import MlflowTracker
from resources.model_registry import ModelRegistry
from resources.notifier import Notifier
from tests.backtest_support import EXAMPLE_STRATEGIES, spot_sample_entry
from tests.market_data_support import write_universe
from tradai_assets.market_data import build_market_data, markets_key, ohlcv_key
from tradai_assets.model_training import model_key
from tradai_assets.strategies import backtest_key, build_strategies, config_key

ASSETS_JOB = "location_assets"


def strategy_variant(destination: Path, name: str, replacements: dict[str, str], source: str = "MlMomentum") -> Path:
    """A copy of an example strategy under another class name, with source text replaced."""
    text = (EXAMPLE_STRATEGIES / f"{source}.py").read_text().replace(f"class {source}(", f"class {name}(")
    for old, new in replacements.items():
        assert old in text, f"{old!r} is not in {source}.py"
        text = text.replace(old, new)
    destination.mkdir(parents=True, exist_ok=True)
    path = destination / f"{name}.py"
    path.write_text(text)
    return path


class ModelLocation:
    def __init__(self, root: Path, strategies: Path):
        self.root = root
        entries = write_universe(root / "universe.yaml", [spot_sample_entry()])
        self.entry = entries[0]
        self.arctic = ArcticStore(uri=f"lmdb://{root / 'arctic'}")
        self.store = BacktestStore(arctic=self.arctic)
        self.tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
        self.mlflow = MlflowTracker(tracking_uri=self.tracking_uri, artifact_root=str(root / "mlartifacts"))
        self.registry = ModelRegistry(tracking_uri=self.tracking_uri, store=self.arctic)
        self.runner = FreqtradeRunner(workdir=str(root))
        self.strategies = build_strategies(strategies, entries)
        self.specs = {s.name: s for s in self.strategies.specs}
        market_data = build_market_data(entries, schedules_running=False)
        self.defs = dg.Definitions(
            assets=market_data.assets + self.strategies.assets,
            jobs=self.strategies.jobs + [dg.define_asset_job(ASSETS_JOB)],
            resources={
                "arctic": self.arctic,
                "exchange": ExchangeResource(max_retries=0),
                "backtest_store": self.store,
                "freqtrade_runner": self.runner,
                "mlflow": self.mlflow,
                "model_registry": self.registry,
                "notifier": Notifier(),
            },
        )
        self.job = self.defs.resolve_job_def(ASSETS_JOB)

    def load_sample(self, instance: dg.DagsterInstance, first: str = "2018-01-10", last: str = "2018-01-30") -> None:
        from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

        assert self.job.execute_in_process(instance=instance, asset_selection=[markets_key(self.entry)]).success
        result = self.job.execute_in_process(
            instance=instance, asset_selection=[ohlcv_key(self.entry)],
            tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
        )
        assert result.success

    def train(self, name: str, instance: dg.DagsterInstance, seed: int | None = None, trigger: str | None = None):
        key = model_key(name)
        config = {k: v for k, v in {"seed": seed, "trigger": trigger}.items() if v is not None}
        run_config = {"ops": {key.to_python_identifier(): {"config": config}}} if config else None
        return self.job.execute_in_process(instance=instance, asset_selection=[key], run_config=run_config,
                                           raise_on_error=False)

    def backtest(self, name: str, instance: dg.DagsterInstance, overrides: dict[str, Any] | None = None):
        keys = [config_key(name), backtest_key(name)]
        run_config = (
            {"ops": {config_key(name).to_python_identifier(): {"config": {"overrides": overrides}}}} if overrides else None
        )
        return self.job.execute_in_process(instance=instance, asset_selection=keys, run_config=run_config, raise_on_error=False)

    def run_job(self, name: str, instance: dg.DagsterInstance, op: str, config: dict[str, Any]):
        return self.defs.resolve_job_def(name).execute_in_process(
            instance=instance, run_config={"ops": {op: {"config": config}}}, raise_on_error=False
        )

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def registered_models(self) -> list[str]:
        return [m.name for m in self.client().search_registered_models()]
