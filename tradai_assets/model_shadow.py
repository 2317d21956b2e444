"""The shadow of a challenger: a dry-run bot beside the champion's bot, started and finished by the
``shadow_challenger`` job (config ``model``, ``challenger``, ``step``: start or finish), which the
shadow sensor requests (``sensors.shadow``).

- *start*: the champion's bot must be deployed and running and its trades readable (``bot_trades``:
  a local bot's Freqtrade database, or the export an ECS bot uploads with its heartbeats). The shadow runs
  the strategy's stored config with the champion deployment's pairs and stake, in dry run, under its
  own bot id (``<strategy id>-shadow``) with the challenger's model version pinned, through the same
  ``bot_services`` resource (a local process, an ECS service). ``shadow_started`` goes to the audit
  log with its end (``shadow_days`` later). Anything that stops it (no champion bot, no config, a
  refused spec, the backend failing) records ``shadow_failed`` with the reason, notifies and fails the
  run; only the shadow's own bot id is ever reconciled or stopped.
- *finish*: stops the shadow bot, then reads both bots' trades (``bot_trades``) and compares the per-trade returns of
  the trades each opened during the shadow's period and closed (``tradai_core.promotion.decide``, the
  model's alpha and drawdown tolerance, ``shadow_min_trades`` or ``min_trades`` trades each), and
  records ``shadow_finished`` with that result. The challenger sensor then requests the evaluation,
  whose decision needs both the holdout and the shadow (``tradai_core.promotion.combine``).
"""

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import dagster as dg

from resources import aws_contract
from resources.backtest_store import BacktestStore
from resources.bot_services import BotServiceError, BotServices, BotSpec, BotSpecError
from resources.bot_trades import BotTrades, BotTradesError
from resources.model_registry import CHALLENGER, ModelRegistry, ModelRegistryError
from resources.notifier import Notifier
from sensors.shadow import fail_shadow
from tradai_assets.deployments import DeploymentError, DesiredState, _desired, bot_config
from tradai_assets.model_lifecycle import _known_model, model_settings, promotion_policy
from tradai_core.keys import config_key, deployment_key, strategy_id
from tradai_core.materializations import latest_deployment
from tradai_core.model_data import model_specs
from tradai_core.promotion import decide
from tradai_core.shadow import (
    SHADOW_FINISHED,
    SHADOW_JOB,
    SHADOW_OP,
    SHADOW_STARTED,
    SHADOW_STEPS,
    ShadowState,
    shadow_bot_id,
    shadow_observation,
    shadow_state,
    window_returns,
)
from tradai_core.strategy_config import BASE_CONFIG_PATH
from tradai_core.strategy_discovery import StrategySpec

UTC_NOW = partial(datetime.now, UTC)


class ShadowError(RuntimeError):
    """Why a shadow cannot start or be evaluated; recorded as ``shadow_failed``."""


class ShadowConfig(dg.Config):
    model: str
    """The model strategy."""
    challenger: int
    """The challenger version the shadow trades (the run fails when it is no longer the challenger)."""
    step: str = "start"
    """start: deploy the shadow bot; finish: stop it and compare its trades with the champion bot's."""
    trigger: str = "manual"


