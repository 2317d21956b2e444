"""The local simulated Binance exchange: Binance's REST market-data API served over HTTP on this machine.

Development uses it for offline dry runs (``make dev`` starts it on 127.0.0.1:8300 and local bots
trade against it when ``TRADAI_LOCAL_EXCHANGE_URL`` is set, see docs/bots.md); the tests and
benchmarks use it as their exchange (:mod:`tests.fakes.client` starts it as a subprocess).

An unmodified ``ccxt.binance`` (and freqtrade's ``Binance`` exchange class, which drives ccxt) works
against it once ccxt's ``urls['api']`` entries point here: :func:`tradai_core.binance_urls.ccxt_config` builds that config.

What it emulates
----------------
* Spot ``/api/v3``: ping, time, exchangeInfo, klines, ticker/24hr, ticker/price, ticker/bookTicker,
  depth.
* USDⓈ-M futures ``/fapi``: v1 ping, time, exchangeInfo, klines, markPriceKlines, indexPriceKlines,
  fundingRate, premiumIndex, ticker/24hr, ticker/price, ticker/bookTicker, depth and the signed
  leverageBracket; v2 ticker/price.
* COIN-M ``/dapi/v1``: ping, time and an exchangeInfo without symbols, so that ccxt's default
  ``load_markets`` (spot + linear + inverse) succeeds.
* The ``/sapi/v1`` calls ccxt makes when it has credentials: capital/config/getall (currencies),
  margin/allPairs and margin/isolated/allPairs (both empty: no margin trading), and system/status.
* Binance's response shapes (field names, decimal strings, 12-element klines), parameter rules
  (klines ``limit`` default 500, silently capped at 1000 on spot and 1500 on futures;
  ``startTime`` and ``endTime`` select candles by open time, both inclusive; without
  ``startTime`` the latest candles; the last candle may be the still-open one, its close time in
  the future) and Binance-style JSON errors (``{"code": -1121, "msg": "Invalid symbol."}``,
  ``-1120`` invalid interval, ``-1102`` missing parameter, ``-5000`` unknown path with HTTP 404).

Market data
-----------
Candles are generated per request, vectorised with numpy, as a pure function of (seed, market,
candle kind, interval, open time) -- plus "now" for the still-open candle -- so years of 1m candles
cost nothing up front.  Prices follow a deterministic multi-scale random path of continuous time:
a candle opens at the path's value at its open time and closes at its value at its close time (at
"now" while still open), so opens and closes agree across intervals.  High, low and volume are
per-interval noise and are *not* the aggregates of smaller intervals.  Within a minute the path is
linear, so 1s candles are smooth.  Spot and perpetual markets with the same id (BTCUSDT) share one
path; futures, mark and index prices deviate from it by a few basis points.  Funding rates are
small deterministic values at multiples of each market's funding interval (8h by default).

A ``--data-dir`` of freqtrade feather files (``ETH_BTC-5m.feather``,
``XRP_USDT_USDT-5m-futures.feather``, ``-1h-mark``, ``-1h-index``, ``-8h-funding_rate``; searched
recursively) replaces generated candles and funding rates for exactly the (market, kind,
interval) it holds; other intervals stay generated.  Gaps in the files are served as gaps, and the
candle containing "now" is served complete.  Tickers, order books and premium index use the finest
data series of a market when there is one.

Request weights (opt-in, config ``"request_weights": true`` or ``--request-weights``): every
answer carries Binance's ``X-MBX-USED-WEIGHT-1M`` header, and a request that would take an API
family past its minute's limit (spot 6,000, USD-M futures 2,400, COIN-M 2,400; Binance's fixed
windows of the wall clock's minute) is refused as Binance refuses it: HTTP 429, ``-1003`` and a
``Retry-After`` of the seconds left in the minute.  Weights follow Binance's documentation (spot
klines 2, futures klines 1/2/5/10 by ``limit``, depth and tickers by limit or symbol count); a
refused request uses no weight, and repeated refusals do not escalate to 418 bans (inject those
as faults).  Without the setting the header is still sent and nothing is refused.

Not emulated: trading, orders, balances, positions, user streams and websockets; signature and recvWindow checks (signed endpoints only
require an ``X-MBX-APIKEY`` header and ``timestamp``/``signature`` parameters); trades, aggTrades,
open interest, premium-index klines, continuous klines, COIN-M markets, options, and the
data.binance.vision archives freqtrade downloads from unless ``only_from_ccxt`` is set.

Control endpoints (never subject to faults)
-------------------------------------------
* ``POST /__control`` with a JSON object: ``now_ms`` (int ms or ISO date: freeze the clock there;
  ``null`` for the real clock), ``clock_speed`` (how fast a set clock advances, 0 = frozen),
  ``clear_rules`` (bool: drop active rules first), ``rules`` (list of :class:`Rule` objects to add).
  Answers with the clock and the active rules.
* ``POST /__reset``: back to the startup state (clock, no rules) and zeroed counters.
* ``GET /__stats``: request counts per path, candles served per klines path / symbol / interval,
  injected faults, active rules.

Run ``python -m simulator --host 127.0.0.1 --port 0 [--data-dir DIR] [--config FILE]``:
prints ``LISTENING http://HOST:PORT`` once ready and serves until SIGTERM or SIGINT (exit code 0).
This module is the exchange itself (:class:`FakeExchange`); its HTTP layer is a Starlette application
(:func:`simulator.app.create_app`), which tests can also drive in-process with Starlette's TestClient.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import math
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

log = logging.getLogger("tradai.local_exchange")

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

#: Fixed-length Binance kline intervals, in ms.  "1M" (calendar months) is handled by :class:`Grid`.
INTERVAL_MS = {
    "1s": SECOND_MS,
    "1m": MINUTE_MS,
    "3m": 3 * MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": HOUR_MS,
    "2h": 2 * HOUR_MS,
    "4h": 4 * HOUR_MS,
    "6h": 6 * HOUR_MS,
    "8h": 8 * HOUR_MS,
    "12h": 12 * HOUR_MS,
    "1d": DAY_MS,
    "3d": 3 * DAY_MS,
    "1w": 7 * DAY_MS,
}
SPOT_INTERVALS = frozenset(INTERVAL_MS) | {"1M"}
FUTURES_INTERVALS = SPOT_INTERVALS - {"1s"}  # 1s klines exist on spot only

#: Candle kinds, named like freqtrade's candle types and data-file suffixes.
TRADE_KINDS = ("spot", "futures")
PRICE_KINDS = ("mark", "index")  # no volume

SPOT_KLINES_MAX = 1000
FUTURES_KLINES_MAX = 1500
KLINES_DEFAULT = 500
FUNDING_DEFAULT, FUNDING_MAX = 100, 1000
PERPETUAL_DELIVERY_DATE = 4133404800000  # what Binance reports for perpetuals (2100-12-25)

# Binance leverage brackets as (initialLeverage, notionalCap, maintMarginRatio), from freqtrade's
# bundled binance_leverage_tiers.json; floors and "cum" are derived.
_BRACKETS_MAJOR = (
    (150, 300_000, 0.004),
    (100, 800_000, 0.005),
    (75, 3_000_000, 0.0065),
    (50, 12_000_000, 0.01),
    (25, 70_000_000, 0.02),
    (20, 100_000_000, 0.025),
    (10, 230_000_000, 0.05),
    (5, 480_000_000, 0.1),
    (4, 600_000_000, 0.125),
    (3, 800_000_000, 0.15),
    (2, 1_200_000_000, 0.25),
    (1, 1_800_000_000, 0.5),
)
_BRACKETS_ALT = (
    (100, 40_000, 0.005),
    (75, 80_000, 0.006),
    (50, 150_000, 0.01),
    (40, 400_000, 0.0125),
    (25, 1_000_000, 0.02),
    (20, 2_000_000, 0.025),
    (10, 10_000_000, 0.05),
    (5, 20_000_000, 0.1),
    (4, 25_000_000, 0.125),
    (2, 50_000_000, 0.25),
    (1, 100_000_000, 0.5),
)

#: Default spot markets: the ten BTC-quoted pairs of the freqtrade sample data, BTC/USDT, ETH/USDT.
DEFAULT_SPOT_MARKETS: list[dict[str, Any]] = [
    {"symbol": "ADA/BTC", "price": 0.0000065, "tick_size": "0.00000001", "step_size": "0.1",
     "listed_since": "2017-11-30"},
    {"symbol": "DASH/BTC", "price": 0.00045, "tick_size": "0.000001", "step_size": "0.001",
     "listed_since": "2017-10-31"},
    {"symbol": "ETC/BTC", "price": 0.0003, "tick_size": "0.000001", "step_size": "0.01",
     "listed_since": "2017-07-26"},
    {"symbol": "ETH/BTC", "price": 0.05, "tick_size": "0.00001", "step_size": "0.0001",
     "listed_since": "2017-07-14"},
    {"symbol": "LTC/BTC", "price": 0.0012, "tick_size": "0.000001", "step_size": "0.001",
     "listed_since": "2017-07-14"},
    {"symbol": "NXT/BTC", "price": 0.000003, "tick_size": "0.00000001", "step_size": "1",
     "listed_since": "2017-11-13"},
    {"symbol": "TRX/BTC", "price": 0.0000019, "tick_size": "0.00000001", "step_size": "1",
     "listed_since": "2017-09-13"},
    {"symbol": "XLM/BTC", "price": 0.0000018, "tick_size": "0.00000001", "step_size": "1",
     "listed_since": "2017-10-26"},
    {"symbol": "XMR/BTC", "price": 0.0025, "tick_size": "0.000001", "step_size": "0.001",
     "listed_since": "2017-11-15"},
    {"symbol": "ZEC/BTC", "price": 0.0005, "tick_size": "0.000001", "step_size": "0.001",
     "listed_since": "2017-10-09"},
    {"symbol": "BTC/USDT", "price": 60000.0, "tick_size": "0.01", "step_size": "0.00001",
     "listed_since": "2017-08-17"},
    {"symbol": "ETH/USDT", "price": 3000.0, "tick_size": "0.01", "step_size": "0.0001",
     "listed_since": "2017-08-17"},
]

#: Default USDⓈ-M perpetuals.
DEFAULT_FUTURES_MARKETS: list[dict[str, Any]] = [
    {"symbol": "XRP/USDT:USDT", "price": 0.6, "tick_size": "0.0001", "step_size": "0.1",
     "min_notional": "5", "listed_since": "2020-01-06", "leverage_brackets": _BRACKETS_ALT},
    {"symbol": "BTC/USDT:USDT", "price": 60000.0, "tick_size": "0.10", "step_size": "0.001",
     "min_notional": "100", "listed_since": "2019-09-08", "leverage_brackets": _BRACKETS_MAJOR},
    {"symbol": "ETH/USDT:USDT", "price": 3000.0, "tick_size": "0.01", "step_size": "0.001",
     "min_notional": "20", "listed_since": "2019-11-27", "leverage_brackets": _BRACKETS_MAJOR},
]

_SPOT_MIN_NOTIONAL = {"BTC": "0.0001", "ETH": "0.001", "BNB": "0.01"}  # else 5 (stablecoins)
_QUOTE_VOLUME_PER_MINUTE = {"BTC": 2.0, "ETH": 30.0, "BNB": 100.0}  # else 50,000 (stablecoins)


def to_ms(value: int | float | str) -> int:
    """Milliseconds since the epoch from a number of ms or an ISO-8601 date (UTC unless stated)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"not a time: {value!r}")
    if not isinstance(value, str):
        return int(value)
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _decimals(number: str) -> int:
    return max(0, -Decimal(number).normalize().as_tuple().exponent)


