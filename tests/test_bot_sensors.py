"""The heartbeat sensor (stale heartbeats, one alert an episode, limited restarts, crash loops) and the
model hot-swap sensor (one redeploy per champion move), on real deployments: ECS on a moto server,
local supervised processes, MLflow's registry on SQLite."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from resources.arctic import ArcticStore
from resources.model_registry import ModelRegistry
from resources.notifier import Notifier
from resources.trading_state import Heartbeat, SqliteTradingState
from sensors.bots import STALE_AFTER_SECONDS, build_bot_sensors, build_heartbeat_sensor, build_hotswap_sensor
from tests.deployment_support import (
    deploy,
    ecs_services,
    local_services,
    materialization,
    new_bucket,
    new_cluster,
    record_backtest,
    s3_json,
    stand_in,
    store_config,
    strategy,
    task_environment,
    unique,
    vpc_network,
    write_deployments,
)
from tests.servers import moto_server, wait_for
from tradai_assets.deployments import deployment_key, strategy_id


@pytest.fixture
def trading_state(tmp_path: Path) -> SqliteTradingState:
    return SqliteTradingState(path=str(tmp_path / "state.db"))


@pytest.fixture
def alerts(caplog: pytest.LogCaptureFixture):
    """The notifications sent (the notifier's log channel; no other channel is configured)."""
    caplog.set_level(logging.INFO, logger="tradai.notifications")

    def sent() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "tradai.notifications"]

    return sent


def tick(sensor: dg.SensorDefinition, instance, resources: dict, cursor: str | None = None) -> dg.SensorResult:
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        return sensor(context)


def observations(result: dg.SensorResult) -> list[dict]:
    return [{k: v.value for k, v in e.metadata.items()} for e in result.asset_events]


def beat(state: SqliteTradingState, bot_id: str, at: datetime, status: str = "running") -> None:
    state.put(Heartbeat(bot_id, status, at, open_trades=0, profit=0.0))


def deployed_dry_run(instance, backtest_store, deployments_file, bot_services, name: str, **config):
    specs = [strategy(name, model=config.pop("model", False))]
    write_deployments(deployments_file, {name: {"mode": "dry_run", **config}})
    store_config(backtest_store, name)
    record_backtest(instance, name)
    return specs


# The shipped limit; the clock moves past it in one step, well clear of the seconds a deployment takes.
STALE = STALE_AFTER_SECONDS
LATER = STALE + 60


def test_a_stale_heartbeat_marks_the_bot_unhealthy_and_alerts_once_an_episode(
    memory_instance, backtest_store, deployments_file, ecs, trading_state, alerts, clock
):
    name = unique("Beat")
    bot_id = strategy_id(name)
    specs = deployed_dry_run(memory_instance, backtest_store, deployments_file, ecs, name)
    deploy(memory_instance, specs, name, {"backtest_store": backtest_store, "bot_services": ecs})
    sensor = build_heartbeat_sensor(specs, stale_after_seconds=STALE, auto_restarts=0, clock=clock.now)
    resources = {"trading_state": trading_state, "bot_services": ecs, "notifier": Notifier()}

    beat(trading_state, bot_id, clock.now() - timedelta(minutes=10))
    clock.advance(LATER)  # the deployment itself is now older than the limit too
    first = tick(sensor, memory_instance, resources)

    (seen,) = observations(first)
    assert first.asset_events[0].asset_key == deployment_key(name)
    assert seen["health"] == "unhealthy" and seen["heartbeat_age_seconds"] >= STALE
    assert f"older than {STALE:g} s" in seen["reason"] and "last heartbeat" in seen["reason"]
    assert len(alerts()) == 1 and f"bot {bot_id} ({name}) is unhealthy" in alerts()[0]
    assert first.run_requests == []

    second = tick(sensor, memory_instance, resources, first.cursor)
    assert observations(second) == [] and len(alerts()) == 1

    beat(trading_state, bot_id, clock.now())
    recovered = tick(sensor, memory_instance, resources, second.cursor)
    assert [o["health"] for o in observations(recovered)] == ["healthy"]

    clock.advance(LATER)
    again = tick(sensor, memory_instance, resources, recovered.cursor)
    assert [o["health"] for o in observations(again)] == ["unhealthy"]
    assert len(alerts()) == 2  # a new episode, a new alert


