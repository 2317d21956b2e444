"""Candle hygiene and quality measurements: pure pandas, no I/O.

Stored candles are a ``DataFrame`` indexed by a UTC ``DatetimeIndex`` named ``date`` (the candle's
open time) with float64 columns. Which columns a candle type has is Freqtrade's decision
(``freqtrade.candle_columns``): OHLCV for spot, futures and mark candles, a single ``funding_rate``
column for funding rates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from freqtrade.candle_columns import candle_type_is_ohlcv, get_candle_columns

PRICE_COLUMNS = ["open", "high", "low", "close"]
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MONDAY_AFTER_EPOCH_NS = 4 * 86_400 * 1_000_000_000
_TIMEFRAME = re.compile(r"^([1-9][0-9]*)([smhdwM])$")


def timeframe_delta(timeframe: str) -> pd.Timedelta:
    """The length of one candle ('5m', '1h', '1d', '1w'); refuses month candles, whose length varies.

    Parsed here rather than with ccxt or freqtrade so that loading the code location stays fast.
    """
    match = _TIMEFRAME.match(timeframe)
    if not match:
        raise ValueError(f"timeframe {timeframe!r} is not of the form <count><s|m|h|d|w>, e.g. '5m'")
    count, unit = match.groups()
    if unit == "M":
        raise ValueError(f"timeframe {timeframe!r}: month candles have no fixed length and are not stored")
    return pd.Timedelta(seconds=int(count) * _UNIT_SECONDS[unit])


def value_columns(candle_type: str) -> list[str]:
    return get_candle_columns(candle_type)[1:]


def empty_candles(candle_type: str) -> pd.DataFrame:
    index = pd.DatetimeIndex([], tz="UTC", name="date")
    return pd.DataFrame({c: pd.Series([], dtype="float64") for c in value_columns(candle_type)}, index=index)


def frame_from_rows(rows: "list[list] | np.ndarray", candle_type: str) -> pd.DataFrame:
    """ccxt-style rows ``[ms, v1, v2, ...]`` (lists or a float array) to a candle frame, not yet cleaned."""
    columns = get_candle_columns(candle_type)
    if len(rows) == 0:
        return empty_candles(candle_type)
    # NaN for None (exchanges send null volumes); one numpy conversion is 4x faster than pandas' rows path.
    values = np.asarray(rows, dtype="float64")[:, : len(columns)]
    index = pd.DatetimeIndex(pd.to_datetime(values[:, 0].astype("int64"), unit="ms", utc=True), name="date")
    return pd.DataFrame(values[:, 1:], index=index, columns=columns[1:])


@dataclass
class CleanReport:
    """What cleaning removed, so that it can be shown rather than silently dropped."""

    duplicates: int = 0
    reordered: bool = False
    invalid: list[tuple[pd.Timestamp, str]] = field(default_factory=list)

    def as_metadata(self) -> dict:
        return {
            "duplicates_dropped": self.duplicates,
            "reordered": self.reordered,
            "invalid_dropped": len(self.invalid),
            "invalid_examples": [f"{ts.isoformat()}: {why}" for ts, why in self.invalid[:10]],
        }


def invalid_reasons(frame: pd.DataFrame, candle_type: str) -> pd.Series:
    """Per row, why the candle cannot be stored as good ('' when it can); the first reason wins."""
    rules: list[tuple[np.ndarray, str]] = []
    if not candle_type_is_ohlcv(candle_type):
        rules.append((~np.isfinite(frame[value_columns(candle_type)].to_numpy()).all(axis=1), "non-finite value"))
    else:
        o, h, low, c, v = (frame[col].to_numpy() for col in ["open", "high", "low", "close", "volume"])
        prices = np.column_stack([o, h, low, c])
        rules += [
            (~np.isfinite(prices).all(axis=1), "NaN or infinite price"),
            ((prices <= 0).any(axis=1), "zero or negative price"),
            (low > np.minimum(o, c), "low above open or close"),
            (h < np.maximum(o, c), "high below open or close"),
        ]
        if candle_type != "mark":  # mark-price candles carry no volume (NaN) on Binance
            rules.append((~np.isfinite(v) | (v < 0), "missing or negative volume"))
    reasons = np.full(len(frame), "", dtype=object)
    bad = np.logical_or.reduce([mask for mask, _ in rules]) if rules else np.zeros(len(frame), bool)
    if bad.any():  # vectorised masks for all rows; names only for the few bad ones
        reasons[bad] = np.select([mask[bad] for mask, _ in rules], [why for _, why in rules], "")
    return pd.Series(reasons, index=frame.index, dtype="object")


def clean_candles(frame: pd.DataFrame, timeframe: str, candle_type: str) -> tuple[pd.DataFrame, CleanReport]:
    """Sort, deduplicate (the last answer for a timestamp wins), align to the timeframe grid and drop
    candles that cannot be true. Returns the clean float64 frame and what was removed."""
    report = CleanReport()
    frame = frame.loc[:, value_columns(candle_type)].astype("float64")
    index = pd.DatetimeIndex(frame.index)
    index = (index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")).as_unit("ns")
    # Exchanges stamp some series a few milliseconds late (funding rates): floor to the second.
    nanos = index.asi8
    nanos = nanos - nanos % 1_000_000_000
    frame.index = pd.DatetimeIndex(nanos, tz="UTC", name="date")
    report.reordered = not frame.index.is_monotonic_increasing
    if report.reordered:
        frame = frame.sort_index(kind="stable")
    duplicated = frame.index.duplicated(keep="last")
    report.duplicates = int(duplicated.sum())
    if report.duplicates:
        frame = frame[~duplicated]
    if candle_type_is_ohlcv(candle_type):
        # Candles open on multiples of their length since the epoch, weeks on Mondays (1970-01-05).
        origin = MONDAY_AFTER_EPOCH_NS if timeframe.endswith("w") else 0
        off_grid = (frame.index.asi8 - origin) % timeframe_delta(timeframe).value != 0
        if off_grid.any():
            report.invalid += [(ts, f"not aligned to {timeframe}") for ts in frame.index[off_grid]]
            frame = frame[~off_grid]
    reasons = invalid_reasons(frame, candle_type)
    bad = (reasons != "").to_numpy()
    if bad.any():
        report.invalid.extend(zip(frame.index[bad], reasons[bad]))
        frame = frame[~bad]
    return frame, report


def merge_candles(stored: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Union of stored and new candles; where both have a timestamp, the new one wins."""
    if stored.empty:
        return new
    if new.empty:
        return stored
    merged = pd.concat([stored, new])
    merged = merged[~merged.index.duplicated(keep="last")]
    return merged.sort_index()


@dataclass
class Gap:
    after: pd.Timestamp
    before: pd.Timestamp
    missing: int


def find_gaps(index: pd.DatetimeIndex, timeframe: str) -> list[Gap]:
    """Runs of missing candles between consecutive stored candles, on the timeframe grid."""
    if len(index) < 2:
        return []
    step = timeframe_delta(timeframe)
    deltas = index[1:] - index[:-1]
    at = np.flatnonzero(deltas > step)
    return [Gap(index[i], index[i + 1], int(deltas[i] / step) - 1) for i in at]


# ArcticDB names: one library per exchange and market type, one symbol per pair, timeframe and candle type.


def candle_library_name(exchange: str, market_type: str) -> str:
    return f"ohlcv.{exchange}.{market_type}"


def candle_symbol(pair: str, timeframe: str, candle_type: str) -> str:
    return f"{pair}|{timeframe}|{candle_type}"


def parse_candle_symbol(symbol: str) -> tuple[str, str, str]:
    pair, timeframe, candle_type = symbol.split("|")
    return pair, timeframe, candle_type