def _d8(number: str | Decimal) -> str:
    """A decimal as Binance spot prints it: 8 decimals."""
    return f"{Decimal(number):.8f}"


@dataclass(frozen=True)
class Market:
    """One symbol of exchangeInfo, with what the generator needs to invent its data.

    Config/JSON form: ``{"symbol": "ETH/BTC", "price": 0.05, "tick_size": "0.00001",
    "step_size": "0.0001", "min_qty": ..., "min_notional": ..., "listed_since": "2017-07-14",
    "quote_volume_per_minute": 2.0, "status": "TRADING"}``; perpetuals (``"BASE/QUOTE:QUOTE"``) add
    ``"funding_interval_hours": 8`` and ``"leverage_brackets": [[initialLeverage, notionalCap,
    maintMarginRatio], ...]``.  Only ``symbol`` is required.
    """

    symbol: str  # ccxt unified symbol
    price: float  # reference price level of the generated path
    tick_size: str
    step_size: str
    min_qty: str
    min_notional: str
    listed_since: int  # ms; the first candle is the one containing it
    quote_volume_per_minute: float
    status: str = "TRADING"
    funding_interval_hours: int = 8
    leverage_brackets: tuple[tuple[float, float, float], ...] = ()

    @property
    def base(self) -> str:
        return self.symbol.split("/")[0]

    @property
    def quote(self) -> str:
        return self.symbol.split("/")[1].split(":")[0]

    @property
    def settle(self) -> str | None:
        return self.symbol.split(":")[1] if ":" in self.symbol else None

    @property
    def is_futures(self) -> bool:
        return self.settle is not None

    @property
    def id(self) -> str:
        """Binance symbol id, e.g. ETHBTC."""
        return self.base + self.quote

    @property
    def file_stem(self) -> str:
        """Pair part of freqtrade data file names, e.g. ETH_BTC or XRP_USDT_USDT."""
        return self.symbol.replace("/", "_").replace(":", "_")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], futures: bool) -> Market:
        known = {f.name for f in dataclasses.fields(cls)}
        if unknown := set(raw) - known:
            raise ValueError(f"unknown market keys {sorted(unknown)} in {dict(raw)}")
        symbol = raw["symbol"]
        if not re.fullmatch(r"[A-Z0-9]+/[A-Z0-9]+" + (r":[A-Z0-9]+" if futures else ""), symbol):
            kind = "BASE/QUOTE:SETTLE" if futures else "BASE/QUOTE"
            raise ValueError(f"market symbol {symbol!r} is not of the form {kind}")
        quote = symbol.split("/")[1].split(":")[0]
        if futures and symbol.split(":")[1] != quote:
            raise ValueError(f"{symbol}: only linear (USDⓈ-M) perpetuals are emulated")
        price = float(raw.get("price", 100.0))
        if not price > 0:
            raise ValueError(f"{symbol}: price must be positive")
        magnitude = math.floor(math.log10(price))
        tick = raw.get("tick_size", f"{Decimal(10) ** (magnitude - 4):f}")
        min_notional = raw.get(
            "min_notional", "5" if futures else _SPOT_MIN_NOTIONAL.get(quote, "5")
        )
        step_exponent = min(0, math.floor(math.log10(float(min_notional) / price)) - 1)
        step = raw.get("step_size", f"{Decimal(10) ** step_exponent:f}")
        return cls(
            symbol=symbol,
            price=price,
            tick_size=tick,
            step_size=step,
            min_qty=raw.get("min_qty", step),
            min_notional=min_notional,
            listed_since=to_ms(raw.get("listed_since", "2017-08-17")),
            quote_volume_per_minute=float(
                raw.get("quote_volume_per_minute", _QUOTE_VOLUME_PER_MINUTE.get(quote, 50_000.0))
            ),
            status=raw.get("status", "TRADING"),
            funding_interval_hours=int(raw.get("funding_interval_hours", 8)),
            leverage_brackets=tuple(
                tuple(b) for b in raw.get("leverage_brackets", _BRACKETS_ALT if futures else ())
            ),
        )


class Grid:
    """Open times of a regular series of candles (or funding events), numbered since the epoch."""

    def __init__(self, step_ms: int | None, offset_ms: int = 0):
        self.step = step_ms  # None: calendar months
        self.offset = offset_ms

    @classmethod
    def for_interval(cls, interval: str) -> Grid:
        # Weekly candles open on Mondays; 1970-01-01 was a Thursday.
        return cls(INTERVAL_MS.get(interval), 4 * DAY_MS if interval == "1w" else 0)

    def index(self, t: int) -> int:
        """Index of the candle containing time t."""
        if self.step:
            return (t - self.offset) // self.step
        return int(np.datetime64(int(t), "ms").astype("datetime64[M]").astype(np.int64))

    def ceil(self, t: int) -> int:
        """Index of the first candle opening at or after time t."""
        i = self.index(t)
        return i if int(self.opens(i, i + 1)[0]) >= t else i + 1

    def floor(self, t: int) -> int:
        """Open time of the candle containing time t."""
        i = self.index(t)
        return int(self.opens(i, i + 1)[0])

    def opens(self, first: int, stop: int) -> np.ndarray:
        """Open times of candles first .. stop-1."""
        idx = np.arange(first, stop, dtype=np.int64)
        if self.step:
            return idx * self.step + self.offset
        return idx.astype("datetime64[M]").astype("datetime64[ms]").astype(np.int64)

    def closes(self, opens: np.ndarray) -> np.ndarray:
        """Close times (next open minus 1 ms) of the candles opening at ``opens``."""
        if self.step:
            return opens + (self.step - 1)
        months = opens.astype("datetime64[ms]").astype("datetime64[M]") + 1
        return months.astype("datetime64[ms]").astype(np.int64) - 1


def window(first: int, last: int, start: int | None, end: int | None, limit: int) -> range:
    """Positions Binance returns from the available ones ``first..last``, given the positions of
    ``startTime`` and ``endTime``: from the start (at most ``limit``), or, without a start, the
    latest ``limit`` up to the end."""
    lo = first if start is None else max(first, start)
    hi = last if end is None else min(last, end)
    if start is None:
        lo = max(lo, hi - limit + 1)
    else:
        hi = min(hi, lo + limit - 1)
    return range(lo, max(lo, hi + 1))


@dataclass
class Candles:
    """Candle columns in Binance kline order (numpy arrays of equal length)."""

    open_time: np.ndarray  # int64 ms
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    close_time: np.ndarray  # int64 ms
    quote_volume: np.ndarray
    trades: np.ndarray  # int64
    taker_base: np.ndarray
    taker_quote: np.ndarray

    @classmethod
    def build(cls, open_time, close_time, o, h, l, c, volume, minutes) -> Candles:  # noqa: E741
        """Complete the derived columns (quote volume, trade count, taker volumes)."""
        quote = volume * (o + h + l + c) / 4
        trades = np.maximum(1, np.rint(20 * minutes)).astype(np.int64)
        return cls(open_time, o, h, l, c, volume, close_time, quote, trades, volume / 2, quote / 2)

    def __len__(self) -> int:
        return len(self.open_time)

    def take(self, positions: np.ndarray | range) -> Candles:
        """A copy holding the candles at ``positions`` (a copy: safe to corrupt)."""
        idx = np.asarray(positions, dtype=np.int64)
        return Candles(*(getattr(self, f.name)[idx] for f in dataclasses.fields(self)))


