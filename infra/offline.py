"""Evaluate a stack without the Pulumi CLI or AWS: Pulumi's own mocks record every resource.

Used by the unit tests (tests/infra) and by the cost estimate (``python -m infra.cost``). The stack's
``Pulumi.<stack>.yaml`` is loaded as the engine would load it; values that are only set at deploy
time (secrets, the image tag) get stand-ins.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.stack import run_in_stack
from pulumi.runtime.sync_await import _sync_await

INFRA_DIR = Path(__file__).resolve().parent
PROJECT = "tradai"
ACCOUNT_ID = "123456789012"
# Set with `pulumi config set` at deploy time, never committed (docs/deploy.md).
DEPLOY_TIME_CONFIG = {
    "tradai:dbPassword": "offline-db-password/+=",
    "tradai:apiJwtSecret": "offline-jwt-secret",
    "tradai:imageTag": "0123456789ab",
}


@dataclass(frozen=True)
class Resource:
    type: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]


@dataclass
class StackRecord:
    stack: str
    resources: list[Resource] = field(default_factory=list)
    exports: dict[str, Any] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[Resource]:
        return [r for r in self.resources if r.type == type_]

    def named(self, type_: str, name: str) -> Resource:
        matches = [r for r in self.resources if r.type == type_ and r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources of type {type_} named {name}")
        return matches[0]

    def by_output(self, key: str, value: Any) -> Resource:
        """The resource whose output ``key`` is ``value`` (e.g. the resource behind an ARN)."""
        matches = [r for r in self.resources if r.outputs.get(key) == value]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources with {key}={value!r}")
        return matches[0]


def _arn(type_: str, name: str, inputs: dict[str, Any], region: str) -> str:
    service = type_.split(":")[1].split("/")[0]
    physical = inputs.get("name") or inputs.get("bucket") or inputs.get("identifier") or name
    arns = {
        "s3": f"arn:aws:s3:::{physical}",
        "iam": f"arn:aws:iam::{ACCOUNT_ID}:role/{physical}",
        "secretsmanager": f"arn:aws:secretsmanager:{region}:{ACCOUNT_ID}:secret:{physical}-AbCdEf",
        "dynamodb": f"arn:aws:dynamodb:{region}:{ACCOUNT_ID}:table/{physical}",
        "cloudwatch": f"arn:aws:logs:{region}:{ACCOUNT_ID}:log-group:{physical}",
        "ecr": f"arn:aws:ecr:{region}:{ACCOUNT_ID}:repository/{physical}",
    }
    kind = type_.split(":")[-1]
    if type_ == "aws:ecs/taskDefinition:TaskDefinition":
        return f"arn:aws:ecs:{region}:{ACCOUNT_ID}:task-definition/{inputs['family']}:1"
    if type_ == "aws:cloudwatch/metricAlarm:MetricAlarm":
        return f"arn:aws:cloudwatch:{region}:{ACCOUNT_ID}:alarm:{physical}"
    return arns.get(service, f"arn:aws:{service}:{region}:{ACCOUNT_ID}:{kind.lower()}/{physical}")


class RecordingMocks(pulumi.runtime.Mocks):
    """Records every registration and answers with outputs shaped like AWS's."""

    def __init__(self, region: str):
        self.region = region
        self.resources: list[Resource] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        inputs = dict(args.inputs)
        type_ = args.typ
        resource_id = f"{args.name}-id"
        outputs: dict[str, Any] = {**inputs, "arn": _arn(type_, args.name, inputs, self.region)}
        if type_ == "aws:ec2/vpc:Vpc":
            resource_id = "vpc-0123456789"
        elif type_ == "aws:ec2/subnet:Subnet":
            resource_id = f"subnet-{args.name}"
        elif type_ == "aws:ec2/securityGroup:SecurityGroup":
            resource_id = f"sg-{args.name}"
        elif type_ == "aws:ec2/networkInterface:NetworkInterface":
            resource_id = "eni-0123456789"
            outputs["macAddress"] = "0A:1B:2C:3D:4E:5F"
        elif type_ == "aws:ec2/launchTemplate:LaunchTemplate":
            outputs["latestVersion"] = 1
        elif type_ == "aws:rds/instance:Instance":
            outputs["address"] = f"{inputs['identifier']}.abcdefghijkl.{self.region}.rds.amazonaws.com"
            outputs["endpoint"] = f"{outputs['address']}:{inputs.get('port', 5432)}"
        elif type_ == "aws:lb/loadBalancer:LoadBalancer":
            outputs["dnsName"] = f"{inputs['name']}-123456.{self.region}.elb.amazonaws.com"
            outputs["zoneId"] = "Z35SXDOTRQ7X7K"
            outputs["arnSuffix"] = f"app/{inputs['name']}/0123456789abcdef"
        elif type_ == "aws:lb/targetGroup:TargetGroup":
            outputs["arnSuffix"] = f"targetgroup/{inputs['name']}/0123456789abcdef"
        elif type_ == "aws:ecr/repository:Repository":
            outputs["repositoryUrl"] = f"{ACCOUNT_ID}.dkr.ecr.{self.region}.amazonaws.com/{inputs['name']}"
        elif type_ == "aws:secretsmanager/secret:Secret":
            resource_id = outputs["arn"]
        elif type_ == "aws:ecs/cluster:Cluster":
            resource_id = outputs["arn"]
        elif type_ == "aws:s3/bucket:Bucket":
            resource_id = inputs["bucket"]
        elif type_ == "aws:iam/role:Role":
            resource_id = inputs["name"]
        elif type_ == "aws:cognito/userPool:UserPool":
            resource_id = f"{self.region}_AbCdEfGhI"
        self.resources.append(Resource(type=type_, name=args.name, inputs=inputs, outputs=outputs))
        return resource_id, outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT_ID,
                "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/offline",
                "userId": "AIDAOFFLINE",
                "id": ACCOUNT_ID,
            }
        raise NotImplementedError(f"no offline answer for {args.token}")


