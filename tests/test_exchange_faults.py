"""A Binance that answers as it does under load, and what survives it: the local simulated exchange with
seeded faults on every API path, reached by ccxt through the universe entry's ccxt_config URLs."""

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from resources.arctic import ArcticStore
from resources.exchange import ExchangeRequestFailed, MarketDataClient, RetryPolicy
from simulator.binance import to_ms
from tests.market_data_support import (
    INSTANCE_OVERRIDES,
    MarketDataLocation,
    NoWaitExchange,
    check_results,
    failure_message,
    materialization_metadata,
    write_universe,
)
from tradai_assets.market_data import ohlcv_key
from tradai_core.candles import candle_symbol

NOW = "2024-03-03T10:02:30Z"
PAIRS = ["ETH/BTC", "LTC/BTC", "ZEC/BTC"]
TIMEFRAMES = ["5m", "1h"]
FIRST, LAST = "2024-02-01", "2024-02-10"  # closed days on either clock


def entry(fake, **extra):
    # The URLs live in the universe entry, as a user pointing the asset at another endpoint would put them.
    return {"exchange": "binance", "market_type": "spot", "pairs": PAIRS, "timeframes": TIMEFRAMES, "start": FIRST,
            "ccxt_config": {"urls": fake.ccxt_config()["urls"], "timeout": 1000}, "archive_url": None, **extra}


def make_location(tmp_path, fake, name, **settings):
    NoWaitExchange.waits.clear()
    exchange = NoWaitExchange(**{"max_retries": 8, "candles_per_request": 500, "pages_per_chunk": 2, **settings})
    universe = write_universe(tmp_path / f"{name}.yaml", [entry(fake)])
    return MarketDataLocation(universe, ArcticStore(uri=f"lmdb://{tmp_path / name}"), exchange)


def stored(location):
    return {(p, tf): location.arctic.read_candles("binance", "spot", candle_symbol(p, tf, "spot")) for p in PAIRS for tf in TIMEFRAMES}


@pytest.fixture
def fake(fake_binance_clean):
    fake_binance_clean.control(now_ms=NOW)
    return fake_binance_clean


@pytest.fixture(scope="module")
def reference(tmp_path_factory, fake_binance):
    """One fault-free sync for the module's tests to compare with."""
    fake_binance.reset()
    fake_binance.control(now_ms=NOW)
    location = make_location(tmp_path_factory.mktemp("reference"), fake_binance, "reference")
    with dg.instance_for_test(overrides=INSTANCE_OVERRIDES) as instance:
        result = location.ohlcv("binance_spot", instance, FIRST, LAST)
    assert result.success, failure_message(result)
    assert materialization_metadata(result, ohlcv_key(location.entries["binance_spot"]))["retries"] == 0
    fake_binance.reset()
    return stored(location)


@pytest.mark.parametrize(("chance", "seed"), [(0.2, 11), (0.5, 5)])
def test_a_fault_mix_stores_exactly_what_a_fault_free_run_stores(tmp_path, fake, instance, reference, chance, seed):
    fake.add_rule(chance=chance, seed=seed, mix="binance")  # every API path: markets, clock, klines
    location = make_location(tmp_path, fake, "faulty")
    result = location.ohlcv("binance_spot", instance, FIRST, LAST)
    assert result.success, failure_message(result)
    for key, expected in reference.items():
        pd.testing.assert_frame_equal(location.arctic.read_candles("binance", "spot", candle_symbol(*key, "spot")), expected)

    meta = materialization_metadata(result, ohlcv_key(location.entries["binance_spot"]))
    injected = fake.stats()["injected"]
    failures = injected.get("status", 0) + injected.get("disconnect", 0) + injected.get("delay", 0)
    assert meta["retries"] == failures > 0  # every failed request was repeated, and only those
    assert meta["candles_from_rest"] >= sum(len(f) for f in reference.values())
    assert meta["chunks_committed"] == 3 * (3 + 1)  # 2,880 5m candles in chunks of 1,000, 240 1h candles in one
    logged = [e for e in instance.all_logs(result.run_id) if e.user_message and "; retry " in e.user_message]
    assert len(logged) == meta["retries"]  # each retry is a line in the Dagster run log
    assert len(meta["retries_by_cause"]) >= 3 and len(NoWaitExchange.waits) == meta["retries"]
    checks = check_results(result)
    assert all(checks[name].passed for name in ["no_duplicate_candles", "ohlc_sanity", "monotonic_utc_index", "no_missing_candles"])