_KLINE_ROW = '[%d,"%.8f","%.8f","%.8f","%.8f","%.8f",%d,"%.8f",%d,"%.8f","%.8f","0"]'
# Mark and index klines carry no volume; field 8 is the number of price samples (one a second).
_PRICE_KLINE_ROW = '[%d,"%.8f","%.8f","%.8f","%.8f","0",%d,"0",%d,"0","0","0"]'


def klines_json(candles: Candles, kind: str) -> bytes:
    """The JSON body of a klines response, formatted in one pass."""
    c = candles
    if kind in TRADE_KINDS:
        columns = [getattr(c, f.name).tolist() for f in dataclasses.fields(c)]
        rows = [_KLINE_ROW % row for row in zip(*columns, strict=True)]
    else:
        samples = (c.close_time + 1 - c.open_time) // SECOND_MS
        columns = [c.open_time, c.open, c.high, c.low, c.close, c.close_time, samples]
        rows = [_PRICE_KLINE_ROW % row for row in zip(*(a.tolist() for a in columns), strict=True)]
    return ("[" + ",".join(rows) + "]").encode()


# splitmix64 constants
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S11, _S27, _S30, _S31 = (np.uint64(s) for s in (11, 27, 30, 31))


def hash64(*parts: object) -> int:
    """A stable 64-bit key for a tuple of strings and ints (``hash`` differs between processes)."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little")


def uniform(key: int, x: np.ndarray) -> np.ndarray:
    """Deterministic uniform [0, 1) values, one per integer in ``x`` (splitmix64 of x under key)."""
    z = x.astype(np.uint64) * _GOLDEN + np.uint64(key)
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    z ^= z >> _S31
    return (z >> _S11).astype(np.float64) * (1.0 / (1 << 53))


class Generator:
    """Synthetic market data as pure functions of (seed, market, kind, interval, time).

    The log-price is value noise summed over octaves of 1 minute to 2**18 minutes (half a year),
    each octave linearly interpolating random values at multiples of its period, with amplitudes
    growing like the square root of the period: random-walk-like (about 0.1% per minute, 3-4% per
    day) up to half a year, and bounded beyond (within a few multiples of the reference price).
    """

    OCTAVES = 19
    SIGMA = 0.0009  # amplitude of the 1-minute octave
    # Basis of each candle kind against the shared path (log amplitude).
    KIND_NOISE: ClassVar[dict[str, float]] = {
        "spot": 0.0, "futures": 3e-4, "mark": 1e-4, "index": 1.5e-4
    }

    def __init__(self, seed: int):
        self.seed = seed
        self._octave_keys: dict[str, list[int]] = {}

    def key(self, *parts: object) -> int:
        return hash64(self.seed, *parts)

    def price(self, market: Market, kind: str, t: np.ndarray) -> np.ndarray:
        """Prices of ``market`` at times ``t`` (int64 ms)."""
        keys = self._octave_keys.get(market.id)
        if keys is None:
            keys = [self.key("octave", market.id, k) for k in range(self.OCTAVES)]
            self._octave_keys[market.id] = keys
        log_price = np.zeros(t.shape)
        for k, key in enumerate(keys):
            period = MINUTE_MS << k
            i = t // period
            frac = (t - i * period) / period
            a, b = uniform(key, i), uniform(key, i + 1)
            log_price += (self.SIGMA * math.sqrt(1 << k)) * (2 * (a + (b - a) * frac) - 1)
        if noise := self.KIND_NOISE[kind]:
            basis = uniform(self.key("basis", kind, market.id), t // SECOND_MS)
            log_price += noise * (2 * basis - 1)
        return market.price * np.exp(log_price)

    def candles(self, market: Market, kind: str, interval: str, rows: range, now: int) -> Candles:
        """Candles number ``rows`` of ``interval`` (see :class:`Grid`); the one containing ``now``
        is cut at ``now`` (close = price at now, partial volume), as Binance serves it."""
        grid = Grid.for_interval(interval)
        opens = grid.opens(rows.start, rows.stop)
        closes = grid.closes(opens)
        ends = np.clip(closes + 1, opens, max(now, 0))
        # Consecutive candles: each ends where the next opens, so one path evaluation serves both.
        path = self.price(market, kind, np.append(opens, ends[-1:]))
        o, c = path[:-1], path[1:]
        minutes = (ends - opens) / MINUTE_MS
        u_high, u_low, u_volume = (
            uniform(self.key("candle", kind, market.id, interval, j), opens) for j in range(3)
        )
        spread = self.SIGMA * np.sqrt(minutes)
        h = np.maximum(o, c) * np.exp(spread * u_high)
        low = np.minimum(o, c) * np.exp(-spread * u_low)
        if kind in TRADE_KINDS:
            tick = float(market.tick_size)
            o, h, low, c = (np.maximum(np.round(p / tick), 1) * tick for p in (o, h, low, c))
            h = np.maximum(h, np.maximum(o, c))
            low = np.minimum(low, np.minimum(o, c))
        mid = (o + h + low + c) / 4
        step = float(market.step_size)
        quote_volume = market.quote_volume_per_minute * minutes * np.exp(u_volume - 0.5)
        volume = np.maximum(np.round(quote_volume / mid / step), 1) * step
        return Candles.build(opens, closes, o, h, low, c, volume, minutes)

    def funding_rates(self, market: Market, times: np.ndarray) -> np.ndarray:
        """Funding rates at funding times ``times``: between -0.005% and 0.025%, mostly positive."""
        u = uniform(self.key("funding", market.id), times)
        return np.round(0.0001 + 0.00015 * (2 * u - 1), 8)


class ApiError(Exception):
    """A Binance error answer: HTTP status plus ``{"code": code, "msg": msg}``."""

    def __init__(self, status: int, code: int, msg: str):
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


class Params:
    """Query (and form) parameters of a request, with Binance's validation errors."""

    def __init__(self, raw: Mapping[str, str]):
        self._raw = raw

    def get(self, name: str) -> str | None:
        return self._raw.get(name) or None

    def required(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise ApiError(
                400,
                -1102,
                f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.",
            )
        return value

    def integer(self, name: str, default: int | None = None) -> int | None:
        value = self.get(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise ApiError(
                400,
                -1100,
                f"Illegal characters found in parameter '{name}'; "
                "legal range is '^[0-9]{1,20}$'.",
            ) from None

    def limit(self, default: int, maximum: int) -> int:
        """The ``limit`` parameter, capped at ``maximum`` as Binance silently does."""
        value = self.integer("limit", default)
        if value < 1:
            raise ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
        return min(value, maximum)

    def time_range(self) -> tuple[int | None, int | None]:
        start, end = self.integer("startTime"), self.integer("endTime")
        if start is not None and end is not None and start > end:
            raise ApiError(400, -1023, "Start time is greater than end time.")
        return start, end


CORRUPTIONS = ("duplicate", "shuffle", "nan", "zero")
CORRUPTIBLE_FIELDS = ("open", "high", "low", "close", "volume")
DISCONNECTS = ("reset", "truncate")
_ACTIONS = ("status", "retry_after", "body", "delay", "disconnect", "corrupt", "count", "field", "book_shift_bps")

#: The answers Binance gives under load, one of which a rule with ``"mix": "binance"`` picks per
#: firing (Binance spells "occured" so).  The slow answer outlasts a client timeout below 2.5 s.
BINANCE_FAULT_MIX: list[dict[str, Any]] = [
    {"status": 500, "body": {"code": -1000, "msg": "An unknown error occured while processing the request."}},
    {"status": 429, "retry_after": 1},
    {"status": 418, "retry_after": 2},
    {"status": 503},
    {"delay": 2.5},
    {"disconnect": "reset"},
    {"disconnect": "truncate"},
    {"status": 200, "body": "<html><head><title>System maintenance</title></head><body>Back soon.</body></html>"},
    {"corrupt": "duplicate", "count": 3},
    {"corrupt": "shuffle"},
]
FAULT_MIXES = {"binance": BINANCE_FAULT_MIX}


@dataclass
class Rule:
    """A fault-injection rule, posted as JSON in the ``rules`` list of ``/__control``.

    Which requests (all conditions must hold):
      ``path``: exact request path (``"/api/v3/klines"``), or a prefix ending in ``*``
      (``"/fapi/*"``); every API path when absent.  ``symbol``: the request's ``symbol`` (or
      ``pair``) parameter, a Binance id such as ``"ETHBTC"``.
    When: of the matching requests, every ``every``-th fires (default 1: all), at most ``times``
      times, after which the rule is removed (default: no limit).  ``fail_forever: true`` is a
      permanent failure: no ``times``, and ``status`` defaults to 503.  ``chance`` (0-1, default
      1) fires only that share of them, drawn from a generator seeded with ``seed``: the same
      requests in the same order meet the same faults.
    What (at least one; a request can fire several rules: delays add up, the first status wins):
      ``status``: answer with this HTTP status instead -- 429 and 418 with Binance's -1003 body
      and a ``Retry-After`` header (``retry_after`` seconds, default 1), 5xx with a gateway-style
      HTML page, other 4xx with ``{"code": -1000}``; ``body`` replaces the body (a JSON value, or
      a string sent as text/html); status 200 needs a ``body`` (a maintenance page, say).
      ``delay``: seconds to wait before answering (to provoke client timeouts).
      ``disconnect``: ``"reset"`` closes the connection without an answer (a TCP reset),
      ``"truncate"`` sends the headers and half the body, then closes it.
      ``mix``: a list of such action sets (or ``"binance"``: :data:`BINANCE_FAULT_MIX`), of which
      each firing applies one, drawn from the rule's generator.
      ``corrupt``: klines endpoints only -- ``"duplicate"`` (repeat candles, each right after
      itself), ``"shuffle"`` (permute all candles), ``"nan"`` or ``"zero"`` (set ``field``, default
      ``"close"``, of candles to NaN or 0).  The candles: those whose open time is in
      ``open_times``, else ``count`` (default 1) candles spread evenly over the response.
      ``book_shift_bps``: depth and bookTicker only -- move every price of the book this many basis
      points away from the last price (asks up, bids down), so a dry-run bot's limit order priced
      from the ticker does not cross it: its fill is delayed until the rule is spent (``times``).
    """

    id: int
    path: str | None = None
    symbol: str | None = None
    every: int = 1
    times: int | None = None
    fail_forever: bool = False
    status: int | None = None
    retry_after: int = 1
    body: Any = None
    delay: float = 0.0
    corrupt: str | None = None
    count: int = 1
    open_times: list[int] | None = None
    field: str = "close"
    disconnect: str | None = None
    chance: float = 1.0
    seed: int = 0
    mix: str | list[dict[str, Any]] | None = None
    book_shift_bps: float = 0.0
    matched: int = 0  # matching requests so far
    fired: int = 0  # times it acted
    _random: random.Random | None = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def parse(cls, raw: Mapping[str, Any], rule_id: int) -> Rule:
        allowed = {f.name for f in dataclasses.fields(cls)} - {"id", "matched", "fired", "_random"}
        if not isinstance(raw, Mapping):
            raise ValueError(f"a rule must be a JSON object, not {raw!r}")
        if unknown := set(raw) - allowed:
            raise ValueError(f"unknown rule keys {sorted(unknown)}; allowed: {sorted(allowed)}")
        rule = cls(id=rule_id, **raw)
        checks = [
            (rule.path is None or isinstance(rule.path, str), "path must be a string"),
            (rule.symbol is None or isinstance(rule.symbol, str), "symbol must be a string"),
            (_positive_int(rule.every), "every must be an integer >= 1"),
            (rule.times is None or _positive_int(rule.times), "times must be an integer >= 1"),
            (isinstance(rule.fail_forever, bool), "fail_forever must be true or false"),
            (not (rule.fail_forever and rule.times), "fail_forever excludes times"),
            (
                rule.status is None or (_int(rule.status) and (400 <= rule.status <= 599 or rule.status == 200)),
                "status must be an HTTP error status (400-599), or 200 with a body",
            ),
            (_int(rule.retry_after) and rule.retry_after >= 0, "retry_after must be >= 0"),
            (
                isinstance(rule.delay, int | float) and 0 <= rule.delay <= 3600,
                "delay must be 0-3600 s",
            ),
            (
                rule.corrupt is None or rule.corrupt in CORRUPTIONS,
                f"corrupt must be one of {CORRUPTIONS}",
            ),
            (_positive_int(rule.count), "count must be an integer >= 1"),
            (
                rule.open_times is None
                or (isinstance(rule.open_times, list) and all(map(_int, rule.open_times))),
                "open_times must be a list of ms timestamps",
            ),
            (rule.field in CORRUPTIBLE_FIELDS, f"field must be one of {CORRUPTIBLE_FIELDS}"),
            (
                isinstance(rule.book_shift_bps, int | float) and 0 <= rule.book_shift_bps <= 10_000,
                "book_shift_bps must be 0-10000",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"{message}: {dict(raw)}")
        if rule.fail_forever and rule.status is None:
            rule.status = 503
        rule._check_actions(raw)
        if not (isinstance(rule.chance, int | float) and 0 <= rule.chance <= 1):
            raise ValueError(f"chance must be 0-1: {dict(raw)}")
        if not _int(rule.seed):
            raise ValueError(f"seed must be an integer: {dict(raw)}")
        if isinstance(rule.mix, str):
            if rule.mix not in FAULT_MIXES:
                raise ValueError(f"mix must be a list of actions or one of {sorted(FAULT_MIXES)}: {dict(raw)}")
            rule.mix = copy.deepcopy(FAULT_MIXES[rule.mix])
        if rule.mix is not None:
            if not isinstance(rule.mix, list) or not rule.mix:
                raise ValueError(f"mix must be a non-empty list of actions: {dict(raw)}")
            for actions in rule.mix:
                if not isinstance(actions, Mapping) or set(actions) - set(_ACTIONS):
                    raise ValueError(f"each mix entry is an object of {_ACTIONS}: {actions!r}")
                cls.parse({**actions}, rule_id)  # validates the entry as a rule of its own
        elif (rule.status is None and not rule.delay and rule.corrupt is None and rule.disconnect is None
              and not rule.book_shift_bps):
            raise ValueError(
                f"a rule needs status, delay, corrupt, disconnect, book_shift_bps, mix or fail_forever: {dict(raw)}"
            )
        rule._random = random.Random(rule.seed)
        return rule

    def _check_actions(self, raw: Mapping[str, Any]) -> None:
        if self.disconnect is not None and self.disconnect not in DISCONNECTS:
            raise ValueError(f"disconnect must be one of {DISCONNECTS}: {dict(raw)}")
        if self.status == 200 and self.body is None:
            raise ValueError(f"status 200 needs a body: {dict(raw)}")

    def draw(self) -> Rule | None:
        """This firing's actions (one entry of the mix), or None when ``chance`` spares the request."""
        assert self._random is not None
        if self.chance < 1 and self._random.random() >= self.chance:
            return None
        if self.mix is None:
            return copy.copy(self)
        actions = self.mix[self._random.randrange(len(self.mix))]
        defaults = {name: f.default for f in dataclasses.fields(self) if (name := f.name) in _ACTIONS}
        return dataclasses.replace(self, **{**defaults, **actions}, mix=None)

    def matches(self, path: str, params: Params) -> bool:
        if self.path is not None:
            if self.path.endswith("*"):
                if not path.startswith(self.path[:-1]):
                    return False
            elif path != self.path:
                return False
        return self.symbol is None or self.symbol in (params.get("symbol"), params.get("pair"))

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "_random"}


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(value: Any) -> bool:
    return _int(value) and value >= 1


class Clock:
    """Real time, or a set time that stays (speed 0) or advances ``speed`` times real time."""

    def __init__(self, now_ms: int | None = None, speed: float = 0.0):
        self.set(now_ms, speed)

    def set(self, now_ms: int | None, speed: float = 0.0) -> None:
        self.base, self.speed, self._set_at = now_ms, speed, time.time()

    def now(self) -> int:
        if self.base is None:
            return int(time.time() * 1000)
        return self.base + int((time.time() - self._set_at) * 1000 * self.speed)


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json;charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)
    disconnect: str | None = None  # "reset" or "truncate": how the connection breaks instead

    @classmethod
    def json(cls, value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
        if not isinstance(value, bytes):
            value = json.dumps(value, separators=(",", ":")).encode()
        return cls(status, value, headers=headers or {})

    @classmethod
    def error(
        cls, status: int, code: int, msg: str, headers: dict[str, str] | None = None
    ) -> Reply:
        return cls.json({"code": code, "msg": msg}, status, headers)


@dataclass
class Request:
    path: str
    params: Params
    headers: Mapping[str, str]
    now: int
    corruptions: list[Rule]
    book_shift_bps: float = 0.0


_HTTP_REASONS = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
                 504: "Gateway Timeout"}
_SIGNED_PATHS = frozenset({
    "/fapi/v1/leverageBracket",
    "/sapi/v1/capital/config/getall",
    "/sapi/v1/margin/allPairs",
    "/sapi/v1/margin/isolated/allPairs",
})
_SPOT_RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
]
_FUTURES_RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
    {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
]
# Binance's REQUEST_WEIGHT per minute and IP, by API family (the rateLimits exchangeInfo announces).
WEIGHT_LIMITS = {"spot": 6000, "futures": 2400, "coin-m": 2400}


