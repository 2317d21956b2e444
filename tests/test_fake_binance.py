"""The fake Binance server speaks enough Binance for an unmodified ccxt.binance."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path
from typing import Any

import ccxt
import numpy as np
import pandas as pd
import pytest

from simulator.binance import to_ms
from tests.fakes.client import FakeBinance, FakeBinanceError
from tradai_core.binance_urls import API_PATHS

FIVE_MINUTES = 5 * 60_000
HOUR = 60 * 60_000
NOW = to_ms("2024-03-01T12:02:30Z")  # inside the 12:00 hour, the 12:00 5m candle, ...
SAMPLE_DATA = Path(__file__).resolve().parent.parent / "tradai_assets" / "sample" / "data" / "binance"


def exchange(fake: FakeBinance, market_type: str = "spot", **extra: Any) -> ccxt.binance:
    return ccxt.binance(fake.ccxt_config(market_type, enableRateLimit=False, **extra))


def raw(fake: FakeBinance, path: str, **params: Any) -> tuple[int, Message, Any]:
    """(status, headers (names case-insensitive, as in HTTP), decoded JSON body) of a GET on the fake."""
    query = "&".join(f"{k}={v}" for k, v in params.items())
    try:
        with urllib.request.urlopen(f"{fake.url}{path}?{query}", timeout=10) as response:
            return response.status, response.headers, json.load(response)
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            return e.code, e.headers, json.loads(body)
        except ValueError:
            return e.code, e.headers, body.decode()


def klines(fake: FakeBinance, path: str = "/api/v3/klines", **params: Any) -> list[list]:
    status, _, body = raw(fake, path, **params)
    assert status == 200, body
    return body


# ---------------------------------------------------------------------- markets


def test_ccxt_config_redirects_every_binance_api(fake_binance):
    config = fake_binance.ccxt_config("futures")
    assert set(config["urls"]["api"]) == set(ccxt.binance().urls["api"]) == set(API_PATHS)
    assert all(url.startswith(fake_binance.url + "/") for url in config["urls"]["api"].values())
    assert config["options"]["defaultType"] == "swap"
    assert exchange(fake_binance).urls["api"]["public"] == fake_binance.url + "/api/v3"


def test_load_markets_spot(fake_binance_clean):
    markets = exchange(fake_binance_clean).load_markets()
    spot = sorted(s for s, m in markets.items() if m["spot"])
    bases = ("ADA", "DASH", "ETC", "ETH", "LTC", "NXT", "TRX", "XLM", "XMR", "ZEC")
    assert spot == sorted([f"{b}/BTC" for b in bases] + ["BTC/USDT", "ETH/USDT"])
    eth = markets["ETH/BTC"]
    assert (eth["id"], eth["type"], eth["active"]) == ("ETHBTC", "spot", True)
    assert eth["precision"]["price"] == 0.00001
    assert eth["precision"]["amount"] == 0.0001
    assert eth["limits"]["amount"]["min"] == 0.0001
    assert eth["limits"]["cost"]["min"] == 0.0001
    assert markets["BTC/USDT"]["limits"]["cost"]["min"] == 5
    assert fake_binance_clean.stats()["requests"] == {
        "/api/v3/exchangeInfo": 1, "/fapi/v1/exchangeInfo": 1, "/dapi/v1/exchangeInfo": 1,
    }


def test_load_markets_linear_futures(fake_binance):
    markets = exchange(fake_binance, "futures").load_markets()
    swaps = {s: m for s, m in markets.items() if m["swap"]}
    assert sorted(swaps) == ["BTC/USDT:USDT", "ETH/USDT:USDT", "XRP/USDT:USDT"]
    xrp = swaps["XRP/USDT:USDT"]
    assert (xrp["id"], xrp["linear"], xrp["inverse"]) == ("XRPUSDT", True, False)
    assert xrp["settle"] == "USDT"
    assert (xrp["contractSize"], xrp["expiry"], xrp["active"]) == (1, None, True)
    assert xrp["precision"]["price"] == 0.0001
    assert xrp["limits"]["cost"]["min"] == 5
    assert xrp["created"] == to_ms("2020-01-06")
    assert not any(m["inverse"] for m in markets.values())


def test_load_markets_with_credentials_fetches_currencies(fake_binance_clean):
    ex = exchange(fake_binance_clean, "futures", apiKey="key", secret="secret")
    ex.load_markets()
    assert {"BTC", "ETH", "USDT", "XRP", "ADA"} <= set(ex.currencies)
    requests = fake_binance_clean.stats()["requests"]
    assert requests["/sapi/v1/capital/config/getall"] == 1
    assert requests["/sapi/v1/margin/allPairs"] >= 1


# ---------------------------------------------------------------------- candles


def test_fetch_ohlcv_pages_contiguously_and_counts_candles(fake_binance_clean):
    fake = fake_binance_clean
    fake.control(now_ms=NOW)
    ex = exchange(fake)
    since = to_ms("2024-01-01")
    candles, cursor = [], since
    while len(candles) < 2500:
        page = ex.fetch_ohlcv("ETH/BTC", "5m", since=cursor, limit=1000)
        candles += page
        cursor = page[-1][0] + FIVE_MINUTES
    candles = candles[:2500]
    times = np.array([c[0] for c in candles])
    assert times[0] == since and np.all(np.diff(times) == FIVE_MINUTES)
    ohlcv = np.array(candles)[:, 1:]
    o, h, low, c, v = ohlcv.T
    assert np.all(low <= np.minimum(o, c)) and np.all(np.maximum(o, c) <= h)
    assert np.all(low > 0) and np.all(v > 0)
    assert np.allclose(o[1:], c[:-1])  # opens continue the previous close
    again = ex.fetch_ohlcv("ETH/BTC", "5m", since=since, limit=1000)
    assert again == candles[:1000]  # deterministic
    assert fake.requests_made("/api/v3/klines") == 4
    assert fake.candles_served("ETHBTC", interval="5m") == 4000

    # An incremental sync an hour later gets only the new candles.
    fake.reset()
    fake.control(now_ms=NOW + HOUR)
    last_known = to_ms("2024-03-01T12:00:00Z")
    new = ex.fetch_ohlcv("ETH/BTC", "5m", since=last_known + FIVE_MINUTES, limit=1000)
    assert [c[0] for c in new] == [last_known + i * FIVE_MINUTES for i in range(1, 13)]
    assert fake.candles_served("ETHBTC") == 12
    assert fake.stats()["klines"] == {
        "/api/v3/klines": {"ETHBTC": {"requests": 1, "candles": 12, "intervals": {"5m": 12}}}
    }


def test_klines_follow_binance_parameter_rules(fake_binance_clean):
    fake = fake_binance_clean
    fake.control(now_ms=NOW)
    latest = klines(fake, symbol="ETHBTC", interval="5m")
    assert len(latest) == 500
    row = latest[-1]
    assert len(row) == 12 and all(isinstance(row[i], str) for i in (1, 2, 3, 4, 5, 7, 9, 10))
    assert row[0] <= NOW < row[6]  # the still-open candle, its close time in the future
    assert row[6] == row[0] + FIVE_MINUTES - 1

    start = to_ms("2024-02-01")
    end = start + 4 * FIVE_MINUTES
    both = klines(fake, symbol="ETHBTC", interval="5m", startTime=start, endTime=end)
    assert [k[0] for k in both] == [start + i * FIVE_MINUTES for i in range(5)]  # inclusive
    mid = klines(fake, symbol="ETHBTC", interval="5m", startTime=start + 1, limit=2)
    assert [k[0] for k in mid] == [start + FIVE_MINUTES, start + 2 * FIVE_MINUTES]
    until = klines(fake, symbol="ETHBTC", interval="5m", endTime=start, limit=3)
    assert [k[0] for k in until] == [start - 2 * FIVE_MINUTES, start - FIVE_MINUTES, start]
    assert klines(fake, symbol="ETHBTC", interval="5m", startTime=NOW + HOUR) == []

    assert len(klines(fake, symbol="ETHBTC", interval="1m", limit=5000)) == 1000
    assert len(klines(fake, "/fapi/v1/klines", symbol="BTCUSDT", interval="1m", limit=5000)) == 1500
    assert len(klines(fake, symbol="ETHBTC", interval="1s", limit=3)) == 3

    listing = klines(fake, symbol="ETHBTC", interval="1d", startTime=0, limit=2)
    assert [k[0] for k in listing] == [to_ms("2017-07-14"), to_ms("2017-07-15")]
    weekly = klines(fake, symbol="ETHBTC", interval="1w", limit=1)[0]
    assert pd.Timestamp(weekly[0], unit="ms").day_name() == "Monday"
    monthly = klines(fake, symbol="ETHBTC", interval="1M", limit=2)
    assert [k[0] for k in monthly] == [to_ms("2024-02-01"), to_ms("2024-03-01")]
    assert monthly[0][6] == to_ms("2024-03-01") - 1


def test_open_candle_moves_with_the_clock_closed_ones_do_not(fake_binance_clean):
    fake = fake_binance_clean
    fake.control(now_ms=NOW)
    before = klines(fake, symbol="BTCUSDT", interval="1h", limit=2)
    fake.control(now_ms=NOW + 20 * 60_000)
    after = klines(fake, symbol="BTCUSDT", interval="1h", limit=2)
    assert before[0] == after[0]
    assert before[1][0] == after[1][0] and before[1][1] == after[1][1]  # same open time and open
    assert before[1][4] != after[1][4]  # the close follows the clock
    assert float(after[1][5]) > float(before[1][5])  # volume accrues


def test_mark_and_index_klines(fake_binance_clean):
    fake = fake_binance_clean
    fake.control(now_ms=NOW)
    ex = exchange(fake, "futures")
    since = to_ms("2024-02-01")
    trade = ex.fetch_ohlcv("BTC/USDT:USDT", "1h", since=since, limit=48)
    mark = ex.fetch_ohlcv("BTC/USDT:USDT", "1h", since=since, limit=48, params={"price": "mark"})
    index = ex.fetch_ohlcv("BTC/USDT:USDT", "1h", since=since, limit=48, params={"price": "index"})
    assert [c[0] for c in mark] == [c[0] for c in trade] == [c[0] for c in index]
    assert all(c[5] == 0 for c in mark)
    assert np.allclose([c[4] for c in mark], [c[4] for c in trade], rtol=1e-3)
    assert fake.candles_served("BTCUSDT", path="/fapi/v1/markPriceKlines") == 48
    assert fake.candles_served("BTCUSDT", path="/fapi/v1/indexPriceKlines") == 48


# ---------------------------------------------------------------------- futures data


def test_funding_rate_history(fake_binance_clean):
    fake = fake_binance_clean
    fake.control(now_ms=NOW)
    ex = exchange(fake, "futures")
    since = to_ms("2024-01-01T03:00:00Z")
    history = ex.fetch_funding_rate_history("ETH/USDT:USDT", since=since, limit=10)
    times = [h["timestamp"] for h in history]
    assert times[0] == to_ms("2024-01-01T08:00:00Z")
    assert np.all(np.diff(times) == 8 * HOUR) and len(times) == 10
    assert all(abs(h["fundingRate"]) < 0.001 for h in history)
    latest = ex.fetch_funding_rate_history("ETH/USDT:USDT")
    assert len(latest) == 100 and latest[-1]["timestamp"] == to_ms("2024-03-01T08:00:00Z")
    current = ex.fetch_funding_rate("ETH/USDT:USDT")
    assert current["fundingTimestamp"] == to_ms("2024-03-01T16:00:00Z")
    assert current["markPrice"] > 0


def test_leverage_tiers_need_an_api_key(fake_binance):
    ex = exchange(fake_binance, "futures", apiKey="dummy", secret="dummy")
    tiers = ex.fetch_leverage_tiers()
    assert set(tiers) == {"BTC/USDT:USDT", "ETH/USDT:USDT", "XRP/USDT:USDT"}
    first, second = tiers["BTC/USDT:USDT"][:2]
    assert (first["maxLeverage"], first["maintenanceMarginRate"]) == (150, 0.004)
    assert first["minNotional"] == 0
    assert (second["minNotional"], second["info"]["cum"]) == (300_000, 300.0)
    status, _, body = raw(fake_binance, "/fapi/v1/leverageBracket", timestamp=1, signature="x")
    assert (status, body["code"]) == (401, -2014)


def test_tickers_order_books_and_time_agree_with_candles(fake_binance_clean):
    fake = fake_binance_clean
    fake.control(now_ms=NOW)
    ex = exchange(fake)
    assert ex.fetch_time() == NOW
    last_close = ex.fetch_ohlcv("ETH/BTC", "1m", limit=1)[-1][4]
    ticker = ex.fetch_ticker("ETH/BTC")
    assert ticker["last"] == last_close and ticker["timestamp"] == NOW
    assert ticker["low"] <= ticker["last"] <= ticker["high"] and ticker["baseVolume"] > 0
    assert ticker["bid"] < ticker["ask"]
    book = ex.fetch_order_book("ETH/BTC", 20)
    bids, asks = [p for p, _ in book["bids"]], [p for p, _ in book["asks"]]
    assert len(bids) == len(asks) == 20
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
    assert bids[0] < asks[0] and all(q > 0 for _, q in book["bids"] + book["asks"])
    assert set(ex.fetch_tickers(["ETH/BTC", "LTC/BTC"])) == {"ETH/BTC", "LTC/BTC"}

    fx = exchange(fake, "futures")
    assert set(fx.fetch_tickers()) == {"BTC/USDT:USDT", "ETH/USDT:USDT", "XRP/USDT:USDT"}
    quotes = fx.fetch_bids_asks(["XRP/USDT:USDT"])["XRP/USDT:USDT"]
    assert quotes["bid"] < quotes["ask"]
    book = fx.fetch_order_book("BTC/USDT:USDT", 5)
    assert len(book["bids"]) == 5 and book["bids"][0][0] < book["asks"][0][0]
    assert fx.fetch_time() == NOW


# ---------------------------------------------------------------------- errors


def test_binance_style_errors(fake_binance):
    assert raw(fake_binance, "/api/v3/klines", symbol="NOPE", interval="1m")[::2] == (
        400, {"code": -1121, "msg": "Invalid symbol."}
    )
    assert raw(fake_binance, "/api/v3/klines", symbol="ETHBTC", interval="7m")[::2] == (
        400, {"code": -1120, "msg": "Invalid interval."}
    )
    assert raw(fake_binance, "/fapi/v1/klines", symbol="BTCUSDT", interval="1s")[2]["code"] == -1120
    assert raw(fake_binance, "/api/v3/klines", symbol="ETHBTC")[2]["code"] == -1102
    status, _, body = raw(fake_binance, "/api/v3/nothing")
    assert (status, body["code"]) == (404, -5000)
    ex = exchange(fake_binance)
    with pytest.raises(ccxt.BadSymbol):
        ex.publicGetKlines({"symbol": "NOPE", "interval": "1m"})
    with pytest.raises(ccxt.BadRequest):
        ex.publicGetKlines({"symbol": "ETHBTC", "interval": "7m"})


# ccxt's binance.handle_errors turns 429 into DDoSProtection (not RateLimitExceeded, which is not
# even a subclass of it), and the generic HTTP table maps 504 to RequestTimeout.
@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, ccxt.DDoSProtection),
        (418, ccxt.DDoSProtection),
        (500, ccxt.ExchangeNotAvailable),
        (502, ccxt.ExchangeNotAvailable),
        (503, ccxt.ExchangeNotAvailable),
        (504, ccxt.RequestTimeout),
    ],
)
def test_injected_status_raises_the_ccxt_error(fake_binance_clean, status, error):
    ex = exchange(fake_binance_clean)
    ex.load_markets()
    fake_binance_clean.add_rule(path="/api/v3/klines", status=status, times=1)
    with pytest.raises(error):
        ex.fetch_ohlcv("ETH/BTC", "1m", limit=2)
    assert len(ex.fetch_ohlcv("ETH/BTC", "1m", limit=2)) == 2  # the rule is used up
    assert fake_binance_clean.stats()["injected"] == {"status": 1}


def test_rate_limit_answers_like_binance(fake_binance_clean):
    fake_binance_clean.add_rule(path="/api/v3/ping", status=429, retry_after=7)
    status, headers, body = raw(fake_binance_clean, "/api/v3/ping")
    assert (status, headers["Retry-After"], body["code"]) == (429, "7", -1003)
    fake_binance_clean.control(rules=[{"status": 418}], clear_rules=True)
    status, headers, body = raw(fake_binance_clean, "/api/v3/time")
    assert (status, body["code"]) == (418, -1003) and "banned until" in body["msg"]


def test_delay_beyond_the_client_timeout_raises_request_timeout(fake_binance_clean):
    ex = exchange(fake_binance_clean)
    ex.load_markets()
    fake_binance_clean.add_rule(path="/api/v3/klines", delay=5.0, times=1)
    ex.timeout = 1000  # ms, only for the delayed call: the others keep ccxt's default
    with pytest.raises(ccxt.RequestTimeout):
        ex.fetch_ohlcv("ETH/BTC", "1m", limit=2)
    ex.timeout = 10000
    assert len(ex.fetch_ohlcv("ETH/BTC", "1m", limit=2)) == 2


def test_rules_every_times_symbol_and_fail_forever(fake_binance_clean):
    fake = fake_binance_clean
    fake.add_rule(path="/api/v3/ping", status=503, every=2, times=2)
    assert [raw(fake, "/api/v3/ping")[0] for _ in range(6)] == [200, 503, 200, 503, 200, 200]
    assert fake.stats()["rules"] == []  # used up

    fake.add_rule(path="/api/v3/klines", symbol="LTCBTC", status=500)
    assert raw(fake, "/api/v3/klines", symbol="LTCBTC", interval="1h", limit=1)[0] == 500
    assert raw(fake, "/api/v3/klines", symbol="ETHBTC", interval="1h", limit=1)[0] == 200

    fake.add_rule(path="/fapi/*", fail_forever=True)
    assert {raw(fake, "/fapi/v1/time")[0] for _ in range(5)} == {503}
    assert raw(fake, "/api/v3/time")[0] == 200
    assert [r["fired"] for r in fake.stats()["rules"]] == [1, 5]
    with pytest.raises(ccxt.ExchangeNotAvailable):
        exchange(fake, "futures").fetch_time()


def test_control_rejects_malformed_rules(fake_binance_clean):
    for bad in ({"path": "/api/v3/ping"}, {"status": 200}, {"status": 503, "tims": 1},
                {"corrupt": "melt"}, {"fail_forever": True, "times": 2}, {"status": 200},
                {"disconnect": "hang"}, {"mix": "kraken"}, {"mix": []}, {"mix": [{"status": 99}]},
                {"mix": [{"path": "/x", "status": 500}]}, {"mix": "binance", "chance": 1.5}):
        with pytest.raises(FakeBinanceError):
            fake_binance_clean.control(rules=[bad])
    assert fake_binance_clean.stats()["rules"] == []


def test_seeded_fault_mix_repeats_itself(fake_binance_clean):
    def statuses():
        fake_binance_clean.reset()
        fake_binance_clean.add_rule(path="/api/v3/ping", chance=0.5, seed=3,
                                    mix=[{"status": 500}, {"status": 429}, {"status": 503}])
        return [raw(fake_binance_clean, "/api/v3/ping")[0] for _ in range(40)]

    first = statuses()
    assert first == statuses()  # same seed, same requests: same faults
    assert set(first) == {200, 429, 500, 503} and 8 < first.count(200) < 32
    assert fake_binance_clean.stats()["rules"][0]["fired"] == 40 - first.count(200)


def test_klines_corruptions(fake_binance_clean):
    fake = fake_binance_clean
    fake.control(now_ms=NOW)
    params = {"symbol": "ETHBTC", "interval": "1h", "startTime": to_ms("2024-02-01"), "limit": 10}
    clean = klines(fake, **params)
    times = [k[0] for k in clean]

    fake.add_rule(path="/api/v3/klines", corrupt="duplicate", count=2, times=1)
    duplicated = klines(fake, **params)
    assert len(duplicated) == 12 and sorted({k[0] for k in duplicated}) == times
    assert duplicated[0] == duplicated[1] and duplicated[-1] == duplicated[-2]

    fake.add_rule(path="/api/v3/klines", corrupt="shuffle", times=1)
    shuffled = klines(fake, **params)
    assert [k[0] for k in shuffled] != times and sorted(shuffled) == clean

    ex = exchange(fake)
    fake.add_rule(path="/api/v3/klines", corrupt="nan", open_times=[times[3]], times=1)
    fake.add_rule(
        path="/api/v3/klines", corrupt="zero", field="low", open_times=[times[5]], times=1
    )
    ohlcv = ex.fetch_ohlcv("ETH/BTC", "1h", since=times[0], limit=10)
    assert math.isnan(ohlcv[3][4]) and ohlcv[5][3] == 0.0
    untouched = [i for i in range(10) if i != 3]
    assert [ohlcv[i][4] for i in untouched] == [float(clean[i][4]) for i in untouched]
    assert fake.stats()["injected"] == {"corrupt": 4}


# ---------------------------------------------------------------------- config and data files


@pytest.mark.integration
def test_custom_markets_and_data_dir(tmp_path):
    hours = pd.date_range("2023-05-01", periods=48, freq="1h", tz="UTC").delete([10, 11])  # a gap
    candles = pd.DataFrame({"date": hours, "open": 20.0, "high": 21.5, "low": 19.25, "close": 20.5,
                            "volume": 1234.5})
    candles.loc[1, "volume"] = np.nan  # stored as null
    candles.to_feather(tmp_path / "SOL_USDT-1h.feather")
    funding_times = pd.date_range("2023-05-01", periods=12, freq="4h", tz="UTC")
    funding_times += pd.Timedelta("12ms")  # Binance funding times are a few ms late
    pd.DataFrame({"date": funding_times, "open": 0.0003, "high": 0.0, "low": 0.0, "close": 0.0,
                  "volume": 0.0}).to_feather(tmp_path / "SOL_USDT_USDT-4h-funding_rate.feather")
    candles.to_feather(tmp_path / "DOGE_USDT-1h.feather")  # no such market: skipped

    config = {
        "seed": 7,
        "spot": [{"symbol": "SOL/USDT", "price": 20.0, "tick_size": "0.01", "step_size": "0.001",
                  "listed_since": "2023-01-01"}],
        "futures": [{"symbol": "SOL/USDT:USDT", "price": 20.0, "funding_interval_hours": 4}],
    }
    fake = FakeBinance(config=config, data_dir=tmp_path, now_ms="2023-06-01")
    with fake:
        markets = exchange(fake).load_markets()
        assert sorted(markets) == ["SOL/USDT", "SOL/USDT:USDT"]
        served = exchange(fake).fetch_ohlcv("SOL/USDT", "1h", since=to_ms("2023-04-01"), limit=100)
        assert [c[0] for c in served] == [int(t.timestamp() * 1000) for t in hours]
        assert served[0][1:] == [20.0, 21.5, 19.25, 20.5, 1234.5]
        assert served[1][5] == 0.0
        generated = exchange(fake).fetch_ohlcv("SOL/USDT", "5m", since=to_ms("2023-05-01"), limit=3)
        assert len(generated) == 3 and generated[0][1] != 20.0
        funding = exchange(fake, "futures").fetch_funding_rate_history("SOL/USDT:USDT", since=0)
        expected_times = [int(t.timestamp() * 1000) for t in funding_times]
        assert [f["timestamp"] for f in funding] == expected_times
        assert {f["fundingRate"] for f in funding} == {0.0003}
        latest = raw(fake, "/fapi/v1/fundingRate", symbol="SOLUSDT", limit=1)[2]
        assert latest == [{"symbol": "SOLUSDT", "fundingTime": funding[-1]["timestamp"],
                           "fundingRate": "0.00030000", "markPrice": latest[0]["markPrice"]}]
        pid = fake.pid
    assert fake.returncode == 0 and pid is not None


@pytest.mark.integration
def test_real_sample_data_is_served_with_its_gaps():
    with FakeBinance(data_dir=SAMPLE_DATA) as fake:
        ex = exchange(fake)
        since, served = to_ms("2018-01-01"), []
        while page := ex.fetch_ohlcv("ADA/BTC", "5m", since=since, limit=1000):
            served += page
            since = page[-1][0] + 1
        frame = pd.read_feather(SAMPLE_DATA / "ADA_BTC-5m.feather")
        assert len(served) == len(frame) == 5720  # 40 candles missing in the file stay missing
        expected = frame[["open", "high", "low", "close", "volume"]].to_numpy()
        assert np.allclose(np.array(served)[:, 1:], expected, rtol=0, atol=1e-8)
        fx = exchange(fake, "futures")
        funding = fx.fetch_funding_rate_history("XRP/USDT:USDT", since=0, limit=1000)
        assert len(funding) == 91 and funding[0]["datetime"] == "2021-11-18T00:00:00.017Z"


# In-process: the Starlette application without a socket ------------------------------------------


@pytest.fixture(scope="module")
def in_process():
    from starlette.testclient import TestClient

    from simulator.app import create_app
    from simulator.binance import FakeExchange

    exchange = FakeExchange.from_config({"now_ms": "2024-03-01T00:00:00Z"})
    with TestClient(create_app(exchange)) as client:
        yield client, exchange


def test_the_exchange_answers_in_process_as_over_http(in_process):
    client, exchange = in_process
    client.post("/__reset")
    assert client.get("/api/v3/time").json() == {"serverTime": to_ms("2024-03-01T00:00:00Z")}
    rows = client.get("/api/v3/klines", params={"symbol": "BTCUSDT", "interval": "1h", "limit": 3}).json()
    assert [row[0] for row in rows] == [to_ms("2024-02-29T22:00:00Z"), to_ms("2024-02-29T23:00:00Z"),
                                        to_ms("2024-03-01T00:00:00Z")]
    unknown = client.get("/api/v3/nothing")
    assert (unknown.status_code, unknown.json()["code"]) == (404, -5000)
    wrong_method = client.delete("/api/v3/time")  # a known path, a method Binance does not answer there
    assert (wrong_method.status_code, wrong_method.json()["code"]) == (404, -5000)
    assert exchange.stats()["requests"] == {"/api/v3/time": 2, "/api/v3/klines": 1, "/api/v3/nothing": 1}


def test_fault_rules_apply_in_process_and_a_broken_connection_is_refused_by_name(in_process):
    client, _ = in_process
    client.post("/__reset")
    added = client.post("/__control", json={"rules": [{"path": "/api/v3/ping", "status": 429, "retry_after": 3,
                                                        "times": 1}]})
    assert added.status_code == 200 and len(added.json()["rules"]) == 1
    limited = client.get("/api/v3/ping")
    assert (limited.status_code, limited.headers["retry-after"], limited.json()["code"]) == (429, "3", -1003)
    assert client.get("/api/v3/ping").status_code == 200  # the rule fired its one time
    client.post("/__control", json={"rules": [{"path": "/api/v3/ping", "disconnect": "reset", "times": 1}]})
    with pytest.raises(ConnectionError, match="only a served exchange can break a connection"):
        client.get("/api/v3/ping")
    bad = client.post("/__control", json={"clock_speed": -1})
    assert bad.status_code == 400 and "clock_speed" in bad.json()["error"]


# ---------------------------------------------------------------------- request weights


def test_request_weights_refuse_past_the_minutes_limit_as_binance_does():
    """Futures klines of 1000 weigh 5 against USD-M's 2,400 a minute: the 481st request of a minute
    is refused with Binance's 429 -1003 and the seconds left in the minute; spot keeps its own budget,
    and the next minute starts afresh."""
    from starlette.testclient import TestClient

    from simulator.app import create_app
    from simulator.binance import FakeExchange

    minute_start = 1_700_000_040.0  # a whole minute of the wall clock
    now = [minute_start + 20.25]
    exchange = FakeExchange.from_config(
        {"now_ms": "2024-03-01T00:00:00Z", "request_weights": True}, wall_clock=lambda: now[0]
    )
    page = {"symbol": "BTCUSDT", "interval": "1m", "limit": 1000}
    with TestClient(create_app(exchange)) as client:
        answers = [client.get("/fapi/v1/klines", params=page) for _ in range(480)]
        assert [a.status_code for a in answers] == [200] * 480
        assert answers[0].headers["x-mbx-used-weight-1m"] == "5"
        assert answers[-1].headers["x-mbx-used-weight-1m"] == "2400"
        refused = client.get("/fapi/v1/klines", params=page)
        assert refused.status_code == 429
        assert refused.json() == {
            "code": -1003,
            "msg": "Too much request weight used; current limit is 2400 request weight per 1 MINUTE. "
                   "Please use WebSocket Streams for live updates to avoid polling the API.",
        }
        assert refused.headers["retry-after"] == "40"  # 39.75 s left in the minute, rounded up
        # ccxt reads the 429 as DDoSProtection, which the product's retry waits out (Retry-After).
        with pytest.raises(ccxt.DDoSProtection):
            ccxt.binance().handle_errors(429, "", "", "GET", {}, refused.text, refused.json(), {}, {})
        small = client.get("/fapi/v1/klines", params={**page, "limit": 99})
        assert small.status_code == 429  # a refused request uses no weight, and even weight 1 is over
        spot = client.get("/api/v3/klines", params={**page, "limit": 1000})
        assert spot.status_code == 200 and spot.headers["x-mbx-used-weight"] == "2"
        assert client.get("/__stats").json()["weight_refused"] == 2
        now[0] = minute_start + 60.0  # the next minute
        again = client.get("/fapi/v1/klines", params=page)
        assert again.status_code == 200 and again.headers["x-mbx-used-weight-1m"] == "5"


@pytest.mark.parametrize(
    ("path", "params", "weight"),
    [
        ("/api/v3/klines", {"limit": 1000}, 2),
        ("/api/v3/depth", {}, 5),
        ("/api/v3/depth", {"limit": 500}, 25),
        ("/api/v3/depth", {"limit": 5000}, 250),
        ("/api/v3/exchangeInfo", {}, 20),
        ("/api/v3/ticker/24hr", {"symbol": "BTCUSDT"}, 2),
        ("/api/v3/ticker/24hr", {}, 80),
        ("/fapi/v1/klines", {}, 5),  # Binance's default limit of 500
        ("/fapi/v1/klines", {"limit": 99}, 1),
        ("/fapi/v1/klines", {"limit": 100}, 2),
        ("/fapi/v1/markPriceKlines", {"limit": 1500}, 10),
        ("/fapi/v1/depth", {"limit": 1000}, 20),
        ("/fapi/v1/exchangeInfo", {}, 1),
        ("/sapi/v1/system/status", {}, 0),
    ],
)
def test_request_weights_follow_binances_documented_table(path, params, weight):
    from simulator.binance import request_weight

    assert request_weight(path, params)[1] == weight


def test_request_weights_are_counted_but_not_enforced_unless_asked(fake_binance_clean):
    status, headers, _ = raw(fake_binance_clean, "/api/v3/klines", symbol="BTCUSDT", interval="1m", limit=5)
    assert status == 200 and int(headers["x-mbx-used-weight-1m"]) >= 2
    with pytest.raises(ValueError, match="request_weights must be true or false"):
        from simulator.binance import FakeExchange

        FakeExchange.from_config({"request_weights": "yes"})


def test_the_served_exchange_takes_request_weights_from_its_config():
    with FakeBinance(config={"request_weights": True}) as fake:
        status, headers, _ = raw(fake, "/fapi/v1/klines", symbol="BTCUSDT", interval="1m", limit=1000)
        assert status == 200 and headers["X-MBX-USED-WEIGHT-1M"] == "5"
