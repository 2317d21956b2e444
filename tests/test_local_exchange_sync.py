"""make dev's bots trade on the local simulated exchange: the ``local_exchange_candles`` sensor and the
``sync_local_exchange_candles`` job keep those candles in ArcticDB, beside the stored sample, for the
divergence reports' replays."""

from __future__ import annotations

from pathlib import Path

import ccxt
import dagster as dg
import numpy as np
import pandas as pd
import pytest

from resources.arctic import ArcticStore
from resources.aws_contract import EnvVar
from resources.backtest_store import BacktestStore
from sensors.local_exchange import build_local_exchange_sensor
from tests.divergence_support import record_deployment
from tests.market_data_support import NoWaitExchange
from tradai_assets.local_exchange_sync import sync_local_exchange_candles
from tradai_core.candles import candle_symbol
from tradai_core.strategy_discovery import StrategySpec

PAIRS = ["ETH/BTC", "LTC/BTC"]
CONFIG = {"exchange": {"name": "binance", "pair_whitelist": PAIRS}, "timeframe": "5m", "stake_currency": "BTC"}
DEPLOYED = pd.Timestamp("2024-03-01T10:00:00Z")
NOW = pd.Timestamp("2024-03-01T12:02:30Z")


def symbol(pair: str) -> str:
    return candle_symbol(pair, "5m", "spot")


class World:
    def __init__(self, root: Path, fake, monkeypatch):
        self.fake = fake
        self.now = [NOW]
        self.arctic = ArcticStore(uri=f"lmdb://{root / 'arctic'}")
        self.store = BacktestStore(arctic=self.arctic)
        self.instance = dg.DagsterInstance.ephemeral()
        self.store.write_config("Bot", CONFIG, "hash-bot")
        record_deployment(self.instance, "Bot", "hash-bot", DEPLOYED.timestamp(), bot_id="bot", pairs=PAIRS)
        # A second running bot whose config was never stored: named in the log, the other is still synced.
        record_deployment(self.instance, "NoConfig", "hash-none", DEPLOYED.timestamp(), bot_id="no-config",
                          pairs=PAIRS)
        specs = [StrategySpec(name=n, file=root / f"{n}.py") for n in ("Bot", "NoConfig")]
        self.sensor = build_local_exchange_sensor(specs, sync_local_exchange_candles.name,
                                                  clock=lambda: self.now[0].to_pydatetime())
        monkeypatch.setenv(EnvVar.LOCAL_EXCHANGE_URL, fake.url)
        fake.control(now_ms=NOW.isoformat())

    def tick(self):
        with dg.build_sensor_context(instance=self.instance,
                                     resources={"arctic": self.arctic, "backtest_store": self.store}) as context:
            return self.sensor(context)

    def sync(self, run_config) -> dg.ExecuteInProcessResult:
        return sync_local_exchange_candles.execute_in_process(
            run_config=run_config, instance=self.instance, raise_on_error=False,
            resources={"arctic": self.arctic, "exchange": NoWaitExchange(max_retries=1)},
        )

    def stored(self, pair: str) -> pd.DataFrame:
        return self.arctic.read_candles("binance", "spot", symbol(pair))

    def exchange_candles(self, pair: str, start: pd.Timestamp, count: int) -> np.ndarray:
        api = ccxt.binance(self.fake.ccxt_config(enableRateLimit=False))
        return np.array(api.fetch_ohlcv(pair, "5m", int(start.timestamp() * 1000), count))


@pytest.fixture
def world(tmp_path, fake_binance_clean, monkeypatch) -> World:
    return World(tmp_path, fake_binance_clean, monkeypatch)


