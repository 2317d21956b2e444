"""Binance's public data archive (data.binance.vision): bulk candle history as zip files of CSV.

Layout: ``data/<market>/<monthly|daily>/<kind>/<SYMBOL>/<interval>/<SYMBOL>-<interval>-<YYYY-MM[-DD]>.zip``,
each beside a ``.zip.CHECKSUM`` file in ``sha256sum`` format. ``<market>`` is ``spot``, ``futures/um``
(USD-M, linear) or ``futures/cm`` (COIN-M, inverse); ``<kind>`` is ``klines``, ``markPriceKlines`` or
``indexPriceKlines`` (futures), or ``fundingRate`` (futures, monthly files only, no interval folder).

A span of candles is planned into files the archive has published (months whose monthly file is
out, otherwise days whose daily file is out) and a remainder for the exchange's REST API. Every
file's checksum is verified. A file the archive does not have (404), or one re-uploaded since it
was recorded (a different checksum, ETag or Last-Modified), leaves its span to REST; a file that is
broken (corrupt zip, checksum mismatch, wrong column count) raises :class:`ArchiveError` naming it.
"""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from tradai_core.universe import DEFAULT_ARCHIVE_URL

if TYPE_CHECKING:
    import httpx


ArchiveMarket = Literal["spot", "futures/um", "futures/cm"]

# Daily files appear the day after, some hours late; monthly ones in the first days of the next month.
DAILY_PUBLISHED_AFTER = pd.Timedelta(days=1)
MONTHLY_PUBLISHED_AFTER = pd.Timedelta(days=7)

KLINE_COLUMNS = 12  # open time, OHLC, volume, close time, quote volume, trades, taker buy base, quote, ignore
FUNDING_COLUMNS = 3  # calc_time, funding_interval_hours, last_funding_rate
_KIND = {"spot": "klines", "futures": "klines", "mark": "markPriceKlines", "index": "indexPriceKlines",
         "funding_rate": "fundingRate"}
# Open times above this are microseconds (spot files since 2025-01-01); below, milliseconds.
_MICROSECONDS_FROM = 10**13


class ArchiveError(RuntimeError):
    """An archive file that exists but cannot be trusted or read; the message names its URL."""


@dataclass(frozen=True)
class ArchiveFile:
    """One zip file of the archive and the open times [start, end) it covers."""

    path: str
    start: pd.Timestamp
    end: pd.Timestamp


@dataclass(frozen=True)
class Span:
    """A part of a requested span and where its candles come from ('archive' or 'rest')."""

    start: pd.Timestamp
    end: pd.Timestamp
    source: str
    reason: str  # which file, or why REST


@dataclass
class ArchiveCandles:
    """What the archive served for a request: rows as the REST path returns them
    (float64 ``[open_ms, values...]``), every part of the span with its source, and the records
    (checksum, ETag, Last-Modified) of the files used, keyed by path."""

    rows: np.ndarray
    spans: list[Span]
    files: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def rest_spans(self) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
        """The parts of the request left to REST, adjacent parts merged."""
        merged: list[list[pd.Timestamp]] = []
        for span in self.spans:
            if span.source != "rest":
                continue
            if merged and merged[-1][1] == span.start:
                merged[-1][1] = span.end
            else:
                merged.append([span.start, span.end])
        return [(start, end) for start, end in merged]


def archive_market(market_type: str, inverse: bool = False) -> ArchiveMarket:
    if market_type == "spot":
        return "spot"
    return "futures/cm" if inverse else "futures/um"


def plan_files(
    symbol: str,
    market: ArchiveMarket,
    timeframe: str,
    candle_type: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    now: pd.Timestamp,
) -> list[ArchiveFile | tuple[pd.Timestamp, pd.Timestamp, str]]:
    """[start, end) as archive files and, where the archive has published nothing yet, REST spans
    ``(start, end, reason)``, in time order.

    A month whose monthly file is out is one file (also when the span covers only part of it);
    otherwise each day whose daily file is out is one file. Funding rates have monthly files only."""
    if candle_type not in _KIND:
        raise ValueError(f"the archive has no {candle_type!r} candles")
    if candle_type in ("mark", "index", "funding_rate") and market == "spot":
        raise ValueError(f"the archive has {candle_type} series for futures only")
    kind = _KIND[candle_type]
    folder = f"data/{market}/{{period}}/{kind}/{symbol}" + ("" if kind == "fundingRate" else f"/{timeframe}")
    stem = f"{symbol}-{kind if kind == 'fundingRate' else timeframe}"
    plan: list[ArchiveFile | tuple[pd.Timestamp, pd.Timestamp, str]] = []
    month = start.floor("D").replace(day=1)
    while month < end:
        next_month = month + pd.offsets.MonthBegin(1)
        lo, hi = max(start, month), min(end, next_month)
        if next_month + MONTHLY_PUBLISHED_AFTER <= now:
            name = f"{stem}-{month:%Y-%m}.zip"
            plan.append(ArchiveFile(f"{folder.format(period='monthly')}/{name}", lo, hi))
        elif kind == "fundingRate":
            plan.append((lo, hi, "month not archived yet"))
        else:
            day = lo.floor("D")
            while day < hi:
                next_day = day + pd.Timedelta(days=1)
                day_lo, day_hi = max(lo, day), min(hi, next_day)
                if next_day + DAILY_PUBLISHED_AFTER <= now:
                    name = f"{stem}-{day:%Y-%m-%d}.zip"
                    plan.append(ArchiveFile(f"{folder.format(period='daily')}/{name}", day_lo, day_hi))
                else:
                    plan.append((day_lo, day_hi, "day not archived yet"))
                day = next_day
        month = next_month
    return plan


