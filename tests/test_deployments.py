"""Deployments as assets, through real Dagster runs: local bots in a temporary home, ECS services on a
moto server; the interlocks, the failed-backtest refusal, bad input, ECS faults and the kill switch."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import dagster as dg
import psutil
import pytest

from tests.deployment_support import (
    EXCHANGE_KEY,
    EXCHANGE_SECRET,
    aws_error_response,
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
    write_deployments,
)
from tests.servers import wait_for
from tradai_assets.deployments import (
    DesiredState,
    UnknownStrategyError,
    build_kill_switch_job,
    check_deployment,
    deployment_key,
    kill_all_live,
    latest_deployment,
    strategy_id,
)


@pytest.fixture
def exchange_secret(aws_env) -> str:
    name = unique("tradai/dev/exchange/binance")
    aws_env.client("secretsmanager").create_secret(
        Name=name, SecretString=json.dumps({"key": EXCHANGE_KEY, "secret": EXCHANGE_SECRET})
    )
    return name


@pytest.fixture
def local_bots(tradai_home: Path, tmp_path: Path):
    services = local_services(tradai_home, stand_in(tmp_path / "fake-tradai", "exec sleep 300"))
    yield services
    for state in services.list_bots():
        services.delete(state.strategy_id)


def failure(excinfo: pytest.ExceptionInfo) -> str:
    return excinfo.value.description if isinstance(excinfo.value, dg.Failure) else str(excinfo.value)


# Local ----------------------------------------------------------------------------------------------


def test_a_local_dry_run_deployment_starts_once_is_left_alone_unchanged_and_stops(
    memory_instance, backtest_store, deployments_file, local_bots
):
    name = "SampleStrategy"
    specs = [strategy(name)]
    write_deployments(deployments_file, {name: {"mode": "dry_run", "stake_amount": 0.01, "pairs": ["ETH/BTC"]}})
    store_config(backtest_store, name)
    record_backtest(memory_instance, name)
    resources = {"backtest_store": backtest_store, "bot_services": local_bots}

    first = materialization(deploy(memory_instance, specs, name, resources))

    assert (first["mode"], first["strategy_id"], first["trigger"]) == ("dry_run", "sample-strategy", "manual")
    assert first["actions"] == ["started supervisor"]
    assert psutil.pid_exists(first["supervisor_pid"])
    config_path = Path(first["config_path"])
    assert config_path.parent == local_bots.bot_dir("sample-strategy")
    written = json.loads(config_path.read_text())
    assert written["dry_run"] is True and written["stake_amount"] == 0.01
    assert written["exchange"]["pair_whitelist"] == ["ETH/BTC"]
    assert "timerange" not in written
    wait_for(lambda: local_bots.describe("sample-strategy").status == "running", 10, "the bot starting")

    again = materialization(deploy(memory_instance, specs, name, resources))
    assert again["actions"] == []
    assert again["supervisor_pid"] == first["supervisor_pid"]
    assert again["config_path"] == first["config_path"]

    stopped = materialization(deploy(memory_instance, specs, name, resources, mode="stopped"))
    assert (stopped["mode"], stopped["status"], stopped["actions"]) == ("stopped", "stopped", ["stopped"])
    assert not psutil.pid_exists(first["supervisor_pid"])


def test_a_strategy_not_in_deployments_yaml_is_stopped_and_nothing_runs(memory_instance, backtest_store, deployments_file, local_bots):
    specs = [strategy("SampleStrategy")]
    meta = materialization(deploy(memory_instance, specs, "SampleStrategy", {"backtest_store": backtest_store, "bot_services": local_bots}))
    assert (meta["mode"], meta["status"]) == ("stopped", "absent")
    assert local_bots.list_bots() == []


# ECS -------------------------------------------------------------------------------------------------


def test_ecs_deployment_creates_changes_nothing_when_unchanged_updates_and_stops_without_leaking_keys(
    memory_instance, backtest_store, deployments_file, ecs, exchange_secret, aws_env, monkeypatch, caplog
):
    caplog.set_level(logging.DEBUG)
    name = unique("Live")
    bot_id = strategy_id(name)
    specs = [strategy(name, live=True)]
    monkeypatch.setenv("TRADAI_ALLOW_LIVE", "true")
    write_deployments(deployments_file, {name: {"mode": "live", "exchange_secret": exchange_secret, "stake_amount": 0.05}})
    store_config(backtest_store, name)
    record_backtest(memory_instance, name)
    resources = {"backtest_store": backtest_store, "bot_services": ecs}

    created = materialization(deploy(memory_instance, specs, name, resources))
    assert (created["status"], created["mode"], created["desired_count"]) == ("ACTIVE", "live", 1)
    assert created["actions"][-1] == "created service"
    assert set(created["aws_write_calls"]) == {"PutObject", "RegisterTaskDefinition", "CreateService"}
    assert created["config_path"].startswith(f"s3://{ecs.configs_bucket_name}/bots/{bot_id}/config-")
    assert s3_json(aws_env, created["config_path"])["dry_run"] is False
    environment = task_environment(aws_env, created_arn(aws_env, ecs, bot_id))
    assert environment["CONFIG_PATH"] == created["config_path"]
    assert environment["TRADING_MODE"] == "live"

    unchanged = materialization(deploy(memory_instance, specs, name, resources))
    assert unchanged["aws_write_calls"] == {}
    assert unchanged["actions"] == []
    assert unchanged["task_definition_revision"] == created["task_definition_revision"]

    updated = materialization(deploy(memory_instance, specs, name, resources, stake_amount="0.02"))
    assert updated["task_definition_revision"] == created["task_definition_revision"] + 1
    assert "updated service: taskDefinition" in updated["actions"]

    stopped = materialization(deploy(memory_instance, specs, name, resources, mode="stopped"))
    assert (stopped["status"], stopped["desired_count"], stopped["actions"]) == (
        "ACTIVE", 0, ["updated service: desiredCount"]
    )

    # The exchange keys are nowhere: task definitions, metadata, the run's event log, captured logs.
    family = f"tradai-dev-bot-{bot_id}"
    for revision in range(1, updated["task_definition_revision"] + 1):
        definition = aws_env.client("ecs").describe_task_definition(taskDefinition=f"{family}:{revision}", include=["TAGS"])
        assert EXCHANGE_KEY not in json.dumps(definition, default=str)
        assert EXCHANGE_SECRET not in json.dumps(definition, default=str)
    for record in memory_instance.fetch_materializations(deployment_key(name), limit=10).records:
        text = json.dumps({k: str(v.value) for k, v in record.asset_materialization.metadata.items()})
        assert EXCHANGE_KEY not in text and EXCHANGE_SECRET not in text
    for run in memory_instance.get_runs():
        logs = "\n".join(str(e.message) + str(e.dagster_event) for e in memory_instance.all_logs(run.run_id))
        assert EXCHANGE_KEY not in logs and EXCHANGE_SECRET not in logs
    assert EXCHANGE_KEY not in caplog.text and EXCHANGE_SECRET not in caplog.text


def created_arn(moto, ecs, bot_id: str) -> str:
    (service,) = moto.client("ecs").describe_services(cluster=ecs.cluster_name, services=[f"bot-{bot_id}"])["services"]
    return service["taskDefinition"]


def test_ecs_throttling_is_retried_and_a_permanent_error_fails_the_asset_naming_the_service(
    memory_instance, backtest_store, deployments_file, ecs, inject, sleeps
):
    name = unique("Dry")
    specs = [strategy(name)]
    write_deployments(deployments_file, {name: {"mode": "dry_run"}})
    store_config(backtest_store, name)
    record_backtest(memory_instance, name)
    resources = {"backtest_store": backtest_store, "bot_services": ecs}

    # A resource is copied into each run: inject the faults into the copy through botocore's class-level hooks.
    answered = inject("CreateService", "ThrottlingException", times=2)
    created = materialization(deploy(memory_instance, specs, name, resources))
    assert created["status"] == "ACTIVE" and len(answered) == 2 and len(sleeps) == 2  # botocore's backoff

    inject("UpdateService", "InvalidParameterException", times=100)
    with pytest.raises(dg.Failure) as excinfo:
        deploy(memory_instance, specs, name, resources, stake_amount="0.5")
    assert f"update_service for service bot-{strategy_id(name)} in cluster {ecs.cluster_name}" in failure(excinfo)
    assert "InvalidParameterException" in failure(excinfo)


@pytest.fixture
def inject():
    """Answer the next ``times`` sends of ``operation`` (botocore's retries included) of every ECS client
    with ``code`` (a resource is copied into each run, so the faults go in through the default session's
    hooks, removed after the test)."""
    import boto3

    session = boto3._get_default_session()
    registered = []

    def injector(operation: str, code: str, times: int) -> list[int]:
        answered: list[int] = []

        def answer(**_):
            if len(answered) >= times:
                return None
            answered.append(1)
            return aws_error_response(code)

        event = f"before-send.ecs.{operation}"
        session.events.register(event, answer)
        registered.append((event, answer))
        return answered

    yield injector
    for event, answer in registered:
        session.events.unregister(event, answer)


# Interlocks -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("live", "allow", "secret", "missing"),
    [
        (False, "true", "existing", "does not allow live trading (its class sets no `live = True`"),
        (True, None, "existing", "TRADAI_ALLOW_LIVE is not 'true'"),
        (True, "false", "existing", "TRADAI_ALLOW_LIVE is not 'true'"),
        (True, "true", None, "no exchange_secret is set"),
        (True, "true", "tradai/dev/exchange/absent", "exchange secret 'tradai/dev/exchange/absent' does not exist"),
    ],
)
def test_each_live_interlock_refuses_by_name_and_deploys_nothing(
    live, allow, secret, missing, memory_instance, backtest_store, deployments_file, ecs, exchange_secret, aws_env, monkeypatch
):
    name = unique("Guarded")
    specs = [strategy(name, live=live)]
    if allow is not None:
        monkeypatch.setenv("TRADAI_ALLOW_LIVE", allow)
    store_config(backtest_store, name)
    record_backtest(memory_instance, name)
    config = {"mode": "live", **({"exchange_secret": exchange_secret if secret == "existing" else secret} if secret else {})}

    with pytest.raises(dg.Failure) as excinfo:
        deploy(memory_instance, specs, name, {"backtest_store": backtest_store, "bot_services": ecs}, **config)

    assert f"live deployment of {name} refused" in failure(excinfo)
    assert missing in failure(excinfo)
    assert ecs.describe(strategy_id(name)).status == "absent"
    listed = aws_env.client("s3").list_objects_v2(Bucket=ecs.configs_bucket_name).get("Contents", [])
    assert listed == []


def test_the_local_backend_refuses_live_and_every_missing_interlock_is_named_at_once(
    memory_instance, backtest_store, deployments_file, local_bots
):
    name = "SampleStrategy"
    store_config(backtest_store, name)
    record_backtest(memory_instance, name)
    with pytest.raises(dg.Failure) as excinfo:
        deploy(memory_instance, [strategy(name)], name, {"backtest_store": backtest_store, "bot_services": local_bots},
               mode="live", exchange_secret="tradai/dev/exchange/binance")
    message = failure(excinfo)
    assert "does not allow live trading" in message
    assert "TRADAI_ALLOW_LIVE is not 'true'" in message
    assert "the local backend runs dry-run bots only" in message
    assert local_bots.list_bots() == []


def test_a_failed_latest_backtest_is_refused_unless_forced(memory_instance, backtest_store, deployments_file, local_bots):
    name = "SampleStrategy"
    specs = [strategy(name)]
    resources = {"backtest_store": backtest_store, "bot_services": local_bots}
    store_config(backtest_store, name)

    with pytest.raises(dg.Failure, match="has never been backtested"):
        deploy(memory_instance, specs, name, resources, mode="dry_run")

    record_backtest(memory_instance, name, succeed=True)
    failed = record_backtest(memory_instance, name, succeed=False)
    with pytest.raises(dg.Failure) as excinfo:
        deploy(memory_instance, specs, name, resources, mode="dry_run")
    assert f"the latest backtest of {name} (run {failed.run_id}) failure; deploy with force=True" in failure(excinfo)
    assert local_bots.list_bots() == []

    forced = materialization(deploy(memory_instance, specs, name, resources, mode="dry_run", force=True))
    assert forced["forced"] is True and forced["actions"] == ["started supervisor"]

    record_backtest(memory_instance, name, succeed=True)  # a later success clears the refusal, and nothing changed
    assert materialization(deploy(memory_instance, specs, name, resources, mode="dry_run"))["actions"] == []


def test_unknown_strategies_and_bad_desired_states_are_clear_errors(memory_instance, deployments_file, local_bots, backtest_store):
    specs = [strategy("SampleStrategy")]
    with pytest.raises(UnknownStrategyError, match="unknown strategy 'Nope'; known: SampleStrategy"):
        check_deployment("Nope", specs, DesiredState(mode="dry_run"), bot_services=local_bots, instance=memory_instance)

    write_deployments(deployments_file, {"Typo": {"mode": "dry_run"}})
    with pytest.raises(dg.Failure, match=r"unknown strategy Typo; known: SampleStrategy"):
        deploy(memory_instance, specs, "SampleStrategy", {"backtest_store": backtest_store, "bot_services": local_bots})

    write_deployments(deployments_file, {"SampleStrategy": {"mode": "paper"}})
    with pytest.raises(dg.Failure, match="mode 'paper' must be one of dry_run, live, stopped"):
        deploy(memory_instance, specs, "SampleStrategy", {"backtest_store": backtest_store, "bot_services": local_bots})

    write_deployments(deployments_file, {})
    with pytest.raises(dg.Failure, match="stake_amount '-1' must be a positive number"):
        deploy(memory_instance, specs, "SampleStrategy", {"backtest_store": backtest_store, "bot_services": local_bots},
               mode="dry_run", stake_amount="-1")


def test_a_missing_secret_of_a_dry_run_bot_fails_the_asset_naming_it(memory_instance, backtest_store, deployments_file, ecs):
    name = unique("Dry")
    store_config(backtest_store, name)
    record_backtest(memory_instance, name)
    with pytest.raises(dg.Failure, match="exchange secret 'tradai/dev/exchange/nope' does not exist"):
        deploy(memory_instance, [strategy(name)], name, {"backtest_store": backtest_store, "bot_services": ecs},
               mode="dry_run", exchange_secret="tradai/dev/exchange/nope")
    assert ecs.describe(strategy_id(name)).status == "absent"


# Kill switch ------------------------------------------------------------------------------------------


def test_the_kill_switch_stops_live_bots_leaves_dry_run_ones_and_records_the_stop(
    memory_instance, backtest_store, deployments_file, ecs, exchange_secret, monkeypatch
):
    live, dry = unique("Live"), unique("Dry")
    specs = [strategy(live, live=True), strategy(dry)]
    monkeypatch.setenv("TRADAI_ALLOW_LIVE", "true")
    write_deployments(deployments_file, {live: {"mode": "live", "exchange_secret": exchange_secret},
                                         dry: {"mode": "dry_run"}})
    resources = {"backtest_store": backtest_store, "bot_services": ecs}
    for name in (live, dry):
        store_config(backtest_store, name)
        record_backtest(memory_instance, name)
        deploy(memory_instance, specs, name, resources)
    assert {s.strategy_id: s.trading_mode for s in ecs.list_bots()} == {strategy_id(live): "live", strategy_id(dry): "dry_run"}

    result = build_kill_switch_job(specs).execute_in_process(instance=memory_instance, resources={"bot_services": ecs})

    assert result.success
    states = {s.strategy_id: s for s in ecs.list_bots()}
    assert states[strategy_id(live)].desired_count == 0
    assert states[strategy_id(dry)].desired_count == 1
    assert latest_deployment(memory_instance, live)[1]["mode"] == "stopped"
    assert latest_deployment(memory_instance, live)[1]["trigger"] == "kill_switch"
    assert latest_deployment(memory_instance, dry)[1]["mode"] == "dry_run"

    # Pulled again it has nothing left to stop; with include_dry_run it stops the dry-run bot too.
    assert list(kill_all_live(ecs)) == []
    report = kill_all_live(ecs, include_dry_run=True)
    assert [s.strategy_id for s in report] == [strategy_id(dry)]
    assert all(s.desired_count == 0 for s in ecs.list_bots())


def test_the_kill_switch_stops_local_dry_run_bots_only_when_asked(memory_instance, backtest_store, deployments_file, local_bots):
    name = "SampleStrategy"
    specs = [strategy(name)]
    store_config(backtest_store, name)
    record_backtest(memory_instance, name)
    deploy(memory_instance, specs, name, {"backtest_store": backtest_store, "bot_services": local_bots}, mode="dry_run")

    wait_for(lambda: local_bots.describe("sample-strategy").status == "running", 10, "the bot starting")
    assert list(kill_all_live(local_bots)) == []
    assert local_bots.describe("sample-strategy").status == "running"
    report = kill_all_live(local_bots, include_dry_run=True)
    assert [s.status for s in report] == ["stopped"]


def test_image_is_required_on_ecs(memory_instance, backtest_store, deployments_file, aws_env, network):
    name = unique("Dry")
    store_config(backtest_store, name)
    record_backtest(memory_instance, name)
    no_image = ecs_services(aws_env, new_cluster(aws_env), network, new_bucket(aws_env), image=None)
    with pytest.raises(dg.Failure, match="set the bot_services resource's image"):
        deploy(memory_instance, [strategy(name)], name, {"backtest_store": backtest_store, "bot_services": no_image}, mode="dry_run")
