"""Names shared by the AWS deployment: the Pulumi program, deploy/dagster.yaml, the bots and the product.

One source of truth for environment variable names, secret names, table and bucket names, service
endpoints and per-job task sizes. Plain Python on purpose (no Dagster, no boto3, no Pulumi) so that
every side can import it. deploy/dagster.yaml spells environment variable names as strings; the tests
in tests/infra check those strings against this module.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

PROJECT: Final = "tradai"
ENVIRONMENTS: Final = ("dev", "staging", "prod")


class EnvVar:
    """Environment variables the product's containers read."""

    # The product's runtime.
    TRADAI_ENV: Final = "TRADAI_ENV"  # "local" or "aws": picks the resource set in definitions.py
    TRADAI_STACK: Final = "TRADAI_STACK"  # on AWS: dev, staging or prod (names tables, buckets)
    TRADAI_HOME: Final = "TRADAI_HOME"
    DAGSTER_HOME: Final = "DAGSTER_HOME"
    DAGSTER_CURRENT_IMAGE: Final = "DAGSTER_CURRENT_IMAGE"
    MLFLOW_TRACKING_URI: Final = "MLFLOW_TRACKING_URI"
    MLFLOW_UI_URL: Final = "MLFLOW_UI_URL"  # links to runs in Dagster's metadata (the public UI)
    ARCTICDB_URI: Final = "ARCTICDB_URI"
    # Local dry-run bots only: the simulated exchange they trade on (never for live trading).
    LOCAL_EXCHANGE_URL: Final = "TRADAI_LOCAL_EXCHANGE_URL"
    AWS_REGION: Final = "AWS_REGION"

    # Dagster instance (deploy/dagster.yaml).
    DAGSTER_PG_URL: Final = "DAGSTER_PG_URL"  # secret: postgresql://...?sslmode=require
    DAGSTER_PG_URL_SECRET_ARN: Final = "TRADAI_DAGSTER_PG_URL_SECRET_ARN"
    # Optuna's study storage of TPE/NSGA-II sweeps (resources/sweep_studies.py): on AWS a database of its
    # own on the stack's RDS instance (Optuna and Dagster both keep an alembic_version table).
    SWEEP_STORAGE_URL: Final = "TRADAI_SWEEP_STORAGE_URL"  # secret: postgresql+psycopg2://.../sweeps?sslmode=require
    SWEEP_STORAGE_URL_SECRET_ARN: Final = "TRADAI_SWEEP_STORAGE_URL_SECRET_ARN"
    LOGS_BUCKET: Final = "TRADAI_LOGS_BUCKET"
    ECS_CLUSTER: Final = "TRADAI_ECS_CLUSTER"
    RUN_SUBNET_IDS: Final = "TRADAI_RUN_SUBNET_IDS"  # comma-separated
    RUN_SECURITY_GROUP_IDS: Final = "TRADAI_RUN_SECURITY_GROUP_IDS"  # comma-separated
    RUN_TASK_ROLE_ARN: Final = "TRADAI_RUN_TASK_ROLE_ARN"
    ECS_EXECUTION_ROLE_ARN: Final = "TRADAI_ECS_EXECUTION_ROLE_ARN"
    RUN_LOG_GROUP: Final = "TRADAI_RUN_LOG_GROUP"

    # deploy/workspace.yaml (webserver and daemon): where the code location's gRPC server listens.
    CODE_LOCATION_HOST: Final = "TRADAI_CODE_LOCATION_HOST"
    CODE_LOCATION_PORT: Final = "TRADAI_CODE_LOCATION_PORT"

    # MLflow server.
    MLFLOW_BACKEND_STORE_URI: Final = "MLFLOW_BACKEND_STORE_URI"  # secret
    MLFLOW_ARTIFACTS_DESTINATION: Final = "MLFLOW_ARTIFACTS_DESTINATION"
    MLFLOW_SERVER_ALLOWED_HOSTS: Final = "MLFLOW_SERVER_ALLOWED_HOSTS"

    # HTTP API.
    API_JWT_SECRET: Final = "TRADAI_API_JWT_SECRET"  # secret
    API_JWT_ALGORITHM: Final = "TRADAI_API_JWT_ALGORITHM"  # secret (JSON key of the same entry)
    API_JWT_TTL_MINUTES: Final = "TRADAI_API_JWT_TTL_MINUTES"  # secret (JSON key of the same entry)
    DAGSTER_GRAPHQL_URL: Final = "TRADAI_DAGSTER_GRAPHQL_URL"
    # In AWS the API verifies Cognito's RS256 access tokens against the user pool's key set.
    API_AUTH: Final = "TRADAI_API_AUTH"  # hs256 | jwks
    API_JWKS_URL: Final = "TRADAI_API_JWKS_URL"
    API_JWT_ISSUER: Final = "TRADAI_API_JWT_ISSUER"
    API_JWT_AUDIENCE: Final = "TRADAI_API_JWT_AUDIENCE"
    API_SCOPE_PREFIX: Final = "TRADAI_API_SCOPE_PREFIX"

    # Managing bots from Dagster runs, sensors and the API (TRADAI_ENV=aws).
    BOT_IMAGE: Final = "TRADAI_BOT_IMAGE"
    BOT_TASK_ROLE_ARN: Final = "TRADAI_BOT_TASK_ROLE_ARN"
    ALLOW_LIVE: Final = "TRADAI_ALLOW_LIVE"  # "true" lets live bots start on this stack (one of three interlocks)
    ALERTS_TOPIC_ARN: Final = "TRADAI_ALERTS_TOPIC_ARN"  # the notifier publishes here
    NOTIFY_WEBHOOK_URL: Final = "TRADAI_NOTIFY_WEBHOOK_URL"  # optional Slack-style webhook for notifications
    OWNER: Final = "TRADAI_OWNER"  # tags of what the product creates at run time (bot services)
    COST_CENTER: Final = "TRADAI_COST_CENTER"

    # Live and dry-run bots (one ECS service per strategy).
    STRATEGY: Final = "STRATEGY"
    STRATEGY_ID: Final = "STRATEGY_ID"
    TRADING_MODE: Final = "TRADING_MODE"
    CONFIG_PATH: Final = "CONFIG_PATH"
    DYNAMODB_TABLE: Final = "DYNAMODB_TABLE"
    ARCTICDB_S3_URI: Final = "ARCTICDB_S3_URI"
    # Freqtrade reads FREQTRADE__SECTION__KEY variables as config overrides.
    EXCHANGE_KEY: Final = "FREQTRADE__EXCHANGE__KEY"  # secret
    EXCHANGE_SECRET: Final = "FREQTRADE__EXCHANGE__SECRET"  # secret
    FREQTRADE_DRY_RUN: Final = "FREQTRADE__DRY_RUN"
    FREQTRADE_STAKE_AMOUNT: Final = "FREQTRADE__STAKE_AMOUNT"
    FREQTRADE_PAIR_WHITELIST: Final = "FREQTRADE__EXCHANGE__PAIR_WHITELIST"  # a JSON list


