"""Model strategies in Freqtrade: the features a real backtest computes are the training features (no
skew), backtests pin and record the model version and reproduce after the alias moves, and a model that
cannot be resolved fails clearly."""

import logging
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from resources.model_registry import CHALLENGER, CHAMPION
from tests.backtest_support import copy_strategies
from tests.market_data_support import failure_message, materialization_metadata
from tests.model_support import ModelLocation, strategy_variant
from tradai_assets.model_training import model_target
from tradai_assets.strategies import backtest_key, backtest_model_version
from tradai_core.keys import model_key
from tradai_core.model_data import feature_window, predict
from tradai_core.model_strategy import ModelUnavailableError, load_model, load_strategy_class

REPO = Path(__file__).resolve().parent.parent
TWO_PAIRS = {'    timeframe = "5m"\n': '    timeframe = "5m"\n    pairs = ["ETH/BTC", "LTC/BTC"]\n',
             '"min_rows": 2000': '"min_rows": 500'}


@pytest.fixture(scope="module")
def location(tmp_path_factory, module_instance):
    root = tmp_path_factory.mktemp("model-strategies")
    strategies = copy_strategies(root / "strategies", "MlMomentum")
    strategy_variant(strategies, "MlGone", TWO_PAIRS)
    strategy_variant(strategies, "MlUntrained", TWO_PAIRS)
    location = ModelLocation(root, strategies)
    location.load_sample(module_instance)
    result = location.train("MlMomentum", module_instance)
    assert result.success, failure_message(result)
    return location


def test_model_strategy_module_runs_without_dagster():
    code = "import sys, tradai_core.model_strategy; assert 'dagster' not in sys.modules, 'dagster imported'"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


def test_no_skew_between_training_features_and_a_real_backtest_on_the_holdout(location, monkeypatch):
    """Every feature column and the prediction that populate_indicators gives Freqtrade equal what the
    training path computes from the same stored candles; the holdout week makes enough trades for a
    champion/challenger evaluation."""
    from freqtrade.data.dataprovider import DataProvider

    analysed: dict[str, pd.DataFrame] = {}
    original = DataProvider._set_cached_df

    def capture(self, pair, timeframe, dataframe, candle_type):
        analysed[pair] = dataframe.copy()
        return original(self, pair, timeframe, dataframe, candle_type)

    monkeypatch.setattr(DataProvider, "_set_cached_df", capture)
    spec = location.specs["MlMomentum"]
    timerange = "20180123-20180131"
    recorded = backtest_model_version(
        logging.getLogger("test"), spec, 1, timerange, location.arctic, location.store, location.runner,
        location.mlflow, location.registry, "evaluation",
    )
    assert len(recorded.outcome.trades) >= 30
    assert recorded.plan.model["version"] == 1

    target = model_target(spec)
    strategy = load_strategy_class(spec.file, spec.name)
    start = pd.Timestamp("2018-01-23", tz="UTC")
    features = feature_window(location.arctic, strategy, target.exchange, target.market_type, target.pairs,
                              target.timeframe, start=start, data_versions=recorded.plan.data_versions)
    model, _, _ = load_model(spec.name, {"tradai_model": recorded.plan.model})
    predictions = pd.Series(predict(model, features), index=features.index)
    assert sorted(analysed) == sorted(target.pairs)
    for pair, frame in analysed.items():
        ours = features.xs(pair, level="pair")
        theirs = frame.set_index("date").loc[ours.index]
        pd.testing.assert_frame_equal(theirs[list(ours.columns)], ours, check_exact=False, rtol=1e-9, atol=1e-12,
                                      check_freq=False, check_names=False, check_index_type=False)
        np.testing.assert_allclose(theirs["prediction"].to_numpy(), predictions.xs(pair, level="pair").to_numpy(),
                                   rtol=1e-9, atol=1e-12)
    params, _, _ = location.mlflow.run_record(recorded.run_id)
    assert params["model_name"] == "MlMomentum" and params["model_version"] == "1" and params["timerange"] == timerange


