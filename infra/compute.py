"""ECS on Fargate: the cluster, Cloud Map names, and the long-running services.

Services: the Dagster webserver (behind the ALB), the Dagster daemon (exactly one task), the code
location (gRPC, found by the webserver, daemon and runs as ``code-location.tradai.internal``), the
MLflow server (behind the ALB and as ``mlflow.tradai.internal``) and, once its command is configured,
the HTTP API. Runs are not services: the daemon's EcsRunLauncher starts one task per run.

Every Dagster process gets the same environment, the one deploy/dagster.yaml reads, so the
webserver, the daemon, sensors in the code location and the run workers all load one instance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.config import Settings, Tagger
from infra.edge import Edge
from infra.network import Network
from infra.observability import LogGroups
from infra.secret_store import Secrets
from infra.security import Roles, SecurityGroups
from infra.storage import Storage
from resources import aws_contract
from resources.aws_contract import EnvVar

WORKSPACE_FILE = "/opt/dagster/app/workspace.yaml"


@dataclass
class Compute:
    cluster: aws.ecs.Cluster
    task_definitions: dict[str, aws.ecs.TaskDefinition]
    services: dict[str, aws.ecs.Service]
    app_image: pulumi.Output[str]
    dagster_image: pulumi.Output[str]
    bot_image: pulumi.Output[str]


def dagster_environment(
    env: str,
    region: str,
    *,
    mlflow_ui_url: str,
    logs_bucket: str,
    subnet_ids: list[str],
    security_group_id: str,
    run_role_arn: str,
    execution_role_arn: str,
    run_log_group: str,
    database_url_secret_arn: str,
    sweep_url_secret_arn: str,
) -> dict[str, str]:
    """Environment of every Dagster process: the product's runtime and what dagster.yaml reads."""
    return {
        EnvVar.TRADAI_ENV: "aws",
        EnvVar.TRADAI_STACK: env,
        EnvVar.TRADAI_HOME: aws_contract.TRADAI_HOME_IN_IMAGE,
        EnvVar.DAGSTER_HOME: aws_contract.DAGSTER_HOME_IN_IMAGE,
        EnvVar.MLFLOW_TRACKING_URI: aws_contract.mlflow_tracking_uri(),
        EnvVar.MLFLOW_UI_URL: mlflow_ui_url,
        EnvVar.ARCTICDB_URI: aws_contract.arcticdb_uri(env, region),
        EnvVar.AWS_REGION: region,
        EnvVar.LOGS_BUCKET: logs_bucket,
        EnvVar.ECS_CLUSTER: aws_contract.cluster_name(env),
        EnvVar.RUN_SUBNET_IDS: ",".join(subnet_ids),
        EnvVar.RUN_SECURITY_GROUP_IDS: security_group_id,
        EnvVar.RUN_TASK_ROLE_ARN: run_role_arn,
        EnvVar.ECS_EXECUTION_ROLE_ARN: execution_role_arn,
        EnvVar.RUN_LOG_GROUP: run_log_group,
        EnvVar.DAGSTER_PG_URL_SECRET_ARN: database_url_secret_arn,
        EnvVar.SWEEP_STORAGE_URL_SECRET_ARN: sweep_url_secret_arn,
    }


def bot_management_environment(
    env: str,
    region: str,
    *,
    subnet_ids: list[str],
    security_group_id: str,
    execution_role_arn: str,
    bot_role_arn: str,
    bot_image: str,
    alerts_topic_arn: str,
    allow_live: bool,
    owner: str,
    cost_center: str,
) -> dict[str, str]:
    """What runs, sensors and the API need to manage the bots' ECS services and to notify."""
    return {
        EnvVar.TRADAI_STACK: env,
        EnvVar.AWS_REGION: region,
        EnvVar.ECS_CLUSTER: aws_contract.cluster_name(env),
        EnvVar.RUN_SUBNET_IDS: ",".join(subnet_ids),
        EnvVar.RUN_SECURITY_GROUP_IDS: security_group_id,
        EnvVar.ECS_EXECUTION_ROLE_ARN: execution_role_arn,
        EnvVar.BOT_TASK_ROLE_ARN: bot_role_arn,
        EnvVar.BOT_IMAGE: bot_image,
        EnvVar.ALERTS_TOPIC_ARN: alerts_topic_arn,
        EnvVar.ALLOW_LIVE: "true" if allow_live else "false",
        EnvVar.OWNER: owner,
        EnvVar.COST_CENTER: cost_center,
    }


def workspace_environment() -> dict[str, str]:
    """What deploy/workspace.yaml reads: where the code location's gRPC server listens."""
    return {
        EnvVar.CODE_LOCATION_HOST: aws_contract.internal_host(aws_contract.CODE_LOCATION_SERVICE),
        EnvVar.CODE_LOCATION_PORT: str(aws_contract.CODE_LOCATION_PORT),
    }


