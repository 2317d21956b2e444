"""Watching bots: the heartbeat sensor and the model hot-swap sensor.

``bot_heartbeat`` (every 60 s) compares each deployed bot's latest heartbeat in the trading-state
store with the clock. A bot whose heartbeat (or, before its first one, its deployment) is older than
``stale_after_seconds`` (3 minutes; ``$TRADAI_BOT_STALE_SECONDS``) is unhealthy; a local bot its
supervisor gave up on (state ``failed``), or an ECS bot whose deployment has 3 failed tasks or was
failed by the circuit breaker, is crash-looping. Every change of a bot's health is an
``AssetObservation`` on its deployment asset (health, heartbeat age, reason); the first unhealthy
or failed tick of an episode sends one notification, and the episode ends when the bot is healthy
again or no longer deployed. An unhealthy (not a crash-looping) bot can be restarted by a run of its
deployment asset with ``restart: true``, at most ``auto_restarts`` times an episode
(``$TRADAI_BOT_AUTO_RESTARTS``; 0 locally, where the supervisor restarts crashes itself, and 2 on AWS).

``model_hotswap`` (every 60 s) reads each model strategy's audit log: when the ``champion`` alias
moved (promotion, rollback) after the sensor's cursor and the strategy has a running deployment
that runs another version, it requests a run of the deployment asset, run key
``hotswap:<name>:<time of the audit row>``, tagged with the trigger and both versions. The run
deploys the new champion with the deployment's last settings and records both versions.
"""

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import dagster as dg
import pandas as pd

from resources.bot_services import BotServices, BotState
from resources.model_registry import ModelRegistry
from resources.notifier import Notifier
from resources.trading_state import Heartbeat, TradingState
from tradai_core.keys import (
    DEPLOYMENT_CONFIG_KEYS,
    TRIGGER_TAG,
    deployment_key,
    strategy_id,
)
from tradai_core.materializations import latest_deployment
from tradai_core.strategy_discovery import StrategySpec

HEARTBEAT_SENSOR = "bot_heartbeat"
HOTSWAP_SENSOR = "model_hotswap"
INTERVAL_SECONDS = 60
STALE_AFTER_SECONDS = 180
STALE_AFTER_ENV = "TRADAI_BOT_STALE_SECONDS"
AUTO_RESTARTS_ENV = "TRADAI_BOT_AUTO_RESTARTS"
AUTO_RESTARTS_DEFAULT = {"local": 0, "aws": 2}
HOTSWAP_EVENTS = ("promote", "rollback", "champion")
BAD = ("unhealthy", "failed")


