"""Syncing candles and market snapshots from an exchange: a local HTTP Binance on 127.0.0.1, reached by
an unmodified ccxt through its URL configuration, with faults injected into its answers."""

import pandas as pd
import pytest

from resources.arctic import ArcticStore
from tests.market_data_support import (
    MarketDataLocation,
    NoWaitExchange,
    check_results,
    failure_message,
    materialization_metadata,
    write_universe,
)
from tradai_assets.market_data import RUN_TABLES, markets_key, ohlcv_key
from tradai_core.candles import candle_symbol

NOW = "2024-03-03T10:02:30Z"  # the 10:00 candle is still open
PAIRS = ["ETH/BTC", "LTC/BTC"]


def spot_entry(**extra):
    return {"exchange": "binance", "market_type": "spot", "pairs": PAIRS, "timeframes": ["5m", "1h"],
            "start": "2024-03-01", "archive_url": None, **extra}


def make_location(tmp_path, fake, entries, name="arctic", **exchange_settings):
    settings = {"max_retries": 4, **exchange_settings}
    NoWaitExchange.waits.clear()
    exchange = NoWaitExchange(ccxt_config={"binance": {"urls": fake.ccxt_config()["urls"], "timeout": 3000}}, **settings)
    universe = write_universe(tmp_path / f"{name}.yaml", entries)
    return MarketDataLocation(universe, ArcticStore(uri=f"lmdb://{tmp_path / name}"), exchange)


def candles(location, pair, timeframe="5m", candle_type="spot", market_type="spot"):
    return location.arctic.read_candles("binance", market_type, candle_symbol(pair, timeframe, candle_type))


@pytest.fixture
def fake(fake_binance_clean):
    fake_binance_clean.control(now_ms=NOW)
    return fake_binance_clean


@pytest.fixture
def reference(tmp_path, fake, instance):
    """A fault-free sync of 2024-03-01..03 at NOW, to compare faulty syncs with."""
    location = make_location(tmp_path, fake, [spot_entry()], name="reference")
    assert location.ohlcv("binance_spot", instance, "2024-03-01", "2024-03-03").success
    fake.reset()
    fake.control(now_ms=NOW)
    return {(p, tf): candles(location, p, tf) for p in PAIRS for tf in ["5m", "1h"]}


def assert_same_as_reference(location, reference):
    for (pair, tf), expected in reference.items():
        pd.testing.assert_frame_equal(candles(location, pair, tf), expected)


def test_sync_stores_closed_candles_only(tmp_path, fake, instance):
    location = make_location(tmp_path, fake, [spot_entry()])
    result = location.ohlcv("binance_spot", instance, "2024-03-01", "2024-03-03")
    assert result.success
    eth = candles(location, "ETH/BTC")
    assert len(eth) == 2 * 288 + 10 * 12
    assert eth.index[0] == pd.Timestamp("2024-03-01 00:00", tz="UTC")
    assert eth.index[-1] == pd.Timestamp("2024-03-03 09:55", tz="UTC")  # 10:00 is still open
    assert candles(location, "ETH/BTC", "1h").index[-1] == pd.Timestamp("2024-03-03 09:00", tz="UTC")
    assert (eth.dtypes == "float64").all() and str(eth.index.tz) == "UTC"
    checks = check_results(result)
    assert all(checks[name].passed for name in ["no_duplicate_candles", "no_missing_candles", "ohlc_sanity"])
    # One materialization per day; the run's tables only on the newest, the latest the asset's page shows.
    key = ohlcv_key(location.entries["binance_spot"])
    events = [e.materialization for e in result.get_asset_materialization_events() if e.asset_key == key]
    assert [e.partition for e in events] == ["2024-03-01", "2024-03-02", "2024-03-03"]
    newest = instance.get_latest_materialization_event(key).asset_materialization
    assert newest.partition == "2024-03-03" and set(RUN_TABLES) <= set(newest.metadata)
    assert newest.metadata["new_candles"].value == 2 * (2 * 288 + 10 * 12 + 2 * 24 + 10)
    for earlier in events[:-1]:
        assert not set(RUN_TABLES) & set(earlier.metadata)
        assert earlier.metadata["new_candles"] == newest.metadata["new_candles"]


def test_incremental_sync_fetches_only_what_is_new(tmp_path, fake, instance, reference):
    location = make_location(tmp_path, fake, [spot_entry()])
    location.ohlcv("binance_spot", instance, "2024-03-01", "2024-03-03")
    fake.control(now_ms="2024-03-03T12:02:30Z")
    served_before = fake.candles_served()
    assert location.ohlcv("binance_spot", instance, "2024-03-03", "2024-03-03").success
    served = fake.candles_served() - served_before
    # 2 pairs x (24 new 5m + 2 new 1h candles), plus at most the still-open candle of each series
    assert 2 * (24 + 2) <= served <= 2 * (24 + 2) + 4
    eth = candles(location, "ETH/BTC")
    assert eth.index[-1] == pd.Timestamp("2024-03-03 11:55", tz="UTC")
    pd.testing.assert_frame_equal(eth.loc[: "2024-03-03 09:55"], reference[("ETH/BTC", "5m")])

    fresh = make_location(tmp_path, fake, [spot_entry()], name="fresh")
    fresh.ohlcv("binance_spot", instance, "2024-03-01", "2024-03-03")
    pd.testing.assert_frame_equal(eth, candles(fresh, "ETH/BTC"))


