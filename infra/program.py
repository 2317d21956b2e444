"""The whole stack, in dependency order. ``infra/__main__.py`` runs :func:`main`."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra import config, observability
from infra.compute import create_compute
from infra.database import create_database
from infra.edge import create_edge
from infra.network import create_network
from infra.secret_store import create_secrets
from infra.security import RoleInputs, create_roles, create_security_groups
from infra.storage import create_storage
from resources import aws_contract


def main() -> None:
    settings = config.load()
    tags = config.Tagger(settings)

    network = create_network(settings, tags)
    groups = create_security_groups(settings, tags, network)
    storage = create_storage(settings, tags)
    database = create_database(settings, tags, network, groups)
    secrets = create_secrets(settings, tags, database)
    logs = observability.create_log_groups(settings, tags)
    alerts = observability.create_alerts_topic(settings, tags)
    roles = create_roles(
        settings,
        tags,
        RoleInputs(
            account_id=aws.get_caller_identity_output().account_id,
            bucket_arns={kind: bucket.arn for kind, bucket in storage.buckets.items()},
            table_arns=[storage.trading_state.arn],
            repository_arns=[repository.arn for repository in storage.repositories.values()],
            log_group_arns=logs.arns,
            run_log_group_arn=logs["dagster-runs"].arn,
            secret_arns=secrets.arns,
            exchange_secret_arns=[secret.arn for secret in secrets.exchanges.values()],
            alerts_topic_arn=alerts.arn,
        ),
    )
    edge = create_edge(settings, tags, network, groups)
    compute = create_compute(settings, tags, network, groups, storage, secrets, roles, logs, edge, alerts)

    observability.create_budget(settings, tags, alerts)
    observability.create_alarms(
        settings,
        tags,
        alerts,
        database.instance,
        edge.load_balancer,
        edge.target_groups["dagster"],
    )

    pulumi.export("dagsterUrl", f"https://{settings.host('dagster')}")
    pulumi.export("mlflowUrl", f"https://{settings.host('mlflow')}")
    if settings.api_command:
        pulumi.export("apiUrl", f"https://{settings.host('api')}")
    pulumi.export("albDnsName", edge.load_balancer.dns_name)
    pulumi.export("cognitoUserPoolId", edge.user_pool.id)
    pulumi.export("clusterName", compute.cluster.name)
    pulumi.export("appImage", compute.app_image)
    pulumi.export("dagsterImage", compute.dagster_image)
    pulumi.export("botImage", compute.bot_image)
    pulumi.export(
        "repositoryUrls", {image: repo.repository_url for image, repo in storage.repositories.items()}
    )
    pulumi.export("buckets", {kind: bucket.bucket for kind, bucket in storage.buckets.items()})
    pulumi.export("tradingStateTable", storage.trading_state.name)
    pulumi.export("exchangeSecrets", {name: secret.name for name, secret in secrets.exchanges.items()})
    pulumi.export("botRoleArn", roles.bot.arn)
    pulumi.export("executionRoleArn", roles.execution.arn)
    pulumi.export("botLogGroup", logs["bots"].name)
    pulumi.export("privateSubnetIds", [subnet.id for subnet in network.private_subnets])
    pulumi.export("ecsSecurityGroupId", groups.ecs.id)
    pulumi.export("databaseEndpoint", database.instance.address)
    pulumi.export("alertsTopicArn", alerts.arn)
    pulumi.export("serviceDiscoveryNamespace", aws_contract.SERVICE_DISCOVERY_NAMESPACE)
