"""The EcsRunLauncher that deploy/dagster.yaml configures.

dagster_aws passes ``run_task_kwargs`` to ECS RunTask verbatim, so ``{env: ...}`` cannot be used
inside it. The subnets and security groups of a stack are only known once Pulumi has created them
and the image is the same for every stack, so this subclass types ``networkConfiguration`` in the
config schema: subnets and security groups are read like any other Dagster config source (comma-
separated IDs from an environment variable) and handed to RunTask as lists. Everything else is
dagster_aws's EcsRunLauncher unchanged.
"""

from collections.abc import Mapping
from typing import Any

from dagster import Field, Permissive, StringSource
from dagster_aws.ecs import EcsRunLauncher

ASSIGN_PUBLIC_IP_VALUES = ("ENABLED", "DISABLED")


def _ids(value: str, field: str) -> list[str]:
    ids = [part.strip() for part in value.split(",") if part.strip()]
    if not ids:
        raise ValueError(f"run_task_kwargs.networkConfiguration.awsvpcConfiguration.{field} is empty")
    return ids


class TradaiEcsRunLauncher(EcsRunLauncher):
    @classmethod
    def config_type(cls):
        schema = dict(super().config_type())
        schema["run_task_kwargs"] = Field(
            Permissive(
                {
                    "cluster": Field(StringSource, description="ECS cluster that runs the tasks."),
                    "networkConfiguration": Field(
                        {
                            "awsvpcConfiguration": Field(
                                {
                                    "subnets": Field(StringSource, description="Comma-separated subnet IDs."),
                                    "securityGroups": Field(
                                        StringSource,
                                        description="Comma-separated security group IDs.",
                                    ),
                                    "assignPublicIp": Field(
                                        StringSource, is_required=False, default_value="DISABLED"
                                    ),
                                }
                            )
                        }
                    ),
                }
            ),
            description=(
                "ECS RunTask arguments. Unlike dagster_aws's EcsRunLauncher, the cluster, subnets"
                " and security groups take environment variables."
            ),
        )
        return schema

    def __init__(self, run_task_kwargs: Mapping[str, Any], **kwargs: Any):
        vpc = run_task_kwargs["networkConfiguration"]["awsvpcConfiguration"]
        if vpc["assignPublicIp"] not in ASSIGN_PUBLIC_IP_VALUES:
            raise ValueError(
                f"assignPublicIp must be one of {ASSIGN_PUBLIC_IP_VALUES}, got {vpc['assignPublicIp']!r}"
            )
        resolved = {
            **run_task_kwargs,
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": _ids(vpc["subnets"], "subnets"),
                    "securityGroups": _ids(vpc["securityGroups"], "securityGroups"),
                    "assignPublicIp": vpc["assignPublicIp"],
                }
            },
        }
        super().__init__(run_task_kwargs=resolved, **kwargs)
