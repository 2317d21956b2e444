"""Building a market-data code location from a universe written by a test, against real local stores."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
import yaml
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from resources.arctic import ArcticStore
from resources.exchange import ExchangeResource
from tradai_assets.market_data import build_market_data, markets_key, ohlcv_key
from tradai_core.universe import UniverseEntry, load_universe

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "tradai_assets" / "sample"
SAMPLE_DATA = SAMPLE / "data" / "binance"
SPOT_PAIRS = ["ADA/BTC", "DASH/BTC", "ETC/BTC", "ETH/BTC", "LTC/BTC", "NXT/BTC", "TRX/BTC", "XLM/BTC", "XMR/BTC", "ZEC/BTC"]

# Pools serialise writers across runs exactly as the shipped dagster.yaml does.
INSTANCE_OVERRIDES = {"concurrency": {"pools": {"default_limit": 1, "granularity": "op"}}}


def write_universe(path: Path, entries: list[dict[str, Any]]) -> list[UniverseEntry]:
    # Whole or not at all: the processes of a multiprocess run rebuild the location, each writing this
    # file, while another may be reading it.
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(yaml.safe_dump({"markets": entries}))
    os.replace(partial, path)
    return load_universe(path).markets


class NoWaitExchange(ExchangeResource):
    """The exchange resource, except that retries wait no real time: the waits asked are recorded."""

    waits: ClassVar[list[float]] = []  # shared by copies Dagster makes of the resource; a test clears it

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)


class MarketDataLocation:
    """The market-data definitions for some universe entries, with resources a test chooses."""

    def __init__(self, entries: list[UniverseEntry], arctic: ArcticStore, exchange: ExchangeResource | None = None):
        self.entries = {e.name: e for e in entries}
        self.arctic = arctic
        built = build_market_data(entries, schedules_running=False)
        self.defs = dg.Definitions(
            assets=built.assets,
            asset_checks=built.checks,
            jobs=built.jobs,
            schedules=built.schedules,
            resources={"arctic": arctic, "exchange": exchange or ExchangeResource(max_retries=0)},
        )
        self.job = self.defs.resolve_implicit_global_asset_job_def()

    def markets(self, name: str, instance: dg.DagsterInstance, run_config: dict | None = None, **kwargs):
        key = markets_key(self.entries[name])
        config = {"ops": {key.to_python_identifier(): {"config": run_config}}} if run_config else None
        return self.job.execute_in_process(
            instance=instance, asset_selection=[key], run_config=config, raise_on_error=False, **kwargs
        )

    def ohlcv(self, name: str, instance: dg.DagsterInstance, first: str, last: str, run_config: dict | None = None):
        """Materialise the days first..last (inclusive) in one run, with the candle checks."""
        key = ohlcv_key(self.entries[name])
        config = {"ops": {key.to_python_identifier(): {"config": run_config}}} if run_config else None
        return self.job.execute_in_process(
            instance=instance,
            asset_selection=[key],
            run_config=config,
            tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
            raise_on_error=False,
        )


def check_results(result) -> dict[str, Any]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def materialization_metadata(result, key: dg.AssetKey) -> dict[str, Any]:
    events = [m for m in result.get_asset_materialization_events() if m.asset_key == key]
    assert events, f"no materialization of {key.to_user_string()}"
    return {k: v.value for k, v in events[-1].materialization.metadata.items()}


def failure_message(result) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures, "the run did not fail"
    error = failures[0].step_failure_data.error
    return error.message + "".join(c.message for c in _causes(error))


def _causes(error):
    while error.cause is not None:
        error = error.cause
        yield error
