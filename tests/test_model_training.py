"""Training assets of model strategies on the offline sample: first version champion, then challengers,
lineage and reference bins in MLflow, deterministic training, purged walk-forward folds, bad input."""

import json

import numpy as np
import pandas as pd
import pytest

from resources.model_registry import CHALLENGER, CHAMPION
from tests.market_data_support import failure_message, materialization_metadata
from tests.model_support import ModelLocation, strategy_variant
from tradai_assets.model_training import (
    ModelInputError,
    model_key,
    model_target,
    predict,
    train_model,
    walk_forward_folds,
)
from tradai_core.drift import ReferenceBins
from tradai_core.model_settings import ModelSettings, ModelSettingsError
from tradai_core.model_strategy import load_model, load_strategy_class

THREE_PAIRS = '    timeframe = "5m"\n    pairs = ["ETH/BTC", "LTC/BTC", "XMR/BTC"]\n'
SMALL = {'    timeframe = "5m"\n': THREE_PAIRS, '"folds": 4': '"folds": 3'}
FEATURES = ["ret_1", "ret_3", "ret_6", "ret_12", "ret_36", "rsi_14", "volatility_24", "range", "close_sma_48", "volume_z_48"]


@pytest.fixture(scope="module")
def location(tmp_path_factory, module_instance):
    root = tmp_path_factory.mktemp("models")
    strategies = root / "strategies"
    strategy_variant(strategies, "MlSmall", SMALL)
    strategy_variant(strategies, "MlBroken", {
        **SMALL,
        "        return out\n": (
            '        out.loc[candles["date"] == pd.Timestamp("2018-01-15 12:00", tz="UTC"), "range"] = np.inf\n'
            '        out.loc[candles["date"] >= pd.Timestamp("2018-01-16 06:00", tz="UTC"), "rsi_14"] = np.nan\n'
            "        return out\n"
        ),
    })
    strategy_variant(strategies, "MlFewRows", {**SMALL, '"min_rows": 2000': '"min_rows": 10_000_000'})
    strategy_variant(strategies, "MlBadSettings", {**SMALL, '"folds": 3': '"folds": 3, "fold": 5'})
    location = ModelLocation(root, strategies)
    location.load_sample(module_instance)
    return location


@pytest.fixture(scope="module")
def trainings(location, module_instance):
    first = location.train("MlSmall", module_instance, trigger="test first")
    assert first.success, failure_message(first)
    second = location.train("MlSmall", module_instance, seed=7)
    assert second.success, failure_message(second)
    return first, second


def test_first_version_becomes_champion_the_next_challenger_with_audit_log(location, trainings):
    first, second = (materialization_metadata(r, model_key("MlSmall")) for r in trainings)
    assert (first["version"], first["alias"]) == (1, CHAMPION)
    assert (second["version"], second["alias"]) == (2, CHALLENGER)
    assert location.registry.aliases("MlSmall") == {CHAMPION: 1, CHALLENGER: 2}
    log = location.registry.audit_log("MlSmall")
    assert list(log["event"]) == ["first_champion", "challenger"]
    assert log["trigger"].iloc[0] == "test first" and log["trigger"].iloc[1].startswith("dagster run ")
    assert location.registry.moves("MlSmall") == [("first_champion", None, 1), ("challenger", 1, 1)]
    assert "| fold |" in first["folds"] and set(first["importances"]) == set(FEATURES)
    assert first["holdout_timerange"] == "20180123-20180131" and first["seed"] == 42 and second["seed"] == 7


def test_training_run_logs_lineage_folds_importances_and_the_model(location, trainings):
    meta = materialization_metadata(trainings[0], model_key("MlSmall"))
    client = location.client()
    run = client.get_run(meta["mlflow_run_id"])
    params = run.data.params
    assert json.loads(params["data_versions"]) == {f"{p}|5m|spot": 0 for p in ("ETH/BTC", "LTC/BTC", "XMR/BTC")}
    assert params["seed"] == "42" and params["train_end"] == "2018-01-23T00:00:00+00:00"
    assert params["model.purge"] == "12" and params["model.folds"] == "3" and len(params["strategy_source_hash"]) == 64
    assert {"scikit-learn", "pandas", "numpy", "mlflow", "python"} <= set(json.loads(params["package_versions"]))
    assert json.loads(params["features"]) == FEATURES
    history = client.get_metric_history(meta["mlflow_run_id"], "fold_accuracy")
    assert sorted(m.step for m in history) == [1, 2, 3]
    assert {"cv_accuracy", "cv_roc_auc", "importance_ret_1"} <= set(run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(meta["mlflow_run_id"])}
    assert {"model", "folds.csv", "feature_importances.json", "MlSmall.py", "reference_bins"} <= artifacts
    model_files = {a.path.split("/")[-1] for a in client.list_artifacts(meta["mlflow_run_id"], "model")}
    assert {"MLmodel", "requirements.txt", "input_example.json"} <= model_files
    local = client.download_artifacts(meta["mlflow_run_id"], "model")
    import sklearn
    requirements = open(f"{local}/requirements.txt").read()
    assert f"scikit-learn=={sklearn.__version__}" in requirements and f"pandas=={pd.__version__}" in requirements
    assert "signature:" in open(f"{local}/MLmodel").read()


