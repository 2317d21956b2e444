"""Retraining jobs and schedules, the champion/challenger evaluation (its decision layer on returns with a
known signal, and once end to end with real backtests on the sample), and the market-shift demo."""

import json
import logging

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from resources.arctic import ArcticStore
from resources.freqtrade_runner import FreqtradeRunner
from resources.mlflow_tracker import MlflowTracker
from resources.model_registry import ModelRegistry
from resources.notifier import Notifier
from sensors.models import build_model_sensors
from tests.backtest_support import spot_sample_entry
from tests.market_data_support import SPOT_PAIRS, MarketDataLocation, failure_message, write_universe
from tests.model_lifecycle_support import (
    log_version,
    make_champion,
    register_version,
    store_stationary_market,
    write_toy_strategy,
)
from tradai_assets.model_lifecycle import (
    DEMO_RESTORE_JOB,
    DEMO_SHIFT_JOB,
    SideResult,
    build_model_lifecycle,
    conclude,
    train_jobs,
)
from tradai_core.candles import candle_symbol
from tradai_core.promotion import PromotionPolicy

NOTIFICATIONS = "tradai.notifications"


def test_one_training_job_and_a_running_schedule_per_model(tmp_path):
    weekly = write_toy_strategy(tmp_path / "s", "Weekly")
    daily = write_toy_strategy(tmp_path / "s", "Daily", settings={"retrain_cron": "15 2 * * *", "label_horizon": 6})
    jobs, schedules = build_model_lifecycle([weekly, daily])
    names = {j.name for j in jobs}
    assert {"train_Weekly", "train_Daily", "evaluate_challenger", DEMO_SHIFT_JOB, DEMO_RESTORE_JOB} <= names
    crons = {s.name: (s.cron_schedule, s.default_status) for s in schedules}
    assert crons == {
        "train_Weekly_schedule": ("0 3 * * 0", dg.DefaultScheduleStatus.RUNNING),
        "train_Daily_schedule": ("15 2 * * *", dg.DefaultScheduleStatus.RUNNING),
    }
    sensors = build_model_sensors([weekly, daily], train_jobs([weekly, daily]))
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors)
    assert build_model_lifecycle([]) == ([], [])


def lifecycle_resources(root, arctic, tracking_uri=None):
    tracking_uri = tracking_uri or f"sqlite:///{root / 'mlflow.db'}"
    return {
        "arctic": arctic,
        "freqtrade_runner": FreqtradeRunner(workdir=str(root)),
        "mlflow": MlflowTracker(tracking_uri=tracking_uri, artifact_root=str(root / "mlartifacts")),
        "model_registry": ModelRegistry(tracking_uri=tracking_uri, store=arctic),
        "notifier": Notifier(),
    }


def two_versions(tmp_path, tracking_uri, name):
    """A champion and a challenger (toy models; the decision here is on given returns)."""
    from sklearn.linear_model import LogisticRegression

    registry = ModelRegistry(tracking_uri=tracking_uri, store=ArcticStore(uri=f"lmdb://{tmp_path / 'arctic'}"))
    x, y = np.random.default_rng(0).normal(size=(50, 2)), np.arange(50) % 2
    champion = log_version(registry, name, LogisticRegression().fit(x, y))
    make_champion(registry, name, champion)
    challenger = log_version(registry, name, LogisticRegression().fit(x, y))
    registry.set_challenger(name, challenger, trigger="training")
    return registry, champion, challenger


def returns(mean, count, seed):
    return np.random.default_rng(seed).normal(mean, 0.01, count)


