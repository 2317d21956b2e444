"""The model sensors against a real Dagster instance, MLflow on SQLite (once a real server) and ArcticDB on
LMDB: drift requests a retraining once per event, a stationary market does not; challengers get one
evaluation; an unreachable registry skips with its reason; failed runs are notified."""

import json
import logging
import time

import dagster as dg
import pandas as pd
import pytest

from resources.arctic import ArcticStore
from resources.model_registry import ModelRegistry
from resources.notifier import Notifier
from sensors.models import DEFAULT_DRIFT_INTERVAL, build_model_sensors
from tests.model_lifecycle_support import (
    TRAIN_START,
    append_shifted_market,
    make_champion,
    register_version,
    store_stationary_market,
    write_toy_strategy,
)
from tests.servers import free_port, mlflow_server
from tradai_assets.model_lifecycle import train_jobs
from tradai_core.keys import model_key

NOTIFICATIONS = "tradai.notifications"


class Location:
    """A toy model strategy on synthetic candles, a champion trained on all but the last two days."""

    def __init__(self, root, tracking_uri, name, champion=True, clock=time.time):
        self.arctic = ArcticStore(uri=f"lmdb://{root / 'arctic'}")
        self.registry = ModelRegistry(tracking_uri=tracking_uri, store=self.arctic)
        self.spec = write_toy_strategy(root / "strategies", name)
        self.end = store_stationary_market(self.arctic, days=8)
        self.champion = None
        if champion:
            self.champion = register_version(self.registry, self.spec, self.arctic, TRAIN_START, self.end - pd.Timedelta(days=2))
            make_champion(self.registry, self.spec.name, self.champion)
        self.sensors = {s.name: s for s in build_model_sensors([self.spec], train_jobs([self.spec]), clock=clock)}

    def tick(self, sensor, instance, cursor=None, registry=None):
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources={
            "model_registry": registry or self.registry, "arctic": self.arctic, "notifier": Notifier(),
        }) as context:
            return self.sensors[sensor](context)

    def drift_tick(self, instance, cursor=None, registry=None):
        return self.tick("drift_sensor", instance, cursor, registry)


def observation(result) -> dict:
    (event,) = result.asset_events
    assert event.asset_key == model_key(event.asset_key.path[1])
    return {k: v.value for k, v in event.metadata.items()}


def test_a_stationary_market_is_observed_without_a_retraining(tmp_path, tracking_uri, instance, caplog):
    location = Location(tmp_path, tracking_uri, "Calm")
    with caplog.at_level(logging.INFO, logger=NOTIFICATIONS):
        result = location.drift_tick(instance)
    assert result.run_requests == []
    meta = observation(result)
    assert meta["worst_band"] == "fine" and meta["champion_version"] == location.champion
    table = {r.data["feature"]: r.data for r in meta["psi"].records}
    assert set(table) == {"ret_1", "ret_6", "range", "prediction"}
    assert all(r["psi"] < 0.1 and r["band"] == "fine" for r in table.values())
    assert not [r for r in caplog.records if "drift" in r.getMessage()]
    assert json.loads(result.cursor)["models"]["Calm"]["band"] == "fine"


def test_a_shift_requests_one_retraining_per_drift_event_and_survives_a_restart(tmp_path, tracking_uri, instance, caplog,
                                                                               clock):
    location = Location(tmp_path, tracking_uri, "Shifty", clock=clock.time)
    append_shifted_market(location.arctic, location.end, days=2, factor=4.0)
    with caplog.at_level(logging.INFO, logger=NOTIFICATIONS):
        first = location.drift_tick(instance)
    (request,) = first.run_requests
    assert request.job_name == "train_Shifty"
    assert request.run_key.startswith(f"drift:Shifty:v{location.champion}:")
    assert request.tags["tradai/trigger"] == "drift_sensor"
    meta = observation(first)
    assert meta["worst_band"] == "drift"
    assert "range" in meta["drifting_features"] and "ret_1" in meta["drifting_features"]
    notes = [r.getMessage() for r in caplog.records if r.name == NOTIFICATIONS]
    assert len(notes) == 1 and "drift: Shifty: drift in" in notes[0] and request.run_key in notes[0]

    caplog.clear()
    clock.advance(DEFAULT_DRIFT_INTERVAL)  # the next tick, with a later label
    with caplog.at_level(logging.INFO, logger=NOTIFICATIONS):
        second = location.drift_tick(instance, cursor=first.cursor)
        # A restarted daemon: a new context (no state but the saved cursor) and a new registry client.
        restarted = location.drift_tick(
            instance, cursor=second.cursor,
            registry=ModelRegistry(tracking_uri=tracking_uri, store=ArcticStore(uri=location.arctic.uri)),
        )
    # The same run key on every tick of the event: Dagster launches the run once.
    assert [r.run_key for r in second.run_requests] == [request.run_key]
    assert [r.run_key for r in restarted.run_requests] == [request.run_key]
    assert not [r for r in caplog.records if r.name == NOTIFICATIONS]  # notified once per event
    state = json.loads(restarted.cursor)["models"]["Shifty"]
    assert state["run_key"] == request.run_key and state["notified"]


def test_a_model_without_a_champion_is_skipped_with_a_reason(tmp_path, tracking_uri, instance):
    location = Location(tmp_path, tracking_uri, "Untrained", champion=False)
    result = location.drift_tick(instance)
    assert result.run_requests == [] and result.asset_events == []
    assert "Untrained" in result.skip_reason.skip_message and "champion" in result.skip_reason.skip_message


def test_an_unreachable_registry_skips_the_tick_with_its_reason(tmp_path, tracking_uri, instance, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    location = Location(tmp_path, tracking_uri, "Offline", champion=False)
    address = f"http://127.0.0.1:{free_port()}"
    down = ModelRegistry(tracking_uri=address, store=location.arctic)
    started = time.monotonic()
    result = location.drift_tick(instance, cursor='{"models": {}}', registry=down)
    challenger = location.tick("challenger_sensor", instance, registry=down)
    assert time.monotonic() - started < 20
    assert isinstance(result, dg.SkipReason)
    assert f"MLflow registry at {address} is unreachable" in result.skip_message
    assert isinstance(challenger, dg.SkipReason) and address in challenger.skip_message


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
def test_a_drift_tick_through_a_real_mlflow_server(tmp_path):
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
        (sensor,) = [s for s in build_model_sensors([spec], train_jobs([spec])) if s.name == "drift_sensor"]
        with dg.build_sensor_context(instance=instance, resources={
                "model_registry": registry, "arctic": arctic, "notifier": Notifier()}) as context:
            result = sensor(context)
        (request,) = result.run_requests
        assert request.run_key.startswith(f"drift:Served:v{champion}:")
        assert observation(result)["champion_version"] == champion