def start_shadow(
    context,
    spec: StrategySpec,
    challenger: int,
    trigger: str,
    store: BacktestStore,
    bot_services: BotServices,
    bot_trades: BotTrades,
    registry: ModelRegistry,
    notifier: Notifier,
    now: datetime,
) -> ShadowState:
    name, bot_id, champion_bot = spec.name, shadow_bot_id(spec.name), strategy_id(spec.name)
    settings = model_settings(spec)
    if settings.shadow_days <= 0:
        raise dg.Failure(description=f"{name}: shadow evaluation is off (model_settings shadow_days is 0)")
    aliases = registry.aliases(name)
    if aliases.get(CHALLENGER) != challenger:
        raise dg.Failure(
            description=f"{name}: v{challenger} is no longer the challenger "
            f"(now {aliases.get(CHALLENGER)}); no shadow started"
        )
    state = shadow_state(registry.audit_log(name), challenger)
    if state.status != "none":
        context.log.info(f"{name}: the shadow of v{challenger} is already {state.status}")
        return state
    try:
        deployed = latest_deployment(context.instance, name)
        meta = deployed[1] if deployed else {}
        if meta.get("mode") in (None, "stopped"):
            raise ShadowError(
                f"the champion's bot {champion_bot} is not deployed (mode {meta.get('mode', 'none')}): "
                f"a shadow trades beside it; materialise {deployment_key(name).to_user_string()} first"
            )
        champion_state = bot_services.describe(champion_bot)
        if not champion_state.running:
            raise ShadowError(f"the champion's bot {champion_bot} is {champion_state.status}, not running")
        bot_trades.read(champion_bot)  # the comparison at the end needs them
        desired = _desired(
            {k: v for k, v in (meta.get("desired") or {}).items() if k in ("stake_amount", "pairs")},
            f"the champion's deployment of {name}",
        )
        desired = DesiredState(mode="dry_run", stake_amount=desired.stake_amount, pairs=desired.pairs)
        stored = store.latest_config(name)
        if stored is None:
            raise ShadowError(f"no stored config; materialise {config_key(name).to_user_string()} first")
        model = {"name": name, "version": challenger, "tracking_uri": registry.tracking_uri}
        config = {**bot_config(stored[0], name, desired, model), "bot_name": bot_id}
        bot_spec = BotSpec(
            strategy=name,
            strategy_id=bot_id,
            mode="dry_run",
            image=bot_services.image_for("dry_run"),
            config_path=bot_services.write_config(bot_id, config),
            stake_amount=desired.stake_amount,
            pairs=desired.pairs,
            model_version=challenger,
        )
        started = bot_services.reconcile(bot_spec)
    except (ShadowError, DeploymentError, BotSpecError, BotServiceError, BotTradesError) as exc:
        failed = fail_shadow(
            context,
            name,
            challenger,
            bot_id,
            f"the shadow bot could not start: {exc}",
            trigger,
            registry,
            notifier,
            bot_services,
        )
        context.log_event(shadow_observation(name, failed))
        raise dg.Failure(description=f"shadow of {name} v{challenger} (bot {bot_id}): {failed.reason}") from exc
    ends = now + timedelta(days=settings.shadow_days)
    details = {
        "bot_id": bot_id,
        "champion_bot_id": champion_bot,
        "champion_version": meta.get("model_version"),
        "started": now.isoformat(),
        "ends": ends.isoformat(),
        "shadow_days": settings.shadow_days,
        "shadow_min_trades": settings.shadow_min_trades,
        "config_path": bot_spec.config_path,
        "stake_amount": desired.stake_amount,
        "pairs": list(desired.pairs),
        "status": started.status,
        "actions": list(started.actions),
    }
    registry.record_shadow(name, SHADOW_STARTED, challenger, trigger, details)
    state = shadow_state(registry.audit_log(name), challenger)
    context.log_event(shadow_observation(name, state, trades=0))
    notifier.notify(
        "shadow_started",
        f"{name}: challenger v{challenger} trades as shadow bot {bot_id}",
        f"Dry run beside {champion_bot} until {ends:%Y-%m-%d %H:%M} UTC; promotion waits for it.",
        details=details,
    )
    return state


