"""The shadow sensor: a challenger of a model with ``shadow_days`` > 0 trades as a dry-run shadow bot
before the challenger sensor may evaluate it (``tradai_assets.model_shadow``, docs/models.md).

Every tick (60 s), for each such model whose challenger has no decision yet:

- no shadow yet: requests the ``shadow_challenger`` run that starts it (run key
  ``shadow-start:<name>:v<challenger>``);
- running: a shadow bot that its backend gave up on (crash loop) or that stopped is recorded as
  ``shadow_failed`` with the reason, notified, and stopped; the champion's bot is never touched. A
  shadow whose period is over by the clock (``shadow_days``), or whose bot and the champion's bot
  both closed ``shadow_min_trades`` trades in it (their trades read through ``bot_trades``: a local
  bot's database, an ECS bot's uploaded export), gets the run that finishes it
  (``shadow-finish:<name>:v<challenger>``);
- finished: the challenger sensor takes over; failed: no promotion of that version.

Each change of a shadow's status or trade count is an observation of ``strategies/<Name>/model``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import dagster as dg
import pandas as pd

from resources.bot_services import BotServiceError, BotServices
from resources.bot_trades import BotTrades, BotTradesError
from resources.model_registry import CHALLENGER, ModelRegistry, RegistryUnavailableError
from resources.notifier import Notifier
from tradai_core.keys import strategy_id
from tradai_core.model_data import model_specs
from tradai_core.model_settings import ModelSettings
from tradai_core.shadow import (
    SHADOW_FAILED,
    SHADOW_JOB,
    SHADOW_OP,
    ShadowState,
    shadow_observation,
    shadow_state,
    window_returns,
)
from tradai_core.strategy_discovery import StrategySpec

UTC_NOW = partial(datetime.now, UTC)
SHADOW_SENSOR = "shadow_sensor"
INTERVAL_SECONDS = 60
DECISIONS = ("promote", "keep", "inconclusive")


def shadow_settings(spec: StrategySpec) -> ModelSettings | None:
    """The model's settings when its shadow is on; None when off or the settings are invalid (training
    then fails naming them)."""
    try:
        settings = ModelSettings.from_spec(spec.model_settings or {})
    except ValueError:
        return None
    return settings if settings.shadow_days > 0 else None


def shadow_wait(spec: StrategySpec, log: pd.DataFrame, challenger: int) -> str | None:
    """Why the challenger sensor must not evaluate this challenger yet (its shadow), or None."""
    settings = shadow_settings(spec)
    if settings is None:
        return None
    state = shadow_state(log, challenger)
    if state.status == "finished":
        return None
    if state.status == "failed":
        return f"the shadow of challenger v{challenger} failed ({state.reason}); it is not promoted"
    if state.status == "running":
        return f"challenger v{challenger} trades as shadow bot {state.bot_id} until {state.ends:%Y-%m-%d %H:%M} UTC"
    return f"challenger v{challenger} waits for its shadow bot to start"


def _run_request(name: str, challenger: int, step: str, why: str) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=f"shadow-{step}:{name}:v{challenger}",
        job_name=SHADOW_JOB,
        run_config={
            "ops": {
                SHADOW_OP: {
                    "config": {
                        "model": name,
                        "challenger": challenger,
                        "step": step,
                        "trigger": f"{SHADOW_SENSOR}: {why}",
                    }
                }
            }
        },
        tags={
            "tradai/trigger": SHADOW_SENSOR,
            "tradai/model": name,
            "tradai/challenger": str(challenger),
            "tradai/shadow_step": step,
        },
    )


def tend_shadows(
    context,
    models: list[tuple[StrategySpec, ModelSettings]],
    registry: ModelRegistry,
    bot_services: BotServices,
    bot_trades: BotTrades,
    notifier: Notifier,
    now: datetime,
) -> dg.SensorResult | dg.SkipReason:
    """One tick of the shadow sensor (see the module docstring)."""
    try:
        cursor = json.loads(context.cursor) if context.cursor else {}
    except json.JSONDecodeError:
        cursor = {}
    requests, events, passed, after = [], [], [], {}
    for spec, settings in models:
        name = spec.name
        try:
            if spec.problem or not registry.exists(name):
                passed.append(f"{name}: {spec.problem or 'not trained yet'}")
                continue
            challenger = registry.aliases(name).get(CHALLENGER)
            log = registry.audit_log(name)
        except RegistryUnavailableError as exc:
            reason = f"shadow check skipped: {exc}"
            context.log.warning(reason)
            return dg.SkipReason(reason)
        if challenger is None:
            passed.append(f"{name}: no challenger")
            continue
        if (log["event"].isin(DECISIONS) & (log["challenger"] == float(challenger))).any():
            passed.append(f"{name}: challenger v{challenger} already decided")
            continue
        state = shadow_state(log, challenger)
        trades = None
        if state.status == "none":
            requests.append(_run_request(name, challenger, "start", f"v{challenger} is the challenger"))
        elif state.status == "running":
            bot = bot_services.describe(state.bot_id)
            if bot.failure is not None or not bot.running:
                reason = bot.failure or f"the shadow bot {state.bot_id} is {bot.status} before its period ended"
                state = fail_shadow(
                    context, name, challenger, state.bot_id, reason, SHADOW_SENSOR, registry, notifier, bot_services
                )
            else:
                champion_bot = state.details.get("champion_bot_id", strategy_id(name))
                try:
                    trades = len(window_returns(bot_trades.read(state.bot_id).trades, state.started, state.ends))
                    champion_trades = len(
                        window_returns(bot_trades.read(champion_bot).trades, state.started, state.ends)
                    )
                except BotTradesError as exc:  # the end of the period still finishes it
                    context.log.info(f"{name}: shadow trades not readable yet: {exc}")
                    champion_trades = None
                enough = (
                    settings.shadow_min_trades > 0
                    and trades is not None
                    and champion_trades is not None
                    and min(trades, champion_trades) >= settings.shadow_min_trades
                )
                if now >= state.ends or enough:
                    why = (
                        f"its period ended {state.ends:%Y-%m-%d %H:%M} UTC"
                        if now >= state.ends
                        else f"{trades} shadow and {champion_trades} champion trades >= {settings.shadow_min_trades}"
                    )
                    requests.append(_run_request(name, challenger, "finish", why))
                else:
                    passed.append(
                        f"{name}: shadow of v{challenger} running until {state.ends:%Y-%m-%d %H:%M} UTC, "
                        f"{trades if trades is not None else 'unknown'} trades so far"
                    )
        else:
            passed.append(f"{name}: shadow of v{challenger} {state.status}")
        seen = {"challenger": challenger, "status": state.status, "trades": trades}
        if cursor.get(name) != seen and state.status != "none":
            events.append(shadow_observation(name, state, trades))
        after[name] = seen
    for reason in passed:
        context.log.info(f"shadow sensor passed over {reason}")
    return dg.SensorResult(
        run_requests=requests,
        asset_events=events,
        cursor=json.dumps(after, sort_keys=True),
        skip_reason=None if requests else ("; ".join(passed) or "no model with shadow_days > 0"),
    )


def fail_shadow(
    context,
    name: str,
    challenger: int,
    bot_id: str,
    reason: str,
    trigger: str,
    registry: ModelRegistry,
    notifier: Notifier,
    bot_services: BotServices,
) -> ShadowState:
    """Record and notify a failed shadow and stop its bot (never any other bot); the state recorded."""
    try:
        stopped = bot_services.stop(bot_id).status
    except BotServiceError as exc:
        stopped = "unknown"
        reason = f"{reason}; stopping the shadow bot failed too: {exc}"
    details = {"bot_id": bot_id, "reason": reason, "bot_status": stopped}
    registry.record_shadow(name, SHADOW_FAILED, challenger, trigger, details)
    notifier.notify(
        "shadow_failed",
        f"{name}: shadow of challenger v{challenger} failed (bot {bot_id})",
        f"{reason}\nChallenger v{challenger} is not promoted; the champion's bot was not touched.",
        severity="error",
        details=details,
    )
    context.log.error(f"{name}: shadow of v{challenger} failed: {reason}")
    return shadow_state(registry.audit_log(name), challenger)


def build_shadow_sensor(
    specs: list[StrategySpec],
    clock: Callable[[], datetime] = UTC_NOW,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    """``clock``: the current UTC time, against which a shadow's period ends."""
    models: list[tuple[StrategySpec, Any]] = [
        (spec, settings) for spec in model_specs(specs) if (settings := shadow_settings(spec)) is not None
    ]

    @dg.sensor(
        name=SHADOW_SENSOR,
        job_name=SHADOW_JOB if model_specs(specs) else None,
        minimum_interval_seconds=INTERVAL_SECONDS,
        default_status=default_status,
        description="A challenger of a model with shadow_days > 0 trades as a dry-run shadow bot beside the "
        "champion's bot; the sensor starts it, watches it, and finishes it when its period is over.",
    )
    def shadow_sensor(
        context: dg.SensorEvaluationContext,
        model_registry: ModelRegistry,
        bot_services: BotServices,
        bot_trades: BotTrades,
        notifier: Notifier,
    ):
        return tend_shadows(context, models, model_registry, bot_services, bot_trades, notifier, clock())

    return shadow_sensor
