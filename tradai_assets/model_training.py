"""Training assets ``strategies/<Name>/model`` for every model strategy (see ``resources.model_strategy``).

One materialisation: the strategy's features and labels of every pair from ArcticDB (pinned candle
versions), the newest ``holdout_days`` left out for the champion/challenger backtests, walk-forward
validation on time (expanding window, ``folds`` folds, ``purge`` candles between each fold's training
and validation rows), a final fit on the whole window, one MLflow run (params, lineage, per-fold
metrics, permutation importances, the model with signature, input example and pinned requirements),
a new registered version named after the strategy with its reference bins for PSI, and the alias
``challenger`` (``champion`` when the model has none yet), recorded in the audit log.

The same seed and candle versions give the same model, metrics and predictions.
"""


import json
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from resources import aws_contract
from resources.arctic import ArcticStore, candle_library_name, candle_symbol
from resources.mlflow_tracker import MlflowTracker, initialise_sqlite_store
from resources.model_registry import CHALLENGER, CHAMPION, ModelRegistry, ModelRegistryError
from resources.model_settings import ModelSettings, ModelSettingsError
from resources.notifier import Notifier
from tradai_assets.candles import timeframe_delta
from tradai_assets.drift import reference_bins
from tradai_assets.strategy_config import BASE_CONFIG_PATH, ConfigError, build_strategy_config, load_base_config, market_type
from tradai_assets.strategies import model_key
from tradai_assets.strategy_discovery import StrategySpec, source_hash
from tradai_assets.universe import UniverseEntry

__all__ = ["ModelInputError", "build_model_assets", "feature_window", "model_key", "predict", "train_and_register",
           "train_model", "training_window", "walk_forward_folds"]

PREDICTION = "prediction"
LABEL = "label"
MODEL_ARTIFACT = "model"
PIP_PACKAGES = ("scikit-learn", "pandas", "numpy")
IMPORTANCE_ROWS = 50_000


class ModelInputError(ValueError):
    """Candles or features a model cannot be trained or checked on; the message names the strategy,
    feature, pair and counts."""


def model_experiment(name: str) -> str:
    return f"models/{name}"


# Features and labels ------------------------------------------------------------------------------


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


def _pair_frame(strategy_cls: type, name: str, pair: str, frame: pd.DataFrame, with_label: bool):
    """Features (and label) of one pair's candles in Freqtrade's layout (``freqtrade_frame``)."""
    from resources.model_strategy import FeatureError, compute_features

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


