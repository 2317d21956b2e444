"""Model strategies written by tests, synthetic candles in ArcticDB, and model versions registered the way
training registers them (an sklearn model under ``model`` in its run, reference bins with the version)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from resources.arctic import ArcticStore
from resources.model_registry import ModelRegistry
from tradai_core.candles import candle_symbol
from tradai_core.drift import reference_bins
from tradai_core.model_data import feature_window, predict
from tradai_core.model_strategy import PREDICTION, load_strategy_class
from tradai_core.strategy_discovery import StrategySpec, discover_strategies

STEP = pd.Timedelta(minutes=5)
SYNTHETIC_PAIRS = ["AAA/BTC", "BBB/BTC"]

TOY_STRATEGY = '''
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from tradai_core.model_strategy import ModelStrategy


class {name}(ModelStrategy):
    """A toy model strategy: a logistic regression on the last return and the candle range."""

    timeframe = "5m"
    {pairs}
    minimal_roi = {{"0": 0.01}}
    stoploss = -0.03
    startup_candle_count = 12
    model_settings = {settings!r}

    @staticmethod
    def features(candles):
        close = candles["close"]
        out = pd.DataFrame(index=candles.index)
        out["ret_1"] = np.log(close).diff()
        out["ret_6"] = np.log(close).diff(6)
        out["range"] = (candles["high"] - candles["low"]) / close
        return out

    @staticmethod
    def label(candles):
        ahead = candles["close"].shift(-6) / candles["close"] - 1
        return (ahead > 0).astype("float64").where(ahead.notna())

    @staticmethod
    def estimator(seed):
        return LogisticRegression(random_state=seed)

    def populate_entry_trend(self, dataframe, metadata):
        dataframe.loc[dataframe["prediction"] > 0.5, ["enter_long", "enter_tag"]] = (1, "model")
        return dataframe

    def populate_exit_trend(self, dataframe, metadata):
        dataframe.loc[dataframe["prediction"] < 0.5, ["exit_long", "exit_tag"]] = (1, "model")
        return dataframe
'''


def write_toy_strategy(directory: Path, name: str = "DriftToy", pairs: list[str] | None = SYNTHETIC_PAIRS,
                       settings: dict | None = None) -> StrategySpec:
    directory.mkdir(parents=True, exist_ok=True)
    settings = settings or {"drift_window_days": 2, "holdout_days": 2, "min_rows": 100, "label_horizon": 6, "folds": 2}
    (directory / f"{name}.py").write_text(TOY_STRATEGY.format(
        name=name, pairs=f"pairs = {pairs!r}" if pairs else "", settings=settings,
    ))
    (spec,) = [s for s in discover_strategies(directory) if s.name == name]
    assert spec.problem is None and spec.is_model, spec.problem
    return spec


def synthetic_candles(start: pd.Timestamp, periods: int, volatility: float, seed: int, price: float = 1.0,
                      trend_per_candle: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    index = pd.date_range(start, periods=periods, freq=STEP, tz="UTC", name="date")
    close = price * np.exp(np.cumsum(rng.normal(trend_per_candle, volatility, periods)))
    open_ = np.concatenate([[price], close[:-1]])
    wick = np.abs(rng.normal(0, volatility / 2, (2, periods)))
    return pd.DataFrame({
        "open": open_, "high": np.maximum(open_, close) * (1 + wick[0]), "low": np.minimum(open_, close) * (1 - wick[1]),
        "close": close, "volume": rng.uniform(10, 20, periods),
    }, index=index)


def store_candles(arctic: ArcticStore, pair: str, candles: pd.DataFrame) -> int:
    symbol = candle_symbol(pair, "5m", "spot")
    meta = {"exchange": "binance", "pair": pair, "timeframe": "5m", "candle_type": "spot"}
    return arctic.replace_window("binance", "spot", symbol, candles, candles.index[0], candles.index[-1] + STEP, meta)


START = pd.Timestamp("2024-03-01", tz="UTC")
TRAIN_START = START + pd.Timedelta(hours=1)  # after the warm-up candles


def store_stationary_market(arctic: ArcticStore, days: int = 10, pairs: list[str] = SYNTHETIC_PAIRS) -> pd.Timestamp:
    """``days`` of candles at one volatility for every pair; returns the end of the stored span."""
    periods = int(pd.Timedelta(days=days) / STEP)
    for i, pair in enumerate(pairs):
        store_candles(arctic, pair, synthetic_candles(START, periods, 2e-3, seed=10 + i))
    return START + periods * STEP


def append_shifted_market(arctic: ArcticStore, end: pd.Timestamp, days: int = 2, factor: float = 4.0,
                          pairs: list[str] = SYNTHETIC_PAIRS, trend_per_candle: float = 1e-3) -> pd.Timestamp:
    """``days`` more candles after ``end``, ``factor`` times as volatile and trending."""
    periods = int(pd.Timedelta(days=days) / STEP)
    for i, pair in enumerate(pairs):
        last = arctic.read_candles("binance", "spot", candle_symbol(pair, "5m", "spot"), start=end - STEP)
        store_candles(arctic, pair, synthetic_candles(end, periods, 2e-3 * factor, seed=50 + i,
                                                      price=float(last["close"].iloc[-1]), trend_per_candle=trend_per_candle))
    return end + periods * STEP


def register_version(registry: ModelRegistry, spec: StrategySpec, arctic: ArcticStore, start: pd.Timestamp,
                     end: pd.Timestamp, pairs: list[str] = SYNTHETIC_PAIRS, shuffle_labels: int | None = None) -> int:
    """Fit the strategy's estimator on [start, end) of the stored candles and register it with its
    reference bins; ``shuffle_labels`` (a seed) trains on permuted labels (a model without skill)."""
    cls = load_strategy_class(spec.file, spec.name)
    features = feature_window(arctic, cls, "binance", "spot", pairs, "5m", start=start, end=end)
    labels = []
    for pair in pairs:
        candles = arctic.read_candles("binance", "spot", candle_symbol(pair, "5m", "spot"), start, end)
        labels.append(cls.label(candles.reset_index()).set_axis(candles.index))
    label = pd.concat(labels, keys=pairs, names=["pair", "date"])
    frame = features.copy()
    y = _align_labels(frame, label, pairs)
    keep = y.notna().to_numpy()
    x, y = frame[keep], y[keep].astype("int64")
    if shuffle_labels is not None:
        y = pd.Series(np.random.default_rng(shuffle_labels).permutation(y.to_numpy()), index=y.index)
    model = cls.estimator(0).fit(x, y)
    version = log_version(registry, spec.name, model)
    registry.log_reference_bins(spec.name, version, reference_bins(x.assign(**{PREDICTION: predict(model, x)})).to_dict())
    return version


def log_version(registry: ModelRegistry, name: str, model) -> int:
    """A run holding the sklearn model under ``model`` and a registered version from it, as training does."""
    import tempfile

    import mlflow.sklearn
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    registry._client()  # builds a SQLite store's tables
    client = MlflowClient(tracking_uri=registry.tracking_uri, registry_uri=registry.registry_uri or registry.tracking_uri)
    experiment = client.get_experiment_by_name(f"models/{name}")
    # Artifacts beside the store (a SQLite store's default is ./mlruns in the working directory).
    artifacts = Path(registry.tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts" / name
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(
        f"models/{name}", artifact_location=artifacts.as_uri() if registry.tracking_uri.startswith("sqlite:///") else None
    )
    run = client.create_run(experiment_id, run_name=f"test {name}")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "model"
        mlflow.sklearn.save_model(model, str(path), pip_requirements=["scikit-learn"])
        client.log_artifacts(run.info.run_id, str(path), "model")
    client.set_terminated(run.info.run_id)
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":  # registered by an earlier version is fine
            raise
    found = client.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    return int(found.version)


def _align_labels(features: pd.DataFrame, label: pd.Series, pairs: list[str]) -> pd.Series:
    """Labels in the row order of the stacked features (by pair and time, however the frame is indexed)."""
    if isinstance(features.index, pd.MultiIndex):
        return label.reindex(features.index)
    if "pair" in features.columns:
        keys = pd.MultiIndex.from_arrays([features["pair"], features.index])
        return pd.Series(label.reindex(keys).to_numpy(), index=features.index)
    raise AssertionError(f"cannot align labels with features indexed by {features.index.names}")


def make_champion(registry: ModelRegistry, name: str, version: int) -> None:
    registry.set_challenger(name, version, trigger="test")
    registry.record_decision(name, {"outcome": "promote", "p_value": 0.001}, trigger="test")
