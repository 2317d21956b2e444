"""RDS PostgreSQL 15: one instance, three databases (Dagster's ``dagster``, MLflow's ``mlflow`` and the
Optuna studies of sweeps, ``sweeps``).

TLS is enforced by the parameter group (rds.force_ssl), storage is encrypted, the instance sits in
the database subnets without a public address, and prod adds Multi-AZ, deletion protection and a
longer backup retention (all from the stack's config). RDS creates ``dagster``; the MLflow service
creates ``mlflow`` and the code location ``sweeps`` on start (deploy/ensure_database.py), so no SQL
client has to reach the VPC. Optuna has a database of its own because it and Dagster both keep their
schema revision in a table named ``alembic_version``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import pulumi
import pulumi_aws as aws

from infra.config import Settings, Tagger
from infra.network import Network
from infra.security import POSTGRES_PORT, SecurityGroups

ENGINE_VERSION = "15"
MASTER_USERNAME = "tradai"
DAGSTER_DATABASE = "dagster"
MLFLOW_DATABASE = "mlflow"
SWEEP_DATABASE = "sweeps"


@dataclass
class Database:
    instance: aws.rds.Instance
    dagster_url: pulumi.Output[str]
    mlflow_url: pulumi.Output[str]
    sweep_url: pulumi.Output[str]


def postgres_url(password: str, host: str, database: str) -> str:
    """SQLAlchemy URL (psycopg2 driver) that Dagster, MLflow and Optuna all accept; TLS required."""
    return (
        f"postgresql+psycopg2://{MASTER_USERNAME}:{quote(password, safe='')}@{host}:{POSTGRES_PORT}"
        f"/{database}?sslmode=require"
    )


def create_database(settings: Settings, tags: Tagger, network: Network, groups: SecurityGroups) -> Database:
    env = settings.env
    subnet_group = aws.rds.SubnetGroup(
        "database-subnets",
        name=f"tradai-{env}",
        subnet_ids=[subnet.id for subnet in network.database_subnets],
        tags=tags("database"),
    )
    parameters = aws.rds.ParameterGroup(
        "database-parameters",
        name=f"tradai-{env}-postgres15",
        family="postgres15",
        parameters=[
            {"name": "rds.force_ssl", "value": "1"},
            {"name": "log_min_duration_statement", "value": "1000"},
        ],
        tags=tags("database"),
    )
    instance = aws.rds.Instance(
        "database",
        identifier=f"tradai-{env}",
        engine="postgres",
        engine_version=ENGINE_VERSION,
        instance_class=settings.db_instance_class,
        allocated_storage=settings.db_allocated_storage_gb,
        max_allocated_storage=settings.db_allocated_storage_gb * 5,
        storage_type="gp3",
        storage_encrypted=True,
        db_name=DAGSTER_DATABASE,
        username=MASTER_USERNAME,
        password=settings.db_password,
        port=POSTGRES_PORT,
        db_subnet_group_name=subnet_group.name,
        vpc_security_group_ids=[groups.database.id],
        parameter_group_name=parameters.name,
        publicly_accessible=False,
        multi_az=settings.db_multi_az,
        backup_retention_period=settings.db_backup_retention_days,
        backup_window="03:00-04:00",
        maintenance_window="sun:04:30-sun:05:30",
        deletion_protection=settings.deletion_protection,
        skip_final_snapshot=not settings.prod,
        final_snapshot_identifier=f"tradai-{env}-final" if settings.prod else None,
        copy_tags_to_snapshot=True,
        auto_minor_version_upgrade=True,
        apply_immediately=not settings.prod,
        tags=tags("database", Name=f"tradai-{env}"),
    )

    def url(database: str) -> pulumi.Output[str]:
        return pulumi.Output.secret(
            pulumi.Output.all(settings.db_password, instance.address).apply(
                lambda args: postgres_url(args[0], args[1], database)
            )
        )

    return Database(
        instance=instance,
        dagster_url=url(DAGSTER_DATABASE),
        mlflow_url=url(MLFLOW_DATABASE),
        sweep_url=url(SWEEP_DATABASE),
    )
