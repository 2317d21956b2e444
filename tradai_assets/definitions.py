"""The code location: every asset, check, job and schedule, with the resources of one environment.

``TRADAI_ENV`` (``local`` by default, or ``aws``) picks the resource instances; nothing else differs.
"""

from __future__ import annotations

import dagster as dg

from resources.arctic import ArcticStore
from resources.backtest_store import BacktestStore
from resources.exchange import ExchangeResource
from resources.freqtrade_runner import FreqtradeRunner
from resources.mlflow_tracker import MlflowTracker
from tradai_assets import settings
from tradai_assets.market_data import build_market_data
from tradai_assets.strategies import build_strategies
from tradai_assets.universe import load_universe


def build_resources(env: str) -> dict[str, dg.ConfigurableResource]:
    if env == "aws":
        arctic = ArcticStore(uri=dg.EnvVar("ARCTICDB_URI"))
        mlflow = MlflowTracker(tracking_uri=dg.EnvVar("MLFLOW_TRACKING_URI"), ui_url=dg.EnvVar("MLFLOW_UI_URL"))
    else:
        arctic = ArcticStore(uri=settings.local_arctic_uri())
        mlflow = MlflowTracker(
            tracking_uri=settings.local_mlflow_uri(), artifact_root=str(settings.tradai_home() / "mlartifacts")
        )
    return {
        "arctic": arctic,
        "exchange": ExchangeResource(),
        "backtest_store": BacktestStore(arctic=arctic),
        "freqtrade_runner": FreqtradeRunner(),
        "mlflow": mlflow,
    }


def build_definitions() -> dg.Definitions:
    env = settings.tradai_env()
    universe = load_universe(settings.universe_path())
    market_data = build_market_data(universe.markets, schedules_running=env == "aws")
    strategies = build_strategies(entries=universe.markets)
    return dg.Definitions(
        assets=market_data.assets + strategies.assets,
        asset_checks=market_data.checks + strategies.checks,
        jobs=market_data.jobs + strategies.jobs,
        schedules=market_data.schedules,
        resources=build_resources(env),
    )


defs = build_definitions()
