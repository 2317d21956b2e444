"""Candle hygiene and gap finding, on synthetic edge cases and on the real sample."""

import numpy as np
import pandas as pd
import pytest

from resources.freqtrade_data import read_candle_file
from tests.market_data_support import SAMPLE_DATA
from tradai_assets.market_data import missing_candles_report
from tradai_core.candles import clean_candles, find_gaps, frame_from_rows, merge_candles, timeframe_delta

T0 = 1_700_000_000_000 - 1_700_000_000_000 % 300_000  # on the 5m grid


def row(i, o=1.0, h=1.2, low=0.9, c=1.1, v=10.0):
    return [T0 + i * 300_000, o, h, low, c, v]


def test_clean_sorts_deduplicates_and_keeps_the_last_answer():
    rows = [row(2), row(0), row(1, c=1.0), row(1, c=1.15)]
    clean, report = clean_candles(frame_from_rows(rows, "spot"), "5m", "spot")
    assert list(clean.index) == [pd.Timestamp(T0 + i * 300_000, unit="ms", tz="UTC") for i in range(3)]
    assert clean["close"].iloc[1] == 1.15
    assert report.duplicates == 1 and report.reordered
    assert (clean.dtypes == "float64").all()


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (row(1, o=np.nan), "NaN or infinite price"),
        (row(1, o=0.0, low=0.0), "zero or negative price"),
        (row(1, low=1.05), "low above open or close"),
        (row(1, h=1.05), "high below open or close"),
        (row(1, v=-1.0), "missing or negative volume"),
        ([T0 + 300_000 + 60_000, 1.0, 1.2, 0.9, 1.1, 1.0], "not aligned to 5m"),
    ],
)
def test_bad_candles_are_dropped_and_named(bad, reason):
    clean, report = clean_candles(frame_from_rows([row(0), bad, row(2)], "spot"), "5m", "spot")
    assert len(clean) == 2
    assert [why for _, why in report.invalid] == [reason]


def test_mark_candles_may_lack_volume_and_funding_rates_may_be_negative():
    mark, report = clean_candles(frame_from_rows([row(0, v=np.nan)], "mark"), "5m", "mark")
    assert len(mark) == 1 and not report.invalid
    funding = frame_from_rows([[T0 + 17, -0.0003], [T0 + 8 * 3600_000 + 9, 0.0001]], "funding_rate")
    clean, report = clean_candles(funding, "8h", "funding_rate")
    assert list(clean["funding_rate"]) == [-0.0003, 0.0001]
    assert clean.index[0] == pd.Timestamp(T0, unit="ms", tz="UTC")  # exchange's late stamp floored


def test_merge_keeps_stored_candles_the_new_frame_lacks():
    stored, _ = clean_candles(frame_from_rows([row(0), row(1)], "spot"), "5m", "spot")
    new, _ = clean_candles(frame_from_rows([row(1, c=1.19), row(2)], "spot"), "5m", "spot")
    merged = merge_candles(stored, new)
    assert len(merged) == 3 and merged["close"].iloc[1] == 1.19


def test_weekly_candles_open_on_mondays():
    mondays = pd.date_range("2024-01-01", periods=3, freq="7D", tz="UTC")  # 2024-01-01 is a Monday
    rows = [[int(ts.timestamp() * 1000), 1.0, 1.2, 0.9, 1.1, 5.0] for ts in mondays]
    rows.append([int(pd.Timestamp("2024-01-25", tz="UTC").timestamp() * 1000), 1.0, 1.2, 0.9, 1.1, 5.0])  # a Thursday
    clean, report = clean_candles(frame_from_rows(rows, "spot"), "1w", "spot")
    assert list(clean.index) == list(mondays)
    assert [why for _, why in report.invalid] == ["not aligned to 1w"]


def test_timeframes():
    assert timeframe_delta("5m") == pd.Timedelta(minutes=5)
    assert timeframe_delta("1w") == pd.Timedelta(days=7)
    for bad in ("1M", "5x", "m5", ""):
        with pytest.raises(ValueError, match="timeframe"):
            timeframe_delta(bad)


def test_real_sample_gaps_are_found():
    series = {}
    for pair in ["ADA/BTC", "TRX/BTC", "DASH/BTC", "ETC/BTC", "ETH/BTC"]:
        path = SAMPLE_DATA / f"{pair.replace('/', '_')}-5m.feather"
        series[(pair, "5m", "spot")] = read_candle_file(path, pair, "spot")
    ada = find_gaps(pd.DatetimeIndex(series[("ADA/BTC", "5m", "spot")].index), "5m")
    assert sum(g.missing for g in ada) == 40
    assert max(g.missing for g in ada) == 33
    report = {r[0][0]: r for r in missing_candles_report(series)}
    assert {p: r[2] for p, r in report.items()} == {"ADA/BTC": 40, "TRX/BTC": 6, "DASH/BTC": 2, "ETC/BTC": 1, "ETH/BTC": 0}
    assert "at the end" in report["ETC/BTC"][3]
