"""A backtest run launched as an ECS task, through the deployment's own configuration.

The Dagster instance is loaded from deploy/dagster.yaml and the workspace from deploy/workspace.yaml,
with the environment the Pulumi program gives the daemon (infra.compute.dagster_environment), the
machine's PostgreSQL (127.0.0.1:5432) as storage and a moto server as AWS. The run goes the way it
goes in production: submitted over GraphQL into the queue, dequeued by the daemon's queued run
coordinator, launched by the EcsRunLauncher (ECS RunTask on Fargate Spot, with the job's
ecs/cpu and ecs/memory tags as overrides and the database URL as a secret).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import psycopg2
import pytest
import yaml

from infra.compute import bot_management_environment, dagster_environment, workspace_environment
from resources import aws_contract
from resources.aws_contract import EnvVar

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STACK = "dev"
REGION = "us-east-1"
MLFLOW_UI_URL = "https://mlflow.dev.tradai.example.com"
IMAGE = (
    f"123456789012.dkr.ecr.{REGION}.amazonaws.com/{aws_contract.repository_name('app', STACK)}:0123456789ab"
)


@dataclass(frozen=True)
class LaunchTarget:
    """The job this test launches and the code location serving it.

    To launch the product's backtest job instead of the stand-in: set ``code_server_args`` to
    ``("-m", aws_contract.CODE_LOCATION_MODULE, "-a", aws_contract.CODE_LOCATION_ATTRIBUTE)``,
    ``job_name`` to the backtest job's name, and ``run_config``/``tags`` to what one backtest needs
    (e.g. the ``dagster/partition`` tag). The job must carry ``aws_contract.ecs_run_tags("backtest")``."""

    code_server_args: tuple[str, ...]
    job_name: str
    run_kind: str
    location_name: str = aws_contract.CODE_LOCATION_NAME
    repository_name: str = "__repository__"
    run_config: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


# The product's part of the code location container's environment (infra/compute.py), and its image.
CODE_LOCATION_ENV = {
    EnvVar.TRADAI_ENV: "aws",
    EnvVar.TRADAI_STACK: STACK,
    EnvVar.ARCTICDB_URI: aws_contract.arcticdb_uri(STACK, REGION),
    EnvVar.MLFLOW_TRACKING_URI: aws_contract.mlflow_tracking_uri(),
    EnvVar.MLFLOW_UI_URL: MLFLOW_UI_URL,
    EnvVar.DAGSTER_CURRENT_IMAGE: IMAGE,
}

# The product's own code location and ad-hoc backtest job, as the API launches it.
LAUNCH_TARGET = LaunchTarget(
    code_server_args=("-m", aws_contract.CODE_LOCATION_MODULE, "-a", aws_contract.CODE_LOCATION_ATTRIBUTE),
    job_name="adhoc_backtest",
    run_kind="backtest",
    run_config={"ops": {"backtest_with_overrides": {"config": {"strategy": "SampleStrategy"}}}},
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait(process: subprocess.Popen, ready, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what} did not start")
        time.sleep(0.1)


def _answers(check) -> bool:
    try:
        check()
        return True
    except Exception:  # noqa: BLE001 not serving yet
        return False


@pytest.fixture(scope="module")
def servers():
    """The moto server and the code location's gRPC server, started together (both are slow)."""
    from dagster._grpc.client import DagsterGrpcClient

    moto_port, code_port = _free_port(), _free_port()
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # The ECS service runs `dagster code-server start`, a proxy in front of this same gRPC server;
    # the server alone starts in half the time. The image name is the one Pulumi gives the service.
    code_server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster"),
            "api",
            "grpc",
            "-h",
            "127.0.0.1",
            "-p",
            str(code_port),
            *LAUNCH_TARGET.code_server_args,
            "--location-name",
            LAUNCH_TARGET.location_name,
        ],
        env={**os.environ, **CODE_LOCATION_ENV},
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    moto_endpoint = f"http://127.0.0.1:{moto_port}"
    try:
        _wait(
            moto,
            lambda: _answers(lambda: urllib.request.urlopen(f"{moto_endpoint}/moto-api/", timeout=1)),
            "moto server",
            30,
        )
        client = DagsterGrpcClient(port=code_port, host="127.0.0.1")
        yield {
            "moto": moto_endpoint,
            "workspace": {EnvVar.CODE_LOCATION_HOST: "127.0.0.1", EnvVar.CODE_LOCATION_PORT: str(code_port)},
            # Waited for only when needed, so AWS is provisioned while the code location loads.
            "code_server_ready": lambda: _wait(
                code_server, lambda: _answers(lambda: client.ping("")), "code server", 90
            ),
        }
    finally:
        _stop(code_server)
        _stop(moto)


