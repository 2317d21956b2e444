"""A model strategy's data: its market (exchange, pairs, timeframe), its resolved config, and its
features and labels computed from stored candles exactly as Freqtrade hands candles to the strategy.

Shared by the training asset, the champion/challenger evaluation and the drift sensor. Candles are
read through the ``arctic`` store object the caller passes in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tradai_core.candles import candle_library_name, candle_symbol, timeframe_delta
from tradai_core.model_settings import ModelSettings
from tradai_core.strategy_config import (
    BASE_CONFIG_PATH,
    ConfigError,
    build_strategy_config,
    load_base_config,
    market_type,
)
from tradai_core.strategy_discovery import StrategySpec


def model_specs(specs: list[StrategySpec]) -> list[StrategySpec]:
    return [s for s in specs if s.is_model]


@dataclass(frozen=True)
class ModelMarket:
    exchange: str
    market_type: str
    pairs: list[str]
    timeframe: str

    @property
    def library(self) -> str:
        return candle_library_name(self.exchange, self.market_type)

    def symbols(self) -> list[str]:
        return [candle_symbol(pair, self.timeframe, self.market_type) for pair in self.pairs]


def market_of(config: dict[str, Any]) -> ModelMarket:
    return ModelMarket(
        config["exchange"]["name"], market_type(config), list(config["exchange"]["pair_whitelist"]), config["timeframe"]
    )


def model_settings(spec: StrategySpec) -> ModelSettings:
    """The strategy's ``model_settings`` with their defaults, validated; ``ValueError`` names the file."""
    try:
        return ModelSettings.from_spec(spec.model_settings or {}, f"{spec.name}.model_settings")
    except ValueError as exc:
        raise type(exc)(f"{spec.file}: {exc}") from exc


def strategy_config(spec: StrategySpec, base_path: Path = BASE_CONFIG_PATH) -> dict[str, Any]:
    """The strategy's validated Freqtrade config (base config and the strategy's own overrides);
    ``ConfigError`` names the file and the strategy."""
    if spec.problem:
        raise ConfigError(spec.problem)
    try:
        return build_strategy_config(load_base_config(base_path), spec, {})
    except ConfigError as exc:
        raise ConfigError(f"{spec.file}: {spec.name}: {exc}") from exc


def stored_end(arctic: Any, market: ModelMarket) -> pd.Timestamp:
    """The close time of the newest stored candle over the market's pairs."""
    lasts = [arctic.last_candle_time(market.exchange, market.market_type, s) for s in market.symbols()]
    known = [t for t in lasts if t is not None]
    if not known:
        raise ModelInputError(
            f"no stored {market.timeframe} candles for {', '.join(market.pairs)} in ohlcv/"
            f"{market.exchange}/{market.market_type}: materialise the candles first"
        )
    return max(known) + timeframe_delta(market.timeframe)


PREDICTION = "prediction"


LABEL = "label"


class ModelInputError(ValueError):
    """Candles or features a model cannot be trained or checked on; the message names the strategy,
    feature, pair and counts."""


@dataclass
class Window:
    """Features (and labels) of every pair, stacked on a (pair, date) index."""

    features: pd.DataFrame
    labels: pd.Series | None
    data_versions: dict[str, int]


def freqtrade_frame(candles: pd.DataFrame, pair: str, timeframe: str, mtype: str) -> pd.DataFrame:
    """Stored candles as Freqtrade hands them to a strategy, in backtests and bots alike: a ``date``
    column, and missing candles filled in (previous close, zero volume) by Freqtrade's own function."""
    from freqtrade.data.converter import ohlcv_fill_up_missing_data
    from freqtrade.enums import CandleType

    frame = candles.reset_index()
    frame = frame.rename(columns={frame.columns[0]: "date"})[["date", "open", "high", "low", "close", "volume"]]
    return ohlcv_fill_up_missing_data(frame, timeframe, pair, CandleType.from_string(mtype))


