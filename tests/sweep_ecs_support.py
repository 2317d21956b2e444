"""A sweep's trial batches through the AWS run queue and the EcsRunLauncher, against a moto server.

A real Dagster instance in a temporary DAGSTER_HOME: SQLite storage, and deploy/dagster.yaml's own
run launcher (``TradaiEcsRunLauncher``), queued run coordinator and run concurrency limits (the sweep
limit can be set lower). The sweep sensor of a code location loaded in-process evaluates once, as the
sensor daemon does it, and submits its run requests into the queue; then the queue daemon's
``run_iteration`` dequeues and launches them with ECS RunTask on moto.

moto's ECS starts no containers, so this module plays the run worker's part: a launched run is marked
started, and after ``hold`` dequeue iterations its task is stopped with ECS StopTask and the run marked
successful, as a worker's RUN_SUCCESS event and its container's exit would do. Run monitoring is not
run: it would read moto's stopped tasks (no exit code) as failures.

Used by tests/test_sweep_ecs.py and bench/sweep_ecs.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import yaml

from infra.compute import bot_management_environment, dagster_environment
from resources import aws_contract

REPO = Path(__file__).resolve().parents[1]
STACK = "dev"
REGION = "us-east-1"
IMAGE = f"123456789012.dkr.ecr.{REGION}.amazonaws.com/{aws_contract.repository_name('app', STACK)}:sweep"
SWEEP_KIND = {"key": aws_contract.RUN_KIND_TAG, "value": "sweep"}


def instance_config(sweep_limit: int | None = None) -> dict[str, Any]:
    """deploy/dagster.yaml's launcher, coordinator and run limits on local SQLite storage; with
    ``sweep_limit`` the tradai/kind=sweep limit (and max_concurrent_runs, if lower) is that."""
    deploy = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    config = {key: deploy[key] for key in ("run_launcher", "run_coordinator", "concurrency")}
    config["run_coordinator"]["config"]["dequeue_interval_seconds"] = 0
    config["telemetry"] = {"enabled": False}
    if sweep_limit is not None:
        runs = config["concurrency"]["runs"]
        (rule,) = [r for r in runs["tag_concurrency_limits"] if {k: r[k] for k in ("key", "value")} == SWEEP_KIND]
        rule["limit"] = sweep_limit
        runs["max_concurrent_runs"] = max(runs["max_concurrent_runs"], sweep_limit)
    return config


def sweep_limit_of(config: dict[str, Any]) -> int:
    runs = config["concurrency"]["runs"]
    (rule,) = [r for r in runs["tag_concurrency_limits"] if {k: r[k] for k in ("key", "value")} == SWEEP_KIND]
    return min(rule["limit"], runs["max_concurrent_runs"])


def provision_aws(endpoint: str) -> dict[str, str]:
    """The stack's cluster, network, roles and log group in moto; the instance's environment."""
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
    )
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        os.environ.pop(name, None)
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})  # moto needs it for awsvpc
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.11.0/24", AvailabilityZone="us-east-1a")["Subnet"]
    group = ec2.create_security_group(GroupName="tradai-dev-ecs", Description="ECS", VpcId=vpc)["GroupId"]
    boto3.client("ecs").create_cluster(
        clusterName=aws_contract.cluster_name(STACK), capacityProviders=["FARGATE", "FARGATE_SPOT"]
    )
    logs = f"/tradai/{STACK}/dagster-runs"
    boto3.client("logs").create_log_group(logGroupName=logs)
    secrets = boto3.client("secretsmanager")
    role = "arn:aws:iam::123456789012:role/tradai-dev-"
    # What Pulumi gives the daemon (infra/compute.py), pointed at these moto resources.
    env = dagster_environment(
        STACK,
        REGION,
        mlflow_ui_url="https://mlflow.dev.tradai.example.com",
        logs_bucket=aws_contract.bucket_name("logs", STACK),
        subnet_ids=[subnet["SubnetId"]],
        security_group_id=group,
        run_role_arn=role + "dagster-run",
        execution_role_arn=role + "ecs-execution",
        run_log_group=logs,
        database_url_secret_arn=secrets.create_secret(Name="tradai/dev/dagster-database-url", SecretString="-")["ARN"],
        sweep_url_secret_arn=secrets.create_secret(Name="tradai/dev/sweep-database-url", SecretString="-")["ARN"],
    )
    return env | bot_management_environment(
        STACK,
        REGION,
        subnet_ids=[subnet["SubnetId"]],
        security_group_id=group,
        execution_role_arn=role + "ecs-execution",
        bot_role_arn=role + "bot",
        bot_image="registry/tradai-bot-dev:test",
        alerts_topic_arn=f"arn:aws:sns:{REGION}:123456789012:tradai-{STACK}-alerts",
        allow_live=False,
        owner="platform",
        cost_center="research",
    )


@dataclass
class QueueReport:
    runs_requested: int
    run_task_calls: int
    tasks_in_moto: int
    max_in_flight: int
    iterations: int
    submit_seconds: float
    dispatch_seconds: float
    batches_launched: dict[tuple[str, str], int] = field(default_factory=dict)  # (first, last) -> tasks


def _ecs_tasks(ecs, cluster: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for status in ("RUNNING", "STOPPED"):
        for page in ecs.get_paginator("list_tasks").paginate(cluster=cluster, desiredStatus=status):
            found.setdefault(status, []).extend(page["taskArns"])
    return found


@contextmanager
def sweep_queue(
    dagster_home: Path, env: dict[str, str], location_file: Path | None, module: str | None, sweep_limit: int | None
) -> Iterator[Any]:
    """The instance and an in-process workspace over the code location (a Python file or a module)."""
    from dagster import DagsterInstance
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget

    config = instance_config(sweep_limit)
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config))
    os.environ.update(env)
    os.environ["DAGSTER_HOME"] = str(dagster_home)  # the launcher passes it on; the instance is read from here
    origin = InProcessCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(
            python_file=str(location_file) if location_file else None,
            module_name=module,
            attribute=aws_contract.CODE_LOCATION_ATTRIBUTE,
            working_directory=str(REPO),
        ),
        location_name=aws_contract.CODE_LOCATION_NAME,
        container_image=IMAGE,
    )
    instance = DagsterInstance.from_config(str(dagster_home))
    ecs = instance.run_launcher.ecs

    # moto's run_task needs container-level memory (FACTS.md); Fargate takes task-level sizes only.
    def container_memory_for_moto(params, **_):
        for container in params["containerDefinitions"]:
            container.setdefault("memory", int(params["memory"]))

    run_task_calls: list[str] = []
    ecs.meta.events.register("provide-client-params.ecs.RegisterTaskDefinition", container_memory_for_moto)
    ecs.meta.events.register("provide-client-params.ecs.RunTask", lambda params, **_: run_task_calls.append("x"))
    try:
        with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as context:
            yield context, config, run_task_calls
    finally:
        instance.dispose()


def run_sweep_through_queue(
    context, run_task_calls: list[str], add_sweep, hold: int = 1, max_iterations: int = 10_000
) -> QueueReport:
    """``add_sweep(instance)`` registers a planned sweep; the sweep sensor then requests its batches,
    the queue launches them on moto, and each launched run's task runs for ``hold`` iterations."""
    import logging

    from dagster import DagsterEventType, DagsterRunStatus, RunsFilter
    from dagster._core.events import DagsterEvent
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
    from dagster._daemon.sensor import execute_sensor_iteration

    instance = context.instance
    ecs = instance.run_launcher.ecs
    cluster = aws_contract.cluster_name(STACK)
    add_sweep(instance)

    started = time.monotonic()
    list(execute_sensor_iteration(context, logging.getLogger("sweep_ecs"), None, None))
    submitted = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.QUEUED]))
    submit_seconds = time.monotonic() - started
    if not submitted:
        raise AssertionError("the sweep sensor queued no runs (see the sensor daemon's log above)")

    daemon = QueuedRunCoordinatorDaemon(interval_seconds=0)
    running_since: dict[str, int] = {}
    max_in_flight = iterations = 0
    started = time.monotonic()
    while iterations < max_iterations:
        iterations += 1
        list(daemon.run_iteration(context))
        for run in instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTING])):
            instance.report_dagster_event(
                DagsterEvent(event_type_value=DagsterEventType.RUN_START.value, job_name=run.job_name), run.run_id
            )
            running_since[run.run_id] = iterations
        in_flight = ecs.list_tasks(cluster=cluster, desiredStatus="RUNNING")["taskArns"]
        max_in_flight = max(max_in_flight, len(in_flight))
        for run in instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED])):
            if iterations - running_since[run.run_id] + 1 >= hold:
                ecs.stop_task(cluster=cluster, task=run.tags["ecs/task_arn"], reason="batch finished")
                instance.report_dagster_event(
                    DagsterEvent(event_type_value=DagsterEventType.RUN_SUCCESS.value, job_name=run.job_name),
                    run.run_id,
                )
        if not instance.get_runs(
            RunsFilter(statuses=[DagsterRunStatus.QUEUED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED])
        ):
            break
    dispatch_seconds = time.monotonic() - started

    tasks = _ecs_tasks(ecs, cluster)
    arns = tasks.get("RUNNING", []) + tasks.get("STOPPED", [])
    by_run: dict[str, int] = {}
    for start in range(0, len(arns), 100):
        for task in ecs.describe_tasks(cluster=cluster, tasks=arns[start : start + 100], include=["TAGS"])["tasks"]:
            run_id = {t["key"]: t["value"] for t in task.get("tags", [])}["dagster/run_id"]
            by_run[run_id] = by_run.get(run_id, 0) + 1
    batches: dict[tuple[str, str], int] = {}
    for run in instance.get_runs():
        key = (run.tags[ASSET_PARTITION_RANGE_START_TAG], run.tags[ASSET_PARTITION_RANGE_END_TAG])
        batches[key] = batches.get(key, 0) + by_run.get(run.run_id, 0)
    return QueueReport(
        runs_requested=len(submitted),
        run_task_calls=len(run_task_calls),
        tasks_in_moto=len(arns),
        max_in_flight=max_in_flight,
        iterations=iterations,
        submit_seconds=submit_seconds,
        dispatch_seconds=dispatch_seconds,
        batches_launched=batches,
    )