def _read_window(
    arctic: ArcticStore,
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
        pair_features, pair_label = _pair_frame(strategy_cls, name, pair, frame, with_label)
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
    arctic: ArcticStore,
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
    return _read_window(arctic, strategy_cls, exchange, market_type, pairs, timeframe, start, end, data_versions, False).features


def predict(model: Any, features: pd.DataFrame) -> np.ndarray:
    """Probability of the positive class (label 1) per row; NaN where a feature is NaN or infinite."""
    from resources.model_strategy import predict_positive

    return predict_positive(model, features)


# Windows and folds --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingWindow:
    start: pd.Timestamp | None
    """First candle trained on (None: every stored candle)."""
    end: pd.Timestamp
    """Training uses candles before ``end``; the holdout starts here (a UTC midnight)."""
    stored_end: pd.Timestamp
    """End of the stored candles."""

    @property
    def holdout_timerange(self) -> str:
        """Freqtrade's timerange of the holdout: where champion and challenger are backtested."""
        return f"{self.end:%Y%m%d}-{self.stored_end.ceil('D'):%Y%m%d}"


def training_window(
    arctic: ArcticStore, exchange: str, mtype: str, pairs: list[str], timeframe: str, settings: ModelSettings,
    data_versions: dict[str, int] | None = None,
) -> TrainingWindow:
    """The stored candles minus the newest ``holdout_days`` (the cut at a UTC midnight), and at most
    ``train_days`` before it."""
    step = timeframe_delta(timeframe)
    ends = []
    for pair in pairs:
        symbol = candle_symbol(pair, timeframe, mtype)
        version = arctic.candle_version(exchange, mtype, symbol) if data_versions is None else data_versions.get(symbol)
        frame = None if version is None else arctic.library(candle_library_name(exchange, mtype)).tail(symbol, 1, as_of=version).data
        if frame is not None and not frame.empty:
            ends.append(frame.index[-1] + step)
    if not ends:
        raise ModelInputError(f"no stored {timeframe} candles for {', '.join(pairs)} in ohlcv/{exchange}/{mtype}")
    stored_end = max(ends)
    end = (stored_end - pd.Timedelta(days=settings.holdout_days)).floor("D")
    start = None if settings.train_days is None else end - pd.Timedelta(days=settings.train_days)
    return TrainingWindow(start, end, stored_end)


@dataclass(frozen=True)
class Fold:
    number: int
    train: np.ndarray
    """Row positions trained on."""
    validation: np.ndarray
    """Row positions validated on."""
    train_last: pd.Timestamp
    validation_first: pd.Timestamp
    validation_last: pd.Timestamp


def walk_forward_folds(times: pd.DatetimeIndex, folds: int, purge: int, step: pd.Timedelta) -> list[Fold]:
    """Expanding-window folds split on time across all pairs: the distinct candle times cut into
    ``folds + 1`` consecutive blocks; fold i validates on block i and trains on every row at least
    ``purge`` candles before it (``train_last + purge * step < validation_first``)."""
    times = pd.DatetimeIndex(times)
    if times.tz is not None:
        times = times.tz_convert("UTC").tz_localize(None)
    distinct = np.unique(times.to_numpy())
    if len(distinct) < folds + 1:
        raise ModelInputError(f"{len(distinct)} candle time(s) cannot make {folds} walk-forward folds")
    values = times.to_numpy()
    out = []
    for number, block in enumerate(np.array_split(distinct, folds + 1)[1:], start=1):
        first, last = block[0], block[-1]
        train = np.flatnonzero(values < first - purge * step.to_timedelta64())
        validation = np.flatnonzero((values >= first) & (values <= last))
        if len(train) == 0:
            raise ModelInputError(
                f"walk-forward fold {number} has no training rows before {pd.Timestamp(first, tz='UTC')} "
                f"once {purge} candles are purged: too few candles for {folds} folds"
            )
        out.append(Fold(number, train, validation, pd.Timestamp(values[train].max()).tz_localize("UTC"),
                        pd.Timestamp(first).tz_localize("UTC"), pd.Timestamp(last).tz_localize("UTC")))
    return out


# Training -----------------------------------------------------------------------------------------


@dataclass
class TrainedModel:
    model: Any
    settings: ModelSettings
    seed: int
    window: TrainingWindow
    features: pd.DataFrame
    labels: pd.Series
    predictions: np.ndarray
    """The final model's probabilities on its own training rows (the reference of PSI on predictions)."""
    folds: list[Fold]
    fold_metrics: pd.DataFrame
    importances: pd.Series
    importance_scoring: str
    data_versions: dict[str, int]


def _fold_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, roc_auc_score

    both = len(np.unique(labels)) == 2
    return {
        "accuracy": float(accuracy_score(labels, probabilities > 0.5)),
        "roc_auc": float(roc_auc_score(labels, probabilities)) if both else float("nan"),
        "log_loss": float(log_loss(labels, probabilities, labels=[0, 1])),
        "brier": float(brier_score_loss(labels, probabilities, pos_label=1)) if both else float("nan"),
        "positive_rate": float(labels.mean()),
    }


def _fit(strategy_cls: type, seed: int, features: pd.DataFrame, labels: np.ndarray):
    from threadpoolctl import threadpool_limits

    estimator = strategy_cls.estimator(seed)
    with threadpool_limits(limits=1):  # one thread: identical sums, identical models
        estimator.fit(features, labels.astype("int64"))
    return estimator


def _probabilities(model: Any, features: pd.DataFrame) -> np.ndarray:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return predict(model, features)


def train_model(
    strategy_cls: type,
    arctic: ArcticStore,
    exchange: str,
    mtype: str,
    pairs: list[str],
    timeframe: str,
    settings: ModelSettings,
    seed: int | None = None,
    data_versions: dict[str, int] | None = None,
) -> TrainedModel:
    """Walk-forward validation, then the final fit on the whole training window (nothing logged)."""
    from sklearn.inspection import permutation_importance

    name = strategy_cls.__name__
    seed = settings.seed if seed is None else seed
    step = timeframe_delta(timeframe)
    if data_versions is None:
        data_versions = {
            s: v for s in (candle_symbol(p, timeframe, mtype) for p in pairs)
            if (v := arctic.candle_version(exchange, mtype, s)) is not None
        }
    window = training_window(arctic, exchange, mtype, pairs, timeframe, settings, data_versions)
    read = _read_window(arctic, strategy_cls, exchange, mtype, pairs, timeframe, window.start, window.end, data_versions, True)
    labelled = read.labels.notna().to_numpy()
    features = read.features[labelled]
    labels = read.labels[labelled]
    counts = labels.groupby(level="pair").size().reindex(pairs, fill_value=0)
    if len(features) < settings.min_rows:
        per_pair = ", ".join(f"{p} {n}" for p, n in counts.items())
        raise ModelInputError(
            f"{name}: {len(features)} labelled training row(s) before {window.end:%Y-%m-%d %H:%M} UTC "
            f"({per_pair}), fewer than min_rows = {settings.min_rows}; store more candles, shorten "
            f"holdout_days ({settings.holdout_days:g}) or lower min_rows"
        )
    classes = sorted(labels.unique())
    if classes != [0.0, 1.0]:
        raise ModelInputError(f"{name}: the training labels hold only the class(es) {classes}; nothing to learn")
    times = features.index.get_level_values("date")
    folds = walk_forward_folds(times, settings.folds, settings.purge_candles, step)
    y = labels.to_numpy()
    rows, last_model = [], None
    for fold in folds:
        model = _fit(strategy_cls, seed, features.iloc[fold.train], y[fold.train])
        probabilities = _probabilities(model, features.iloc[fold.validation])
        rows.append({
            "fold": fold.number, "train_rows": len(fold.train), "validation_rows": len(fold.validation),
            "train_last": fold.train_last, "validation_first": fold.validation_first,
            "validation_last": fold.validation_last, **_fold_metrics(y[fold.validation], probabilities),
        })
        last_model = model
    fold_metrics = pd.DataFrame(rows).set_index("fold")
    last = folds[-1]
    # Importances on (at most the newest IMPORTANCE_ROWS rows of) the last fold's validation rows.
    shown = last.validation[-IMPORTANCE_ROWS:]
    held = y[shown]
    scoring = "roc_auc" if len(np.unique(held)) == 2 else "accuracy"
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        found = permutation_importance(
            last_model, features.iloc[shown], held.astype("int64"), scoring=scoring,
            n_repeats=3, random_state=seed, n_jobs=1,
        )
    importances = pd.Series(found.importances_mean, index=features.columns, name="importance").sort_values(ascending=False)
    final = _fit(strategy_cls, seed, features, y)
    predictions = _probabilities(final, features)
    return TrainedModel(final, settings, seed, window, features, labels, predictions, folds, fold_metrics,
                        importances, scoring, read.data_versions)


# Logging and registering --------------------------------------------------------------------------


def package_versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {package: version(package) for package in PIP_PACKAGES}
    out["mlflow"] = version("mlflow")
    out["python"] = platform.python_version()
    return out


def pip_requirements() -> list[str]:
    versions = package_versions()
    return [f"{package}=={versions[package]}" for package in PIP_PACKAGES]


def skops_types(model: Any) -> list[str]:
    """The types skops does not trust by default that this model holds (e.g. the tree predictors of
    gradient boosting). The model was just fitted here from the strategy's own estimator, so its
    types are trusted; they are stored with the model and allowed, one by one, when it is loaded."""
    import skops.io

    return sorted(skops.io.get_untrusted_types(data=skops.io.dumps(model)))


def _client(registry: ModelRegistry):
    from mlflow import MlflowClient

    for uri in {registry.tracking_uri, registry.registry_uri or registry.tracking_uri}:
        if uri.startswith("sqlite:///"):
            initialise_sqlite_store(uri)
    return MlflowClient(tracking_uri=registry.tracking_uri, registry_uri=registry.registry_uri or registry.tracking_uri)


def _experiment_id(client, name: str, artifact_root: str | None) -> str:
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None if artifact_root is None else f"{artifact_root.rstrip('/')}/{name}"
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


@dataclass
class RegisteredModel:
    name: str
    version: int
    alias: str
    run_id: str
    run_url: str
    trained: TrainedModel
    params: dict[str, str]


def training_params(spec: StrategySpec, trained: TrainedModel, exchange: str, mtype: str, pairs: list[str], timeframe: str) -> dict[str, str]:
    """The lineage of a training, as MLflow params: candle versions, strategy source hash, seed,
    package versions, training window, settings."""
    window = trained.window
    return {
        "strategy": spec.name,
        "strategy_file": spec.file.name,
        "strategy_source_hash": source_hash(spec.file),
        "exchange": exchange,
        "market_type": mtype,
        "timeframe": timeframe,
        "pairs": json.dumps(pairs),
        "data_versions": json.dumps(trained.data_versions, sort_keys=True),
        "seed": str(trained.seed),
        "train_start": "" if window.start is None else window.start.isoformat(),
        "train_first_candle": trained.features.index.get_level_values("date").min().isoformat(),
        "train_end": window.end.isoformat(),
        "stored_end": window.stored_end.isoformat(),
        "holdout_timerange": window.holdout_timerange,
        "train_rows": str(len(trained.features)),
        "features": json.dumps(list(trained.features.columns)),
        "estimator": repr(trained.model),
        "importance_scoring": trained.importance_scoring,
        "package_versions": json.dumps(package_versions(), sort_keys=True),
        **trained.settings.to_params(),
    }


def log_and_register(
    spec: StrategySpec,
    trained: TrainedModel,
    registry: ModelRegistry,
    tracker: MlflowTracker | None,
    params: dict[str, str],
    trigger: str,
    tags: dict[str, str] | None = None,
) -> RegisteredModel:
    """One MLflow run with everything about the training, a new registered version with its reference
    bins, then ``challenger`` (or ``champion`` for a model's first version) pointing at it."""
    import mlflow.sklearn
    from mlflow.entities import Metric, Param
    from mlflow.exceptions import MlflowException
    from mlflow.models import infer_signature
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    name = spec.name
    client = _client(registry)
    artifact_root = tracker.artifact_root if tracker is not None and tracker.tracking_uri == registry.tracking_uri else None
    experiment = _experiment_id(client, model_experiment(name), artifact_root)
    window = trained.window
    run = client.create_run(
        experiment, run_name=f"train {name} to {window.end:%Y-%m-%d}",
        tags={**(tags or {}), "tradai.kind": "training", "tradai.trigger": trigger},
    )
    run_id = run.info.run_id
    example = trained.features.head(5).reset_index(drop=True)
    try:
        now = run.info.start_time
        metrics = [
            Metric(f"fold_{column}", float(value), now, int(fold))
            for fold, row in trained.fold_metrics.iterrows()
            for column, value in row.items()
            if not column.startswith(("train_last", "validation_first", "validation_last")) and np.isfinite(float(value))
        ]
        means = trained.fold_metrics[["accuracy", "roc_auc", "log_loss", "brier"]].mean(skipna=True)
        metrics += [Metric(f"cv_{k}", float(v), now, 0) for k, v in means.items() if np.isfinite(v)]
        metrics += [Metric(f"importance_{k}", float(v), now, 0) for k, v in trained.importances.items()]
        metrics.append(Metric("train_rows", float(len(trained.features)), now, 0))
        items = list(params.items())
        for i in range(0, len(items), 100):
            client.log_batch(run_id, params=[Param(k, v) for k, v in items[i:i + 100]])
        for i in range(0, len(metrics), 500):
            client.log_batch(run_id, metrics=metrics[i:i + 500])
        client.log_dict(run_id, {k: float(v) for k, v in trained.importances.items()}, "feature_importances.json")
        client.log_text(run_id, trained.fold_metrics.to_csv(), "folds.csv")
        client.log_artifact(run_id, str(spec.file))
        with tempfile.TemporaryDirectory(prefix=f"model-{name}-") as directory:
            path = Path(directory) / MODEL_ARTIFACT
            signature = infer_signature(example, trained.predictions[:5])
            mlflow.sklearn.save_model(
                trained.model, str(path), signature=signature, input_example=example,
                pip_requirements=pip_requirements(), serialization_format="skops",
                skops_trusted_types=skops_types(trained.model),
            )
            client.log_artifacts(run_id, str(path), MODEL_ARTIFACT)
    except Exception:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id)
    try:
        client.create_registered_model(name, description=f"Model of the strategy {name} ({spec.file.name})")
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    found = client.create_model_version(
        name, source=f"{run.info.artifact_uri}/{MODEL_ARTIFACT}", run_id=run_id,
        tags={"tradai.train_end": window.end.isoformat(), "tradai.holdout_timerange": window.holdout_timerange},
        description=f"{name} trained on candles to {window.end:%Y-%m-%d} (seed {trained.seed})",
    )
    version = int(found.version)
    reference = trained.features.reset_index(drop=True).assign(**{PREDICTION: trained.predictions})
    registry.log_reference_bins(name, version, reference_bins(reference).to_dict())
    if CHAMPION in registry.aliases(name):
        registry.set_challenger(name, version, trigger)
        alias = CHALLENGER
    else:
        registry.set_first_champion(name, version, trigger)
        alias = CHAMPION
    url = tracker.run_url(run_id) if tracker is not None and tracker.tracking_uri == registry.tracking_uri else run_id
    return RegisteredModel(name, version, alias, run_id, url, trained, params)


