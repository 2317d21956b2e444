"""Live and dry-run bots as ECS services: one service and one task-definition family per strategy id.

``EcsBotServices.reconcile(spec)`` brings the service named ``bot-<strategy_id>`` to the state a
``BotSpec`` describes. It registers a task-definition revision only when the wanted contents differ
from the service's current revision (compared after dropping what ECS adds on its own), and it updates
the service only when something about it differs, so reconciling an unchanged spec makes no AWS write
call at all. Every call is counted by kind (``write_calls``) through a botocore event hook, so that
callers, tests and the bench can check that.

Exchange keys reach the container only as ``secrets`` entries whose ``valueFrom`` is the Secrets
Manager ARN; their values are never read here. A spec naming a secret that does not exist is refused
before anything is written.

Throttling (``ThrottlingException`` and its kin) and transient errors are retried by botocore's own
``adaptive`` retry mode (exponential backoff with jitter, and a client-side rate limit once AWS
throttles); any other AWS error, or one that outlasts ``max_attempts``, is raised as
``BotServiceError`` naming the service, the operation and the attempts.

``BotServices`` is what every caller takes (assets, jobs, sensors, the API): the interface both
backends, ``EcsBotServices`` here and ``resources.local_bots.LocalBotServices``, implement, so no
caller asks which one it has. Their states (``ServiceState``, ``LocalBotState``) share ``BotState``.

``list_bots`` lists the cluster's bot services (those tagged ``ManagedBy=tradai``), ``stop`` scales one
to zero, and ``write_config`` stores a bot's config in the stack's configs bucket under a name made of
its content hash, so an unchanged config is never written twice and a changed one gets a new
``CONFIG_PATH`` (hence a new task-definition revision and a restart).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from resources import aws_contract

BOT_CONTAINER_NAME = "bot"
BOT_SERVICE_TAG = "bots"  # the infra's ``Service`` tag for everything that belongs to the bots
MANAGED_BY = "tradai"  # bots are reconciled by the product, not by the Pulumi program
TRADING_MODE_TAG = "TradingMode"
STRATEGY_ID_TAG = "StrategyId"
BOT_MODES = ("dry_run", "live", "stopped")
# Real money never runs on Spot: a reclaimed task would leave open positions unattended.
CAPACITY_PROVIDER = {"live": "FARGATE", "dry_run": "FARGATE_SPOT"}
# A bot must never trade twice at once: the old task stops before the new one starts. The circuit
# breaker (without rollback) makes ECS give up on a deployment whose tasks keep dying instead of
# restarting them forever; the heartbeat sensor reports that as a crash loop.
DEPLOYMENT_CONFIGURATION = {
    "maximumPercent": 100,
    "minimumHealthyPercent": 0,
    "deploymentCircuitBreaker": {"enable": True, "rollback": False},
}
# ECS trips the breaker of a one-task service after 3 failed tasks (its lower bound); the same count
# marks a crash loop while the deployment is still in progress.
CRASH_LOOP_FAILED_TASKS = 3
_READ_OPERATION = re.compile(r"^(Describe|List|Get|BatchGet|Query|Scan|Head)")
# A model strategy's bot loads this version of its model (the champion when the bot was deployed).
MODEL_VERSION_ENV = "TRADAI_MODEL_VERSION"
# A stopped bot runs no image; the spec still names one.
NO_IMAGE = "none"
_STRATEGY_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


class BotSpecError(ValueError):
    """A spec that cannot be deployed: a bad field or a secret that does not exist."""


class BotServiceError(RuntimeError):
    """An AWS call about one bot's service failed for good (after botocore's retries)."""


@dataclass(frozen=True)
class BotSpec:
    """What one bot should be. ``mode="stopped"`` keeps the service with no task running."""

    strategy: str
    strategy_id: str
    mode: Literal["dry_run", "live", "stopped"]
    image: str
    config_path: str
    exchange_secret: str | None = None  # Secrets Manager name or ARN: JSON {"key": ..., "secret": ...}
    stake_amount: float | Literal["unlimited"] = "unlimited"
    pairs: tuple[str, ...] = ()
    cpu: int = 512
    memory: int = 1024
    model_version: int | None = None  # model strategies: the registered model version the bot loads

    def __post_init__(self) -> None:
        if not _STRATEGY_ID.fullmatch(self.strategy_id):
            raise BotSpecError(
                f"strategy_id {self.strategy_id!r} must be 1-63 lower-case letters, digits or hyphens"
            )
        if self.mode not in BOT_MODES:
            raise BotSpecError(f"bot {self.strategy_id}: mode {self.mode!r} must be one of {BOT_MODES}")
        if not self.strategy or not self.image or not self.config_path:
            raise BotSpecError(f"bot {self.strategy_id}: strategy, image and config_path are required")
        if self.mode == "live" and not self.exchange_secret:
            raise BotSpecError(f"bot {self.strategy_id}: a live bot needs exchange_secret")
        if not aws_contract.is_valid_fargate_size(self.cpu, self.memory):
            raise BotSpecError(
                f"bot {self.strategy_id}: cpu={self.cpu} memory={self.memory} is not a Fargate size"
            )
        if self.stake_amount != "unlimited" and not (
            isinstance(self.stake_amount, (int, float)) and self.stake_amount > 0
        ):
            raise BotSpecError(
                f"bot {self.strategy_id}: stake_amount {self.stake_amount!r} must be positive or 'unlimited'"
            )
        if isinstance(self.pairs, str):
            raise BotSpecError(f"bot {self.strategy_id}: pairs must be a sequence of pairs, not a string")
        if self.model_version is not None and (
            isinstance(self.model_version, bool) or not isinstance(self.model_version, int) or self.model_version < 1
        ):
            raise BotSpecError(
                f"bot {self.strategy_id}: model_version {self.model_version!r} must be a positive integer"
            )
        object.__setattr__(self, "pairs", tuple(self.pairs))

    @property
    def service_name(self) -> str:
        return bot_service_name(self.strategy_id)


class BotState(ABC):
    """A bot as its backend reports it: ``strategy_id``, ``status`` and ``actions`` (what the last call changed)."""

    strategy_id: str
    status: str
    actions: tuple[str, ...]

    @property
    @abstractmethod
    def mode(self) -> str:
        """The trading mode the bot runs in (dry_run or live)."""

    @property
    @abstractmethod
    def running(self) -> bool:
        """Whether the bot is meant to be running now."""

    @property
    @abstractmethod
    def failure(self) -> str | None:
        """Why the backend gave up on the bot (it keeps crashing), or None."""

    @abstractmethod
    def details(self) -> dict[str, Any]:
        """What the backend knows of the bot beyond its status, as plain values (run metadata)."""


@dataclass(frozen=True)
class ServiceState(BotState):
    """A bot's service as ECS reports it, and what the last reconcile changed (``actions``)."""

    strategy_id: str
    service_name: str
    status: str  # ECS's ACTIVE or DRAINING, or "absent"
    desired_count: int = 0
    running_count: int = 0
    task_definition_arn: str | None = None
    trading_mode: str | None = None
    actions: tuple[str, ...] = field(default=())
    failed_tasks: int = 0  # tasks of the current deployment that stopped before running
    rollout_state: str | None = None  # COMPLETED, IN_PROGRESS or FAILED (circuit breaker tripped)
    rollout_reason: str | None = None

    @property
    def crash_looping(self) -> bool:
        """ECS gave up (the circuit breaker failed the deployment) or tasks keep dying at start."""
        return self.rollout_state == "FAILED" or self.failed_tasks >= CRASH_LOOP_FAILED_TASKS

    @property
    def revision(self) -> int | None:
        return None if self.task_definition_arn is None else int(self.task_definition_arn.rsplit(":", 1)[1])

    @property
    def mode(self) -> str:
        # A service without its tag counts as live: the kill switch then stops it, to be safe.
        return self.trading_mode or "live"

    @property
    def running(self) -> bool:
        return self.status == "ACTIVE" and self.desired_count > 0

    @property
    def failure(self) -> str | None:
        if not (self.running and self.crash_looping):
            return None
        return f"ECS: {self.failed_tasks} task(s) of the current deployment failed" + (
            f"; the circuit breaker stopped launching tasks ({self.rollout_reason})"
            if self.rollout_state == "FAILED" else ""
        )

    def details(self) -> dict[str, Any]:
        details: dict[str, Any] = {
            "service": self.service_name, "desired_count": self.desired_count, "running_count": self.running_count,
        }
        if self.task_definition_arn:
            details["task_definition"] = self.task_definition_arn.rsplit("/", 1)[1]
            details["task_definition_revision"] = self.revision
        return details


