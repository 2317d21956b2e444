"""Futures backtests run offline on the sample perpetual: leverage tiers from the snapshot, funding
charged at the exchange's 8-hourly funding times at the published rate and mark price; a backtest
whose funding rates or mark candles are missing fails naming them."""

import json

import pandas as pd
import pytest

from tests.backtest_support import BacktestLocation, backtest_offline, copy_strategies
from tests.market_data_support import failure_message, materialization_metadata
from tradai_assets.strategies import backtest_key

PAIR = "XRP/USDT:USDT"


@pytest.fixture(scope="module")
def location(tmp_path_factory, module_instance):
    root = tmp_path_factory.mktemp("futures")
    location = BacktestLocation(root, copy_strategies(root / "strategies", "EmaCrossFutures"), futures=True)
    location.load_futures_sample(module_instance)
    return location


@pytest.fixture(scope="module")
def futures_run(location, module_instance):
    result = backtest_offline(location, "EmaCrossFutures", module_instance)
    assert result.success, failure_message(result)
    return result


def stored(location, symbol: str) -> pd.DataFrame:
    return location.arctic.read_candles("binance", "futures", symbol)


def test_futures_backtest_runs_offline_with_leverage_and_logs_its_funding_inputs(location, futures_run):
    meta = materialization_metadata(futures_run, backtest_key("EmaCrossFutures"))
    assert meta["trades"] > 10 and meta["timerange"] == "20211118-20211121"
    trades, _, stats, _ = location.store.read_backtest("EmaCrossFutures")
    assert set(trades["leverage"]) == {3.0} and trades["is_short"].any() and (~trades["is_short"]).any()
    assert stats["trading_mode"] == "futures"
    params, _, _ = location.mlflow.run_record(meta["mlflow_run_id"])
    assert params["market_type"] == "futures"
    assert {f"{PAIR}|5m|futures", f"{PAIR}|8h|funding_rate", f"{PAIR}|1h|mark", f"{PAIR}|8h|mark"} == set(
        json.loads(params["data_versions"])
    )


def test_funding_is_charged_at_the_8h_funding_times_at_rate_times_mark_price(location, futures_run):
    trades, _, _, _ = location.store.read_backtest("EmaCrossFutures")
    rates = stored(location, f"{PAIR}|8h|funding_rate")["funding_rate"]
    rates.index = rates.index.floor("1h")
    marks_1h, marks_8h = stored(location, f"{PAIR}|1h|mark")["open"], stored(location, f"{PAIR}|8h|mark")["open"]
    charged = 0
    for trade in trades.itertuples():
        due = rates.index[(rates.index >= trade.open_date) & (rates.index <= trade.close_date)]
        mark = [marks_1h.get(t, marks_8h.get(t)) for t in due]
        per_unit = sum(r * m for r, m in zip(rates[due], mark))
        expected = trade.amount * per_unit * (1 if trade.is_short else -1)
        assert trade.funding_fees == pytest.approx(expected, rel=1e-9, abs=1e-12), trade
        charged += len(due) > 0
    assert charged >= 5  # trades held over a funding time, some after the 1h mark candles end (8h marks)
    assert trades["funding_fees"].abs().sum() > 0


def test_a_reproduced_futures_backtest_matches(location, futures_run, module_instance):
    run_id = materialization_metadata(futures_run, backtest_key("EmaCrossFutures"))["mlflow_run_id"]
    result = location.run_job("reproduce_backtest", module_instance, "rerun_logged_backtest", {"mlflow_run_id": run_id})
    assert result.success, failure_message(result)


def test_missing_funding_rates_and_mark_candles_fail_the_backtest_naming_them(location, module_instance):
    # Funding rates start on 2021-11-18 and 1h mark candles at 06:00 on 2021-11-15.
    result = location.backtest("EmaCrossFutures", module_instance, {"timerange": "20211115-20211121"})
    assert not result.success
    message = failure_message(result)
    assert "Freqtrade would silently charge no funding" in message
    assert f"{PAIR}: funding rates missing at 9 funding time(s) from 2021-11-15 00:00 to 2021-11-17 16:00 UTC" in message
    assert f"{PAIR}: mark candles (1h) missing at 1 funding time(s) from 2021-11-15 00:00 to 2021-11-15 00:00 UTC" in message
    assert not [m for m in result.get_asset_materialization_events() if m.asset_key == backtest_key("EmaCrossFutures")]
