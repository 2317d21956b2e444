"""Market data from any ccxt exchange: markets, leverage tiers and candles, rate-limited and retried."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from dagster import ConfigurableResource
from pydantic import Field

log = logging.getLogger(__name__)

MarketType = Literal["spot", "futures"]
T = TypeVar("T")



class MarketDataError(ValueError):
    """A request the exchange cannot answer whatever we retry: unknown pair, timeframe, exchange."""


def _deep_merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class MarketDataClient:
    """One ccxt exchange instance for one market type, with retries around every request."""

    def __init__(
        self,
        exchange_id: str,
        market_type: MarketType,
        ccxt_config: dict[str, Any],
        max_retries: int,
        backoff_seconds: float,
        max_backoff_seconds: float,
        candles_per_request: int = 1000,
    ) -> None:
        import ccxt  # imported on first use: loading the code location stays fast

        if exchange_id not in ccxt.exchanges:
            raise MarketDataError(f"unknown exchange id {exchange_id!r}: ccxt {ccxt.__version__} has no such exchange")
        if market_type not in ("spot", "futures"):
            raise MarketDataError(f"unknown market type {market_type!r}: expected 'spot' or 'futures'")
        self.exchange_id = exchange_id
        self.market_type = market_type
        config = _deep_merge({"enableRateLimit": True}, ccxt_config)
        if market_type == "futures":
            config = _deep_merge({"options": {"defaultType": "swap"}}, config)
        self.api = getattr(ccxt, exchange_id)(config)
        # Errors after which the same request may well succeed: rate limits, bans that lift, 5xx,
        # timeouts (NetworkError is the parent of all of them in ccxt).
        self._retryable = (ccxt.NetworkError,)
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.candles_per_request = candles_per_request
        self._markets: dict[str, Any] | None = None

    # Plumbing -----------------------------------------------------------------------------------

    def call(self, what: str, fn: Callable[..., T], *args, **kwargs) -> T:
        """Run one exchange request, retrying transient failures with exponential backoff.

        A failure that outlasts the retries is raised as the exchange's own ccxt error."""
        for attempt in range(self.max_retries + 1):
            try:
                return fn(*args, **kwargs)
            except self._retryable as exc:
                if attempt == self.max_retries:
                    raise
                delay = min(self.backoff_seconds * 2**attempt, self.max_backoff_seconds)
                log.warning(
                    "%s %s failed (%s: %s); retry %d/%d in %.1fs",
                    self.exchange_id, what, type(exc).__name__, exc, attempt + 1, self.max_retries, delay,
                )
                time.sleep(delay)
        raise AssertionError("unreachable")

    def close(self) -> None:
        close = getattr(self.api, "close", None)
        if callable(close):
            close()

    # Markets ------------------------------------------------------------------------------------

    def load_markets(self) -> dict[str, Any]:
        """The markets of this market type, as ccxt normalises them (spot, or linear perpetual swaps)."""
        if self._markets is None:
            markets = self.call("load_markets", self.api.load_markets, True)
            if self.market_type == "spot":
                keep = {s: m for s, m in markets.items() if m.get("spot")}
            else:
                keep = {s: m for s, m in markets.items() if m.get("swap") and m.get("linear")}
            self._markets = keep
        return self._markets

    def leverage_tiers(self, symbols: list[str]) -> tuple[dict[str, list[dict]], str]:
        """Leverage tiers for these futures symbols and where they came from.

        From the exchange when it offers them to this client (Binance needs API keys); for Binance
        without keys, from the tiers file bundled with freqtrade, which is what freqtrade itself uses
        then."""
        if self.api.has.get("fetchLeverageTiers") and self.api.check_required_credentials(False):
            tiers = self.call("fetch_leverage_tiers", self.api.fetch_leverage_tiers, symbols)
            return {s: tiers[s] for s in symbols if s in tiers}, "exchange"
        if self.exchange_id == "binance":
            import freqtrade.exchange

            path = Path(freqtrade.exchange.__file__).parent / "binance_leverage_tiers.json"
            bundled = json.loads(path.read_text())
            return {s: bundled[s] for s in symbols if s in bundled}, f"freqtrade {path.name}"
        return {}, "unavailable (the exchange offers no leverage tiers without credentials)"

    def check_pairs(self, pairs: list[str]) -> None:
        markets = self.load_markets()
        unknown = [p for p in pairs if p not in markets]
        if unknown:
            raise MarketDataError(
                f"{self.exchange_id} {self.market_type} has no market {', '.join(unknown)} "
                f"({len(markets)} markets loaded)"
            )

    def check_timeframe(self, timeframe: str) -> None:
        offered = self.api.timeframes or {}
        if timeframe not in offered:
            raise MarketDataError(
                f"{self.exchange_id} offers no {timeframe!r} candles; it offers {', '.join(offered)}"
            )

    # Candles ------------------------------------------------------------------------------------

    def server_time_ms(self) -> int:
        """The exchange's clock, which decides which candle is still open."""
        if self.api.has.get("fetchTime"):
            return int(self.call("fetch_time", self.api.fetch_time))
        return self.api.milliseconds()

    def fetch_candles(
        self,
        pair: str,
        timeframe: str,
        candle_type: str,
        since_ms: int,
        until_ms: int,
        on_page: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Every row with open time in [since_ms, until_ms), paging forward, as float64 rows
        ``[open_ms, values...]`` (NaN where the exchange sent null).

        Rows are as the exchange sent them (possibly duplicated, unordered or invalid): cleaning is
        the caller's business. Each page becomes an array at once: millions of small Python lists
        kept alive would make the garbage collector rescan them on every page.
        ``on_page(rows_so_far, last_ms)`` reports progress."""
        step_ms = int(self.api.parse_timeframe(timeframe) * 1000)
        width = 2 if candle_type == "funding_rate" else 6
        pages: list[np.ndarray] = []
        fetched = 0
        since = since_ms
        while since < until_ms:
            raw = self._fetch_page(pair, timeframe, candle_type, since)
            page = np.array([r[:width] for r in raw if r[0] is not None], dtype="float64").reshape(-1, width)
            page = page[(page[:, 0] >= since_ms) & (page[:, 0] < until_ms)]
            if not len(page):
                break
            pages.append(page)
            fetched += len(page)
            last = int(page[:, 0].max())
            if on_page:
                on_page(fetched, last)
            if last + step_ms <= since:
                break
            since = last + (step_ms if candle_type != "funding_rate" else 1)
        return np.concatenate(pages) if pages else np.empty((0, width))

    def _fetch_page(self, pair: str, timeframe: str, candle_type: str, since: int) -> list[list]:
        if candle_type == "funding_rate":
            history = self.call(
                f"fetch_funding_rate_history {pair}", self.api.fetch_funding_rate_history, pair, since, self.candles_per_request
            )
            return [[h["timestamp"], h["fundingRate"]] for h in history]
        params = {"price": "mark"} if candle_type == "mark" else {}
        return self.call(
            f"fetch_ohlcv {pair} {timeframe} {candle_type}",
            self.api.fetch_ohlcv, pair, timeframe, since, self.candles_per_request, params,
        )


class ExchangeResource(ConfigurableResource):
    """Opens ccxt clients for any exchange id and market type.

    ``ccxt_config`` maps an exchange id to extra ccxt constructor settings, as Freqtrade's
    ``exchange.ccxt_config``: URLs, timeouts, keys. They are deep-merged over the universe's own."""

    ccxt_config: dict[str, dict[str, Any]] = Field(default_factory=dict)
    max_retries: int = Field(default=6, description="Retries of a request that failed transiently.")
    backoff_seconds: float = Field(default=1.0, description="First retry delay; doubles each retry.")
    max_backoff_seconds: float = Field(default=30.0)
    candles_per_request: int = Field(default=1000, description="Page size asked of the exchange.")

    def client(
        self, exchange_id: str, market_type: MarketType, ccxt_config: dict[str, Any] | None = None
    ) -> MarketDataClient:
        config = _deep_merge(ccxt_config or {}, self.ccxt_config.get(exchange_id, {}))
        return MarketDataClient(
            exchange_id, market_type, config, self.max_retries, self.backoff_seconds, self.max_backoff_seconds
        )