@pytest.mark.parametrize(
    "rule",
    [
        {"status": 429, "times": 3},
        {"status": 418, "times": 2},
        {"status": 500, "every": 2, "times": 4},
        {"status": 502, "times": 1},
        {"status": 503, "every": 3, "times": 3},
        {"status": 504, "times": 2},
        {"delay": 4, "times": 1},  # beyond the client's 3 s timeout
    ],
)
def test_transient_faults_end_with_the_same_candles(tmp_path, fake, instance, reference, rule):
    fake.add_rule(path="/api/v3/klines", **rule)
    location = make_location(tmp_path, fake, [spot_entry()])
    result = location.ohlcv("binance_spot", instance, "2024-03-01", "2024-03-03")
    assert result.success, failure_message(result)
    assert_same_as_reference(location, reference)


def test_a_pair_failing_for_good_fails_the_run_naming_it_and_the_others_are_stored(tmp_path, fake, instance, reference):
    location = make_location(tmp_path, fake, [spot_entry()], max_retries=2)
    location.ohlcv("binance_spot", instance, "2024-03-01", "2024-03-01")
    ltc_before = {tf: candles(location, "LTC/BTC", tf) for tf in ["5m", "1h"]}
    ltc_versions = {tf: location.arctic.candle_version("binance", "spot", candle_symbol("LTC/BTC", tf, "spot")) for tf in ["5m", "1h"]}

    fake.add_rule(path="/api/v3/klines", symbol="LTCBTC", fail_forever=True)
    result = location.ohlcv("binance_spot", instance, "2024-03-01", "2024-03-03")
    assert not result.success
    message = failure_message(result)
    assert "LTC/BTC 5m spot candles" in message and "HTTP 503" in message and "still failing after 2 retries" in message
    assert "ETH/BTC" not in message.split("the other series were stored")[1]
    for tf in ["5m", "1h"]:  # ETH/BTC went on to the end; LTC/BTC kept what it had
        pd.testing.assert_frame_equal(candles(location, "ETH/BTC", tf), reference[("ETH/BTC", tf)])
        pd.testing.assert_frame_equal(candles(location, "LTC/BTC", tf), ltc_before[tf])
        assert location.arctic.candle_version("binance", "spot", candle_symbol("LTC/BTC", tf, "spot")) == ltc_versions[tf]
    assert NoWaitExchange.waits.count(1.0) == 2 and NoWaitExchange.waits.count(2.0) == 2  # doubling backoff, per series


@pytest.mark.parametrize("corrupt", ["duplicate", "shuffle", "nan", "zero"])
def test_bad_answers_are_cleaned_and_bad_candles_never_stored(tmp_path, fake, instance, reference, corrupt):
    fake.add_rule(path="/api/v3/klines", symbol="ETHBTC", corrupt=corrupt, count=3)
    location = make_location(tmp_path, fake, [spot_entry()])
    result = location.ohlcv("binance_spot", instance, "2024-03-01", "2024-03-03")
    assert result.success
    stored = candles(location, "ETH/BTC")
    expected = reference[("ETH/BTC", "5m")]
    assert stored.index.is_monotonic_increasing and stored.index.is_unique
    assert check_results(result)["ohlc_sanity"].passed
    table = materialization_metadata(result, ohlcv_key(location.entries["binance_spot"]))["series"]
    eth_5m = next(r.data for r in table.records if r.data["pair"] == "ETH/BTC" and r.data["timeframe"] == "5m")
    if corrupt in ("nan", "zero"):
        assert eth_5m["invalid_dropped"] >= 1  # a corrupted still-open candle is not fetched at all
        assert len(stored) == len(expected) - eth_5m["invalid_dropped"]
        pd.testing.assert_frame_equal(stored, expected.loc[stored.index])
        assert not check_results(result)["no_missing_candles"].passed  # the dropped candles are reported
    else:
        pd.testing.assert_frame_equal(stored, expected)
        if corrupt == "duplicate":
            assert eth_5m["duplicates_dropped"] >= 1


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        (spot_entry(exchange="binanze"), "binanze"),
        (spot_entry(pairs=["ETH/BTC", "FOO/BTC"]), "FOO/BTC"),
        (spot_entry(timeframes=["7m"]), "7m"),
    ],
)
def test_unknown_exchange_pair_or_timeframe_fails_naming_it_and_the_store_is_unchanged(tmp_path, fake, instance, entry, named):
    good = make_location(tmp_path, fake, [spot_entry()], name="store")
    assert good.ohlcv("binance_spot", instance, "2024-03-01", "2024-03-01").success
    symbols = good.arctic.candle_symbols("binance", "spot")
    before = {s: good.arctic.read_candles("binance", "spot", s) for s in symbols}
    versions = {s: good.arctic.candle_version("binance", "spot", s) for s in symbols}

    location = make_location(tmp_path, fake, [entry], name="store")  # the same store, a bad universe
    name = f"{entry['exchange']}_spot"
    result = location.ohlcv(name, instance, "2024-03-01", "2024-03-02")
    assert not result.success
    assert named in failure_message(result)
    assert location.arctic.candle_symbols("binance", "spot") == symbols
    for symbol in symbols:
        pd.testing.assert_frame_equal(location.arctic.read_candles("binance", "spot", symbol), before[symbol])
        assert location.arctic.candle_version("binance", "spot", symbol) == versions[symbol]
    assert location.arctic.candle_symbols(entry["exchange"], "spot") == (symbols if entry["exchange"] == "binance" else [])