def _fold_table(metrics: pd.DataFrame) -> str:
    header = "| fold | train rows | validation | accuracy | ROC AUC | log loss | brier | positive rate |"
    rows = [header, "|---|---|---|---|---|---|---|---|"]
    for fold, row in metrics.iterrows():
        rows.append(
            f"| {fold} | {int(row.train_rows)} | {row.validation_first:%Y-%m-%d %H:%M} to "
            f"{row.validation_last:%Y-%m-%d %H:%M} ({int(row.validation_rows)} rows) | {row.accuracy:.4f} | "
            f"{row.roc_auc:.4f} | {row.log_loss:.4f} | {row.brier:.4f} | {row.positive_rate:.3f} |"
        )
    return "\n".join(rows)


def training_metadata(registered: RegisteredModel) -> dict[str, Any]:
    trained = registered.trained
    means = trained.fold_metrics[["accuracy", "roc_auc", "log_loss", "brier"]].mean(skipna=True)
    metadata: dict[str, Any] = {
        "model": registered.name,
        "version": dg.MetadataValue.int(registered.version),
        "alias": registered.alias,
        "folds": dg.MetadataValue.md(_fold_table(trained.fold_metrics)),
        "importances": dg.MetadataValue.json({k: round(float(v), 6) for k, v in trained.importances.items()}),
        "mlflow_run_id": registered.run_id,
        "data_versions": dg.MetadataValue.json(trained.data_versions),
        "train_rows": dg.MetadataValue.int(len(trained.features)),
        "train_end": trained.window.end.isoformat(),
        "holdout_timerange": trained.window.holdout_timerange,
        "seed": dg.MetadataValue.int(trained.seed),
    }
    if registered.run_url.startswith("http"):
        metadata["mlflow_run"] = dg.MetadataValue.url(registered.run_url)
    metadata.update({f"cv_{k}": dg.MetadataValue.float(float(v)) for k, v in means.items() if np.isfinite(v)})
    return metadata