def test_auto_restart_redeploys_a_stale_bot_a_limited_number_of_times(
    memory_instance, backtest_store, deployments_file, ecs, trading_state, alerts, clock
):
    name = unique("Hung")
    specs = deployed_dry_run(memory_instance, backtest_store, deployments_file, ecs, name, stake_amount=0.01)
    deploy(memory_instance, specs, name, {"backtest_store": backtest_store, "bot_services": ecs})
    sensor = build_heartbeat_sensor(specs, stale_after_seconds=STALE, auto_restarts=1, clock=clock.now)
    resources = {"trading_state": trading_state, "bot_services": ecs, "notifier": Notifier()}
    clock.advance(LATER)  # no heartbeat since the deployment

    first = tick(sensor, memory_instance, resources)
    (request,) = first.run_requests
    assert request.run_key.startswith(f"restart:{name}:") and request.tags["tradai/trigger"] == "heartbeat"
    config = request.run_config["ops"][deployment_key(name).to_python_identifier()]["config"]
    assert config == {"mode": "dry_run", "stake_amount": "0.01", "force": False, "restart": True}

    restarted = materialization(deploy(memory_instance, specs, name, {"backtest_store": backtest_store, "bot_services": ecs},
                                       tags=request.tags, **config))
    assert restarted["trigger"] == "heartbeat"
    assert restarted["actions"] == ["updated service: desiredCount", "updated service: desiredCount"]

    clock.advance(LATER)  # the restarted bot never beats either
    second = tick(sensor, memory_instance, resources, first.cursor)
    assert second.run_requests == []  # the one restart this episode allows was used
    assert len(alerts()) == 1


def test_a_crash_looping_local_bot_alerts_once_and_is_not_restarted(
    memory_instance, backtest_store, deployments_file, tradai_home, tmp_path, trading_state, alerts
):
    name = "SampleStrategy"
    bots = local_services(tradai_home, stand_in(tmp_path / "crashing", "echo broken; exit 3"), max_restarts=1)
    specs = deployed_dry_run(memory_instance, backtest_store, deployments_file, bots, name)
    try:
        deploy(memory_instance, specs, name, {"backtest_store": backtest_store, "bot_services": bots})
        wait_for(lambda: bots.describe("sample-strategy").status == "failed", 15, "the supervisor giving up")
        sensor = build_heartbeat_sensor(specs, stale_after_seconds=180, auto_restarts=3)
        resources = {"trading_state": trading_state, "bot_services": bots, "notifier": Notifier()}

        first = tick(sensor, memory_instance, resources)
        second = tick(sensor, memory_instance, resources, first.cursor)
    finally:
        bots.delete("sample-strategy")

    (seen,) = observations(first)
    assert seen["health"] == "failed" and "supervisor gave up after 1 restart(s)" in seen["reason"]
    assert len(alerts()) == 1 and "is crash-looping" in alerts()[0]
    assert first.run_requests == [] and second.run_requests == []
    assert observations(second) == [] and len(alerts()) == 1


def test_a_crash_looping_ecs_bot_alerts_once_and_is_not_restarted(
    memory_instance, backtest_store, deployments_file, trading_state, alerts, aws_env
):
    # This moto server reports 3 failed tasks on every service's deployment, as ECS does for a task
    # that dies at start until the circuit breaker stops it.
    with moto_server(env={"MOTO_ECS_SERVICE_FAILED_TASKS": "3"}) as failing:
        ecs = ecs_services(failing, new_cluster(failing), vpc_network(failing), new_bucket(failing))
        name = unique("Crash")
        specs = deployed_dry_run(memory_instance, backtest_store, deployments_file, ecs, name)
        deploy(memory_instance, specs, name, {"backtest_store": backtest_store, "bot_services": ecs})
        state = ecs.describe(strategy_id(name))
        sensor = build_heartbeat_sensor(specs, stale_after_seconds=180, auto_restarts=3)
        resources = {"trading_state": trading_state, "bot_services": ecs, "notifier": Notifier()}
        first = tick(sensor, memory_instance, resources)
        second = tick(sensor, memory_instance, resources, first.cursor)

    assert (state.desired_count, state.failed_tasks, state.crash_looping) == (1, 3, True)
    (seen,) = observations(first)
    assert seen["health"] == "failed" and "ECS: 3 task(s) of the current deployment failed" in seen["reason"]
    assert len(alerts()) == 1 and "is crash-looping" in alerts()[0]
    assert first.run_requests == [] and second.run_requests == []  # a restart would only crash again
    assert observations(second) == [] and len(alerts()) == 1


# Hot-swap -----------------------------------------------------------------------------------------------


