"""What differs between dev, staging and prod, and what every stack has: tags, network, services."""

from __future__ import annotations

import base64
import importlib
import inspect
import json
from functools import cache

import pytest
from stack_helpers import containers

from resources import aws_contract

STACKS = aws_contract.ENVIRONMENTS
REQUIRED_TAGS = {"Application", "Environment", "Service", "ManagedBy", "CostCenter", "Owner"}


@cache
def _takes_tags(type_token: str) -> bool:
    """Whether the pulumi_aws resource class behind a type token accepts ``tags``."""
    _, module_path, class_name = type_token.split(":")
    module = importlib.import_module(f"pulumi_aws.{module_path.split('/')[0]}")
    return "tags" in inspect.signature(getattr(module, class_name)._internal_init).parameters


@pytest.mark.parametrize("stack", STACKS)
def test_every_taggable_resource_carries_the_six_tags(stacks, stack):
    record = stacks[stack]
    taggable = [r for r in record.resources if _takes_tags(r.type)]
    assert len(taggable) > 80
    for resource in taggable:
        tags = resource.inputs.get("tags")
        if resource.type == "aws:autoscaling/group:Group":
            assert all(tag["propagateAtLaunch"] for tag in tags)
            tags = {tag["key"]: tag["value"] for tag in tags}
        assert tags is not None and REQUIRED_TAGS <= set(tags), (resource.type, resource.name)
        assert tags["Environment"] == stack and tags["Application"] == "tradai"
        assert tags["ManagedBy"] == "pulumi" and tags["Owner"] and tags["CostCenter"], resource.name


@pytest.mark.parametrize("stack", STACKS)
def test_vpc_and_subnets_match_the_design(stacks, stack):
    record = stacks[stack]
    (vpc,) = record.of_type("aws:ec2/vpc:Vpc")
    assert vpc.inputs["cidrBlock"] == "10.0.0.0/16" and vpc.inputs["enableDnsHostnames"] is True
    subnets = {
        (s.inputs["tags"]["Tier"], s.inputs["availabilityZone"]): s.inputs["cidrBlock"]
        for s in record.of_type("aws:ec2/subnet:Subnet")
    }
    assert subnets == {
        ("public", "us-east-1a"): "10.0.1.0/24",
        ("public", "us-east-1b"): "10.0.2.0/24",
        ("private", "us-east-1a"): "10.0.11.0/24",
        ("private", "us-east-1b"): "10.0.12.0/24",
        ("database", "us-east-1a"): "10.0.21.0/24",
        ("database", "us-east-1b"): "10.0.22.0/24",
    }
    assert all(s.inputs["mapPublicIpOnLaunch"] is False for s in record.of_type("aws:ec2/subnet:Subnet"))


@pytest.mark.parametrize("stack", ["dev", "staging"])
def test_dev_and_staging_use_one_nat_instance_in_an_auto_scaling_group(stacks, stack):
    record = stacks[stack]
    assert not record.of_type("aws:ec2/natGateway:NatGateway")
    (template,) = record.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    assert template.inputs["instanceType"] == "t4g.nano"
    assert template.inputs["imageId"].endswith("al2023-ami-kernel-default-arm64")
    assert template.inputs["metadataOptions"]["httpTokens"] == "required"
    (group,) = record.of_type("aws:autoscaling/group:Group")
    assert (group.inputs["minSize"], group.inputs["maxSize"]) == (1, 1)
    assert group.inputs["launchTemplate"]["id"] == "nat-launch-template-id"
    (interface,) = record.of_type("aws:ec2/networkInterface:NetworkInterface")
    assert interface.inputs["sourceDestCheck"] is False
    routes = [r for r in record.of_type("aws:ec2/route:Route") if r.name.startswith("private-default-route")]
    assert len(routes) == 2 and {r.inputs["networkInterfaceId"] for r in routes} == {"eni-0123456789"}
    user_data = base64.b64decode(template.inputs["userData"]).decode()
    assert "ENI_ID=eni-0123456789" in user_data and "ENI_MAC=0a:1b:2c:3d:4e:5f" in user_data
    assert "VPC_CIDR=10.0.0.0/16" in user_data and "SUBNET_GATEWAY=10.0.1.1" in user_data
    assert "MASQUERADE" in user_data and "systemctl enable --now tradai-nat.service" in user_data