# Assets -------------------------------------------------------------------------------------------


class ModelTrainingConfig(dg.Config):
    seed: int | None = None
    """Overrides model_settings.seed for this training (recorded with the version)."""
    trigger: str | None = None
    """What asked for the training (schedule, drift sensor, a person); the run's id when unset."""


@dataclass(frozen=True)
class ModelTarget:
    """Where a model strategy trades: the pieces of its config that training needs."""

    exchange: str
    market_type: str
    pairs: list[str]
    timeframe: str


def model_target(spec: StrategySpec, base_path: Path = BASE_CONFIG_PATH) -> ModelTarget:
    config = build_strategy_config(load_base_config(base_path), spec, {})
    return ModelTarget(config["exchange"]["name"], market_type(config), list(config["exchange"]["pair_whitelist"]),
                       config["timeframe"])


def _fail(message: str) -> dg.Failure:
    return dg.Failure(description=message)


def train_and_register(
    spec: StrategySpec,
    arctic: ArcticStore,
    registry: ModelRegistry,
    tracker: MlflowTracker | None,
    trigger: str,
    seed: int | None = None,
    base_path: Path = BASE_CONFIG_PATH,
    tags: dict[str, str] | None = None,
    log=None,
    entries: dict[tuple[str, str], UniverseEntry] | None = None,
) -> RegisteredModel:
    """Train a model strategy on the stored candles and register the new version; dg.Failure on bad input."""
    from resources.model_strategy import load_strategy_class

    if spec.problem:
        raise _fail(spec.problem)
    try:
        settings = ModelSettings.from_spec(spec.model_settings, f"{spec.file}: {spec.name}.model_settings")
        target = model_target(spec, base_path)
    except (ModelSettingsError, ConfigError) as exc:
        raise _fail(str(exc)) from exc
    entry = (entries or {}).get((target.exchange, target.market_type))
    if entry is not None and target.timeframe not in entry.timeframes:
        raise _fail(f"{spec.file}: {spec.name}: timeframe {target.timeframe!r} is not stored for {target.exchange} "
                    f"{target.market_type} (ohlcv/{target.exchange}/{target.market_type} keeps {', '.join(entry.timeframes)})")
    try:
        strategy_cls = load_strategy_class(spec.file, spec.name)
    except ImportError as exc:
        raise _fail(str(exc)) from exc
    try:
        trained = train_model(strategy_cls, arctic, target.exchange, target.market_type, target.pairs, target.timeframe,
                              settings, seed)
    except ModelInputError as exc:
        raise _fail(f"{spec.name}: training refused: {exc}") from exc
    if log is not None:
        log.info(f"{spec.name}: trained on {len(trained.features)} rows to {trained.window.end:%Y-%m-%d}; "
                 f"cv accuracy {trained.fold_metrics['accuracy'].mean():.4f}")
    params = training_params(spec, trained, target.exchange, target.market_type, target.pairs, target.timeframe)
    try:
        return log_and_register(spec, trained, registry, tracker, params, trigger, tags)
    except ModelRegistryError as exc:
        raise _fail(f"{spec.name}: {exc}") from exc