def redeploy_run_config(name: str, previous: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """Run config that deploys again what the latest deployment deployed (hot-swap, restart)."""
    desired = dict(previous.get("desired") or {})
    config = {k: desired[k] for k in DEPLOYMENT_CONFIG_KEYS if desired.get(k) not in (None, [], ())}
    if "stake_amount" in config:
        config["stake_amount"] = str(config["stake_amount"])
    config["force"] = bool(previous.get("forced", False))
    config.update(extra)
    return {"ops": {deployment_key(name).to_python_identifier(): {"config": config}}}


@dataclass(frozen=True)
class BotHealth:
    strategy: str
    strategy_id: str
    health: str  # healthy | starting | unhealthy | failed
    age_seconds: float | None  # since the last heartbeat, or since the deployment before the first one
    last_heartbeat: datetime | None
    reason: str


def assess(
    name: str,
    state: BotState | None,
    heartbeat: Heartbeat | None,
    deployed_at: float | None,
    now: datetime,
    stale_after_seconds: float = STALE_AFTER_SECONDS,
    first_seen: float | None = None,
) -> BotHealth | None:
    """The health of one bot; None when it is not meant to be running (stopped, absent)."""
    bot_id = strategy_id(name)
    if state is None:
        return None
    if state.failure is not None:
        return BotHealth(name, bot_id, "failed", None, heartbeat.last_heartbeat if heartbeat else None, state.failure)
    if not state.running:
        return None
    beat = heartbeat.epoch if heartbeat is not None else None
    references = [t for t in (beat, deployed_at, None if beat or deployed_at else first_seen) if t is not None]
    age = now.timestamp() - max(references) if references else None
    last = heartbeat.last_heartbeat if heartbeat is not None else None
    fresh_beat = beat is not None and (deployed_at is None or beat >= deployed_at)
    if fresh_beat and heartbeat.status == "error":
        return BotHealth(name, bot_id, "unhealthy", age, last, "the bot reports status error")
    if age is None or age > stale_after_seconds:
        since = "no heartbeat" if beat is None else f"last heartbeat {last.isoformat()}"
        shown = "unknown" if age is None else f"{age:.0f} s"
        return BotHealth(name, bot_id, "unhealthy", age, last,
                         f"{since}; older than {stale_after_seconds:g} s ({shown})")
    if not fresh_beat:
        return BotHealth(name, bot_id, "starting", age, last, "deployed; waiting for its first heartbeat")
    return BotHealth(name, bot_id, "healthy", age, last, f"heartbeat {age:.0f} s ago, status {heartbeat.status}")


def _observation(health: BotHealth) -> dg.AssetObservation:
    return dg.AssetObservation(
        asset_key=deployment_key(health.strategy),
        description=health.reason,
        metadata={
            "health": health.health,
            "heartbeat_age_seconds": (dg.MetadataValue.null() if health.age_seconds is None
                                      else round(health.age_seconds, 1)),
            "last_heartbeat": (dg.MetadataValue.null() if health.last_heartbeat is None
                               else health.last_heartbeat.isoformat()),
            "reason": health.reason,
            "strategy_id": health.strategy_id,
        },
    )


def _cursor(raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def default_auto_restarts() -> int:
    if AUTO_RESTARTS_ENV in os.environ:
        return int(os.environ[AUTO_RESTARTS_ENV])
    return AUTO_RESTARTS_DEFAULT.get(os.environ.get("TRADAI_ENV", "local"), 0)


def build_heartbeat_sensor(
    specs: Iterable[StrategySpec],
    stale_after_seconds: float | None = None,
    auto_restarts: int | None = None,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
    clock: Callable[[], datetime] = partial(datetime.now, UTC),
) -> dg.SensorDefinition:
    """``clock``: the current UTC time, against which heartbeats, deployments and restarts age."""
    names = {strategy_id(s.name): s.name for s in specs}
    stale_after = float(stale_after_seconds if stale_after_seconds is not None
                        else os.environ.get(STALE_AFTER_ENV, STALE_AFTER_SECONDS))
    restarts_allowed = default_auto_restarts() if auto_restarts is None else auto_restarts

    @dg.sensor(
        name=HEARTBEAT_SENSOR,
        minimum_interval_seconds=INTERVAL_SECONDS,
        default_status=default_status,
        asset_selection=dg.AssetSelection.assets(*[deployment_key(n) for n in names.values()]),
        description=f"Marks a deployed bot unhealthy when its heartbeat is older than {stale_after:.0f} s, "
        f"notifies once an episode, and restarts it at most {restarts_allowed} time(s) an episode.",
    )
    def bot_heartbeat(
        context: dg.SensorEvaluationContext,
        trading_state: TradingState,
        bot_services: BotServices,
        notifier: Notifier,
    ):
        now = clock()
        cursor = _cursor(context.cursor)
        heartbeats = {h.strategy_id: h for h in trading_state.list()}
        states = {s.strategy_id: s for s in bot_services.list_bots()}
        events, requests, after = [], [], {}
        for bot_id, name in sorted(names.items()):
            previous = latest_deployment(context.instance, name)
            was = cursor.get(bot_id, {})
            first_seen = was.get("first_seen", now.timestamp())
            health = assess(name, states.get(bot_id), heartbeats.get(bot_id), previous[0] if previous else None,
                            now, stale_after, first_seen)
            if health is None:
                continue  # not deployed: any episode is over
            entry = {"health": health.health, "first_seen": first_seen,
                     "notified": was.get("notified", False) and health.health in BAD,
                     "restarts": was.get("restarts", 0) if health.health in BAD else 0,
                     "restart_at": was.get("restart_at") if health.health in BAD else None}
            if was.get("health") != health.health:
                events.append(_observation(health))
                context.log.info(f"{name} ({bot_id}): {was.get('health', 'unknown')} -> {health.health}: {health.reason}")
            if health.health in BAD and not entry["notified"]:
                entry["notified"] = _notify(context, notifier, health)
            if (health.health == "unhealthy" and entry["restarts"] < restarts_allowed and previous is not None
                    and (entry["restart_at"] is None or now.timestamp() - entry["restart_at"] > stale_after)):
                entry["restarts"] += 1
                entry["restart_at"] = now.timestamp()
                requests.append(dg.RunRequest(
                    run_key=f"restart:{name}:{first_seen:.0f}:{entry['restarts']}",
                    asset_selection=[deployment_key(name)],
                    run_config=redeploy_run_config(name, previous[1], restart=True),
                    tags={TRIGGER_TAG: "heartbeat", "tradai/restart": str(entry["restarts"])},
                ))
            after[bot_id] = entry
        return dg.SensorResult(run_requests=requests, asset_events=events, cursor=json.dumps(after, sort_keys=True))

    return bot_heartbeat


def _notify(context: dg.SensorEvaluationContext, notifier: Notifier, health: BotHealth) -> bool:
    crash = health.health == "failed"
    try:
        notifier.notify(
            kind="bot_crash_loop" if crash else "bot_unhealthy",
            subject=f"bot {health.strategy_id} ({health.strategy}) {'is crash-looping' if crash else 'is unhealthy'}",
            message=health.reason,
            severity="error" if crash else "warning",
            details={"strategy": health.strategy, "strategy_id": health.strategy_id, "health": health.health,
                     "heartbeat_age_seconds": health.age_seconds,
                     "last_heartbeat": health.last_heartbeat.isoformat() if health.last_heartbeat else None},
        )
    except Exception as exc:  # the next tick tries again; the log channel has it already
        context.log.error(f"notifying about {health.strategy_id} failed: {exc}")
        return False
    return True


def _moves(log: pd.DataFrame, after: pd.Timestamp | None) -> pd.DataFrame:
    rows = log if after is None else log[log.index > after]
    before, now = rows["champion_before"], rows["champion_after"]
    moved = rows["event"].isin(HOTSWAP_EVENTS) & now.notna() & ((before != now) | before.isna())
    return rows[moved]


def build_hotswap_sensor(
    specs: Iterable[StrategySpec],
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    models = sorted(s.name for s in specs if s.is_model)

    @dg.sensor(
        name=HOTSWAP_SENSOR,
        minimum_interval_seconds=INTERVAL_SECONDS,
        default_status=default_status,
        asset_selection=dg.AssetSelection.assets(*[deployment_key(n) for n in models]),
        description="Redeploys a model strategy's running bot when its champion alias moves (promotion or rollback).",
    )
    def model_hotswap(
        context: dg.SensorEvaluationContext,
        model_registry: ModelRegistry,
        bot_services: BotServices,
    ):
        registry = model_registry
        cursor = _cursor(context.cursor)
        requests = []
        for name in models:
            log = registry.audit_log(name)
            if log.empty:
                continue
            previous = latest_deployment(context.instance, name)
            if name in cursor:
                after = pd.Timestamp(cursor[name])
            elif previous is not None:
                after = pd.Timestamp(previous[0], unit="s", tz="UTC")
            else:
                after = log.index[-1]  # never deployed: nothing to swap
            cursor[name] = log.index[-1].isoformat()
            moves = _moves(log, after)
            if moves.empty:
                continue
            when, move = moves.index[-1], moves.iloc[-1]
            new = int(move["champion_after"])
            meta = previous[1] if previous is not None else {}
            deployed = meta.get("model_version")
            if previous is None or meta.get("mode") in (None, "stopped"):
                context.log.info(f"{name}: champion moved to version {new}; no running deployment to swap")
                continue
            if deployed == new:
                continue
            if not bot_services.describe(strategy_id(name)).running:
                context.log.info(f"{name}: champion moved to version {new}; its bot is not running")
                continue
            context.log.info(f"{name}: champion {deployed} -> {new} ({move['event']}): redeploying")
            requests.append(dg.RunRequest(
                run_key=f"hotswap:{name}:{when.isoformat()}",
                asset_selection=[deployment_key(name)],
                run_config=redeploy_run_config(name, meta),
                tags={TRIGGER_TAG: "hotswap", "tradai/model_event": str(move["event"]),
                      "tradai/model_version_before": "none" if deployed is None else str(deployed),
                      "tradai/model_version": str(new), "tradai/audit_time": when.isoformat()},
            ))
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor, sort_keys=True))

    return model_hotswap


def build_bot_sensors(
    specs: Iterable[StrategySpec],
    stale_after_seconds: float | None = None,
    auto_restarts: int | None = None,
) -> list[dg.SensorDefinition]:
    specs = list(specs)
    return [build_heartbeat_sensor(specs, stale_after_seconds, auto_restarts), build_hotswap_sensor(specs)]

