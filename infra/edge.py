"""The public edge: ALB with HTTPS, Cognito login in front of the Dagster UI and MLflow, and WAF.

Dagster's open-source webserver and the MLflow UI have no login of their own, so the ALB
authenticates every request to ``dagster.<domain>`` and ``mlflow.<domain>`` against a Cognito user
pool (admin-created users only, MFA required). ``api.<domain>`` is forwarded without Cognito: the
API checks its own JWTs. Port 80 only redirects to 443.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.config import Settings, Tagger
from infra.network import Network
from infra.security import SecurityGroups
from resources import aws_contract

TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
RATE_LIMIT_PER_5_MINUTES = 100
# The ALB's session cookie after a Cognito login. Signed-in browsers are not rate limited (the
# Dagster UI alone makes more than 100 GraphQL requests in five minutes); everything else is.
ALB_SESSION_COOKIE = "AWSELBAuthSessionCookie"
MANAGED_RULE_GROUPS = (
    "AWSManagedRulesAmazonIpReputationList",
    "AWSManagedRulesCommonRuleSet",
    "AWSManagedRulesKnownBadInputsRuleSet",
)
# Dagster GraphQL launches and MLflow uploads exceed the common rule set's 8 KB body limit.
COUNT_ONLY_RULES = {"AWSManagedRulesCommonRuleSet": ("SizeRestrictions_BODY",)}


@dataclass
class Edge:
    load_balancer: aws.lb.LoadBalancer
    https_listener: aws.lb.Listener
    target_groups: dict[str, aws.lb.TargetGroup]
    user_pool: aws.cognito.UserPool
    user_pool_client: aws.cognito.UserPoolClient
    api_client: aws.cognito.UserPoolClient | None
    """Machine clients (CI, scripts) get API tokens with the client-credentials flow."""


def _target_group(
    settings: Settings, tags: Tagger, network: Network, name: str, port: int, health_path: str
) -> aws.lb.TargetGroup:
    return aws.lb.TargetGroup(
        f"{name}-targets",
        name=f"tradai-{settings.env}-{name}",
        port=port,
        protocol="HTTP",
        target_type="ip",
        vpc_id=network.vpc.id,
        deregistration_delay=30,
        health_check={
            "path": health_path,
            "matcher": "200",
            "interval": 30,
            "healthy_threshold": 2,
            "unhealthy_threshold": 3,
        },
        tags=tags("edge", Target=name),
    )


def create_edge(settings: Settings, tags: Tagger, network: Network, groups: SecurityGroups) -> Edge:
    env = settings.env
    load_balancer = aws.lb.LoadBalancer(
        "alb",
        name=f"tradai-{env}",
        load_balancer_type="application",
        internal=False,
        subnets=[subnet.id for subnet in network.public_subnets],
        security_groups=[groups.alb.id],
        drop_invalid_header_fields=True,
        idle_timeout=120,
        enable_deletion_protection=settings.deletion_protection,
        tags=tags("edge", Name=f"tradai-{env}"),
    )
    aws.lb.Listener(
        "http-listener",
        load_balancer_arn=load_balancer.arn,
        port=80,
        protocol="HTTP",
        default_actions=[
            {
                "type": "redirect",
                "redirect": {"port": "443", "protocol": "HTTPS", "status_code": "HTTP_301"},
            }
        ],
        tags=tags("edge"),
    )
    https = aws.lb.Listener(
        "https-listener",
        load_balancer_arn=load_balancer.arn,
        port=443,
        protocol="HTTPS",
        ssl_policy=TLS_POLICY,
        certificate_arn=settings.certificate_arn,
        default_actions=[
            {
                "type": "fixed-response",
                "fixed_response": {
                    "content_type": "text/plain",
                    "status_code": "404",
                    "message_body": "Not found",
                },
            }
        ],
        tags=tags("edge"),
    )

    user_pool = aws.cognito.UserPool(
        "user-pool",
        name=f"tradai-{env}",
        mfa_configuration="ON",
        software_token_mfa_configuration={"enabled": True},
        password_policy={
            "minimum_length": 12,
            "require_lowercase": True,
            "require_uppercase": True,
            "require_numbers": True,
            "require_symbols": True,
            "temporary_password_validity_days": 3,
        },
        admin_create_user_config={"allow_admin_create_user_only": True},
        username_attributes=["email"],
        auto_verified_attributes=["email"],
        account_recovery_setting={"recovery_mechanisms": [{"name": "verified_email", "priority": 1}]},
        deletion_protection="ACTIVE" if settings.deletion_protection else "INACTIVE",
        tags=tags("edge"),
    )
    login_domain = aws.cognito.UserPoolDomain(
        "user-pool-domain", domain=settings.cognito_domain_prefix, user_pool_id=user_pool.id
    )
    protected = ("dagster", "mlflow")
    client = aws.cognito.UserPoolClient(
        "user-pool-client",
        name=f"tradai-{env}-alb",
        user_pool_id=user_pool.id,
        generate_secret=True,
        allowed_oauth_flows_user_pool_client=True,
        allowed_oauth_flows=["code"],
        allowed_oauth_scopes=["openid", "email"],
        supported_identity_providers=["COGNITO"],
        callback_urls=[f"https://{settings.host(name)}/oauth2/idpresponse" for name in protected],
        explicit_auth_flows=["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        prevent_user_existence_errors="ENABLED",
    )

    target_groups = {
        "dagster": _target_group(
            settings, tags, network, "dagster", aws_contract.WEBSERVER_PORT, "/server_info"
        ),
        "mlflow": _target_group(settings, tags, network, "mlflow", aws_contract.MLFLOW_PORT, "/health"),
    }
    if settings.api_command:
        target_groups["api"] = _target_group(settings, tags, network, "api", aws_contract.API_PORT, "/health")

    for priority, name in enumerate(protected, start=1):
        aws.lb.ListenerRule(
            f"{name}-rule",
            listener_arn=https.arn,
            priority=priority * 10,
            conditions=[{"host_header": {"values": [settings.host(name)]}}],
            actions=[
                {
                    "type": "authenticate-cognito",
                    "order": 1,
                    "authenticate_cognito": {
                        "user_pool_arn": user_pool.arn,
                        "user_pool_client_id": client.id,
                        "user_pool_domain": settings.cognito_domain_prefix,
                        "on_unauthenticated_request": "authenticate",
                        "session_timeout": 8 * 3600,
                        "scope": "openid email",
                    },
                },
                {"type": "forward", "order": 2, "target_group_arn": target_groups[name].arn},
            ],
            tags=tags("edge"),
            opts=pulumi.ResourceOptions(depends_on=[login_domain]),
        )
    if "api" in target_groups:
        aws.lb.ListenerRule(
            "api-rule",
            listener_arn=https.arn,
            priority=30,
            conditions=[{"host_header": {"values": [settings.host("api")]}}],
            actions=[{"type": "forward", "target_group_arn": target_groups["api"].arn}],
            tags=tags("edge"),
        )

    if settings.hosted_zone_id:
        for name in target_groups:
            aws.route53.Record(
                f"{name}-dns",
                zone_id=settings.hosted_zone_id,
                name=settings.host(name),
                type="A",
                aliases=[
                    {
                        "name": load_balancer.dns_name,
                        "zone_id": load_balancer.zone_id,
                        "evaluate_target_health": True,
                    }
                ],
            )

    api_client = None
    if settings.api_command:
        resource_server = aws.cognito.ResourceServer(
            "api-resource-server",
            identifier=aws_contract.API_RESOURCE_SERVER,
            name=f"tradai-{env}-api",
            user_pool_id=user_pool.id,
            scopes=[{"scope_name": s, "scope_description": f"TradAI API: {s}"} for s in aws_contract.API_SCOPES],
        )
        api_client = aws.cognito.UserPoolClient(
            "api-client",
            name=f"tradai-{env}-api",
            user_pool_id=user_pool.id,
            generate_secret=True,
            allowed_oauth_flows_user_pool_client=True,
            allowed_oauth_flows=["client_credentials"],
            allowed_oauth_scopes=[f"{aws_contract.API_RESOURCE_SERVER}/{s}" for s in aws_contract.API_SCOPES],
            supported_identity_providers=["COGNITO"],
            opts=pulumi.ResourceOptions(depends_on=[resource_server]),
        )

    _web_acl(settings, tags, load_balancer)
    return Edge(
        load_balancer=load_balancer,
        https_listener=https,
        target_groups=target_groups,
        user_pool=user_pool,
        user_pool_client=client,
        api_client=api_client,
    )


def _visibility(name: str) -> dict:
    return {"cloudwatch_metrics_enabled": True, "metric_name": name, "sampled_requests_enabled": True}


def _web_acl(settings: Settings, tags: Tagger, load_balancer: aws.lb.LoadBalancer) -> None:
    managed = [
        {
            "name": group,
            "priority": priority,
            "override_action": {"none": {}},
            "statement": {
                "managed_rule_group_statement": {
                    "vendor_name": "AWS",
                    "name": group,
                    "rule_action_overrides": [
                        {"name": rule, "action_to_use": {"count": {}}}
                        for rule in COUNT_ONLY_RULES.get(group, ())
                    ],
                }
            },
            "visibility_config": _visibility(group),
        }
        for priority, group in enumerate(MANAGED_RULE_GROUPS, start=1)
    ]
    rate_limit = {
        "name": "rate-limit-per-ip",
        "priority": 0,
        "action": {"block": {}},
        "statement": {
            "rate_based_statement": {
                "limit": RATE_LIMIT_PER_5_MINUTES,
                "evaluation_window_sec": 300,
                "aggregate_key_type": "IP",
                "scope_down_statement": {
                    "not_statement": {
                        "statement": {
                            "byte_match_statement": {
                                "field_to_match": {"single_header": {"name": "cookie"}},
                                "positional_constraint": "CONTAINS",
                                "search_string": ALB_SESSION_COOKIE,
                                "text_transformations": [{"priority": 0, "type": "NONE"}],
                            }
                        }
                    }
                },
            }
        },
        "visibility_config": _visibility("rate-limit-per-ip"),
    }
    acl = aws.wafv2.WebAcl(
        "web-acl",
        name=f"tradai-{settings.env}",
        scope="REGIONAL",
        default_action={"allow": {}},
        rules=[rate_limit, *managed],
        visibility_config=_visibility(f"tradai-{settings.env}"),
        tags=tags("edge"),
    )
    aws.wafv2.WebAclAssociation("web-acl-alb", resource_arn=load_balancer.arn, web_acl_arn=acl.arn)
