"""Security groups and IAM roles, least privilege.

Traffic: the internet reaches the ALB on 443 (80 only redirects); ECS tasks take traffic from the
ALB, and from each other on the ports the services use internally (webserver GraphQL, code location
gRPC, MLflow tracking); RDS takes 5432 from ECS only.

Roles: one task execution role (image pulls, logs, the stack's secrets); the Dagster role of the
webserver and daemon, which launches runs (RunTask, DescribeTasks, StopTask, RegisterTaskDefinition
on the cluster, PassRole for the run task's roles only); one task role per service; the bot role.
No statement grants a wildcard action.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.config import Settings, Tagger
from infra.network import Network
from resources import aws_contract

# Ports ECS tasks serve to each other (source: the ECS security group itself).
INTERNAL_PORTS = {
    aws_contract.WEBSERVER_PORT: "Dagster GraphQL, for the API",
    aws_contract.CODE_LOCATION_PORT: "code location gRPC",
    aws_contract.MLFLOW_PORT: "MLflow tracking",
}
# Ports the ALB forwards to.
ALB_TARGET_PORTS = {
    aws_contract.WEBSERVER_PORT: "Dagster webserver",
    aws_contract.MLFLOW_PORT: "MLflow UI",
    aws_contract.API_PORT: "HTTP API",
}
POSTGRES_PORT = 5432

# Actions that accept no resource narrower than "*".
UNSCOPED_ACTIONS = frozenset(
    {"ecr:GetAuthorizationToken", "ecs:RegisterTaskDefinition", "ecs:DescribeTaskDefinition", "ecs:ListServices"}
)


@dataclass
class SecurityGroups:
    alb: aws.ec2.SecurityGroup
    ecs: aws.ec2.SecurityGroup
    database: aws.ec2.SecurityGroup


def create_security_groups(settings: Settings, tags: Tagger, network: Network) -> SecurityGroups:
    env = settings.env

    def group(name: str, description: str) -> aws.ec2.SecurityGroup:
        return aws.ec2.SecurityGroup(
            f"{name}-security-group",
            vpc_id=network.vpc.id,
            name=f"tradai-{env}-{name}",
            description=description,
            tags=tags("security", Name=f"tradai-{env}-{name}"),
        )

    alb = group("alb", "ALB: HTTPS from the internet; HTTP only to redirect")
    ecs = group("ecs", "ECS tasks: from the ALB and from each other on service ports")
    database = group("database", "RDS PostgreSQL: from ECS tasks only")

    def ingress(name: str, target: aws.ec2.SecurityGroup, port: int, description: str, **source: Any):
        aws.vpc.SecurityGroupIngressRule(
            name,
            security_group_id=target.id,
            ip_protocol="tcp",
            from_port=port,
            to_port=port,
            description=description,
            tags=tags("security"),
            **source,
        )

    def egress(name: str, target: aws.ec2.SecurityGroup, port: int, description: str, **destination: Any):
        aws.vpc.SecurityGroupEgressRule(
            name,
            security_group_id=target.id,
            ip_protocol="tcp",
            from_port=port,
            to_port=port,
            description=description,
            tags=tags("security"),
            **destination,
        )

    ingress("alb-in-https", alb, 443, "HTTPS from the internet", cidr_ipv4="0.0.0.0/0")
    ingress("alb-in-http", alb, 80, "HTTP from the internet, redirected to HTTPS", cidr_ipv4="0.0.0.0/0")
    for port, what in ALB_TARGET_PORTS.items():
        egress(f"alb-out-{port}", alb, port, f"to the {what}", referenced_security_group_id=ecs.id)
        ingress(f"ecs-in-alb-{port}", ecs, port, f"{what} from the ALB", referenced_security_group_id=alb.id)
    for port, what in INTERNAL_PORTS.items():
        ingress(
            f"ecs-in-self-{port}", ecs, port, f"{what} from ECS tasks", referenced_security_group_id=ecs.id
        )
        egress(f"ecs-out-self-{port}", ecs, port, f"{what} to ECS tasks", referenced_security_group_id=ecs.id)
    egress(
        "ecs-out-https",
        ecs,
        443,
        "AWS APIs, ECR, exchanges (through NAT or the gateway endpoints)",
        cidr_ipv4="0.0.0.0/0",
    )
    egress("ecs-out-postgres", ecs, POSTGRES_PORT, "to RDS", referenced_security_group_id=database.id)
    ingress(
        "database-in-ecs",
        database,
        POSTGRES_PORT,
        "PostgreSQL from ECS tasks",
        referenced_security_group_id=ecs.id,
    )
    return SecurityGroups(alb=alb, ecs=ecs, database=database)


# --- IAM ------------------------------------------------------------------------------------------


@dataclass
class Roles:
    execution: aws.iam.Role
    dagster: aws.iam.Role  # webserver and daemon: the run launcher
    run: aws.iam.Role
    code_location: aws.iam.Role
    mlflow: aws.iam.Role
    api: aws.iam.Role
    bot: aws.iam.Role


@dataclass
class RoleInputs:
    """ARNs the policies are scoped to."""

    account_id: pulumi.Output[str]
    bucket_arns: dict[str, pulumi.Output[str]]
    table_arns: list[pulumi.Output[str]]
    repository_arns: list[pulumi.Output[str]]
    log_group_arns: list[pulumi.Output[str]]
    run_log_group_arn: pulumi.Output[str]
    secret_arns: list[pulumi.Output[str]]
    exchange_secret_arns: list[pulumi.Output[str]]
    alerts_topic_arn: pulumi.Output[str]


def _statement(sid: str, actions: list[str], resources: list[str], condition: dict | None = None) -> dict:
    statement = {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


def _policy(statements: list[dict]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def _objects(bucket_arn: str, prefix: str = "") -> str:
    return f"{bucket_arn}/{prefix}*"


def _ecs_tasks_trust(account_id: str, region: str) -> str:
    """ECS tasks of this account may assume the role (and no other account's, by source)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                    "Condition": {
                        "StringEquals": {"aws:SourceAccount": account_id},
                        "ArnLike": {"aws:SourceArn": f"arn:aws:ecs:{region}:{account_id}:*"},
                    },
                }
            ],
        }
    )


