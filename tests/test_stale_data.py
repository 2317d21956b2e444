"""The stale-data pause: a deployed bot whose stored candles stopped arriving gets a pause request in
the trading state and one alert; it is resumed, with one alert, when they are fresh. A bot that cannot
be handled (candles never stored, a pause it does not apply) is named while the others are handled.
Real deployments (ECS on a moto server), ArcticDB on LMDB, the SQLite trading state, a Dagster instance."""

from __future__ import annotations

import logging
import re

import dagster as dg
import pandas as pd
import pytest

from resources.notifier import Notifier
from resources.trading_state import Heartbeat, SqliteTradingState
from sensors.stale_data import ACK_AFTER_SECONDS, STALE_DATA_SENSOR, build_stale_data_sensor
from tests.deployment_support import deploy, record_backtest, store_config, strategy, unique, write_deployments
from tradai_core.candles import candle_symbol, frame_from_rows
from tradai_core.keys import deployment_key, strategy_id
from tradai_core.settings import SettingsError

LIMIT = "2h"


@pytest.fixture
def alerts(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="tradai.notifications")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "tradai.notifications"]


def store_candles(arctic, pair: str, newest_closed: pd.Timestamp) -> None:
    """Three 5m candles of ``pair``, the newest closing at ``newest_closed``."""
    opens = [newest_closed - pd.Timedelta(minutes=5 * k) for k in (3, 2, 1)]
    frame = frame_from_rows([[int(t.timestamp() * 1000), 1.0, 1.1, 0.9, 1.0, 10.0] for t in opens], "spot")
    arctic.replace_window("binance", "spot", candle_symbol(pair, "5m", "spot"), frame,
                          frame.index[0], frame.index[-1] + pd.Timedelta(minutes=5), {"source": "test"})


def tick(sensor, instance, resources, cursor):
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        return sensor(context)


