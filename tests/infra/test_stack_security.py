"""Security properties of every stack: private encrypted storage, least-privilege network and IAM."""

from __future__ import annotations

import json

import pytest
from stack_helpers import as_list, policy_documents, secret_value, statements

from infra.offline import DEPLOY_TIME_CONFIG
from infra.security import UNSCOPED_ACTIONS
from resources import aws_contract

STACKS = aws_contract.ENVIRONMENTS


def _by_bucket(record, type_):
    return {r.inputs["bucket"]: r for r in record.of_type(type_)}


@pytest.mark.parametrize("stack", STACKS)
def test_every_bucket_is_encrypted_private_tls_only_and_named_by_the_contract(stacks, stack):
    record = stacks[stack]
    buckets = {r.inputs["bucket"] for r in record.of_type("aws:s3/bucket:Bucket")}
    assert buckets == {aws_contract.bucket_name(kind, stack) for kind in aws_contract.BUCKET_KINDS}

    encryption = _by_bucket(
        record, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )
    access = _by_bucket(record, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    ownership = _by_bucket(record, "aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    policies = _by_bucket(record, "aws:s3/bucketPolicy:BucketPolicy")
    for bucket in buckets:
        rules = encryption[bucket].inputs["rules"]
        assert [r["applyServerSideEncryptionByDefault"]["sseAlgorithm"] for r in rules] == ["AES256"]
        block = access[bucket].inputs
        assert all(
            block[flag] is True
            for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        ), bucket
        assert ownership[bucket].inputs["rule"]["objectOwnership"] == "BucketOwnerEnforced"
        (deny,) = json.loads(policies[bucket].inputs["policy"])["Statement"]
        assert deny["Effect"] == "Deny"
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


@pytest.mark.parametrize("stack", STACKS)
def test_buckets_are_versioned_except_logs(stacks, stack):
    versioning = _by_bucket(stacks[stack], "aws:s3/bucketVersioning:BucketVersioning")
    assert set(versioning) == {
        aws_contract.bucket_name(kind, stack) for kind in aws_contract.BUCKET_KINDS if kind != "logs"
    }
    assert {v.inputs["versioningConfiguration"]["status"] for v in versioning.values()} == {"Enabled"}


@pytest.mark.parametrize("stack", STACKS)
def test_results_go_to_glacier_after_30_days_and_logs_expire_after_90(stacks, stack):
    lifecycle = _by_bucket(stacks[stack], "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    results = lifecycle[aws_contract.bucket_name("results", stack)].inputs["rules"]
    transitions = [t for rule in results for t in rule.get("transitions", [])]
    assert transitions == [{"days": 30, "storageClass": "GLACIER"}]
    logs = lifecycle[aws_contract.bucket_name("logs", stack)].inputs["rules"]
    assert [rule["expiration"]["days"] for rule in logs if "expiration" in rule] == [90]
    for bucket, config in lifecycle.items():
        if bucket != aws_contract.bucket_name("logs", stack):
            assert not any("days" in rule.get("expiration", {}) for rule in config.inputs["rules"]), bucket


# --- Security groups ------------------------------------------------------------------------------

ALB, ECS, DATABASE, NAT = "alb", "ecs", "database", "nat"
ANYWHERE = "0.0.0.0/0"
PRIVATE = ("10.0.11.0/24", "10.0.12.0/24")
EXPECTED_RULES = {
    (ALB, "ingress"): {(443, ANYWHERE), (80, ANYWHERE)},
    (ALB, "egress"): {(3000, ECS), (5000, ECS), (8000, ECS)},
    (ECS, "ingress"): {(3000, ALB), (5000, ALB), (8000, ALB), (3000, ECS), (4000, ECS), (5000, ECS)},
    (ECS, "egress"): {(443, ANYWHERE), (5432, DATABASE), (3000, ECS), (4000, ECS), (5000, ECS)},
    (DATABASE, "ingress"): {(5432, ECS)},
    (DATABASE, "egress"): set(),
}
NAT_RULES = {
    (NAT, "ingress"): {(port, cidr) for port in (80, 443) for cidr in PRIVATE},
    (NAT, "egress"): {(80, ANYWHERE), (443, ANYWHERE)},
}


def _rules(record):
    groups = {
        f"sg-{r.name}": r.name.removesuffix("-security-group")
        for r in record.of_type("aws:ec2/securityGroup:SecurityGroup")
    }
    found = {(group, direction): set() for group in groups.values() for direction in ("ingress", "egress")}
    for direction, type_ in (
        ("ingress", "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"),
        ("egress", "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"),
    ):
        for rule in record.of_type(type_):
            inputs = rule.inputs
            assert inputs["ipProtocol"] == "tcp" and inputs["fromPort"] == inputs["toPort"], rule.name
            peer = inputs.get("cidrIpv4") or groups[inputs["referencedSecurityGroupId"]]
            found[(groups[inputs["securityGroupId"]], direction)].add((inputs["fromPort"], peer))
    return groups, found


@pytest.mark.parametrize("stack", STACKS)
def test_security_group_rules_are_exactly_the_listed_ones(stacks, stack):
    record = stacks[stack]
    for group in record.of_type("aws:ec2/securityGroup:SecurityGroup"):
        assert "ingress" not in group.inputs and "egress" not in group.inputs, group.name
    _, found = _rules(record)
    expected = dict(EXPECTED_RULES)
    if stack != "prod":  # dev and staging run a NAT instance; prod uses NAT gateways
        expected.update(NAT_RULES)
    assert found == expected


@pytest.mark.parametrize("stack", STACKS)
def test_only_the_alb_takes_traffic_from_the_internet_and_only_on_80_and_443(stacks, stack):
    groups, _ = _rules(stacks[stack])
    open_ingress = {
        (groups[r.inputs["securityGroupId"]], r.inputs["fromPort"])
        for r in stacks[stack].of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.inputs.get("cidrIpv4") == ANYWHERE or r.inputs.get("cidrIpv6") == "::/0"
    }
    assert open_ingress == {(ALB, 80), (ALB, 443)}


@pytest.mark.parametrize("stack", STACKS)
def test_port_80_only_redirects_to_https(stacks, stack):
    listeners = {r.inputs["port"]: r for r in stacks[stack].of_type("aws:lb/listener:Listener")}
    assert set(listeners) == {80, 443}
    (action,) = listeners[80].inputs["defaultActions"]
    assert action["type"] == "redirect"
    assert action["redirect"] == {"port": "443", "protocol": "HTTPS", "statusCode": "HTTP_301"}
    https = listeners[443].inputs
    assert https["protocol"] == "HTTPS" and https["certificateArn"].startswith("arn:aws:acm:")
    assert https["sslPolicy"].startswith("ELBSecurityPolicy-TLS13")


# --- RDS ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_database_is_private_encrypted_tls_only_postgres_15(stacks, stack):
    record = stacks[stack]
    (database,) = record.of_type("aws:rds/instance:Instance")
    inputs = database.inputs
    assert inputs["engine"] == "postgres" and inputs["engineVersion"].split(".")[0] == "15"
    assert inputs["publiclyAccessible"] is False
    assert inputs["storageEncrypted"] is True
    assert inputs["vpcSecurityGroupIds"] == ["sg-database-security-group"]
    (subnets,) = record.of_type("aws:rds/subnetGroup:SubnetGroup")
    assert inputs["dbSubnetGroupName"] == subnets.inputs["name"]
    assert subnets.inputs["subnetIds"] == [
        f"subnet-database-subnet-{zone}" for zone in ("us-east-1a", "us-east-1b")
    ]
    (parameters,) = record.of_type("aws:rds/parameterGroup:ParameterGroup")
    assert inputs["parameterGroupName"] == parameters.inputs["name"]
    assert parameters.inputs["family"] == "postgres15"
    assert {"name": "rds.force_ssl", "value": "1"} in parameters.inputs["parameters"]
    # The database subnets have no route out of the VPC.
    (table,) = [r for r in record.of_type("aws:ec2/routeTable:RouteTable") if r.name == "database-routes"]
    assert not [
        r for r in record.of_type("aws:ec2/route:Route") if r.inputs["routeTableId"] == "database-routes-id"
    ]
    assert "routes" not in table.inputs


@pytest.mark.parametrize("stack", STACKS)
def test_database_urls_require_tls_and_secrets_stay_out_of_plain_inputs(stacks, stack):
    record = stacks[stack]
    versions = {
        r.inputs["secretId"]: secret_value(r.inputs["secretString"])
        for r in record.of_type("aws:secretsmanager/secretVersion:SecretVersion")
    }
    (database,) = record.of_type("aws:rds/instance:Instance")
    assert secret_value(database.inputs["password"]) == DEPLOY_TIME_CONFIG["tradai:dbPassword"]
    dagster = versions[
        record.by_output("name", aws_contract.secret_name(stack, "dagster-database-url")).outputs["arn"]
    ]
    mlflow = versions[
        record.by_output("name", aws_contract.secret_name(stack, "mlflow-database-url")).outputs["arn"]
    ]
    assert dagster.startswith("postgresql+psycopg2://tradai:") and dagster.endswith(
        "/dagster?sslmode=require"
    )
    assert mlflow.endswith("/mlflow?sslmode=require")
    sweeps = versions[
        record.by_output("name", aws_contract.secret_name(stack, "sweep-database-url")).outputs["arn"]
    ]
    assert sweeps.startswith("postgresql+psycopg2://tradai:") and sweeps.endswith("/sweeps?sslmode=require")
    # The password is URL-quoted in the URLs and appears nowhere but in RDS and the secret values.
    password = DEPLOY_TIME_CONFIG["tradai:dbPassword"]
    assert "offline-db-password%2F%2B%3D@" in dagster
    for resource in record.resources:
        if resource.type in ("aws:rds/instance:Instance", "aws:secretsmanager/secretVersion:SecretVersion"):
            continue
        text = json.dumps(resource.inputs)
        assert "offline-db-password" not in text and password not in text, resource.name
        assert DEPLOY_TIME_CONFIG["tradai:apiJwtSecret"] not in text, resource.name


# --- IAM ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_no_policy_grants_a_wildcard_action(stacks, stack):
    for role, document in policy_documents(stacks[stack]).items():
        for statement in statements(document):
            assert statement["Effect"] == "Allow", role
            actions = as_list(statement["Action"])
            assert not [a for a in actions if "*" in a], (role, statement["Sid"])
            if "*" in as_list(statement["Resource"]):
                assert set(actions) <= UNSCOPED_ACTIONS, (role, statement["Sid"])


@pytest.mark.parametrize("stack", STACKS)
def test_roles_are_assumable_only_by_their_service_from_this_account(stacks, stack):
    for role in stacks[stack].of_type("aws:iam/role:Role"):
        (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
        assert statement["Action"] == "sts:AssumeRole"
        service = statement["Principal"]["Service"]
        if role.inputs["name"].endswith("-nat"):
            assert service == "ec2.amazonaws.com"
        else:
            assert service == "ecs-tasks.amazonaws.com"
            assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}


def _statements_by_sid(record, role_name):
    return {s["Sid"]: s for s in statements(policy_documents(record)[role_name])}


@pytest.mark.parametrize("stack", STACKS)
def test_the_run_launcher_role_can_only_run_watch_and_stop_tasks_on_its_cluster(stacks, stack):
    record = stacks[stack]
    granted = _statements_by_sid(record, f"tradai-{stack}-dagster")
    ecs_actions = {
        action for s in granted.values() for action in as_list(s["Action"]) if action.startswith("ecs:")
    }
    assert ecs_actions == {
        "ecs:RunTask",
        "ecs:DescribeTasks",
        "ecs:StopTask",
        "ecs:RegisterTaskDefinition",
        "ecs:DescribeTaskDefinition",  # lets the launcher reuse a matching task definition
        "ecs:TagResource",  # RunTask with tags; limited to RunTask by condition
    }
    cluster_arn = f"arn:aws:ecs:us-east-1:123456789012:cluster/tradai-{stack}"
    run = granted["RunTasksOnTheCluster"]
    assert run["Condition"] == {"ArnEquals": {"ecs:cluster": cluster_arn}}
    assert run["Resource"] == ["arn:aws:ecs:us-east-1:123456789012:task-definition/run_*"]
    assert granted["WatchAndStopTasksOnTheCluster"]["Resource"] == [
        f"arn:aws:ecs:us-east-1:123456789012:task/tradai-{stack}/*"
    ]
    assert granted["TagTasksAtLaunch"]["Condition"] == {"StringEquals": {"ecs:CreateAction": "RunTask"}}
    pass_role = granted["PassOnlyTheRunRoles"]
    assert pass_role["Action"] == ["iam:PassRole"]
    assert pass_role["Resource"] == [
        f"arn:aws:iam::123456789012:role/tradai-{stack}-dagster-run",
        f"arn:aws:iam::123456789012:role/tradai-{stack}-ecs-execution",
    ]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    # Nothing else in the account: no other iam: or ecs: grants in any other role, except the bots'
    # management (test below).
    for role, document in policy_documents(record).items():
        if role != f"tradai-{stack}-dagster":
            for statement in statements(document):
                if statement["Sid"] in BOT_MANAGEMENT_SIDS:
                    continue
                assert not [a for a in as_list(statement["Action"]) if a.startswith(("iam:", "ecs:"))], role


BOT_MANAGEMENT_SIDS = {
    "ListServicesOfTheCluster",
    "DescribeBotServices",
    "ManageBotServices",
    "RegisterBotTaskDefinitions",
    "TagBotTaskDefinitions",
    "PassOnlyTheBotRoles",
    "StopBotServices",
}


@pytest.mark.parametrize("stack", STACKS)
def test_bots_are_managed_by_runs_and_stopped_by_the_api_on_bot_services_only(stacks, stack):
    record = stacks[stack]
    account, region, cluster = "123456789012", "us-east-1", f"tradai-{stack}"
    bot_services = [f"arn:aws:ecs:{region}:{account}:service/{cluster}/{aws_contract.BOT_SERVICE_PREFIX}*"]
    cluster_condition = {"ArnEquals": {"ecs:cluster": f"arn:aws:ecs:{region}:{account}:cluster/{cluster}"}}
    run = _statements_by_sid(record, f"tradai-{stack}-dagster-run")
    assert run["ManageBotServices"]["Resource"] == bot_services
    assert set(run["ManageBotServices"]["Action"]) == {
        "ecs:CreateService", "ecs:UpdateService", "ecs:DeleteService", "ecs:TagResource", "ecs:UntagResource"
    }
    assert run["DescribeBotServices"]["Resource"] == bot_services
    assert run["ListServicesOfTheCluster"]["Condition"] == cluster_condition
    assert run["TagBotTaskDefinitions"]["Resource"] == [
        f"arn:aws:ecs:{region}:{account}:task-definition/tradai-{stack}-{aws_contract.BOT_SERVICE_PREFIX}*"
    ]
    assert run["PassOnlyTheBotRoles"]["Resource"] == [
        f"arn:aws:iam::{account}:role/tradai-{stack}-bot",
        f"arn:aws:iam::{account}:role/tradai-{stack}-ecs-execution",
    ]
    exchange_secrets = {
        r.outputs["arn"]
        for r in record.of_type("aws:secretsmanager/secret:Secret")
        if "/exchange/" in r.outputs["name"]
    }
    assert exchange_secrets and set(run["CheckExchangeSecretsExist"]["Resource"]) == exchange_secrets
    assert run["CheckExchangeSecretsExist"]["Action"] == ["secretsmanager:DescribeSecret"]
    configs = record.named("aws:s3/bucket:Bucket", "configs-bucket").outputs["arn"]
    assert run["WriteBotConfigs"]["Resource"] == [f"{configs}/{aws_contract.BOT_CONFIGS_PREFIX}/*"]
    # The API lists and stops bots (its kill switch) but can neither create services nor pass roles.
    api = _statements_by_sid(record, f"tradai-{stack}-api")
    api_ecs = {a for s in api.values() for a in as_list(s["Action"]) if a.startswith(("ecs:", "iam:"))}
    assert api_ecs == {"ecs:ListServices", "ecs:DescribeServices", "ecs:ListTagsForResource", "ecs:UpdateService"}
    assert api["StopBotServices"]["Resource"] == bot_services
    # Sensors (code location) and runs notify through the stack's alerts topic only.
    topic = record.of_type("aws:sns/topic:Topic")[0].outputs["arn"]
    for role in ("dagster-run", "code-location"):
        assert _statements_by_sid(record, f"tradai-{stack}-{role}")["NotifyAlerts"]["Resource"] == [topic]
    # The stale-data sensor (code location) records pause requests: it puts items in the bots' table only.
    location = _statements_by_sid(record, f"tradai-{stack}-code-location")
    assert as_list(location["RequestBotPause"]["Action"]) == ["dynamodb:PutItem"]
    assert location["RequestBotPause"]["Resource"] == location["ReadBotState"]["Resource"]


@pytest.mark.parametrize("stack", STACKS)
def test_the_execution_role_reads_only_the_stacks_secrets(stacks, stack):
    record = stacks[stack]
    granted = _statements_by_sid(record, f"tradai-{stack}-ecs-execution")
    secret_arns = {r.outputs["arn"] for r in record.of_type("aws:secretsmanager/secret:Secret")}
    assert set(granted["ReadSecrets"]["Resource"]) == secret_arns
    assert {r.outputs["name"] for r in record.of_type("aws:secretsmanager/secret:Secret")} == {
        aws_contract.secret_name(stack, aws_contract.DAGSTER_DATABASE_URL_SECRET),
        aws_contract.secret_name(stack, aws_contract.MLFLOW_DATABASE_URL_SECRET),
        aws_contract.secret_name(stack, aws_contract.SWEEP_DATABASE_URL_SECRET),
        aws_contract.secret_name(stack, aws_contract.API_JWT_SECRET),
        aws_contract.exchange_secret_name(stack, "binance"),
    }


@pytest.mark.parametrize("stack", STACKS)
def test_a_bot_may_write_only_its_trade_exports_in_the_configs_bucket(stacks, stack):
    bot = _statements_by_sid(stacks[stack], f"tradai-{stack}-bot")
    configs = stacks[stack].named("aws:s3/bucket:Bucket", "configs-bucket").outputs["arn"]
    assert bot["UploadBotTrades"]["Action"] == ["s3:PutObject"]
    assert bot["UploadBotTrades"]["Resource"] == [f"{configs}/{aws_contract.BOT_CONFIGS_PREFIX}/*/trades.json"]
    assert bot["ConfigsRead"]["Action"] == ["s3:GetObject"]