def build_model_asset(spec: StrategySpec, base_path: Path = BASE_CONFIG_PATH,
                      entries: dict[tuple[str, str], UniverseEntry] | None = None) -> dg.AssetsDefinition:
    base = load_base_config(base_path)
    exchange, mtype = base["exchange"]["name"], market_type({**base, **spec.config_overrides})
    exchange = spec.config_overrides.get("exchange", {}).get("name", exchange)

    @dg.asset(
        key=model_key(spec.name),
        group_name=f"strategy_{spec.name}",
        kinds={"sklearn", "mlflow"},
        deps=[dg.AssetKey(["ohlcv", exchange, mtype])],
        description=f"Model of {spec.name}: trained on the stored candles minus the holdout, validated "
        "walk-forward, logged to MLflow and registered (challenger, or champion for the first version).",
        metadata=spec.ui_metadata(),
        tags=aws_contract.ecs_run_tags("training"),
    )
    def model(
        context: dg.AssetExecutionContext,
        config: ModelTrainingConfig,
        arctic: ArcticStore,
        mlflow: MlflowTracker,
        model_registry: ModelRegistry,
        notifier: Notifier,
    ):
        trigger = config.trigger or context.run.tags.get("tradai/trigger") or f"dagster run {context.run.run_id}"
        registered = train_and_register(
            spec, arctic, model_registry, mlflow, trigger, config.seed, base_path,
            {"dagster.run_id": context.run.run_id}, context.log, entries,
        )
        notifier.notify(
            "model_trained",
            f"{spec.name}: version {registered.version} trained ({registered.alias})",
            f"{spec.name} version {registered.version} is the {registered.alias}; trained on "
            f"{len(registered.trained.features)} rows to {registered.trained.window.end:%Y-%m-%d}, trigger {trigger}.",
            details={"model": spec.name, "version": registered.version, "alias": registered.alias,
                     "mlflow_run_id": registered.run_id},
        )
        return dg.MaterializeResult(
            data_version=dg.DataVersion(f"{spec.name}-v{registered.version}"),
            metadata=training_metadata(registered),
        )

    return model


def build_model_assets(specs: list[StrategySpec], entries: list[UniverseEntry] | None = None,
                       base_path: Path = BASE_CONFIG_PATH) -> list[dg.AssetsDefinition]:
    """``strategies/<Name>/model`` for every model strategy."""
    by_market = {(e.exchange, e.market_type): e for e in entries or []}
    return [build_model_asset(spec, base_path, by_market) for spec in specs if spec.is_model]
