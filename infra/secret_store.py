"""Secrets Manager entries; task definitions reference them by ARN, never by value.

``tradai/{env}/dagster-database-url``, ``tradai/{env}/mlflow-database-url`` and
``tradai/{env}/sweep-database-url`` (Optuna's studies) are written from the RDS endpoint and the stack's ``dbPassword``; ``tradai/{env}/api-jwt`` from ``apiJwtSecret``. Each
exchange's key pair (``tradai/{env}/exchange/<id>``, JSON ``{"key", "secret"}``) is created empty:
an operator puts the value (docs/deploy.md), so keys never pass through Pulumi state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.config import Settings, Tagger
from infra.database import Database
from resources import aws_contract

JWT_ALGORITHM = "HS256"
JWT_TTL_MINUTES = 60


@dataclass
class Secrets:
    dagster_database_url: aws.secretsmanager.Secret
    mlflow_database_url: aws.secretsmanager.Secret
    sweep_database_url: aws.secretsmanager.Secret
    api_jwt: aws.secretsmanager.Secret
    exchanges: dict[str, aws.secretsmanager.Secret]

    @property
    def arns(self) -> list[pulumi.Output[str]]:
        entries = [self.dagster_database_url, self.mlflow_database_url, self.sweep_database_url, self.api_jwt]
        return [secret.arn for secret in [*entries, *self.exchanges.values()]]


def create_secrets(settings: Settings, tags: Tagger, database: Database) -> Secrets:
    env = settings.env

    def secret(logical: str, name: str, service: str, description: str) -> aws.secretsmanager.Secret:
        return aws.secretsmanager.Secret(
            f"{logical}-secret",
            name=name,
            description=description,
            recovery_window_in_days=30 if settings.prod else 7,
            tags=tags(service),
        )

    dagster_url = secret(
        "dagster-database-url",
        aws_contract.secret_name(env, aws_contract.DAGSTER_DATABASE_URL_SECRET),
        "dagster",
        "Dagster storage: SQLAlchemy URL of the dagster database",
    )
    aws.secretsmanager.SecretVersion(
        "dagster-database-url-value", secret_id=dagster_url.id, secret_string=database.dagster_url
    )
    mlflow_url = secret(
        "mlflow-database-url",
        aws_contract.secret_name(env, aws_contract.MLFLOW_DATABASE_URL_SECRET),
        "mlflow",
        "MLflow backend store: SQLAlchemy URL of the mlflow database",
    )
    aws.secretsmanager.SecretVersion(
        "mlflow-database-url-value", secret_id=mlflow_url.id, secret_string=database.mlflow_url
    )
    sweep_url = secret(
        "sweep-database-url",
        aws_contract.secret_name(env, aws_contract.SWEEP_DATABASE_URL_SECRET),
        "dagster",
        "Optuna study storage of sweeps: SQLAlchemy URL of the sweeps database",
    )
    aws.secretsmanager.SecretVersion(
        "sweep-database-url-value", secret_id=sweep_url.id, secret_string=database.sweep_url
    )
    api_jwt = secret(
        "api-jwt",
        aws_contract.secret_name(env, aws_contract.API_JWT_SECRET),
        "api",
        "HTTP API token settings: JSON {secret_key, algorithm, ttl_minutes}",
    )
    aws.secretsmanager.SecretVersion(
        "api-jwt-value",
        secret_id=api_jwt.id,
        secret_string=pulumi.Output.secret(
            settings.api_jwt_secret.apply(
                lambda key: json.dumps(
                    {
                        aws_contract.API_JWT_SECRET_KEYS[aws_contract.EnvVar.API_JWT_SECRET]: key,
                        aws_contract.API_JWT_SECRET_KEYS[
                            aws_contract.EnvVar.API_JWT_ALGORITHM
                        ]: JWT_ALGORITHM,
                        aws_contract.API_JWT_SECRET_KEYS[aws_contract.EnvVar.API_JWT_TTL_MINUTES]: str(
                            JWT_TTL_MINUTES
                        ),
                    }
                )
            )
        ),
    )
    exchanges = {
        exchange: secret(
            f"exchange-{exchange}",
            aws_contract.exchange_secret_name(env, exchange),
            "bots",
            f"{exchange} API key pair for the bots: JSON {{key, secret}}; value set by an operator",
        )
        for exchange in settings.exchanges
    }
    return Secrets(
        dagster_database_url=dagster_url,
        mlflow_database_url=mlflow_url,
        sweep_database_url=sweep_url,
        api_jwt=api_jwt,
        exchanges=exchanges,
    )