def _by_limit(limit: int, steps: tuple[tuple[int, int], ...], above: int) -> int:
    """The weight of the first step whose upper bound (inclusive) holds ``limit``."""
    return next((weight for bound, weight in steps if limit <= bound), above)


def request_weight(path: str, params: Mapping[str, str]) -> tuple[str | None, int]:
    """(API family, weight) of a request as Binance's documentation states them; the /sapi family
    has limits of its own that are not emulated (family None)."""

    def number(name: str, default: int) -> int:
        value = str(params.get(name) or "")
        return int(value) if value.isdigit() else default

    one = bool(params.get("symbol"))
    if path.startswith("/api/v3/"):
        endpoint = path.removeprefix("/api/v3/")
        if endpoint == "klines":
            return "spot", 2
        if endpoint == "depth":
            return "spot", _by_limit(number("limit", 100), ((100, 5), (500, 25), (1000, 50)), 250)
        if endpoint == "exchangeInfo":
            return "spot", 20
        if endpoint == "ticker/24hr":
            return "spot", 2 if one else 80
        if endpoint in ("ticker/price", "ticker/bookTicker"):
            return "spot", 2 if one else 4
        return "spot", 1
    if path.startswith("/fapi/"):
        endpoint = path.split("/", 3)[3]
        if endpoint in ("klines", "markPriceKlines", "indexPriceKlines"):
            return "futures", _by_limit(number("limit", 500), ((99, 1), (499, 2), (1000, 5)), 10)
        if endpoint == "depth":
            return "futures", _by_limit(number("limit", 500), ((50, 2), (100, 5), (500, 10)), 20)
        if endpoint == "ticker/24hr":
            return "futures", 1 if one else 40
        if endpoint == "ticker/price":
            return "futures", 1 if one else 2
        if endpoint == "ticker/bookTicker":
            return "futures", 2 if one else 5
        if endpoint == "premiumIndex":
            return "futures", 1 if one else 10
        return "futures", 1
    if path.startswith("/dapi/"):
        return "coin-m", 1
    return None, 0


