"""The bot entrypoint (``tradai run-bot``): one Freqtrade trading process from a deployment's environment.

A bot's container (or local process) gets a minimal environment, ``aws_contract.BOT_ENV``:

- ``STRATEGY``, ``STRATEGY_ID``, ``TRADING_MODE`` (``dry_run`` or ``live``) and ``CONFIG_PATH`` (the
  Freqtrade config the deployment wrote: a JSON file path or an ``s3://bucket/key``) are required;
- ``MLFLOW_TRACKING_URI`` (model strategies), ``ARCTICDB_S3_URI`` (candle warm-up; ``ARCTICDB_URI``
  is read when it is absent) and ``DYNAMODB_TABLE`` (the trading-state table, required when
  ``TRADAI_ENV=aws``);
- optional: ``TRADAI_MODEL_VERSION`` (pins a model version instead of the ``champion`` alias),
  ``TRADAI_HEARTBEAT_SECONDS`` (default 60), ``TRADAI_ENV`` (``aws`` writes heartbeats to DynamoDB,
  anything else to ``SqliteTradingState`` under ``TRADAI_HOME``), ``TRADAI_STRATEGIES`` (strategy files),
  ``TRADAI_LOCAL_EXCHANGE_URL`` (a dry run trades against the local simulated Binance exchange,
  :mod:`simulator.binance`, at that URL instead of the real one; refused for live trading).

Exchange keys reach Freqtrade only through ``FREQTRADE__EXCHANGE__KEY`` / ``FREQTRADE__EXCHANGE__SECRET``
(ECS secrets); a config file carrying keys is refused, and neither value is ever logged.

What a run does, in order: writes a ``starting`` heartbeat; loads and checks the config; for a model
strategy resolves the model version (``TRADAI_MODEL_VERSION``, else the version the config names, else
the ``champion`` alias) and passes ``config["tradai_model"] = {name, version, tracking_uri}`` to the
strategy; builds Freqtrade's worker; seeds the exchange's candle cache from ArcticDB (see
``warm_up``); then runs Freqtrade's trading loop (dry run forced for ``dry_run``), writing a
``running`` heartbeat with open trades and profit every ``TRADAI_HEARTBEAT_SECONDS`` (``paused`` while the
platform's pause request in the trading-state store holds its entries, see ``apply_pause_request``), and a final
``stopped`` (SIGTERM or SIGINT) or ``error`` (a crash) heartbeat. Exit codes: 0 stopped, 1 crash,
2 bad environment or config.

A bot whose config came from S3 (an ECS bot) uploads an export of its Freqtrade trade database beside
it (``resources.bot_trades``: ``bots/<strategy_id>/trades.json`` in the configs bucket) with every
heartbeat and when it stops, so divergence reports read its trades without reaching into the
container; a failed upload is logged and never stops the bot.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from resources import aws_contract

logger = logging.getLogger("tradai.bot")

REPO_ROOT = Path(__file__).resolve().parent.parent
HEARTBEAT_SECONDS = "TRADAI_HEARTBEAT_SECONDS"
MODEL_VERSION = "TRADAI_MODEL_VERSION"
STRATEGIES = "TRADAI_STRATEGIES"
LOCAL_EXCHANGE_URL = aws_contract.EnvVar.LOCAL_EXCHANGE_URL
LOCAL_EXCHANGES = ("binance",)  # the exchanges simulator.binance simulates
DEFAULT_HEARTBEAT_SECONDS = 60.0
CHAMPION = "champion"
MODEL_CONFIG_KEY = "tradai_model"
REQUIRED_ENV = (
    aws_contract.EnvVar.STRATEGY,
    aws_contract.EnvVar.STRATEGY_ID,
    aws_contract.EnvVar.TRADING_MODE,
    aws_contract.EnvVar.CONFIG_PATH,
)
EXIT_STOPPED, EXIT_CRASHED, EXIT_BAD_INPUT = 0, 1, 2


class BotRuntimeError(RuntimeError):
    """The bot cannot start: a missing or bad environment variable, config file or model version."""


@dataclass(frozen=True)
class BotSettings:
    """What ``tradai run-bot`` reads from its environment."""

    strategy: str
    strategy_id: str
    trading_mode: str  # "dry_run" or "live"
    config_path: str
    mlflow_tracking_uri: str | None = None
    dynamodb_table: str | None = None
    arctic_uri: str | None = None
    model_version: str | None = None
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    tradai_env: str = "local"
    tradai_home: str | None = None
    local_exchange_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BotSettings:
        env = os.environ if environ is None else environ
        E = aws_contract.EnvVar
        missing = [name for name in REQUIRED_ENV if not env.get(name, "").strip()]
        tradai_env = env.get(E.TRADAI_ENV, "local") or "local"
        if tradai_env == "aws" and not env.get(E.DYNAMODB_TABLE, "").strip():
            missing.append(E.DYNAMODB_TABLE)
        if missing:
            raise BotRuntimeError(
                f"missing environment variable{'s' if len(missing) > 1 else ''} {', '.join(missing)}: "
                f"a bot needs {', '.join(REQUIRED_ENV)}"
                + (f" and {E.DYNAMODB_TABLE} (TRADAI_ENV=aws)" if tradai_env == "aws" else "")
            )
        mode = env[E.TRADING_MODE].strip()
        if mode not in aws_contract.TRADING_MODES:
            raise BotRuntimeError(f"{E.TRADING_MODE}={mode!r}: expected one of {', '.join(aws_contract.TRADING_MODES)}")
        raw_interval = env.get(HEARTBEAT_SECONDS, "").strip() or str(DEFAULT_HEARTBEAT_SECONDS)
        try:
            interval = float(raw_interval)
        except ValueError:
            interval = -1.0
        if not interval > 0:
            raise BotRuntimeError(f"{HEARTBEAT_SECONDS}={raw_interval!r}: expected a positive number of seconds")
        version = env.get(MODEL_VERSION, "").strip() or None
        local_exchange_url = env.get(LOCAL_EXCHANGE_URL, "").strip() or None
        if local_exchange_url and mode == "live":
            raise BotRuntimeError(
                f"{LOCAL_EXCHANGE_URL}={local_exchange_url}: live trading never runs against the local simulated "
                f"exchange; unset {LOCAL_EXCHANGE_URL} or deploy in dry_run"
            )
        if version is not None and not version.isdigit():
            raise BotRuntimeError(f"{MODEL_VERSION}={version!r}: expected a model version number")
        return cls(
            strategy=env[E.STRATEGY].strip(),
            strategy_id=env[E.STRATEGY_ID].strip(),
            trading_mode=mode,
            config_path=env[E.CONFIG_PATH].strip(),
            mlflow_tracking_uri=env.get(E.MLFLOW_TRACKING_URI) or None,
            dynamodb_table=env.get(E.DYNAMODB_TABLE) or None,
            arctic_uri=env.get(E.ARCTICDB_S3_URI) or env.get(E.ARCTICDB_URI) or None,
            model_version=version,
            heartbeat_seconds=interval,
            tradai_env=tradai_env,
            tradai_home=env.get(E.TRADAI_HOME) or None,
            local_exchange_url=local_exchange_url,
        )


# --- Trading state ----------------------------------------------------------------------------------


def trading_state(settings: BotSettings):
    """The heartbeat store: the DynamoDB table on AWS, the local SQLite file otherwise."""
    from resources.trading_state import DynamoTradingState, SqliteTradingState

    if settings.tradai_env == "aws":
        table = settings.dynamodb_table or ""
        stack = os.environ.get(aws_contract.EnvVar.TRADAI_STACK) or table.rsplit("-", 1)[-1]
        if stack not in aws_contract.ENVIRONMENTS:
            stack = "dev"  # only names the default table; the table is given explicitly
        return DynamoTradingState(stack=stack, table=table)
    path = Path(settings.tradai_home) / "bots" / "state.db" if settings.tradai_home else None
    return SqliteTradingState(path=str(path) if path else None)


class Heartbeats:
    """Writes the bot's heartbeat row; a failed write is logged and never stops the bot."""

    def __init__(self, store: Any, strategy_id: str, interval_seconds: float):
        self.store = store
        self.strategy_id = strategy_id
        self.interval = interval_seconds
        self.last_written = 0.0  # monotonic time of the last successful write
        self.written = 0

    def put(self, status: str, open_trades: int = 0, profit: float = 0.0) -> bool:
        from resources.trading_state import Heartbeat

        try:
            self.store.put(
                Heartbeat(
                    strategy_id=self.strategy_id,
                    status=status,
                    last_heartbeat=datetime.now(UTC),
                    open_trades=open_trades,
                    profit=profit,
                )
            )
        except Exception as exc:  # the store being down must not stop trading
            logger.warning("heartbeat (%s) for %s not written: %s", status, self.strategy_id, exc)
            return False
        self.last_written = time.monotonic()
        self.written += 1
        logger.debug("heartbeat %s: %d open trades, profit %s", status, open_trades, profit)
        return True

    def due(self) -> bool:
        return time.monotonic() - self.last_written >= self.interval