# The Dagster instance reads these (deploy/dagster.yaml). Every Dagster container (webserver, daemon,
# code location) and every run task gets all of them, so that any process can load the instance.
DAGSTER_INSTANCE_ENV: Final = (
    EnvVar.TRADAI_STACK,
    EnvVar.LOGS_BUCKET,
    EnvVar.AWS_REGION,
    EnvVar.ECS_CLUSTER,
    EnvVar.RUN_SUBNET_IDS,
    EnvVar.RUN_SECURITY_GROUP_IDS,
    EnvVar.RUN_TASK_ROLE_ARN,
    EnvVar.ECS_EXECUTION_ROLE_ARN,
    EnvVar.RUN_LOG_GROUP,
    EnvVar.DAGSTER_PG_URL_SECRET_ARN,
    EnvVar.SWEEP_STORAGE_URL_SECRET_ARN,
)
DAGSTER_INSTANCE_SECRETS: Final = (EnvVar.DAGSTER_PG_URL,)
# Secrets the product's code reads in every Dagster process and run task (definitions.py, TRADAI_ENV=aws).
# The run launcher hands them to run tasks by ARN (deploy/dagster.yaml), as it does the instance's URL.
PRODUCT_RUNTIME_SECRETS: Final = (EnvVar.SWEEP_STORAGE_URL,)
# deploy/workspace.yaml reads these (webserver and daemon only).
DAGSTER_WORKSPACE_ENV: Final = (EnvVar.CODE_LOCATION_HOST, EnvVar.CODE_LOCATION_PORT)