def bot_service_name(strategy_id: str) -> str:
    return f"{aws_contract.BOT_SERVICE_PREFIX}{strategy_id}"


class AwsCallCounter:
    """Counts the AWS calls of the clients it is attached to, split into reads and writes."""

    def __init__(self) -> None:
        self.reads: Counter[str] = Counter()
        self.writes: Counter[str] = Counter()

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-call", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        name = model.name
        (self.reads if _READ_OPERATION.match(name) else self.writes)[name] += 1

    @property
    def write_calls(self) -> int:
        return sum(self.writes.values())

    def reset(self) -> None:
        self.reads.clear()
        self.writes.clear()


class BotServices(ConfigurableResource):
    """Where bots run. Callers annotate their resource with this class; the definitions bind a backend."""

    @abstractmethod
    def reconcile(self, spec: BotSpec) -> BotState:
        """Bring the bot to ``spec``; an unchanged spec changes nothing."""

    @abstractmethod
    def describe(self, strategy_id: str) -> BotState:
        """The bot's state (status ``absent`` when it was never deployed)."""

    @abstractmethod
    def list_bots(self) -> list[BotState]:
        """Every deployed bot, by strategy id."""

    @abstractmethod
    def stop(self, strategy_id: str) -> BotState:
        """Stop the bot, keeping its deployment; stopping an absent bot is not an error."""

    @abstractmethod
    def delete(self, strategy_id: str) -> BotState:
        """Stop the bot and forget its deployment."""

    @abstractmethod
    def write_config(self, strategy_id: str, config: dict[str, Any]) -> str:
        """Store a bot's config where the bot reads it, named by its content hash; returns its CONFIG_PATH."""

    @abstractmethod
    def config_placeholder(self, strategy_id: str) -> str:
        """Where the bot's configs live: the CONFIG_PATH of a stop that has no config of its own."""

    @abstractmethod
    def image_for(self, mode: str) -> str:
        """The image a bot in ``mode`` runs; ``BotSpecError`` when a running bot would need one that is not set."""

    @abstractmethod
    def live_refusal(self, strategy_id: str, exchange_secret: str) -> str | None:
        """Why this backend cannot run the bot live with that exchange secret, or None when it can."""

    def write_call_counts(self) -> dict[str, int] | None:
        """Write calls made to a cloud API so far, by operation; None for a backend that makes none."""
        return None


