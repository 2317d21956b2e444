"""Helpers of the deployment, bot and bot-sensor tests: strategies, stored configs, backtest runs,
deployments, stand-in bot programs and their logs."""

from __future__ import annotations

import json
import stat
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from botocore.awsrequest import AWSResponse

from resources.arctic import ArcticStore
from resources.backtest_store import BacktestStore
from resources.bot_services import EcsBotServices
from resources.local_bots import LocalBotServices
from tradai_assets.deployments import build_deployment_assets, deployment_key
from tradai_assets.market_data import content_hash
from tradai_assets.strategies import backtest_key
from tradai_core.strategy_discovery import StrategySpec

REPO = Path(__file__).resolve().parent.parent
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/tradai-bot-dev:test"
# An exchange key pair kept in Secrets Manager: neither may show in a task definition, a config or a log.
EXCHANGE_KEY = "AKIA-real-looking-api-key-0123456789"
EXCHANGE_SECRET = "s3cr3t-api-secret-value-9876543210"
STORED_CONFIG = {
    "exchange": {"name": "binance", "key": "", "secret": "", "pair_whitelist": ["ETH/BTC", "LTC/BTC", "XRP/BTC"]},
    "stake_currency": "BTC", "stake_amount": 0.05, "max_open_trades": 3, "timeframe": "5m", "timerange": "all",
    "pairlists": [{"method": "StaticPairList"}], "dry_run_wallet": 1,
}


def unique(prefix: str) -> str:
    """A strategy class name of the test's own (ECS task-definition families are account-wide)."""
    return f"{prefix}X{uuid.uuid4().hex[:8]}"


def strategy(name: str, live: bool = False, model: bool = False) -> StrategySpec:
    return StrategySpec(name=name, file=REPO / "strategies" / f"{name}.py", live=live,
                        model_settings={} if model else None)


def write_deployments(path: Path, entries: dict[str, dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"deployments": entries}))
    return path


def store_config(store: BacktestStore, name: str, config: dict[str, Any] | None = None) -> str:
    config = config or STORED_CONFIG
    digest = content_hash(config)
    store.write_config(name, config, digest)
    return digest


def record_backtest(instance: dg.DagsterInstance, name: str, succeed: bool = True) -> dg.ExecuteInProcessResult:
    """A run of the strategy's backtest asset that succeeds or fails (no freqtrade: only its outcome matters)."""

    @dg.asset(key=backtest_key(name))
    def backtest():
        if not succeed:
            raise dg.Failure(description="freqtrade exited with 2")
        return dg.MaterializeResult(metadata={"trades": 3})

    return dg.materialize([backtest], instance=instance, raise_on_error=False)


def deploy(
    instance: dg.DagsterInstance,
    specs: list[StrategySpec],
    name: str,
    resources: dict[str, Any],
    tags: dict[str, str] | None = None,
    **config: Any,
) -> dg.ExecuteInProcessResult:
    assets = {a.key: a for a in build_deployment_assets(specs)}
    key = deployment_key(name)
    return dg.materialize(
        [assets[key]], instance=instance, resources=resources, tags=tags,
        run_config={"ops": {key.to_python_identifier(): {"config": config}}},
    )


def materialization(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    (event,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def stand_in(path: Path, body: str) -> str:
    """An executable standing in for the bot's entrypoint (it receives its arguments and ignores them)."""
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def text(path: Path) -> str:
    """A log's text so far ("" before the program has written it)."""
    return path.read_text(errors="replace") if path.is_file() else ""


def local_services(home: Path, command: str, **fields: Any) -> LocalBotServices:
    return LocalBotServices(**{"home": str(home), "tradai": command, "restart_delay_seconds": 0.1,
                               "stop_timeout_seconds": 5, **fields})


def ecs_services(moto, cluster: str, network: dict[str, list[str]], bucket: str, **fields: Any) -> EcsBotServices:
    return EcsBotServices(**{
        "stack": "dev", "cluster": cluster, "region": moto.region, "endpoint_url": moto.url,
        "execution_role_arn": "arn:aws:iam::123456789012:role/tradai-dev-execution",
        "task_role_arn": "arn:aws:iam::123456789012:role/tradai-dev-bot",
        "owner": "quant-team", "cost_center": "research", "image": IMAGE, "configs_bucket": bucket,
        **network, **fields,
    })


def vpc_network(moto) -> dict[str, list[str]]:
    """A VPC with one subnet and one security group on the moto server: where bot tasks run."""
    ec2 = moto.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.11.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"bots-{uuid.uuid4().hex[:8]}", Description="bots", VpcId=vpc)
    return {"subnet_ids": [subnet], "security_group_ids": [group["GroupId"]]}


def new_cluster(moto) -> str:
    cluster = f"tradai-test-{uuid.uuid4().hex[:8]}"
    moto.client("ecs").create_cluster(clusterName=cluster, capacityProviders=["FARGATE", "FARGATE_SPOT"])
    return cluster


def new_bucket(moto) -> str:
    bucket = f"tradai-configs-{uuid.uuid4().hex[:8]}"
    moto.client("s3").create_bucket(Bucket=bucket)
    return bucket


def task_environment(moto, arn: str) -> dict[str, str]:
    (container,) = moto.client("ecs").describe_task_definition(taskDefinition=arn)["taskDefinition"][
        "containerDefinitions"
    ]
    return {e["name"]: e["value"] for e in container["environment"]}


def s3_json(moto, uri: str) -> dict[str, Any]:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return json.loads(moto.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def arctic_at(tmp_path: Path) -> ArcticStore:
    return ArcticStore(uri=f"lmdb://{tmp_path / 'arctic'}")


class AwsBody:
    def __init__(self, content: bytes):
        self.content = content

    def stream(self, **_: Any):
        yield self.content


def aws_error_response(code: str) -> AWSResponse:
    """An ECS (JSON protocol) error answer with the AWS error ``code``, as botocore receives it."""
    body = json.dumps({"__type": code, "message": f"injected {code}"}).encode()
    return AWSResponse("http://127.0.0.1", 400, {"Content-Type": "application/x-amz-json-1.1"}, AwsBody(body))