@pytest.mark.parametrize("case", ["better", "worse", "too_few"])
def test_a_truly_better_challenger_is_promoted_a_worse_kept_too_few_trades_inconclusive(tmp_path, tracking_uri, caplog, case):
    name = f"Signal_{case}"
    registry, champion, challenger = two_versions(tmp_path, tracking_uri, name)
    champion_r = returns(0.001, 120, 1)
    challenger_r = {"better": returns(0.006, 120, 2), "worse": returns(-0.002, 120, 3), "too_few": returns(0.01, 12, 4)}[case]
    with caplog.at_level(logging.INFO, logger=NOTIFICATIONS):
        record, row = conclude(name, True, SideResult(champion, champion_r), SideResult(challenger, challenger_r),
                               PromotionPolicy(min_trades=30), "test", registry, Notifier(), {"holdout": {"timerange": "x"}})
    outcome = {"better": "promote", "worse": "keep", "too_few": "inconclusive"}[case]
    assert record["outcome"] == row["event"] == outcome
    log = registry.audit_log(name)
    assert log["event"].iloc[-1] == outcome and json.loads(log["details"].iloc[-1])["challenger_version"] == challenger
    (note,) = [r.getMessage() for r in caplog.records if r.name == NOTIFICATIONS]
    if outcome == "promote":
        assert registry.aliases(name) == {"champion": challenger, "previous": champion}
        assert "promoted" in note and "redeployed" in note  # a live strategy
    else:
        assert registry.aliases(name) == {"champion": champion, "challenger": challenger}
        assert outcome in note


def test_a_decision_is_not_applied_when_the_aliases_moved(tmp_path, tracking_uri):
    registry, champion, challenger = two_versions(tmp_path, tracking_uri, "Moving")
    registry.record_decision("Moving", {"outcome": "keep", "p_value": 0.5}, trigger="elsewhere")
    from sklearn.dummy import DummyClassifier

    newer = log_version(registry, "Moving", DummyClassifier().fit([[0], [1]], [0, 1]))
    registry.set_challenger("Moving", newer, trigger="training")
    with pytest.raises(dg.Failure, match="the aliases moved during the evaluation"):
        conclude("Moving", False, SideResult(champion, returns(0, 40, 1)), SideResult(challenger, returns(0.01, 40, 2)),
                 PromotionPolicy(), "test", registry, Notifier())