def test_backtest_records_the_model_version_and_reproduces_after_the_alias_moves(location, module_instance):
    first = location.backtest("MlMomentum", module_instance)
    assert first.success, failure_message(first)
    meta = materialization_metadata(first, backtest_key("MlMomentum"))
    assert meta["model_name"] == "MlMomentum" and meta["model_version"] == 1
    run_id = meta["mlflow_run_id"]
    params, _, _ = location.mlflow.run_record(run_id)
    assert (params["model_name"], params["model_version"]) == ("MlMomentum", "1")
    assert location.store.read_backtest("MlMomentum")[3]["model_version"] == "1"

    retrained = location.train("MlMomentum", module_instance, seed=7)
    assert retrained.success, failure_message(retrained)
    assert location.registry.aliases("MlMomentum") == {CHAMPION: 1, CHALLENGER: 2}
    location.registry.record_decision("MlMomentum", {"outcome": "promote", "p_value": 0.01}, "test")
    assert location.registry.aliases("MlMomentum")[CHAMPION] == 2

    reproduced = location.run_job("reproduce_backtest", module_instance, "rerun_logged_backtest", {"mlflow_run_id": run_id})
    assert reproduced.success, failure_message(reproduced)
    assert reproduced.output_for_node("rerun_logged_backtest") is True
    rerun = [e for e in reproduced.all_events if e.event_type_value == "STEP_OUTPUT"][0]
    assert rerun.event_specific_data.metadata["model_version"].value == 1

    adhoc = location.run_job("adhoc_backtest", module_instance, "backtest_with_overrides", {
        "strategy": "MlMomentum", "timerange": "20180125-20180128", "pairs": ["ETH/BTC", "LTC/BTC"],
    })
    assert adhoc.success, failure_message(adhoc)
    params, _, _ = location.mlflow.run_record(adhoc.output_for_node("backtest_with_overrides"))
    assert params["model_version"] == "2"  # the champion now
    pinned = location.run_job("adhoc_backtest", module_instance, "backtest_with_overrides", {
        "strategy": "MlMomentum", "timerange": "20180125-20180128", "pairs": ["ETH/BTC", "LTC/BTC"], "model_version": 1,
    })
    assert pinned.success, failure_message(pinned)
    assert location.mlflow.run_record(pinned.output_for_node("backtest_with_overrides"))[0]["model_version"] == "1"


def test_backtest_of_a_model_asset_depends_on_its_training_asset(location):
    backtest = location.defs.resolve_assets_def(backtest_key("MlMomentum"))
    assert model_key("MlMomentum") in backtest.asset_deps[backtest_key("MlMomentum")]
    training = location.defs.resolve_assets_def(model_key("MlMomentum"))
    assert training.group_names_by_key[model_key("MlMomentum")] == "strategy_MlMomentum"
    assert dg.AssetKey(["ohlcv", "binance", "spot"]) in training.asset_deps[model_key("MlMomentum")]


def test_alias_pointing_at_a_deleted_version_fails_clearly(location, module_instance):
    assert location.train("MlGone", module_instance).success
    location.client().delete_model_version("MlGone", "1")
    result = location.backtest("MlGone", module_instance)
    assert not result.success
    message = failure_message(result)
    assert "MlGone: cannot resolve the model to backtest with" in message
    assert "last set it to version 1" in message and "has been deleted" in message


def test_untrained_model_strategy_fails_clearly_in_dagster_and_in_freqtrade(location, module_instance, monkeypatch):
    result = location.backtest("MlUntrained", module_instance)
    assert not result.success and "MlUntrained has no version with the alias 'champion'" in failure_message(result)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", location.tracking_uri)
    monkeypatch.delenv("TRADAI_MODEL_VERSION", raising=False)
    with pytest.raises(ModelUnavailableError, match="MlUntrained: no model alias 'champion' in the registry"):
        load_model("MlUntrained", {})
    # Without config, a bot resolves the champion from the environment, or the pinned version.
    _, version, _ = load_model("MlMomentum", {})
    assert version == location.registry.version("MlMomentum", CHAMPION)
    monkeypatch.setenv("TRADAI_MODEL_VERSION", "1")
    assert load_model("MlMomentum", {})[1] == 1
    monkeypatch.setenv("TRADAI_MODEL_VERSION", "99")
    with pytest.raises(ModelUnavailableError, match="no model version 99"):
        load_model("MlMomentum", {})
