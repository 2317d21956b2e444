"""The vectorised tick size is Freqtrade's own result: value by value, per month, in the candles it
leaves behind, and in the trades of whole backtests on the sample and on awkward synthetic prices."""

import json

import numpy as np
import pandas as pd
import pytest

from bench.common import synthetic_candles
from resources import tick_size
from resources.freqtrade_runner import BacktestRequest, FreqtradeRunner
from tests.backtest_support import EXAMPLE_STRATEGIES
from tests.market_data_support import SAMPLE, SAMPLE_DATA
from tradai_core.strategy_config import load_base_config

AWKWARD = [
    0.0, -0.0, np.nan, np.inf, -np.inf, 1.0, 100.0, 1e14, 1e15, 1e-14, 9.999999999999999e-15, 1e-20, 1e20,
    0.1 + 0.2, 1 / 3, 2 / 3, 0.5, 1.25, -1.25, 9.99999999999995, 9.999999999999998, 99999999999999.5,
    12345678901234.5,  # exactly halfway at the 14th digit: Freqtrade's printer rounds half to even
    2.0**-20, 3 * 2.0**-25, 0.00001234, 123.456789, 0.07250000000000001, 0.0724999999999999,
]


def freqtrade_fraction_digits(values) -> np.ndarray:
    return np.array([tick_size._printed_fraction_digits(float(v)) for v in values])


def awkward_values(n: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    return np.concatenate([
        AWKWARD,
        rng.lognormal(0, 6, n),  # every magnitude
        np.round(rng.uniform(0, 1, n) * 10.0 ** rng.integers(0, 12, n)) / 10.0 ** rng.integers(0, 12, n),  # decimal ticks
        rng.integers(1, 2**20, n) * 2.0 ** -rng.integers(1, 60, n).astype(float),  # short binary fractions: ties
        rng.integers(1, 10**7, n) * 10.0 ** -rng.integers(0, 18, n).astype(float),
    ])


def test_fraction_digits_equal_freqtrades_printed_digits_on_awkward_values():
    values = awkward_values(20_000)
    ours, theirs = tick_size.fraction_digits(values), freqtrade_fraction_digits(values)
    np.testing.assert_array_equal(ours, theirs)
    assert np.isnan(ours).any() and (ours > 14).any()  # both branches are exercised


def candle_frames():
    rng = np.random.default_rng(3)
    spread = awkward_values(2_000)
    spread = np.abs(spread[np.isfinite(spread) & (spread != 0)])[:8_000]
    ohlc = np.sort(rng.choice(spread, size=(2_000, 4)), axis=1)
    awkward = pd.DataFrame({
        "date": pd.date_range("2021-01-20", periods=2_000, freq="1h", tz="UTC"),
        "open": ohlc[:, 1], "high": ohlc[:, 3], "low": ohlc[:, 0], "close": ohlc[:, 2], "volume": 1.0,
    })
    yield "awkward", awkward
    yield "ETH/BTC sample", pd.read_feather(SAMPLE_DATA / "ETH_BTC-5m.feather")
    yield "XRP futures sample", pd.read_feather(SAMPLE_DATA / "futures" / "XRP_USDT_USDT-5m-futures.feather")
    yield "whole numbers (no fractional digit anywhere)", awkward.assign(open=100.0, high=101.0, low=99.0, close=100.0)


@pytest.mark.parametrize(("name", "frame"), list(candle_frames()), ids=lambda v: v if isinstance(v, str) else "")
def test_tick_size_over_time_and_candle_side_effects_equal_freqtrades(name, frame):
    from freqtrade.data.btanalysis.historic_precision import get_tick_size_over_time

    theirs_frame, ours_frame = frame.copy(), frame.copy()
    try:
        theirs = get_tick_size_over_time(theirs_frame)
    except AttributeError as exc:  # Freqtrade's string accessor on a column without any match
        with pytest.raises(AttributeError, match=str(exc)):
            tick_size.vectorised_tick_size_over_time(ours_frame)
        return
    ours = tick_size.vectorised_tick_size_over_time(ours_frame)
    pd.testing.assert_series_equal(ours, theirs, check_exact=True)
    # Freqtrade leaves its count columns in the candles the strategy then sees: same values, same dtypes.
    pd.testing.assert_frame_equal(ours_frame, theirs_frame, check_exact=True)


def monthly_ticks_candles(pair_index: int) -> pd.DataFrame:
    """A random walk whose prices are rounded to a different tick each month, one month not at all."""
    frame = synthetic_candles(pair_index, "2021-01-01", 3 * 30 * 288, "5min")
    prices = ["open", "high", "low", "close"]
    frame[prices] *= 0.0005 * (1 + pair_index)
    ticks = {1: 1e-6, 2: None, 3: 5e-8}
    for month, tick in ticks.items():
        rows = frame.index.month == month
        if tick is not None:
            frame.loc[rows, prices] = np.round(frame.loc[rows, prices] / tick) * tick
    frame["high"] = frame[prices].max(axis=1)
    frame["low"] = frame[prices].min(axis=1)
    return frame


def sample_request(pairs, candles, timerange: str) -> BacktestRequest:
    markets = json.loads((SAMPLE / "markets" / "binance-spot.json").read_text())["markets"]
    config = {**load_base_config(), "timerange": timerange}
    config["exchange"] = {**config["exchange"], "pair_whitelist": pairs}
    return BacktestRequest("EmaCross", EXAMPLE_STRATEGIES / "EmaCross.py", config, candles, markets)


def requests():
    sample_pairs = ["ETH/BTC", "LTC/BTC", "XMR/BTC"]
    yield "sample", sample_request(sample_pairs, {
        (p, "5m", "spot"): pd.read_feather(SAMPLE_DATA / f"{p.replace('/', '_')}-5m.feather").set_index("date")
        for p in sample_pairs
    }, "20180110-20180131")
    synthetic_pairs = ["ETH/BTC", "LTC/BTC"]
    yield "monthly ticks", sample_request(
        synthetic_pairs, {(p, "5m", "spot"): monthly_ticks_candles(i) for i, p in enumerate(synthetic_pairs)}, "20210101-20210331"
    )


@pytest.mark.parametrize(("name", "request_"), list(requests()), ids=lambda v: v if isinstance(v, str) else "")
def test_backtest_trades_identical_with_and_without_the_vectorised_tick_size(name, request_, tmp_path, monkeypatch):
    import freqtrade.optimize.backtesting as backtesting
    from freqtrade.data.btanalysis import historic_precision

    calls = []
    original = tick_size.vectorised_tick_size_over_time
    monkeypatch.setattr(tick_size, "vectorised_tick_size_over_time", lambda c: calls.append(1) or original(c))

    plain = FreqtradeRunner(workdir=str(tmp_path), vectorised_tick_size=False).run(request_)
    assert calls == []
    fast = FreqtradeRunner(workdir=str(tmp_path), vectorised_tick_size=True).run(request_)
    assert len(calls) == len(request_.config["exchange"]["pair_whitelist"])
    assert backtesting.get_tick_size_over_time is historic_precision.get_tick_size_over_time  # restored

    assert len(plain.trades) > 10
    pd.testing.assert_frame_equal(fast.trades, plain.trades, check_exact=True)
    assert fast.stats["profit_total_abs"] == plain.stats["profit_total_abs"]