def test_reference_bins_of_every_feature_and_the_prediction_are_stored(location, trainings):
    version, bins = location.registry.reference_bins("MlSmall", CHAMPION)
    reference = ReferenceBins.from_dict(bins)
    assert version == 1 and list(reference.features) == FEATURES + ["prediction"]
    train_rows = int(location.client().get_run(materialization_metadata(trainings[0], model_key("MlSmall"))["mlflow_run_id"]).data.params["train_rows"])
    assert reference.rows == train_rows


def test_training_is_deterministic_for_a_seed_and_data_version(location, trainings):
    spec = location.specs["MlSmall"]
    strategy = load_strategy_class(spec.file, spec.name)
    target = model_target(spec)
    settings = ModelSettings.from_spec(spec.model_settings)
    runs = [train_model(strategy, location.arctic, target.exchange, target.market_type, target.pairs, target.timeframe,
                        settings) for _ in range(2)]
    pd.testing.assert_frame_equal(runs[0].fold_metrics, runs[1].fold_metrics, check_exact=True)
    assert np.array_equal(runs[0].predictions, runs[1].predictions)
    pd.testing.assert_series_equal(runs[0].importances, runs[1].importances, check_exact=True)
    # ... and the same as the registered version 1, loaded back from MLflow
    registered, version, _ = load_model("MlSmall", {"tradai_model": {"name": "MlSmall", "version": 1,
                                                                     "tracking_uri": location.tracking_uri}})
    assert version == 1 and np.array_equal(predict(registered, runs[0].features), runs[0].predictions)
    logged = location.client().get_run(materialization_metadata(trainings[0], model_key("MlSmall"))["mlflow_run_id"]).data.metrics
    assert logged["cv_accuracy"] == pytest.approx(runs[0].fold_metrics["accuracy"].mean(), abs=0)


def test_walk_forward_folds_split_on_time_never_overlap_and_keep_the_purge_gap(location):
    spec = location.specs["MlSmall"]
    strategy = load_strategy_class(spec.file, spec.name)
    target = model_target(spec)
    trained = train_model(strategy, location.arctic, target.exchange, target.market_type, target.pairs, target.timeframe,
                          ModelSettings.from_spec({**spec.model_settings, "folds": 4, "purge": 20}))
    times = trained.features.index.get_level_values("date")
    step = pd.Timedelta("5min")
    assert len(trained.folds) == 4
    for fold in trained.folds:
        train_times, validation_times = times[fold.train], times[fold.validation]
        assert not set(fold.train) & set(fold.validation)
        assert train_times.max() + 20 * step < validation_times.min()
        # split on time across pairs: every pair's rows at a validation time are validated, none trained on
        assert set(train_times).isdisjoint(validation_times)
        assert (times[(times >= validation_times.min()) & (times <= validation_times.max())].size == len(fold.validation))
    firsts = [f.validation_first for f in trained.folds]
    assert firsts == sorted(firsts) and all(a.validation_last < b.validation_first for a, b in zip(trained.folds, trained.folds[1:]))

    # irregular times of two pairs with a gap: the same guarantees
    index = pd.DatetimeIndex(list(pd.date_range("2024-01-01", periods=300, freq="5min", tz="UTC")) * 2)
    index = index.delete(range(100, 140))
    for fold in walk_forward_folds(index, 3, 12, step):
        assert index[fold.train].max() + 12 * step < index[fold.validation].min()
    with pytest.raises(ModelInputError, match="no training rows"):
        walk_forward_folds(pd.date_range("2024-01-01", periods=20, freq="5min", tz="UTC"), 3, 12, step)


def test_nan_or_inf_features_fail_naming_feature_pair_and_count_and_register_nothing(location, module_instance):
    result = location.train("MlBroken", module_instance)
    assert not result.success
    message = failure_message(result)
    assert "MlBroken" in message and "NaN or infinite" in message
    for pair in ("ETH/BTC", "LTC/BTC", "XMR/BTC"):
        assert f"feature 'range' on {pair}: 1 row(s)" in message
        assert f"feature 'rsi_14' on {pair}:" in message
    assert "MlBroken" not in location.registered_models()
    assert location.registry.audit_log("MlBroken").empty


def test_too_few_rows_fail_with_the_counts_and_register_nothing(location, module_instance):
    result = location.train("MlFewRows", module_instance)
    assert not result.success
    message = failure_message(result)
    assert "fewer than min_rows = 10000000" in message and "ETH/BTC " in message and "labelled training row(s)" in message
    assert "MlFewRows" not in location.registered_models()


def test_unknown_model_setting_is_refused_naming_it(location, module_instance):
    result = location.train("MlBadSettings", module_instance)
    assert not result.success and "unknown key(s) fold" in failure_message(result)
    with pytest.raises(ModelSettingsError, match="purge .* must be at least label_horizon"):
        ModelSettings.from_spec({"label_horizon": 12, "purge": 5})
    with pytest.raises(ModelSettingsError, match="folds must be an integer >= 2"):
        ModelSettings.from_spec({"folds": 1})
    assert ModelSettings.from_spec({}).purge_candles == 12