def test_demo_market_shift_appends_only_and_restores(tmp_path, instance):
    arctic = ArcticStore(uri=f"lmdb://{tmp_path / 'arctic'}")
    spec = write_toy_strategy(tmp_path / "strategies", "Demo")
    end = store_stationary_market(arctic, days=3)
    before = {p: arctic.read_candles("binance", "spot", candle_symbol(p, "5m", "spot")) for p in ["AAA/BTC", "BBB/BTC"]}
    jobs, _ = build_model_lifecycle([spec])
    defs = dg.Definitions(jobs=jobs, resources=lifecycle_resources(tmp_path, arctic))
    result = defs.resolve_job_def(DEMO_SHIFT_JOB).execute_in_process(
        instance=instance, run_config={"ops": {"append_shifted_candles": {"config": {"days": 2}}}})
    assert result.success
    (materialized,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = {k: v.value for k, v in materialized.event_specific_data.metadata.items()}
    assert metadata["candles_written"] == 2 * 576 and metadata["first_synthetic_candle"] == end.isoformat()
    for pair, old in before.items():
        now = arctic.read_candles("binance", "spot", candle_symbol(pair, "5m", "spot"))
        pd.testing.assert_frame_equal(now.loc[: old.index[-1]], old)  # nothing stored was touched
        new = now.loc[end:]
        assert len(new) == 576 and new.index[0] == end
        old_vol, new_vol = np.log(old["close"]).diff().std(), np.log(new["close"]).diff().std()
        assert new_vol > 3 * old_vol

    restored = defs.resolve_job_def(DEMO_RESTORE_JOB).execute_in_process(instance=instance)
    assert restored.success
    for pair, old in before.items():
        pd.testing.assert_frame_equal(arctic.read_candles("binance", "spot", candle_symbol(pair, "5m", "spot")), old)


def test_evaluate_challenger_end_to_end_with_real_backtests_on_the_sample(tmp_path, instance, caplog):
    """Two versions of a toy model on the offline sample: both backtested on the same pinned holdout,
    the decision recorded in the audit log with both backtests' lineage, and notified."""
    spec = write_toy_strategy(tmp_path / "strategies", "SampleToy", pairs=None,
                              settings={"holdout_days": 5, "label_horizon": 6, "min_rows": 100, "folds": 2})
    (entry,) = write_universe(tmp_path / "universe.yaml", [spot_sample_entry()])
    arctic = ArcticStore(uri=f"lmdb://{tmp_path / 'arctic'}")
    market = MarketDataLocation([entry], arctic)
    assert market.markets(entry.name, instance).success
    assert market.ohlcv(entry.name, instance, "2018-01-10", "2018-01-30").success
    resources = lifecycle_resources(tmp_path, arctic)
    registry, tracker = resources["model_registry"], resources["mlflow"]
    stored_end = pd.Timestamp("2018-01-31", tz="UTC")
    train_end = stored_end - pd.Timedelta(days=5)
    first = pd.Timestamp("2018-01-11", tz="UTC")  # after the warm-up candles
    champion = register_version(registry, spec, arctic, first, train_end, pairs=SPOT_PAIRS, shuffle_labels=1)
    make_champion(registry, "SampleToy", champion)
    challenger = register_version(registry, spec, arctic, first, train_end, pairs=SPOT_PAIRS)
    registry.set_challenger("SampleToy", challenger, trigger="training")

    jobs, _ = build_model_lifecycle([spec])
    defs = dg.Definitions(jobs=jobs, resources=resources)
    with caplog.at_level(logging.INFO, logger=NOTIFICATIONS):
        result = defs.resolve_job_def("evaluate_challenger").execute_in_process(
            instance=instance, raise_on_error=False,
            run_config={"ops": {"backtest_and_decide": {"config": {"model": "SampleToy", "trigger": "test"}}}},
        )
    assert result.success, failure_message(result)
    (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    meta = {k: v.value for k, v in output.event_specific_data.metadata.items()}
    assert meta["holdout_timerange"].endswith("-20180131")  # the last 5 days of the stored sample
    assert (meta["champion_version"], meta["challenger_version"]) == (champion, challenger)
    log = registry.audit_log("SampleToy")
    assert log["event"].iloc[-1] == meta["outcome"] in ("promote", "keep", "inconclusive")
    record = json.loads(log["details"].iloc[-1])
    runs = record["backtests"]
    params = [tracker.run_record(runs[side]["mlflow_run_id"])[0] for side in ("champion", "challenger")]
    # Same window, candle versions and markets snapshot on both sides; each its own model version.
    assert params[0]["data_versions"] == params[1]["data_versions"]
    assert json.loads(params[0]["data_versions"]) == record["data_versions"]
    assert params[0]["markets_snapshot_hash"] == params[1]["markets_snapshot_hash"] == record["markets_snapshot_hash"]
    assert params[0]["timerange"] == params[1]["timerange"] == meta["holdout_timerange"]
    assert record["champion"]["trades"] == runs["champion"]["metrics"].get("trades", record["champion"]["trades"])
    assert [r for r in caplog.records if r.name == NOTIFICATIONS and "SampleToy" in r.getMessage()]


def test_a_model_strategy_sets_its_own_promotion_policy_and_bad_values_are_refused(tmp_path):
    from tradai_assets.model_lifecycle import promotion_policy
    from tradai_core.model_settings import ModelSettings, ModelSettingsError
    from tradai_core.strategy_discovery import StrategySpec

    values = {"min_trades": 50, "alpha": 0.01, "drawdown_tolerance": 0.05}
    spec = StrategySpec(name="Strict", file=tmp_path / "Strict.py", model_settings=values)
    policy = promotion_policy(spec, ModelSettings.from_spec(values))
    assert (policy.min_trades, policy.alpha, policy.drawdown_tolerance) == (50, 0.01, 0.05)
    defaults = promotion_policy(spec, ModelSettings.from_spec({}))
    assert (defaults.min_trades, defaults.alpha, defaults.drawdown_tolerance) == (30, 0.05, 0.02)
    with pytest.raises(ModelSettingsError, match=r"alpha must be a number between 0 and 1, got 1\.5"):
        ModelSettings.from_spec({"alpha": 1.5})
    with pytest.raises(ModelSettingsError, match=r"min_trades must be an integer >= 2, got 1"):
        ModelSettings.from_spec({"min_trades": 1})
    with pytest.raises(ModelSettingsError, match=r"drawdown_tolerance must be a number in \[0, 1\)"):
        ModelSettings.from_spec({"drawdown_tolerance": -0.1})