class EcsBotServices(BotServices):
    """Bots as ECS services on the stack's cluster."""

    stack: str = Field(description="The stack: dev, staging or prod (names the cluster, tables, log group).")
    subnet_ids: list[str] = Field(description="Private subnets the bots' tasks run in.")
    security_group_ids: list[str] = Field(description="Security groups of the bots' tasks.")
    execution_role_arn: str = Field(description="Task execution role: pulls the image, reads the secrets.")
    task_role_arn: str = Field(description="The bots' task role: state tables, configs, candles.")
    owner: str = Field(description="The Owner tag.")
    cost_center: str = Field(description="The CostCenter tag.")
    region: str | None = Field(default=None, description="AWS region; AWS_REGION when None.")
    endpoint_url: str | None = Field(
        default=None, description="AWS endpoint (a local stand-in); boto3's own resolution when None."
    )
    cluster: str | None = Field(default=None, description="ECS cluster; the stack's cluster when None.")
    max_attempts: int = Field(
        default=6, ge=1, description="Attempts per AWS call, the first included (botocore's adaptive retries)."
    )
    image: str | None = Field(default=None, description="The bot image (ECR URI with tag) deployments run.")
    configs_bucket: str | None = Field(
        default=None, description="Bucket of the bots' configs; the stack's configs bucket when None."
    )

    _clients: dict[str, Any] = PrivateAttr(default_factory=dict)
    _calls: AwsCallCounter = PrivateAttr(default_factory=AwsCallCounter)

    # --- public ---------------------------------------------------------------------------------

    @property
    def calls(self) -> AwsCallCounter:
        return self._calls

    @property
    def cluster_name(self) -> str:
        return self.cluster or aws_contract.cluster_name(self.stack)

    @property
    def region_name(self) -> str:
        region = self.region or os.environ.get(aws_contract.EnvVar.AWS_REGION)
        if not region:
            raise ValueError(f"set the region field or {aws_contract.EnvVar.AWS_REGION}")
        return region

    @property
    def log_group(self) -> str:
        return f"/{aws_contract.PROJECT}/{self.stack}/bots"

    def client(self, service: str) -> Any:
        if service not in self._clients:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                service,
                region_name=self.region_name,
                endpoint_url=self.endpoint_url,
                config=Config(retries=aws_contract.adaptive_retries(self.max_attempts)),
            )
            self._calls.attach(client)
            self._clients[service] = client
        return self._clients[service]

    def reconcile(self, spec: BotSpec) -> ServiceState:
        """Make the bot's service match ``spec``; no write call when it already does."""
        current = self._service(spec.service_name)
        if spec.mode == "stopped":
            return self._stop(spec, current)

        secret_arn = self.secret_arn(spec.strategy_id, spec.exchange_secret) if spec.exchange_secret else None
        wanted = self._task_definition(spec, secret_arn)
        actions: list[str] = []
        task_definition_arn = self._matching_task_definition(spec, current, wanted)
        if task_definition_arn is None:
            registered = self._call(
                spec.service_name, "ecs", "register_task_definition", **wanted
            )["taskDefinition"]
            task_definition_arn = registered["taskDefinitionArn"]
            actions.append(f"registered {task_definition_arn.rsplit('/', 1)[1]}")

        tags = self._tags(spec)
        capacity = [{"capacityProvider": CAPACITY_PROVIDER[spec.mode], "weight": 1}]
        network = {
            "awsvpcConfiguration": {
                "subnets": list(self.subnet_ids),
                "securityGroups": list(self.security_group_ids),
                "assignPublicIp": "DISABLED",
            }
        }
        if current is None:
            self._call(
                spec.service_name,
                "ecs",
                "create_service",
                cluster=self.cluster_name,
                serviceName=spec.service_name,
                taskDefinition=task_definition_arn,
                desiredCount=1,
                capacityProviderStrategy=capacity,
                networkConfiguration=network,
                deploymentConfiguration=DEPLOYMENT_CONFIGURATION,
                enableECSManagedTags=True,
                propagateTags="SERVICE",
                tags=_tag_list(tags),
            )
            actions.append("created service")
        else:
            update: dict[str, Any] = {}
            if current["taskDefinition"] != task_definition_arn:
                update["taskDefinition"] = task_definition_arn
            if current["desiredCount"] != 1:
                update["desiredCount"] = 1
            if _network_key(current.get("networkConfiguration")) != _network_key(network):
                update["networkConfiguration"] = network
            reported_capacity = current.get("capacityProviderStrategy")
            # The TradingMode tag stands for the capacity where ECS does not report the strategy.
            mode_changed = _tag_dict(current.get("tags")).get(TRADING_MODE_TAG) != spec.mode
            if mode_changed or (
                reported_capacity is not None and _capacity_key(reported_capacity) != _capacity_key(capacity)
            ):
                # ECS only moves a service to another capacity provider with a new deployment.
                update["capacityProviderStrategy"] = capacity
                update["forceNewDeployment"] = True
            if update:
                self._call(
                    spec.service_name,
                    "ecs",
                    "update_service",
                    cluster=self.cluster_name,
                    service=spec.service_name,
                    **update,
                )
                changed = sorted(key for key in update if key != "forceNewDeployment")
                actions.append("updated service: " + ", ".join(changed))
            self._sync_tags(spec.service_name, current, tags)
            if _tag_dict(current.get("tags")) != tags:
                actions.append("retagged service")
        # Nothing changed: the service as described at the start is still current.
        return self._state(spec.service_name, spec.strategy_id, tuple(actions), None if actions else current)

    def describe(self, strategy_id: str) -> ServiceState:
        return self._state(bot_service_name(strategy_id), strategy_id, ())

    def list_bots(self) -> list[ServiceState]:
        """Every bot service on the cluster (tagged ``ManagedBy=tradai``), by strategy id."""
        arns: list[str] = []
        token: str | None = None
        while True:
            page = self._call(
                "(all bots)", "ecs", "list_services", cluster=self.cluster_name, **({"nextToken": token} if token else {})
            )
            arns += page.get("serviceArns", [])
            token = page.get("nextToken")
            if not token:
                break
        states = []
        for start in range(0, len(arns), 10):  # DescribeServices takes at most 10 services a call
            described = self._call(
                "(all bots)", "ecs", "describe_services",
                cluster=self.cluster_name, services=arns[start:start + 10], include=["TAGS"],
            )
            for service in described["services"]:
                tags = _tag_dict(service.get("tags"))
                if service["status"] == "INACTIVE" or tags.get("ManagedBy") != MANAGED_BY:
                    continue
                strategy_id = tags.get(STRATEGY_ID_TAG) or service["serviceName"].removeprefix("bot-")
                states.append(self._state(service["serviceName"], strategy_id, (), service))
        return sorted(states, key=lambda s: s.strategy_id)

    def stop(self, strategy_id: str) -> ServiceState:
        """Scale the bot's service to zero (its task is stopped); the service and its revision stay."""
        name = bot_service_name(strategy_id)
        current = self._service(name)
        if current is None:
            return ServiceState(strategy_id=strategy_id, service_name=name, status="absent")
        actions: tuple[str, ...] = ()
        if current["desiredCount"] != 0:
            self._call(name, "ecs", "update_service", cluster=self.cluster_name, service=name, desiredCount=0)
            actions = ("updated service: desiredCount",)
        return self._state(name, strategy_id, actions, None if actions else current)

    def config_placeholder(self, strategy_id: str) -> str:
        return f"s3://{self.configs_bucket_name}/{aws_contract.BOT_CONFIGS_PREFIX}/{strategy_id}/"

    def image_for(self, mode: str) -> str:
        if mode == "stopped":
            return self.image or NO_IMAGE
        if not self.image:
            raise BotSpecError("set the bot_services resource's image (the bot image's URI) to deploy on ECS")
        return self.image

    def live_refusal(self, strategy_id: str, exchange_secret: str) -> str | None:
        try:
            self.secret_arn(strategy_id, exchange_secret)
        except BotSpecError as exc:
            return str(exc).split(": ", 1)[1]
        except BotServiceError as exc:
            return f"the exchange secret could not be checked: {exc}"
        return None

    def write_call_counts(self) -> dict[str, int]:
        return dict(self._calls.writes)

    def secret_arn(self, strategy_id: str, secret: str) -> str:
        """Full ARN of an exchange secret, read without its value; ``BotSpecError`` naming it when absent."""
        try:
            return self._call(bot_service_name(strategy_id), "secretsmanager", "describe_secret", SecretId=secret)[
                "ARN"
            ]
        except BotServiceError as exc:
            if _error_code(exc.__cause__) == "ResourceNotFoundException":
                raise BotSpecError(
                    f"bot {strategy_id}: exchange secret {secret!r} does not exist in Secrets Manager "
                    f"({self.region_name})"
                ) from exc
            raise

    @property
    def configs_bucket_name(self) -> str:
        return self.configs_bucket or aws_contract.bucket_name("configs", self.stack)

    def write_config(self, strategy_id: str, config: dict[str, Any]) -> str:
        """Store a bot's config as ``s3://<configs bucket>/bots/<id>/config-<hash>.json``; returns that URI.

        The name carries the content hash: an object that already exists is not written again."""
        body = json.dumps(config, sort_keys=True, indent=1).encode()
        key = f"{aws_contract.BOT_CONFIGS_PREFIX}/{strategy_id}/config-{hashlib.sha256(body).hexdigest()[:16]}.json"
        name = bot_service_name(strategy_id)
        try:
            self._call(name, "s3", "head_object", Bucket=self.configs_bucket_name, Key=key)
        except BotServiceError as exc:
            if _error_code(exc.__cause__) not in ("404", "NoSuchKey", "NotFound"):
                raise
            self._call(
                name, "s3", "put_object", Bucket=self.configs_bucket_name, Key=key, Body=body,
                ContentType="application/json",
            )
        return f"s3://{self.configs_bucket_name}/{key}"

    def delete(self, strategy_id: str) -> ServiceState:
        """Delete the bot's service (its running task is stopped); a missing service is not an error."""
        name = bot_service_name(strategy_id)
        if self._service(name) is None:
            return ServiceState(strategy_id=strategy_id, service_name=name, status="absent")
        self._call(name, "ecs", "delete_service", cluster=self.cluster_name, service=name, force=True)
        return ServiceState(strategy_id=strategy_id, service_name=name, status="absent", actions=("deleted service",))

    # --- the task definition --------------------------------------------------------------------

    def _task_definition(self, spec: BotSpec, secret_arn: str | None) -> dict[str, Any]:
        """RegisterTaskDefinition arguments for the spec; lists sorted so that contents compare."""
        trading_mode = spec.mode
        environment = {
            **aws_contract.bot_environment(
                env=self.stack,
                region=self.region_name,
                strategy=spec.strategy,
                strategy_id=spec.strategy_id,
                trading_mode=trading_mode,
                config_path=spec.config_path,
            ),
            **aws_contract.bot_freqtrade_overrides(
                trading_mode=trading_mode, stake_amount=spec.stake_amount, pairs=spec.pairs
            ),
            **({MODEL_VERSION_ENV: str(spec.model_version)} if spec.model_version is not None else {}),
        }
        container: dict[str, Any] = {
            "name": BOT_CONTAINER_NAME,
            "image": spec.image,
            "essential": True,
            "environment": [{"name": k, "value": v} for k, v in sorted(environment.items())],
            "secrets": sorted(
                aws_contract.bot_secrets(secret_arn) if secret_arn else [], key=lambda s: s["name"]
            ),
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": self.log_group,
                    "awslogs-region": self.region_name,
                    "awslogs-stream-prefix": spec.strategy_id,
                },
            },
            # Freqtrade cancels its open orders' bookkeeping on SIGTERM: give it time to finish.
            "stopTimeout": 120,
        }
        return {
            "family": f"{aws_contract.PROJECT}-{self.stack}-{spec.service_name}",
            "taskRoleArn": self.task_role_arn,
            "executionRoleArn": self.execution_role_arn,
            "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE"],
            "runtimePlatform": {"operatingSystemFamily": "LINUX", "cpuArchitecture": "X86_64"},
            "cpu": str(spec.cpu),
            "memory": str(spec.memory),
            "containerDefinitions": [container],
            "tags": _tag_list(self._tags(spec)),
        }

    def _matching_task_definition(
        self, spec: BotSpec, current_service: dict[str, Any] | None, wanted: dict[str, Any]
    ) -> str | None:
        """ARN of an existing revision with the wanted contents: the service's, else the family's latest."""
        reference = current_service["taskDefinition"] if current_service else wanted["family"]
        try:
            described = self._call(
                spec.service_name, "ecs", "describe_task_definition", taskDefinition=reference, include=["TAGS"]
            )
        except BotServiceError as exc:
            if current_service is None and _error_code(exc.__cause__) == "ClientException":
                return None  # the family has no revision yet
            raise
        existing = {**described["taskDefinition"], "tags": described.get("tags", [])}
        if _normalised(wanted, existing) == _normalised(wanted, wanted):
            return existing["taskDefinitionArn"]
        return None

    # --- the service ----------------------------------------------------------------------------

    def _service(self, name: str) -> dict[str, Any] | None:
        """The service as ECS describes it (with tags), or None when it does not exist or was deleted."""
        described = self._call(
            name, "ecs", "describe_services", cluster=self.cluster_name, services=[name], include=["TAGS"]
        )
        for service in described["services"]:
            if service["status"] != "INACTIVE":
                return service
        return None

    def _stop(self, spec: BotSpec, current: dict[str, Any] | None) -> ServiceState:
        if current is None:
            return ServiceState(strategy_id=spec.strategy_id, service_name=spec.service_name, status="absent")
        actions: tuple[str, ...] = ()
        if current["desiredCount"] != 0:
            self._call(
                spec.service_name,
                "ecs",
                "update_service",
                cluster=self.cluster_name,
                service=spec.service_name,
                desiredCount=0,
            )
            actions = ("updated service: desiredCount",)
        return self._state(spec.service_name, spec.strategy_id, actions, None if actions else current)

    def _state(
        self, name: str, strategy_id: str, actions: tuple[str, ...], service: dict[str, Any] | None = None
    ) -> ServiceState:
        service = service or self._service(name)
        if service is None:
            return ServiceState(strategy_id=strategy_id, service_name=name, status="absent", actions=actions)
        primary = next((d for d in service.get("deployments", ()) if d.get("status") == "PRIMARY"), {})
        return ServiceState(
            strategy_id=strategy_id,
            service_name=name,
            status=service["status"],
            desired_count=service["desiredCount"],
            running_count=service["runningCount"],
            task_definition_arn=service["taskDefinition"],
            trading_mode=_tag_dict(service.get("tags")).get(TRADING_MODE_TAG),
            actions=actions,
            failed_tasks=int(primary.get("failedTasks") or 0),
            rollout_state=primary.get("rolloutState"),
            rollout_reason=primary.get("rolloutStateReason"),
        )

    def _tags(self, spec: BotSpec) -> dict[str, str]:
        return {
            "Application": aws_contract.PROJECT,
            "Environment": self.stack,
            "Service": BOT_SERVICE_TAG,
            "ManagedBy": MANAGED_BY,
            "CostCenter": self.cost_center,
            "Owner": self.owner,
            STRATEGY_ID_TAG: spec.strategy_id,
            TRADING_MODE_TAG: spec.mode,
        }

    def _sync_tags(self, name: str, current: dict[str, Any], wanted: dict[str, str]) -> None:
        have = _tag_dict(current.get("tags"))
        if have == wanted:
            return
        arn = current["serviceArn"]
        stale = sorted(set(have) - set(wanted))
        if stale:
            self._call(name, "ecs", "untag_resource", resourceArn=arn, tagKeys=stale)
        changed = {k: v for k, v in wanted.items() if have.get(k) != v}
        if changed:
            self._call(name, "ecs", "tag_resource", resourceArn=arn, tags=_tag_list(changed))

    # --- secrets and calls ----------------------------------------------------------------------

    def _call(self, service_name: str, aws_service: str, operation: str, **kwargs: Any) -> dict[str, Any]:
        """One AWS call (botocore retries it while throttled); a failure names the service and operation."""
        from botocore.exceptions import ClientError

        try:
            return getattr(self.client(aws_service), operation)(**kwargs)
        except ClientError as exc:
            attempts = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) + 1
            message = exc.response.get("Error", {}).get("Message", str(exc))
            raise BotServiceError(
                f"{aws_service} {operation} for service {service_name} in cluster {self.cluster_name} failed "
                f"({_error_code(exc)}, attempt {attempts} of {self.max_attempts}): {message}"
            ) from exc