def create_roles(settings: Settings, tags: Tagger, inputs: RoleInputs) -> Roles:
    env, region = settings.env, settings.region
    cluster = aws_contract.cluster_name(env)
    buckets = inputs.bucket_arns

    def role(name: str, service: str, description: str) -> aws.iam.Role:
        return aws.iam.Role(
            f"{name}-role",
            name=f"tradai-{env}-{name}",
            description=description,
            assume_role_policy=inputs.account_id.apply(lambda account: _ecs_tasks_trust(account, region)),
            tags=tags(service),
        )

    def attach(name: str, target: aws.iam.Role, policy: pulumi.Output[str]) -> None:
        aws.iam.RolePolicy(f"{name}-policy", role=target.id, policy=policy)

    compute_logs = aws_contract.COMPUTE_LOGS_PREFIX + "/"

    def read_bucket(sid: str, arn: str) -> list[dict]:
        return [
            _statement(f"{sid}Read", ["s3:GetObject"], [_objects(arn)]),
            _statement(f"{sid}List", ["s3:ListBucket"], [arn]),
        ]

    def write_bucket(sid: str, arn: str) -> list[dict]:
        return [
            _statement(
                f"{sid}ReadWrite", ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], [_objects(arn)]
            ),
            _statement(f"{sid}List", ["s3:ListBucket"], [arn]),
        ]

    def write_compute_logs(arn: str) -> list[dict]:
        return [
            _statement(
                "ComputeLogsReadWrite",
                ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                [_objects(arn, compute_logs)],
            ),
            _statement(
                "ComputeLogsList",
                ["s3:ListBucket"],
                [arn],
                {"StringLike": {"s3:prefix": [f"{compute_logs}*"]}},
            ),
        ]

    bot_services = f"service/{cluster}/{aws_contract.BOT_SERVICE_PREFIX}*"

    def find_bot_services(account: str) -> list[dict]:
        return [
            _statement(
                "ListServicesOfTheCluster",
                ["ecs:ListServices"],
                ["*"],
                {"ArnEquals": {"ecs:cluster": f"arn:aws:ecs:{region}:{account}:cluster/{cluster}"}},
            ),
            _statement(
                "DescribeBotServices",
                ["ecs:DescribeServices", "ecs:ListTagsForResource"],
                [f"arn:aws:ecs:{region}:{account}:{bot_services}"],
            ),
        ]

    def notify(topic_arn: str) -> list[dict]:
        return [_statement("NotifyAlerts", ["sns:Publish"], [topic_arn])]

    def manage_bots(account: str, bot_role: str, execution_role: str, exchange_secrets: list[str]) -> list[dict]:
        """Create, update and delete the bots' services (deployments run as Dagster runs)."""
        families = f"task-definition/{aws_contract.PROJECT}-{env}-{aws_contract.BOT_SERVICE_PREFIX}*"
        return [
            *find_bot_services(account),
            _statement(
                "ManageBotServices",
                ["ecs:CreateService", "ecs:UpdateService", "ecs:DeleteService", "ecs:TagResource", "ecs:UntagResource"],
                [f"arn:aws:ecs:{region}:{account}:{bot_services}"],
            ),
            _statement(
                "RegisterBotTaskDefinitions", ["ecs:RegisterTaskDefinition", "ecs:DescribeTaskDefinition"], ["*"]
            ),
            _statement(
                "TagBotTaskDefinitions",
                ["ecs:TagResource"],
                [f"arn:aws:ecs:{region}:{account}:{families}"],
                {"StringEquals": {"ecs:CreateAction": "RegisterTaskDefinition"}},
            ),
            _statement(
                "PassOnlyTheBotRoles",
                ["iam:PassRole"],
                [bot_role, execution_role],
                {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
            ),
            # The product checks that a bot's exchange secret exists; it never reads its value.
            _statement("CheckExchangeSecretsExist", ["secretsmanager:DescribeSecret"], exchange_secrets),
        ]

    execution = role("ecs-execution", "ecs", "ECS agent: pull images, write logs, read the stack's secrets")
    attach(
        "ecs-execution",
        execution,
        pulumi.Output.all(
            repositories=inputs.repository_arns, logs=inputs.log_group_arns, secrets=inputs.secret_arns
        ).apply(
            lambda a: _policy(
                [
                    _statement("EcrLogin", ["ecr:GetAuthorizationToken"], ["*"]),
                    _statement(
                        "PullImages",
                        [
                            "ecr:BatchCheckLayerAvailability",
                            "ecr:GetDownloadUrlForLayer",
                            "ecr:BatchGetImage",
                        ],
                        a["repositories"],
                    ),
                    _statement(
                        "WriteLogs",
                        ["logs:CreateLogStream", "logs:PutLogEvents"],
                        [f"{arn}:*" for arn in a["logs"]],
                    ),
                    _statement("ReadSecrets", ["secretsmanager:GetSecretValue"], a["secrets"]),
                ]
            )
        ),
    )

    run = role("dagster-run", "dagster", "Dagster runs: market data, backtests, training")
    dagster = role("dagster", "dagster", "Dagster webserver and daemon: launch and stop runs")
    attach(
        "dagster",
        dagster,
        pulumi.Output.all(
            account=inputs.account_id,
            run_role=run.arn,
            execution_role=execution.arn,
            run_logs=inputs.run_log_group_arn,
            logs_bucket=buckets["logs"],
        ).apply(
            lambda a: _policy(
                [
                    _statement(
                        "RunTasksOnTheCluster",
                        ["ecs:RunTask"],
                        [f"arn:aws:ecs:{region}:{a['account']}:task-definition/run_*"],
                        {
                            "ArnEquals": {
                                "ecs:cluster": f"arn:aws:ecs:{region}:{a['account']}:cluster/{cluster}"
                            }
                        },
                    ),
                    _statement(
                        "WatchAndStopTasksOnTheCluster",
                        ["ecs:DescribeTasks", "ecs:StopTask"],
                        [f"arn:aws:ecs:{region}:{a['account']}:task/{cluster}/*"],
                    ),
                    _statement(
                        "TagTasksAtLaunch",
                        ["ecs:TagResource"],
                        [f"arn:aws:ecs:{region}:{a['account']}:task/{cluster}/*"],
                        {"StringEquals": {"ecs:CreateAction": "RunTask"}},
                    ),
                    _statement(
                        "RegisterRunTaskDefinitions",
                        ["ecs:RegisterTaskDefinition", "ecs:DescribeTaskDefinition"],
                        ["*"],
                    ),
                    _statement(
                        "PassOnlyTheRunRoles",
                        ["iam:PassRole"],
                        [a["run_role"], a["execution_role"]],
                        {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
                    ),
                    _statement("ReadRunLogs", ["logs:GetLogEvents"], [f"{a['run_logs']}:*"]),
                    *write_compute_logs(a["logs_bucket"]),
                ]
            )
        ),
    )
    attach(
        "dagster-run",
        run,
        pulumi.Output.all(**buckets).apply(
            lambda b: _policy(
                [
                    *write_bucket("ArcticDb", b["arcticdb"]),
                    *write_bucket("Results", b["results"]),
                    *read_bucket("Configs", b["configs"]),
                    *write_compute_logs(b["logs"]),
                ]
            )
        ),
    )

    code_location = role("code-location", "dagster", "Code location: sensors and schedules")
    attach(
        "code-location",
        code_location,
        pulumi.Output.all(buckets=buckets, tables=inputs.table_arns).apply(
            lambda a: _policy(
                [
                    *read_bucket("Configs", a["buckets"]["configs"]),
                    *read_bucket("Results", a["buckets"]["results"]),
                    *read_bucket("ArcticDb", a["buckets"]["arcticdb"]),
                    *write_compute_logs(a["buckets"]["logs"]),
                    _statement(
                        "ReadBotState",
                        ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan"],
                        a["tables"],
                    ),
                    # The stale-data sensor's pause and resume requests (items pause#<strategy_id>).
                    _statement("RequestBotPause", ["dynamodb:PutItem"], a["tables"]),
                ]
            )
        ),
    )

    mlflow = role("mlflow", "mlflow", "MLflow server: artifacts")
    attach(
        "mlflow",
        mlflow,
        buckets["mlflow"].apply(lambda arn: _policy(write_bucket("Artifacts", arn))),
    )

    api = role("api", "api", "HTTP API: reads results and configs")
    attach(
        "api",
        api,
        pulumi.Output.all(**buckets).apply(
            lambda b: _policy([*read_bucket("Results", b["results"]), *read_bucket("Configs", b["configs"])])
        ),
    )

    bot = role("bot", "bots", "Live and dry-run bots: state, heartbeats, configs, candles")
    attach(
        "bot",
        bot,
        pulumi.Output.all(buckets=buckets, tables=inputs.table_arns).apply(
            lambda a: _policy(
                [
                    _statement(
                        "BotStateAndHeartbeats",
                        [
                            "dynamodb:GetItem",
                            "dynamodb:PutItem",
                            "dynamodb:UpdateItem",
                            "dynamodb:DeleteItem",
                            "dynamodb:Query",
                        ],
                        a["tables"],
                    ),
                    *read_bucket("Configs", a["buckets"]["configs"]),
                    # Each bot uploads its trade export beside its config (resources/bot_trades.py).
                    _statement(
                        "UploadBotTrades",
                        ["s3:PutObject"],
                        [_objects(a["buckets"]["configs"], f"{aws_contract.BOT_CONFIGS_PREFIX}/") + "/trades.json"],
                    ),
                    *read_bucket("ArcticDb", a["buckets"]["arcticdb"]),
                ]
            )
        ),
    )
    # Deployments and the kill switch run as Dagster runs; sensors notify; the API lists bots and has
    # its own kill switch (it stops services, so it may update them but never create or pass roles).
    bot_management = pulumi.Output.all(
        configs=buckets["configs"],
        account=inputs.account_id,
        bot_role=bot.arn,
        execution_role=execution.arn,
        exchange_secrets=pulumi.Output.all(*inputs.exchange_secret_arns),
        topic=inputs.alerts_topic_arn,
    )
    attach(
        "dagster-run-bots",
        run,
        bot_management.apply(
            lambda a: _policy(
                [
                    *manage_bots(a["account"], a["bot_role"], a["execution_role"], list(a["exchange_secrets"])),
                    # Each deployment writes the config its bot runs with (bots/<id>/config-<hash>.json).
                    _statement(
                        "WriteBotConfigs",
                        ["s3:GetObject", "s3:PutObject"],
                        [_objects(a["configs"], aws_contract.BOT_CONFIGS_PREFIX + "/")],
                    ),
                    *notify(a["topic"]),
                ]
            )
        ),
    )
    attach("code-location-notify", code_location, bot_management.apply(lambda a: _policy(notify(a["topic"]))))
    attach(
        "api-bots",
        api,
        pulumi.Output.all(account=inputs.account_id, tables=inputs.table_arns, arcticdb=buckets["arcticdb"]).apply(
            lambda a: _policy(
                [
                    # Promotions and rollbacks through the API append to the models' audit log in ArcticDB.
                    *write_bucket("ArcticDb", a["arcticdb"]),
                    *find_bot_services(a["account"]),
                    _statement(
                        "StopBotServices",
                        ["ecs:UpdateService"],
                        [f"arn:aws:ecs:{region}:{a['account']}:{bot_services}"],
                    ),
                    _statement(
                        "ReadBotHealth",
                        ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan"],
                        a["tables"],
                    ),
                ]
            )
        ),
    )
    return Roles(
        execution=execution,
        dagster=dagster,
        run=run,
        code_location=code_location,
        mlflow=mlflow,
        api=api,
        bot=bot,
    )
