"""The drift check, its schedule and the model sensors against a real Dagster instance, MLflow on SQLite
(once a real server) and ArcticDB on LMDB: a shifted market fails the check and the drift sensor requests
a retraining once per event, a stationary market passes; challengers get one evaluation; an unreachable
registry skips with its reason; failed runs are notified."""

import json
import logging
import re
import time

import dagster as dg
import pandas as pd
import pytest

from resources.arctic import ArcticStore
from resources.model_registry import ModelRegistry
from resources.notifier import Notifier
from sensors.models import build_model_sensors
from tests.model_lifecycle_support import (
    TRAIN_START,
    append_shifted_market,
    make_champion,
    register_version,
    store_stationary_market,
    write_toy_strategy,
)
from tests.servers import free_port, mlflow_server
from tradai_assets.model_drift import DRIFT_SCHEDULE, build_model_drift, drift_cron
from tradai_assets.model_lifecycle import train_jobs
from tradai_core.keys import DRIFT_CHECKS_JOB, drift_check_key
from tradai_core.settings import SettingsError

NOTIFICATIONS = "tradai.notifications"


class Location:
    """A toy model strategy on synthetic candles, a champion trained on all but the last two days, its
    drift check, job and schedule, and the model sensors."""

    def __init__(self, root, tracking_uri, name, champion=True):
        self.arctic = ArcticStore(uri=f"lmdb://{root / 'arctic'}")
        self.registry = ModelRegistry(tracking_uri=tracking_uri, store=self.arctic)
        self.spec = write_toy_strategy(root / "strategies", name)
        self.end = store_stationary_market(self.arctic, days=8)
        self.champion = None
        if champion:
            self.champion = register_version(self.registry, self.spec, self.arctic, TRAIN_START, self.end - pd.Timedelta(days=2))
            make_champion(self.registry, self.spec.name, self.champion)
        self.checks, _, (self.schedule,) = build_model_drift([self.spec])
        self.sensors = {s.name: s for s in build_model_sensors([self.spec], train_jobs([self.spec]))}

    def schedule_tick(self, instance, registry=None):
        with dg.build_schedule_context(instance=instance, resources={"model_registry": registry or self.registry}) as context:
            return self.schedule.evaluate_tick(context)

    def check(self, instance, registry=None) -> dg.AssetCheckEvaluation:
        """The drift check run as the schedule's request runs it: the drift job with its checks selected."""
        defs = dg.Definitions(asset_checks=self.checks, jobs=build_model_drift([self.spec])[1], resources={
            "model_registry": registry or self.registry, "arctic": self.arctic})
        job = defs.resolve_job_def(DRIFT_CHECKS_JOB).get_subset(asset_check_selection={drift_check_key(self.spec.name)})
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        if not result.success:
            (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
            raise AssertionError(failure.step_failure_data.error.message)
        (evaluation,) = result.get_asset_check_evaluations()
        return evaluation

    def tick(self, sensor, instance, cursor=None, registry=None):
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources={
            "model_registry": registry or self.registry, "notifier": Notifier(),
        }) as context:
            return self.sensors[sensor](context)

    def drift_tick(self, instance, cursor=None, registry=None):
        return self.tick("drift_sensor", instance, cursor, registry)


def metadata(evaluation: dg.AssetCheckEvaluation) -> dict:
    return {k: v.value for k, v in evaluation.metadata.items()}


def test_the_schedule_runs_the_drift_check_every_6_hours_and_a_stationary_market_passes(tmp_path, tracking_uri, instance, caplog):
    location = Location(tmp_path, tracking_uri, "Calm")
    assert location.schedule.name == DRIFT_SCHEDULE and location.schedule.cron_schedule == "0 */6 * * *"
    assert location.schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    (request,) = location.schedule_tick(instance).run_requests
    assert request.asset_check_keys == [drift_check_key("Calm")] and request.asset_selection == []
    evaluation = location.check(instance)
    assert evaluation.passed
    meta = metadata(evaluation)
    assert meta["band"] == "fine" and meta["champion_version"] == location.champion
    table = {r.data["feature"]: r.data for r in meta["psi"].records}
    assert set(table) == {"ret_1", "ret_6", "range", "prediction"}
    assert all(r["psi"] < 0.1 and r["band"] == "fine" for r in table.values())
    with caplog.at_level(logging.INFO, logger=NOTIFICATIONS):
        result = location.drift_tick(instance)
    assert result.run_requests == [] and "Calm: fine" in result.skip_reason.skip_message
    assert not [r for r in caplog.records if r.name == NOTIFICATIONS]
    assert json.loads(result.cursor)["models"]["Calm"]["band"] == "fine"


def test_the_warning_band_fails_the_check_with_warn_severity_and_requests_nothing(tmp_path, tracking_uri, instance):
    location = Location(tmp_path, tracking_uri, "Uneasy")
    append_shifted_market(location.arctic, location.end, days=2, factor=1.2, trend_per_candle=0.0)
    evaluation = location.check(instance)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    meta = metadata(evaluation)
    assert meta["band"] == "warning" and meta["warning_features"] == ["range"] and meta["drifting_features"] == []
    assert location.drift_tick(instance).run_requests == []


