"""Reconciling 20 unchanged bot deployments against ECS (a moto server on 127.0.0.1): time and write calls.

    .venv/bin/python -m bench.bot_reconcile [--bots 20] [--repeat 3]

Goal: at most 5 s for the 20 and zero AWS write calls. The first pass creates the services and is
not timed; every later pass must change nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from bench.common import report
from resources.bot_services import BotSpec, EcsBotServices
from tests.servers import moto_server

GOAL_SECONDS = 5.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bots", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with moto_server() as moto:
        os.environ["AWS_ACCESS_KEY_ID"] = moto.access_key
        os.environ["AWS_SECRET_ACCESS_KEY"] = moto.secret_key
        ec2 = moto.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.11.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="bots", Description="bots", VpcId=vpc)["GroupId"]
        moto.client("ecs").create_cluster(clusterName="tradai-dev", capacityProviders=["FARGATE", "FARGATE_SPOT"])
        secret = moto.client("secretsmanager").create_secret(
            Name="tradai/dev/exchange/binance", SecretString=json.dumps({"key": "k", "secret": "s"})
        )["Name"]
        services = EcsBotServices(
            stack="dev",
            region=moto.region,
            endpoint_url=moto.url,
            subnet_ids=[subnet],
            security_group_ids=[group],
            execution_role_arn="arn:aws:iam::123456789012:role/tradai-dev-execution",
            task_role_arn="arn:aws:iam::123456789012:role/tradai-dev-bot",
            owner="bench",
            cost_center="bench",
        )
        specs = [
            BotSpec(
                strategy="SampleStrategy",
                strategy_id=f"bench-{n:02d}",
                mode="live" if n % 2 else "dry_run",
                image="123456789012.dkr.ecr.us-east-1.amazonaws.com/tradai-app-dev:bench",
                config_path=f"s3://tradai-configs-dev/bots/bench-{n:02d}.json",
                exchange_secret=secret,
                stake_amount=0.05,
                pairs=("ETH/BTC", "LTC/BTC"),
            )
            for n in range(args.bots)
        ]
        for spec in specs:
            services.reconcile(spec)

        times, writes, reads = [], [], []
        for _ in range(args.repeat):
            services.calls.reset()
            started = time.perf_counter()
            for spec in specs:
                services.reconcile(spec)
            times.append(time.perf_counter() - started)
            writes.append(services.calls.write_calls)
            reads.append(sum(services.calls.reads.values()))

    worst = max(times)
    verdict = "meets" if worst <= GOAL_SECONDS and not any(writes) else "MISSES"
    print(
        report(
            f"Reconciling {args.bots} unchanged bot deployments (goal <= {GOAL_SECONDS:g} s, 0 writes)",
            f"python -m bench.bot_reconcile --bots {args.bots} --repeat {args.repeat}",
            [
                f"ECS and Secrets Manager on a moto server on 127.0.0.1; half live, half dry-run; {verdict} the goal",
                f"slowest of {args.repeat} passes: **{worst:.2f} s** ({worst / args.bots * 1000:.0f} ms a bot); "
                f"all passes (s): {', '.join(f'{t:.2f}' for t in times)}",
                f"AWS write calls per pass: {', '.join(map(str, writes))}; read calls per pass: "
                f"{', '.join(map(str, reads))}",
            ],
        )
    )
    if verdict != "meets":
        raise SystemExit(1)


if __name__ == "__main__":
    main()
