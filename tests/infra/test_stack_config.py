"""Bad stack config fails before any resource is declared, with a message naming the value."""

from __future__ import annotations

import json

import pulumi
import pytest

from infra.config import InvalidConfigError, validate_cidrs
from infra.offline import INFRA_DIR, record_stack, stack_config

REQUIRED = [
    "aws:region",
    "tradai:owner",
    "tradai:costCenter",
    "tradai:certificateArn",
    "tradai:domainName",
    "tradai:vpcCidr",
    "tradai:privateSubnetCidrs",
    "tradai:natMode",
    "tradai:dbMultiAz",
    "tradai:dbBackupRetentionDays",
    "tradai:deletionProtection",
    "tradai:logRetentionDays",
    "tradai:budgetThresholdsUsd",
    "tradai:imageTag",
    "tradai:dbPassword",
    "tradai:apiJwtSecret",
]


@pytest.mark.parametrize("key", REQUIRED)
def test_a_missing_required_value_is_a_pulumi_config_error_naming_it(key):
    config = stack_config("prod")
    del config[key]
    with pytest.raises(pulumi.ConfigMissingError) as error:
        record_stack("prod", config)
    assert error.value.key == key
    assert f"'{key}'" in str(error.value)


def test_every_stack_file_has_every_required_value_but_deploy_time_ones():
    # record_stack with the committed files succeeds for each stack (see conftest's stacks fixture);
    # here: the values set at deploy time are not committed.
    for stack in ("dev", "staging", "prod"):
        committed = stack_config(stack)
        for key in ("tradai:dbPassword", "tradai:apiJwtSecret", "tradai:imageTag"):
            assert key in committed  # added as deploy-time stand-ins
        text = (INFRA_DIR / f"Pulumi.{stack}.yaml").read_text()
        assert "dbPassword:" not in text and "apiJwtSecret:" not in text and "imageTag:" not in text


def _with(stack: str, **values) -> dict[str, str]:
    config = stack_config(stack)
    for key, value in values.items():
        config[f"tradai:{key}"] = value if isinstance(value, str) else json.dumps(value)
    return config


def test_overlapping_subnets_are_refused():
    config = _with("dev", privateSubnetCidrs=["10.0.11.0/24", "10.0.2.0/25"])
    with pytest.raises(InvalidConfigError) as error:
        record_stack("dev", config)
    message = str(error.value)
    assert "tradai:privateSubnetCidrs 10.0.2.0/25 overlaps tradai:publicSubnetCidrs 10.0.2.0/24" in message


def test_overlapping_subnets_within_one_tier_are_refused():
    with pytest.raises(
        InvalidConfigError, match="10.0.21.0/24 overlaps tradai:databaseSubnetCidrs 10.0.20.0/22"
    ):
        record_stack("dev", _with("dev", databaseSubnetCidrs=["10.0.20.0/22", "10.0.21.0/24"]))


def test_a_subnet_outside_the_vpc_is_refused():
    with pytest.raises(InvalidConfigError, match="tradai:publicSubnetCidrs 10.1.1.0/24 lies outside"):
        record_stack("dev", _with("dev", publicSubnetCidrs=["10.1.1.0/24", "10.0.2.0/24"]))


@pytest.mark.parametrize(
    ("vpc", "tiers", "message"),
    [
        ("10.0.0.0/16", {"publicSubnetCidrs": ("10.0.1.0/24", "10.0.1.128/25")}, "overlaps"),
        ("10.0.0.0/16", {"publicSubnetCidrs": ("10.0.1.7/24",)}, "is not a network"),
        ("10.0.0.0/33", {}, "tradai:vpcCidr '10.0.0.0/33' is not a network"),
        ("10.0.0.0/16", {"privateSubnetCidrs": ("192.168.0.0/24",)}, "lies outside"),
    ],
)
def test_validate_cidrs_refuses(vpc, tiers, message):
    with pytest.raises(InvalidConfigError, match=message):
        validate_cidrs(vpc, tiers)


def test_validate_cidrs_accepts_the_design():
    validate_cidrs(
        "10.0.0.0/16",
        {
            "publicSubnetCidrs": ("10.0.1.0/24", "10.0.2.0/24"),
            "privateSubnetCidrs": ("10.0.11.0/24", "10.0.12.0/24"),
            "databaseSubnetCidrs": ("10.0.21.0/24", "10.0.22.0/24"),
        },
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"natMode": "gateways"}, "tradai:natMode must be one of"),
        ({"logRetentionDays": "45"}, "tradai:logRetentionDays 45 is not a CloudWatch retention period"),
        ({"dbBackupRetentionDays": "0"}, "tradai:dbBackupRetentionDays must be 1-35"),
        ({"privateSubnetCidrs": ["10.0.11.0/24"]}, "tradai:privateSubnetCidrs has 1 entries for 2"),
        ({"availabilityZones": ["us-east-1a"]}, "needs at least two zones"),
        (
            {"serviceSizes": {"daemon": {"cpu": 256, "memory": 4096}}},
            r"tradai:serviceSizes\.daemon: 256 CPU units",
        ),
        ({"exchanges": ["Binance"]}, "exchange id 'Binance'"),
        ({"budgetThresholdsUsd": [80, -1]}, "tradai:budgetThresholdsUsd must be a list"),
        ({"certificateArn": "my-cert"}, "tradai:certificateArn must be an ACM certificate ARN"),
    ],
)
def test_unusable_values_are_refused_by_name(values, message):
    with pytest.raises(InvalidConfigError, match=message):
        record_stack("dev", _with("dev", **values))


def test_a_stack_name_outside_the_contract_is_refused():
    with pytest.raises(InvalidConfigError, match="stack 'qa' is not one of"):
        record_stack("qa", stack_config("dev"))


def test_a_failed_evaluation_leaves_the_next_one_intact():
    with pytest.raises(InvalidConfigError):
        record_stack("dev", _with("dev", natMode="none"))
    assert len(record_stack("dev").resources) > 100
