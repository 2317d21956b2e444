"""Bots as ECS services against a moto server on 127.0.0.1: create, update, describe, stop, delete."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from resources import aws_contract
from resources.aws_contract import EnvVar
from resources.bot_services import BotServiceError, BotSpec, BotSpecError, EcsBotServices
from tests.deployment_support import EXCHANGE_KEY, EXCHANGE_SECRET, aws_error_response

REQUIRED_TAGS = {"Application", "Environment", "Service", "ManagedBy", "CostCenter", "Owner"}


@pytest.fixture
def services(aws_env, network, sleeps) -> EcsBotServices:
    cluster = f"tradai-test-{uuid.uuid4().hex[:8]}"
    aws_env.client("ecs").create_cluster(clusterName=cluster, capacityProviders=["FARGATE", "FARGATE_SPOT"])
    services = EcsBotServices(
        stack="dev",
        cluster=cluster,
        region=aws_env.region,
        endpoint_url=aws_env.url,
        execution_role_arn="arn:aws:iam::123456789012:role/tradai-dev-execution",
        task_role_arn="arn:aws:iam::123456789012:role/tradai-dev-bot",
        owner="quant-team",
        cost_center="research",
        **network,
    )
    return services


@pytest.fixture
def exchange_secret(aws_env) -> dict[str, str]:
    name = f"tradai/dev/exchange/binance-{uuid.uuid4().hex[:8]}"
    created = aws_env.client("secretsmanager").create_secret(
        Name=name, SecretString=json.dumps({"key": EXCHANGE_KEY, "secret": EXCHANGE_SECRET})
    )
    return {"name": name, "arn": created["ARN"]}


@pytest.fixture
def bot_id() -> str:
    """A strategy id of the test's own: task-definition families are account-wide, not per cluster."""
    return f"sample-{uuid.uuid4().hex[:8]}"


def spec(bot_id: str, secret: str | None, **changes: Any) -> BotSpec:
    fields: dict[str, Any] = {
        "strategy": "SampleStrategy",
        "strategy_id": bot_id,
        "mode": "live",
        "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/tradai-app-dev:abc123",
        "config_path": f"s3://tradai-configs-dev/bots/{bot_id}.json",
        "exchange_secret": secret,
        "stake_amount": 0.05,
        "pairs": ("ETH/BTC", "LTC/BTC"),
        "cpu": 512,
        "memory": 1024,
    }
    return BotSpec(**{**fields, **changes})


def capture(services: EcsBotServices, operation: str) -> list[dict[str, Any]]:
    """The parameters of every ``operation`` call the resource makes from now on."""
    seen: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        seen.append(json.loads(params["body"]))

    services.client("ecs").meta.events.register(f"before-call.ecs.{operation}", record)
    return seen


def fail(services: EcsBotServices, operation: str, code: str, times: int) -> list[int]:
    """Answer the next ``times`` sends of ``operation`` (first attempts and botocore's retries) with the
    AWS error ``code`` instead of sending them; botocore parses and retries it as it would AWS's answer."""
    answered: list[int] = []

    def answer(**_: Any):
        if len(answered) >= times:
            return None
        answered.append(1)
        return aws_error_response(code)

    services.client("ecs").meta.events.register(f"before-send.ecs.{operation}", answer)
    return answered


def task_definition(moto, arn: str) -> dict[str, Any]:
    described = moto.client("ecs").describe_task_definition(taskDefinition=arn, include=["TAGS"])
    return {**described["taskDefinition"], "tags": described["tags"]}


