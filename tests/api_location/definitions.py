"""A code location with the shapes of what the API launches: a model's training asset, a strategy's
deployment asset with its run config, the ad-hoc backtest job with its op's config, and the sweep job
with the sweep's own run config class beside the partitioned trial asset. The API tests run it under ``dagster-webserver`` with
a queued run coordinator and no daemon, so launched runs stay queued and can be read back."""

from typing import Any, Literal

import dagster as dg

from tradai_assets.sweeps import SweepConfig
from tradai_core.keys import SWEEP_JOB, SWEEP_TRIAL_KEY, SWEEP_TRIALS


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


@dg.op(name="plan_sweep")
def plan_sweep(config: SweepConfig) -> None:
    """Stands for the op of tradai_assets.sweeps' sweep job (its run config class is the real one)."""


@dg.job(name=SWEEP_JOB)
def sweep():
    plan_sweep()


@dg.asset(key=SWEEP_TRIAL_KEY, partitions_def=SWEEP_TRIALS)
def sweep_trial() -> None:
    """Stands for sweeps/trial: the API reads its partitions' statuses."""


defs = dg.Definitions(assets=[demo_model, sample_deployment, sweep_trial], jobs=[adhoc_backtest, sweep])
