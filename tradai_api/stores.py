"""What the API reads from the stores: backtest artifacts in MLflow, candles in ArcticDB, and their
reachability. Talks to them through the product's resources (``resources/``), imported on first use:
ArcticDB, MLflow and Dagster's resource machinery take seconds to import, and the API answers
before that (a background thread warms them up at start-up).
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import json
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported on first use: Dagster's resource machinery takes seconds to import
    from resources.bot_services import BotServices
    from resources.bot_trades import BotTrades
    from resources.trading_state import TradingState

# Imported by the warm-up thread; each is also imported where it is used.
HEAVY_MODULES = (
    "resources.arctic",
    "resources.mlflow_tracker",
    "mlflow.tracking",
    "arcticdb",
    "tradai_core.universe",
    "tradai_core.strategy_config",
    "resources.freqtrade_runner",
    "freqtrade.strategy.hyper",  # a sweep's parameter check reads the strategy's declarations with it
)


# Held while the warm-up imports. MLflow's package imports itself in cycles that a second thread
# importing it at the same moment finds half-initialised (ImportError: cannot import name ... from
# partially initialized module 'mlflow.tracking'), so store calls wait for the warm-up to finish.
_WARMING_UP = threading.Lock()


def heavy_modules_imported() -> None:
    """Return once the warm-up's imports are done (at once when no warm-up runs)."""
    with _WARMING_UP:
        pass


def warm_up() -> threading.Thread:
    def import_all() -> None:
        try:
            for name in HEAVY_MODULES:
                importlib.import_module(name)
        finally:
            _WARMING_UP.release()

    _WARMING_UP.acquire()  # before the thread starts, so that no request can slip in ahead of it
    thread = threading.Thread(target=import_all, name="tradai-api-warm-up", daemon=True)
    thread.start()
    return thread


class BacktestArtifacts:
    """A finished backtest's statistics (Freqtrade's ``stats.json``, trades included) from its MLflow run."""

    def __init__(self, tracking_uri: str):
        self.tracking_uri = tracking_uri
        # A finished run's artifacts never change: keep the latest few in memory.
        self.stats = functools.lru_cache(maxsize=16)(self._download_stats)

    def _tracker(self):
        heavy_modules_imported()
        from resources.mlflow_tracker import MlflowTracker

        return MlflowTracker(tracking_uri=self.tracking_uri)

    def _download_stats(self, mlflow_run_id: str) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="tradai-api-") as tmp:
            path = self._tracker().download(mlflow_run_id, "stats.json", Path(tmp))
            return json.loads(path.read_text())

    def check(self) -> str:
        experiments = self._tracker().probe()
        return f"{_redacted(self.tracking_uri)} answers ({experiments} experiment(s) on the first page)"


