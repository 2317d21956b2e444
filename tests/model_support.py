"""A code location with model strategies over the offline spot sample: market data, strategies (config,
backtest and model assets), MLflow on SQLite and ArcticDB on LMDB, all in a temporary directory."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from resources.arctic import ArcticStore
from resources.model_registry import ModelRegistry
from resources.notifier import Notifier
from tests.backtest_support import EXAMPLE_STRATEGIES, BacktestLocation
from tradai_core.keys import model_key


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


class ModelLocation(BacktestLocation):
    """The backtest location plus what model strategies need: the model registry and a notifier."""

    def __init__(self, root: Path, strategies: Path):
        self.registry = ModelRegistry(tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
                                      store=ArcticStore(uri=f"lmdb://{root / 'arctic'}"))
        super().__init__(root, strategies, resources={"model_registry": self.registry, "notifier": Notifier()})

    def train(self, name: str, instance: dg.DagsterInstance, seed: int | None = None, trigger: str | None = None):
        key = model_key(name)
        config = {k: v for k, v in {"seed": seed, "trigger": trigger}.items() if v is not None}
        run_config = {"ops": {key.to_python_identifier(): {"config": config}}} if config else None
        return self.job.execute_in_process(instance=instance, asset_selection=[key], run_config=run_config,
                                           raise_on_error=False)

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def registered_models(self) -> list[str]:
        return [m.name for m in self.client().search_registered_models()]
