"""Market data from any ccxt exchange: markets, leverage tiers and candles, rate-limited and retried.

Whether a failed request is worth repeating is decided the way the exchange means it, from the HTTP
answer rather than from the ccxt error class alone: ccxt maps Binance's JSON ``code`` before the
HTTP status, so an HTTP 500 carrying ``{"code": -1000}`` ("unknown error, try again") arrives as
``OperationFailed``, which is no ``NetworkError``. See :func:`is_transient`.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import tenacity
from dagster import ConfigurableResource
from pydantic import Field

log = logging.getLogger(__name__)

MarketType = Literal["spot", "futures"]
T = TypeVar("T")

#: Exchange error codes that mean "try again", per exchange, from the exchanges' own documentation.
#: Binance: -1000 unknown error, -1001 disconnected, -1003 too many requests, -1006 unexpected
#: answer from the message bus, -1007 backend timeout, -1008 server busy, -1015 too many orders.
TRANSIENT_ERROR_CODES: dict[str, frozenset[int]] = {
    "binance": frozenset({-1000, -1001, -1003, -1006, -1007, -1008, -1015}),
}
#: HTTP statuses below 500 that may succeed later: request timeout, IP ban (418), rate limit.
TRANSIENT_STATUSES = frozenset({408, 418, 429})
#: Exchanges whose kline answers are arrays ``[open time, open, high, low, close, volume, ...]`` of
#: numbers and numeric strings (volume at index 7 in inverse markets), as ccxt's ``parse_ohlcv`` reads
#: them: their pages become float rows in one numpy conversion. ccxt's own parsing, value by value
#: through ``safe_number``, costs more than the request to a nearby server.
ARRAY_KLINES = frozenset({"binance"})
#: With the exchange's clock unavailable, candles closing within this margin of the local clock
#: count as still open: a local clock a little ahead must not store an open candle as final.
LOCAL_CLOCK_MARGIN_MS = 10_000


class MarketDataError(ValueError):
    """A request the exchange cannot answer whatever we retry: unknown pair, timeframe, exchange."""


class ExchangeRequestFailed(RuntimeError):
    """A request that failed for good: permanently at once, or transiently beyond the retry budget.
    The message names the request (pair, timeframe) and the exchange's own answer."""

    def __init__(self, message: str, permanent: bool):
        super().__init__(message)
        self.permanent = permanent


class UnreadableAnswer(RuntimeError):
    """An HTTP 2xx whose body is not the JSON the API always sends (an HTML page, a cut-off body).

    Raised from inside ccxt's request, so it reaches the retry loop as itself."""


def _looks_like_json(text: str) -> bool:
    # The APIs answer JSON objects or arrays; checking both ends is enough to catch an HTML page or a
    # body cut short, without parsing a page of candles twice.
    return text[:1] in ("{", "[") and text[-1:] in ("}", "]")


@dataclass(frozen=True)
class HttpAnswer:
    """The HTTP answer a failed request got (none for timeouts, resets and refused connections)."""

    status: int
    headers: Mapping[str, str]
    body: str

    def error_code(self) -> int | None:
        """The exchange's JSON error ``code`` (Binance: ``{"code": -1121, "msg": ...}``), if any."""
        try:
            payload = json.loads(self.body)
        except ValueError:
            return None
        code = payload.get("code") if isinstance(payload, dict) else None
        try:
            return int(code) if code is not None else None
        except (TypeError, ValueError):
            return None

    def retry_after_seconds(self) -> float | None:
        value = self.headers.get("Retry-After")
        try:
            return max(float(value), 0.0) if value is not None else None
        except ValueError:  # an HTTP date: rare, and the exponential backoff then applies
            return None

    def describe(self) -> str:
        body = " ".join(self.body.split())
        return f"HTTP {self.status} {body[:300]}"


def is_transient(error: BaseException, answer: HttpAnswer | None, transient_codes: frozenset[int]) -> bool:
    """Whether repeating the request may succeed.

    No HTTP answer at all (timeout, connection reset or refused, a body cut off in transfer) and
    unreadable 2xx bodies: yes. Any 5xx, 408, 418 and 429: yes, whatever class ccxt picked for the
    body. Any other answer: only when it carries one of the exchange's "try again" codes; unknown
    symbols (-1121), intervals (-1120) and bad credentials (-2014, -2015) never succeed."""
    import ccxt

    if isinstance(error, UnreadableAnswer):
        return True
    if answer is None:
        return isinstance(error, ccxt.NetworkError)
    if answer.status >= 500 or answer.status in TRANSIENT_STATUSES:
        return True
    return answer.error_code() in transient_codes