def test_markets_snapshot_from_the_exchange_is_hashed_and_versioned(tmp_path, fake, instance):
    location = make_location(tmp_path, fake, [spot_entry()])
    first = location.markets("binance_spot", instance)
    assert first.success
    meta = materialization_metadata(first, markets_key(location.entries["binance_spot"]))
    assert meta["market_count"] >= 10 and "ETH/BTC" in location.arctic.latest_markets_snapshot("binance", "spot").payload["markets"]
    again = materialization_metadata(location.markets("binance_spot", instance), markets_key(location.entries["binance_spot"]))
    assert (again["content_hash"], again["snapshot_version"]) == (meta["content_hash"], meta["snapshot_version"])


def test_futures_sync_keeps_candles_mark_prices_funding_rates_and_leverage_tiers(tmp_path, fake, instance):
    entry = {"exchange": "binance", "market_type": "futures", "pairs": ["XRP/USDT:USDT"], "timeframes": ["5m"],
             "start": "2024-03-01", "archive_url": None, "ccxt_config": {"apiKey": "key", "secret": "secret"}}
    location = make_location(tmp_path, fake, [entry])
    markets = location.markets("binance_futures", instance)
    assert markets.success, failure_message(markets)
    meta = materialization_metadata(markets, markets_key(location.entries["binance_futures"]))
    assert "leverage tiers from exchange" in meta["source"]
    snapshot = location.arctic.latest_markets_snapshot("binance", "futures")
    assert snapshot.payload["leverage_tiers"]["XRP/USDT:USDT"][0]["maxLeverage"] > 1
    assert all(m["swap"] and m["linear"] for m in snapshot.payload["markets"].values())

    result = location.ohlcv("binance_futures", instance, "2024-03-01", "2024-03-03")
    assert result.success, failure_message(result)
    futures = candles(location, "XRP/USDT:USDT", "5m", "futures", "futures")
    mark = candles(location, "XRP/USDT:USDT", "1h", "mark", "futures")
    funding = candles(location, "XRP/USDT:USDT", "1h", "funding_rate", "futures")
    assert len(futures) == 2 * 288 + 10 * 12 and len(mark) == 2 * 24 + 10
    assert list(funding.columns) == ["funding_rate"]
    assert funding.index[0] == pd.Timestamp("2024-03-01 00:00", tz="UTC") and len(funding) == 8  # every 8h, up to 08:00 today


def test_freshness_check_passes_for_a_fresh_sync_and_warns_for_stale_data(tmp_path, fake_binance_clean, instance):
    now = pd.Timestamp.now(tz="UTC")
    entry = spot_entry(pairs=["ETH/BTC"], timeframes=["1h"], start=(now - pd.Timedelta(days=1)).date().isoformat(),
                       max_age="3h")
    today, yesterday = now.date().isoformat(), (now - pd.Timedelta(days=1)).date().isoformat()

    fake_binance_clean.control(now_ms=int((now - pd.Timedelta(hours=6)).timestamp() * 1000))
    stale = make_location(tmp_path, fake_binance_clean, [entry], name="stale")
    fresh_check = check_results(stale.ohlcv("binance_spot", instance, yesterday, today))["fresh"]
    assert not fresh_check.passed and fresh_check.severity.value == "WARN"
    assert fresh_check.metadata["stale_series"].value == 1

    fake_binance_clean.control(now_ms=None)  # the exchange's real clock
    fresh = make_location(tmp_path, fake_binance_clean, [entry], name="fresh")
    assert check_results(fresh.ohlcv("binance_spot", instance, yesterday, today))["fresh"].passed