def pair_frame(strategy_cls: type, name: str, pair: str, frame: pd.DataFrame, with_label: bool):
    """Features (and label) of one pair's candles in Freqtrade's layout (``freqtrade_frame``)."""
    from tradai_core.model_strategy import FeatureError, compute_features

    try:
        features = compute_features(strategy_cls, frame)
    except FeatureError as exc:
        raise ModelInputError(f"{name} on {pair}: {exc}") from exc
    features.index = pd.DatetimeIndex(frame["date"], name="date")
    label = None
    if with_label:
        label = strategy_cls.label(frame)
        if not isinstance(label, pd.Series) or not label.index.equals(frame.index):
            raise ModelInputError(f"{name}.label must return a Series on the candles' index ({pair})")
        label = pd.Series(label.to_numpy(dtype="float64"), index=features.index, name=LABEL)
        known = label.dropna()
        odd = known[~known.isin([0.0, 1.0])]
        if len(odd):
            raise ModelInputError(
                f"{name}.label must be 1, 0 or NaN; {pair} has {len(odd)} other value(s), e.g. {odd.iloc[0]!r}"
            )
    return features, label


def read_window(
    arctic: Any,
    strategy_cls: type,
    exchange: str,
    mtype: str,
    pairs: list[str],
    timeframe: str,
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
    data_versions: dict[str, int] | None,
    with_label: bool,
) -> Window:
    name = strategy_cls.__name__
    step = timeframe_delta(timeframe)
    warmup = int(getattr(strategy_cls, "startup_candle_count", 0) or 0)
    features, labels, versions = [], [], {}
    non_finite: dict[tuple[str, str], int] = {}
    for pair in pairs:
        symbol = candle_symbol(pair, timeframe, mtype)
        version = arctic.candle_version(exchange, mtype, symbol) if data_versions is None else data_versions.get(symbol)
        candles = None
        if version is not None:
            first = None if start is None else start - warmup * step
            candles = arctic.read_candles(exchange, mtype, symbol, start=first, end=end, as_of=version)
        if candles is None or candles.empty:
            raise ModelInputError(f"{name}: no stored {timeframe} candles for {pair} in ohlcv/{exchange}/{mtype}"
                                  + ("" if data_versions is None else f" at version {version}"))
        versions[symbol] = int(version)
        frame = freqtrade_frame(candles, pair, timeframe, mtype)
        pair_features, pair_label = pair_frame(strategy_cls, name, pair, frame, with_label)
        keep = np.ones(len(pair_features), dtype=bool)
        if start is None:
            keep[:warmup] = False
        else:
            keep &= pair_features.index >= start
        pair_features = pair_features[keep]
        for column, bad in (~np.isfinite(pair_features)).sum().items():
            if bad:
                non_finite[(column, pair)] = int(bad)
        features.append(pair_features)
        if pair_label is not None:
            labels.append(pair_label[keep])
    if non_finite:
        listed = "; ".join(f"feature {c!r} on {p}: {n} row(s)" for (c, p), n in sorted(non_finite.items()))
        raise ModelInputError(
            f"{name}: features are NaN or infinite after the warm-up of {warmup} candles "
            f"(startup_candle_count): {listed}. Fix the feature (or raise startup_candle_count if it needs a "
            "longer look-back)"
        )
    stacked = pd.concat(features, keys=pairs, names=["pair", "date"])
    stacked_labels = pd.concat(labels, keys=pairs, names=["pair", "date"]) if with_label else None
    return Window(stacked, stacked_labels, versions)


def feature_window(
    arctic: Any,
    strategy_cls: type,
    exchange: str,
    market_type: str,
    pairs: list[str],
    timeframe: str,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    data_versions: dict[str, int] | None = None,
) -> pd.DataFrame:
    """The strategy's features of every pair in [start, end), stacked on a (pair, date) index.

    Candles before ``start`` feed the warm-up (``startup_candle_count``) and are then dropped; without
    ``start`` the first ``startup_candle_count`` candles are. NaN or infinite values left after the
    warm-up raise ``ModelInputError`` naming each feature, pair and row count. ``data_versions``
    (symbol -> ArcticDB version) pins the candles; the newest are read otherwise."""
    return read_window(arctic, strategy_cls, exchange, market_type, pairs, timeframe, start, end, data_versions, False).features


def predict(model: Any, features: pd.DataFrame) -> np.ndarray:
    """Probability of the positive class (label 1) per row; NaN where a feature is NaN or infinite."""
    from tradai_core.model_strategy import predict_positive

    return predict_positive(model, features)