# --- Config -----------------------------------------------------------------------------------------


def load_config(config_path: str) -> dict[str, Any]:
    """The deployed Freqtrade config: a JSON object from a file or ``s3://bucket/key``."""
    name = aws_contract.EnvVar.CONFIG_PATH
    if config_path.startswith("s3://"):
        bucket, _, key = config_path.removeprefix("s3://").partition("/")
        if not bucket or not key:
            raise BotRuntimeError(f"{name}={config_path}: expected s3://bucket/key")
        from resources.bot_services import BotServiceError, read_config_object

        try:
            text = read_config_object(bucket, key)
        except BotServiceError as exc:
            raise BotRuntimeError(f"{name}={config_path}: cannot read the config: {exc}") from exc
    else:
        path = Path(config_path)
        if not path.is_file():
            raise BotRuntimeError(f"{name}={config_path}: the config file does not exist")
        text = path.read_text()
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BotRuntimeError(f"{name}={config_path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(config, dict):
        raise BotRuntimeError(f"{name}={config_path}: expected a JSON object, found {type(config).__name__}")
    return config


def check_exchange_keys(config: dict[str, Any], settings: BotSettings, environ: Mapping[str, str]) -> None:
    """Keys come from the environment only (ECS secrets); live trading needs both. Values are never shown."""
    exchange = config.get("exchange") or {}
    inline = [field for field in ("key", "secret", "password", "uid") if exchange.get(field)]
    if inline:
        raise BotRuntimeError(
            f"{settings.config_path}: the config carries exchange credentials ({', '.join(inline)}); "
            f"keys come only from {aws_contract.EnvVar.EXCHANGE_KEY} and {aws_contract.EnvVar.EXCHANGE_SECRET}"
        )
    if settings.trading_mode == "live":
        missing = [name for name in aws_contract.BOT_SECRETS if not environ.get(name)]
        if missing:
            raise BotRuntimeError(f"live trading needs the exchange secret: {', '.join(missing)} not set")


def local_exchange_config(config: dict[str, Any], url: str) -> dict[str, Any]:
    """The config overrides that send a dry run's exchange calls to the local simulated exchange at ``url``:
    every ccxt API URL, no websockets, no downloads from data.binance.vision."""
    from tradai_core.binance_urls import ccxt_config

    name = str((config.get("exchange") or {}).get("name", "")).lower()
    if name not in LOCAL_EXCHANGES:
        raise BotRuntimeError(
            f"{LOCAL_EXCHANGE_URL} is set but the config's exchange is {name or 'not named'}; the local simulated "
            f"exchange is {', '.join(LOCAL_EXCHANGES)} (set {LOCAL_EXCHANGE_URL} empty to use the real exchange)"
        )
    urls = ccxt_config(url, "futures" if config.get("trading_mode") == "futures" else "spot")
    return {
        "exchange": {"ccxt_config": urls, "ccxt_async_config": urls, "enable_ws": False, "only_from_ccxt": True}
    }


def strategy_is_model(strategy: str, strategy_path: Path) -> bool:
    from tradai_core.strategy_discovery import discover_strategies

    for spec in discover_strategies(strategy_path):
        if spec.name == strategy:
            if spec.problem:
                raise BotRuntimeError(f"strategy {strategy}: {spec.problem}")
            return spec.is_model
    raise BotRuntimeError(f"strategy {strategy} not found in {strategy_path}")


def resolve_model(settings: BotSettings, config: dict[str, Any]) -> dict[str, Any]:
    """``config["tradai_model"]`` for a model strategy: registered model = strategy class name."""
    uri = settings.mlflow_tracking_uri or (config.get(MODEL_CONFIG_KEY) or {}).get("tracking_uri")
    if not uri:
        raise BotRuntimeError(
            f"strategy {settings.strategy} is a model strategy: set {aws_contract.EnvVar.MLFLOW_TRACKING_URI}"
        )
    from resources.arctic import ArcticStore
    from resources.model_registry import ModelRegistry, ModelRegistryError

    name = settings.strategy
    configured = (config.get(MODEL_CONFIG_KEY) or {}).get("version")
    registry = ModelRegistry(tracking_uri=uri, store=ArcticStore(uri=settings.arctic_uri or "mem://"))
    try:
        if settings.model_version or configured:
            version = int(settings.model_version or configured)
            known = {int(v["version"]) for v in registry.versions(name, with_metrics=False)}
            if version not in known:
                raise BotRuntimeError(
                    f"model {name} version {version} does not exist in MLflow at {uri} "
                    f"(versions: {sorted(known) or 'none'})"
                )
            how = MODEL_VERSION if settings.model_version else "the config"
        else:
            version = registry.version(name, CHAMPION)
            how = f"alias {CHAMPION}"
    except ModelRegistryError as exc:
        raise BotRuntimeError(f"model {name}: {exc}") from exc
    except Exception as exc:
        if isinstance(exc, BotRuntimeError):
            raise
        raise BotRuntimeError(f"model {name}: cannot resolve its version in MLflow at {uri}: {exc}") from exc
    logger.info("model %s version %s (%s) from %s", name, version, how, uri)
    return {"name": name, "version": str(version), "tracking_uri": uri}


def freqtrade_arguments(
    settings: BotSettings,
    config_files: list[Path],
    strategy_path: Path,
    *,
    db_url: str | None = None,
    userdir: str | None = None,
    logfile: str | None = None,
) -> list[str]:
    """``freqtrade trade`` arguments for this bot."""
    argv = ["trade"]
    for config_file in config_files:
        argv += ["--config", str(config_file)]
    argv += ["--strategy", settings.strategy, "--strategy-path", str(strategy_path)]
    if settings.trading_mode == "dry_run":
        argv.append("--dry-run")
    if db_url:
        argv += ["--db-url", db_url]
    if userdir:
        argv += ["--userdir", userdir]
    if logfile:
        argv += ["--logfile", logfile]
    return argv


# --- Warm-up from ArcticDB --------------------------------------------------------------------------


def warm_up(freqtrade: Any, arctic_uri: str, now: datetime | None = None) -> dict[tuple[str, str, str], int]:
    """Seed the exchange's candle cache (``_klines``) with the newest closed candles stored in ArcticDB.

    Freqtrade then treats the pairs as already loaded: its first refresh is one call per pair
    fetching only the newest candles, instead of the multi-call download of the whole startup
    history. It keeps ``candle limit + startup_candle_count`` candles per pair; that many are seeded.
    Series whose newest stored candle is older than one call can bridge are left to Freqtrade (it
    would evict them anyway). Returns the candles seeded per (pair, timeframe, candle type)."""
    import pandas as pd

    from resources.arctic import ArcticStore
    from tradai_core.candles import candle_library_name, candle_symbol, timeframe_delta

    exchange = freqtrade.exchange
    config = freqtrade.config
    candle_type = config.get("candle_type_def", "spot")
    candle_type = getattr(candle_type, "value", candle_type)
    market_type = "futures" if config.get("trading_mode", "spot") in ("futures",) else "spot"
    timeframe = freqtrade.strategy.timeframe
    wanted = {(pair, timeframe, candle_type) for pair in freqtrade.active_pair_whitelist}
    try:
        for pair, tf, *rest in freqtrade.strategy.gather_informative_pairs():
            informative_type = rest[0] if rest else candle_type
            wanted.add((pair, tf, getattr(informative_type, "value", informative_type) or candle_type))
    except Exception as exc:  # informative pairs are a strategy's own code
        logger.warning("warm-up: informative pairs not known (%s); warming up the whitelist only", exc)

    store = ArcticStore(uri=arctic_uri)
    library_name = candle_library_name(exchange.id, market_type)
    if not store.arctic.has_library(library_name):
        logger.info("warm-up: ArcticDB has no library %s; Freqtrade downloads the history", library_name)
        return {}
    library = store.library(library_name)
    now = now or datetime.now(UTC)
    seeded: dict[tuple[str, str, str], int] = {}
    for pair, tf, ctype in sorted(wanted):
        symbol = candle_symbol(pair, tf, ctype)
        if not library.has_symbol(symbol):
            continue
        key = (pair, tf, _candle_type(ctype))
        limit = exchange.ohlcv_candle_limit(tf, key[2])
        keep = limit + exchange._startup_candle_count
        step = timeframe_delta(tf)
        frame = library.tail(symbol, keep + 1).data
        frame = frame[frame.index + step <= pd.Timestamp(now)]  # closed candles only
        if frame.empty:
            continue
        last = frame.index[-1]
        if last <= pd.Timestamp(now) - step * (limit - 5):
            logger.info("warm-up: newest stored %s candle (%s) is too old to bridge in one call", symbol, last)
            continue
        candles = frame.tail(keep).reset_index()
        candles = candles.rename(columns={candles.columns[0]: "date"})
        candles["date"] = pd.to_datetime(candles["date"], utc=True)
        exchange._klines[key] = candles[["date", "open", "high", "low", "close", "volume"]].astype(
            {c: "float64" for c in ("open", "high", "low", "close", "volume")}
        )
        exchange._pairs_last_refresh_time[key] = int(last.timestamp() * 1000)
        seeded[(pair, tf, ctype)] = len(candles)
    logger.info(
        "warm-up: %d candles of %d series from ArcticDB (%s)",
        sum(seeded.values()), len(seeded), ", ".join(f"{p} {tf}" for p, tf, _ in seeded) or "none",
    )
    return seeded


def _candle_type(value: str):
    from freqtrade.enums import CandleType

    return CandleType.from_string(value)


# --- Freqtrade --------------------------------------------------------------------------------------


def trade_stats(freqtrade: Any) -> tuple[int, float]:
    """Open trades and profit (closed plus open, stake currency) from Freqtrade's trade database."""
    from freqtrade.persistence import Trade

    open_trades = Trade.get_open_trades()
    profit = float(Trade.get_total_closed_profit() or 0.0)
    for trade in open_trades:
        if not trade.select_filled_orders(trade.entry_side):
            continue
        try:
            rate = freqtrade.exchange.get_rate(trade.pair, side="exit", is_short=trade.is_short, refresh=False)
            profit += float(trade.calculate_profit(rate).total_profit)
        except Exception as exc:  # no price now: the trade counts, its open profit does not
            logger.debug("no exit rate for %s: %s", trade.pair, exc)
    return len(open_trades), profit


def _worker_class():
    from freqtrade.worker import Worker

    class BotWorker(Worker):
        """Freqtrade's worker, plus the warm-up after each (re)build of the bot and the heartbeats."""

        def __init__(self, args: dict[str, Any], runtime: BotRuntime):
            self._runtime = runtime
            super().__init__(args)

        def _init(self, reconfig: bool) -> None:
            super()._init(reconfig)
            self._runtime.built(self.freqtrade)

        def _worker(self, old_state: Any) -> Any:
            state = super()._worker(old_state)
            self._runtime.tick(self.freqtrade)
            return state

    return BotWorker


class BotRuntime:
    """One run of a bot: config, model, Freqtrade, warm-up and heartbeats."""

    def __init__(
        self,
        settings: BotSettings,
        *,
        strategy_path: Path,
        workdir: Path,
        db_url: str | None = None,
        userdir: str | None = None,
        logfile: str | None = None,
        store: Any = None,
    ):
        self.settings = settings
        self.strategy_path = strategy_path
        self.workdir = workdir
        self.db_url = db_url
        self.userdir = userdir
        self.logfile = logfile
        self.heartbeats = Heartbeats(store or trading_state(settings), settings.strategy_id, settings.heartbeat_seconds)
        self.worker: Any = None
        self.paused_by_platform = False
        self.warmed: dict[tuple[str, str, str], int] = {}
        self.database: Path | None = None  # the Freqtrade trade database, once prepare() chose it
        self.uploads = 0

    def prepare(self) -> list[str]:
        """Load and check the config, resolve the model, and return Freqtrade's arguments."""
        settings = self.settings
        config = load_config(settings.config_path)
        check_exchange_keys(config, settings, os.environ)
        if not self.strategy_path.is_dir():
            raise BotRuntimeError(f"strategy directory {self.strategy_path} does not exist")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if settings.config_path.startswith("s3://"):
            config_files = [self.workdir / "config.json"]
            config_files[0].write_text(json.dumps(config, indent=1))
        else:
            config_files = [Path(settings.config_path).resolve()]
        if strategy_is_model(settings.strategy, self.strategy_path):
            model = resolve_model(settings, config)
            model_file = self.workdir / "tradai-model.json"
            model_file.write_text(json.dumps({MODEL_CONFIG_KEY: model}, indent=1))
            config_files.append(model_file)  # later config files override earlier ones
        if settings.local_exchange_url:
            exchange_file = self.workdir / "tradai-local-exchange.json"
            exchange_file.write_text(json.dumps(local_exchange_config(config, settings.local_exchange_url), indent=1))
            config_files.append(exchange_file)
            logger.info(
                "bot %s trades against the local simulated exchange at %s (dry run)",
                settings.strategy_id, settings.local_exchange_url,
            )
        if self.userdir:
            Path(self.userdir).mkdir(parents=True, exist_ok=True)
        else:
            (self.workdir / "user_data").mkdir(exist_ok=True)
        # The trading mode decides dry run, whatever the config file or the environment says.
        os.environ[aws_contract.EnvVar.FREQTRADE_DRY_RUN] = "true" if settings.trading_mode == "dry_run" else "false"
        db_url = self.db_url
        if not db_url and not config.get("db_url"):
            # Freqtrade's default database name, in the working directory rather than wherever it started.
            name = "tradesv3.dryrun.sqlite" if settings.trading_mode == "dry_run" else "tradesv3.sqlite"
            db_url = f"sqlite:///{self.workdir / name}"
        chosen = db_url or config.get("db_url") or ""
        self.database = Path(chosen.removeprefix("sqlite:///")) if chosen.startswith("sqlite:///") else None
        return freqtrade_arguments(
            settings, config_files, self.strategy_path,
            db_url=db_url, userdir=self.userdir or str(self.workdir / "user_data"), logfile=self.logfile,
        )

    def built(self, freqtrade: Any) -> None:
        if not self.settings.arctic_uri:
            logger.info("warm-up: no ArcticDB URI (%s); Freqtrade downloads the history", aws_contract.EnvVar.ARCTICDB_S3_URI)
            return
        started = time.monotonic()
        try:
            self.warmed = warm_up(freqtrade, self.settings.arctic_uri)
        except Exception as exc:  # a bot without warm-up still trades correctly, only starts slower
            logger.warning("warm-up from ArcticDB failed (%s); Freqtrade downloads the history", exc)
            return
        logger.info("warm-up took %.2f s", time.monotonic() - started)

    def tick(self, freqtrade: Any) -> None:
        if self.heartbeats.due():
            paused = self.apply_pause_request(freqtrade)
            self.heartbeats.put("paused" if paused else "running", *self._stats(freqtrade))
            self.upload_trades()

    def apply_pause_request(self, freqtrade: Any) -> bool:
        """Apply the platform's pause request (the stale-data sensor's) to Freqtrade's state; returns
        whether the bot's entries are paused now.

        Paused is Freqtrade's own ``State.PAUSED`` (what its ``/pause`` RPC sets): no new entries, open
        trades still managed and exited. Only a pause the platform made is lifted by a resume request.
        A request that cannot be read is logged and changes nothing: the store being down must not
        stop trading."""
        from freqtrade.enums import State

        bot_id = self.settings.strategy_id
        try:
            request = self.heartbeats.store.get_pause(bot_id)
        except Exception as exc:  # the store being down must not stop trading
            logger.warning("pause request of %s not read: %s", bot_id, exc)
            return freqtrade.state == State.PAUSED
        if request is not None and request.paused and freqtrade.state == State.RUNNING:
            freqtrade.state = State.PAUSED
            self.paused_by_platform = True
            logger.warning("bot %s: entries paused by the platform (%s); open trades are still managed",
                           bot_id, request.reason)
        elif request is not None and not request.paused and freqtrade.state == State.PAUSED and self.paused_by_platform:
            freqtrade.state = State.RUNNING
            self.paused_by_platform = False
            logger.info("bot %s: entries resumed by the platform (%s)", bot_id, request.reason)
        return freqtrade.state == State.PAUSED

    def upload_trades(self) -> str | None:
        """An ECS bot's trades to its configs bucket (``resources.bot_trades``); None for a local bot."""
        if not self.settings.config_path.startswith("s3://") or self.database is None or not self.database.is_file():
            return None
        from resources.bot_trades import upload_trades

        try:
            where = upload_trades(self.database, self.settings.config_path, self.settings.strategy_id)
        except Exception as exc:  # the bucket being unreachable must not stop trading
            logger.warning("trades of %s not uploaded: %s", self.settings.strategy_id, exc)
            return None
        self.uploads += 1
        return where

    def _stats(self, freqtrade: Any) -> tuple[int, float]:
        try:
            return trade_stats(freqtrade)
        except Exception as exc:
            logger.warning("trade statistics not available: %s", exc)
            return 0, 0.0

    def run(self) -> int:
        from freqtrade.commands import Arguments
        from freqtrade.exceptions import FreqtradeException

        settings = self.settings
        logger.info(
            "bot %s: strategy %s, %s, config %s, heartbeat every %ss",
            settings.strategy_id, settings.strategy, settings.trading_mode, settings.config_path,
            settings.heartbeat_seconds,
        )
        self.heartbeats.put("starting")
        final = ("error", 0, 0.0)
        code = EXIT_CRASHED
        try:
            argv = self.prepare()
            args = Arguments(argv).get_parsed_arg()
            self.worker = _worker_class()(args, self)
            self.heartbeats.put("running", *self._stats(self.worker.freqtrade))
            self.worker.run()
        except KeyboardInterrupt:
            logger.info("bot %s: stop requested", settings.strategy_id)
            final, code = ("stopped", *self._final_stats()), EXIT_STOPPED
        except BotRuntimeError as exc:
            logger.error("bot %s cannot start: %s", settings.strategy_id, exc)
            code = EXIT_BAD_INPUT
        except FreqtradeException as exc:
            logger.error("bot %s: freqtrade failed: %s", settings.strategy_id, exc)
            final = ("error", *self._final_stats())
        except Exception:
            logger.exception("bot %s crashed", settings.strategy_id)
            final = ("error", *self._final_stats())
        finally:
            if self.worker is not None:
                try:
                    self.worker.exit()
                except Exception as exc:
                    logger.warning("freqtrade's cleanup failed: %s", exc)
            # A second stop signal while shutting down must not lose the final heartbeat.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            self.upload_trades()
            self.heartbeats.put(*final)
            logger.info("bot %s: %s (exit code %d)", settings.strategy_id, final[0], code)
        return code

    def _final_stats(self) -> tuple[int, float]:
        return (0, 0.0) if self.worker is None else self._stats(self.worker.freqtrade)


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt()


def default_strategy_path() -> Path:
    return Path(os.environ.get(STRATEGIES) or REPO_ROOT / "strategies").resolve()


def main(
    *,
    strategy_path: str | None = None,
    workdir: str | None = None,
    db_url: str | None = None,
    userdir: str | None = None,
    logfile: str | None = None,
) -> int:
    """``tradai run-bot``: run the bot the environment describes until SIGTERM; returns the exit code."""
    from freqtrade.loggers import setup_logging_pre
    from freqtrade.system import asyncio_setup, gc_set_threshold

    # Freqtrade's handling: SIGTERM stops the bot as Ctrl-C does.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    setup_logging_pre()
    asyncio_setup()
    gc_set_threshold()
    try:
        settings = BotSettings.from_env()
        runtime = BotRuntime(
            settings,
            strategy_path=Path(strategy_path).resolve() if strategy_path else default_strategy_path(),
            workdir=Path(workdir or Path.cwd()).resolve(),
            db_url=db_url,
            userdir=userdir,
            logfile=logfile,
        )
    except BotRuntimeError as exc:
        logger.error("tradai run-bot: %s", exc)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return EXIT_STOPPED
    return runtime.run()


if __name__ == "__main__":
    sys.exit(main())
