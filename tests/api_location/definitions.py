"""A code location with the shapes of the assets the API launches: a model's training asset and a
strategy's deployment asset with its run config. The API tests run it under ``dagster-webserver`` with
a queued run coordinator and no daemon, so launched runs stay queued and can be read back."""

from typing import Literal

import dagster as dg


class DeploymentConfig(dg.Config):
    mode: Literal["dry_run", "live", "stopped"]
    force: bool = False


class TrainingConfig(dg.Config):
    seed: int | None = None
    trigger: str | None = None


@dg.asset(key=["strategies", "DemoModel", "model"])
def demo_model(config: TrainingConfig) -> None:
    """Stands for the training asset of the model strategy DemoModel."""


@dg.asset(key=["strategies", "SampleStrategy", "deployment"])
def sample_deployment(config: DeploymentConfig) -> None:
    """Stands for the deployment asset of SampleStrategy."""


defs = dg.Definitions(assets=[demo_model, sample_deployment])
