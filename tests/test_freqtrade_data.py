"""Our reader of Freqtrade data directories against Freqtrade's own writer and file naming."""

from pathlib import Path

import pandas as pd
import pytest
from freqtrade.data.history.datahandlers.idatahandler import get_datahandler, get_datahandlerclass
from freqtrade.enums import CandleType

from resources.freqtrade_data import DataFileError, find_candle_file, read_candle_file
from tests.market_data_support import SAMPLE_DATA


@pytest.mark.parametrize("fmt", ["feather", "parquet", "json", "jsongz"])
@pytest.mark.parametrize(
    ("pair", "timeframe", "candle_type"),
    [("ETH/BTC", "5m", "spot"), ("XRP/USDT:USDT", "1h", "mark"), ("XRP/USDT:USDT", "8h", "funding_rate"),
     ("BTC/USDT", "1M", "spot")],
)
def test_files_freqtrade_writes_are_found_and_read_back(tmp_path: Path, fmt, pair, timeframe, candle_type):
    source_type = "funding_rate" if candle_type == "funding_rate" else "mark" if candle_type == "mark" else "spot"
    sample = {
        "spot": ("ETH/BTC", "5m", SAMPLE_DATA / "ETH_BTC-5m.feather"),
        "mark": ("XRP/USDT:USDT", "1h", SAMPLE_DATA / "futures" / "XRP_USDT_USDT-1h-mark.feather"),
        "funding_rate": ("XRP/USDT:USDT", "8h", SAMPLE_DATA / "futures" / "XRP_USDT_USDT-8h-funding_rate.feather"),
    }[source_type]
    frame = read_candle_file(sample[2], sample[0], candle_type).head(50)
    handler = get_datahandler(tmp_path, fmt)
    handler.ohlcv_store(pair, timeframe, frame.reset_index(), CandleType(candle_type))

    expected = get_datahandlerclass(fmt)._pair_data_filename(tmp_path, pair, timeframe, CandleType(candle_type))
    assert find_candle_file(tmp_path, pair, timeframe, candle_type) == expected
    back = read_candle_file(expected, pair, candle_type)
    pd.testing.assert_frame_equal(back, frame, check_freq=False, check_index_type=False, check_exact=False, rtol=1e-12)


def test_legacy_funding_rate_files_read_as_freqtrade_reads_them():
    path = SAMPLE_DATA / "futures" / "XRP_USDT_USDT-8h-funding_rate.feather"
    ours = read_candle_file(path, "XRP/USDT:USDT", "funding_rate")
    theirs = get_datahandler(SAMPLE_DATA, "feather").ohlcv_load(
        "XRP/USDT:USDT", "8h", CandleType.FUNDING_RATE, fill_missing=False, drop_incomplete=False
    )
    assert list(ours.columns) == ["funding_rate"]
    assert ours["funding_rate"].tolist() == theirs["funding_rate"].tolist()


def test_missing_file_is_none_and_a_broken_one_is_named(tmp_path):
    assert find_candle_file(tmp_path, "ETH/BTC", "5m", "spot") is None
    bad = tmp_path / "ETH_BTC-5m.parquet"
    bad.write_text("nope")
    with pytest.raises(DataFileError, match=str(bad)):
        read_candle_file(bad, "ETH/BTC", "spot")
