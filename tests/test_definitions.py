"""The code location as Dagster loads it: validation, what it holds, and how it differs per environment."""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from tests.market_data_support import MarketDataLocation, write_universe
from tradai_assets.definitions import build_definitions
from tradai_core.keys import drift_check_key

REPO = Path(__file__).resolve().parent.parent


def test_dagster_definitions_validate(tradai_home):
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_local_definitions_hold_the_market_data_assets_and_checks(tradai_home):
    defs = build_definitions()
    keys = {spec.key.to_user_string() for spec in defs.resolve_all_asset_specs()}
    assert {"markets/binance/spot", "markets/binance/futures", "ohlcv/binance/spot", "ohlcv/binance/futures"} <= keys
    checks = {k.name for k in defs.resolve_asset_graph().asset_check_keys}
    assert {"no_duplicate_candles", "no_missing_candles", "ohlc_sanity", "monotonic_utc_index"} <= checks
    ohlcv = defs.resolve_assets_def(dg.AssetKey(["ohlcv", "binance", "spot"]))
    assert ohlcv.partitions_def.get_partition_keys()[0] == "2018-01-10"
    assert ohlcv.partitions_def.get_partition_keys()[-1] == "2018-01-30"
    schedules = {s.name: s for s in defs.schedules}
    assert schedules["sync_binance_spot_hourly"].default_status == dg.DefaultScheduleStatus.STOPPED
    # Drift of the shipped model strategy: a check on its model asset, run by a schedule that runs by default.
    assert drift_check_key("MlMomentum") in defs.resolve_asset_graph().asset_check_keys
    assert schedules["drift_checks_schedule"].default_status == dg.DefaultScheduleStatus.RUNNING
    assert str(defs.resources["arctic"].uri).startswith(f"lmdb://{tradai_home}")


def test_aws_schedules_run_by_default_and_arcticdb_comes_from_the_environment(tradai_home, monkeypatch):
    monkeypatch.setenv("TRADAI_ENV", "aws")
    defs = build_definitions()
    assert {s.default_status for s in defs.schedules} == {dg.DefaultScheduleStatus.RUNNING}
    assert isinstance(defs.resources["arctic"].uri, dg.EnvVar)


def test_unknown_environment_is_refused(tradai_home, monkeypatch):
    monkeypatch.setenv("TRADAI_ENV", "staging")
    with pytest.raises(ValueError, match="TRADAI_ENV='staging'"):
        build_definitions()


def test_sync_schedule_asks_for_yesterday_and_today_and_skips_ended_histories(tmp_path, arctic):
    live = {"exchange": "binance", "market_type": "spot", "pairs": ["ETH/BTC"], "timeframes": ["5m"], "start": "2024-01-01"}
    ended = {**live, "market_type": "futures", "pairs": ["XRP/USDT:USDT"], "end": "2024-02-01"}
    location = MarketDataLocation(write_universe(tmp_path / "u.yaml", [live, ended]), arctic)
    schedules = {s.name: s for s in location.defs.schedules}
    when = dt.datetime(2024, 3, 5, 10, 7, tzinfo=dt.UTC)
    with dg.build_schedule_context(scheduled_execution_time=when) as context:
        request = schedules["sync_binance_spot_hourly"].evaluate_tick(context).run_requests[0]
        skipped = schedules["sync_binance_futures_hourly"].evaluate_tick(context)
    assert request.tags[ASSET_PARTITION_RANGE_START_TAG] == "2024-03-04"
    assert request.tags[ASSET_PARTITION_RANGE_END_TAG] == "2024-03-05"
    assert not skipped.run_requests and "ends on 2024-02-01" in skipped.skip_message