def _container(
    name: str,
    image: str,
    command: list[str],
    environment: dict[str, str],
    secrets: dict[str, str],
    log_group: str,
    region: str,
    port: int | None = None,
    health_check: list[str] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "essential": True,
        "command": command,
        "environment": [{"name": k, "value": v} for k, v in sorted(environment.items())],
        "secrets": [{"name": k, "valueFrom": v} for k, v in sorted(secrets.items())],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": log_group,
                "awslogs-region": region,
                "awslogs-stream-prefix": name,
            },
        },
        "stopTimeout": 60,
    }
    if port is not None:
        container["portMappings"] = [{"containerPort": port, "protocol": "tcp"}]
    if health_check is not None:
        container["healthCheck"] = {
            "command": ["CMD-SHELL", " ".join(health_check)],
            "interval": 60,
            "timeout": 30,
            "retries": 3,
            "startPeriod": 180,
        }
    return container


def create_compute(
    settings: Settings,
    tags: Tagger,
    network: Network,
    groups: SecurityGroups,
    storage: Storage,
    secrets: Secrets,
    roles: Roles,
    logs: LogGroups,
    edge: Edge,
    alerts: aws.sns.Topic,
) -> Compute:
    env, region = settings.env, settings.region
    cluster = aws.ecs.Cluster(
        "cluster",
        name=aws_contract.cluster_name(env),
        settings=[
            {"name": "containerInsights", "value": "enabled" if settings.container_insights else "disabled"}
        ],
        tags=tags("ecs"),
    )
    service_capacity = "FARGATE_SPOT" if settings.services_on_spot else "FARGATE"
    capacity = aws.ecs.ClusterCapacityProviders(
        "cluster-capacity",
        cluster_name=cluster.name,
        capacity_providers=["FARGATE", "FARGATE_SPOT"],
        default_capacity_provider_strategies=[{"capacity_provider": service_capacity, "weight": 1}],
    )
    namespace = aws.servicediscovery.PrivateDnsNamespace(
        "namespace",
        name=aws_contract.SERVICE_DISCOVERY_NAMESPACE,
        vpc=network.vpc.id,
        description="Names of the services inside the VPC",
        tags=tags("ecs"),
    )

    def registry(name: str) -> aws.servicediscovery.Service:
        return aws.servicediscovery.Service(
            f"{name}-discovery",
            name=name,
            dns_config={
                "namespace_id": namespace.id,
                "dns_records": [{"ttl": 10, "type": "A"}],
                "routing_policy": "MULTIVALUE",
            },
            tags=tags("ecs"),
        )

    app_image = pulumi.Output.concat(storage.repositories["app"].repository_url, ":", settings.image_tag)
    dagster_image = pulumi.Output.concat(
        storage.repositories["dagster"].repository_url, ":", settings.image_tag
    )
    subnet_ids = [subnet.id for subnet in network.private_subnets]

    bot_image = pulumi.Output.concat(storage.repositories["bot"].repository_url, ":", settings.image_tag)
    bot_env = pulumi.Output.all(
        subnet_ids=pulumi.Output.all(*subnet_ids),
        security_group_id=groups.ecs.id,
        execution_role_arn=roles.execution.arn,
        bot_role_arn=roles.bot.arn,
        bot_image=bot_image,
        alerts_topic_arn=alerts.arn,
    ).apply(
        lambda a: bot_management_environment(
            env, region, allow_live=settings.allow_live, owner=settings.owner, cost_center=settings.cost_center, **a
        )
    )
    dagster_env = pulumi.Output.all(
        bot_env,
        pulumi.Output.all(
            logs_bucket=storage.buckets["logs"].bucket,
            subnet_ids=pulumi.Output.all(*subnet_ids),
            security_group_id=groups.ecs.id,
            run_role_arn=roles.run.arn,
            execution_role_arn=roles.execution.arn,
            run_log_group=logs["dagster-runs"].name,
            database_url_secret_arn=secrets.dagster_database_url.arn,
            sweep_url_secret_arn=secrets.sweep_database_url.arn,
        ),
    ).apply(
        lambda a: {
            **a[0],
            **dagster_environment(env, region, mlflow_ui_url=f"https://{settings.host('mlflow')}", **a[1]),
        }
    )
    # The instance's storage and the product's Optuna storage, by reference, in every Dagster process.
    dagster_secrets = pulumi.Output.all(secrets.dagster_database_url.arn, secrets.sweep_database_url.arn).apply(
        lambda arns: {EnvVar.DAGSTER_PG_URL: arns[0], EnvVar.SWEEP_STORAGE_URL: arns[1]}
    )

    def task_definition(
        name: str, service: str, size_key: str, task_role: aws.iam.Role, container: pulumi.Output[dict]
    ) -> aws.ecs.TaskDefinition:
        size = settings.service_sizes[size_key]
        return aws.ecs.TaskDefinition(
            f"{name}-task",
            family=f"tradai-{env}-{name}",
            cpu=str(size.cpu),
            memory=str(size.memory),
            network_mode="awsvpc",
            requires_compatibilities=["FARGATE"],
            runtime_platform={"operating_system_family": "LINUX", "cpu_architecture": "X86_64"},
            execution_role_arn=roles.execution.arn,
            task_role_arn=task_role.arn,
            container_definitions=container.apply(lambda c: json.dumps([c])),
            tags=tags(service),
        )

    def container(name: str, image: pulumi.Output[str], environment, secret_refs, log_group: str, **kwargs):
        return pulumi.Output.all(
            image=image,
            environment=environment,
            secrets=secret_refs,
            log_group=logs[log_group].name,
        ).apply(
            lambda a: _container(
                name,
                a["image"],
                environment=a["environment"],
                secrets=a["secrets"],
                log_group=a["log_group"],
                region=region,
                **kwargs,
            )
        )

    mlflow_bucket = aws_contract.bucket_name("mlflow", env)
    mlflow_artifacts = f"s3://{mlflow_bucket}/{aws_contract.MLFLOW_ARTIFACTS_PREFIX}"
    # The webserver and daemon also read deploy/workspace.yaml.
    system_env = dagster_env.apply(lambda e: {**e, **workspace_environment()})
    definitions = {
        "webserver": task_definition(
            "webserver",
            "dagster",
            "webserver",
            roles.dagster,
            container(
                "webserver",
                dagster_image,
                system_env,
                dagster_secrets,
                "webserver",
                command=[
                    "dagster-webserver",
                    "-h",
                    "0.0.0.0",
                    "-p",
                    str(aws_contract.WEBSERVER_PORT),
                    "-w",
                    WORKSPACE_FILE,
                ],
                port=aws_contract.WEBSERVER_PORT,
            ),
        ),
        "daemon": task_definition(
            "daemon",
            "dagster",
            "daemon",
            roles.dagster,
            container(
                "daemon",
                dagster_image,
                system_env,
                dagster_secrets,
                "daemon",
                command=["dagster-daemon", "run", "-w", WORKSPACE_FILE],
                health_check=["dagster-daemon", "liveness-check"],
            ),
        ),
        "code-location": task_definition(
            "code-location",
            "dagster",
            "codeLocation",
            roles.code_location,
            container(
                "code-location",
                app_image,
                pulumi.Output.all(dagster_env, app_image).apply(
                    lambda a: {**a[0], EnvVar.DAGSTER_CURRENT_IMAGE: a[1]}
                ),
                dagster_secrets,
                "code-location",
                # RDS creates only Dagster's database: the sweeps' one is created here, before any
                # sweep can be planned (the sweep job runs from this code location).
                command=[
                    "sh",
                    "-c",
                    (
                        f"python -m deploy.ensure_database --env {EnvVar.SWEEP_STORAGE_URL}"
                        " && exec dagster code-server start -h 0.0.0.0"
                        f" -p {aws_contract.CODE_LOCATION_PORT} -m {aws_contract.CODE_LOCATION_MODULE}"
                        f" -a {aws_contract.CODE_LOCATION_ATTRIBUTE} --location-name {aws_contract.CODE_LOCATION_NAME}"
                    ),
                ],
                port=aws_contract.CODE_LOCATION_PORT,
                health_check=[
                    "dagster",
                    "api",
                    "grpc-health-check",
                    "-p",
                    str(aws_contract.CODE_LOCATION_PORT),
                ],
            ),
        ),
        "mlflow": task_definition(
            "mlflow",
            "mlflow",
            "mlflow",
            roles.mlflow,
            container(
                "mlflow",
                app_image,
                pulumi.Output.from_input(
                    {
                        EnvVar.AWS_REGION: region,
                        EnvVar.MLFLOW_ARTIFACTS_DESTINATION: mlflow_artifacts,
                        EnvVar.MLFLOW_SERVER_ALLOWED_HOSTS: ",".join(_mlflow_allowed_hosts(settings)),
                    }
                ),
                secrets.mlflow_database_url.arn.apply(lambda arn: {EnvVar.MLFLOW_BACKEND_STORE_URI: arn}),
                "mlflow",
                command=[
                    "sh",
                    "-c",
                    "python -m deploy.ensure_database && exec mlflow server --host 0.0.0.0"
                    f" --port {aws_contract.MLFLOW_PORT} --workers 2",
                ],
                port=aws_contract.MLFLOW_PORT,
            ),
        ),
    }
    if settings.api_command:
        definitions["api"] = task_definition(
            "api",
            "api",
            "api",
            roles.api,
            container(
                "api",
                app_image,
                pulumi.Output.all(
                    bot_env,
                    {
                        EnvVar.TRADAI_ENV: "aws",
                        EnvVar.TRADAI_STACK: env,
                        EnvVar.AWS_REGION: region,
                        EnvVar.MLFLOW_TRACKING_URI: aws_contract.mlflow_tracking_uri(),
                        EnvVar.ARCTICDB_URI: aws_contract.arcticdb_uri(env, region),
                        EnvVar.DAGSTER_GRAPHQL_URL: aws_contract.dagster_graphql_url(),
                        EnvVar.API_AUTH: "jwks",
                        EnvVar.API_JWKS_URL: edge.user_pool.id.apply(
                            lambda pool: aws_contract.cognito_jwks_url(region, pool)
                        ),
                        EnvVar.API_JWT_ISSUER: edge.user_pool.id.apply(
                            lambda pool: aws_contract.cognito_issuer(region, pool)
                        ),
                        EnvVar.API_JWT_AUDIENCE: edge.api_client.id,
                        EnvVar.API_SCOPE_PREFIX: f"{aws_contract.API_RESOURCE_SERVER}/",
                    },
                ).apply(lambda a: {**a[0], **a[1]}),
                secrets.api_jwt.arn.apply(
                    lambda arn: {
                        name: aws_contract.json_key_reference(arn, key)
                        for name, key in aws_contract.API_JWT_SECRET_KEYS.items()
                    }
                ),
                "api",
                command=list(settings.api_command),
                port=aws_contract.API_PORT,
            ),
        )

    def service(
        name: str,
        *,
        service_tag: str,
        target_group: str | None = None,
        port: int | None = None,
        discovery: aws.servicediscovery.Service | None = None,
        single_task: bool = False,
    ) -> aws.ecs.Service:
        depends_on: list[pulumi.Resource] = [capacity]
        kwargs: dict[str, Any] = {}
        if target_group is not None:
            kwargs["load_balancers"] = [
                {
                    "target_group_arn": edge.target_groups[target_group].arn,
                    "container_name": name,
                    "container_port": port,
                }
            ]
            kwargs["health_check_grace_period_seconds"] = 300
            depends_on.append(edge.https_listener)
        if discovery is not None:
            kwargs["service_registries"] = {"registry_arn": discovery.arn}
        return aws.ecs.Service(
            f"{name}-service",
            name=name,
            cluster=cluster.arn,
            task_definition=definitions[name].arn,
            desired_count=1,
            capacity_provider_strategies=[{"capacity_provider": service_capacity, "weight": 1}],
            network_configuration={
                "subnets": subnet_ids,
                "security_groups": [groups.ecs.id],
                "assign_public_ip": False,
            },
            # The daemon must never run twice: stop the old task before starting the new one.
            deployment_maximum_percent=100 if single_task else 200,
            deployment_minimum_healthy_percent=0 if single_task else 100,
            deployment_circuit_breaker={"enable": True, "rollback": True},
            enable_ecs_managed_tags=True,
            propagate_tags="SERVICE",
            wait_for_steady_state=False,
            tags=tags(service_tag),
            opts=pulumi.ResourceOptions(depends_on=depends_on),
            **kwargs,
        )

    services = {
        "webserver": service(
            "webserver",
            service_tag="dagster",
            target_group="dagster",
            port=aws_contract.WEBSERVER_PORT,
            discovery=registry(aws_contract.WEBSERVER_SERVICE),
        ),
        "daemon": service("daemon", service_tag="dagster", single_task=True),
        "code-location": service(
            "code-location", service_tag="dagster", discovery=registry(aws_contract.CODE_LOCATION_SERVICE)
        ),
        "mlflow": service(
            "mlflow",
            service_tag="mlflow",
            target_group="mlflow",
            port=aws_contract.MLFLOW_PORT,
            discovery=registry(aws_contract.MLFLOW_SERVICE),
        ),
    }
    if "api" in definitions:
        services["api"] = service("api", service_tag="api", target_group="api", port=aws_contract.API_PORT)
    return Compute(
        cluster=cluster,
        task_definitions=definitions,
        services=services,
        app_image=app_image,
        dagster_image=dagster_image,
        bot_image=bot_image,
    )


def _mlflow_allowed_hosts(settings: Settings) -> list[str]:
    """Host headers MLflow answers: its public name, its Cloud Map name, and VPC addresses (ALB
    health checks use the task's IP)."""
    first_octet = settings.vpc_cidr.split(".")[0]
    internal = aws_contract.internal_host(aws_contract.MLFLOW_SERVICE)
    return [settings.host("mlflow"), internal, f"{internal}:{aws_contract.MLFLOW_PORT}", f"{first_octet}.*"]
