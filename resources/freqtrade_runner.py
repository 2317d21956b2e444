"""Freqtrade backtesting in-process and offline.

Freqtrade always asks the live exchange for its markets; here the exchange class Freqtrade would pick
is subclassed to serve a stored markets snapshot (and leverage tiers) instead, and everything else
(config validation against the markets, precision, limits, fee maths) stays Freqtrade's own. Candles
reach Freqtrade as a per-run feather data directory, the format its CLI reads, so the engine runs
exactly as ``freqtrade backtesting`` would on the same files. Freqtrade is imported on first use:
loading the code location stays fast.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from dagster import ConfigurableResource
from pydantic import Field

from resources.freqtrade_data import candle_file_stem


class BacktestError(RuntimeError):
    """A backtest that cannot run; the message names the strategy file, pair, or setting at fault."""


@dataclass
class BacktestRequest:
    strategy_name: str
    strategy_file: Path
    config: dict[str, Any]
    """A Freqtrade config (exchange, stake, pairs, timeframe, timerange ...), as a config file holds it."""
    candles: dict[tuple[str, str, str], pd.DataFrame]
    """(pair, timeframe, candle type) -> candles indexed by UTC open time."""
    markets: dict[str, Any]
    leverage_tiers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class BacktestOutcome:
    stats: dict[str, Any]
    """Freqtrade's statistics of the strategy, as plain JSON values."""
    trades: pd.DataFrame
    """Freqtrade's trades frame; ``orders`` holds each trade's orders as a JSON string."""
    wallet: pd.DataFrame
    """Freqtrade's per-candle wallet capture (date, currency, rate, balance)."""
    engine_config: dict[str, Any]
    """The complete config Freqtrade ran with, as plain JSON values."""


def json_safe(value: Any) -> Any:
    """Freqtrade's results hold Timestamps, tuples, Paths, enums and NaN: make them plain JSON."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return json_safe(value.item())
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "value") and isinstance(value.value, str):  # str enums
        return value.value
    return str(value)


def offline_exchange(config: dict[str, Any], markets: dict[str, Any], leverage_tiers: dict[str, list]):
    """An instance of the exchange class Freqtrade would pick for ``config``, fed from a snapshot."""
    import freqtrade.exchange as exchanges
    from freqtrade.exchange import MAP_EXCHANGE_CHILDCLASS

    name = config["exchange"]["name"]
    base = getattr(exchanges, MAP_EXCHANGE_CHILDCLASS.get(name, name).title(), exchanges.Exchange)

    class OfflineExchange(base):
        async def _api_reload_markets(self, reload: bool = False) -> None:
            self._api_async.set_markets(copy.deepcopy(markets))

        def load_leverage_tiers(self) -> dict[str, list[dict]]:
            return copy.deepcopy(leverage_tiers)

    OfflineExchange.__name__ = OfflineExchange.__qualname__ = f"Offline{base.__name__}"
    return OfflineExchange(config, load_leverage_tiers=True)


def write_feather_datadir(datadir: Path, candles: dict[tuple[str, str, str], pd.DataFrame]) -> None:
    """Candles in Freqtrade's data-directory layout, one feather file per series."""
    for (pair, timeframe, candle_type), frame in candles.items():
        stem = candle_file_stem(datadir, pair, timeframe, candle_type)
        stem.parent.mkdir(parents=True, exist_ok=True)
        frame.reset_index().to_feather(stem.with_name(f"{stem.name}.feather"))


def import_strategy_file(path: Path, class_name: str) -> type:
    """The strategy class from its file, with import errors reported against the file.

    Freqtrade's own resolver logs a failing import and then reports the class as missing; doing it
    here first keeps the real reason."""
    from freqtrade.strategy import IStrategy

    spec = importlib.util.spec_from_file_location(f"tradai_strategy_{class_name}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # any failure of user code is reported against its file
        raise BacktestError(f"{path}: cannot import ({type(exc).__name__}: {exc})") from exc
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, IStrategy)):
        raise BacktestError(f"{path}: defines no Freqtrade strategy class {class_name}")
    return cls


def trades_frame(trades: pd.DataFrame) -> pd.DataFrame:
    """Freqtrade's trades with the nested ``orders`` lists as JSON text, so the frame is columnar."""
    out = trades.copy()
    if "orders" in out.columns:
        out["orders"] = [json.dumps(json_safe(o), sort_keys=True) for o in out["orders"]]
    return out.reset_index(drop=True)


class FreqtradeRunner(ConfigurableResource):
    """Runs Freqtrade's backtesting in this process against stored candles and markets, offline."""

    workdir: str | None = Field(
        default=None,
        description="Where per-run temporary data directories go (the system's temp dir by default).",
    )

    def run(self, request: BacktestRequest) -> BacktestOutcome:
        from freqtrade.commands.optimize_commands import setup_optimize_configuration
        from freqtrade.enums import RunMode
        from freqtrade.optimize.backtesting import Backtesting

        # Each run has its own directory: parallel backtests never share files.
        root = Path(tempfile.mkdtemp(prefix=f"backtest-{request.strategy_name}-", dir=self.workdir))
        try:
            strategy_dir = root / "strategies"
            strategy_dir.mkdir()
            strategy_copy = strategy_dir / request.strategy_file.name
            shutil.copyfile(request.strategy_file, strategy_copy)
            import_strategy_file(strategy_copy, request.strategy_name)
            # Freqtrade's default layout: <user_data_dir>/data/<exchange>/
            write_feather_datadir(root / "data" / request.config["exchange"]["name"], request.candles)

            config_file = root / "config.json"
            config_file.write_text(json.dumps(
                {
                    **request.config,
                    "strategy": request.strategy_name,
                    "strategy_path": str(strategy_dir),
                    "user_data_dir": str(root),
                    "dataformat_ohlcv": "feather",
                    "backtest_cache": "none",  # Freqtrade's cache ignores markets, data and versions
                    "export": "none",
                },
                indent=2,
            ))
            try:
                config = setup_optimize_configuration({"config": [str(config_file)]}, RunMode.BACKTEST)
                engine_config = json_safe(config)
                exchange = offline_exchange(config, request.markets, request.leverage_tiers)
                try:
                    backtesting = Backtesting(config, exchange=exchange)
                    backtesting.start()
                finally:
                    Backtesting.cleanup()
                    exchange.close()
            except BacktestError:
                raise
            except Exception as exc:  # Freqtrade's and the strategy's own errors, re-raised with context
                raise BacktestError(
                    f"backtest of {request.strategy_name} ({request.strategy_file}) failed: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            content = backtesting.all_bt_content[request.strategy_name]
            return BacktestOutcome(
                stats=json_safe(backtesting.results["strategy"][request.strategy_name]),
                trades=trades_frame(content["results"]),
                wallet=content["wallet_summary"],
                engine_config=engine_config,
            )
        finally:
            shutil.rmtree(root)
