"""``stale_candles_pause``: a bot whose candles stopped arriving stops entering trades, and starts again
when they are fresh.

Every 60 s, for each strategy whose latest deployment runs a bot (``dry_run`` or ``live``), the sensor
reads the newest stored candle of each of the bot's pairs (the deployment's pairs, else its stored
config's whitelist; the config's timeframe, exchange and market type) from ArcticDB. When one closed
longer ago than ``TRADAI_STALE_CANDLES_PAUSE_AFTER`` (``tradai_core.settings.StaleDataSettings``,
default 2h) it records a pause request in the trading-state store; when all are fresh again, a resume
request. The bot applies the request at its next heartbeat (Freqtrade's own paused state: no new
entries, open trades still managed, the process left running; ``tradai_bot.runtime``) and then
heartbeats ``paused``. Each transition sends one alert and records an observation on the deployment
asset; a tick that changes nothing sends nothing.

A bot that cannot be handled (no stored candles of a pair, a store that refuses the request, or a bot
that has not applied a pause within ``ack_after_seconds``: it cannot be reached) is named in an error
in the tick's log and in one alert per episode, and the other bots are still handled.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import dagster as dg
import pandas as pd

from resources.arctic import ArcticStore
from resources.backtest_store import BacktestStore
from resources.notifier import Notifier
from resources.trading_state import PauseRequest, TradingState
from tradai_core import settings
from tradai_core.candles import candle_symbol, timeframe_delta
from tradai_core.keys import deployment_key, strategy_id
from tradai_core.materializations import latest_deployment
from tradai_core.strategy_config import market_type
from tradai_core.strategy_discovery import StrategySpec

STALE_DATA_SENSOR = "stale_candles_pause"
INTERVAL_SECONDS = 60
PAUSE_AFTER_ENV = "TRADAI_STALE_CANDLES_PAUSE_AFTER"
ACK_AFTER_SECONDS = 180  # three missed heartbeats, as the heartbeat sensor counts a bot stale
RUNNING_MODES = ("dry_run", "live")
UTC_NOW = partial(datetime.now, UTC)


class StaleDataError(RuntimeError):
    """A bot whose candles cannot be judged or whose pause cannot be recorded or applied."""


@dataclass(frozen=True)
class WatchedSeries:
    exchange: str
    market_type: str
    timeframe: str
    pairs: tuple[str, ...]


def watched_series(name: str, deployment: Mapping[str, Any], backtest_store: BacktestStore) -> WatchedSeries:
    """The candles a deployed bot trades on: its deployment's pairs (else its config's) at its timeframe."""
    stored = backtest_store.latest_config(name)
    if stored is None:
        raise StaleDataError(f"no stored config of {name}: cannot tell which candles its bot trades on")
    config = stored[0]
    pairs = tuple((deployment.get("desired") or {}).get("pairs") or config.get("exchange", {}).get("pair_whitelist") or ())
    if not pairs or not config.get("timeframe"):
        raise StaleDataError(f"the stored config of {name} names no pairs or no timeframe")
    return WatchedSeries(config["exchange"]["name"], market_type(config), config["timeframe"], pairs)


def candle_ages(arctic: ArcticStore, series: WatchedSeries, now: datetime) -> dict[str, pd.Timedelta]:
    """Per pair, how long ago its newest stored candle closed."""
    step = timeframe_delta(series.timeframe)
    candle_type = "futures" if series.market_type == "futures" else "spot"
    ages = {}
    for pair in series.pairs:
        symbol = candle_symbol(pair, series.timeframe, candle_type)
        last = arctic.last_candle_time(series.exchange, series.market_type, symbol)
        if last is None:
            raise StaleDataError(
                f"no stored {series.exchange} {series.market_type} {pair} {series.timeframe} candles ({symbol})"
            )
        ages[pair] = pd.Timestamp(now) - (last + step)
    return ages


def _hours(age: pd.Timedelta) -> str:
    return f"{age.total_seconds() / 3600:.1f} h"


def _cursor(raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def build_stale_data_sensor(
    specs: Iterable[StrategySpec],
    pause_after: str | None = None,
    ack_after_seconds: float = ACK_AFTER_SECONDS,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
    clock: Callable[[], datetime] = UTC_NOW,
) -> dg.SensorDefinition:
    """``pause_after``: the staleness limit (``TRADAI_STALE_CANDLES_PAUSE_AFTER`` when None); ``clock``:
    the current UTC time, against which candles and pause requests age."""
    names = sorted(s.name for s in specs)
    limit_text = pause_after if pause_after is not None else settings.stale_data_settings().pause_after
    try:
        limit = None if limit_text == settings.PAUSE_OFF else timeframe_delta(limit_text)
    except ValueError as exc:
        raise settings.SettingsError(f"stale-data pause limit {limit_text!r}: {exc}") from exc

    @dg.sensor(
        name=STALE_DATA_SENSOR,
        minimum_interval_seconds=INTERVAL_SECONDS,
        default_status=default_status,
        description=f"Pauses the entries of a deployed bot whose newest stored candle closed more than {limit_text} "
        "ago and resumes them when the candles are fresh; one alert each way (docs/bots.md).",
    )
    def stale_candles_pause(
        context: dg.SensorEvaluationContext,
        arctic: ArcticStore,
        backtest_store: BacktestStore,
        trading_state: TradingState,
        notifier: Notifier,
    ):
        if limit is None:
            return dg.SkipReason(f"the stale-data pause is off ({PAUSE_AFTER_ENV}={settings.PAUSE_OFF})")
        now = clock()
        cursor = _cursor(context.cursor)
        events, problems = [], {}
        for name in names:
            bot_id = strategy_id(name)
            deployment = latest_deployment(context.instance, name)
            if deployment is None or deployment[1].get("mode") not in RUNNING_MODES:
                continue
            try:
                event = _handle(name, bot_id, deployment[1], now, limit, limit_text, ack_after_seconds,
                                arctic, backtest_store, trading_state, notifier, context)
            except Exception as exc:  # one bot's trouble must not keep the others unhandled
                kind = type(exc).__name__ if not isinstance(exc, StaleDataError) else str(exc).split(":")[0]
                problems[bot_id] = (name, kind, f"bot {bot_id} ({name}): {exc}")
                continue
            if event is not None:
                events.append(event)
        after = {}
        for bot_id, (name, kind, message) in sorted(problems.items()):
            context.log.error(f"stale-data pause: {message}")
            if cursor.get(bot_id) != kind:
                _notify(context, notifier, "bot_pause_failed", f"bot {bot_id} ({name}) cannot be paused or resumed",
                        message, "error", {"strategy": name, "strategy_id": bot_id})
            after[bot_id] = kind
        return dg.SensorResult(asset_events=events, cursor=json.dumps(after, sort_keys=True))

    return stale_candles_pause


def _handle(name, bot_id, deployment, now, limit, limit_text, ack_after_seconds, arctic, backtest_store,
            trading_state, notifier, context) -> dg.AssetObservation | None:
    """One bot: record a pause or a resume when its candles' freshness changed; raises StaleDataError."""
    series = watched_series(name, deployment, backtest_store)
    ages = candle_ages(arctic, series, now)
    stale = {pair: age for pair, age in ages.items() if age > limit}
    request = trading_state.get_pause(bot_id)
    was_paused = request is not None and request.paused
    if stale and was_paused:
        heartbeat = trading_state.get(bot_id)
        waited = (now - request.requested_at).total_seconds()
        if (heartbeat is None or heartbeat.status != "paused") and waited > ack_after_seconds:
            said = "no heartbeat" if heartbeat is None else (
                f"its latest heartbeat ({heartbeat.last_heartbeat.isoformat()}) says {heartbeat.status}")
            raise StaleDataError(f"not reached: the pause requested at {request.requested_at.isoformat()} is "
                                 f"not applied after {waited:.0f} s; {said}")
        return None
    if bool(stale) == was_paused:
        return None
    worst = max(ages.values())
    if stale:
        reason = "; ".join(f"{pair} {series.timeframe}: newest stored candle closed {_hours(age)} ago"
                           for pair, age in sorted(stale.items())) + f", beyond {limit_text} ({PAUSE_AFTER_ENV})"
    else:
        reason = f"candles of {', '.join(series.pairs)} {series.timeframe} fresh again (oldest closed {_hours(worst)} ago)"
    try:
        trading_state.put_pause(PauseRequest(bot_id, bool(stale), reason, now))
    except Exception as exc:
        raise StaleDataError(f"not reached: cannot record the {'pause' if stale else 'resume'} request "
                             f"in the trading state ({type(exc).__name__}: {exc})") from exc
    action = "paused" if stale else "resumed"
    context.log.info(f"{name} ({bot_id}): entries {action}: {reason}")
    _notify(context, notifier, f"bot_{action}",
            f"bot {bot_id} ({name}) {action}: " + ("its candles are stale" if stale else "its candles are fresh"),
            reason, "warning" if stale else "info",
            {"strategy": name, "strategy_id": bot_id, "pairs": list(series.pairs), "timeframe": series.timeframe,
             "oldest_candle_age_seconds": worst.total_seconds(), "limit": limit_text})
    return dg.AssetObservation(
        asset_key=deployment_key(name),
        description=reason,
        metadata={"entries": action, "reason": reason, "strategy_id": bot_id,
                  "oldest_candle_age_seconds": round(worst.total_seconds(), 1)},
    )


def _notify(context, notifier: Notifier, kind: str, subject: str, message: str, severity: str,
            details: dict[str, Any]) -> None:
    try:
        notifier.notify(kind=kind, subject=subject, message=message, severity=severity, details=details)
    except Exception as exc:  # the notifier wrote its log channel first; the others' failure is reported here
        context.log.error(f"notifying {kind} ({subject}) failed: {exc}")
