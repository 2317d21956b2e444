"""``local_exchange_candles``: keeps the candles of the local simulated exchange's bots stored (``make dev``).

Every 30 s, for each strategy whose latest deployment runs a bot (``dry_run`` or ``live``; locally every bot
trades on the simulated exchange when ``TRADAI_LOCAL_EXCHANGE_URL`` is set), the sensor compares the
newest stored candle of each of the bot's pairs with the last candle that has closed by now. When one is
behind it asks for a ``sync_local_exchange_candles`` run (:mod:`tradai_assets.local_exchange_sync`) for
every bot that is behind, from the day before the bot was deployed (so a replay of the bot's first day has
its startup candles) or from the newest stored candle, whichever is later. The run key is the newest
closed candle wanted, so a tick that finds nothing new asks for nothing. A bot whose series cannot be
told (no stored config) is named in the tick's log and skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

import dagster as dg
import pandas as pd

from resources.arctic import ArcticStore
from resources.backtest_store import BacktestStore
from sensors.stale_data import RUNNING_MODES, UTC_NOW, StaleDataError, watched_series
from tradai_core.candles import candle_symbol, timeframe_delta
from tradai_core.materializations import latest_deployment
from tradai_core.strategy_discovery import StrategySpec

LOCAL_EXCHANGE_SENSOR = "local_exchange_candles"
INTERVAL_SECONDS = 30
SYNC_OP = "sync_local_exchange_candles_op"


def build_local_exchange_sensor(
    specs: Iterable[StrategySpec],
    job_name: str,
    clock: Callable[[], datetime] = UTC_NOW,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    names = sorted(s.name for s in specs)

    @dg.sensor(
        name=LOCAL_EXCHANGE_SENSOR,
        job_name=job_name,  # by name: a job object here makes Dagster re-create the sensor with a beta warning
        minimum_interval_seconds=INTERVAL_SECONDS,
        default_status=default_status,
        description="Stores the local simulated exchange's closed candles of every running bot's pairs, so that "
        "divergence reports replay the candles the bots traded on (make dev; docs/bots.md).",
    )
    def local_exchange_candles(context: dg.SensorEvaluationContext, arctic: ArcticStore, backtest_store: BacktestStore):
        now = pd.Timestamp(clock())
        wanted: dict[tuple[str, str, str], dict] = {}
        newest_closed: list[str] = []
        for name in names:
            deployment = latest_deployment(context.instance, name)
            if deployment is None or deployment[1].get("mode") not in RUNNING_MODES:
                continue
            deployed_at, meta = deployment
            try:
                series = watched_series(name, meta, backtest_store)
            except StaleDataError as exc:
                context.log.error(f"local exchange candles: {name}: {exc}")
                continue
            step = timeframe_delta(series.timeframe)
            last_closed = now.floor(step) - step  # open time of the newest candle that has closed
            candle_type = "futures" if series.market_type == "futures" else "spot"
            since = pd.Timestamp(deployed_at, unit="s", tz="UTC").floor("1D") - pd.Timedelta(days=1)
            behind = []
            for pair in series.pairs:
                last = arctic.last_candle_time(series.exchange, series.market_type,
                                               candle_symbol(pair, series.timeframe, candle_type))
                if last is None or last < last_closed:
                    behind.append(pair)
            if not behind:
                continue
            key = (series.exchange, series.market_type, series.timeframe)
            entry = wanted.setdefault(key, {"exchange": key[0], "market_type": key[1], "timeframe": key[2],
                                            "pairs": [], "since": since.isoformat()})
            entry["pairs"] = sorted(set(entry["pairs"]) | set(behind))
            entry["since"] = min(pd.Timestamp(entry["since"]), since).isoformat()
            newest_closed.append(f"{'/'.join(key)}@{last_closed.isoformat()}")
        if not wanted:
            return dg.SkipReason("every running bot's candles are stored up to the last closed one")
        return dg.RunRequest(
            run_key=";".join(sorted(newest_closed)),
            run_config={"ops": {SYNC_OP: {"config": {"series": [wanted[k] for k in sorted(wanted)]}}}},
        )

    return local_exchange_candles