# What runs, sensors and the API read to manage bots as ECS services and to send notifications.
BOT_MANAGEMENT_ENV: Final = (
    EnvVar.TRADAI_STACK,
    EnvVar.AWS_REGION,
    EnvVar.ECS_CLUSTER,
    EnvVar.RUN_SUBNET_IDS,
    EnvVar.RUN_SECURITY_GROUP_IDS,
    EnvVar.ECS_EXECUTION_ROLE_ARN,
    EnvVar.BOT_TASK_ROLE_ARN,
    EnvVar.BOT_IMAGE,
    EnvVar.ALLOW_LIVE,
    EnvVar.ALERTS_TOPIC_ARN,
    EnvVar.OWNER,
    EnvVar.COST_CENTER,
)

# What the product's code reads at run time on AWS (definitions.py picks resources with TRADAI_ENV).
PRODUCT_RUNTIME_ENV: Final = (
    EnvVar.TRADAI_ENV,
    EnvVar.TRADAI_STACK,
    EnvVar.TRADAI_HOME,
    EnvVar.DAGSTER_HOME,
    EnvVar.MLFLOW_TRACKING_URI,
    EnvVar.MLFLOW_UI_URL,
    EnvVar.ARCTICDB_URI,
)

# A bot's task definition carries these, and the freqtrade overrides below, and nothing else in plain
# environment variables.
BOT_ENV: Final = (
    EnvVar.STRATEGY,
    EnvVar.STRATEGY_ID,
    EnvVar.TRADING_MODE,
    EnvVar.MLFLOW_TRACKING_URI,
    EnvVar.CONFIG_PATH,
    EnvVar.DYNAMODB_TABLE,
    EnvVar.ARCTICDB_S3_URI,
)
BOT_SECRETS: Final = (EnvVar.EXCHANGE_KEY, EnvVar.EXCHANGE_SECRET)
# Freqtrade settings the deployment decides over the strategy's config file.
BOT_FREQTRADE_OVERRIDES: Final = (
    EnvVar.FREQTRADE_DRY_RUN,
    EnvVar.FREQTRADE_STAKE_AMOUNT,
    EnvVar.FREQTRADE_PAIR_WHITELIST,
)
TRADING_MODES: Final = ("live", "dry_run")

# --- Secrets Manager ------------------------------------------------------------------------------

DAGSTER_DATABASE_URL_SECRET: Final = "dagster-database-url"
MLFLOW_DATABASE_URL_SECRET: Final = "mlflow-database-url"
SWEEP_DATABASE_URL_SECRET: Final = "sweep-database-url"
API_JWT_SECRET: Final = "api-jwt"
# JSON keys of the API's JWT entry, mapped to the variables the API reads.
API_JWT_SECRET_KEYS: Final = {
    EnvVar.API_JWT_SECRET: "secret_key",
    EnvVar.API_JWT_ALGORITHM: "algorithm",
    EnvVar.API_JWT_TTL_MINUTES: "ttl_minutes",
}
# JSON keys of an exchange's entry, mapped to the variables freqtrade reads.
EXCHANGE_SECRET_KEYS: Final = {EnvVar.EXCHANGE_KEY: "key", EnvVar.EXCHANGE_SECRET: "secret"}


def secret_name(env: str, secret: str) -> str:
    """Secrets Manager name of one of the stack's entries, e.g. ``tradai/dev/dagster-database-url``."""
    return f"{PROJECT}/{_checked_env(env)}/{secret}"


def exchange_secret_name(env: str, exchange: str) -> str:
    """Secrets Manager name of an exchange's API key pair: JSON ``{"key": ..., "secret": ...}``."""
    if not re.fullmatch(r"[a-z0-9]+", exchange):
        raise ValueError(f"exchange id {exchange!r} must be a lower-case ccxt id such as 'binance'")
    return f"{PROJECT}/{_checked_env(env)}/exchange/{exchange}"


def json_key_reference(secret_arn: str, json_key: str) -> str:
    """ECS ``valueFrom`` for one key of a JSON secret."""
    return f"{secret_arn}:{json_key}::"


# --- Storage --------------------------------------------------------------------------------------

BUCKET_KINDS: Final = ("configs", "results", "arcticdb", "logs", "mlflow")
UNVERSIONED_BUCKETS: Final = ("logs",)
RESULTS_TO_GLACIER_AFTER_DAYS: Final = 30
LOGS_EXPIRE_AFTER_DAYS: Final = 90
COMPUTE_LOGS_PREFIX: Final = "dagster/compute-logs"
MLFLOW_ARTIFACTS_PREFIX: Final = "artifacts"