def write_sample(world: World) -> pd.DataFrame:
    """Candles of 2018 already stored for ETH/BTC, as the offline sample leaves them."""
    index = pd.date_range("2018-01-10", periods=12, freq="5min", tz="UTC", name="date")
    sample = pd.DataFrame({"open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10.0}, index=index)
    world.arctic.replace_window("binance", "spot", symbol("ETH/BTC"), sample, index[0],
                                index[-1] + pd.Timedelta("5min"), {"source": "sample"})
    return sample


def test_a_running_bots_candles_are_synced_from_the_day_before_it_was_deployed_and_the_sample_is_kept(world, capsys):
    sample = write_sample(world)
    request = world.tick()
    assert isinstance(request, dg.RunRequest)
    assert "local exchange candles: NoConfig: no stored config of NoConfig" in capsys.readouterr().err
    [series] = request.run_config["ops"]["sync_local_exchange_candles_op"]["config"]["series"]
    assert series == {"exchange": "binance", "market_type": "spot", "timeframe": "5m", "pairs": PAIRS,
                      "since": "2024-02-29T00:00:00+00:00"}
    result = world.sync(request.run_config)
    assert result.success
    since, end = pd.Timestamp("2024-02-29T00:00:00Z"), pd.Timestamp("2024-03-01T12:00:00Z")  # 12:00 is still open
    count = int((end - since) / pd.Timedelta("5min"))
    for pair in PAIRS:
        stored = world.stored(pair)
        synced = stored[stored.index >= since]
        assert len(synced) == count and synced.index[0] == since and synced.index[-1] == end - pd.Timedelta("5min")
        expected = world.exchange_candles(pair, since, count)
        np.testing.assert_array_equal(synced.index.asi8 // 1_000_000, expected[:, 0])
        np.testing.assert_allclose(synced[["open", "high", "low", "close", "volume"]].to_numpy(), expected[:, 1:])
    pd.testing.assert_frame_equal(world.stored("ETH/BTC")[:"2018"], sample, check_freq=False)
    [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    assert output.step_output_data.metadata["total"].value == 2 * count

    assert isinstance(world.tick(), dg.SkipReason)  # nothing new has closed

    before = world.stored("LTC/BTC")
    world.now[0] = NOW + pd.Timedelta("5min")
    world.fake.control(now_ms=world.now[0].isoformat())
    again = world.tick()
    assert isinstance(again, dg.RunRequest) and again.run_key != request.run_key
    assert world.sync(again.run_config).success
    after = world.stored("LTC/BTC")
    assert len(after) == len(before) + 1 and after.index[-1] == end
    pd.testing.assert_frame_equal(after.iloc[:-1], before)


def test_a_stopped_bot_asks_for_nothing(world):
    record_deployment(world.instance, "Bot", "hash-bot", DEPLOYED.timestamp(), bot_id="bot", pairs=PAIRS)
    world.instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=dg.AssetKey(["strategies", "Bot", "deployment"]), metadata={"mode": "stopped"}))
    world.instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=dg.AssetKey(["strategies", "NoConfig", "deployment"]), metadata={"mode": "stopped"}))
    assert isinstance(world.tick(), dg.SkipReason)


def test_an_unknown_pair_fails_the_run_naming_it_and_stores_nothing(world):
    sample = write_sample(world)
    series = {"exchange": "binance", "market_type": "spot", "timeframe": "5m", "pairs": ["ETH/BTC", "NOPE/BTC"],
              "since": "2024-02-29T00:00:00+00:00"}
    result = world.sync({"ops": {"sync_local_exchange_candles_op": {"config": {"series": [series]}}}})
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "NOPE/BTC" in str(failure.step_failure_data.error)
    # ETH/BTC came first and was stored whole; the sample is untouched and NOPE/BTC has no symbol.
    pd.testing.assert_frame_equal(world.stored("ETH/BTC")[:"2018"], sample, check_freq=False)
    assert world.arctic.read_candles("binance", "spot", symbol("NOPE/BTC")) is None


def test_an_unreachable_local_exchange_fails_naming_it_and_keeps_the_store(world, monkeypatch):
    sample = write_sample(world)
    request = world.tick()
    monkeypatch.setenv(EnvVar.LOCAL_EXCHANGE_URL, "http://127.0.0.1:9")  # discard: nothing listens
    result = world.sync(request.run_config)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "127.0.0.1:9" in str(failure.step_failure_data.error)
    pd.testing.assert_frame_equal(world.stored("ETH/BTC"), sample, check_freq=False)
    monkeypatch.delenv(EnvVar.LOCAL_EXCHANGE_URL)
    unset = world.sync(request.run_config)
    [failure] = [e for e in unset.all_events if e.is_step_failure]
    assert f"{EnvVar.LOCAL_EXCHANGE_URL} is not set" in str(failure.step_failure_data.error)


def test_the_code_location_keeps_local_exchange_candles_only_when_make_dev_runs_one(monkeypatch):
    from tradai_assets import definitions

    monkeypatch.setenv(EnvVar.LOCAL_EXCHANGE_URL, "http://127.0.0.1:8300")
    with_exchange = definitions.build_definitions()
    assert with_exchange.get_job_def("sync_local_exchange_candles") is not None
    sensor = with_exchange.get_sensor_def("local_exchange_candles")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    monkeypatch.setenv(EnvVar.LOCAL_EXCHANGE_URL, "")
    without = definitions.build_definitions()
    assert "local_exchange_candles" not in {s.name for s in without.sensors}
