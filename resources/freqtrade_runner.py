"""Freqtrade backtesting in-process and offline.

Freqtrade always asks the live exchange for its markets; here the exchange class Freqtrade would pick
is subclassed to serve a stored markets snapshot (and leverage tiers) instead, and everything else
(config validation against the markets, precision, limits, fee maths) stays Freqtrade's own. Candles
reach Freqtrade as a per-run feather data directory, the format its CLI reads, so the engine runs
exactly as ``freqtrade backtesting`` would on the same files. Freqtrade is imported on first use:
loading the code location stays fast.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import math
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from dagster import ConfigurableResource
from pydantic import Field

from resources.freqtrade_data import candle_file_stem
from resources.tick_size import vectorised_tick_size
from tradai_core.sweeps import STRATEGY_PARAMETERS_KEY, ParameterInfo


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


@dataclass
class LookaheadFindings:
    """What Freqtrade's lookahead-analysis found."""

    analysed_trades: int
    minimum_trades: int
    false_entry_signals: int
    false_exit_signals: int
    biased_indicators: list[str]
    has_bias: bool
    inconclusive: bool
    """Too few trades to judge (fewer than the config's ``minimum_trade_amount``)."""


@dataclass
class RecursionFindings:
    """What Freqtrade's recursive-analysis found."""

    strategy_startup_candles: int
    differences: dict[str, dict[int, float]]
    """Indicator -> startup candle count -> relative difference of its last value from the value
    computed on all candles (NaN where one side is zero or not a number)."""


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


def exchange_class(config: dict[str, Any]) -> type:
    """The exchange class Freqtrade picks for the config."""
    import freqtrade.exchange as exchanges
    from freqtrade.exchange import MAP_EXCHANGE_CHILDCLASS

    name = config["exchange"]["name"]
    return getattr(exchanges, MAP_EXCHANGE_CHILDCLASS.get(name, name).title(), exchanges.Exchange)


@dataclass(frozen=True)
class FuturesSeries:
    """Where Freqtrade's futures backtest reads funding rates and mark prices (its ``_ft_has`` options)."""

    funding_timeframe: str
    mark_timeframe: str
    mark_candle_type: str


def futures_series(config: dict[str, Any]) -> FuturesSeries:
    options = exchange_class(config).combine_ft_has(include_futures=True)
    options.update(config["exchange"].get("_ft_has_params", {}))
    return FuturesSeries(options["funding_fee_timeframe"], options["mark_ohlcv_timeframe"], options["mark_ohlcv_price"])


def offline_exchange(config: dict[str, Any], markets: dict[str, Any], leverage_tiers: dict[str, list]):
    """An instance of the exchange class Freqtrade would pick for ``config``, fed from a snapshot."""
    base = exchange_class(config)

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


class StrategyParameterError(BacktestError):
    """Parameter values the strategy does not declare or would not accept; the message names them."""


def parameter_objects(strategy_class: type) -> dict[str, Any]:
    """The strategy's hyperopt parameters (``IntParameter``, ``DecimalParameter`` ...) by name, each
    with its ``space`` set, as Freqtrade detects them."""
    from freqtrade.strategy.hyper import detect_all_parameters

    try:
        spaces = detect_all_parameters(strategy_class)
    except Exception as exc:  # Freqtrade's own refusal of a parameter (no space, invalid space)
        raise StrategyParameterError(f"{strategy_class.__name__}: {exc}") from exc
    return {name: parameter for space in spaces.values() for name, parameter in space.items()}


def describe_parameter(parameter: Any) -> str:
    kind = type(parameter).__name__
    if hasattr(parameter, "opt_range"):
        return f"{kind} in {list(parameter.opt_range)}, space {parameter.space}"
    return f"{kind} {parameter.low}..{parameter.high}, space {parameter.space}"


def parameter_problems(strategy_name: str, parameters: dict[str, Any], values: dict[str, Any]) -> list[str]:
    """What is wrong with ``values`` for the declared ``parameters``: unknown names, values of the wrong
    type or outside the declared range or categories, parameters Freqtrade would not load."""
    from freqtrade.strategy.parameters import IntParameter, NumericParameter

    known = "; ".join(f"{n} ({describe_parameter(p)})" for n, p in sorted(parameters.items())) or "none"
    problems = []
    for name, value in values.items():
        parameter = parameters.get(name)
        if parameter is None:
            problems.append(f"{name!r} is not a hyperopt parameter of {strategy_name} (it has: {known})")
        elif not parameter.load:
            problems.append(f"{name}: declared with load=False, so Freqtrade would ignore the value {value!r}")
        elif isinstance(parameter, NumericParameter):
            number = isinstance(value, int if isinstance(parameter, IntParameter) else int | float)
            if not number or isinstance(value, bool):
                problems.append(f"{name}: {value!r} is not a{'n integer' if isinstance(parameter, IntParameter) else ' number'} "
                                f"({describe_parameter(parameter)})")
            elif not parameter.low <= value <= parameter.high:
                problems.append(f"{name}: {value!r} is outside {parameter.low}..{parameter.high}")
        elif value not in list(parameter.opt_range):
            problems.append(f"{name}: {value!r} is not one of {list(parameter.opt_range)}")
    return problems


