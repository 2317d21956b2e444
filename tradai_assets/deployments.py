"""Bots as assets: ``strategies/<Name>/deployment`` brings a strategy's bot to its desired state.

The desired state (mode ``dry_run``, ``live`` or ``stopped``; exchange secret; stake; pairs) comes
from ``deployments.yaml`` (``$TRADAI_DEPLOYMENTS`` overrides the path; a strategy not listed is
stopped) and, for one run, from the run config. Materialising the asset:

1. checks the interlocks (``check_deployment``): live trading needs the strategy's own
   ``live = True``, ``TRADAI_ALLOW_LIVE=true`` and an exchange secret that exists; a strategy whose
   latest backtest failed, or that was never backtested, is refused unless ``force``;
2. writes the bot's config: the strategy's latest stored config with the deployment's settings
   (and, for a model strategy, the champion's version), under a name made of its content hash, so
   an unchanged config is the same file and a changed one restarts the bot;
3. reconciles the bot through the ``bot_services`` resource (local processes or ECS services) and
   reports the service's state in the metadata.

Reconciling unchanged inputs changes nothing. ``kill_all_live`` (the ``kill_switch`` job, the API
and the CLI) stops every live bot at once. Exchange keys are never read: only the secret's name
and whether it exists.
"""

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from resources.backtest_store import BacktestStore
from resources.bot_control import KillReport, KillSwitchError, kill_all_live
from resources.bot_services import (
    BOT_MODES,
    BotServiceError,
    BotServices,
    BotSpec,
    BotSpecError,
    BotState,
)
from resources.model_registry import CHAMPION, ModelRegistry, ModelRegistryError
from tradai_core.keys import (
    DEPLOYMENT_CONFIG_KEYS,
    TRIGGER_TAG,
    backtest_key,
    config_key,
    deployment_key,
    model_key,
    strategy_id,
)
from tradai_core.materializations import latest_deployment
from tradai_core.strategy_discovery import StrategySpec

DEPLOYMENTS_PATH = Path(__file__).with_name("deployments.yaml")
DEPLOYMENTS_ENV = "TRADAI_DEPLOYMENTS"
ALLOW_LIVE_ENV = "TRADAI_ALLOW_LIVE"
# Freqtrade keys of a backtest's config that mean nothing to a trading bot.
BACKTEST_ONLY_KEYS = ("timerange", "export", "exportfilename", "backtest_cache")


class DeploymentError(ValueError):
    """A deployment that cannot be made: a bad desired state or an unknown strategy."""


class UnknownStrategyError(DeploymentError):
    pass


class DeploymentRefused(DeploymentError):
    """An interlock refused the deployment; the message names every reason."""


# Desired state ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DesiredState:
    mode: str = "stopped"
    exchange_secret: str | None = None  # a Secrets Manager name or ARN, never a key
    stake_amount: float | str = "unlimited"
    pairs: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "pairs": list(self.pairs)}


class DeploymentConfig(dg.Config):
    mode: str | None = None
    """dry_run, live or stopped; deployments.yaml's (stopped when not listed) when unset."""
    exchange_secret: str | None = None
    """Secrets Manager name of the exchange account's key pair (live needs one)."""
    stake_amount: str | None = None
    """A number in the stake currency, or 'unlimited'."""
    pairs: list[str] | None = None
    """The bot's pair whitelist; the strategy config's when unset and not in deployments.yaml."""
    force: bool = False
    """Deploy although the latest backtest failed or never ran (the live interlocks still apply)."""
    restart: bool = False
    """Stop the bot and start it again even when nothing changed (a hung bot)."""

    def overrides(self) -> dict[str, Any]:
        return {k: v for k in DEPLOYMENT_CONFIG_KEYS if (v := getattr(self, k)) is not None}


def deployments_path() -> Path:
    return Path(os.environ.get(DEPLOYMENTS_ENV, DEPLOYMENTS_PATH)).resolve()