@pytest.fixture(scope="module")
def postgres_url():
    name = f"tradai_deploy_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@dataclass
class AwsWorld:
    subnet_ids: list[str]
    security_group_id: str
    run_role_arn: str
    execution_role_arn: str
    database_secret_arn: str
    sweep_secret_arn: str
    run_log_group: str


@pytest.fixture(scope="module")
def aws(servers, postgres_url):
    """AWS as the Pulumi stack leaves it, in moto; the process environment pointed at moto."""
    saved = dict(os.environ)
    try:  # a failing setup must not leave the session pointed at moto
        os.environ.update(
            AWS_ENDPOINT_URL=servers["moto"],
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION=REGION,
            AWS_REGION=REGION,
        )
        ec2 = boto3.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})  # moto needs it for awsvpc
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=zone)["Subnet"]["SubnetId"]
            for cidr, zone in (("10.0.11.0/24", "us-east-1a"), ("10.0.12.0/24", "us-east-1b"))
        ]
        group = ec2.create_security_group(GroupName=f"tradai-{STACK}-ecs", Description="ECS", VpcId=vpc)[
            "GroupId"
        ]
        boto3.client("ecs").create_cluster(
            clusterName=aws_contract.cluster_name(STACK), capacityProviders=["FARGATE", "FARGATE_SPOT"]
        )
        iam = boto3.client("iam")
        trust = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        )
        run_role = iam.create_role(RoleName=f"tradai-{STACK}-dagster-run", AssumeRolePolicyDocument=trust)
        execution_role = iam.create_role(RoleName=f"tradai-{STACK}-ecs-execution", AssumeRolePolicyDocument=trust)
        secret = boto3.client("secretsmanager").create_secret(
            Name=aws_contract.secret_name(STACK, aws_contract.DAGSTER_DATABASE_URL_SECRET),
            SecretString=postgres_url,
        )
        sweep_secret = boto3.client("secretsmanager").create_secret(
            Name=aws_contract.secret_name(STACK, aws_contract.SWEEP_DATABASE_URL_SECRET),
            SecretString=postgres_url,
        )
        run_log_group = f"/tradai/{STACK}/dagster-runs"
        boto3.client("logs").create_log_group(logGroupName=run_log_group)
        boto3.client("s3").create_bucket(Bucket=aws_contract.bucket_name("logs", STACK))
        yield AwsWorld(
            subnet_ids=subnets,
            security_group_id=group,
            run_role_arn=run_role["Role"]["Arn"],
            execution_role_arn=execution_role["Role"]["Arn"],
            database_secret_arn=secret["ARN"],
            sweep_secret_arn=sweep_secret["ARN"],
            run_log_group=run_log_group,
        )
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def daemon_environment(aws, postgres_url, tmp_path_factory):
    """The daemon's environment as Pulumi defines it, with this machine's stand-ins."""
    dagster_home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(REPO / "deploy" / "dagster.yaml", dagster_home / "dagster.yaml")
    env = dagster_environment(
        STACK,
        REGION,
        mlflow_ui_url=MLFLOW_UI_URL,
        logs_bucket=aws_contract.bucket_name("logs", STACK),
        subnet_ids=aws.subnet_ids,
        security_group_id=aws.security_group_id,
        run_role_arn=aws.run_role_arn,
        execution_role_arn=aws.execution_role_arn,
        run_log_group=aws.run_log_group,
        database_url_secret_arn=aws.database_secret_arn,
        sweep_url_secret_arn=aws.sweep_secret_arn,
    )
    env |= bot_management_environment(
        STACK,
        REGION,
        subnet_ids=aws.subnet_ids,
        security_group_id=aws.security_group_id,
        execution_role_arn=aws.execution_role_arn,
        bot_role_arn=aws.run_role_arn.replace("dagster-run", "bot"),
        bot_image="registry/tradai-bot-dev:test",
        alerts_topic_arn=f"arn:aws:sns:{REGION}:123456789012:tradai-{STACK}-alerts",
        allow_live=False,
        owner="platform",
        cost_center="research",
    )
    env[EnvVar.DAGSTER_HOME] = str(dagster_home)
    env[EnvVar.DAGSTER_PG_URL] = postgres_url  # ECS injects the secrets' values
    env[EnvVar.SWEEP_STORAGE_URL] = postgres_url
    return env


