"""The market-data universe: which exchanges, market types, pairs and timeframes are kept.

It is a YAML file (``tradai_assets/universe.yaml``, or the file ``TRADAI_UNIVERSE`` names), so adding a
pair is an edit and a code-location reload, not a code change. Relative paths in it are relative to
the file.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tradai_core.candles import timeframe_delta

DEFAULT_ARCHIVE_URL = "https://data.binance.vision"
# Exchanges whose public data archive the candle sync reads closed months and days from.
PUBLIC_ARCHIVES = {"binance": DEFAULT_ARCHIVE_URL}


class UniverseEntry(BaseModel):
    """Candles and market rules kept for one exchange and market type."""

    model_config = ConfigDict(extra="forbid")

    exchange: str = Field(description="ccxt exchange id, e.g. binance")
    market_type: Literal["spot", "futures"]
    pairs: list[str] = Field(min_length=1, description="ccxt symbols, e.g. ETH/BTC or XRP/USDT:USDT")
    timeframes: list[str] = Field(min_length=1, description="trading candles, e.g. [5m, 1h]")
    mark_timeframes: list[str] = Field(default_factory=list, description="futures: mark-price candles")
    funding_timeframes: list[str] = Field(
        default_factory=list, description="futures: funding-rate series, at the exchange's funding timeframe"
    )
    start: dt.date = Field(description="first day kept (first daily partition)")
    end: dt.date | None = Field(default=None, description="day after the last one kept, for a fixed history")
    import_dir: Path | None = Field(default=None, description="Freqtrade data directory the candles come from")
    markets_file: Path | None = Field(default=None, description="markets snapshot JSON used instead of the exchange")
    ccxt_config: dict[str, Any] = Field(default_factory=dict)
    archive_url: str | None = Field(
        default=None,
        description="base URL of the exchange's public data archive (Binance: https://data.binance.vision "
        "unless set); null: candles from REST only",
    )
    max_missing_candles: int = Field(default=0, ge=0, description="missing candles tolerated per series")
    max_age: str | None = Field(default=None, description="freshness: newest candle at most this old, e.g. 2h")

    @field_validator("timeframes", "mark_timeframes", "funding_timeframes", "max_age")
    @classmethod
    def _timeframes_parse(cls, value):
        for tf in [value] if isinstance(value, str) else value or []:
            timeframe_delta(tf)
        return value

    @model_validator(mode="after")
    def _futures_series(self) -> "UniverseEntry":
        if self.market_type == "spot" and (self.mark_timeframes or self.funding_timeframes):
            raise ValueError(f"{self.exchange} spot: mark and funding series exist only for futures")
        if self.market_type == "futures":
            # Freqtrade's futures backtests want both at the funding timeframe (1h on Binance).
            self.mark_timeframes = self.mark_timeframes or ["1h"]
            self.funding_timeframes = self.funding_timeframes or ["1h"]
        if "archive_url" not in self.model_fields_set:
            self.archive_url = PUBLIC_ARCHIVES.get(self.exchange)
        elif self.archive_url is not None and self.exchange not in PUBLIC_ARCHIVES:
            raise ValueError(
                f"{self.exchange}: archive_url is only read for {', '.join(PUBLIC_ARCHIVES)}; other exchanges use REST"
            )
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"{self.exchange} {self.market_type}: end {self.end} is not after start {self.start}")
        return self

    @property
    def name(self) -> str:
        return f"{self.exchange}_{self.market_type}"

    @property
    def trading_candle_type(self) -> str:
        return "spot" if self.market_type == "spot" else "futures"

    def series(self, pairs: list[str] | None = None) -> list[tuple[str, str, str]]:
        """(pair, timeframe, candle type) for every series kept, optionally for some pairs only."""
        chosen = self.pairs if pairs is None else pairs
        out = [(p, tf, self.trading_candle_type) for p in chosen for tf in self.timeframes]
        out += [(p, tf, "mark") for p in chosen for tf in self.mark_timeframes]
        out += [(p, tf, "funding_rate") for p in chosen for tf in self.funding_timeframes]
        return out


class Universe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    markets: list[UniverseEntry]

    @model_validator(mode="after")
    def _unique(self) -> "Universe":
        names = [e.name for e in self.markets]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"each exchange and market type may appear once; repeated: {', '.join(duplicated)}")
        return self


def load_universe(path: Path) -> "Universe":
    try:
        raw = yaml.safe_load(path.read_text())
        universe = Universe.model_validate(raw)
    except Exception as exc:
        raise ValueError(f"{path}: invalid universe: {exc}") from exc
    for entry in universe.markets:
        for attr in ("import_dir", "markets_file"):
            value = getattr(entry, attr)
            if value is not None and not value.is_absolute():
                setattr(entry, attr, (path.parent / value).resolve())
    return universe