def planned_sweep(arctic_uri: str, sweep_id: str, trials: int, trials_per_run: int):
    """``add_sweep`` for ``run_sweep_through_queue``: what the sweep job leaves for the sensor (the
    plan's trial keys and batch size in the sweep store, the trial partitions in the instance). The plan
    holds only what the sensor and the sweep status read; the trials themselves never run here."""
    from resources.arctic import ArcticStore
    from resources.sweep_store import SweepStore
    from tradai_core.keys import SWEEP_TRIALS, SWEEPS
    from tradai_core.sweeps import trial_key

    keys = [trial_key(sweep_id, n) for n in range(trials)]

    def add(instance) -> None:
        SweepStore(arctic=ArcticStore(uri=arctic_uri)).write_plan(
            sweep_id,
            {
                "sweep_id": sweep_id,
                "strategy": "SampleStrategy",
                "spec": {"trials_per_run": trials_per_run, "objective": "sharpe"},
                "trials": [{"number": n, "key": k, "params": {}} for n, k in enumerate(keys)],
            },
        )
        instance.add_dynamic_partitions(SWEEP_TRIALS.name, keys)
        instance.add_dynamic_partitions(SWEEPS.name, [sweep_id])

    expected = {(keys[i], keys[min(i + trials_per_run, trials) - 1]) for i in range(0, trials, trials_per_run)}
    return add, expected