@dataclass
class Launch:
    run_id: str
    run_task_calls: list[dict[str, Any]]
    instance: Any


@pytest.fixture(scope="module")
def launch(daemon_environment, servers):
    """Submit the run over GraphQL (as the UI does) and let the daemon's queue launch it."""
    from dagster import DagsterInstance, DagsterRunStatus
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
    from dagster_graphql.client.query import LAUNCH_PIPELINE_EXECUTION_MUTATION
    from dagster_graphql.test.utils import execute_dagster_graphql

    servers["code_server_ready"]()
    assert set(workspace_environment()) == set(servers["workspace"])
    os.environ.update(daemon_environment)
    os.environ.update(servers["workspace"])
    instance = DagsterInstance.get()
    ecs = instance.run_launcher.ecs

    # moto's run_task needs container-level memory (a limit of moto); the launcher registers
    # task-level cpu and memory only, as Fargate wants. Copy the task size onto the container.
    def container_memory_for_moto(params, **_):
        for container in params["containerDefinitions"]:
            container.setdefault("memory", int(params["memory"]))

    run_task_calls: list[dict[str, Any]] = []
    ecs.meta.events.register("provide-client-params.ecs.RegisterTaskDefinition", container_memory_for_moto)
    ecs.meta.events.register(
        "provide-client-params.ecs.RunTask",
        lambda params, **_: run_task_calls.append(json.loads(json.dumps(params))),
    )

    with WorkspaceProcessContext(
        instance, WorkspaceFileTarget(paths=[str(REPO / "deploy" / "workspace.yaml")])
    ) as context:
        request = context.create_request_context()
        result = execute_dagster_graphql(
            request,
            LAUNCH_PIPELINE_EXECUTION_MUTATION,
            {
                "executionParams": {
                    "selector": {
                        "repositoryLocationName": LAUNCH_TARGET.location_name,
                        "repositoryName": LAUNCH_TARGET.repository_name,
                        "jobName": LAUNCH_TARGET.job_name,
                    },
                    "runConfigData": LAUNCH_TARGET.run_config,
                    "executionMetadata": {
                        "tags": [{"key": k, "value": v} for k, v in LAUNCH_TARGET.tags.items()]
                    },
                }
            },
        )
        outcome = result.data["launchPipelineExecution"]
        assert outcome["__typename"] == "LaunchRunSuccess", outcome
        run_id = outcome["run"]["runId"]
        assert instance.get_run_by_id(run_id).status == DagsterRunStatus.QUEUED
        list(QueuedRunCoordinatorDaemon(interval_seconds=1).run_iteration(context))
    yield Launch(run_id=run_id, run_task_calls=run_task_calls, instance=instance)
    instance.dispose()


def test_the_instance_is_the_deployments(launch):
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    from deploy.ecs_run_launcher import TradaiEcsRunLauncher

    instance = launch.instance
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    assert isinstance(instance.compute_log_manager, S3ComputeLogManager)
    assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
    assert isinstance(instance.run_launcher, TradaiEcsRunLauncher)
    assert instance.run_monitoring_enabled and instance.run_retries_enabled
    queue = instance.get_concurrency_config().run_queue_config
    assert queue.max_concurrent_runs == 8