def _stake(value: Any, where: str) -> float | str:
    if value is None or value == "unlimited":
        return "unlimited"
    try:
        stake = float(value)
    except (TypeError, ValueError):
        raise DeploymentError(f"{where}: stake_amount {value!r} must be a positive number or 'unlimited'") from None
    if isinstance(value, bool) or not stake > 0:
        raise DeploymentError(f"{where}: stake_amount {value!r} must be a positive number or 'unlimited'")
    return stake


def _desired(entry: Mapping[str, Any], where: str) -> DesiredState:
    unknown = sorted(set(entry) - set(DEPLOYMENT_CONFIG_KEYS))
    if unknown:
        raise DeploymentError(f"{where}: unknown key(s) {', '.join(unknown)}; expected {', '.join(DEPLOYMENT_CONFIG_KEYS)}")
    mode = entry.get("mode", "stopped")
    if mode not in BOT_MODES:
        raise DeploymentError(f"{where}: mode {mode!r} must be one of {', '.join(BOT_MODES)}")
    secret = entry.get("exchange_secret")
    if secret is not None and (not isinstance(secret, str) or not secret.strip()):
        raise DeploymentError(f"{where}: exchange_secret must be a secret's name")
    pairs = entry.get("pairs") or ()
    if isinstance(pairs, str) or not all(isinstance(p, str) and p for p in pairs):
        raise DeploymentError(f"{where}: pairs must be a list of pair names, got {pairs!r}")
    return DesiredState(mode=mode, exchange_secret=secret, stake_amount=_stake(entry.get("stake_amount"), where),
                        pairs=tuple(pairs))