def _deep_merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one request is retried: ``max_retries`` repeats, waits doubling from
    ``backoff_seconds`` up to ``max_backoff_seconds``, or what the exchange's ``Retry-After`` asks
    up to ``max_retry_after_seconds`` (a longer ban fails the request at once)."""

    max_retries: int = 6
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 30.0
    max_retry_after_seconds: float = 300.0


class MarketDataClient:
    """One ccxt exchange instance for one market type, with retries around every request.

    ``sleep`` waits between retries (tests pass one that does not really wait); ``on_retry``
    hears of every retry and every fallback, one line each (the assets pass the Dagster run log)."""

    def __init__(
        self,
        exchange_id: str,
        market_type: MarketType,
        ccxt_config: dict[str, Any],
        policy: RetryPolicy = RetryPolicy(),
        candles_per_request: int = 1000,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[str], None] | None = None,
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
        # ccxt hands every HTTP answer to on_rest_response before judging it: keep the last one, whose
        # status and Retry-After the ccxt error does not carry.
        self._ccxt_on_rest_response = self.api.on_rest_response
        self.api.on_rest_response = self._record_answer
        self._answer: HttpAnswer | None = None
        self._ccxt_parse_ohlcvs = self.api.parse_ohlcvs
        if exchange_id in ARRAY_KLINES:
            self.api.parse_ohlcvs = self._parse_kline_arrays
        self.transient_codes = TRANSIENT_ERROR_CODES.get(exchange_id, frozenset())
        self.policy = policy
        self.candles_per_request = candles_per_request
        self.sleep = sleep
        self.on_retry = on_retry or log.warning
        self.retries: Counter[str] = Counter()  # cause -> retries, for the run's metadata
        self._markets: dict[str, Any] | None = None

    # Plumbing -----------------------------------------------------------------------------------

    def _record_answer(self, code, reason, url, method, headers, body, request_headers, request_body):
        self._answer = HttpAnswer(int(code), headers, body or "")
        text = self._ccxt_on_rest_response(code, reason, url, method, headers, body, request_headers, request_body)
        if 200 <= int(code) < 300 and not _looks_like_json(text):
            raise UnreadableAnswer(
                f"{self.exchange_id} {method} {url} answered HTTP {code} with a body that is not JSON: {text[:120]!r}"
            )
        return text

    def _parse_kline_arrays(self, ohlcvs, market=None, timeframe="1m", since=None, limit=None, tail=False):
        """ccxt's ``parse_ohlcvs`` for answers of kline arrays: float64 rows ``[open_ms, open, high, low,
        close, volume]`` (NaN for null) in the exchange's order, unfiltered (:meth:`fetch_candles` keeps
        its span). An answer of any other shape is left to ccxt's own parsing."""
        volume = 7 if market and market.get("inverse") else 5
        if not ohlcvs or not isinstance(ohlcvs, list) or not all(isinstance(r, list) and len(r) > volume for r in ohlcvs):
            return self._ccxt_parse_ohlcvs(ohlcvs, market, timeframe, since, limit, tail)
        try:
            values = np.array([r[: volume + 1] for r in ohlcvs], dtype="float64")
        except (TypeError, ValueError):  # a value that is no number: ccxt's parsing says what it makes of it
            return self._ccxt_parse_ohlcvs(ohlcvs, market, timeframe, since, limit, tail)
        return values[:, [0, 1, 2, 3, 4, volume]]

    def _failure(self, error: BaseException) -> str:
        answer = self._answer
        if isinstance(error, UnreadableAnswer) or answer is None:
            return f"{type(error).__name__}: {error}"
        return f"{answer.describe()} ({type(error).__name__})"

    def _cause(self, error: BaseException) -> str:
        answer = self._answer
        if answer is None or isinstance(error, UnreadableAnswer):
            return type(error).__name__
        code = answer.error_code()
        return f"HTTP {answer.status}" + (f" {code}" if code is not None else "")

    def call(self, what: str, fn: Callable[..., T], *args, retries: int | None = None, **kwargs) -> T:
        """Run one exchange request, retrying what may succeed if repeated (see :func:`is_transient`).

        ``what`` names the request in messages (pair, timeframe). What fails for good is raised as
        :class:`ExchangeRequestFailed` naming it and the exchange's answer, chained to ccxt's error."""
        import ccxt

        policy = self.policy
        budget = policy.max_retries if retries is None else retries

        def attempt() -> T:
            self._answer = None
            return fn(*args, **kwargs)

        def transient(state: tenacity.RetryCallState) -> bool:
            error = state.outcome.exception()
            return isinstance(error, ccxt.BaseError | UnreadableAnswer) and is_transient(error, self._answer, self.transient_codes)

        def wait(state: tenacity.RetryCallState) -> float:
            asked = self._answer.retry_after_seconds() if self._answer is not None else None
            if asked is not None:
                return asked
            return min(policy.backoff_seconds * 2 ** (state.attempt_number - 1), policy.max_backoff_seconds)

        def ban_too_long(state: tenacity.RetryCallState) -> bool:
            return state.upcoming_sleep > max(policy.max_retry_after_seconds, policy.max_backoff_seconds)

        def report(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception()
            self.retries[self._cause(error)] += 1
            self.on_retry(
                f"{self.exchange_id} {what}: {self._failure(error)}; "
                f"retry {state.attempt_number}/{budget} in {state.upcoming_sleep:.1f} s"
            )

        retrying = tenacity.Retrying(
            sleep=self.sleep,
            retry=transient,
            wait=wait,
            stop=tenacity.stop_after_attempt(budget + 1) | ban_too_long,
            before_sleep=report,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except (ccxt.BaseError, UnreadableAnswer) as error:
            permanent = not is_transient(error, self._answer, self.transient_codes)
            if permanent:
                outcome = "not retried: the exchange answers this request the same way every time"
            elif (asked := self._answer.retry_after_seconds() if self._answer else None) and asked > policy.max_retry_after_seconds:
                outcome = f"the exchange asks to wait {asked:.0f} s, longer than max_retry_after_seconds {policy.max_retry_after_seconds:.0f}"
            elif budget:
                outcome = f"still failing after {budget} retries"
            else:
                outcome = "not retried (no retries for this request)"
            raise ExchangeRequestFailed(f"{self.exchange_id} {what}: {self._failure(error)}; {outcome}", permanent) from error

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

    def server_time_ms(self) -> tuple[int, str]:
        """The exchange's clock, which decides which candle is still open, and whose clock it is.

        An exchange whose clock endpoint is missing or failing does not stop a sync: the local clock,
        held back by :data:`LOCAL_CLOCK_MARGIN_MS`, stands in (one try; the clock is not worth retries)."""
        if self.api.has.get("fetchTime"):
            try:
                return int(self.call("fetch_time", self.api.fetch_time, retries=0)), "exchange"
            except ExchangeRequestFailed as exc:
                self.on_retry(f"{exc}; using the local clock less {LOCAL_CLOCK_MARGIN_MS // 1000} s instead")
        return self.api.milliseconds() - LOCAL_CLOCK_MARGIN_MS, "local"

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
        kept alive would make the garbage collector rescan them on every page. No page asks for
        more candles than the span has left. ``on_page(rows_so_far, last_ms)`` reports progress."""
        step_ms = int(self.api.parse_timeframe(timeframe) * 1000)
        width = 2 if candle_type == "funding_rate" else 6
        pages: list[np.ndarray] = []
        fetched = 0
        since = since_ms
        while since < until_ms:
            limit = min(self.candles_per_request, -(-(until_ms - since) // step_ms))
            raw = self._fetch_page(pair, timeframe, candle_type, since, limit)
            if isinstance(raw, np.ndarray):
                page = raw[:, :width]
            else:
                page = np.array([r[:width] for r in raw if r[0] is not None], dtype="float64").reshape(-1, width)
            # Also drops rows without an open time (NaN compares false).
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

    def _fetch_page(
        self, pair: str, timeframe: str, candle_type: str, since: int, limit: int
    ) -> list[list] | np.ndarray:
        if candle_type == "funding_rate":
            history = self.call(
                f"{pair} {timeframe} funding rates", self.api.fetch_funding_rate_history, pair, since, limit
            )
            return [[h["timestamp"], h["fundingRate"]] for h in history]
        params = {"price": "mark"} if candle_type == "mark" else {}
        return self.call(
            f"{pair} {timeframe} {candle_type} candles", self.api.fetch_ohlcv, pair, timeframe, since, limit, params
        )


class ExchangeResource(ConfigurableResource):
    """Opens ccxt clients for any exchange id and market type.

    ``ccxt_config`` maps an exchange id to extra ccxt constructor settings, as Freqtrade's
    ``exchange.ccxt_config``: URLs, timeouts, keys. They are deep-merged over the universe's own."""

    ccxt_config: dict[str, dict[str, Any]] = Field(default_factory=dict)
    max_retries: int = Field(default=6, ge=0, description="Retries of one request that failed transiently.")
    backoff_seconds: float = Field(default=1.0, ge=0, description="First retry delay; doubles each retry.")
    max_backoff_seconds: float = Field(default=30.0, ge=0)
    max_retry_after_seconds: float = Field(
        default=300.0, ge=0,
        description="Longest Retry-After (rate limit, IP ban) waited out; a longer one fails the request at once.",
    )
    candles_per_request: int = Field(default=1000, ge=1, description="Page size asked of the exchange.")
    pages_per_chunk: int = Field(
        default=10, ge=1,
        description="Pages fetched per committed chunk of a series: a failure or a kill loses at most one chunk.",
    )

    def client(
        self,
        exchange_id: str,
        market_type: MarketType,
        ccxt_config: dict[str, Any] | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> MarketDataClient:
        config = _deep_merge(ccxt_config or {}, self.ccxt_config.get(exchange_id, {}))
        policy = RetryPolicy(self.max_retries, self.backoff_seconds, self.max_backoff_seconds, self.max_retry_after_seconds)
        return MarketDataClient(
            exchange_id, market_type, config, policy, self.candles_per_request, self.sleep, on_retry
        )

    def sleep(self, seconds: float) -> None:
        """How the clients wait between retries (a test's resource overrides it to wait no real time)."""
        time.sleep(seconds)
