"""Freqtrade's bias analyses as asset checks of a strategy's backtest, for strategies that opt in
with the class attribute ``bias_checks = True`` (each analysis re-runs many backtests).

- ``no_lookahead_bias`` (error, blocking): Freqtrade's lookahead-analysis. It re-runs the backtest
  cut off right after each trade's entry and exit and compares the signals and indicators with the
  full run; a strategy that reads future candles gets different ones.
- ``indicators_independent_of_startup`` (warning): Freqtrade's recursive-analysis. Indicators with
  a recursive formula (EMA, RSI ...) change with the number of candles before them; the check warns
  when, with the strategy's own ``startup_candle_count``, an indicator's last value is off by more
  than 0.1% from its value computed on all candles.

Both analyse exactly what the latest backtest ran on: its config (by hash), markets snapshot (by
hash) and candles (at their ArcticDB versions), offline. The analyses' own settings are Freqtrade's
config keys (``minimum_trade_amount``, ``targeted_trade_amount``, ``startup_candle``), set in the
strategy's ``config_overrides`` like any other key.
"""

from __future__ import annotations

import json
import math

import dagster as dg

from resources.arctic import ArcticStore
from resources.backtest_store import BacktestStore
from resources.freqtrade_runner import BacktestError, BacktestRequest, FreqtradeRunner
from tradai_assets.backtests import BacktestInputError, plan_backtest
from tradai_core.strategy_discovery import StrategySpec, source_hash

RECURSIVE_TOLERANCE = 0.001


def backtested_request(spec: StrategySpec, arctic: ArcticStore, store: BacktestStore) -> BacktestRequest:
    """The inputs of the strategy's latest backtest, pinned by its lineage."""
    lineage = store.latest_lineage(spec.name)
    if lineage is None:
        raise dg.Failure(description=f"{spec.name}: no backtest stored yet; materialise strategies/{spec.name}/backtest first")
    if source_hash(spec.file) != lineage["strategy_source_hash"]:
        raise dg.Failure(
            description=f"{spec.file} changed since the latest backtest of {spec.name}; materialise the backtest again"
        )
    try:
        config = store.config(spec.name, lineage["config_hash"])
        plan = plan_backtest(
            arctic, spec.name, spec.file, config, lineage["config_hash"],
            markets_hash=lineage["markets_snapshot_hash"], data_versions=json.loads(lineage["data_versions"]),
        )
    except (KeyError, BacktestInputError) as exc:
        raise dg.Failure(description=f"{spec.name}: cannot rebuild the backtest's inputs: {exc}") from exc
    return plan.request


def build_bias_checks(spec: StrategySpec, backtest_key: dg.AssetKey) -> list[dg.AssetChecksDefinition]:
    if not spec.bias_checks or spec.problem:
        return []

    @dg.asset_check(
        asset=backtest_key,
        name="no_lookahead_bias",
        blocking=True,
        description="Freqtrade's lookahead-analysis: signals and indicators are the same when the candles "
        "after each entry and exit are cut off.",
    )
    def no_lookahead_bias(arctic: ArcticStore, backtest_store: BacktestStore, freqtrade_runner: FreqtradeRunner):
        request = backtested_request(spec, arctic, backtest_store)
        try:
            found = freqtrade_runner.analyse_lookahead(request)
        except BacktestError as exc:
            raise dg.Failure(description=str(exc)) from exc
        metadata = {
            "analysed_trades": found.analysed_trades,
            "false_entry_signals": found.false_entry_signals,
            "false_exit_signals": found.false_exit_signals,
            "biased_indicators": dg.MetadataValue.json(found.biased_indicators),
        }
        if found.has_bias:
            return dg.AssetCheckResult(
                passed=False, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata,
                description=f"{spec.name} looks ahead: {found.false_entry_signals} entry and {found.false_exit_signals} "
                f"exit signal(s) change when later candles are cut off; biased columns: "
                f"{', '.join(found.biased_indicators) or 'none'}",
            )
        if found.inconclusive:
            return dg.AssetCheckResult(
                passed=False, severity=dg.AssetCheckSeverity.WARN, metadata=metadata,
                description=f"too few trades to judge ({found.analysed_trades} < minimum_trade_amount "
                f"{found.minimum_trades}): widen the timerange or lower minimum_trade_amount",
            )
        return dg.AssetCheckResult(passed=True, metadata=metadata)

    @dg.asset_check(
        asset=backtest_key,
        name="indicators_independent_of_startup",
        description="Freqtrade's recursive-analysis: with the strategy's startup_candle_count, no indicator's "
        f"last value is off by more than {RECURSIVE_TOLERANCE:.1%} from its value on all candles.",
    )
    def indicators_independent_of_startup(
        arctic: ArcticStore, backtest_store: BacktestStore, freqtrade_runner: FreqtradeRunner
    ):
        request = backtested_request(spec, arctic, backtest_store)
        try:
            found = freqtrade_runner.analyse_recursion(request)
        except BacktestError as exc:
            raise dg.Failure(description=str(exc)) from exc
        own = found.strategy_startup_candles
        off = {
            name: values[own] for name, values in found.differences.items()
            if own in values and (math.isnan(values[own]) or abs(values[own]) > RECURSIVE_TOLERANCE)
        }
        metadata = {
            "strategy_startup_candles": own,
            "relative_differences": dg.MetadataValue.json(
                {name: {str(k): (None if math.isnan(v) else v) for k, v in values.items()} for name, values in found.differences.items()}
            ),
        }
        if off:
            listed = ", ".join(f"{name} ({'not comparable' if math.isnan(v) else f'{v:+.3%}'})" for name, v in sorted(off.items()))
            return dg.AssetCheckResult(
                passed=False, severity=dg.AssetCheckSeverity.WARN, metadata=metadata,
                description=f"with startup_candle_count {own}, these indicators differ from their value on all candles: "
                f"{listed}; raise startup_candle_count",
            )
        return dg.AssetCheckResult(passed=True, metadata=metadata)

    return [no_lookahead_bias, indicators_independent_of_startup]