def stack_config(stack: str) -> dict[str, str]:
    """Config as the engine passes it to the program: ``Pulumi.<stack>.yaml`` plus deploy-time values.

    Strings stay strings; numbers and booleans become their text; lists and maps become JSON."""
    document = yaml.safe_load((INFRA_DIR / f"Pulumi.{stack}.yaml").read_text())
    values = {**document.get("config", {}), **DEPLOY_TIME_CONFIG}
    return {key: _config_text(value) for key, value in values.items()}


def _config_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value)


def record_stack(
    stack: str,
    config: dict[str, str] | None = None,
    program: Callable[[], None] | None = None,
) -> StackRecord:
    """Run the program for ``stack`` under mocks and return every resource it declared.

    ``config`` replaces the stack's config (default: :func:`stack_config`). Exceptions the program
    raises (a missing config value, overlapping CIDRs) propagate."""
    if program is None:
        from infra.program import main as program
    config = stack_config(stack) if config is None else config
    # A loop of its own: the caller's may be closed or absent (asyncio.run() leaves none behind).
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return _record(stack, config, program)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _record(stack: str, config: dict[str, str], program: Callable[[], None]) -> StackRecord:
    mocks = RecordingMocks(region=config.get("aws:region", "us-east-1"))
    pulumi.runtime.set_all_config(config, [key for key in DEPLOY_TIME_CONFIG if "imageTag" not in key])
    runtime_settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False)
    runtime_settings.ROOT.set(None)  # run_in_stack creates this run's root stack resource
    record = StackRecord(stack=stack)

    exports: dict[str, Any] = {}

    def run() -> None:
        program()
        exports.update(runtime_settings.get_root_resource().outputs)  # type: ignore[union-attr]

    _sync_await(run_in_stack(run))
    record.resources = mocks.resources
    record.exports = {
        key: _sync_await(pulumi.Output.from_input(value).future()) for key, value in exports.items()
    }
    return record