def bucket_name(kind: str, env: str) -> str:
    if kind not in BUCKET_KINDS:
        raise ValueError(f"unknown bucket kind {kind!r}; expected one of {BUCKET_KINDS}")
    return f"{PROJECT}-{kind}-{_checked_env(env)}"


def arcticdb_uri(env: str, region: str) -> str:
    """ArcticDB library URI for the stack's bucket, authenticated by the task's IAM role."""
    return f"s3s://s3.{region}.amazonaws.com:{bucket_name('arcticdb', env)}?aws_auth=true"


TABLE_PARTITION_KEY: Final = "strategy_id"
TABLE_TTL_ATTRIBUTE: Final = "expires_at"  # epoch seconds; items without it never expire


def trading_state_table(env: str) -> str:
    return f"{PROJECT}-trading-state-{_checked_env(env)}"


def adaptive_retries(attempts: int) -> dict[str, Any]:
    """botocore's retry setting for every AWS client of the product: its ``adaptive`` mode (exponential
    backoff with jitter on throttling and transient errors, and a client-side rate limit once AWS
    throttles), ``attempts`` calls at most, the first included."""
    return {"mode": "adaptive", "total_max_attempts": attempts}


# --- ECS, service discovery and images ------------------------------------------------------------

RUN_CONTAINER_NAME: Final = "run"
SERVICE_DISCOVERY_NAMESPACE: Final = f"{PROJECT}.internal"
# Cloud Map service names inside the namespace.
WEBSERVER_SERVICE: Final = "webserver"
CODE_LOCATION_SERVICE: Final = "code-location"
MLFLOW_SERVICE: Final = "mlflow"
WEBSERVER_PORT: Final = 3000
CODE_LOCATION_PORT: Final = 4000
MLFLOW_PORT: Final = 5000
API_PORT: Final = 8000
# The Cognito resource server of the API and the scopes it grants (docs/api.md): tokens carry them as
# "<identifier>/<scope>", which the API strips with TRADAI_API_SCOPE_PREFIX.
API_RESOURCE_SERVER: Final = "tradai-api"
API_SCOPES: Final = (
    "backtests:read", "backtests:run", "data:read", "data:sync", "models:read", "models:write", "bots:read", "bots:write",
    "admin",
)


def cognito_issuer(region: str, user_pool_id: str) -> str:
    return f"https://cognito-idp.{region}.amazonaws.com/{user_pool_id}"


def cognito_jwks_url(region: str, user_pool_id: str) -> str:
    return f"{cognito_issuer(region, user_pool_id)}/.well-known/jwks.json"
CODE_LOCATION_NAME: Final = "tradai"
CODE_LOCATION_MODULE: Final = "tradai_assets.definitions"
CODE_LOCATION_ATTRIBUTE: Final = "defs"
DAGSTER_HOME_IN_IMAGE: Final = "/opt/dagster/dagster_home"
TRADAI_HOME_IN_IMAGE: Final = "/opt/tradai"
BOT_CONFIGS_PREFIX: Final = "bots"  # the configs bucket's bots/<strategy id>/config-<hash>.json
BOT_SERVICE_PREFIX: Final = "bot-"  # ECS service bot-<strategy_id>; task-definition family tradai-<stack>-bot-<id>
IMAGE_REPOSITORIES: Final = ("app", "dagster", "bot")  # deploy/Dockerfile targets


def cluster_name(env: str) -> str:
    return f"{PROJECT}-{_checked_env(env)}"


def repository_name(image: str, env: str) -> str:
    if image not in IMAGE_REPOSITORIES:
        raise ValueError(f"unknown image {image!r}; expected one of {IMAGE_REPOSITORIES}")
    return f"{PROJECT}-{image}-{_checked_env(env)}"


def internal_host(service: str) -> str:
    """Cloud Map DNS name of a service inside the VPC, e.g. ``mlflow.tradai.internal``."""
    return f"{service}.{SERVICE_DISCOVERY_NAMESPACE}"


def mlflow_tracking_uri() -> str:
    return f"http://{internal_host(MLFLOW_SERVICE)}:{MLFLOW_PORT}"


def dagster_graphql_url() -> str:
    return f"http://{internal_host(WEBSERVER_SERVICE)}:{WEBSERVER_PORT}/graphql"


# --- Runs: queue tags and task sizes --------------------------------------------------------------

# Runs that call an exchange's API carry this tag; the run queue allows one run per exchange at once.
EXCHANGE_TAG: Final = "tradai/exchange"
RUN_KIND_TAG: Final = "tradai/kind"
RUN_KINDS: Final = ("sync", "backtest", "training", "sweep")

