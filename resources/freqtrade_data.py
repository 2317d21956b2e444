"""Reading candles from a Freqtrade data directory (feather, parquet, json, json.gz).

File names and column layouts are Freqtrade's own (its data handlers decide them); the files are
read strictly here, because Freqtrade's handlers log a broken file and return no data, which would
import a malformed file as "no candles" without anyone noticing.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

FORMATS = ("feather", "parquet", "json", "jsongz")


class DataFileError(ValueError):
    """A data file exists but cannot be read as candles; the message names the file."""


def find_candle_file(datadir: Path, pair: str, timeframe: str, candle_type: str) -> Path | None:
    """The file Freqtrade would use for this series, in the first format that has one."""
    from freqtrade.data.history.datahandlers.idatahandler import get_datahandlerclass
    from freqtrade.enums import CandleType

    for fmt in FORMATS:
        path = get_datahandlerclass(fmt)._pair_data_filename(datadir, pair, timeframe, CandleType(candle_type))
        if path.exists():
            return path
    return None


def read_candle_file(path: Path, pair: str, candle_type: str) -> pd.DataFrame:
    """Candles from one file, indexed by UTC open time, in Freqtrade's column layout for the type."""
    from freqtrade.data.history.datahandlers.idatahandler import IDataHandler
    from freqtrade.enums import CandleType

    try:
        if path.suffix == ".feather":
            raw = pd.read_feather(path)
        elif path.suffix == ".parquet":
            raw = pd.read_parquet(path)
        else:
            raw = pd.read_json(path, orient="values", compression="gzip" if path.suffix == ".gz" else None)
        frame = IDataHandler._normalize_columns(raw, pair, CandleType(candle_type))
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