@pytest.mark.parametrize(
    ("status", "code", "msg"),
    [
        (400, -1121, "Invalid symbol."),
        (400, -1120, "Invalid interval."),
        (401, -2014, "API-key format invalid."),
        (401, -2015, "Invalid API-key, IP, or permissions for action."),
    ],
)
def test_permanent_errors_fail_at_once_naming_pair_timeframe_and_message(tmp_path, fake, instance, reference, status, code, msg):
    location = make_location(tmp_path, fake, "store")
    rule = fake.add_rule(path="/api/v3/klines", symbol="LTCBTC", status=status, body={"code": code, "msg": msg})
    result = location.ohlcv("binance_spot", instance, FIRST, LAST)
    assert not result.success
    message = failure_message(result)
    assert "2 series failed for good (LTC/BTC)" in message
    for tf in TIMEFRAMES:
        assert f"LTC/BTC {tf} spot candles: HTTP {status} " in message and msg in message
    assert "not retried" in message
    fired = {r["id"]: r["fired"] for r in fake.stats()["rules"]}[rule["id"]]
    assert fired == 2 and NoWaitExchange.waits == []  # one request per series, no waiting
    after = stored(location)
    assert after[("LTC/BTC", "5m")] is None and after[("LTC/BTC", "1h")] is None
    for pair in ["ETH/BTC", "ZEC/BTC"]:
        for tf in TIMEFRAMES:
            pd.testing.assert_frame_equal(after[(pair, tf)], reference[(pair, tf)])


@pytest.mark.parametrize(
    "rule",
    [
        {"status": 404, "body": {"code": -5000, "msg": "Path /api/v3/time, Method GET is invalid"}},
        {"fail_forever": True},
    ],
)
def test_a_missing_or_failing_clock_falls_back_to_the_local_clock(tmp_path, fake, instance, reference, rule):
    fake.add_rule(path="/api/v3/time", **rule)
    location = make_location(tmp_path, fake, "store")
    result = location.ohlcv("binance_spot", instance, FIRST, LAST)
    assert result.success, failure_message(result)
    meta = materialization_metadata(result, ohlcv_key(location.entries["binance_spot"]))
    assert meta["clock"] == "local" and meta["retries"] == 0
    logged = [e.user_message for e in instance.all_logs(result.run_id) if e.user_message and "using the local clock" in e.user_message]
    assert len(logged) == 1 and "fetch_time" in logged[0]
    for key, expected in reference.items():
        pd.testing.assert_frame_equal(location.arctic.read_candles("binance", "spot", candle_symbol(*key, "spot")), expected)


# The retry loop on its own, against the same exchange ---------------------------------------------


def client(fake, **policy):
    waits, lines = [], []
    c = MarketDataClient("binance", "spot", fake.ccxt_config(timeout=1000), RetryPolicy(**{"max_retries": 3, **policy}),
                         sleep=waits.append, on_retry=lines.append)
    c.load_markets()
    return c, waits, lines


def fetch(c):
    return c.fetch_candles("ETH/BTC", "1h", "spot", to_ms("2024-02-01"), to_ms("2024-02-02"))


def test_retry_after_is_honoured_and_a_ban_beyond_the_bound_fails_at_once(fake):
    c, waits, lines = client(fake, max_retry_after_seconds=60)
    fake.add_rule(path="/api/v3/klines", status=429, retry_after=7, times=1)
    fake.add_rule(path="/api/v3/klines", status=418, retry_after=30, every=2, times=1)  # the retry meets a ban
    assert len(fetch(c)) == 24
    assert waits == [7.0, 30.0] and len(lines) == 2 and "IP banned until" in lines[1]

    fake.add_rule(path="/api/v3/klines", status=418, retry_after=3600, times=1)
    with pytest.raises(ExchangeRequestFailed, match="asks to wait 3600 s, longer than max_retry_after_seconds 60") as failed:
        fetch(c)
    assert not failed.value.permanent and waits == [7.0, 30.0]
    assert "ETH/BTC 1h spot candles" in str(failed.value)