def parse_checksum(text: str, url: str, file_name: str) -> str:
    """The SHA-256 hex digest of a ``sha256sum`` line (``<64 hex>  <file name>``)."""
    parts = text.split()
    digest = parts[0].lower() if parts else ""
    if len(parts) != 2 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ArchiveError(f"{url}: not a sha256sum line: {text[:200]!r}")
    if parts[1] != file_name:
        raise ArchiveError(f"{url}: names {parts[1]!r}, not {file_name!r}")
    return digest


def parse_csv(data: bytes, url: str, candle_type: str, inverse: bool = False) -> np.ndarray:
    """Rows ``[open_ms, values...]`` of one archive CSV, float64, in the file's order.

    Older spot files have no header row, futures files may have one; open times are milliseconds
    or, in spot files since 2025, microseconds (told apart by size)."""
    import pyarrow as pa
    from pyarrow import csv

    funding = candle_type == "funding_rate"
    expected = FUNDING_COLUMNS if funding else KLINE_COLUMNS
    value_columns = ["c2"] if funding else ["c1", "c2", "c3", "c4", "c7" if inverse else "c5"]
    header = bool(data) and not data[:1].isdigit()
    # With the column names given, pyarrow refuses any row with more or fewer fields.
    try:
        table = csv.read_csv(
            io.BytesIO(data),
            read_options=csv.ReadOptions(column_names=[f"c{i}" for i in range(expected)], skip_rows=int(header)),
            convert_options=csv.ConvertOptions(
                column_types={"c0": pa.int64(), **{c: pa.float64() for c in value_columns}},
                include_columns=["c0", *value_columns],
            ),
        )
    except pa.ArrowInvalid as exc:
        raise ArchiveError(f"{url}: not a CSV of {expected} numeric columns ({exc})") from exc
    if table.column("c0").null_count:
        raise ArchiveError(f"{url}: a row has no open time")
    opens = table.column("c0").to_numpy()
    values = [table.column(c).to_numpy(zero_copy_only=False) for c in value_columns]
    opens = np.where(opens >= _MICROSECONDS_FROM, opens // 1000, opens)
    return np.column_stack([opens.astype("float64"), *values]) if len(opens) else np.empty((0, len(values) + 1))


class BinanceArchive:
    """Reads candles from the archive at ``base_url`` (Binance's own, or a mirror, or a test server).

    Transient failures (connection errors, timeouts, 429, 5xx) are retried with exponential
    backoff, honouring ``Retry-After``; ``on_retry`` hears of each retry."""

    def __init__(
        self,
        base_url: str = DEFAULT_ARCHIVE_URL,
        max_retries: int = 4,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 30.0,
        timeout_seconds: float = 60.0,
        workers: int = 8,
        on_retry: Callable[[str], None] | None = None,
    ):
        import httpx  # imported on first use: loading the code location stays fast

        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.workers = workers
        self.on_retry = on_retry
        self.http = httpx.Client(timeout=timeout_seconds, limits=httpx.Limits(max_connections=workers))

    def __enter__(self) -> BinanceArchive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path}"

    def _get(self, path: str) -> httpx.Response | None:
        """The answer to a GET, or None for 404; raises ArchiveError once retries are spent."""
        import httpx

        url = self.url(path)
        for attempt in range(self.max_retries + 1):
            try:
                response = self.http.get(url)
            except httpx.TransportError as exc:
                problem, wait = f"{type(exc).__name__}: {exc}", None
            else:
                if response.status_code == 200:
                    return response
                if response.status_code == 404:
                    return None
                if response.status_code != 429 and response.status_code < 500:
                    raise ArchiveError(f"{url}: HTTP {response.status_code} {response.text[:200]!r}")
                problem, wait = f"HTTP {response.status_code}", _retry_after(response)
            if attempt == self.max_retries:
                raise ArchiveError(f"{url}: {problem}, still failing after {self.max_retries} retries")
            delay = wait if wait is not None else min(self.backoff_seconds * 2**attempt, self.max_backoff_seconds)
            delay = min(delay, self.max_backoff_seconds)
            if self.on_retry is not None:
                self.on_retry(f"{url}: {problem}; retry {attempt + 1}/{self.max_retries} in {delay:.1f} s")
            time.sleep(delay)
        raise AssertionError("unreachable")

    def read_file(
        self, file: ArchiveFile, candle_type: str, inverse: bool, recorded: dict[str, str] | None
    ) -> tuple[np.ndarray, dict[str, str]] | str:
        """A file's rows within its span and its record, or why its span goes to REST."""
        name = file.path.rsplit("/", 1)[1]
        checksum = self._get(file.path + ".CHECKSUM")
        if checksum is None:
            return f"missing: {file.path}"
        digest = parse_checksum(checksum.text, self.url(file.path + ".CHECKSUM"), name)
        if recorded is not None and recorded.get("sha256") != digest:
            return f"re-uploaded (checksum changed): {file.path}"
        response = self._get(file.path)
        if response is None:
            return f"missing: {file.path}"
        url = self.url(file.path)
        record = {"sha256": digest, "etag": response.headers.get("etag", ""),
                  "last_modified": response.headers.get("last-modified", "")}
        if recorded is not None and any(recorded.get(k, "") != record[k] for k in ("etag", "last_modified")):
            return f"re-uploaded (ETag or Last-Modified changed): {file.path}"
        content = response.content
        actual = hashlib.sha256(content).hexdigest()
        if actual != digest:
            raise ArchiveError(f"{url}: checksum mismatch: its .CHECKSUM says {digest}, the file hashes to {actual}")
        try:
            with zipfile.ZipFile(io.BytesIO(content)) as archive:
                members = [m for m in archive.namelist() if m.endswith(".csv")]
                if len(members) != 1:
                    raise ArchiveError(f"{url}: expected one CSV file in the zip, found {archive.namelist()}")
                data = archive.read(members[0])
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as exc:
            raise ArchiveError(f"{url}: corrupt zip ({exc})") from exc
        rows = parse_csv(data, url, candle_type, inverse)
        lo, hi = file.start.value // 1_000_000, file.end.value // 1_000_000
        rows = rows[(rows[:, 0] >= lo) & (rows[:, 0] < hi)]
        return rows, record

    def parts(
        self,
        symbol: str,
        market: ArchiveMarket,
        timeframe: str,
        candle_type: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
        now: pd.Timestamp,
        recorded: dict[str, dict[str, str]] | None = None,
    ) -> Iterator[tuple[Span, np.ndarray | None, dict[str, str] | None]]:
        """Every part of [start, end) in time order: ``(span, rows, record)`` for a file the archive
        served, ``(span, None, None)`` for a part left to REST (``span.reason`` says why).

        ``symbol`` is the exchange's id (ETHBTC, XRPUSDT); ``now`` the exchange's clock, which decides
        what is published; ``recorded`` the records of files stored before, against which re-uploads
        are detected. Files are read ``workers`` at a time, so a long span streams."""
        recorded = recorded or {}
        plan = plan_files(symbol, market, timeframe, candle_type, start, end, now)
        inverse = market == "futures/cm"
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            for first in range(0, len(plan), self.workers):
                batch = plan[first:first + self.workers]
                reads = [
                    pool.submit(self.read_file, p, candle_type, inverse, recorded.get(p.path))
                    if isinstance(p, ArchiveFile) else None
                    for p in batch
                ]
                for part, read in zip(batch, reads):
                    if read is None:
                        yield Span(part[0], part[1], "rest", part[2]), None, None
                        continue
                    result = read.result()
                    if isinstance(result, str):
                        yield Span(part.start, part.end, "rest", result), None, None
                    else:
                        yield Span(part.start, part.end, "archive", part.path), result[0], result[1]

    def candles(
        self,
        symbol: str,
        market: ArchiveMarket,
        timeframe: str,
        candle_type: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
        now: pd.Timestamp,
        recorded: dict[str, dict[str, str]] | None = None,
    ) -> ArchiveCandles:
        """All of :meth:`parts` at once: the rows the archive has, every span's source and the records."""
        spans, rows, used = [], [], {}
        for span, part_rows, record in self.parts(symbol, market, timeframe, candle_type, start, end, now, recorded):
            spans.append(span)
            if part_rows is not None:
                rows.append(part_rows)
                used[span.reason] = record
        width = 2 if candle_type == "funding_rate" else 6
        return ArchiveCandles(np.concatenate(rows) if rows else np.empty((0, width)), spans, used)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