def test_a_shift_requests_one_retraining_per_drift_event_and_survives_a_restart(tmp_path, tracking_uri, instance, caplog):
    location = Location(tmp_path, tracking_uri, "Shifty")
    append_shifted_market(location.arctic, location.end, days=2, factor=4.0)
    evaluation = location.check(instance)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    meta = metadata(evaluation)
    assert meta["band"] == "drift"
    assert "range" in meta["drifting_features"] and "ret_1" in meta["drifting_features"]
    with caplog.at_level(logging.INFO, logger=NOTIFICATIONS):
        first = location.drift_tick(instance)
    (request,) = first.run_requests
    assert request.job_name == "train_Shifty"
    assert request.run_key.startswith(f"drift:Shifty:v{location.champion}:")
    assert request.tags["tradai/trigger"] == "drift_sensor"
    notes = [r.getMessage() for r in caplog.records if r.name == NOTIFICATIONS]
    assert len(notes) == 1 and "drift: Shifty: drift in" in notes[0] and request.run_key in notes[0]

    caplog.clear()
    with caplog.at_level(logging.INFO, logger=NOTIFICATIONS):
        unchanged = location.drift_tick(instance, cursor=first.cursor)  # no new evaluation: nothing to do
        location.check(instance)
        second = location.drift_tick(instance, cursor=unchanged.cursor)
        location.check(instance)
        # A restarted daemon: a new context (no state but the saved cursor) and a new registry client.
        restarted = location.drift_tick(
            instance, cursor=second.cursor,
            registry=ModelRegistry(tracking_uri=tracking_uri, store=ArcticStore(uri=location.arctic.uri)),
        )
    assert unchanged.run_requests == [] and "no new drift check" in unchanged.skip_reason.skip_message
    # The same run key on every drift evaluation of the event: Dagster launches the run once.
    assert [r.run_key for r in second.run_requests] == [request.run_key]
    assert [r.run_key for r in restarted.run_requests] == [request.run_key]
    assert not [r for r in caplog.records if r.name == NOTIFICATIONS]  # notified once per event
    state = json.loads(restarted.cursor)["models"]["Shifty"]
    assert state["run_key"] == request.run_key and state["notified"]


def test_a_drift_of_a_former_champion_requests_nothing(tmp_path, tracking_uri, instance):
    location = Location(tmp_path, tracking_uri, "Replaced")
    append_shifted_market(location.arctic, location.end, days=2, factor=4.0)
    assert metadata(location.check(instance))["band"] == "drift"
    newer = register_version(location.registry, location.spec, location.arctic, TRAIN_START, location.end)
    make_champion(location.registry, "Replaced", newer)
    result = location.drift_tick(instance)
    assert result.run_requests == []
    assert f"is of v{location.champion}, the champion is now v{newer}" in result.skip_reason.skip_message


def test_a_model_without_a_champion_is_passed_over_by_the_schedule_and_its_check_says_why(tmp_path, tracking_uri, instance):
    location = Location(tmp_path, tracking_uri, "Untrained", champion=False)
    skipped = location.schedule_tick(instance)
    assert skipped.run_requests == [] and skipped.skip_message == "Untrained: no champion"
    with pytest.raises(AssertionError, match="drift check of Untrained: .*champion"):
        location.check(instance)  # run by hand from the UI
    result = location.drift_tick(instance)
    assert result.run_requests == [] and "Untrained: no drift check evaluated yet" in result.skip_reason.skip_message


