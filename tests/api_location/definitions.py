"""A code location with the shapes of what the API launches: a model's training asset, a strategy's
deployment asset with its run config, and the ad-hoc backtest job with its op's config. The API tests run it under ``dagster-webserver`` with
a queued run coordinator and no daemon, so launched runs stay queued and can be read back."""

from typing import Any, Literal

import dagster as dg


class DeploymentConfig(dg.Config):
    mode: Literal["dry_run", "live", "stopped"]
    force: bool = False


class TrainingConfig(dg.Config):
    seed: int | None = None
    trigger: str | None = None


class AdhocBacktestConfig(dg.Config):
    strategy: str
    timerange: str | None = None
    pairs: list[str] | None = None
    timeframe: str | None = None
    overrides: dict[str, Any] = {}


@dg.op(name="backtest_with_overrides")
def backtest_with_overrides(config: AdhocBacktestConfig) -> None:
    """Stands for the op of tradai_assets.strategies' adhoc_backtest job."""


@dg.job(name="adhoc_backtest")
def adhoc_backtest():
    backtest_with_overrides()


@dg.asset(key=["strategies", "DemoModel", "model"])
def demo_model(config: TrainingConfig) -> None:
    """Stands for the training asset of the model strategy DemoModel."""


@dg.asset(key=["strategies", "SampleStrategy", "deployment"])
def sample_deployment(config: DeploymentConfig) -> None:
    """Stands for the deployment asset of SampleStrategy."""


defs = dg.Definitions(assets=[demo_model, sample_deployment], jobs=[adhoc_backtest])