def load_deployments(path: Path | None = None, known: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """The entries of deployments.yaml by strategy; an unknown strategy or a bad entry is an error."""
    path = path or deployments_path()
    if not path.is_file():
        return {}
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DeploymentError(f"{path}: not valid YAML: {exc}") from exc
    entries = document.get("deployments") or {} if isinstance(document, dict) else None
    if not isinstance(entries, dict) or not all(isinstance(v, dict) for v in entries.values()):
        raise DeploymentError(f"{path}: expected a mapping 'deployments: {{<Strategy>: {{mode: ..., ...}}}}'")
    if known is not None:
        known = set(known)
        unknown = sorted(set(entries) - known)
        if unknown:
            raise UnknownStrategyError(
                f"{path}: unknown strateg{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known)) or 'none'}"
            )
    for name, entry in entries.items():
        _desired(entry, f"{path}: {name}")
    return entries


def find_strategy(name: str, specs: Mapping[str, StrategySpec] | Iterable[StrategySpec]) -> StrategySpec:
    by_name = specs if isinstance(specs, Mapping) else {s.name: s for s in specs}
    if name not in by_name:
        raise UnknownStrategyError(f"unknown strategy {name!r}; known: {', '.join(sorted(by_name)) or 'none'}")
    return by_name[name]


def desired_state(
    name: str,
    specs: Mapping[str, StrategySpec] | Iterable[StrategySpec],
    overrides: Mapping[str, Any] | None = None,
    path: Path | None = None,
) -> DesiredState:
    """deployments.yaml's entry of a strategy (stopped when not listed) with ``overrides`` on top."""
    by_name = specs if isinstance(specs, Mapping) else {s.name: s for s in specs}
    find_strategy(name, by_name)
    entry = dict(load_deployments(path, known=by_name).get(name, {}))
    entry.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return _desired(entry, f"deployment of {name}")


# Interlocks ---------------------------------------------------------------------------------------


def live_refusals(spec: StrategySpec, desired: DesiredState, bot_services: BotServices,
                  environ: Mapping[str, str] | None = None) -> list[str]:
    """Why a live deployment may not go ahead (empty when it may, or when the mode is not live)."""
    if desired.mode != "live":
        return []
    environ = os.environ if environ is None else environ
    reasons = []
    if not spec.live:
        reasons.append(f"strategy {spec.name} does not allow live trading (its class sets no `live = True`, {spec.file})")
    if environ.get(ALLOW_LIVE_ENV, "").strip().lower() != "true":
        reasons.append(f"live trading is not allowed in this environment ({ALLOW_LIVE_ENV} is not 'true')")
    if not desired.exchange_secret:
        reasons.append("no exchange_secret is set (deployments.yaml or the run config)")
    elif (refusal := bot_services.live_refusal(strategy_id(spec.name), desired.exchange_secret)) is not None:
        reasons.append(refusal)
    return reasons


@dataclass(frozen=True)
class BacktestStatus:
    state: str  # ok | failed | never
    detail: str


def latest_backtest_status(instance: dg.DagsterInstance, name: str) -> BacktestStatus:
    """Whether the strategy's latest backtest attempt succeeded, from the Dagster instance.

    A run planned to materialise the backtest after its latest materialisation that ended failed or
    canceled means the latest backtest failed; one still queued or running does not count yet."""
    from dagster import DagsterRunStatus

    key = backtest_key(name)
    records = instance.fetch_materializations(key, limit=1).records
    latest = records[0] if records else None
    planned = instance.get_latest_planned_materialization_info(key)
    if planned is not None and (latest is None or planned.storage_id > latest.storage_id):
        run = instance.get_run_by_id(planned.run_id)
        if run is not None and run.status in (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED):
            return BacktestStatus("failed", f"the latest backtest of {name} (run {run.run_id}) {run.status.value.lower()}")
    if latest is None:
        return BacktestStatus("never", f"{name} has never been backtested ({key.to_user_string()} has no materialisation)")
    return BacktestStatus("ok", f"latest backtest: run {latest.run_id}")


def check_deployment(
    name: str,
    specs: Mapping[str, StrategySpec] | Iterable[StrategySpec],
    desired: DesiredState,
    *,
    bot_services: BotServices,
    instance: dg.DagsterInstance,
    force: bool = False,
    environ: Mapping[str, str] | None = None,
) -> StrategySpec:
    """Every interlock of a deployment; returns the strategy, or raises naming all that is missing.

    A ``stopped`` deployment always passes: stopping a bot is never refused."""
    spec = find_strategy(name, specs)
    if desired.mode == "stopped":
        return spec
    reasons = []
    if spec.problem:
        reasons.append(f"the strategy cannot run: {spec.problem}")
    reasons += live_refusals(spec, desired, bot_services, environ)
    status = latest_backtest_status(instance, name)
    if status.state != "ok" and not force:
        reasons.append(f"{status.detail}; deploy with force=True to override")
    if reasons:
        raise DeploymentRefused(f"{desired.mode} deployment of {name} refused: " + "; ".join(reasons))
    return spec


# The bot's config ---------------------------------------------------------------------------------


def bot_config(stored: dict[str, Any], name: str, desired: DesiredState, model: dict[str, Any] | None = None) -> dict[str, Any]:
    """The strategy's stored config with the deployment's settings (what the bot reads at CONFIG_PATH)."""
    config = {k: v for k, v in stored.items() if k not in BACKTEST_ONLY_KEYS}
    config["dry_run"] = desired.mode != "live"
    config["stake_amount"] = desired.stake_amount
    config["bot_name"] = strategy_id(name)
    config["strategy"] = name
    # A deployed bot trades from its start; Freqtrade's default (stopped) would wait for a start command.
    config.setdefault("initial_state", "running")
    if desired.pairs:
        config["exchange"] = {**config.get("exchange", {}), "pair_whitelist": list(desired.pairs)}
    exchange = config.get("exchange", {})
    for secret_key in ("key", "secret", "password", "uid"):
        if exchange.get(secret_key):  # keys come from the secret store only, never from a config
            raise DeploymentError(f"the stored config of {name} holds exchange.{secret_key}; keys belong in the secret store")
    if model is not None:
        config["tradai_model"] = model
    return config


def state_metadata(state: BotState) -> dict[str, Any]:
    """Dagster metadata of a bot's state, whichever the backend."""
    metadata: dict[str, Any] = {"status": state.status, "actions": dg.MetadataValue.json(list(state.actions))}
    for key, value in state.details().items():
        metadata[key] = dg.MetadataValue.path(str(value)) if isinstance(value, Path) else value
    return metadata


# The kill switch ----------------------------------------------------------------------------------


class KillSwitchConfig(dg.Config):
    include_dry_run: bool = False
    """Stop dry-run bots too."""


def build_kill_switch_job(specs: Iterable[StrategySpec]) -> dg.JobDefinition:
    names = {strategy_id(s.name): s.name for s in specs}

    @dg.op(name="stop_live_bots")
    def stop_live_bots(context: dg.OpExecutionContext, config: KillSwitchConfig, bot_services: BotServices):
        try:
            report = kill_all_live(bot_services, config.include_dry_run)
        except KillSwitchError as exc:
            report = exc.report
            _record_stopped(context, report, names)
            raise dg.Failure(description=str(exc)) from exc
        _record_stopped(context, report, names)
        context.log.info(
            f"kill switch: stopped {len(report.stopped)} bot(s): "
            f"{', '.join(s.strategy_id for s in report.stopped) or 'none'}; "
            f"left {len(report.left_running)} dry-run bot(s) running"
        )
        context.add_output_metadata({
            "stopped": dg.MetadataValue.json([s.strategy_id for s in report.stopped]),
            "left_running": dg.MetadataValue.json([s.strategy_id for s in report.left_running]),
        })
        return [s.strategy_id for s in report.stopped]

    @dg.job(name="kill_switch", description="Stop every live bot at once (dry-run ones too with include_dry_run). "
            "Each stopped bot's deployment records the stop, so no sensor brings it back.")
    def kill_switch():
        stop_live_bots()

    return kill_switch


def _record_stopped(context: dg.OpExecutionContext, report: KillReport, names: Mapping[str, str]) -> None:
    for state in report.stopped:
        name = names.get(state.strategy_id)
        if name is None:
            continue
        context.log_event(dg.AssetMaterialization(
            asset_key=deployment_key(name),
            description="stopped by the kill switch",
            metadata={"mode": "stopped", "strategy_id": state.strategy_id, "trigger": "kill_switch",
                      "desired": dg.MetadataValue.json({"mode": "stopped"}), **state_metadata(state)},
        ))


# The deployment asset -----------------------------------------------------------------------------


def _spec_hash(bot_spec: BotSpec) -> str:
    return hashlib.sha256(json.dumps(asdict(bot_spec), sort_keys=True, default=str).encode()).hexdigest()


def build_deployment_asset(spec: StrategySpec, specs: Mapping[str, StrategySpec]) -> dg.AssetsDefinition:
    name, bot_id = spec.name, strategy_id(spec.name)
    # A model strategy's bot runs its champion: the model is an input of the deployment.
    deps = [config_key(name), backtest_key(name)] + ([model_key(name)] if spec.is_model else [])

    decorate = dg.asset(
        key=deployment_key(name),
        group_name=f"strategy_{name}",
        kinds={"freqtrade"},
        deps=deps,
        description=f"The bot of {name} (id {bot_id}) brought to its desired state from deployments.yaml "
        "and the run config: dry_run, live or stopped. Live needs the strategy's live = True, "
        f"{ALLOW_LIVE_ENV}=true and an existing exchange secret; a failed or missing backtest needs force.",
        metadata={**spec.ui_metadata(), "strategy_id": bot_id},
    )

    def materialise(context: dg.AssetExecutionContext, config: DeploymentConfig, backtest_store: BacktestStore,
                    bot_services: BotServices, model_registry: ModelRegistry | None):
        writes_before = bot_services.write_call_counts()
        trigger = context.run.tags.get(TRIGGER_TAG, "manual")
        try:
            desired = desired_state(name, specs, config.overrides())
            check_deployment(name, specs, desired, bot_services=bot_services, instance=context.instance,
                             force=config.force)
        except DeploymentError as exc:
            raise dg.Failure(description=str(exc)) from exc
        previous = latest_deployment(context.instance, name)
        previous_meta = previous[1] if previous else {}
        metadata: dict[str, Any] = {"strategy_id": bot_id, "mode": desired.mode, "trigger": trigger,
                                    "desired": dg.MetadataValue.json(desired.to_dict()), "forced": config.force}
        model_version = None
        try:
            if desired.mode == "stopped":
                config_path = previous_meta.get("config_path") or bot_services.config_placeholder(bot_id)
            else:
                stored = backtest_store.latest_config(name)
                if stored is None:
                    raise DeploymentError(f"{name}: no stored config; materialise {config_key(name).to_user_string()} first")
                stored_config, config_hash = stored
                model = None
                if model_registry is not None:
                    model_version, model = _champion(model_registry, name)
                bot_settings = bot_config(stored_config, name, desired, model)
                config_path = bot_services.write_config(bot_id, bot_settings)
                metadata["config_hash"] = config_hash
            bot_spec = BotSpec(
                strategy=name, strategy_id=bot_id, mode=desired.mode, image=bot_services.image_for(desired.mode),
                config_path=config_path, exchange_secret=desired.exchange_secret,
                stake_amount=desired.stake_amount, pairs=desired.pairs, model_version=model_version,
            )
            actions: list[str] = []
            if config.restart and desired.mode != "stopped":
                stopped = bot_services.reconcile(BotSpec(**{**asdict(bot_spec), "mode": "stopped"}))
                actions += list(stopped.actions)
            state = bot_services.reconcile(bot_spec)
        except (DeploymentError, BotSpecError, BotServiceError) as exc:
            raise dg.Failure(description=f"deployment of {name} (bot {bot_id}): {exc}") from exc
        state_meta = state_metadata(state)
        state_meta["actions"] = dg.MetadataValue.json(actions + list(state.actions))
        metadata.update(state_meta)
        metadata["config_path"] = config_path
        if writes_before is not None:
            writes = bot_services.write_call_counts()
            metadata["aws_write_calls"] = dg.MetadataValue.json(
                {op: n - writes_before.get(op, 0) for op, n in sorted(writes.items()) if n - writes_before.get(op, 0)}
            )
        if spec.is_model:
            metadata["model_version"] = model_version if model_version is not None else dg.MetadataValue.null()
            before = previous_meta.get("model_version")
            metadata["previous_model_version"] = before if before is not None else dg.MetadataValue.null()
            if before is not None and model_version is not None and before != model_version:
                context.log.info(f"{name}: model version {before} -> {model_version} ({trigger})")
        changed = actions + list(state.actions)
        context.log.info(
            f"{name}: bot {bot_id} {desired.mode}, {state.status}; "
            + ("; ".join(changed) if changed else "nothing changed")
        )
        return dg.MaterializeResult(data_version=dg.DataVersion(_spec_hash(bot_spec)), metadata=metadata)

    if spec.is_model:
        @decorate
        def model_deployment(context: dg.AssetExecutionContext, config: DeploymentConfig,
                             backtest_store: BacktestStore, bot_services: BotServices, model_registry: ModelRegistry):
            return materialise(context, config, backtest_store, bot_services, model_registry)

        return model_deployment

    @decorate
    def deployment(context: dg.AssetExecutionContext, config: DeploymentConfig, backtest_store: BacktestStore,
                   bot_services: BotServices):
        return materialise(context, config, backtest_store, bot_services, None)

    return deployment


def _champion(registry: ModelRegistry, name: str) -> tuple[int, dict[str, Any]]:
    try:
        version = registry.version(name, CHAMPION)
    except ModelRegistryError as exc:
        raise DeploymentError(f"{name} is a model strategy and its model has no usable champion: {exc}") from exc
    return version, {"name": name, "version": version, "tracking_uri": registry.tracking_uri}


def build_deployment_assets(specs: Iterable[StrategySpec]) -> list[dg.AssetsDefinition]:
    by_name = {s.name: s for s in specs}
    return [build_deployment_asset(spec, by_name) for spec in by_name.values()]
