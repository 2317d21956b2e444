"""One source of truth: the names deploy/dagster.yaml, deploy/workspace.yaml, the Pulumi task
definitions and the bots use are the ones in resources/aws_contract.py."""

from __future__ import annotations

from typing import Any

import pytest
from stack_helpers import containers, environment, policy_documents, secret_refs, statements

from infra.compute import WORKSPACE_FILE
from infra.offline import DEPLOY_TIME_CONFIG
from resources import aws_contract
from resources.aws_contract import EnvVar

STACKS = aws_contract.ENVIRONMENTS
CONTRACT_NAMES = {value for key, value in vars(EnvVar).items() if not key.startswith("_")}


def env_reads(node: Any) -> set[str]:
    """Every ``{env: NAME}`` in a Dagster YAML document."""
    if isinstance(node, dict):
        if set(node) == {"env"}:
            return {node["env"]}
        return set().union(*(env_reads(value) for value in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(env_reads(value) for value in node)) if node else set()
    return set()


def _launcher(dagster_yaml):
    return dagster_yaml["run_launcher"]["config"]


def test_dagster_yaml_reads_only_contract_names(dagster_yaml):
    reads = env_reads(dagster_yaml)
    assert reads == set(aws_contract.DAGSTER_INSTANCE_ENV) | set(aws_contract.DAGSTER_INSTANCE_SECRETS)
    assert reads <= CONTRACT_NAMES


def test_the_launcher_lists_its_secrets_explicitly_and_discovers_none_by_tag(dagster_yaml):
    launcher = _launcher(dagster_yaml)
    assert launcher["secrets_tag"] is None
    assert [s["name"] for s in launcher["secrets"]] == [
        *aws_contract.DAGSTER_INSTANCE_SECRETS,
        *aws_contract.PRODUCT_RUNTIME_SECRETS,
    ]
    assert {s["name"]: s["valueFrom"] for s in launcher["secrets"]} == {
        EnvVar.DAGSTER_PG_URL: {"env": EnvVar.DAGSTER_PG_URL_SECRET_ARN},
        EnvVar.SWEEP_STORAGE_URL: {"env": EnvVar.SWEEP_STORAGE_URL_SECRET_ARN},
    }


def test_sweep_workers_get_the_optuna_storage_and_the_queue_holds_them_to_their_limit(dagster_yaml):
    """Every run task (a sweep worker among them) finds Optuna's database by reference; sweep runs are
    counted by their tradai/kind tag, sized as RUN_SIZES["sweep"] and launched mostly on Fargate Spot.
    tests/test_sweep_ecs.py launches sweep batches through this queue and launcher against moto."""
    launcher = _launcher(dagster_yaml)
    assert EnvVar.SWEEP_STORAGE_URL not in launcher["env_vars"]  # the URL holds the password: secret only
    assert EnvVar.SWEEP_STORAGE_URL_SECRET_ARN in launcher["env_vars"]
    tags = aws_contract.ecs_run_tags("sweep")
    (limit,) = [
        rule
        for rule in dagster_yaml["concurrency"]["runs"]["tag_concurrency_limits"]
        if rule["key"] == aws_contract.RUN_KIND_TAG and rule["value"] == tags[aws_contract.RUN_KIND_TAG]
    ]
    assert 1 <= limit["limit"] <= dagster_yaml["concurrency"]["runs"]["max_concurrent_runs"]
    assert (tags["ecs/cpu"], tags["ecs/memory"]) == tuple(str(v) for v in aws_contract.RUN_SIZES["sweep"].values())
    assert "ecs/run_task_kwargs" not in tags  # no per-run capacity: the launcher's Spot-first strategy applies
    strategy = {p["capacityProvider"]: p["weight"] for p in launcher["run_task_kwargs"]["capacityProviderStrategy"]}
    assert strategy["FARGATE_SPOT"] > strategy["FARGATE"]



def test_run_tasks_get_everything_the_instance_and_the_product_read(dagster_yaml):
    launcher = _launcher(dagster_yaml)
    passed = set(launcher["env_vars"])
    assert passed == (
        set(aws_contract.PRODUCT_RUNTIME_ENV)
        | set(aws_contract.DAGSTER_INSTANCE_ENV)
        | set(aws_contract.BOT_MANAGEMENT_ENV)
    )
    assert passed <= CONTRACT_NAMES
    # A run worker loads the same instance: every variable dagster.yaml reads reaches the run task,
    # either passed through or as a secret.
    secrets = {s["name"] for s in launcher["secrets"]}
    assert env_reads(dagster_yaml) <= passed | secrets


def test_the_launcher_targets_the_contract_container_and_fargate(dagster_yaml):
    launcher = _launcher(dagster_yaml)
    assert launcher["container_name"] == aws_contract.RUN_CONTAINER_NAME
    assert launcher["use_current_ecs_task_config"] is False
    assert launcher["task_definition"]["requires_compatibilities"] == ["FARGATE"]
    kwargs = launcher["run_task_kwargs"]
    assert {p["capacityProvider"] for p in kwargs["capacityProviderStrategy"]} == {"FARGATE", "FARGATE_SPOT"}
    assert kwargs["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] == "DISABLED"
    default = launcher["run_resources"]
    assert (int(default["cpu"]), int(default["memory"])) == tuple(aws_contract.RUN_SIZES["sync"].values())


def test_run_sizes_are_fargate_sizes_and_backtests_and_training_outsize_syncs():
    for kind, size in aws_contract.RUN_SIZES.items():
        assert aws_contract.is_valid_fargate_size(size["cpu"], size["memory"]), kind
        tags = aws_contract.ecs_run_tags(kind)
        assert tags == {
            "ecs/cpu": str(size["cpu"]),
            "ecs/memory": str(size["memory"]),
            "tradai/kind": kind,
        }
    sync = aws_contract.RUN_SIZES["sync"]
    for kind in ("backtest", "training"):
        assert aws_contract.RUN_SIZES[kind]["cpu"] > sync["cpu"]
        assert aws_contract.RUN_SIZES[kind]["memory"] > sync["memory"]
        assert aws_contract.RUN_SIZES[kind]["memory"] >= 8192  # a 3-year, 10-pair backtest peaks near 3.3 GB
    assert not aws_contract.is_valid_fargate_size(1024, 1024)
    assert not aws_contract.is_valid_fargate_size(256, 4096)


def test_queue_limits_use_the_contract_tags(dagster_yaml):
    limits = dagster_yaml["concurrency"]["runs"]["tag_concurrency_limits"]
    assert {limit["key"] for limit in limits} == {aws_contract.EXCHANGE_TAG, aws_contract.RUN_KIND_TAG}
    (exchange,) = [limit for limit in limits if limit["key"] == aws_contract.EXCHANGE_TAG]
    assert exchange == {"key": "tradai/exchange", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    kinds = {limit["value"] for limit in limits if limit["key"] == aws_contract.RUN_KIND_TAG}
    assert kinds <= set(aws_contract.RUN_KINDS)


def test_workspace_points_at_the_code_location_by_contract_names(workspace_yaml):
    (location,) = workspace_yaml["load_from"]
    server = location["grpc_server"]
    assert env_reads(server) == set(aws_contract.DAGSTER_WORKSPACE_ENV)
    assert server["location_name"] == aws_contract.CODE_LOCATION_NAME


# --- The Pulumi task definitions provide exactly these names --------------------------------------


def _names(container) -> set[str]:
    return set(environment(container)) | set(secret_refs(container))


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("family", ["webserver", "daemon", "code-location"])
def test_dagster_task_definitions_provide_everything_the_instance_reads(stacks, dagster_yaml, stack, family):
    record = stacks[stack]
    (container,) = containers(record, family)
    names = _names(container)
    assert names <= CONTRACT_NAMES
    assert env_reads(dagster_yaml) | set(_launcher(dagster_yaml)["env_vars"]) <= names
    assert set(secret_refs(container)) == set(aws_contract.DAGSTER_INSTANCE_SECRETS) | set(
        aws_contract.PRODUCT_RUNTIME_SECRETS
    )
    if family in ("webserver", "daemon"):
        assert set(aws_contract.DAGSTER_WORKSPACE_ENV) <= names
        assert WORKSPACE_FILE in container["command"]


@pytest.mark.parametrize("stack", STACKS)
def test_the_launcher_settings_point_at_the_stacks_own_resources(stacks, stack):
    record = stacks[stack]
    (container,) = containers(record, "daemon")
    env = environment(container)
    secret_arn = record.by_output("name", aws_contract.secret_name(stack, "dagster-database-url")).outputs[
        "arn"
    ]
    assert secret_refs(container)[EnvVar.DAGSTER_PG_URL] == secret_arn
    assert env[EnvVar.DAGSTER_PG_URL_SECRET_ARN] == secret_arn
    sweep_arn = record.by_output("name", aws_contract.secret_name(stack, "sweep-database-url")).outputs["arn"]
    assert secret_refs(container)[EnvVar.SWEEP_STORAGE_URL] == sweep_arn
    assert env[EnvVar.SWEEP_STORAGE_URL_SECRET_ARN] == sweep_arn
    assert env[EnvVar.ECS_CLUSTER] == aws_contract.cluster_name(stack)
    assert env[EnvVar.RUN_SUBNET_IDS] == "subnet-private-subnet-us-east-1a,subnet-private-subnet-us-east-1b"
    assert env[EnvVar.RUN_SECURITY_GROUP_IDS] == "sg-ecs-security-group"
    assert (
        env[EnvVar.RUN_TASK_ROLE_ARN] == record.named("aws:iam/role:Role", "dagster-run-role").outputs["arn"]
    )
    assert (
        env[EnvVar.ECS_EXECUTION_ROLE_ARN]
        == record.named("aws:iam/role:Role", "ecs-execution-role").outputs["arn"]
    )
    assert env[EnvVar.RUN_LOG_GROUP] == f"/tradai/{stack}/dagster-runs"
    assert env[EnvVar.LOGS_BUCKET] == aws_contract.bucket_name("logs", stack)
    assert env[EnvVar.TRADAI_STACK] == stack and env[EnvVar.TRADAI_ENV] == "aws"
    assert (
        env[EnvVar.ARCTICDB_URI] == f"s3s://s3.us-east-1.amazonaws.com:tradai-arcticdb-{stack}?aws_auth=true"
    )
    assert env[EnvVar.MLFLOW_TRACKING_URI] == "http://mlflow.tradai.internal:5000"
    domain = {
        "dev": "dev.tradai.example.com",
        "staging": "staging.tradai.example.com",
        "prod": "tradai.example.com",
    }
    assert env[EnvVar.MLFLOW_UI_URL] == f"https://mlflow.{domain[stack]}"
    assert env[EnvVar.CODE_LOCATION_HOST] == "code-location.tradai.internal"
    assert env[EnvVar.CODE_LOCATION_PORT] == str(aws_contract.CODE_LOCATION_PORT)
    (code_location,) = containers(record, "code-location")
    assert code_location["portMappings"] == [
        {"containerPort": aws_contract.CODE_LOCATION_PORT, "protocol": "tcp"}
    ]
    tag = DEPLOY_TIME_CONFIG["tradai:imageTag"]
    app_repository = record.named("aws:ecr/repository:Repository", "app-repository").outputs["repositoryUrl"]
    assert environment(code_location)[EnvVar.DAGSTER_CURRENT_IMAGE] == f"{app_repository}:{tag}"
    assert code_location["image"] == f"{app_repository}:{tag}"
    dagster_repository = record.named("aws:ecr/repository:Repository", "dagster-repository").outputs[
        "repositoryUrl"
    ]
    assert container["image"] == f"{dagster_repository}:{tag}"


@pytest.mark.parametrize("stack", STACKS)
def test_mlflow_reads_its_store_from_secrets_manager_and_serves_artifacts_from_s3(stacks, stack):
    record = stacks[stack]
    (container,) = containers(record, "mlflow")
    assert _names(container) <= CONTRACT_NAMES
    mlflow_url = record.by_output("name", aws_contract.secret_name(stack, "mlflow-database-url")).outputs[
        "arn"
    ]
    assert secret_refs(container) == {EnvVar.MLFLOW_BACKEND_STORE_URI: mlflow_url}
    env = environment(container)
    assert env[EnvVar.MLFLOW_ARTIFACTS_DESTINATION] == f"s3://tradai-mlflow-{stack}/artifacts"
    hosts = env[EnvVar.MLFLOW_SERVER_ALLOWED_HOSTS].split(",")
    assert "mlflow.tradai.internal:5000" in hosts and any(
        h.startswith("mlflow.") and h.endswith(".com") for h in hosts
    )
    assert "python -m deploy.ensure_database && exec mlflow server" in container["command"][-1]


def test_the_api_gets_its_jwt_settings_by_reference(dev_with_api):
    (container,) = containers(dev_with_api, "api")
    assert _names(container) <= CONTRACT_NAMES
    jwt_arn = dev_with_api.by_output("name", aws_contract.secret_name("dev", "api-jwt")).outputs["arn"]
    assert secret_refs(container) == {
        EnvVar.API_JWT_SECRET: f"{jwt_arn}:secret_key::",
        EnvVar.API_JWT_ALGORITHM: f"{jwt_arn}:algorithm::",
        EnvVar.API_JWT_TTL_MINUTES: f"{jwt_arn}:ttl_minutes::",
    }
    assert (
        environment(container)[EnvVar.DAGSTER_GRAPHQL_URL] == "http://webserver.tradai.internal:3000/graphql"
    )
    (service,) = [s for s in dev_with_api.of_type("aws:ecs/service:Service") if s.inputs["name"] == "api"]
    (balancer,) = service.inputs["loadBalancers"]
    assert balancer["containerPort"] == aws_contract.API_PORT


# --- Bots -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_runs_sensors_and_the_api_can_manage_bots_with_the_stacks_own_resources(stacks, dev_with_api, stack):
    record = stacks[stack]
    bot_repository = record.named("aws:ecr/repository:Repository", "bot-repository").outputs["repositoryUrl"]
    expected = {
        EnvVar.ECS_CLUSTER: aws_contract.cluster_name(stack),
        EnvVar.RUN_SUBNET_IDS: "subnet-private-subnet-us-east-1a,subnet-private-subnet-us-east-1b",
        EnvVar.RUN_SECURITY_GROUP_IDS: "sg-ecs-security-group",
        EnvVar.BOT_TASK_ROLE_ARN: record.named("aws:iam/role:Role", "bot-role").outputs["arn"],
        EnvVar.ECS_EXECUTION_ROLE_ARN: record.named("aws:iam/role:Role", "ecs-execution-role").outputs["arn"],
        EnvVar.BOT_IMAGE: f"{bot_repository}:{DEPLOY_TIME_CONFIG['tradai:imageTag']}",
        EnvVar.ALERTS_TOPIC_ARN: record.of_type("aws:sns/topic:Topic")[0].outputs["arn"],
        # Live bots only where the stack allows them: prod.
        EnvVar.ALLOW_LIVE: "true" if stack == "prod" else "false",
    }
    for family in ("daemon", "code-location"):
        (container,) = containers(record, family)
        env = environment(container)
        assert set(aws_contract.BOT_MANAGEMENT_ENV) <= set(env), family
        assert {k: env[k] for k in expected} == expected, family
        assert env[EnvVar.OWNER] and env[EnvVar.COST_CENTER]
    if stack == "dev":
        (api,) = containers(dev_with_api, "api")
        assert set(aws_contract.BOT_MANAGEMENT_ENV) <= set(environment(api))


def test_bot_environment_is_exactly_the_bot_contract():
    env = aws_contract.bot_environment(
        env="dev",
        region="us-east-1",
        strategy="SampleStrategy",
        strategy_id="sample-binance-spot",
        trading_mode="dry_run",
        config_path="s3://tradai-configs-dev/bots/sample-binance-spot.json",
    )
    assert tuple(env) == aws_contract.BOT_ENV
    assert env[EnvVar.DYNAMODB_TABLE] == "tradai-trading-state-dev"
    assert env[EnvVar.ARCTICDB_S3_URI] == "s3s://s3.us-east-1.amazonaws.com:tradai-arcticdb-dev?aws_auth=true"
    with pytest.raises(ValueError, match="trading mode 'paper'"):
        aws_contract.bot_environment(
            env="dev",
            region="us-east-1",
            strategy="S",
            strategy_id="s",
            trading_mode="paper",
            config_path="c",
        )
    secrets = aws_contract.bot_secrets(
        "arn:aws:secretsmanager:us-east-1:1:secret:tradai/dev/exchange/binance-x"
    )
    assert tuple(s["name"] for s in secrets) == aws_contract.BOT_SECRETS
    assert secrets[0]["valueFrom"].endswith("binance-x:key::")


@pytest.mark.parametrize("stack", STACKS)
def test_bots_can_reach_their_tables_and_exchange_keys(stacks, stack):
    record = stacks[stack]
    tables = {t.inputs["name"]: t.outputs["arn"] for t in record.of_type("aws:dynamodb/table:Table")}
    bot_policy = {s["Sid"]: s for s in statements(policy_documents(record)[f"tradai-{stack}-bot"])}
    # Heartbeats are items of the trading-state table: it is the bots' only table.
    assert set(tables) == {aws_contract.trading_state_table(stack)}
    assert bot_policy["BotStateAndHeartbeats"]["Resource"] == [tables[aws_contract.trading_state_table(stack)]]
    execution = {s["Sid"]: s for s in statements(policy_documents(record)[f"tradai-{stack}-ecs-execution"])}
    exchange = record.by_output("name", aws_contract.exchange_secret_name(stack, "binance")).outputs["arn"]
    assert exchange in execution["ReadSecrets"]["Resource"]


@pytest.mark.parametrize("stack", STACKS)
def test_the_api_verifies_cognito_access_tokens_with_the_scopes_it_checks(stacks, stack):
    from tradai_api.auth import ALL_SCOPES

    record = stacks[stack]
    (container,) = containers(record, "api")
    env = environment(container)
    pool_id = record.exports["cognitoUserPoolId"]
    (server,) = record.of_type("aws:cognito/resourceServer:ResourceServer")
    (api_client,) = [c for c in record.of_type("aws:cognito/userPoolClient:UserPoolClient")
                     if c.inputs["name"] == f"tradai-{stack}-api"]
    assert env[EnvVar.API_AUTH] == "jwks"
    assert env[EnvVar.API_JWT_ISSUER] == aws_contract.cognito_issuer("us-east-1", pool_id)
    assert env[EnvVar.API_JWKS_URL] == aws_contract.cognito_jwks_url("us-east-1", pool_id)
    assert env[EnvVar.API_JWT_AUDIENCE] == f"{api_client.name}-id"
    assert env[EnvVar.API_SCOPE_PREFIX] == f"{server.inputs['identifier']}/"
    # The scopes Cognito grants are exactly those the API checks.
    assert {s["scopeName"] for s in server.inputs["scopes"]} == set(ALL_SCOPES)
    assert set(api_client.inputs["allowedOauthScopes"]) == {f"{server.inputs['identifier']}/{s}" for s in aws_contract.API_SCOPES}
    assert container["command"][:3] == ["uvicorn", "--factory", "tradai_api.app:create_app_from_environment"]