def _error_code(exc: BaseException | None) -> str | None:
    response = getattr(exc, "response", None)
    return None if response is None else response.get("Error", {}).get("Code")


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in sorted(tags.items())]


def _tag_dict(tags: list[dict[str, str]] | None) -> dict[str, str]:
    # Tags under ``aws:`` belong to AWS itself: they can be neither set nor removed.
    return {t["key"]: t["value"] for t in tags or [] if not t["key"].startswith("aws:")}


def _network_key(network: dict[str, Any] | None) -> tuple:
    vpc = (network or {}).get("awsvpcConfiguration", {})
    return (
        tuple(sorted(vpc.get("subnets", []))),
        tuple(sorted(vpc.get("securityGroups", []))),
        vpc.get("assignPublicIp", "DISABLED"),
    )


def _sorted_items(items: list[Any]) -> list[Any]:
    """Environment, secrets and tags come back from ECS in any order: sort them by name or key."""

    def key(item: Any) -> str:
        return str(item.get("name", item.get("key", ""))) if isinstance(item, dict) else str(item)

    return sorted(items, key=key)


def _capacity_key(strategy: list[dict[str, Any]]) -> tuple:
    return tuple(sorted((s["capacityProvider"], s.get("weight", 0), s.get("base", 0)) for s in strategy))


def _normalised(wanted: Any, existing: Any) -> Any:
    """``existing`` restricted to the fields ``wanted`` sets, lists of named items sorted.

    ECS fills in defaults (empty port mappings, volumes, ``cpu: 0``...) and its own fields (ARN,
    revision, status): only the fields the product sets decide whether a new revision is needed.
    """
    if isinstance(wanted, dict):
        if not isinstance(existing, dict):
            return existing
        return {key: _normalised(value, existing.get(key)) for key, value in wanted.items()}
    if isinstance(wanted, list):
        if not isinstance(existing, list) or len(existing) != len(wanted):
            return existing
        return [_normalised(w, e) for w, e in zip(_sorted_items(wanted), _sorted_items(existing), strict=True)]
    return existing


def read_config_object(bucket: str, key: str) -> str:
    """An ECS bot's deployed config (what ``EcsBotServices.write_config`` stored), read by the bot itself
    with its task role; ``BotServiceError`` names what failed."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    except (ClientError, BotoCoreError) as exc:
        raise BotServiceError(f"s3://{bucket}/{key}: {exc}") from exc