def test_an_unreachable_registry_skips_the_tick_with_its_reason(tmp_path, tracking_uri, instance, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    location = Location(tmp_path, tracking_uri, "Offline")
    append_shifted_market(location.arctic, location.end, days=2, factor=4.0)
    assert metadata(location.check(instance))["band"] == "drift"
    address = f"http://127.0.0.1:{free_port()}"
    down = ModelRegistry(tracking_uri=address, store=location.arctic)
    started = time.monotonic()
    schedule = location.schedule_tick(instance, registry=down)
    result = location.drift_tick(instance, cursor='{"models": {}}', registry=down)
    challenger = location.tick("challenger_sensor", instance, registry=down)
    with pytest.raises(AssertionError, match=f"drift check of Offline: RegistryUnavailableError: .*{address}"):
        location.check(instance, registry=down)
    assert time.monotonic() - started < 30
    assert f"MLflow registry at {address} is unreachable" in schedule.skip_message
    assert isinstance(result, dg.SkipReason)
    assert f"MLflow registry at {address} is unreachable" in result.skip_message
    assert isinstance(challenger, dg.SkipReason) and address in challenger.skip_message
    # The registry back: the drift not yet reacted to is reacted to.
    assert len(location.drift_tick(instance, cursor='{"models": {}}').run_requests) == 1


@pytest.mark.parametrize("seconds, cron", [(60, "* * * * *"), (300, "*/5 * * * *"), (3600, "0 */1 * * *"),
                                           (21600, "0 */6 * * *"), (86400, "0 0 * * *")])
def test_the_drift_interval_becomes_a_cron(seconds, cron):
    assert drift_cron(seconds) == cron


@pytest.mark.parametrize("value, message", [
    ("6h", "TRADAI_DRIFT_INTERVAL_SECONDS='6h': Input should be a valid integer"),
    ("0", "TRADAI_DRIFT_INTERVAL_SECONDS='0': Input should be greater than or equal to 1"),
    ("45", "TRADAI_DRIFT_INTERVAL_SECONDS=45: the drift schedule needs whole minutes that divide an hour"),
    ("25200", "TRADAI_DRIFT_INTERVAL_SECONDS=25200: the drift schedule needs"),
])
def test_a_bad_drift_interval_is_refused_naming_the_variable(tmp_path, monkeypatch, value, message):
    monkeypatch.setenv("TRADAI_DRIFT_INTERVAL_SECONDS", value)
    with pytest.raises(SettingsError, match=re.escape(message)):
        build_model_drift([write_toy_strategy(tmp_path, "Interval")])


def test_a_bad_challenger_interval_is_refused_naming_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADAI_CHALLENGER_INTERVAL_SECONDS", "five minutes")
    with pytest.raises(SettingsError, match="TRADAI_CHALLENGER_INTERVAL_SECONDS='five minutes': Input should be a valid integer"):
        build_model_sensors([write_toy_strategy(tmp_path, "Interval")], [])


def test_a_new_challenger_gets_one_evaluation(tmp_path, tracking_uri, instance):
    location = Location(tmp_path, tracking_uri, "Contender")
    version = register_version(location.registry, location.spec, location.arctic, TRAIN_START, location.end - pd.Timedelta(days=2),
                               shuffle_labels=3)
    assert isinstance(location.tick("challenger_sensor", instance), dg.SkipReason)  # no challenger yet
    location.registry.set_challenger("Contender", version, trigger="test")
    (request,) = location.tick("challenger_sensor", instance)
    assert request.run_key == f"evaluate:Contender:v{version}" and request.job_name == "evaluate_challenger"
    assert request.run_config["ops"]["backtest_and_decide"]["config"]["model"] == "Contender"
    location.registry.record_decision("Contender", {"outcome": "keep", "p_value": 0.4}, trigger="test")
    skipped = location.tick("challenger_sensor", instance)
    assert isinstance(skipped, dg.SkipReason) and "already decided (keep)" in skipped.skip_message


def test_a_failed_run_is_notified(instance, caplog):
    @dg.op
    def broken():
        raise RuntimeError("candles went missing")

    @dg.job
    def nightly():
        broken()

    result = nightly.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    (sensor,) = [s for s in build_model_sensors([], train_jobs([])) if s.name == "run_failure_notifier"]
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name, dagster_event=result.get_run_failure_event(), dagster_instance=instance,
        dagster_run=instance.get_run_by_id(result.run_id), resources={"notifier": Notifier()},
    ).for_run_failure()
    with caplog.at_level(logging.INFO, logger=NOTIFICATIONS):
        sensor(context)
    (note,) = [r for r in caplog.records if r.name == NOTIFICATIONS]
    text = note.getMessage()
    assert note.levelno == logging.ERROR and "run_failure" in text
    assert result.run_id in text and "nightly" in text and "candles went missing" in text


@pytest.mark.integration
def test_a_drift_check_and_tick_through_a_real_mlflow_server(tmp_path):
    with mlflow_server(tmp_path / "server") as server, dg.instance_for_test() as instance:
        location_root = tmp_path / "location"
        arctic = ArcticStore(uri=f"lmdb://{location_root / 'arctic'}")
        spec = write_toy_strategy(location_root / "strategies", "Served")
        end = store_stationary_market(arctic, days=8)
        server.wait_ready()
        registry = ModelRegistry(tracking_uri=server.url, store=arctic)
        champion = register_version(registry, spec, arctic, TRAIN_START, end - pd.Timedelta(days=2))
        make_champion(registry, "Served", champion)
        append_shifted_market(arctic, end)
        checks, jobs, _ = build_model_drift([spec])
        defs = dg.Definitions(asset_checks=checks, jobs=jobs, resources={"model_registry": registry, "arctic": arctic})
        run = defs.resolve_job_def(DRIFT_CHECKS_JOB).execute_in_process(instance=instance)
        (evaluation,) = run.get_asset_check_evaluations()
        assert metadata(evaluation)["champion_version"] == champion and not evaluation.passed
        (sensor,) = [s for s in build_model_sensors([spec], train_jobs([spec])) if s.name == "drift_sensor"]
        with dg.build_sensor_context(instance=instance, resources={
                "model_registry": registry, "notifier": Notifier()}) as context:
            result = sensor(context)
        (request,) = result.run_requests
        assert request.run_key.startswith(f"drift:Served:v{champion}:")