# Fargate size per kind of run, as the EcsRunLauncher's ecs/cpu and ecs/memory tags (CPU units, MiB).
# Syncs are the default size of a run (deploy/dagster.yaml). A freqtrade backtest is single-threaded
# and holds its candles in memory (about 3.3 GB for 10 pairs x 3 years of 5m candles): one vCPU,
# 8 GiB. Training uses several cores. A sweep worker runs its batch of trials one after the other in
# one engine: a backtest's size.
RUN_SIZES: Final = {
    "sync": {"cpu": 512, "memory": 2048},
    "backtest": {"cpu": 1024, "memory": 8192},
    "training": {"cpu": 4096, "memory": 16384},
    "sweep": {"cpu": 1024, "memory": 8192},
}

# Valid Fargate (Linux) task sizes: CPU units -> (min MiB, max MiB, step MiB).
_FARGATE_MEMORY: Final = {
    256: (512, 2048, None),
    512: (1024, 4096, 1024),
    1024: (2048, 8192, 1024),
    2048: (4096, 16384, 1024),
    4096: (8192, 30720, 1024),
    8192: (16384, 61440, 4096),
    16384: (32768, 122880, 8192),
}


def is_valid_fargate_size(cpu: int, memory: int) -> bool:
    if cpu not in _FARGATE_MEMORY:
        return False
    low, high, step = _FARGATE_MEMORY[cpu]
    if step is None:  # 0.25 vCPU takes 512, 1024 or 2048 MiB
        return memory in (512, 1024, 2048)
    return low <= memory <= high and (memory - low) % step == 0


def ecs_run_tags(kind: str) -> dict[str, str]:
    """Dagster run tags that size a job's ECS task and let the run queue count it by kind."""
    if kind not in RUN_SIZES:
        raise ValueError(f"unknown run kind {kind!r}; expected one of {RUN_KINDS}")
    size = RUN_SIZES[kind]
    return {"ecs/cpu": str(size["cpu"]), "ecs/memory": str(size["memory"]), RUN_KIND_TAG: kind}


# --- Bots -----------------------------------------------------------------------------------------


def bot_environment(
    *,
    env: str,
    region: str,
    strategy: str,
    strategy_id: str,
    trading_mode: str,
    config_path: str,
) -> dict[str, str]:
    """Plain environment of a bot's container (its exchange keys come in by secret reference)."""
    if trading_mode not in TRADING_MODES:
        raise ValueError(f"trading mode {trading_mode!r} must be one of {TRADING_MODES}")
    return {
        EnvVar.STRATEGY: strategy,
        EnvVar.STRATEGY_ID: strategy_id,
        EnvVar.TRADING_MODE: trading_mode,
        EnvVar.MLFLOW_TRACKING_URI: mlflow_tracking_uri(),
        EnvVar.CONFIG_PATH: config_path,
        EnvVar.DYNAMODB_TABLE: trading_state_table(env),
        EnvVar.ARCTICDB_S3_URI: arcticdb_uri(env, region),
    }


def bot_freqtrade_overrides(
    *, trading_mode: str, stake_amount: float | str, pairs: tuple[str, ...] | list[str]
) -> dict[str, str]:
    """Freqtrade config overrides of a bot's container (freqtrade reads ``FREQTRADE__*`` variables).

    ``dry_run`` always follows the trading mode, whatever the config file says, so that a dry-run
    deployment can never place real orders. No pairs leaves the config file's whitelist in force."""
    if trading_mode not in TRADING_MODES:
        raise ValueError(f"trading mode {trading_mode!r} must be one of {TRADING_MODES}")
    overrides = {
        EnvVar.FREQTRADE_DRY_RUN: "true" if trading_mode == "dry_run" else "false",
        EnvVar.FREQTRADE_STAKE_AMOUNT: str(stake_amount),
    }
    if pairs:
        overrides[EnvVar.FREQTRADE_PAIR_WHITELIST] = json.dumps(list(pairs))
    return overrides


def bot_secrets(exchange_secret_arn: str) -> list[dict[str, str]]:
    """ECS ``secrets`` of a bot's container: the exchange key pair, by reference."""
    return [
        {"name": name, "valueFrom": json_key_reference(exchange_secret_arn, key)}
        for name, key in EXCHANGE_SECRET_KEYS.items()
    ]


def _checked_env(env: str) -> str:
    if env not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {env!r}; expected one of {ENVIRONMENTS}")
    return env