def finish_shadow(
    context,
    spec: StrategySpec,
    challenger: int,
    trigger: str,
    bot_services: BotServices,
    bot_trades: BotTrades,
    registry: ModelRegistry,
    notifier: Notifier,
    now: datetime,
) -> ShadowState:
    name = spec.name
    settings = model_settings(spec)
    state = shadow_state(registry.audit_log(name), challenger)
    if state.status != "running":
        raise dg.Failure(
            description=f"{name}: the shadow of v{challenger} is {state.status}, not running; nothing to finish"
        )
    champion_bot = state.details.get("champion_bot_id", strategy_id(name))
    end = min(now, state.ends)
    try:
        stopped = bot_services.stop(state.bot_id)
        shadow_trades = bot_trades.read(state.bot_id).trades
        champion_trades = bot_trades.read(champion_bot).trades
    except (BotServiceError, BotTradesError) as exc:
        failed = fail_shadow(
            context,
            name,
            challenger,
            state.bot_id,
            f"the shadow could not be evaluated: {exc}",
            trigger,
            registry,
            notifier,
            bot_services,
        )
        context.log_event(shadow_observation(name, failed))
        raise dg.Failure(description=f"shadow of {name} v{challenger}: {failed.reason}") from exc
    policy = promotion_policy(spec, settings)
    if settings.shadow_min_trades:
        policy = replace(policy, min_trades=settings.shadow_min_trades)
    shadow_r = window_returns(shadow_trades, state.started, end)
    champion_r = window_returns(champion_trades, state.started, end)
    decision = decide(champion_r, shadow_r, policy)
    result = {
        "window": {"start": state.started.isoformat(), "end": end.isoformat()},
        "bots": {"champion": champion_bot, "shadow": state.bot_id},
        "trades": {"champion": len(champion_r), "shadow": len(shadow_r)},
        "decision": decision.to_dict(),
    }
    registry.record_shadow(
        name,
        SHADOW_FINISHED,
        challenger,
        trigger,
        {"bot_id": state.bot_id, "bot_status": stopped.status, "result": result},
    )
    finished = shadow_state(registry.audit_log(name), challenger)
    context.log_event(shadow_observation(name, finished))
    notifier.notify(
        "shadow_finished",
        f"{name}: shadow of challenger v{challenger}: {decision.outcome}",
        f"{len(shadow_r)} shadow trades against {len(champion_r)} of {champion_bot} from {state.started:%Y-%m-%d %H:%M} "
        f"to {end:%Y-%m-%d %H:%M} UTC.\n" + "\n".join(decision.reasons),
        details=result,
    )
    return finished


def shadow_jobs(specs: list[StrategySpec], base_path: Path = BASE_CONFIG_PATH) -> list[dg.JobDefinition]:
    """The ``shadow_challenger`` job when there is a model strategy."""
    return [shadow_job(specs, base_path)] if model_specs(specs) else []


def shadow_job(
    specs: list[StrategySpec], base_path: Path = BASE_CONFIG_PATH, clock: Callable[[], datetime] = UTC_NOW
) -> dg.JobDefinition:
    """``clock``: the current UTC time, which starts a shadow's period and ends it."""
    by_name = {s.name: s for s in model_specs(specs)}

    @dg.op(name=SHADOW_OP, description="Start a challenger's shadow bot, or stop it and compare its trades.")
    def shadow_step(
        context: dg.OpExecutionContext,
        config: ShadowConfig,
        backtest_store: BacktestStore,
        bot_services: BotServices,
        bot_trades: BotTrades,
        model_registry: ModelRegistry,
        notifier: Notifier,
    ) -> dict[str, Any]:
        if config.step not in SHADOW_STEPS:
            raise dg.Failure(description=f"step {config.step!r} must be one of {', '.join(SHADOW_STEPS)}")
        spec = _known_model(by_name, config.model)
        try:
            if config.step == "start":
                state = start_shadow(
                    context,
                    spec,
                    config.challenger,
                    config.trigger,
                    backtest_store,
                    bot_services,
                    bot_trades,
                    model_registry,
                    notifier,
                    clock(),
                )
            else:
                state = finish_shadow(
                    context,
                    spec,
                    config.challenger,
                    config.trigger,
                    bot_services,
                    bot_trades,
                    model_registry,
                    notifier,
                    clock(),
                )
        except ModelRegistryError as exc:
            raise dg.Failure(description=f"{config.model}: shadow {config.step}: {exc}") from exc
        return {"status": state.status, "bot_id": state.bot_id}

    @dg.job(
        name=SHADOW_JOB,
        description="A challenger's shadow: a dry-run bot beside the champion's bot, started, "
        "then stopped with its trades compared (requested by the shadow sensor). See docs/models.md.",
        tags=aws_contract.ecs_run_tags("sync"),
    )
    def job():
        shadow_step()

    return job