def test_stale_candles_pause_a_bot_once_and_fresh_ones_resume_it_while_an_unreachable_bot_is_named(
    memory_instance, backtest_store, deployments_file, ecs, tmp_path, alerts, clock
):
    paused, silent = unique("Stale"), unique("Silent")
    paused_id, silent_id = strategy_id(paused), strategy_id(silent)
    specs = [strategy(paused), strategy(silent)]
    # `paused` trades ETH/BTC (its deployment's pairs), `silent` its config's ETH/BTC, LTC/BTC, XRP/BTC.
    write_deployments(deployments_file, {paused: {"mode": "dry_run", "pairs": ["ETH/BTC"]}, silent: {"mode": "dry_run"}})
    for name in (paused, silent):
        store_config(backtest_store, name)
        record_backtest(memory_instance, name)
        deploy(memory_instance, specs, name, {"backtest_store": backtest_store, "bot_services": ecs})
    arctic = backtest_store.arctic
    trading_state = SqliteTradingState(path=str(tmp_path / "state.db"))
    resources = {"arctic": arctic, "backtest_store": backtest_store, "trading_state": trading_state,
                 "notifier": Notifier()}
    sensor = build_stale_data_sensor(specs, pause_after=LIMIT, clock=clock.now)
    assert sensor.name == STALE_DATA_SENSOR and sensor.default_status == dg.DefaultSensorStatus.RUNNING
    three_hours_ago = pd.Timestamp(clock.now()).floor("5min") - pd.Timedelta(hours=3)
    for pair in ("ETH/BTC", "LTC/BTC"):  # XRP/BTC never stored
        store_candles(arctic, pair, three_hours_ago)

    first = tick(sensor, memory_instance, resources, None)

    assert trading_state.get_pause(paused_id).paused is True
    # Three hours before the clock's time, floored to the candle grid: 3.0 or 3.1 h, by the minute the test runs.
    assert re.search(r"ETH/BTC 5m: newest stored candle closed 3\.[01] h ago, beyond 2h", trading_state.get_pause(paused_id).reason)
    assert trading_state.get_pause(silent_id) is None  # not judged: one of its pairs has no candles
    [observed] = first.asset_events
    assert observed.asset_key == deployment_key(paused) and observed.metadata["entries"].value == "paused"
    assert len(alerts()) == 2
    assert f"bot_paused: bot {paused_id} ({paused}) paused: its candles are stale" in alerts()[0]
    assert f"bot_pause_failed: bot {silent_id} ({silent}) cannot be paused or resumed" in alerts()[1]
    assert "no stored binance spot XRP/BTC 5m candles" in alerts()[1]

    # The bot applies the request at its heartbeat (tests/test_bot_runtime.py); a tick that changes nothing alerts nothing.
    trading_state.put(Heartbeat(paused_id, "paused", clock.now(), open_trades=1, profit=0.0))
    clock.advance(60)
    second = tick(sensor, memory_instance, resources, first.cursor)
    assert second.asset_events == [] and len(alerts()) == 2

    store_candles(arctic, "XRP/BTC", three_hours_ago)
    trading_state.put(Heartbeat(silent_id, "running", clock.now(), open_trades=0, profit=0.0))
    third = tick(sensor, memory_instance, resources, second.cursor)
    assert trading_state.get_pause(silent_id).paused is True
    assert len(alerts()) == 3 and f"bot {silent_id} ({silent}) paused" in alerts()[2]

    # `silent` never applies its pause: once the grace has passed it is named, `paused` stays paused.
    clock.advance(ACK_AFTER_SECONDS + 60)
    trading_state.put(Heartbeat(paused_id, "paused", clock.now(), open_trades=1, profit=0.0))
    fourth = tick(sensor, memory_instance, resources, third.cursor)
    assert len(alerts()) == 4 and f"bot {silent_id} ({silent}) cannot be paused or resumed" in alerts()[3]
    assert "not reached: the pause requested at" in alerts()[3] and "says running" in alerts()[3]
    assert trading_state.get_pause(paused_id).paused is True and fourth.asset_events == []
    fifth = tick(sensor, memory_instance, resources, fourth.cursor)
    assert len(alerts()) == 4  # one alert an episode

    fresh = pd.Timestamp(clock.now()).floor("5min")
    for pair in ("ETH/BTC", "LTC/BTC", "XRP/BTC"):
        store_candles(arctic, pair, fresh)
    sixth = tick(sensor, memory_instance, resources, fifth.cursor)

    assert trading_state.get_pause(paused_id).paused is False and trading_state.get_pause(silent_id).paused is False
    assert sorted(e.metadata["entries"].value for e in sixth.asset_events) == ["resumed", "resumed"]
    assert len(alerts()) == 6
    assert all("resumed: its candles are fresh" in a for a in alerts()[4:])
    assert tick(sensor, memory_instance, resources, sixth.cursor).asset_events == [] and len(alerts()) == 6


def test_a_bad_staleness_limit_is_refused_naming_the_setting(monkeypatch):
    with pytest.raises(SettingsError, match=r"stale-data pause limit 'soon': timeframe 'soon' is not of the form"):
        build_stale_data_sensor([], pause_after="soon")
    monkeypatch.setenv("TRADAI_STALE_CANDLES_PAUSE_AFTER", "0h")
    with pytest.raises(SettingsError, match=r"TRADAI_STALE_CANDLES_PAUSE_AFTER='0h': timeframe '0h' is not of the form"):
        build_stale_data_sensor([])
    monkeypatch.delenv("TRADAI_STALE_CANDLES_PAUSE_AFTER")
    assert "more than 2h ago" in build_stale_data_sensor([]).description


def test_the_pause_can_be_switched_off(memory_instance, backtest_store, tmp_path, monkeypatch):
    """``make dev`` switches it off while its bots trade the local exchange, whose candles no sync stores."""
    monkeypatch.setenv("TRADAI_STALE_CANDLES_PAUSE_AFTER", "off")
    sensor = build_stale_data_sensor([strategy(unique("Off"))])
    resources = {"arctic": backtest_store.arctic, "backtest_store": backtest_store, "notifier": Notifier(),
                 "trading_state": SqliteTradingState(path=str(tmp_path / "off.db"))}
    with dg.build_sensor_context(instance=memory_instance, resources=resources) as context:
        result = sensor(context)
    assert isinstance(result, dg.SkipReason) and "TRADAI_STALE_CANDLES_PAUSE_AFTER=off" in result.skip_message