def equity_points(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """The starting balance at the start of the backtest, then the balance after each closed trade."""
    balance = float(stats["starting_balance"])
    points = [{"date": _utc(stats["backtest_start"]), "equity": balance}]
    for trade in sorted(stats.get("trades", []), key=lambda t: t["close_date"]):
        balance += float(trade["profit_abs"])
        points.append({"date": _utc(trade["close_date"]), "equity": balance})
    return points


def _utc(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _redacted(uri: str) -> str:
    """Store URIs may carry credentials (user:password@host, access=...&secret=...)."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    host = rest.split("@", 1)[-1]
    return f"{scheme}://{host.split('?', 1)[0]}"


class MarketData:
    """The universe's series and what ArcticDB holds of them."""

    def __init__(self, arctic_uri: str, universe_path: Path):
        self.arctic_uri = arctic_uri
        self.universe_path = universe_path

    def _arctic(self):
        heavy_modules_imported()
        from resources.arctic import ArcticStore

        return ArcticStore(uri=self.arctic_uri)

    def entries(self):
        from tradai_core.universe import load_universe

        return load_universe(self.universe_path).markets

    def symbols(self) -> list[dict[str, Any]]:
        arctic = self._arctic()
        return [
            {
                "exchange": e.exchange, "market_type": e.market_type, "pairs": e.pairs, "timeframes": e.timeframes,
                "mark_timeframes": e.mark_timeframes, "funding_timeframes": e.funding_timeframes,
                "stored_symbols": arctic.candle_symbols(e.exchange, e.market_type),
            }
            for e in self.entries()
        ]

    def freshness(self, now: dt.datetime) -> list[dict[str, Any]]:
        from tradai_core.candles import candle_symbol, timeframe_delta

        arctic = self._arctic()
        out = []
        for entry in self.entries():
            max_age = timeframe_delta(entry.max_age).total_seconds() if entry.max_age else None
            for pair, timeframe, candle_type in entry.series():
                last = arctic.last_candle_time(entry.exchange, entry.market_type, candle_symbol(pair, timeframe, candle_type))
                age = None if last is None else (now - last.to_pydatetime()).total_seconds()
                out.append({
                    "exchange": entry.exchange, "market_type": entry.market_type, "pair": pair,
                    "timeframe": timeframe, "candle_type": candle_type,
                    "last_candle": None if last is None else last.to_pydatetime(),
                    "age_seconds": age, "max_age_seconds": max_age,
                    "fresh": None if max_age is None else (age is not None and age <= max_age),
                })
        return out

    def check(self) -> str:
        libraries = self._arctic().arctic.list_libraries()
        return f"{_redacted(self.arctic_uri)} answers ({len(libraries)} libraries)"


class ModelStore:
    """MLflow's model registry and the audit log beside the candles in ArcticDB, through the product's
    ``ModelRegistry``. Changes to one model are serialised within this process (the audit log is
    append-only, and ArcticDB keeps the last writer's version of a symbol)."""

    def __init__(self, tracking_uri: str, arctic_uri: str):
        self.tracking_uri = tracking_uri
        self.arctic_uri = arctic_uri
        self._registry = None
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def registry(self):
        if self._registry is None:
            heavy_modules_imported()
            from resources.arctic import ArcticStore
            from resources.model_registry import ModelRegistry

            self._registry = ModelRegistry(tracking_uri=self.tracking_uri, store=ArcticStore(uri=self.arctic_uri))
        return self._registry

    def lock(self, model: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(model, threading.Lock())


class SweepRecords:
    """The sweep store in ArcticDB (library ``sweeps``: plans, trial results, summaries, cancellation
    marks), through the product's ``SweepStore``."""

    def __init__(self, arctic_uri: str):
        self.arctic_uri = arctic_uri
        self._store = None

    def store(self):
        if self._store is None:
            heavy_modules_imported()
            from resources.arctic import ArcticStore
            from resources.sweep_store import SweepStore

            self._store = SweepStore(arctic=ArcticStore(uri=self.arctic_uri))
        return self._store


class BotBackends:
    """Where the bots run and where they report: ``bot_services`` (local supervised processes, or ECS
    services), ``trading_state`` (heartbeats in SQLite, or DynamoDB) and ``bot_trades`` (the bots' own
    trade databases, or the exports ECS bots upload), picked by ``TRADAI_ENV`` as
    the code location picks them. The API only reads and stops services: it never registers task
    definitions, so the ECS backend's network and role fields stay empty here."""

    def __init__(self, bot_services: BotServices, trading_state: TradingState, bot_trades: BotTrades):
        self.bot_services = bot_services
        self.trading_state = trading_state
        self.bot_trades = bot_trades

    @classmethod
    def from_settings(cls, settings) -> "BotBackends":
        if settings.tradai_env == "aws":
            from resources.bot_services import EcsBotServices
            from resources.bot_trades import S3BotTrades
            from resources.trading_state import DynamoTradingState

            aws = {"region": settings.aws_region, "endpoint_url": settings.aws_endpoint_url}
            services = EcsBotServices(
                stack=settings.stack, cluster=settings.ecs_cluster, subnet_ids=[], security_group_ids=[],
                execution_role_arn="", task_role_arn="", owner="", cost_center="", **aws,
            )
            return cls(services, DynamoTradingState(stack=settings.stack, **aws), S3BotTrades(stack=settings.stack, **aws))
        from resources.bot_trades import LocalBotTrades
        from resources.local_bots import LocalBotServices
        from resources.trading_state import SqliteTradingState

        home = Path(settings.tradai_home)
        return cls(
            LocalBotServices(home=str(home), strategies_dir=str(settings.strategies_dir)),
            SqliteTradingState(path=str(home / "bots" / "state.db")),
            LocalBotTrades(home=str(home)),
        )