def write_parameter_file(strategy_copy: Path, strategy_class: type, parameters: dict[str, dict[str, Any]]) -> None:
    """Freqtrade's strategy parameter file (``<strategy file>.json``, the file its hyperopt exports and
    every run mode loads) holding ``parameters`` ({space: {name: value}}, the config's
    ``strategy_parameters``); the parameters not named keep their defaults. Refuses values the strategy
    would not take, and a name under another space than its own, which Freqtrade would silently ignore."""
    declared = parameter_objects(strategy_class)
    values = {name: value for by_name in parameters.values() for name, value in by_name.items()}
    problems = parameter_problems(strategy_class.__name__, declared, values)
    counts = Counter(name for by_name in parameters.values() for name in by_name)
    problems += [f"{name}: given in {count} spaces" for name, count in counts.items() if count > 1]
    problems += [
        f"{name}: given in space {space!r}, but declared in space {declared[name].space!r}"
        for space, by_name in parameters.items() for name in by_name
        if name in declared and declared[name].space != space
    ]
    if problems:
        raise StrategyParameterError(f"{strategy_copy.name}: " + "; ".join(problems))
    strategy_copy.with_suffix(".json").write_text(json.dumps(
        {"strategy_name": strategy_class.__name__, "params": parameters, "ft_stratparam_v": 1}, indent=2, sort_keys=True
    ))