@pytest.mark.parametrize(
    "rule",
    [
        {"status": 500, "body": {"code": -1000, "msg": "An unknown error occured while processing the request."}},
        {"status": 502, "body": {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."}},
        {"status": 400, "body": {"code": -1003, "msg": "Too much request weight used."}},
        {"status": 408, "body": {"code": -1007, "msg": "Timeout waiting for response from backend server."}},
        {"status": 503},
        {"delay": 1.5},
        {"disconnect": "reset"},
        {"disconnect": "truncate"},
        {"status": 200, "body": "<html><body>maintenance</body></html>"},
    ],
)
def test_every_answer_that_may_succeed_is_retried_with_backoff(fake, rule):
    c, waits, lines = client(fake, backoff_seconds=0.5)
    fake.add_rule(path="/api/v3/klines", times=2, **rule)
    assert len(fetch(c)) == 24
    assert waits == [0.5, 1.0] and len(lines) == 2 and c.retries.total() == 2


def test_a_transient_failure_beyond_the_budget_names_the_request_and_the_answer(fake):
    c, waits, _ = client(fake, max_retries=2)
    fake.add_rule(path="/api/v3/klines", status=500, body={"code": -1000, "msg": "An unknown error occured"})
    with pytest.raises(ExchangeRequestFailed) as failed:
        fetch(c)
    assert str(failed.value) == (
        'binance ETH/BTC 1h spot candles: HTTP 500 {"code":-1000,"msg":"An unknown error occured"} (OperationFailed); '
        "still failing after 2 retries"
    )
    assert not failed.value.permanent and len(waits) == 2


@pytest.mark.parametrize(
    ("market_type", "pair", "candle_type"),
    [("spot", "ETH/BTC", "spot"), ("futures", "XRP/USDT:USDT", "futures"), ("futures", "XRP/USDT:USDT", "mark")],
)
def test_kline_pages_convert_to_the_floats_ccxt_parses(fake, market_type, pair, candle_type):
    """Binance pages become float rows in one numpy conversion: the same rows, value for value, as
    ccxt's own parse_ohlcv, on spot, perpetual and mark-price klines."""
    import ccxt

    ours = MarketDataClient("binance", market_type, fake.ccxt_config(market_type, timeout=3000))
    plain = ccxt.binance(fake.ccxt_config(market_type, timeout=3000))
    since, until = to_ms("2024-02-01"), to_ms("2024-02-02")
    rows = ours.fetch_candles(pair, "5m", candle_type, since, until)
    params = {"price": "mark"} if candle_type == "mark" else {}
    expected = np.array(plain.fetch_ohlcv(pair, "5m", since, 288, params), dtype="float64")
    assert rows.shape == (288, 6)
    np.testing.assert_array_equal(rows, expected)


def test_a_kline_page_with_a_value_that_is_no_number_is_parsed_by_ccxt(fake):
    """A page numpy cannot convert is left to ccxt's parsing, whose None becomes NaN, which cleaning
    then drops as an invalid candle: the answer is neither lost nor misread."""
    c, _, _ = client(fake)
    page = [[to_ms("2024-02-01"), "0.05", "0.06", "0.04", "0.05", "12.5", 0, "0", 1, "0", "0", "0"],
            [to_ms("2024-02-01T01:00"), "0.05", "n/a", "0.04", "0.05", "12.5", 0, "0", 1, "0", "0", "0"]]
    fake.add_rule(path="/api/v3/klines", status=200, body=page, times=1)
    rows = fetch(c)  # the first page is the one above, the next pages come from the exchange
    assert rows[:3, 0].tolist() == [to_ms("2024-02-01"), to_ms("2024-02-01T01:00"), to_ms("2024-02-01T02:00")]
    assert rows[0].tolist()[1:] == [0.05, 0.06, 0.04, 0.05, 12.5]
    assert np.isnan(rows[1, 2]) and rows[1, 3] == 0.04 and len(rows) == 24