def test_prod_uses_a_nat_gateway_per_zone(stacks):
    record = stacks["prod"]
    assert not record.of_type("aws:autoscaling/group:Group")
    gateways = record.of_type("aws:ec2/natGateway:NatGateway")
    assert sorted(g.inputs["subnetId"] for g in gateways) == [
        "subnet-public-subnet-us-east-1a",
        "subnet-public-subnet-us-east-1b",
    ]
    routes = [r for r in record.of_type("aws:ec2/route:Route") if r.name.startswith("private-default-route")]
    assert sorted(r.inputs["natGatewayId"] for r in routes) == [
        "nat-gateway-us-east-1a-id",
        "nat-gateway-us-east-1b-id",
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_s3_and_dynamodb_bypass_nat_through_gateway_endpoints(stacks, stack):
    endpoints = {
        e.inputs["serviceName"]: e.inputs for e in stacks[stack].of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    }
    assert set(endpoints) == {"com.amazonaws.us-east-1.s3", "com.amazonaws.us-east-1.dynamodb"}
    for endpoint in endpoints.values():
        assert endpoint["vpcEndpointType"] == "Gateway"
        assert sorted(endpoint["routeTableIds"]) == [
            "private-routes-us-east-1a-id",
            "private-routes-us-east-1b-id",
        ]


PROD_DIFFERENCES = {
    # stack: (multi-AZ, deletion protection, backup days, log retention days)
    "dev": (False, False, 7, 30),
    "staging": (False, False, 7, 30),
    "prod": (True, True, 14, 90),
}


@pytest.mark.parametrize("stack", STACKS)
def test_prod_differences_hold(stacks, stack):
    multi_az, protected, backup_days, log_days = PROD_DIFFERENCES[stack]
    record = stacks[stack]
    (database,) = record.of_type("aws:rds/instance:Instance")
    assert database.inputs["multiAz"] is multi_az
    assert database.inputs["deletionProtection"] is protected
    assert database.inputs["backupRetentionPeriod"] == backup_days
    assert database.inputs["skipFinalSnapshot"] is not protected
    assert {g.inputs["retentionInDays"] for g in record.of_type("aws:cloudwatch/logGroup:LogGroup")} == {
        log_days
    }
    assert {t.inputs["deletionProtectionEnabled"] for t in record.of_type("aws:dynamodb/table:Table")} == {
        protected
    }
    (alb,) = record.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert alb.inputs["enableDeletionProtection"] is protected
    (pool,) = record.of_type("aws:cognito/userPool:UserPool")
    assert pool.inputs["deletionProtection"] == ("ACTIVE" if protected else "INACTIVE")
    capacity = {
        s.inputs["capacityProviderStrategies"][0]["capacityProvider"]
        for s in record.of_type("aws:ecs/service:Service")
    }
    assert capacity == ({"FARGATE"} if stack == "prod" else {"FARGATE_SPOT"})


@pytest.mark.parametrize("stack", STACKS)
def test_tables_have_recovery_encryption_and_ttl(stacks, stack):
    tables = {t.inputs["name"]: t.inputs for t in stacks[stack].of_type("aws:dynamodb/table:Table")}
    assert set(tables) == {aws_contract.trading_state_table(stack)}
    for table in tables.values():
        assert table["hashKey"] == "strategy_id"
        assert table["attributes"] == [{"name": "strategy_id", "type": "S"}]
        assert table["pointInTimeRecovery"] == {"enabled": True}
        assert table["serverSideEncryption"] == {"enabled": True}
        assert table["ttl"] == {"attributeName": "expires_at", "enabled": True}


@pytest.mark.parametrize("stack", STACKS)
def test_image_repositories_scan_on_push_and_expire_old_images(stacks, stack):
    record = stacks[stack]
    repositories = {r.inputs["name"]: r.inputs for r in record.of_type("aws:ecr/repository:Repository")}
    assert set(repositories) == {
        aws_contract.repository_name(image, stack) for image in aws_contract.IMAGE_REPOSITORIES
    }
    for repository in repositories.values():
        assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
    policies = {
        p.inputs["repository"]: json.loads(p.inputs["policy"])
        for p in record.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy")
    }
    assert set(policies) == set(repositories)
    for policy in policies.values():
        assert [rule["action"]["type"] for rule in policy["rules"]] == ["expire", "expire"]


@pytest.mark.parametrize("stack", STACKS)
def test_cluster_offers_fargate_and_fargate_spot(stacks, stack):
    (capacity,) = stacks[stack].of_type("aws:ecs/clusterCapacityProviders:ClusterCapacityProviders")
    assert capacity.inputs["capacityProviders"] == ["FARGATE", "FARGATE_SPOT"]
    (cluster,) = stacks[stack].of_type("aws:ecs/cluster:Cluster")
    assert cluster.inputs["name"] == aws_contract.cluster_name(stack)


@pytest.mark.parametrize("stack", STACKS)
def test_services_run_in_private_subnets_and_are_wired_to_alb_and_cloud_map(stacks, stack):
    record = stacks[stack]
    services = {s.inputs["name"]: s.inputs for s in record.of_type("aws:ecs/service:Service")}
    assert set(services) == {"webserver", "daemon", "code-location", "mlflow", "api"}
    for service in services.values():
        network = service["networkConfiguration"]
        assert network["assignPublicIp"] is False
        assert sorted(network["subnets"]) == [
            "subnet-private-subnet-us-east-1a",
            "subnet-private-subnet-us-east-1b",
        ]
        assert network["securityGroups"] == ["sg-ecs-security-group"]
        assert service["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert services["daemon"]["deploymentMaximumPercent"] == 100
    assert services["daemon"]["deploymentMinimumHealthyPercent"] == 0
    assert "loadBalancers" not in services["daemon"] and "loadBalancers" not in services["code-location"]
    target_groups = {t.outputs["arn"]: t.inputs for t in record.of_type("aws:lb/targetGroup:TargetGroup")}
    for name, port in (("webserver", aws_contract.WEBSERVER_PORT), ("mlflow", aws_contract.MLFLOW_PORT)):
        (balancer,) = services[name]["loadBalancers"]
        assert balancer["containerName"] == name and balancer["containerPort"] == port
        assert target_groups[balancer["targetGroupArn"]]["port"] == port
    registries = {
        r.outputs["arn"]: r.inputs["name"] for r in record.of_type("aws:servicediscovery/service:Service")
    }
    assert {
        registries[s["serviceRegistries"]["registryArn"]]
        for s in services.values()
        if "serviceRegistries" in s
    } == {
        aws_contract.WEBSERVER_SERVICE,
        aws_contract.CODE_LOCATION_SERVICE,
        aws_contract.MLFLOW_SERVICE,
    }
    (namespace,) = record.of_type("aws:servicediscovery/privateDnsNamespace:PrivateDnsNamespace")
    assert namespace.inputs["name"] == aws_contract.SERVICE_DISCOVERY_NAMESPACE


@pytest.mark.parametrize("stack", STACKS)
def test_task_sizes_are_valid_fargate_sizes(stacks, stack):
    for task in stacks[stack].of_type("aws:ecs/taskDefinition:TaskDefinition"):
        assert aws_contract.is_valid_fargate_size(int(task.inputs["cpu"]), int(task.inputs["memory"])), (
            task.name
        )
        assert task.inputs["requiresCompatibilities"] == ["FARGATE"]
        assert task.inputs["networkMode"] == "awsvpc"


@pytest.mark.parametrize("stack", STACKS)
def test_dagster_ui_and_mlflow_sit_behind_cognito_and_the_api_does_not(stacks, stack):
    record = stacks[stack]
    (pool,) = record.of_type("aws:cognito/userPool:UserPool")
    assert pool.inputs["mfaConfiguration"] == "ON"
    assert pool.inputs["softwareTokenMfaConfiguration"] == {"enabled": True}
    policy = pool.inputs["passwordPolicy"]
    assert policy["minimumLength"] == 12
    assert all(
        policy[k] for k in ("requireLowercase", "requireUppercase", "requireNumbers", "requireSymbols")
    )
    assert pool.inputs["adminCreateUserConfig"] == {"allowAdminCreateUserOnly": True}
    rules = {
        r.inputs["conditions"][0]["hostHeader"]["values"][0]: r.inputs["actions"]
        for r in record.of_type("aws:lb/listenerRule:ListenerRule")
    }
    domain = {
        "dev": "dev.tradai.example.com",
        "staging": "staging.tradai.example.com",
        "prod": "tradai.example.com",
    }[stack]
    assert set(rules) == {f"dagster.{domain}", f"mlflow.{domain}", f"api.{domain}"}
    # The UIs sit behind the ALB's Cognito login; the API checks Cognito's tokens itself.
    assert [a["type"] for a in rules.pop(f"api.{domain}")] == ["forward"]
    for actions in rules.values():
        assert [a["type"] for a in actions] == ["authenticate-cognito", "forward"]
        assert actions[0]["authenticateCognito"]["userPoolArn"] == pool.outputs["arn"]
    client = record.named("aws:cognito/userPoolClient:UserPoolClient", "user-pool-client")
    assert sorted(client.inputs["callbackUrls"]) == [
        f"https://dagster.{domain}/oauth2/idpresponse",
        f"https://mlflow.{domain}/oauth2/idpresponse",
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_waf_limits_each_address_to_100_requests_per_5_minutes_and_uses_managed_rules(stacks, stack):
    record = stacks[stack]
    (acl,) = record.of_type("aws:wafv2/webAcl:WebAcl")
    assert acl.inputs["scope"] == "REGIONAL" and acl.inputs["defaultAction"] == {"allow": {}}
    rules = {rule["name"]: rule for rule in acl.inputs["rules"]}
    rate = rules["rate-limit-per-ip"]
    assert rate["action"] == {"block": {}}
    statement = rate["statement"]["rateBasedStatement"]
    assert (statement["limit"], statement["evaluationWindowSec"], statement["aggregateKeyType"]) == (
        100,
        300,
        "IP",
    )
    managed = {
        rule["statement"]["managedRuleGroupStatement"]["name"]
        for rule in rules.values()
        if "managedRuleGroupStatement" in rule["statement"]
    }
    assert managed == {
        "AWSManagedRulesAmazonIpReputationList",
        "AWSManagedRulesCommonRuleSet",
        "AWSManagedRulesKnownBadInputsRuleSet",
    }
    assert len({rule["priority"] for rule in rules.values()}) == len(rules)
    (association,) = record.of_type("aws:wafv2/webAclAssociation:WebAclAssociation")
    (alb,) = record.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert association.inputs == {"resourceArn": alb.outputs["arn"], "webAclArn": acl.outputs["arn"]}


BUDGETS = {"dev": [80.0, 100.0], "staging": [80.0, 100.0], "prod": [400.0, 500.0]}


@pytest.mark.parametrize("stack", STACKS)
def test_budget_alerts_alarms_and_log_groups(stacks, stack):
    record = stacks[stack]
    (topic,) = record.of_type("aws:sns/topic:Topic")
    (budget,) = record.of_type("aws:budgets/budget:Budget")
    assert (
        budget.inputs["limitAmount"] == f"{max(BUDGETS[stack]):.2f}"
        and budget.inputs["timeUnit"] == "MONTHLY"
    )
    notifications = budget.inputs["notifications"]
    assert [n["threshold"] for n in notifications] == BUDGETS[stack]
    for notification in notifications:
        assert notification["thresholdType"] == "ABSOLUTE_VALUE"
        assert notification["subscriberSnsTopicArns"] == [topic.outputs["arn"]]
    alarms = record.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    assert alarms and all(a.inputs["alarmActions"] == [topic.outputs["arn"]] for a in alarms)
    groups = {g.inputs["name"] for g in record.of_type("aws:cloudwatch/logGroup:LogGroup")}
    for family in ("webserver", "daemon", "code-location", "mlflow"):
        (container,) = containers(record, family)
        options = container["logConfiguration"]["options"]
        assert options["awslogs-group"] in groups and options["awslogs-region"] == "us-east-1"


def test_with_a_hosted_zone_the_service_names_point_at_the_alb(stacks, dev_with_api):
    assert not stacks["dev"].of_type("aws:route53/record:Record")
    (alb,) = dev_with_api.of_type("aws:lb/loadBalancer:LoadBalancer")
    records = {r.inputs["name"]: r.inputs for r in dev_with_api.of_type("aws:route53/record:Record")}
    assert set(records) == {f"{name}.dev.tradai.example.com" for name in ("dagster", "mlflow", "api")}
    for record in records.values():
        assert record["zoneId"] == "Z0123456789ABCDEFGHIJ" and record["type"] == "A"
        assert record["aliases"] == [
            {"name": alb.outputs["dnsName"], "zoneId": alb.outputs["zoneId"], "evaluateTargetHealth": True}
        ]
