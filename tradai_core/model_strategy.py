"""The base of model strategies: a Freqtrade strategy that trades on a registered scikit-learn model.

A subclass declares, as pure functions of the candles, what the model sees and what it learns:

- ``features(candles) -> DataFrame``: numeric columns, same index as the candles;
- ``label(candles) -> Series``: 1/0 per candle (NaN where the future is not known yet);
- ``estimator(seed)``: an unfitted scikit-learn classifier;

plus a literal ``model_settings`` dict (see ``ModelSettings``) and its own entry and exit rules on the
``prediction`` column. Training (``tradai_assets.model_training``) and trading call the same
``compute_features``, so the model sees in a backtest or a bot exactly what it was trained on.

The model is loaded once, in ``bot_start``, from ``config["tradai_model"] = {"name", "version",
"tracking_uri"}`` (set by backtests and deployments); without it, from the environment:
``MLFLOW_TRACKING_URI`` and the alias ``champion``, or the version pinned by ``TRADAI_MODEL_VERSION``.
The registered model's name is the strategy class name.

This module runs under plain Freqtrade: it imports Freqtrade, pandas, numpy and (when loading) MLflow,
never Dagster.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from abc import abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from freqtrade.strategy import IStrategy

from tradai_core.model_settings import ModelSettings, ModelSettingsError

__all__ = [
    "CANDLE_COLUMNS",
    "PREDICTION",
    "FeatureError",
    "ModelSettings",
    "ModelSettingsError",
    "ModelStrategy",
    "ModelUnavailableError",
    "compute_features",
    "load_model",
    "load_strategy_class",
    "predict_positive",
]

PREDICTION = "prediction"
CANDLE_COLUMNS = ("date", "open", "high", "low", "close", "volume")
CHAMPION = "champion"


class ModelUnavailableError(RuntimeError):
    """No model version could be resolved or loaded; the message says where it looked."""


class FeatureError(ValueError):
    """A strategy's ``features`` returned something other than numeric columns aligned with the candles."""


def compute_features(strategy: type, candles: pd.DataFrame) -> pd.DataFrame:
    """The strategy's features of ``candles`` (Freqtrade's layout: a ``date`` column and OHLCV), as
    float64 columns on the candles' index. Training and trading both call this."""
    name = getattr(strategy, "__name__", str(strategy))
    features = strategy.features(candles)
    if not isinstance(features, pd.DataFrame):
        raise FeatureError(f"{name}.features must return a DataFrame, got {type(features).__name__}")
    if not features.index.equals(candles.index):
        raise FeatureError(f"{name}.features must return a frame on the candles' index ({len(candles)} rows), "
                           f"got {len(features)} rows on another index")
    if features.columns.empty:
        raise FeatureError(f"{name}.features returned no columns")
    clashes = [c for c in features.columns if c in CANDLE_COLUMNS or c == PREDICTION or not isinstance(c, str)]
    if clashes:
        raise FeatureError(f"{name}.features: column name(s) {clashes} are taken (candle columns, {PREDICTION!r}) "
                           "or not strings")
    if features.columns.duplicated().any():
        raise FeatureError(f"{name}.features: duplicate column(s) {sorted(set(features.columns[features.columns.duplicated()]))}")
    non_numeric = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c].dtype)]
    if non_numeric:
        raise FeatureError(f"{name}.features: column(s) {non_numeric} are not numeric")
    return features.astype("float64")


def predict_positive(model: Any, features: pd.DataFrame) -> np.ndarray:
    """Probability of the positive class (label 1) per row; NaN where any feature is NaN or infinite."""
    columns = list(getattr(model, "feature_names_in_", features.columns))
    missing = [c for c in columns if c not in features.columns]
    if missing:
        raise FeatureError(f"the model expects feature(s) {missing} that the frame lacks")
    values = features[columns].to_numpy(dtype="float64")
    finite = np.isfinite(values).all(axis=1)
    out = np.full(len(values), np.nan)
    if finite.any():
        classes = list(model.classes_)
        if 1 not in classes:
            raise FeatureError(f"the model knows no positive class (classes {classes})")
        rows = pd.DataFrame(values[finite], columns=columns)
        out[finite] = model.predict_proba(rows)[:, classes.index(1)]
    return out