def test_run_task_gets_the_task_definition_capacity_network_and_size(launch, aws):
    from dagster_aws.ecs.utils import get_task_definition_family

    (call,) = launch.run_task_calls
    run = launch.instance.get_run_by_id(launch.run_id)
    family = get_task_definition_family("run", run.remote_job_origin)
    assert call["taskDefinition"] == family
    assert call["cluster"] == aws_contract.cluster_name(STACK)
    assert "launchType" not in call
    assert call["capacityProviderStrategy"] == [
        {"capacityProvider": "FARGATE_SPOT", "weight": 3},
        {"capacityProvider": "FARGATE", "weight": 1},
    ]
    assert call["networkConfiguration"] == {
        "awsvpcConfiguration": {
            "subnets": aws.subnet_ids,
            "securityGroups": [aws.security_group_id],
            "assignPublicIp": "DISABLED",
        }
    }
    size = aws_contract.RUN_SIZES[LAUNCH_TARGET.run_kind]
    overrides = call["overrides"]
    assert (overrides["cpu"], overrides["memory"]) == (str(size["cpu"]), str(size["memory"]))
    (container,) = overrides["containerOverrides"]
    assert container["name"] == aws_contract.RUN_CONTAINER_NAME
    assert (container["cpu"], container["memory"]) == (size["cpu"], size["memory"])
    assert container["command"][:3] == ["dagster", "api", "execute_run"]
    tags = {tag["key"]: tag.get("value") for tag in call["tags"]}
    assert tags["dagster/run_id"] == launch.run_id
    assert tags["Environment"] == STACK and tags["Application"] == "tradai"


def test_the_task_in_ecs_runs_that_definition_on_spot_with_the_overrides(launch, aws):
    ecs = boto3.client("ecs")
    run = launch.instance.get_run_by_id(launch.run_id)
    task_arn = run.tags["ecs/task_arn"]
    (task,) = ecs.describe_tasks(cluster=aws_contract.cluster_name(STACK), tasks=[task_arn])["tasks"]
    assert task["capacityProviderName"] == "FARGATE_SPOT"
    size = aws_contract.RUN_SIZES[LAUNCH_TARGET.run_kind]
    assert (task["overrides"]["cpu"], task["overrides"]["memory"]) == (str(size["cpu"]), str(size["memory"]))
    attachment = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
    assert attachment["subnetId"] in aws.subnet_ids

    definition = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
    assert definition["requiresCompatibilities"] == ["FARGATE"]
    assert definition["networkMode"] == "awsvpc"
    assert definition["executionRoleArn"] == aws.execution_role_arn
    assert definition["taskRoleArn"] == aws.run_role_arn
    # The task definition has dagster.yaml's default size; the job's tags override it per run.
    default = aws_contract.RUN_SIZES["sync"]
    assert (definition["cpu"], definition["memory"]) == (str(default["cpu"]), str(default["memory"]))
    (container,) = definition["containerDefinitions"]
    assert container["name"] == aws_contract.RUN_CONTAINER_NAME
    assert container["image"] == IMAGE  # DAGSTER_CURRENT_IMAGE of the code location
    assert container["secrets"] == [
        {"name": EnvVar.DAGSTER_PG_URL, "valueFrom": aws.database_secret_arn},
        {"name": EnvVar.SWEEP_STORAGE_URL, "valueFrom": aws.sweep_secret_arn},
    ]
    passed = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())["run_launcher"]["config"][
        "env_vars"
    ]
    environment = {e["name"]: e["value"] for e in container["environment"]}
    assert set(passed) <= set(environment)
    assert EnvVar.DAGSTER_PG_URL not in environment  # by reference only
    assert environment[EnvVar.TRADAI_STACK] == STACK
    assert container["logConfiguration"]["options"]["awslogs-group"] == aws.run_log_group


def test_the_run_is_recorded_in_postgres(launch, postgres_url):
    connection = psycopg2.connect(postgres_url.replace("postgresql+psycopg2", "postgresql"))
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pipeline_name, status FROM runs WHERE run_id = %s", (launch.run_id,))
            assert cursor.fetchone() == (LAUNCH_TARGET.job_name, "STARTING")
            cursor.execute("SELECT key, value FROM run_tags WHERE run_id = %s", (launch.run_id,))
            tags = dict(cursor.fetchall())
    finally:
        connection.close()
    assert tags["ecs/cpu"] == str(aws_contract.RUN_SIZES[LAUNCH_TARGET.run_kind]["cpu"])
    assert tags["ecs/task_arn"].startswith(f"arn:aws:ecs:{REGION}:")
    assert tags["ecs/cluster"].endswith(f":cluster/{aws_contract.cluster_name(STACK)}")