def register(tracking_uri: str, model: str, count: int, artifacts: Path) -> None:
    """``count`` versions of a registered model (the deployment and the sensor read only their numbers)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    client.create_registered_model(model)
    for n in range(count):
        (artifacts / f"v{n}").mkdir(parents=True)
        client.create_model_version(model, source=str(artifacts / f"v{n}"))


def test_a_champion_move_redeploys_a_running_model_bot_once_per_move(
    memory_instance, backtest_store, deployments_file, ecs, aws_env, tracking_uri, tmp_path
):
    name = unique("Model")
    registry = ModelRegistry(tracking_uri=tracking_uri, store=ArcticStore(uri=f"lmdb://{tmp_path / 'models'}"))
    register(tracking_uri, name, 2, tmp_path / 'artifacts')
    registry.set_challenger(name, 1, trigger="training")
    registry.record_decision(name, {"outcome": "promote"}, trigger="first model")
    specs = deployed_dry_run(memory_instance, backtest_store, deployments_file, ecs, name, model=True)
    resources = {"backtest_store": backtest_store, "bot_services": ecs, "model_registry": registry}

    first = materialization(deploy(memory_instance, specs, name, resources))
    assert (first["model_version"], first["previous_model_version"]) == (1, None)
    assert s3_json(aws_env, first["config_path"])["tradai_model"] == {
        "name": name, "version": 1, "tracking_uri": tracking_uri,
    }
    assert task_environment(aws_env, ecs.describe(strategy_id(name)).task_definition_arn)["TRADAI_MODEL_VERSION"] == "1"

    sensor = build_hotswap_sensor(specs)
    sensor_resources = {"model_registry": registry, "bot_services": ecs}
    quiet = tick(sensor, memory_instance, sensor_resources)
    assert quiet.run_requests == []  # the move to version 1 came before the deployment

    registry.set_challenger(name, 2, trigger="retraining")
    promoted = registry.record_decision(name, {"outcome": "promote"}, trigger="challenger sensor")
    moved = tick(sensor, memory_instance, sensor_resources, quiet.cursor)
    (request,) = moved.run_requests
    assert request.run_key == f"hotswap:{name}:{promoted.name.isoformat()}"
    assert request.tags["tradai/trigger"] == "hotswap"
    assert (request.tags["tradai/model_version_before"], request.tags["tradai/model_version"]) == ("1", "2")
    assert tick(sensor, memory_instance, sensor_resources, moved.cursor).run_requests == []

    config = request.run_config["ops"][deployment_key(name).to_python_identifier()]["config"]
    swapped = materialization(deploy(memory_instance, specs, name, resources, tags=request.tags, **config))
    assert (swapped["previous_model_version"], swapped["model_version"], swapped["trigger"]) == (1, 2, "hotswap")
    assert "updated service: taskDefinition" in swapped["actions"]
    assert task_environment(aws_env, ecs.describe(strategy_id(name)).task_definition_arn)["TRADAI_MODEL_VERSION"] == "2"

    rolled = registry.rollback(name, trigger="operator")
    back = tick(sensor, memory_instance, sensor_resources, moved.cursor)
    (request,) = back.run_requests
    assert request.run_key == f"hotswap:{name}:{rolled.name.isoformat()}"
    assert request.tags["tradai/model_event"] == "rollback" and request.tags["tradai/model_version"] == "1"


def test_a_stopped_model_bot_is_not_redeployed_and_the_sensors_build(
    memory_instance, backtest_store, deployments_file, ecs, tracking_uri, tmp_path
):
    name = unique("Idle")
    registry = ModelRegistry(tracking_uri=tracking_uri, store=ArcticStore(uri=f"lmdb://{tmp_path / 'models'}"))
    register(tracking_uri, name, 2, tmp_path / 'artifacts')
    registry.set_challenger(name, 1, trigger="training")
    registry.record_decision(name, {"outcome": "promote"}, trigger="first model")
    specs = [strategy(name, model=True)]
    materialization(deploy(memory_instance, specs, name, {"backtest_store": backtest_store, "bot_services": ecs,
                                                    "model_registry": registry}))  # not listed: stopped
    registry.set_challenger(name, 2, trigger="retraining")
    registry.record_decision(name, {"outcome": "promote"}, trigger="challenger sensor")

    result = tick(build_hotswap_sensor(specs), memory_instance, {"model_registry": registry, "bot_services": ecs})
    assert result.run_requests == []
    assert json.loads(result.cursor)[name]

    heartbeat, hotswap = build_bot_sensors(specs)
    assert (heartbeat.name, hotswap.name) == ("bot_heartbeat", "model_hotswap")
    assert heartbeat.default_status == dg.DefaultSensorStatus.RUNNING
    assert heartbeat.minimum_interval_seconds == 60