def parameters_by_space(strategy_class: type, values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Parameter values by name as the config's ``strategy_parameters`` holds them: {space: {name: value}};
    a name the strategy does not declare is refused."""
    declared = parameter_objects(strategy_class)
    unknown = parameter_problems(strategy_class.__name__, declared, {n: v for n, v in values.items() if n not in declared})
    if unknown:
        raise StrategyParameterError("; ".join(unknown))
    out: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        out.setdefault(declared[name].space, {})[name] = value
    return out


def strategy_parameters(path: Path, class_name: str) -> dict[str, ParameterInfo]:
    """The hyperopt parameters the strategy class declares, found by Freqtrade's own detection
    (``detect_all_parameters``: the parameter objects and their spaces, named or by prefix)."""
    from freqtrade.exceptions import DependencyException
    from freqtrade.strategy import (
        BooleanParameter,
        CategoricalParameter,
        DecimalParameter,
        IntParameter,
        RealParameter,
    )
    from freqtrade.strategy.hyper import detect_all_parameters

    cls = import_strategy_file(path, class_name)
    try:
        detected = detect_all_parameters(cls)
    except DependencyException as exc:
        raise BacktestError(f"{path}: {class_name}: {exc}") from exc
    out: dict[str, ParameterInfo] = {}
    for space, parameters in detected.items():
        for name, p in parameters.items():
            common = {"name": name, "space": space, "default": p.value, "optimize": bool(p.optimize)}
            if isinstance(p, BooleanParameter):
                out[name] = ParameterInfo(kind="boolean", categories=tuple(p.opt_range), **common)
            elif isinstance(p, CategoricalParameter):
                out[name] = ParameterInfo(kind="categorical", categories=tuple(p.opt_range), **common)
            elif isinstance(p, IntParameter):
                out[name] = ParameterInfo(kind="int", low=p.low, high=p.high, **common)
            elif isinstance(p, DecimalParameter):
                out[name] = ParameterInfo(kind="decimal", low=p.low, high=p.high, decimals=p.decimals, **common)
            elif isinstance(p, RealParameter):
                out[name] = ParameterInfo(kind="real", low=p.low, high=p.high, **common)
            else:
                raise BacktestError(f"{path}: {class_name}.{name}: unsupported parameter type {type(p).__name__}")
    return out


def trades_frame(trades: pd.DataFrame) -> pd.DataFrame:
    """Freqtrade's trades with the nested ``orders`` lists as JSON text, so the frame is columnar."""
    out = trades.copy()
    if "orders" in out.columns:
        out["orders"] = [json.dumps(json_safe(o), sort_keys=True) for o in out["orders"]]
    return out.reset_index(drop=True)


class BacktestSession:
    """A loaded Freqtrade engine (``FreqtradeRunner.session``) that backtests parameter sets one by one."""

    def __init__(self, request: BacktestRequest, backtesting, data, timerange, engine_config: dict[str, Any]):
        self.request = request
        self._backtesting = backtesting
        self._data = data
        self._timerange = timerange
        self._engine_config = engine_config
        self._strategy = backtesting.strategylist[0]
        # Every parameter's value as a fresh engine starts: the class's default, under the config's
        # own parameter file. A run's values go over these; parameters are class attributes, so a
        # value a run leaves out must be set back explicitly.
        from freqtrade.misc import deep_merge_dicts
        from freqtrade.strategy.hyper import detect_all_parameters

        defaults = {space: {name: p.value for name, p in params.items()}
                    for space, params in detect_all_parameters(self._strategy).items()}
        self._base_parameters = deep_merge_dicts(copy.deepcopy(self._strategy._ft_params_from_file), defaults)

    def run(self, parameters: dict[str, dict[str, Any]]) -> BacktestOutcome:
        """Backtest with these hyperopt parameter values ({space: {name: value}}) over the config's own."""
        from freqtrade.misc import deep_merge_dicts
        from freqtrade.optimize.optimize_reports import generate_backtest_stats

        bt, name = self._backtesting, self.request.strategy_name
        self._strategy._ft_params_from_file = deep_merge_dicts(copy.deepcopy(parameters), copy.deepcopy(self._base_parameters))
        # What a new Backtesting starts from; reset_backtest (called by backtest) clears the rest.
        bt.trade_id_counter = bt.order_id_counter = 0
        bt.all_bt_content, bt.rejected_dict = {}, {}
        try:
            min_date, max_date = bt.backtest_one_strategy(self._strategy, self._data, self._timerange)
            stats = generate_backtest_stats(self._data, bt.all_bt_content, min_date=min_date, max_date=max_date)
        except Exception as exc:  # Freqtrade's and the strategy's own errors, re-raised with context
            raise BacktestError(
                f"backtest of {name} ({self.request.strategy_file}) with {json.dumps(json_safe(parameters))} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        content = bt.all_bt_content[name]
        engine_config = {**self._engine_config, STRATEGY_PARAMETERS_KEY: json_safe(
            deep_merge_dicts(copy.deepcopy(parameters), copy.deepcopy(self._base_parameters)))}
        return BacktestOutcome(
            stats=json_safe(stats["strategy"][name]),
            trades=trades_frame(content["results"]),
            wallet=content["wallet_summary"],
            engine_config=engine_config,
        )


class FreqtradeRunner(ConfigurableResource):
    """Runs Freqtrade's backtesting in this process against stored candles and markets, offline."""

    workdir: str | None = Field(
        default=None,
        description="Where per-run temporary data directories go (the system's temp dir by default).",
    )
    vectorised_tick_size: bool = Field(
        default=True,
        description="Compute Freqtrade's per-month price precision arithmetically (identical result, "
        "about half of a long backtest saved) instead of printing every price.",
    )

    @contextlib.contextmanager
    def _engine_files(self, request: BacktestRequest, purpose: str) -> Iterator[Path]:
        """A per-run directory with the strategy, the candles as a feather data directory and a
        config file; removed afterwards. Parallel runs never share files."""
        root = Path(tempfile.mkdtemp(prefix=f"{purpose}-{request.strategy_name}-", dir=self.workdir))
        try:
            strategy_dir = root / "strategies"
            strategy_dir.mkdir()
            strategy_copy = strategy_dir / request.strategy_file.name
            shutil.copyfile(request.strategy_file, strategy_copy)
            strategy_class = import_strategy_file(strategy_copy, request.strategy_name)
            # Freqtrade loads a strategy's parameter values from <strategy file>.json (HyperStrategyMixin):
            # a sweep's or a walk-forward's values, or a config's applied sweep result, all by space.
            if parameters := request.config.get(STRATEGY_PARAMETERS_KEY):
                write_parameter_file(strategy_copy, strategy_class, parameters)
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
            yield config_file
        finally:
            shutil.rmtree(root)

    def run(self, request: BacktestRequest) -> BacktestOutcome:
        from freqtrade.commands.optimize_commands import setup_optimize_configuration
        from freqtrade.enums import RunMode
        from freqtrade.optimize.backtesting import Backtesting

        with self._engine_files(request, "backtest") as config_file:
            try:
                config = setup_optimize_configuration({"config": [str(config_file)]}, RunMode.BACKTEST)
                engine_config = json_safe(config)
                exchange = offline_exchange(config, request.markets, request.leverage_tiers)
                try:
                    with vectorised_tick_size(self.vectorised_tick_size):
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

    @contextlib.contextmanager
    def session(self, request: BacktestRequest) -> Iterator[BacktestSession]:
        """One Freqtrade engine for many backtests of the request's strategy on its candles and
        markets, each with other hyperopt parameter values (a sweep worker's trials).

        Freqtrade, the strategy, the exchange and the candles (with their price precision) load once;
        each ``BacktestSession.run`` then does what a fresh ``run`` does with a parameter file: the
        strategy starts again with the values, indicators and signals are computed anew, and the
        trade loop runs from a reset state. The trades equal those of ``run`` with the same
        ``strategy_parameters`` in the config."""
        from freqtrade.commands.optimize_commands import setup_optimize_configuration
        from freqtrade.enums import RunMode
        from freqtrade.optimize.backtesting import Backtesting

        with self._engine_files(request, "session") as config_file:
            try:
                config = setup_optimize_configuration({"config": [str(config_file)]}, RunMode.BACKTEST)
                exchange = offline_exchange(config, request.markets, request.leverage_tiers)
            except Exception as exc:  # Freqtrade's and the strategy's own errors, re-raised with context
                raise BacktestError(
                    f"backtest of {request.strategy_name} ({request.strategy_file}) failed: {type(exc).__name__}: {exc}"
                ) from exc
            try:
                with vectorised_tick_size(self.vectorised_tick_size):
                    try:
                        backtesting = Backtesting(config, exchange=exchange)
                        data, timerange = backtesting.load_bt_data()
                    except Exception as exc:
                        raise BacktestError(
                            f"backtest of {request.strategy_name} ({request.strategy_file}) failed: "
                            f"{type(exc).__name__}: {exc}"
                        ) from exc
                    yield BacktestSession(request, backtesting, data, timerange, json_safe(config))
            finally:
                Backtesting.cleanup()
                exchange.close()

    def analyse_lookahead(self, request: BacktestRequest) -> LookaheadFindings:
        """Freqtrade's ``lookahead-analysis`` of the strategy on the request's candles, offline: it
        re-runs the backtest cut off at each trade's entry and exit and compares signals and
        indicators with the full run."""
        from freqtrade.optimize.analysis.lookahead import LookaheadAnalysis
        from freqtrade.optimize.analysis.lookahead_helpers import (
            LookaheadAnalysisSubFunctions,
        )

        analysis = self._analyse(request, "lookahead", LookaheadAnalysisSubFunctions.calculate_config_overrides, LookaheadAnalysis)
        found = analysis.current_analysis
        return LookaheadFindings(
            analysed_trades=found.total_signals,
            minimum_trades=int(analysis.local_config["minimum_trade_amount"]),
            false_entry_signals=found.false_entry_signals,
            false_exit_signals=found.false_exit_signals,
            biased_indicators=list(found.false_indicators),
            has_bias=found.has_bias,
            inconclusive=analysis.failed_bias_check,
        )

    def analyse_recursion(self, request: BacktestRequest) -> RecursionFindings:
        """Freqtrade's ``recursive-analysis``: the indicators whose last value depends on how many
        startup candles precede it."""
        from freqtrade.optimize.analysis.recursive import RecursiveAnalysis
        from freqtrade.optimize.analysis.recursive_helpers import (
            RecursiveAnalysisSubFunctions,
        )

        analysis = self._analyse(request, "recursive", RecursiveAnalysisSubFunctions.calculate_config_overrides, RecursiveAnalysis)
        return RecursionFindings(
            strategy_startup_candles=int(analysis._strat_scc or 0),
            differences={name: {int(k): float(v) for k, v in values.items()} for name, values in analysis.dict_recursive.items()},
        )

    def _analyse(self, request: BacktestRequest, purpose: str, overrides, analysis_class):
        from freqtrade.configuration import setup_utils_configuration
        from freqtrade.enums import RunMode
        from freqtrade.optimize.backtesting import Backtesting
        from freqtrade.util import get_progress_tracker

        with self._engine_files(request, purpose) as config_file:
            try:
                # As Freqtrade's CLI sets the analyses up (commands/optimize_commands.py).
                config = overrides(setup_utils_configuration({"config": [str(config_file)]}, RunMode.UTIL_NO_EXCHANGE))
                strategy = {"name": request.strategy_name, "location": Path(config["strategy_path"]) / request.strategy_file.name}
                analysis = analysis_class(config, strategy)
                # The analysis builds its backtests on this exchange instead of a live one.
                analysis.exchange = offline_exchange(config, request.markets, request.leverage_tiers)
                try:
                    with vectorised_tick_size(self.vectorised_tick_size), get_progress_tracker() as progress:
                        analysis.start(progress)
                finally:
                    Backtesting.cleanup()
                    analysis.exchange.close()
            except Exception as exc:  # Freqtrade's and the strategy's own errors, re-raised with context
                raise BacktestError(
                    f"{purpose} analysis of {request.strategy_name} ({request.strategy_file}) failed: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        return analysis
