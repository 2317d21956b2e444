"""Reading candles from a Freqtrade data directory (feather, parquet, json, json.gz).

File names and column layouts follow Freqtrade's data handlers (a test holds them to Freqtrade's own
functions). They are written out here rather than called, for two reasons: importing Freqtrade's
data package costs about 7 s, paid by every import run while it holds its library's write slot;
and its handlers log a broken file and return no data, which would import a malformed file as
"no candles" without anyone noticing. Here a broken file is an error that names it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from freqtrade.candle_columns import (
    FUNDING_RATE_LEGACY_RENAME,
    OHLCV_COLUMNS,
    get_candle_columns,
)

EXTENSIONS = ("feather", "parquet", "json", "json.gz")


class DataFileError(ValueError):
    """A data file exists but cannot be read as candles; the message names the file."""


def pair_to_filename(pair: str) -> str:
    for ch in ["/", " ", ".", "@", "$", "+", ":"]:
        pair = pair.replace(ch, "_")
    return pair


def candle_file_stem(datadir: Path, pair: str, timeframe: str, candle_type: str) -> Path:
    """``ETH_BTC-5m`` for spot, ``futures/XRP_USDT_USDT-1h-mark`` for the others (no extension)."""
    timeframe = timeframe.replace("M", "Mo")  # Freqtrade's guard against case-insensitive file systems
    if candle_type == "spot":
        return datadir / f"{pair_to_filename(pair)}-{timeframe}"
    return datadir / "futures" / f"{pair_to_filename(pair)}-{timeframe}-{candle_type}"


def find_candle_file(datadir: Path, pair: str, timeframe: str, candle_type: str) -> Path | None:
    """The file Freqtrade would use for this series, in the first format that has one."""
    stem = candle_file_stem(datadir, pair, timeframe, candle_type)
    for extension in EXTENSIONS:
        path = stem.with_name(f"{stem.name}.{extension}")
        if path.exists():
            return path
    return None


def _normalize_columns(raw: pd.DataFrame, candle_type: str) -> pd.DataFrame:
    columns = get_candle_columns(candle_type)
    if set(columns).issubset(raw.columns):
        return raw.loc[:, columns]
    if candle_type == "funding_rate" and set(OHLCV_COLUMNS).issubset(raw.columns):
        # Freqtrade's older layout: funding rates stored as candles with the rate in "open".
        return raw.rename(columns=FUNDING_RATE_LEGACY_RENAME).loc[:, columns]
    if list(raw.columns) == list(range(raw.shape[1])):  # json files carry no column names
        if raw.shape[1] == len(columns):
            return raw.set_axis(columns, axis=1)
        if candle_type == "funding_rate" and raw.shape[1] == len(OHLCV_COLUMNS):
            return raw.set_axis(OHLCV_COLUMNS, axis=1).rename(columns=FUNDING_RATE_LEGACY_RENAME).loc[:, columns]
    raise ValueError(f"columns {list(raw.columns)} are neither {columns} nor a layout Freqtrade wrote")


def read_candle_file(path: Path, pair: str, candle_type: str) -> pd.DataFrame:
    """Candles from one file, indexed by UTC open time, in Freqtrade's column layout for the type."""
    try:
        if path.suffix == ".feather":
            raw = pd.read_feather(path)
        elif path.suffix == ".parquet":
            raw = pd.read_parquet(path)
        else:
            raw = pd.read_json(path, orient="values", compression="gzip" if path.suffix == ".gz" else None)
        frame = _normalize_columns(raw, candle_type)
        dates = frame["date"]
        if pd.api.types.is_numeric_dtype(dates):
            dates = pd.to_datetime(dates, unit="ms", utc=True)
        elif not isinstance(dates.dtype, pd.DatetimeTZDtype):
            raise ValueError(f"column 'date' holds {dates.dtype}, not UTC timestamps")
        values = frame.drop(columns="date").astype("float64")
    except Exception as exc:  # any parser's failure is reported against the file, then re-raised
        raise DataFileError(f"{path}: cannot read candles for {pair} ({type(exc).__name__}: {exc})") from exc
    values.index = pd.DatetimeIndex(dates, name="date").tz_convert("UTC")
    return values
