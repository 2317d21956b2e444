"""Monthly cost estimate of a stack, itemised from the resources the program declares.

``python -m infra.cost`` prints the tables docs/deploy.md shows (tests/infra checks they match).
Prices: AWS us-east-1, on-demand list prices in USD (Linux/x86 Fargate), as assumed below; usage
that resources do not determine (run hours, log volume, stored data) is an explicit assumption per
stack. The HTTP API service is included as if its command were configured.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from infra.offline import StackRecord, record_stack, stack_config
from resources import aws_contract

HOURS_PER_MONTH = 730

PRICES = {
    "fargate_vcpu_hour": 0.04048,
    "fargate_gb_hour": 0.004445,
    "fargate_spot_discount": 0.70,  # Fargate Spot assumed 70% below on-demand
    "t4g_nano_hour": 0.0042,
    "ebs_gp3_gb_month": 0.08,
    "public_ipv4_hour": 0.005,
    "nat_gateway_hour": 0.045,
    "nat_gateway_gb": 0.045,
    "alb_hour": 0.0225,
    "alb_lcu_hour": 0.008,
    "rds_instance_hour": {"db.t4g.micro": 0.016, "db.t4g.small": 0.032, "db.t4g.medium": 0.065},
    "rds_gp3_gb_month": 0.115,
    "waf_web_acl_month": 5.00,
    "waf_rule_month": 1.00,
    "waf_million_requests": 0.60,
    "secret_month": 0.40,
    "logs_ingest_gb": 0.50,
    "logs_storage_gb_month": 0.03,
    "alarm_month": 0.10,
    "s3_standard_gb_month": 0.023,
    "ecr_gb_month": 0.10,
    "private_hosted_zone_month": 0.50,
    "cloud_map_instance_month": 0.10,
    "dynamodb_million_writes": 0.625,
    "dynamodb_million_reads": 0.125,
    "container_insights_metric_month": 0.30,
}


@dataclass(frozen=True)
class Usage:
    """What the resources alone do not say."""

    run_hours: dict[str, float]  # ECS run task hours per month by run kind (RUN_SIZES)
    run_spot_share: float  # share of run hours on Fargate Spot (dagster.yaml: weights 3:1)
    alb_lcu: float  # average load balancer capacity units
    waf_million_requests: float
    nat_gb: float  # processed by NAT gateways (S3/DynamoDB use free gateway endpoints)
    logs_gb: float  # CloudWatch Logs ingested per month
    s3_gb: float  # stored across the buckets
    ecr_gb: float  # images kept
    dynamodb_million_writes: float  # bot state and heartbeats
    dynamodb_million_reads: float


USAGE = {
    "dev": Usage({"sync": 120, "backtest": 40, "training": 10}, 0.75, 1, 0.3, 0, 4, 50, 6, 0.2, 0.5),
    "staging": Usage({"sync": 120, "backtest": 40, "training": 10}, 0.75, 1, 0.3, 0, 4, 50, 6, 0.2, 0.5),
    "prod": Usage({"sync": 300, "backtest": 150, "training": 40}, 0.75, 2, 1.0, 50, 15, 300, 6, 1.5, 3.0),
}


@dataclass(frozen=True)
class Line:
    item: str
    basis: str
    usd: float


def _fargate_hour(cpu_units: int, memory_mib: int, spot_share: float) -> float:
    on_demand = cpu_units / 1024 * PRICES["fargate_vcpu_hour"] + memory_mib / 1024 * PRICES["fargate_gb_hour"]
    return on_demand * (1 - spot_share * PRICES["fargate_spot_discount"])


def estimate(record: StackRecord, usage: Usage) -> list[Line]:
    lines: list[Line] = []
    ipv4_month = PRICES["public_ipv4_hour"] * HOURS_PER_MONTH

    if record.of_type("aws:autoscaling/group:Group"):
        (template,) = record.of_type("aws:ec2/launchTemplate:LaunchTemplate")
        volume = int(template.inputs["blockDeviceMappings"][0]["ebs"]["volumeSize"])
        lines.append(
            Line(
                "NAT instance",
                f"{template.inputs['instanceType']}, {volume} GB gp3, 1 public IPv4",
                PRICES["t4g_nano_hour"] * HOURS_PER_MONTH + volume * PRICES["ebs_gp3_gb_month"] + ipv4_month,
            )
        )
    gateways = record.of_type("aws:ec2/natGateway:NatGateway")
    if gateways:
        count = len(gateways)
        lines.append(
            Line(
                "NAT gateways",
                f"{count} x (gateway + public IPv4), {usage.nat_gb:g} GB processed",
                count * (PRICES["nat_gateway_hour"] * HOURS_PER_MONTH + ipv4_month)
                + usage.nat_gb * PRICES["nat_gateway_gb"],
            )
        )

    (alb,) = record.of_type("aws:lb/loadBalancer:LoadBalancer")
    zones = len(alb.inputs["subnets"])
    lines.append(
        Line(
            "Application Load Balancer",
            f"{usage.alb_lcu:g} LCU average, {zones} public IPv4",
            (PRICES["alb_hour"] + usage.alb_lcu * PRICES["alb_lcu_hour"]) * HOURS_PER_MONTH
            + zones * ipv4_month,
        )
    )

    definitions = {
        t.outputs["arn"]: t.inputs for t in record.of_type("aws:ecs/taskDefinition:TaskDefinition")
    }
    for service in sorted(record.of_type("aws:ecs/service:Service"), key=lambda s: s.inputs["name"]):
        task = definitions[service.inputs["taskDefinition"]]
        cpu, memory, count = int(task["cpu"]), int(task["memory"]), int(service.inputs["desiredCount"])
        capacity = service.inputs["capacityProviderStrategies"][0]["capacityProvider"]
        spot = capacity == "FARGATE_SPOT"
        lines.append(
            Line(
                f"ECS service {service.inputs['name']}",
                f"{count} x {cpu / 1024:g} vCPU / {memory / 1024:g} GB, {capacity}",
                count * _fargate_hour(cpu, memory, 1.0 if spot else 0.0) * HOURS_PER_MONTH,
            )
        )
    run_cost = sum(
        hours
        * _fargate_hour(
            aws_contract.RUN_SIZES[kind]["cpu"], aws_contract.RUN_SIZES[kind]["memory"], usage.run_spot_share
        )
        for kind, hours in usage.run_hours.items()
    )
    lines.append(
        Line(
            "ECS run tasks",
            ", ".join(f"{hours:g} h {kind}" for kind, hours in usage.run_hours.items())
            + f"; {usage.run_spot_share:.0%} Spot",
            run_cost,
        )
    )

    (database,) = record.of_type("aws:rds/instance:Instance")
    copies = 2 if database.inputs["multiAz"] else 1
    storage = int(database.inputs["allocatedStorage"])
    lines.append(
        Line(
            "RDS PostgreSQL",
            f"{database.inputs['instanceClass']}{' Multi-AZ' if copies == 2 else ''}, {storage} GB gp3",
            copies
            * (
                PRICES["rds_instance_hour"][database.inputs["instanceClass"]] * HOURS_PER_MONTH
                + storage * PRICES["rds_gp3_gb_month"]
            ),
        )
    )

    (acl,) = record.of_type("aws:wafv2/webAcl:WebAcl")
    rules = len(acl.inputs["rules"])
    lines.append(
        Line(
            "WAF",
            f"1 web ACL, {rules} rules, {usage.waf_million_requests:g} M requests",
            PRICES["waf_web_acl_month"]
            + rules * PRICES["waf_rule_month"]
            + usage.waf_million_requests * PRICES["waf_million_requests"],
        )
    )
    secrets = len(record.of_type("aws:secretsmanager/secret:Secret"))
    lines.append(Line("Secrets Manager", f"{secrets} secrets", secrets * PRICES["secret_month"]))

    groups = record.of_type("aws:cloudwatch/logGroup:LogGroup")
    retention = int(groups[0].inputs["retentionInDays"])
    stored_gb = usage.logs_gb * retention / 30
    alarms = len(record.of_type("aws:cloudwatch/metricAlarm:MetricAlarm"))
    lines.append(
        Line(
            "CloudWatch",
            f"{usage.logs_gb:g} GB logs/month kept {retention} days, {alarms} alarms",
            usage.logs_gb * PRICES["logs_ingest_gb"]
            + stored_gb * PRICES["logs_storage_gb_month"]
            + alarms * PRICES["alarm_month"],
        )
    )
    (cluster,) = record.of_type("aws:ecs/cluster:Cluster")
    if {"name": "containerInsights", "value": "enabled"} in cluster.inputs["settings"]:
        services = len(record.of_type("aws:ecs/service:Service"))
        metrics = 8 * (services + 1)  # per-service and per-cluster metrics
        lines.append(
            Line(
                "Container Insights",
                f"about {metrics} metrics",
                metrics * PRICES["container_insights_metric_month"],
            )
        )
    lines.append(
        Line(
            "S3",
            f"{usage.s3_gb:g} GB stored (Standard)",
            usage.s3_gb * PRICES["s3_standard_gb_month"],
        )
    )
    lines.append(Line("ECR", f"{usage.ecr_gb:g} GB of images", usage.ecr_gb * PRICES["ecr_gb_month"]))
    tables = len(record.of_type("aws:dynamodb/table:Table"))
    lines.append(
        Line(
            "DynamoDB",
            f"{tables} on-demand table{'s' if tables != 1 else ''}, {usage.dynamodb_million_writes:g} M writes,"
            f" {usage.dynamodb_million_reads:g} M reads",
            usage.dynamodb_million_writes * PRICES["dynamodb_million_writes"]
            + usage.dynamodb_million_reads * PRICES["dynamodb_million_reads"],
        )
    )
    registries = len(record.of_type("aws:servicediscovery/service:Service"))
    lines.append(
        Line(
            "Cloud Map",
            f"private DNS namespace, {registries} registered services",
            PRICES["private_hosted_zone_month"] + registries * PRICES["cloud_map_instance_month"],
        )
    )
    return [Line(line.item, line.basis, round(line.usd, 2)) for line in lines]


def stack_estimate(stack: str) -> list[Line]:
    config = stack_config(stack)
    config["tradai:apiCommand"] = json.dumps(["api"])  # include the API service
    return estimate(record_stack(stack, config), USAGE[stack])


def total(lines: list[Line]) -> float:
    return round(sum(line.usd for line in lines), 2)


def markdown(stack: str, lines: list[Line]) -> str:
    rows = [f"| {line.item} | {line.basis} | {line.usd:.2f} |" for line in lines]
    return "\n".join(
        [
            f"| {stack}: item | basis | USD/month |",
            "|---|---|---:|",
            *rows,
            f"| **Total** | | **{total(lines):.2f}** |",
        ]
    )


def main(argv: list[str]) -> int:
    stacks = argv[1:] or list(aws_contract.ENVIRONMENTS)
    print("\n\n".join(markdown(stack, stack_estimate(stack)) for stack in stacks))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
