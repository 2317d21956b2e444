"""Strategy automation does not spin: on the offline sample, ticks with nothing changed request nothing;
an edited strategy file requests exactly its config and backtest, once; a changed base config re-runs
configs, then the backtests whose config changed; a failing blocking candle check holds backtests back
until it passes again. Ticks run against a real Dagster instance (tests/automation_support.py)."""

from __future__ import annotations

import pandas as pd
import pytest
from dagster._core.definitions.data_version import DATA_VERSION_TAG

from tests.automation_support import AutomationLocation
from tradai_assets.market_data import ohlcv_key
from tradai_core.candles import candle_symbol
from tradai_core.keys import backtest_key, champion_key, config_key

# The two smallest shipped strategies, on two pairs and one day of the spot sample: the tests count
# requested assets, which depend on versions and checks, not on how much a backtest reads.
PLAIN, OTHER = "EmaCross", "RsiMeanReversion"
PAIRS = ["ETH/BTC", "LTC/BTC"]
DAY = "2018-01-10"


@pytest.fixture(scope="module")
def location(tmp_path_factory, module_instance) -> AutomationLocation:
    """One day of two spot pairs, both strategies' configs and backtests materialised once (real runs)."""
    location = AutomationLocation(tmp_path_factory.mktemp("automation"), (PLAIN, OTHER), PAIRS)
    location.location.load_sample(module_instance, DAY, DAY)
    assert location.tick(module_instance) == set()  # records the base config; nothing is materialised yet
    location.materialise(module_instance, [k for n in (PLAIN, OTHER) for k in (config_key(n), backtest_key(n))])
    return location


def ticks(location: AutomationLocation, instance, count: int) -> list[set]:
    return [location.tick(instance) for _ in range(count)]


def test_ten_ticks_with_nothing_changed_request_nothing(location, module_instance):
    assert ticks(location, module_instance, 10) == [set()] * 10


def test_an_edited_strategy_file_requests_its_config_and_backtest_once(location, module_instance):
    edited = location.strategies_dir / f"{PLAIN}.py"
    edited.write_text(edited.read_text() + "\n# a quant's edit\n")
    location.reload()

    requested = location.tick(module_instance)

    assert requested == {config_key(PLAIN), backtest_key(PLAIN)}
    # The run the sensor would launch: both in one run, so the config's new materialisation does not
    # request the backtest a second time.
    location.materialise(module_instance, requested)
    assert ticks(location, module_instance, 3) == [set()] * 3


def _blocking_check_results(location: AutomationLocation, instance) -> dict[str, bool]:
    job = location.defs.resolve_implicit_global_asset_job_def()
    checks = {
        k
        for k in location.defs.resolve_asset_graph().asset_check_keys
        if k.asset_key == ohlcv_key(location.location.entry)
    }
    result = job.get_subset(asset_check_selection=checks).execute_in_process(instance=instance, raise_on_error=False)
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_a_failing_blocking_candle_check_holds_the_backtest_until_it_passes(location, module_instance):
    entry = location.location.entry
    library = location.location.arctic.library(f"ohlcv.{entry.exchange}.{entry.market_type}")
    symbol = candle_symbol("ETH/BTC", "5m", "spot")
    good = library.read(symbol).data
    library.write(symbol, pd.concat([good, good.iloc[[-1]]]))  # a duplicated candle
    try:
        assert _blocking_check_results(location, module_instance)["no_duplicate_candles"] is False
        edited = location.strategies_dir / f"{OTHER}.py"
        edited.write_text(edited.read_text() + "\n# another edit\n")
        location.reload()

        assert location.tick(module_instance) == {config_key(OTHER)}  # a config reads no candles
        assert location.tick(module_instance) == set()
    finally:
        library.write(symbol, good)
    assert library.read(symbol).data.equals(good)
    assert _blocking_check_results(location, module_instance)["no_duplicate_candles"] is True

    assert location.tick(module_instance) == {backtest_key(OTHER)}  # the edit was not forgotten
    assert location.tick(module_instance) == set()


def test_a_changed_base_config_reruns_configs_then_the_backtests_whose_config_changed(location, module_instance):
    base = location.base_path
    base.write_text(base.read_text().replace("max_open_trades: 3", "max_open_trades: 2"))

    assert location.tick(module_instance) == {config_key(PLAIN), config_key(OTHER)}
    location.materialise(module_instance, [config_key(PLAIN), config_key(OTHER)])

    assert location.tick(module_instance) == {backtest_key(PLAIN), backtest_key(OTHER)}
    assert location.tick(module_instance) == set()


def _recorded_inputs(sensor, instance, registry) -> dict[str, str]:
    """One tick of the inputs sensor, its events stored as the sensor daemon stores them."""
    import dagster as dg

    with dg.build_sensor_context(instance=instance, resources={"model_registry": registry}) as context:
        outcome = sensor(context)
    events = getattr(outcome, "asset_events", None) or []
    for event in events:
        instance.report_runless_asset_event(event)
    return {e.asset_key.to_user_string(): e.tags[DATA_VERSION_TAG] for e in events}


def test_the_inputs_sensor_records_a_champion_only_when_it_moves(tmp_path, memory_instance):
    from resources.arctic import ArcticStore
    from resources.model_registry import ModelRegistry
    from sensors.automation_inputs import build_automation_inputs_sensor
    from tests.backtest_support import copy_strategies
    from tradai_core.strategy_discovery import discover_strategies, source_hash

    base = tmp_path / "base.yaml"
    base.write_text("exchange: {name: binance}\n")
    specs = discover_strategies(copy_strategies(tmp_path / "strategies", "MlMomentum"))
    registry = ModelRegistry(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", store=ArcticStore(uri=f"lmdb://{tmp_path / 'arctic'}")
    )
    sensor = build_automation_inputs_sensor(specs, base)

    assert _recorded_inputs(sensor, memory_instance, registry) == {"strategies/base_config": source_hash(base)}
    registry._record("MlMomentum", "first_champion", "test", None, 1, None, None)
    assert _recorded_inputs(sensor, memory_instance, registry) == {"strategies/MlMomentum/champion": "v1"}
    registry._record("MlMomentum", "challenger", "test", 1, 1, None, 2)  # a challenger moves no champion
    assert _recorded_inputs(sensor, memory_instance, registry) == {}
    registry._record("MlMomentum", "promote", "test", 1, 2, 1, None)
    assert _recorded_inputs(sensor, memory_instance, registry) == {"strategies/MlMomentum/champion": "v2"}

    base.unlink()
    with pytest.raises(RuntimeError, match=f"{base}: cannot read the base config"):
        _recorded_inputs(sensor, memory_instance, registry)
    assert (
        memory_instance.get_latest_materialization_event(champion_key("MlMomentum")).asset_materialization.tags[
            DATA_VERSION_TAG
        ]
        == "v2"
    )
