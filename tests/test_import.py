"""Importing a Freqtrade data directory (the shipped sample) into the OHLCV assets, with their checks."""

import shutil

import pandas as pd
import pytest

from tests.market_data_support import (
    SAMPLE,
    SAMPLE_DATA,
    SPOT_PAIRS,
    MarketDataLocation,
    check_results,
    failure_message,
    materialization_metadata,
    write_universe,
)
from tradai_assets.market_data import markets_key, ohlcv_key
from tradai_core.candles import candle_symbol


def spot_entry(tmp_path, import_dir=SAMPLE_DATA, **extra):
    return {
        "exchange": "binance", "market_type": "spot", "pairs": SPOT_PAIRS, "timeframes": ["5m"],
        "start": "2018-01-10", "end": "2018-01-31", "import_dir": str(import_dir),
        "markets_file": str(SAMPLE / "markets" / "binance-spot.json"), **extra,
    }


@pytest.fixture
def location(tmp_path, arctic):
    return MarketDataLocation(write_universe(tmp_path / "u.yaml", [spot_entry(tmp_path)]), arctic)


def stored(arctic, pair):
    return arctic.read_candles("binance", "spot", candle_symbol(pair, "5m", "spot"))


def test_sample_import_stores_every_candle_and_reports_real_gaps(location, arctic, instance):
    result = location.ohlcv("binance_spot", instance, "2018-01-10", "2018-01-30")
    assert result.success
    for pair in SPOT_PAIRS:
        source = pd.read_feather(SAMPLE_DATA / f"{pair.replace('/', '_')}-5m.feather").set_index("date")
        frame = stored(arctic, pair)
        pd.testing.assert_frame_equal(frame, source, check_freq=False, check_names=False)
        assert str(frame.index.tz) == "UTC" and (frame.dtypes == "float64").all()

    checks = check_results(result)
    assert checks["no_duplicate_candles"].passed and checks["ohlc_sanity"].passed
    assert checks["monotonic_utc_index"].passed
    missing = checks["no_missing_candles"]
    assert not missing.passed and missing.severity.value == "WARN"
    assert missing.metadata["missing_candles"].value == 40 + 6 + 2 * 3 + 2  # + ETC and ZEC end early
    assert missing.metadata["largest_gap_candles"].value == 33
    by_pair = {r.data["pair"]: r.data for r in missing.metadata["series"].value.records}
    assert by_pair["ADA/BTC"]["found"] == 40 and "33 after 2018-01-15T11:55:00" in by_pair["ADA/BTC"]["detail"]

    meta = materialization_metadata(result, ohlcv_key(location.entries["binance_spot"]))
    assert meta["new_candles"] == sum(len(stored(arctic, p)) for p in SPOT_PAIRS)


def test_reimport_neither_duplicates_nor_writes_new_versions(location, arctic, instance):
    location.ohlcv("binance_spot", instance, "2018-01-10", "2018-01-30")
    versions = {p: arctic.candle_version("binance", "spot", candle_symbol(p, "5m", "spot")) for p in SPOT_PAIRS}
    before = {p: stored(arctic, p) for p in SPOT_PAIRS}
    again = location.ohlcv("binance_spot", instance, "2018-01-12", "2018-01-20")
    assert again.success
    assert materialization_metadata(again, ohlcv_key(location.entries["binance_spot"]))["new_candles"] == 0
    for pair in SPOT_PAIRS:
        pd.testing.assert_frame_equal(stored(arctic, pair), before[pair])
        assert arctic.candle_version("binance", "spot", candle_symbol(pair, "5m", "spot")) == versions[pair]


def test_tolerance_lets_known_gaps_pass(tmp_path, arctic, instance):
    location = MarketDataLocation(
        write_universe(tmp_path / "u.yaml", [spot_entry(tmp_path, max_missing_candles=40)]), arctic
    )
    result = location.ohlcv("binance_spot", instance, "2018-01-10", "2018-01-30")
    assert check_results(result)["no_missing_candles"].passed


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("LTC_BTC-5m.feather", b"this is not a feather file"),
        ("LTC_BTC-5m.json", b"[[1515560100000, 0.016, 0.017]]"),  # too few columns
    ],
)
def test_malformed_file_fails_its_pair_naming_the_file_and_the_others_import(tmp_path, arctic, instance, filename, content):
    datadir = tmp_path / "data"
    shutil.copytree(SAMPLE_DATA, datadir, ignore=shutil.ignore_patterns("futures", "LTC_BTC*"))
    (datadir / filename).write_bytes(content)
    location = MarketDataLocation(write_universe(tmp_path / "u.yaml", [spot_entry(tmp_path, datadir)]), arctic)
    result = location.ohlcv("binance_spot", instance, "2018-01-10", "2018-01-30")
    assert not result.success
    message = failure_message(result)
    assert str(datadir / filename) in message and "LTC/BTC" in message
    assert stored(arctic, "LTC/BTC") is None
    for pair in set(SPOT_PAIRS) - {"LTC/BTC"}:
        assert len(stored(arctic, pair)) > 5700