class RequestWeights:
    """Used weight per API family in Binance's fixed one-minute windows of the wall clock."""

    def __init__(self, enforce: bool, wall_clock: Callable[[], float] = time.time):
        self.enforce = enforce
        self._wall_clock = wall_clock
        self._used: dict[str, tuple[int, int]] = {}  # family -> (minute, weight used in it)
        self.refused = 0

    def take(self, family: str, weight: int) -> tuple[int, float | None]:
        """Spend ``weight``: (weight used this minute, None), or (used, seconds to wait) when the
        request is refused. Not thread-safe on its own: the exchange holds its lock."""
        now = self._wall_clock()
        minute = int(now // 60)
        window, used = self._used.get(family, (minute, 0))
        if window != minute:
            used = 0
        if self.enforce and used + weight > WEIGHT_LIMITS[family]:
            self._used[family] = (minute, used)
            self.refused += 1
            return used, (minute + 1) * 60 - now
        self._used[family] = (minute, used + weight)
        return used + weight, None


def _weight_headers(family: str, used: int) -> dict[str, str]:
    """The used-weight headers Binance sends: spot both names in lower case, futures the 1m one."""
    if family == "spot":
        return {"x-mbx-used-weight": str(used), "x-mbx-used-weight-1m": str(used)}
    return {"X-MBX-USED-WEIGHT-1M": str(used)}


_DATA_FILE = re.compile(
    r"^(?P<stem>.+?)-(?P<interval>\d+[smhdwM])(?:-(?P<kind>[a-z_]+))?\.feather$"
)


class FakeExchange:
    """The fake exchange -- markets, data, clock, rules, counters -- without the HTTP layer.

    Thread-safe: data generation is pure, and rules and counters are guarded by a lock.
    """

    def __init__(
        self,
        spot: list[Market],
        futures: list[Market],
        seed: int = 0,
        now_ms: int | None = None,
        clock_speed: float = 0.0,
        data_dir: Path | None = None,
        request_weights: bool = False,
        wall_clock: Callable[[], float] = time.time,
    ):
        self.spot = {m.id: m for m in spot}
        self.futures = {m.id: m for m in futures}
        self.generator = Generator(seed)
        self.seed = seed
        # (kind, market id) -> interval -> candles, and market id -> (funding times, rates)
        self.series: dict[tuple[str, str], dict[str, Candles]] = {}
        self.funding: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if data_dir is not None:
            self._load_data_dir(Path(data_dir))
        self.stopping = threading.Event()  # set at shutdown: cuts injected delays short
        self._startup_clock = (now_ms, clock_speed)
        self._weights_setting = (request_weights, wall_clock)
        self._lock = threading.Lock()
        self.reset()
        self._routes: dict[tuple[str, str], Callable[[Request], Any]] = {
            ("GET", "/api/v3/ping"): self._ping,
            ("GET", "/api/v3/time"): self._time,
            ("GET", "/api/v3/exchangeInfo"): self._spot_exchange_info,
            ("GET", "/api/v3/klines"): partial(self._klines, kind="spot"),
            ("GET", "/api/v3/ticker/24hr"): partial(self._ticker_24hr, futures=False),
            ("GET", "/api/v3/ticker/price"): partial(self._ticker_price, futures=False),
            ("GET", "/api/v3/ticker/bookTicker"): partial(self._book_ticker, futures=False),
            ("GET", "/api/v3/depth"): partial(self._depth, futures=False),
            ("GET", "/fapi/v1/ping"): self._ping,
            ("GET", "/fapi/v1/time"): self._time,
            ("GET", "/fapi/v1/exchangeInfo"): self._futures_exchange_info,
            ("GET", "/fapi/v1/klines"): partial(self._klines, kind="futures"),
            ("GET", "/fapi/v1/markPriceKlines"): partial(self._klines, kind="mark"),
            ("GET", "/fapi/v1/indexPriceKlines"): partial(self._klines, kind="index"),
            ("GET", "/fapi/v1/fundingRate"): self._funding_rate,
            ("GET", "/fapi/v1/premiumIndex"): self._premium_index,
            ("GET", "/fapi/v1/leverageBracket"): self._leverage_bracket,
            ("GET", "/fapi/v1/ticker/24hr"): partial(self._ticker_24hr, futures=True),
            ("GET", "/fapi/v1/ticker/price"): partial(self._ticker_price, futures=True),
            ("GET", "/fapi/v2/ticker/price"): partial(self._ticker_price, futures=True),
            ("GET", "/fapi/v1/ticker/bookTicker"): partial(self._book_ticker, futures=True),
            ("GET", "/fapi/v1/depth"): partial(self._depth, futures=True),
            ("GET", "/dapi/v1/ping"): self._ping,
            ("GET", "/dapi/v1/time"): self._time,
            ("GET", "/dapi/v1/exchangeInfo"): self._coin_m_exchange_info,
            ("GET", "/sapi/v1/system/status"): lambda req: {"status": 0, "msg": "normal"},
            ("GET", "/sapi/v1/capital/config/getall"): self._currencies,
            ("GET", "/sapi/v1/margin/allPairs"): lambda req: [],
            ("GET", "/sapi/v1/margin/isolated/allPairs"): lambda req: [],
        }

    def routes(self) -> list[tuple[str, str]]:
        """The (method, path) pairs of the Binance API this exchange answers."""
        return list(self._routes)

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], data_dir: Path | None = None, wall_clock: Callable[[], float] = time.time
    ) -> FakeExchange:
        """From the JSON config: ``{"seed": 0, "spot": [market, ...], "futures": [market, ...],
        "now_ms": ..., "clock_speed": 0, "request_weights": false}`` (see :class:`Market`); a given
        ``spot`` / ``futures`` list replaces the default one, so ``"futures": []`` means no perpetuals."""
        allowed = {"seed", "spot", "futures", "now_ms", "clock_speed", "request_weights"}
        if not isinstance(config.get("request_weights", False), bool):
            raise ValueError("request_weights must be true or false")
        if unknown := set(config) - allowed:
            raise ValueError(f"unknown config keys {sorted(unknown)}; allowed: {sorted(allowed)}")
        now_ms = config.get("now_ms")
        return cls(
            spot=[
                Market.from_dict(m, futures=False)
                for m in config.get("spot", DEFAULT_SPOT_MARKETS)
            ],
            futures=[
                Market.from_dict(m, futures=True)
                for m in config.get("futures", DEFAULT_FUTURES_MARKETS)
            ],
            seed=int(config.get("seed", 0)),
            now_ms=None if now_ms is None else to_ms(now_ms),
            clock_speed=float(config.get("clock_speed", 0.0)),
            data_dir=data_dir,
            request_weights=config.get("request_weights", False),
            wall_clock=wall_clock,
        )

    # ------------------------------------------------------------------ state and control

    def reset(self) -> None:
        """Startup clock, no rules, zero counters."""
        with self._lock:
            self.clock = Clock(*self._startup_clock)
            self.weights = RequestWeights(*self._weights_setting)
            self._rules: list[Rule] = []
            self._next_rule_id = 1
            self._requests: Counter[str] = Counter()
            self._injected: Counter[str] = Counter()
            self._served: dict[str, dict[str, dict[str, Any]]] = {}

    def control(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a ``/__control`` payload (see the module docstring); answer the new state."""
        if not isinstance(payload, Mapping):
            raise ValueError("the control payload must be a JSON object")
        if unknown := set(payload) - {"now_ms", "clock_speed", "rules", "clear_rules"}:
            raise ValueError(f"unknown control keys {sorted(unknown)}")
        raw_rules = payload.get("rules", [])
        if not isinstance(raw_rules, list):
            raise ValueError("rules must be a list")
        speed = payload.get("clock_speed", 0.0)
        if not isinstance(speed, int | float) or isinstance(speed, bool) or speed < 0:
            raise ValueError("clock_speed must be a number >= 0")
        with self._lock:  # validate everything before changing anything
            rules = [Rule.parse(raw, self._next_rule_id + i) for i, raw in enumerate(raw_rules)]
            set_clock = "now_ms" in payload or "clock_speed" in payload
            if set_clock:
                now_ms = payload.get("now_ms", self.clock.now())
                now_ms = None if now_ms is None else to_ms(now_ms)
            if payload.get("clear_rules"):
                self._rules.clear()
            self._rules.extend(rules)
            self._next_rule_id += len(rules)
            if set_clock:
                self.clock.set(now_ms, float(speed))
        return self.control_state()

    def control_state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "now_ms": self.clock.now(),
                "clock": "real" if self.clock.base is None else "set",
                "clock_speed": self.clock.speed,
                "rules": [r.as_dict() for r in self._rules],
            }

    def stats(self) -> dict[str, Any]:
        """Counters since startup or the last reset.

        ``requests``: {path: count} of all API requests (including failed ones); ``klines``:
        {path: {symbol id: {"requests", "candles", "intervals": {interval: candles}}}} of answered
        klines requests; ``injected``: {"status" / "delay" / "corrupt" / "disconnect": count}; ``rules``: the
        active rules with their ``matched`` / ``fired`` counts; ``weight_refused``: requests refused for
        their weight (with ``request_weights``).
        """
        with self._lock:
            return {
                "now_ms": self.clock.now(),
                "requests": dict(self._requests),
                "klines": copy.deepcopy(self._served),
                "injected": dict(self._injected),
                "rules": [r.as_dict() for r in self._rules],
                "weight_refused": self.weights.refused,
            }

    def _fire_rules(self, path: str, params: Params) -> list[Rule]:
        """The rules this request fires (counting matches, retiring exhausted rules)."""
        fired = []
        with self._lock:
            for rule in list(self._rules):
                if not rule.matches(path, params):
                    continue
                rule.matched += 1
                if rule.matched % rule.every:
                    continue
                acting = rule.draw()
                if acting is None:
                    continue
                rule.fired += 1
                fired.append(acting)
                if rule.times is not None and rule.fired >= rule.times:
                    self._rules.remove(rule)
                for action in ("status", "delay", "corrupt", "disconnect", "book_shift_bps"):
                    if getattr(acting, action):
                        self._injected[action] += 1
        return fired

    def _count_candles(self, path: str, symbol: str, interval: str, candles: int) -> None:
        with self._lock:
            entry = self._served.setdefault(path, {}).setdefault(
                symbol, {"requests": 0, "candles": 0, "intervals": {}}
            )
            entry["requests"] += 1
            entry["candles"] += candles
            entry["intervals"][interval] = entry["intervals"].get(interval, 0) + candles

    # ------------------------------------------------------------------ dispatch

    def handle(
        self, method: str, path: str, params: Mapping[str, str], headers: Mapping[str, str]
    ) -> Reply:
        """Answer one API request (control paths excluded, see :meth:`handle_control`)."""
        query = Params(params)
        family, weight = request_weight(path, params)
        with self._lock:
            self._requests[path] += 1
            used, wait = self.weights.take(family, weight) if family else (0, None)
        if wait is not None:
            return Reply.error(
                429, -1003,
                f"Too much request weight used; current limit is {WEIGHT_LIMITS[family]} request weight per 1 MINUTE. "
                "Please use WebSocket Streams for live updates to avoid polling the API.",
                {"Retry-After": str(math.ceil(wait)), **_weight_headers(family, used)},
            )
        reply = self._answer(method, path, query, headers)
        if family:
            reply.headers.update(_weight_headers(family, used))
        return reply

    def _answer(self, method: str, path: str, query: Params, headers: Mapping[str, str]) -> Reply:
        rules = self._fire_rules(path, query)
        if delay := sum(r.delay for r in rules):
            self.stopping.wait(delay)
        cut = next((r.disconnect for r in rules if r.disconnect), None)
        failing = next((r for r in rules if r.status), None)
        if failing is not None:
            return dataclasses.replace(self._injected_error(failing), disconnect=cut)
        route = self._routes.get((method, path))
        if route is None:
            return Reply.error(404, -5000, f"Path {path}, Method {method} is invalid")
        request = Request(path, query, headers, self.clock.now(), [r for r in rules if r.corrupt],
                          sum(r.book_shift_bps for r in rules))
        try:
            if path in _SIGNED_PATHS:
                self._check_signed(request)
            reply = Reply.json(route(request))
        except ApiError as e:
            reply = Reply.error(e.status, e.code, e.msg)
        return dataclasses.replace(reply, disconnect=cut)

    def handle_control(self, method: str, path: str, body: bytes) -> Reply:
        try:
            if (method, path) == ("GET", "/__stats"):
                return Reply.json(self.stats())
            if (method, path) == ("POST", "/__reset"):
                self.reset()
                return Reply.json(self.control_state())
            if (method, path) == ("POST", "/__control"):
                return Reply.json(self.control(json.loads(body or b"{}")))
        except (ValueError, TypeError) as e:  # json.JSONDecodeError is a ValueError
            return Reply.json({"error": str(e)}, 400)
        return Reply.json({"error": f"no control endpoint {method} {path}"}, 404)

    def _injected_error(self, rule: Rule) -> Reply:
        status = rule.status
        headers = {}
        if status in (418, 429):
            headers["Retry-After"] = str(rule.retry_after)
        if status == 200:  # a 200 rule always carries its body (checked when it was added)
            return Reply(status, rule.body.encode() if isinstance(rule.body, str) else json.dumps(rule.body).encode(),
                         "text/html" if isinstance(rule.body, str) else "application/json;charset=UTF-8", headers)
        if rule.body is not None:
            if isinstance(rule.body, str):
                return Reply(status, rule.body.encode(), "text/html", headers)
            return Reply.json(rule.body, status, headers)
        if status == 429:
            return Reply.error(
                429,
                -1003,
                "Too many requests; current limit of IP(127.0.0.1) is 6000 requests per minute. "
                "Please use the websocket for live updates to avoid bans.",
                headers,
            )
        if status == 418:
            until = self.clock.now() + rule.retry_after * 1000
            return Reply.error(
                418,
                -1003,
                f"Way too much request weight used; IP banned until {until}. "
                "Please use WebSocket Streams for live updates to avoid bans.",
                headers,
            )
        if status >= 500:
            reason = _HTTP_REASONS.get(status, "Server Error")
            title = f"{status} {reason}"
            page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
            return Reply(status, page.encode(), "text/html", headers)
        return Reply.error(
            status, -1000, "An unknown error occurred while processing the request.", headers
        )

    @staticmethod
    def _check_signed(request: Request) -> None:
        if not request.headers.get("X-MBX-APIKEY"):
            raise ApiError(401, -2014, "API-key format invalid.")
        request.params.required("timestamp")
        request.params.required("signature")

    @staticmethod
    def _market(symbol: str, markets: Mapping[str, Market]) -> Market:
        market = markets.get(symbol)
        if market is None:
            raise ApiError(400, -1121, "Invalid symbol.")
        return market

    def _requested(self, request: Request, futures: bool) -> tuple[list[Market], bool]:
        """Markets named by ``symbol`` (single answer) or, on spot, ``symbols`` (JSON list); all
        markets otherwise."""
        markets = self.futures if futures else self.spot
        if symbol := request.params.get("symbol"):
            return [self._market(symbol, markets)], True
        if not futures and (raw := request.params.get("symbols")):
            try:
                ids = json.loads(raw)
                if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                    raise ValueError
            except ValueError:
                raise ApiError(
                    400, -1100, "Illegal characters found in parameter 'symbols'."
                ) from None
            return [self._market(i, markets) for i in ids], False
        return list(markets.values()), False

    # ------------------------------------------------------------------ general endpoints

    def _ping(self, request: Request) -> dict:
        return {}

    def _time(self, request: Request) -> dict:
        return {"serverTime": request.now}

    def _spot_exchange_info(self, request: Request) -> dict:
        return {
            "timezone": "UTC",
            "serverTime": request.now,
            "rateLimits": _SPOT_RATE_LIMITS,
            "exchangeFilters": [],
            "symbols": [self._spot_symbol_info(m) for m in self.spot.values()],
        }

    @staticmethod
    def _spot_symbol_info(m: Market) -> dict:
        max_price = _d8(Decimal(m.tick_size) * 10**9)
        return {
            "symbol": m.id,
            "status": m.status,
            "baseAsset": m.base,
            "baseAssetPrecision": 8,
            "quoteAsset": m.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT",
                           "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True,
            "ocoAllowed": True,
            "otoAllowed": True,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True,
            "cancelReplaceAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": _d8(m.tick_size), "maxPrice": max_price,
                 "tickSize": _d8(m.tick_size)},
                {"filterType": "LOT_SIZE", "minQty": _d8(m.min_qty), "maxQty": "9000000.00000000",
                 "stepSize": _d8(m.step_size)},
                {"filterType": "ICEBERG_PARTS", "limit": 10},
                {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000",
                 "maxQty": "9000000.00000000", "stepSize": "0.00000000"},
                {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": "5",
                 "bidMultiplierDown": "0.2", "askMultiplierUp": "5", "askMultiplierDown": "0.2",
                 "avgPriceMins": 5},
                {"filterType": "NOTIONAL", "minNotional": _d8(m.min_notional),
                 "applyMinToMarket": True, "maxNotional": "9000000.00000000",
                 "applyMaxToMarket": False, "avgPriceMins": 5},
                {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }

    def _futures_exchange_info(self, request: Request) -> dict:
        settle_assets = sorted({m.settle for m in self.futures.values()})
        return {
            "timezone": "UTC",
            "serverTime": request.now,
            "futuresType": "U_MARGINED",
            "rateLimits": _FUTURES_RATE_LIMITS,
            "exchangeFilters": [],
            "assets": [
                {"asset": a, "marginAvailable": True, "autoAssetExchange": "-10000"}
                for a in settle_assets
            ],
            "symbols": [self._futures_symbol_info(m) for m in self.futures.values()],
        }

    @staticmethod
    def _futures_symbol_info(m: Market) -> dict:
        def plain(number: str) -> str:
            return f"{Decimal(number):f}"

        return {
            "symbol": m.id,
            "pair": m.id,
            "contractType": "PERPETUAL",
            "deliveryDate": PERPETUAL_DELIVERY_DATE,
            "onboardDate": m.listed_since,
            "status": m.status,
            "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000",
            "baseAsset": m.base,
            "quoteAsset": m.quote,
            "marginAsset": m.settle,
            "pricePrecision": _decimals(m.tick_size),
            "quantityPrecision": _decimals(m.step_size),
            "baseAssetPrecision": 8,
            "quotePrecision": 8,
            "underlyingType": "COIN",
            "underlyingSubType": [],
            "triggerProtect": "0.0500",
            "liquidationFee": "0.012500",
            "marketTakeBound": "0.05",
            "maxMoveOrderLimit": 10000,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": plain(m.tick_size),
                 "maxPrice": plain(str(Decimal(m.tick_size) * 10**9)),
                 "tickSize": plain(m.tick_size)},
                {"filterType": "LOT_SIZE", "minQty": plain(m.min_qty), "maxQty": "1000000",
                 "stepSize": plain(m.step_size)},
                {"filterType": "MARKET_LOT_SIZE", "minQty": plain(m.min_qty), "maxQty": "100000",
                 "stepSize": plain(m.step_size)},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                {"filterType": "MIN_NOTIONAL", "notional": plain(m.min_notional)},
                {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500",
                 "multiplierDown": "0.9500", "multiplierDecimal": "4"},
            ],
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT",
                           "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        }

    def _coin_m_exchange_info(self, request: Request) -> dict:
        return {
            "timezone": "UTC",
            "serverTime": request.now,
            "rateLimits": _FUTURES_RATE_LIMITS,
            "exchangeFilters": [],
            "symbols": [],
        }

    def _currencies(self, request: Request) -> list[dict]:
        assets = sorted({a for m in [*self.spot.values(), *self.futures.values()]
                         for a in (m.base, m.quote)})
        return [
            {
                "coin": asset,
                "name": asset,
                "depositAllEnable": True,
                "withdrawAllEnable": True,
                "free": "0", "locked": "0", "freeze": "0", "withdrawing": "0", "ipoing": "0",
                "ipoable": "0", "storage": "0",
                "isLegalMoney": False,
                "trading": True,
                "networkList": [{
                    "network": asset, "coin": asset, "name": asset, "isDefault": True,
                    "depositEnable": True, "withdrawEnable": True, "depositDesc": "",
                    "withdrawDesc": "", "withdrawIntegerMultiple": "0.00000001",
                    "withdrawFee": "0", "withdrawMin": "0", "withdrawMax": "9999999999",
                    "depositDust": "0.00000001", "minConfirm": 1, "unLockConfirm": 0,
                    "sameAddress": False, "resetAddressStatus": False,
                }],
            }
            for asset in assets
        ]

    # ------------------------------------------------------------------ candles

    def _klines(self, request: Request, kind: str) -> bytes:
        spot = kind == "spot"
        symbol_param = "pair" if kind == "index" else "symbol"
        market = self._market(
            request.params.required(symbol_param), self.spot if spot else self.futures
        )
        interval = request.params.required("interval")
        if interval not in (SPOT_INTERVALS if spot else FUTURES_INTERVALS):
            raise ApiError(400, -1120, "Invalid interval.")
        limit = request.params.limit(
            KLINES_DEFAULT, SPOT_KLINES_MAX if spot else FUTURES_KLINES_MAX
        )
        start, end = request.params.time_range()
        candles = self.select_candles(market, kind, interval, start, end, limit, request.now)
        for rule in request.corruptions:
            candles = self._corrupt(candles, rule)
        self._count_candles(request.path, market.id, interval, len(candles))
        return klines_json(candles, kind)

    def select_candles(
        self,
        market: Market,
        kind: str,
        interval: str,
        start: int | None,
        end: int | None,
        limit: int,
        now: int,
    ) -> Candles:
        """The candles a klines request gets: open time in [start, end], from the listing up to
        now, at most ``limit`` -- the first ones after ``start``, else the latest ones."""
        grid = Grid.for_interval(interval)
        listed = grid.floor(market.listed_since)
        loaded = self.series.get((kind, market.id), {}).get(interval)
        if loaded is not None:
            t = loaded.open_time
            rows = window(
                first=int(np.searchsorted(t, listed)),
                last=int(np.searchsorted(t, now, "right")) - 1,
                start=None if start is None else int(np.searchsorted(t, start)),
                end=None if end is None else int(np.searchsorted(t, end, "right")) - 1,
                limit=limit,
            )
            return loaded.take(rows)
        rows = window(
            first=grid.index(listed),
            last=grid.index(now),
            start=None if start is None else grid.ceil(max(start, 0)),
            end=None if end is None else grid.index(max(min(end, now), 0)),
            limit=limit,
        )
        return self.generator.candles(market, kind, interval, rows, now)

    def _corrupt(self, candles: Candles, rule: Rule) -> Candles:
        n = len(candles)
        if n == 0:
            return candles
        if rule.open_times is not None:
            picks = np.flatnonzero(np.isin(candles.open_time, rule.open_times))
        else:
            picks = np.unique(np.linspace(0, n - 1, min(rule.count, n)).round().astype(np.int64))
        if rule.corrupt == "duplicate":
            return candles.take(np.sort(np.concatenate([np.arange(n), picks]), kind="stable"))
        if rule.corrupt == "shuffle":
            rng = np.random.default_rng([self.seed, rule.id, rule.fired])
            return candles.take(rng.permutation(n))
        values = getattr(candles, rule.field).copy()  # columns may share memory (open/close)
        values[picks] = np.nan if rule.corrupt == "nan" else 0.0
        setattr(candles, rule.field, values)
        return candles

    def _finest(self, kind: str, market: Market) -> Candles | None:
        """The loaded series of the shortest interval for (kind, market), if any."""
        loaded = self.series.get((kind, market.id))
        if not loaded:
            return None
        shortest = min(loaded, key=lambda i: INTERVAL_MS.get(i, 31 * DAY_MS))
        return loaded[shortest]

    def _day_candles(self, market: Market, kind: str, now: int) -> Candles:
        """The candles of the 24 hours up to now (for tickers): from the finest loaded series --
        or its candle nearest to now if none falls in that day -- else generated 5m candles."""
        loaded = self._finest(kind, market)
        if loaded is None:
            grid = Grid.for_interval("5m")
            rows = range(grid.ceil(now - DAY_MS + 1), grid.index(now) + 1)
            return self.generator.candles(market, kind, "5m", rows, now)
        t = loaded.open_time
        lo = int(np.searchsorted(t, now - DAY_MS, "right"))
        hi = int(np.searchsorted(t, now, "right"))
        if lo >= hi:
            lo = min(max(hi - 1, 0), len(t) - 1)
            hi = lo + 1
        return loaded.take(range(lo, hi))

    def price_at(self, market: Market, kind: str, times: np.ndarray) -> np.ndarray:
        """Prices at ``times``: the close of the finest loaded candle at or before each time (the
        first candle's close before the data starts), else the generated path."""
        loaded = self._finest(kind, market)
        if loaded is None:
            return self.generator.price(market, kind, times)
        pos = np.searchsorted(loaded.open_time, times, "right") - 1
        return loaded.close[np.clip(pos, 0, len(loaded) - 1)]

    # ------------------------------------------------------------------ tickers and books

    def _book(
        self, market: Market, now: int, depth: int, shift_bps: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(bid prices, bid quantities, ask prices, ask quantities) around the last price, one tick
        apart, quantities changing every second; ``shift_bps`` moves both sides that far away."""
        kind = "futures" if market.is_futures else "spot"
        tick, step = float(market.tick_size), float(market.step_size)
        last = float(self.price_at(market, kind, np.array([now], dtype=np.int64))[0])
        best_bid = max(math.floor(last / tick + 1e-9), 1)
        levels = np.arange(depth, dtype=np.int64)
        bids = (best_bid - levels[best_bid - levels >= 1]) * tick
        asks = (best_bid + 1 + levels) * tick
        if shift_bps:
            bids = np.floor(bids * (1 - shift_bps / 10_000) / tick) * tick
            bids = bids[bids >= tick]
            asks = np.ceil(asks * (1 + shift_bps / 10_000) / tick) * tick

        def quantities(prices: np.ndarray, side: str) -> np.ndarray:
            key = self.generator.key("book", market.id, side, now // SECOND_MS)
            u = uniform(key, np.arange(len(prices)))
            notional = market.quote_volume_per_minute * (0.2 + 2 * u)
            return np.maximum(np.round(notional / prices / step), 1) * step

        return bids, quantities(bids, "bid"), asks, quantities(asks, "ask")

    def _depth(self, request: Request, futures: bool) -> dict:
        markets = self.futures if futures else self.spot
        market = self._market(request.params.required("symbol"), markets)
        limit = request.params.limit(500, 1000) if futures else request.params.limit(100, 5000)
        bids, bid_qty, asks, ask_qty = self._book(market, request.now, limit, request.book_shift_bps)
        book: dict[str, Any] = {"lastUpdateId": request.now // 10}
        if futures:
            book |= {"E": request.now, "T": request.now}
        for side, prices, quantities in (("bids", bids, bid_qty), ("asks", asks, ask_qty)):
            book[side] = [
                [f"{p:.8f}", f"{q:.8f}"]
                for p, q in zip(prices.tolist(), quantities.tolist(), strict=True)
            ]
        return book

    def _book_ticker(self, request: Request, futures: bool) -> dict | list:
        markets, single = self._requested(request, futures)
        answers = []
        for m in markets:
            bids, bid_qty, asks, ask_qty = self._book(m, request.now, 1, request.book_shift_bps)
            entry = {
                "symbol": m.id,
                "bidPrice": f"{bids[0]:.8f}",
                "bidQty": f"{bid_qty[0]:.8f}",
                "askPrice": f"{asks[0]:.8f}",
                "askQty": f"{ask_qty[0]:.8f}",
            }
            if futures:
                entry |= {"time": request.now, "lastUpdateId": request.now // 10}
            answers.append(entry)
        return answers[0] if single else answers

    def _ticker_price(self, request: Request, futures: bool) -> dict | list:
        markets, single = self._requested(request, futures)
        kind = "futures" if futures else "spot"
        answers = []
        for m in markets:
            last = self._day_candles(m, kind, request.now).close[-1]
            entry: dict[str, Any] = {"symbol": m.id, "price": f"{last:.8f}"}
            if futures:
                entry["time"] = request.now
            answers.append(entry)
        return answers[0] if single else answers

    def _ticker_24hr(self, request: Request, futures: bool) -> dict | list:
        markets, single = self._requested(request, futures)
        answers = [self._ticker(m, request.now, futures) for m in markets]
        return answers[0] if single else answers

    def _ticker(self, market: Market, now: int, futures: bool) -> dict:
        day = self._day_candles(market, "futures" if futures else "spot", now)
        first, last = float(day.open[0]), float(day.close[-1])
        volume, quote = float(day.volume.sum()), float(day.quote_volume.sum())
        count = int(day.trades.sum())
        last_id = now // 100
        entry: dict[str, Any] = {
            "symbol": market.id,
            "priceChange": f"{last - first:.8f}",
            "priceChangePercent": f"{100 * (last - first) / first if first else 0:.3f}",
            "weightedAvgPrice": f"{quote / volume if volume else last:.8f}",
        }
        if not futures:
            entry["prevClosePrice"] = f"{first:.8f}"
        entry |= {"lastPrice": f"{last:.8f}", "lastQty": _d8(market.step_size)}
        if not futures:
            bids, bid_qty, asks, ask_qty = self._book(market, now, 1)
            entry |= {
                "bidPrice": f"{bids[0]:.8f}",
                "bidQty": f"{bid_qty[0]:.8f}",
                "askPrice": f"{asks[0]:.8f}",
                "askQty": f"{ask_qty[0]:.8f}",
            }
        return entry | {
            "openPrice": f"{first:.8f}",
            "highPrice": f"{float(day.high.max()):.8f}",
            "lowPrice": f"{float(day.low.min()):.8f}",
            "volume": f"{volume:.8f}",
            "quoteVolume": f"{quote:.8f}",
            "openTime": now - DAY_MS,
            "closeTime": now,
            "firstId": last_id - count + 1,
            "lastId": last_id,
            "count": count,
        }

    # ------------------------------------------------------------------ funding and leverage

    def _funding_grid(self, market: Market) -> Grid:
        return Grid(market.funding_interval_hours * HOUR_MS)

    def funding_history(
        self, market: Market, start: int | None, end: int | None, limit: int, now: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(funding times, rates) a fundingRate request gets, selected like klines."""
        loaded = self.funding.get(market.id)
        if loaded is not None:
            t, rates = loaded
            rows = window(
                first=0,
                last=int(np.searchsorted(t, now, "right")) - 1,
                start=None if start is None else int(np.searchsorted(t, start)),
                end=None if end is None else int(np.searchsorted(t, end, "right")) - 1,
                limit=limit,
            )
            idx = np.asarray(rows, dtype=np.int64)
            return t[idx], rates[idx]
        grid = self._funding_grid(market)
        rows = window(
            first=grid.ceil(market.listed_since),
            last=grid.index(now),
            start=None if start is None else grid.ceil(max(start, 0)),
            end=None if end is None else grid.index(max(min(end, now), 0)),
            limit=limit,
        )
        times = grid.opens(rows.start, rows.stop)
        return times, self.generator.funding_rates(market, times)

    def _funding_rate(self, request: Request) -> list[dict]:
        markets, _ = self._requested(request, futures=True)
        limit = request.params.limit(FUNDING_DEFAULT, FUNDING_MAX)
        start, end = request.params.time_range()
        rows = []
        for m in markets:
            times, rates = self.funding_history(m, start, end, limit, request.now)
            marks = self.price_at(m, "mark", times)
            rows += zip(
                times.tolist(), [m.id] * len(times), rates.tolist(), marks.tolist(), strict=True
            )
        rows.sort()
        rows = rows[:limit] if start is not None else rows[-limit:]
        return [
            {"symbol": s, "fundingTime": t, "fundingRate": f"{r:.8f}", "markPrice": f"{p:.8f}"}
            for t, s, r, p in rows
        ]

    def _premium_index(self, request: Request) -> dict | list:
        markets, single = self._requested(request, futures=True)
        now = request.now
        answers = []
        for m in markets:
            at_now = np.array([now], dtype=np.int64)
            mark = float(self.price_at(m, "mark", at_now)[0])
            index = float(self.price_at(m, "index", at_now)[0])
            grid = self._funding_grid(m)
            next_funding = int(grid.opens(grid.index(now) + 1, grid.index(now) + 2)[0])
            loaded = self.funding.get(m.id)
            if loaded is None:
                rate = float(self.generator.funding_rates(m, np.array([next_funding]))[0])
            else:
                t, rates = loaded
                rate = float(rates[np.clip(np.searchsorted(t, now, "right") - 1, 0, len(t) - 1)])
            answers.append({
                "symbol": m.id,
                "markPrice": f"{mark:.8f}",
                "indexPrice": f"{index:.8f}",
                "estimatedSettlePrice": f"{index:.8f}",
                "lastFundingRate": f"{rate:.8f}",
                "interestRate": "0.00010000",
                "nextFundingTime": next_funding,
                "time": now,
            })
        return answers[0] if single else answers

    def _leverage_bracket(self, request: Request) -> dict | list:
        markets, single = self._requested(request, futures=True)
        answers = []
        for m in markets:
            brackets, floor, cum, previous_ratio = [], 0, 0.0, 0.0
            for number, (leverage, cap, ratio) in enumerate(m.leverage_brackets, start=1):
                cum += floor * (ratio - previous_ratio)
                brackets.append({
                    "bracket": number,
                    "initialLeverage": leverage,
                    "notionalCap": cap,
                    "notionalFloor": floor,
                    "maintMarginRatio": ratio,
                    "cum": round(cum, 8),
                })
                floor, previous_ratio = cap, ratio
            answers.append({"symbol": m.id, "brackets": brackets})
        return answers[0] if single else answers

    # ------------------------------------------------------------------ data directory

    def _load_data_dir(self, root: Path) -> None:
        """Load freqtrade feather files (see the module docstring); files for markets that are not
        configured, or of unsupported kinds, are skipped with a warning."""
        import pyarrow as pa  # only needed with a data directory
        import pyarrow.compute as pc
        from pyarrow import feather

        def as_numpy(column: pa.ChunkedArray, dtype: type) -> np.ndarray:
            """Read through the Arrow buffers: pyarrow's to_numpy() (and pa.scalar()) import
            pandas, which costs 1-2 s of startup.  Nulls become NaN."""
            array = column.cast(pa.from_numpy_dtype(dtype)).combine_chunks()
            validity, data = array.buffers()
            values = np.frombuffer(data, dtype, len(array), array.offset * np.dtype(dtype).itemsize)
            if array.null_count:
                bits = np.unpackbits(np.frombuffer(validity, np.uint8), bitorder="little")
                values = np.where(bits[array.offset : array.offset + len(array)], values, np.nan)
            return values

        if not root.is_dir():
            raise ValueError(f"data directory {root} does not exist")
        by_stem = {("spot", m.file_stem): m for m in self.spot.values()}
        by_stem |= {("futures", m.file_stem): m for m in self.futures.values()}
        for path in sorted(root.rglob("*.feather")):
            match = _DATA_FILE.match(path.name)
            kind = (match["kind"] or "spot") if match else None
            if kind not in (*TRADE_KINDS, *PRICE_KINDS, "funding_rate"):
                log.warning("skipping %s: not a spot/futures/mark/index/funding_rate file", path)
                continue
            market = by_stem.get(("spot" if kind == "spot" else "futures", match["stem"]))
            if market is None:
                log.warning("skipping %s: no configured market %s", path, match["stem"])
                continue
            interval = match["interval"]
            if interval not in SPOT_INTERVALS:
                log.warning("skipping %s: %s is not a Binance interval", path, interval)
                continue
            columns = ["date", "open", "high", "low", "close", "volume"]
            table = feather.read_table(path, columns=columns)
            table = table.filter(pc.is_valid(table["date"]))
            unit = table.schema.field("date").type.unit  # UTC values, whatever the time zone
            dates = as_numpy(table["date"], np.int64).astype(f"datetime64[{unit}]")
            order = np.argsort(dates, kind="stable")
            times = dates[order].astype("datetime64[ms]").astype(np.int64)
            first = np.concatenate([[True], np.diff(times) != 0])  # drop duplicate dates
            order, times = order[first], times[first]
            o, h, low, c, volume = (
                as_numpy(table[name], np.float64)[order]
                for name in ("open", "high", "low", "close", "volume")
            )
            if kind == "funding_rate":  # freqtrade keeps the rate in "open"
                self.funding[market.id] = (times, o)
            else:
                closes = Grid.for_interval(interval).closes(times)
                minutes = (closes + 1 - times) / MINUTE_MS
                candles = Candles.build(times, closes, o, h, low, c, np.nan_to_num(volume), minutes)
                self.series.setdefault((kind, market.id), {})[interval] = candles
            log.info("%s: %d %s %s rows of %s", path, len(times), kind, interval, market.symbol)
