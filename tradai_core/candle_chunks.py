"""Filling a span of one candle series chunk by chunk, from sources in order of preference.

Plain logic, no I/O of its own. A *source* is a function ``(pair, timeframe, candle_type, start, end)``
that yields :class:`CandleChunk` objects in time order, each covering a span inside [start, end)
completely (what the source has of that span; empty when the market had no candles then). A source
may skip spans it does not have (a bulk archive lacking a file); :func:`fill_span` asks the next
source for exactly those spans, before going on, so chunks always arrive in time order and a series'
last stored candle is always the point a re-run resumes from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

from tradai_core.candles import frame_from_rows


@dataclass(frozen=True)
class CandleChunk:
    """The candles a source has for [start, end), as it got them (not yet cleaned)."""

    start: pd.Timestamp
    end: pd.Timestamp
    candles: pd.DataFrame
    source: str
    files: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Bulk files the candles came from, with their records (checksum, ETag, Last-Modified)."""


CandleSource = Callable[[str, str, str, pd.Timestamp, pd.Timestamp], Iterator[CandleChunk]]


def chunk_spans(
    start: pd.Timestamp, end: pd.Timestamp, step: pd.Timedelta, candles_per_chunk: int
) -> Iterator[tuple[pd.Timestamp, pd.Timestamp]]:
    """[start, end) cut into consecutive spans of ``candles_per_chunk`` candle lengths (the last shorter)."""
    length = step * candles_per_chunk
    cursor = start
    while cursor < end:
        stop = min(cursor + length, end)
        yield cursor, stop
        cursor = stop


def fill_span(
    sources: Sequence[CandleSource], pair: str, timeframe: str, candle_type: str, start: pd.Timestamp, end: pd.Timestamp
) -> Iterator[CandleChunk]:
    """Chunks covering [start, end) in time order: from the first source where it has them, the spans
    it skips from the sources after it."""
    if not sources or start >= end:
        return
    first, fallbacks = sources[0], sources[1:]
    cursor = start
    for chunk in first(pair, timeframe, candle_type, start, end):
        if not (cursor <= chunk.start < chunk.end <= end):
            raise ValueError(
                f"{pair} {timeframe} {candle_type}: source {chunk.source!r} gave a chunk "
                f"[{chunk.start}, {chunk.end}) out of order or outside [{cursor}, {end})"
            )
        if chunk.start > cursor:
            yield from fill_span(fallbacks, pair, timeframe, candle_type, cursor, chunk.start)
        yield chunk
        cursor = chunk.end
    yield from fill_span(fallbacks, pair, timeframe, candle_type, cursor, end)


class CandleFetcher(Protocol):
    def fetch_candles(
        self, pair: str, timeframe: str, candle_type: str, since_ms: int, until_ms: int
    ) -> np.ndarray: ...


def _ms(ts: pd.Timestamp) -> int:
    return int(ts.value // 1_000_000)


def rest_source(client: CandleFetcher, step_of: Callable[[str], pd.Timedelta], candles_per_chunk: int) -> CandleSource:
    """The exchange's REST API as a source: one chunk per ``candles_per_chunk`` candles of the span,
    paged by ``client.fetch_candles``. ``step_of(timeframe)`` is the candle length."""

    def chunks(pair: str, timeframe: str, candle_type: str, start: pd.Timestamp, end: pd.Timestamp) -> Iterator[CandleChunk]:
        for span_start, span_end in chunk_spans(start, end, step_of(timeframe), candles_per_chunk):
            rows = client.fetch_candles(pair, timeframe, candle_type, _ms(span_start), _ms(span_end))
            yield CandleChunk(span_start, span_end, frame_from_rows(rows, candle_type), "rest")

    return chunks