def test_futures_sample_imports_candles_mark_and_funding(tmp_path, arctic, instance):
    entry = {
        "exchange": "binance", "market_type": "futures", "pairs": ["XRP/USDT:USDT"], "timeframes": ["5m", "1h"],
        "mark_timeframes": ["1h", "8h"], "funding_timeframes": ["8h"], "start": "2021-11-15", "end": "2021-12-19",
        "import_dir": str(SAMPLE_DATA), "markets_file": str(SAMPLE / "markets" / "binance-futures.json"),
    }
    location = MarketDataLocation(write_universe(tmp_path / "u.yaml", [entry]), arctic)
    result = location.ohlcv("binance_futures", instance, "2021-11-15", "2021-12-18")
    assert result.success
    funding = arctic.read_candles("binance", "futures", candle_symbol("XRP/USDT:USDT", "8h", "funding_rate"))
    assert list(funding.columns) == ["funding_rate"] and len(funding) == 91
    assert funding.index[0] == pd.Timestamp("2021-11-18 00:00", tz="UTC")  # 17 ms late stamp floored
    mark = arctic.read_candles("binance", "futures", candle_symbol("XRP/USDT:USDT", "1h", "mark"))
    assert len(mark) == 100 and mark["volume"].isna().all()
    assert len(arctic.read_candles("binance", "futures", candle_symbol("XRP/USDT:USDT", "5m", "futures"))) == 1999
    assert check_results(result)["ohlc_sanity"].passed


def test_markets_snapshot_from_file_is_versioned_by_content(location, arctic, instance, tmp_path):
    first = location.markets("binance_spot", instance)
    assert first.success
    meta = materialization_metadata(first, markets_key(location.entries["binance_spot"]))
    assert meta["market_count"] == 10 and len(meta["content_hash"]) == 64
    again = location.markets("binance_spot", instance)
    assert materialization_metadata(again, markets_key(location.entries["binance_spot"]))["snapshot_version"] == meta["snapshot_version"]
    snapshot = arctic.markets_snapshot("binance", "spot", meta["content_hash"])
    assert snapshot.payload["markets"]["ETH/BTC"]["precision"]["price"] == 1e-06

    broken = tmp_path / "broken.json"
    broken.write_text('{"markets": [1, 2]}')
    failed = location.markets("binance_spot", instance, run_config={"from_file": str(broken)})
    assert not failed.success and str(broken) in failure_message(failed)
    assert arctic.latest_markets_snapshot("binance", "spot").content_hash == meta["content_hash"]
    with pytest.raises(KeyError, match="no markets snapshot"):
        arctic.markets_snapshot("binance", "spot", "0" * 64)


@pytest.mark.parametrize("suffix", ["feather", "json"])
def test_truncated_import_file_fails_naming_it_and_the_store_is_unchanged(tmp_path, arctic, instance, suffix):
    datadir = tmp_path / "data"
    shutil.copytree(SAMPLE_DATA, datadir, ignore=shutil.ignore_patterns("futures"))
    location = MarketDataLocation(write_universe(tmp_path / "u.yaml", [spot_entry(tmp_path, datadir)]), arctic)
    assert location.ohlcv("binance_spot", instance, "2018-01-10", "2018-01-30").success
    before = {p: stored(arctic, p) for p in SPOT_PAIRS}
    versions = {p: arctic.candle_version("binance", "spot", candle_symbol(p, "5m", "spot")) for p in SPOT_PAIRS}

    good = pd.read_feather(datadir / "LTC_BTC-5m.feather")
    (datadir / "LTC_BTC-5m.feather").unlink()
    path = datadir / f"LTC_BTC-5m.{suffix}"
    if suffix == "json":  # Freqtrade's json layout: rows of [ms, open, high, low, close, volume]
        good.assign(date=good["date"].astype("int64") // 1_000_000).to_json(path, orient="values")
    else:
        good.to_feather(path)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) * 2 // 3])  # a copy or download cut short

    result = location.ohlcv("binance_spot", instance, "2018-01-10", "2018-01-30")
    assert not result.success
    message = failure_message(result)
    assert str(path) in message and "LTC/BTC" in message
    for pair in SPOT_PAIRS:
        pd.testing.assert_frame_equal(stored(arctic, pair), before[pair])
        assert arctic.candle_version("binance", "spot", candle_symbol(pair, "5m", "spot")) == versions[pair]
