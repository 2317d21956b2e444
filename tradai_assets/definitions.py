"""The code location: every asset, check, job and schedule, with the resources of one environment.

``TRADAI_ENV`` (``local`` by default, or ``aws``) picks the resource instances; nothing else differs.
"""

from __future__ import annotations

import dagster as dg

from resources.arctic import ArcticStore
from resources.exchange import ExchangeResource
from tradai_assets import settings
from tradai_assets.market_data import build_market_data
from tradai_assets.universe import load_universe


def build_resources(env: str) -> dict[str, dg.ConfigurableResource]:
    if env == "aws":
        return {
            "arctic": ArcticStore(uri=dg.EnvVar("ARCTICDB_URI")),
            "exchange": ExchangeResource(),
        }
    return {
        "arctic": ArcticStore(uri=settings.local_arctic_uri()),
        "exchange": ExchangeResource(),
    }


def build_definitions() -> dg.Definitions:
    env = settings.tradai_env()
    universe = load_universe(settings.universe_path())
    market_data = build_market_data(universe.markets, schedules_running=env == "aws")
    return dg.Definitions(
        assets=market_data.assets,
        asset_checks=market_data.checks,
        jobs=market_data.jobs,
        schedules=market_data.schedules,
        resources=build_resources(env),
    )


defs = build_definitions()