def load_model(name: str, config: dict[str, Any] | None = None) -> tuple[Any, int, str]:
    """The fitted estimator of model ``name``: (model, version, tracking URI).

    From ``config["tradai_model"]`` when given; otherwise from ``MLFLOW_TRACKING_URI`` and
    ``TRADAI_MODEL_VERSION`` (a version) or the ``champion`` alias."""
    import mlflow.sklearn
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    pinned = (config or {}).get("tradai_model")
    if pinned:
        if pinned.get("name", name) != name:
            raise ModelUnavailableError(f"{name}: config tradai_model names another model, {pinned.get('name')!r}")
        uri = pinned.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")
        version: int | str | None = pinned.get("version")
        source = "config tradai_model"
    else:
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        version = os.environ.get("TRADAI_MODEL_VERSION") or None
        source = "TRADAI_MODEL_VERSION" if version else f"alias {CHAMPION}"
    if not uri:
        raise ModelUnavailableError(
            f"{name}: no MLflow tracking URI to load the model from (set config tradai_model.tracking_uri "
            "or MLFLOW_TRACKING_URI)"
        )
    client = MlflowClient(tracking_uri=uri, registry_uri=(pinned or {}).get("registry_uri") or uri)
    try:
        if version is None:
            found = client.get_model_version_by_alias(name, CHAMPION)
        else:
            found = client.get_model_version(name, str(int(version)))
    except MlflowException as exc:
        wanted = f"version {version}" if version is not None else f"alias {CHAMPION!r}"
        raise ModelUnavailableError(
            f"{name}: no model {wanted} in the registry at {uri} ({source}): {exc.message}. "
            "Train it (materialise strategies/<Name>/model), or pin an existing version."
        ) from exc
    with tempfile.TemporaryDirectory(prefix=f"model-{name}-") as directory:
        try:
            local = client.download_artifacts(found.run_id, "model", directory)
            model = mlflow.sklearn.load_model(local)
        except (MlflowException, OSError) as exc:
            raise ModelUnavailableError(
                f"{name}: version {found.version} is registered but its model cannot be loaded from run "
                f"{found.run_id} at {uri}: {exc}"
            ) from exc
    return model, int(found.version), uri


def load_strategy_class(file: Path, name: str) -> type[ModelStrategy]:
    """The model strategy class ``name`` from its file."""
    file = Path(file)
    spec = importlib.util.spec_from_file_location(f"tradai_model_strategy_{name}", file)
    if spec is None or spec.loader is None:
        raise ImportError(f"{file}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # user code: report against its file
        sys.modules.pop(spec.name, None)
        raise ImportError(f"{file}: cannot import ({type(exc).__name__}: {exc})") from exc
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, ModelStrategy)):
        raise ImportError(f"{file}: defines no model strategy class {name} (a subclass of ModelStrategy)")
    return cls


class ModelStrategy(IStrategy):
    """Freqtrade strategy whose ``populate_indicators`` adds the features and the model's ``prediction``
    (probability of label 1). Subclasses define ``features``, ``label``, ``estimator``,
    ``model_settings`` and their entry and exit rules."""

    INTERFACE_VERSION = 3
    model_settings: dict[str, Any] = {}

    @staticmethod
    @abstractmethod
    def features(candles: pd.DataFrame) -> pd.DataFrame:
        """Numeric feature columns computed from the candles only, on the candles' index."""

    @staticmethod
    @abstractmethod
    def label(candles: pd.DataFrame) -> pd.Series:
        """1 or 0 per candle (e.g. the sign of the forward return); NaN where the future is unknown."""

    @staticmethod
    @abstractmethod
    def estimator(seed: int) -> Any:
        """An unfitted scikit-learn classifier, deterministic for ``seed`` (and single-threaded)."""

    @classmethod
    def settings(cls) -> ModelSettings:
        return ModelSettings.from_spec(cls.model_settings, f"{cls.__name__}.model_settings")

    def bot_start(self, **kwargs) -> None:
        self._load()

    def _load(self) -> Any:
        model = getattr(self, "_tradai_model", None)
        if model is None:
            model, version, uri = load_model(type(self).__name__, self.config)
            self._tradai_model, self.model_version, self.model_tracking_uri = model, version, uri
        return model

    def populate_indicators(self, dataframe: pd.DataFrame, metadata: dict) -> pd.DataFrame:
        features = compute_features(type(self), dataframe)
        for column in features.columns:
            dataframe[column] = features[column]
        dataframe[PREDICTION] = predict_positive(self._load(), features)
        return dataframe
