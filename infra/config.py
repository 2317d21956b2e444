"""Stack settings: read once from Pulumi config, validated before any resource is declared.

Values that must differ between stacks (database durability, NAT mode, log retention, the budget)
are required in each ``Pulumi.<stack>.yaml`` rather than defaulted here, so a stack file that forgets
one fails with Pulumi's ConfigMissingError naming the key instead of silently getting dev values.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

import pulumi

from resources import aws_contract

NAMESPACE = "tradai"
NAT_MODES = ("instance", "gateway")
# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192)
SERVICES = ("webserver", "daemon", "codeLocation", "mlflow", "api")
DEFAULT_SERVICE_SIZES = {
    "webserver": {"cpu": 512, "memory": 1024},
    "daemon": {"cpu": 256, "memory": 1024},
    "codeLocation": {"cpu": 512, "memory": 2048},
    "mlflow": {"cpu": 256, "memory": 1024},
    "api": {"cpu": 256, "memory": 512},
}


class InvalidConfigError(pulumi.RunError):
    """A stack config value is present but unusable; the message names the key."""


@dataclass(frozen=True)
class ServiceSize:
    cpu: int
    memory: int


@dataclass(frozen=True)
class Settings:
    env: str
    region: str
    owner: str
    cost_center: str
    availability_zones: tuple[str, ...]
    vpc_cidr: str
    public_subnet_cidrs: tuple[str, ...]
    private_subnet_cidrs: tuple[str, ...]
    database_subnet_cidrs: tuple[str, ...]
    nat_mode: str
    db_instance_class: str
    db_allocated_storage_gb: int
    db_multi_az: bool
    db_backup_retention_days: int
    deletion_protection: bool
    log_retention_days: int
    domain_name: str
    certificate_arn: str
    hosted_zone_id: str | None
    cognito_domain_prefix: str
    alert_email: str
    budget_thresholds_usd: tuple[int, ...]
    image_tag: str
    exchanges: tuple[str, ...]
    services_on_spot: bool
    container_insights: bool
    service_sizes: dict[str, ServiceSize]
    api_command: tuple[str, ...] | None
    allow_live: bool  # live bots may start on this stack (one of the three live interlocks)
    db_password: pulumi.Output[str]
    api_jwt_secret: pulumi.Output[str]

    @property
    def prod(self) -> bool:
        return self.env == "prod"

    def host(self, service: str) -> str:
        """Public host name of a service behind the ALB, e.g. ``dagster.tradai.example.com``."""
        return f"{service}.{self.domain_name}"

    @property
    def budget_limit_usd(self) -> int:
        return max(self.budget_thresholds_usd)


def _key(name: str) -> str:
    return f"{NAMESPACE}:{name}"


def _string_list(config: pulumi.Config, name: str, *, required: bool = True) -> tuple[str, ...] | None:
    value = config.require_object(name) if required else config.get_object(name)
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise InvalidConfigError(f"{_key(name)} must be a non-empty list of strings, got {value!r}")
    return tuple(value)


def _service_sizes(config: pulumi.Config) -> dict[str, ServiceSize]:
    overrides = config.get_object("serviceSizes") or {}
    if not isinstance(overrides, dict) or set(overrides) - set(SERVICES):
        raise InvalidConfigError(
            f"{_key('serviceSizes')} must map some of {SERVICES} to {{cpu, memory}}, got {overrides!r}"
        )
    sizes = {}
    for service in SERVICES:
        size = {**DEFAULT_SERVICE_SIZES[service], **overrides.get(service, {})}
        if not aws_contract.is_valid_fargate_size(int(size["cpu"]), int(size["memory"])):
            raise InvalidConfigError(
                f"{_key('serviceSizes')}.{service}: {size['cpu']} CPU units with {size['memory']} MiB"
                " is not a Fargate task size"
            )
        sizes[service] = ServiceSize(cpu=int(size["cpu"]), memory=int(size["memory"]))
    return sizes


def validate_cidrs(vpc_cidr: str, tiers: dict[str, tuple[str, ...]]) -> None:
    """Refuse malformed CIDRs, subnets outside the VPC, and subnets that overlap each other."""
    try:
        vpc = ipaddress.ip_network(vpc_cidr)
    except ValueError as error:
        raise InvalidConfigError(f"{_key('vpcCidr')} {vpc_cidr!r} is not a network: {error}") from None
    seen: list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
    for key, cidrs in tiers.items():
        for cidr in cidrs:
            try:
                network = ipaddress.ip_network(cidr)
            except ValueError as error:
                raise InvalidConfigError(f"{_key(key)} {cidr!r} is not a network: {error}") from None
            if not network.subnet_of(vpc):
                raise InvalidConfigError(f"{_key(key)} {cidr} lies outside {_key('vpcCidr')} {vpc}")
            for other_key, other in seen:
                if network.overlaps(other):
                    raise InvalidConfigError(f"{_key(key)} {cidr} overlaps {_key(other_key)} {other}")
            seen.append((key, network))


def load() -> Settings:
    config = pulumi.Config(NAMESPACE)
    env = pulumi.get_stack()
    if env not in aws_contract.ENVIRONMENTS:
        raise InvalidConfigError(
            f"stack {env!r} is not one of {aws_contract.ENVIRONMENTS}; names of buckets, tables and"
            " secrets derive from it"
        )
    region = pulumi.Config("aws").require("region")

    zones = _string_list(config, "availabilityZones")
    tiers = {
        "publicSubnetCidrs": _string_list(config, "publicSubnetCidrs"),
        "privateSubnetCidrs": _string_list(config, "privateSubnetCidrs"),
        "databaseSubnetCidrs": _string_list(config, "databaseSubnetCidrs"),
    }
    vpc_cidr = config.require("vpcCidr")
    if len(zones) < 2:
        raise InvalidConfigError(f"{_key('availabilityZones')} needs at least two zones (RDS, ALB)")
    for key, cidrs in tiers.items():
        if len(cidrs) != len(zones):
            raise InvalidConfigError(
                f"{_key(key)} has {len(cidrs)} entries for {len(zones)} availability zones"
            )
    validate_cidrs(vpc_cidr, tiers)

    nat_mode = config.require("natMode")
    if nat_mode not in NAT_MODES:
        raise InvalidConfigError(f"{_key('natMode')} must be one of {NAT_MODES}, got {nat_mode!r}")
    log_retention_days = config.require_int("logRetentionDays")
    if log_retention_days not in LOG_RETENTION_DAYS:
        raise InvalidConfigError(
            f"{_key('logRetentionDays')} {log_retention_days} is not a CloudWatch retention period"
        )
    backup_days = config.require_int("dbBackupRetentionDays")
    if not 1 <= backup_days <= 35:
        raise InvalidConfigError(f"{_key('dbBackupRetentionDays')} must be 1-35, got {backup_days}")
    thresholds = config.require_object("budgetThresholdsUsd")
    if not (
        isinstance(thresholds, list) and thresholds and all(isinstance(t, int) and t > 0 for t in thresholds)
    ):
        raise InvalidConfigError(
            f"{_key('budgetThresholdsUsd')} must be a list of positive whole dollars, got {thresholds!r}"
        )
    exchanges = _string_list(config, "exchanges", required=False) or ("binance",)
    for exchange in exchanges:
        try:
            aws_contract.exchange_secret_name(env, exchange)
        except ValueError as error:
            raise InvalidConfigError(f"{_key('exchanges')}: {error}") from None
    domain_name = config.require("domainName")
    if not re.fullmatch(r"([a-z0-9-]+\.)+[a-z]{2,}", domain_name):
        raise InvalidConfigError(f"{_key('domainName')} {domain_name!r} is not a DNS name")
    certificate_arn = config.require("certificateArn")
    if not certificate_arn.startswith("arn:aws:acm:"):
        raise InvalidConfigError(f"{_key('certificateArn')} must be an ACM certificate ARN")

    return Settings(
        env=env,
        region=region,
        owner=config.require("owner"),
        cost_center=config.require("costCenter"),
        availability_zones=zones,
        vpc_cidr=vpc_cidr,
        public_subnet_cidrs=tiers["publicSubnetCidrs"],
        private_subnet_cidrs=tiers["privateSubnetCidrs"],
        database_subnet_cidrs=tiers["databaseSubnetCidrs"],
        nat_mode=nat_mode,
        db_instance_class=config.require("dbInstanceClass"),
        db_allocated_storage_gb=config.get_int("dbAllocatedStorageGb") or 20,
        db_multi_az=config.require_bool("dbMultiAz"),
        db_backup_retention_days=backup_days,
        deletion_protection=config.require_bool("deletionProtection"),
        log_retention_days=log_retention_days,
        domain_name=domain_name,
        certificate_arn=certificate_arn,
        hosted_zone_id=config.get("hostedZoneId"),
        cognito_domain_prefix=config.require("cognitoDomainPrefix"),
        alert_email=config.require("alertEmail"),
        budget_thresholds_usd=tuple(thresholds),
        image_tag=config.require("imageTag"),
        exchanges=exchanges,
        services_on_spot=config.require_bool("servicesOnSpot"),
        container_insights=config.get_bool("containerInsights") or False,
        service_sizes=_service_sizes(config),
        api_command=_string_list(config, "apiCommand", required=False),
        allow_live=config.get_bool("allowLive") or False,
        db_password=config.require_secret("dbPassword"),
        api_jwt_secret=config.require_secret("apiJwtSecret"),
    )


class Tagger:
    """The tags every taggable resource carries; ``Service`` says which part of the product owns it."""

    def __init__(self, settings: Settings):
        self._common = {
            "Application": aws_contract.PROJECT,
            "Environment": settings.env,
            "ManagedBy": "pulumi",
            "CostCenter": settings.cost_center,
            "Owner": settings.owner,
        }

    def __call__(self, service: str, **extra: str) -> dict[str, str]:
        return {**self._common, "Service": service, **extra}

    def autoscaling(self, service: str, **extra: str) -> list[dict[str, Any]]:
        """The same tags in an Auto Scaling group's list form, propagated to its instances."""
        return [
            {"key": key, "value": value, "propagate_at_launch": True}
            for key, value in self(service, **extra).items()
        ]