def test_a_live_bot_gets_a_fargate_service_with_the_contract_environment_and_secret_references(
    bot_id, services, exchange_secret, aws_env
):
    created = capture(services, "CreateService")
    state = services.reconcile(spec(bot_id, exchange_secret["name"]))

    assert state.status == "ACTIVE"
    assert state.service_name == f"bot-{bot_id}"
    assert (state.desired_count, state.revision, state.trading_mode) == (1, 1, "live")
    assert state.actions == (f"registered tradai-dev-bot-{bot_id}:1", "created service")

    definition = task_definition(aws_env, state.task_definition_arn)
    (container,) = definition["containerDefinitions"]
    environment = {e["name"]: e["value"] for e in container["environment"]}
    assert set(environment) == set(aws_contract.BOT_ENV) | set(aws_contract.BOT_FREQTRADE_OVERRIDES)
    assert environment[EnvVar.STRATEGY] == "SampleStrategy"
    assert environment[EnvVar.STRATEGY_ID] == bot_id
    assert environment[EnvVar.TRADING_MODE] == "live"
    assert environment[EnvVar.DYNAMODB_TABLE] == "tradai-trading-state-dev"
    assert environment[EnvVar.CONFIG_PATH] == f"s3://tradai-configs-dev/bots/{bot_id}.json"
    assert environment[EnvVar.ARCTICDB_S3_URI].startswith("s3s://s3.us-east-1.amazonaws.com:tradai-arcticdb-dev")
    assert environment[EnvVar.MLFLOW_TRACKING_URI] == "http://mlflow.tradai.internal:5000"
    assert environment[EnvVar.FREQTRADE_DRY_RUN] == "false"
    assert environment[EnvVar.FREQTRADE_STAKE_AMOUNT] == "0.05"
    assert json.loads(environment[EnvVar.FREQTRADE_PAIR_WHITELIST]) == ["ETH/BTC", "LTC/BTC"]

    secrets = {s["name"]: s["valueFrom"] for s in container["secrets"]}
    assert secrets == {
        EnvVar.EXCHANGE_KEY: f"{exchange_secret['arn']}:key::",
        EnvVar.EXCHANGE_SECRET: f"{exchange_secret['arn']}:secret::",
    }
    everything = json.dumps(definition, default=str)
    assert EXCHANGE_KEY not in everything and EXCHANGE_SECRET not in everything

    assert (definition["cpu"], definition["memory"], definition["networkMode"]) == ("512", "1024", "awsvpc")
    assert definition["requiresCompatibilities"] == ["FARGATE"]
    assert definition["taskRoleArn"].endswith("role/tradai-dev-bot")
    assert container["logConfiguration"]["options"]["awslogs-group"] == "/tradai/dev/bots"
    tags = {t["key"]: t["value"] for t in definition["tags"]}
    assert REQUIRED_TAGS <= set(tags)
    assert (tags["Environment"], tags["Service"], tags["Owner"], tags["CostCenter"]) == (
        "dev", "bots", "quant-team", "research"
    )

    (request,) = created
    assert request["capacityProviderStrategy"] == [{"capacityProvider": "FARGATE", "weight": 1}]
    assert request["desiredCount"] == 1
    # One task at a time (never two bots trading), and ECS gives up on tasks that keep dying.
    assert request["deploymentConfiguration"] == {
        "maximumPercent": 100, "minimumHealthyPercent": 0,
        "deploymentCircuitBreaker": {"enable": True, "rollback": False},
    }
    assert (state.failed_tasks, state.rollout_state, state.crash_looping) == (0, "IN_PROGRESS", False)
    assert request["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] == "DISABLED"
    assert REQUIRED_TAGS <= {t["key"] for t in request["tags"]}

    (service,) = aws_env.client("ecs").describe_services(
        cluster=services.cluster_name, services=[f"bot-{bot_id}"], include=["TAGS"]
    )["services"]
    assert REQUIRED_TAGS <= {t["key"] for t in service["tags"]}


def test_reconciling_an_unchanged_spec_makes_no_write_call(bot_id, services, exchange_secret):
    services.reconcile(spec(bot_id, exchange_secret["name"]))
    services.calls.reset()

    state = services.reconcile(spec(bot_id, exchange_secret["name"]))

    assert services.calls.write_calls == 0, services.calls.writes
    assert dict(services.calls.reads) == {"DescribeServices": 1, "DescribeSecret": 1, "DescribeTaskDefinition": 1}
    assert state.actions == ()
    assert state.revision == 1


def test_a_changed_image_registers_a_new_revision_and_updates_the_service(bot_id, services, exchange_secret):
    first = services.reconcile(spec(bot_id, exchange_secret["name"]))
    services.calls.reset()

    second = services.reconcile(spec(bot_id, exchange_secret["name"], image=first_image_with_tag("def456")))

    assert second.revision == first.revision + 1
    assert second.actions == (
        f"registered tradai-dev-bot-{bot_id}:{second.revision}",
        "updated service: taskDefinition",
    )
    assert dict(services.calls.writes) == {"RegisterTaskDefinition": 1, "UpdateService": 1}
    assert services.describe(bot_id).task_definition_arn == second.task_definition_arn


def first_image_with_tag(tag: str) -> str:
    return f"123456789012.dkr.ecr.us-east-1.amazonaws.com/tradai-app-dev:{tag}"


def test_a_dry_run_bot_runs_on_spot_without_keys_and_going_live_moves_it_to_fargate(
    bot_id, services, exchange_secret, aws_env
):
    created = capture(services, "CreateService")
    updated = capture(services, "UpdateService")

    dry = services.reconcile(spec(bot_id, None, mode="dry_run"))
    (container,) = task_definition(aws_env, dry.task_definition_arn)["containerDefinitions"]
    assert {e["name"]: e["value"] for e in container["environment"]}[EnvVar.FREQTRADE_DRY_RUN] == "true"
    assert container.get("secrets", []) == []
    assert created[0]["capacityProviderStrategy"] == [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]
    assert dry.trading_mode == "dry_run"

    live = services.reconcile(spec(bot_id, exchange_secret["name"], mode="live"))

    (request,) = updated
    assert request["capacityProviderStrategy"] == [{"capacityProvider": "FARGATE", "weight": 1}]
    assert request["forceNewDeployment"] is True
    assert request["taskDefinition"] == live.task_definition_arn
    assert live.revision == dry.revision + 1
    assert live.trading_mode == "live"
    assert "retagged service" in live.actions


def test_stop_scales_to_zero_delete_removes_and_a_new_deployment_reuses_the_last_revision(
    bot_id, services, exchange_secret
):
    running = services.reconcile(spec(bot_id, exchange_secret["name"]))
    services.calls.reset()

    stopped = services.reconcile(spec(bot_id, exchange_secret["name"], mode="stopped"))
    assert (stopped.status, stopped.desired_count) == ("ACTIVE", 0)
    assert dict(services.calls.writes) == {"UpdateService": 1}

    deleted = services.delete(bot_id)
    assert (deleted.status, deleted.actions) == ("absent", ("deleted service",))
    assert services.describe(bot_id).status == "absent"
    assert services.delete(bot_id).actions == ()
    assert services.reconcile(spec(bot_id, exchange_secret["name"], mode="stopped")).status == "absent"

    services.calls.reset()
    again = services.reconcile(spec(bot_id, exchange_secret["name"]))
    assert again.task_definition_arn == running.task_definition_arn
    assert dict(services.calls.writes) == {"CreateService": 1}
    assert (again.status, again.desired_count) == ("ACTIVE", 1)


def test_a_missing_exchange_secret_is_refused_by_name_before_any_write(bot_id, services):
    with pytest.raises(BotSpecError, match="exchange secret 'tradai/dev/exchange/kraken' does not exist"):
        services.reconcile(spec(bot_id, "tradai/dev/exchange/kraken"))
    assert services.calls.write_calls == 0
    assert services.describe(bot_id).status == "absent"


def test_throttling_is_retried_with_backoff(bot_id, services, exchange_secret, sleeps):
    answered = fail(services, "CreateService", "ThrottlingException", times=2)

    state = services.reconcile(spec(bot_id, exchange_secret["name"]))

    assert state.status == "ACTIVE"
    assert len(answered) == 2
    # botocore's exponential backoff with full jitter: up to 1 s, then up to 2 s.
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 1 and 0 <= sleeps[1] <= 2
    # The retries happen inside the one call: it is counted once.
    assert services.calls.writes["CreateService"] == 1


def test_throttling_that_outlasts_the_attempts_fails_naming_the_service(bot_id, services, exchange_secret, sleeps):
    answered = fail(services, "RegisterTaskDefinition", "ThrottlingException", times=100)

    with pytest.raises(BotServiceError, match=rf"register_task_definition for service bot-{bot_id} .*attempt 6 of 6"):
        services.reconcile(spec(bot_id, exchange_secret["name"]))
    assert len(answered) == 6 and len(sleeps) == 5


def test_a_permanent_ecs_error_fails_at_once_naming_the_service(bot_id, services, exchange_secret, sleeps):
    fail(services, "CreateService", "InvalidParameterException", times=100)

    with pytest.raises(
        BotServiceError,
        match=rf"create_service for service bot-{bot_id} in cluster {services.cluster_name} "
        r"failed \(InvalidParameterException, attempt 1 of 6\)",
    ):
        services.reconcile(spec(bot_id, exchange_secret["name"]))
    assert sleeps == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"strategy_id": "Sample_Bot"}, "strategy_id 'Sample_Bot'"),
        ({"mode": "paper"}, "mode 'paper'"),
        ({"exchange_secret": None}, "a live bot needs exchange_secret"),
        ({"cpu": 512, "memory": 512}, "cpu=512 memory=512 is not a Fargate size"),
        ({"stake_amount": -1}, "stake_amount -1"),
        ({"pairs": "ETH/BTC"}, "pairs must be a sequence"),
    ],
)
def test_bad_specs_are_refused_naming_the_field(changes, message):
    with pytest.raises(BotSpecError, match=message):
        spec("sample-binance-spot", "tradai/dev/exchange/binance", **changes)
