"""Walk-forward optimisation as an asset: ``strategies/<Name>/walk_forward`` for every strategy that
declares Freqtrade hyperopt parameters.

Materialised with run config (windows, grid, objective): each window's train span is searched over
the grid with Freqtrade backtests, the best parameters are backtested on the following test span,
and the out-of-sample trades and equity curve are stitched (``tradai_core.walk_forward``). Every
backtest runs on the same pinned inputs (config by hash, markets snapshot, candle versions), the
parameters applied as Freqtrade's strategy parameter file. Results go to the backtest store beside
the canonical backtest, and to one MLflow run.
"""

import base64
import dataclasses
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from resources import aws_contract
from resources.arctic import ArcticStore
from resources.backtest_store import BacktestStore
from resources.freqtrade_runner import (
    BacktestError,
    FreqtradeRunner,
    import_strategy_file,
    parameter_objects,
    parameter_problems,
    parameters_by_space,
)
from resources.mlflow_tracker import MlflowTracker
from tradai_assets.backtests import (
    BacktestInputError,
    BacktestPlan,
    equity_curve,
    equity_png,
    plan_backtest,
    trades_hash,
)
from tradai_core.candles import timeframe_delta
from tradai_core.keys import config_key
from tradai_core.strategy_config import market_type
from tradai_core.strategy_discovery import StrategySpec, declared_parameters
from tradai_core.sweeps import STRATEGY_PARAMETERS_KEY, merge_parameters
from tradai_core.walk_forward import (
    GridSearch,
    WalkForwardError,
    WalkForwardResult,
    WalkForwardSpec,
    WindowOutcome,
    run_walk_forward,
    windows,
)


def walk_forward_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["strategies", name, "walk_forward"])


class WalkForwardConfig(dg.Config):
    train: str
    """The train (in-sample) span of a window, whole days: '10d', '2w'. Anchored windows: the first one's."""
    test: str
    """The test (out-of-sample) span that follows each train span, whole days."""
    step: str | None = None
    """How far each window moves on (default: the test span, so test spans tile the data)."""
    mode: str = "rolling"
    """'rolling' (the train span slides) or 'anchored' (it starts at the first candle and grows)."""
    grid: dict[str, list[Any]]
    """Hyperopt parameter name -> the values to try, e.g. {"buy_rsi": [25, 30, 35]}; every combination is tried."""
    objective: str = "sharpe"
    """What picks the best grid point in sample: one of sharpe, sortino, calmar, profit, profit_abs, cagr."""
    min_trades: int = 1
    """A grid point with fewer in-sample trades cannot be chosen."""


def _fail(message: str) -> dg.Failure:
    return dg.Failure(description=message)


def data_span(plan: BacktestPlan) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The stored candles of the strategy's pairs within its config's timerange: [first open, last close)."""
    step = timeframe_delta(plan.timeframe)
    frames = [plan.request.candles[(p, plan.timeframe, market_type(plan.config))] for p in plan.pairs]
    first = min(f.index[0] for f in frames)
    end = max(f.index[-1] for f in frames) + step
    start_text, _, stop_text = plan.timerange.partition("-")
    return max(first, pd.Timestamp(start_text, tz="UTC")), min(end, pd.Timestamp(stop_text, tz="UTC"))


def backtest_with(plan: BacktestPlan, runner: FreqtradeRunner):
    """The backtest callable of a walk-forward: the plan's pinned inputs, another timerange and parameters."""

    strategy_class = import_strategy_file(plan.request.strategy_file, plan.request.strategy_name)
    base = plan.request.config.get(STRATEGY_PARAMETERS_KEY, {})

    def backtest(params: dict[str, Any], timerange: str) -> WindowOutcome:
        # The window's values over the config's own (an applied sweep result), as Freqtrade's parameter file.
        parameters = merge_parameters(base, parameters_by_space(strategy_class, dict(params)))
        request = dataclasses.replace(
            plan.request, config={**plan.request.config, "timerange": timerange, STRATEGY_PARAMETERS_KEY: parameters}
        )
        outcome = runner.run(request)
        return WindowOutcome(outcome.trades, equity_curve(outcome.wallet), outcome.stats)

    return backtest


def _plain(value: Any) -> Any:
    """Table cells: NaN as empty, numpy scalars as Python numbers, anything else as JSON text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if hasattr(value, "item"):
        return _plain(value.item())
    return json.dumps(value, sort_keys=True)


def _table(frame: pd.DataFrame) -> dg.MetadataValue:
    kinds = {"window": "int", "trades": "int", "changes": "int", "distinct": "int"}
    columns = [
        dg.TableColumn(
            c, kinds.get(c.removeprefix("is_").removeprefix("oos_"), "string" if frame[c].dtype == object else "float")
        )
        for c in frame.columns
    ]
    records = [dg.TableRecord({c: _plain(v) for c, v in row.items()}) for row in frame.to_dict("records")]
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=columns))


def _figure(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "undefined"
    return f"{100 * value:.2f}%" if percent else f"{value:.3f}"


def summary_markdown(name: str, spec: WalkForwardSpec, summary: dict[str, Any], currency: str, run_link: str) -> str:
    rows = [
        ("annualised return", _figure(summary["is_annual_return"], True), _figure(summary["oos_annual_return"], True)),
        (
            "profit",
            f"{_figure(summary['is_profit'], True)} (mean per window)",
            f"{_figure(summary['oos_profit'], True)} ({summary['oos_profit_abs']:.8f} {currency})",
        ),
        ("sharpe", f"{_figure(summary['is_sharpe'])} (mean)", _figure(summary["oos_sharpe"])),
        ("trades", f"{summary['is_trades']:.1f} (mean per window)", str(summary["oos_trades"])),
    ]
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    efficiency = summary["efficiency"]
    verdict = "undefined: the in-sample return is not positive" if efficiency is None else f"{efficiency:.2f}"
    described = ", ".join(f"{k} {v}" for k, v in spec.describe().items())
    return (
        f"### Walk-forward of {name}\n\n{summary['windows']} windows ({described}), {summary['oos_days']} days out of sample.\n\n"
        f"| | in sample | out of sample |\n|---|---|---|\n{table}\n\n"
        f"**Walk-forward efficiency** (out-of-sample over in-sample annualised return): {verdict}\n\n"
        f"MLflow run: {run_link}\n"
    )


def _report(
    spec: WalkForwardSpec, result: WalkForwardResult, config: WalkForwardConfig, search: GridSearch
) -> dict[str, Any]:
    return {
        "trials": [{k: _plain(v) if k != "params" else v for k, v in t.items()} for t in search.trials],
        "spec": spec.describe(),
        "grid": config.grid,
        "objective": config.objective,
        "min_trades": config.min_trades,
        "windows": [
            {k: _plain(v) if k != "params" else v for k, v in row.items()}
            for row in result.window_table().to_dict("records")
        ],
        "summary": result.summary(),
        "stability": [
            {k: _plain(v) if k != "values" else v for k, v in row.items()}
            for row in result.stability().to_dict("records")
        ],
    }


def build_walk_forward_asset(spec: StrategySpec, base: dict[str, Any]) -> dg.AssetsDefinition:
    exchange, mtype = base["exchange"]["name"], market_type({**base, **spec.config_overrides})

    @dg.asset(
        key=walk_forward_key(spec.name),
        group_name=f"strategy_{spec.name}",
        kinds={"freqtrade", "mlflow"},
        code_version=spec.code_version,
        deps=[
            config_key(spec.name),
            dg.AssetKey(["markets", exchange, mtype]),
            dg.AssetKey(["ohlcv", exchange, mtype]),
        ],
        description=(
            f"Walk-forward optimisation of {spec.name} ({spec.file.name}): per window, the grid's best hyperopt "
            "parameters in sample, backtested on the following out-of-sample span; the out-of-sample trades and "
            "equity curve stitched, beside the in-sample figures and the parameters' stability. Run config: "
            "train, test, step, mode, grid, objective, min_trades."
        ),
        metadata=spec.ui_metadata(),
        tags=aws_contract.ecs_run_tags("backtest"),
    )
    def walk_forward(
        context: dg.AssetExecutionContext,
        config: WalkForwardConfig,
        arctic: ArcticStore,
        backtest_store: BacktestStore,
        freqtrade_runner: FreqtradeRunner,
        mlflow: MlflowTracker,
    ):
        if spec.problem:
            raise _fail(spec.problem)
        stored = backtest_store.latest_config(spec.name)
        if stored is None:
            raise _fail(f"{spec.name}: no stored config; materialise {config_key(spec.name).to_user_string()} first")
        strategy_config, digest = stored
        # Every setting is checked before the first backtest starts.
        try:
            wf_spec = WalkForwardSpec.parse(config.train, config.test, config.step, config.mode)
            plan = plan_backtest(arctic, spec.name, spec.file, strategy_config, digest)
            parameters = parameter_objects(import_strategy_file(spec.file, spec.name))
            problems = [
                problem
                for name, values in config.grid.items()
                for value in (values if isinstance(values, list) else [values])
                for problem in parameter_problems(spec.name, parameters, {name: value})
            ]
            if problems:
                raise WalkForwardError("grid: " + "; ".join(dict.fromkeys(problems)))
            search = GridSearch(config.grid, config.objective, config.min_trades, backtest_with(plan, freqtrade_runner))
            found = windows(wf_spec, *data_span(plan))
        except (WalkForwardError, BacktestInputError, BacktestError) as exc:
            raise _fail(f"{spec.name}: {exc}") from exc
        for warning in plan.warnings:
            context.log.warning(warning)
        context.log.info(
            f"{spec.name}: {len(found)} windows x {len(search.points)} grid points, "
            f"up to {len(found) * (len(search.points) + 1)} backtests"
        )
        try:
            result = run_walk_forward(found, search.optimise, search.backtest, context.log)
        except (WalkForwardError, BacktestError) as exc:
            raise _fail(f"{spec.name}: {exc}") from exc

        trades, equity = result.trades(), result.equity()
        report = _report(wf_spec, result, config, search)
        summary = report["summary"]
        digest_trades = trades_hash(trades)
        png = equity_png(
            equity[["equity"]],
            f"{spec.name} walk-forward, out of sample",
            boundaries=tuple(w.test_start for w in found[1:]),
        )
        lineage = {
            **plan.lineage(),
            "timerange": f"{found[0].train_timerange[:8]}-{found[-1].test_timerange[9:]}",
            "walk_forward": json.dumps(wf_spec.describe(), sort_keys=True),
            "grid": json.dumps(config.grid, sort_keys=True),
            "objective": config.objective,
            "min_trades": str(config.min_trades),
            "chosen_params": json.dumps(result.params),
        }
        metrics = {k: float(v) for k, v in summary.items() if v is not None}
        with tempfile.TemporaryDirectory(prefix=f"mlflow-walk-forward-{spec.name}-") as tmp:
            out = Path(tmp)
            (out / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True))
            (out / "config.json").write_text(json.dumps(strategy_config, indent=2, sort_keys=True))
            trades.to_parquet(out / "trades.parquet", index=False)
            (out / "equity.png").write_bytes(png)
            (out / spec.file.name).write_bytes(spec.file.read_bytes())
            run_id = mlflow.log_run(
                experiment=f"strategies/{spec.name}",
                run_name=f"walk_forward {spec.name} {lineage['timerange']}",
                params=lineage,
                metrics=metrics,
                tags={
                    "dagster.run_id": context.run.run_id,
                    "tradai.kind": "walk_forward",
                    "tradai.trades_hash": digest_trades,
                },
                artifact_dir=out,
            )
        run_url = mlflow.run_url(run_id)
        backtest_store.write_walk_forward(
            spec.name, trades, equity, report, {**lineage, "mlflow_run_id": run_id, "trades_hash": digest_trades}
        )
        context.log.info(f"{spec.name}: {search.backtests} backtests; chosen per window: {result.params}")

        efficiency = summary["efficiency"]
        metadata: dict[str, Any] = {
            "summary": dg.MetadataValue.md(
                summary_markdown(spec.name, wf_spec, summary, plan.config["stake_currency"], f"[{run_id}]({run_url})")
            ),
            "windows": _table(
                result.window_table().assign(params=[json.dumps(p, sort_keys=True) for p in result.params])
            ),
            "parameter_stability": _table(result.stability()),
            "equity_curve": dg.MetadataValue.md(
                f"![out-of-sample equity of {spec.name}](data:image/png;base64,{base64.b64encode(png).decode()})"
            ),
            "efficiency": dg.MetadataValue.float(efficiency)
            if efficiency is not None
            else dg.MetadataValue.text("undefined: the in-sample return is not positive"),
            **{
                k: dg.MetadataValue.float(float(v))
                for k, v in summary.items()
                if k not in ("efficiency", "windows") and v is not None
            },
            "trades": dg.MetadataValue.int(len(trades)),
            "backtests": dg.MetadataValue.int(search.backtests),
            "chosen_params": dg.MetadataValue.json(result.params),
            "mlflow_run_id": run_id,
            "mlflow_run": dg.MetadataValue.url(run_url),
            "config_hash": digest,
            "markets_snapshot_hash": plan.markets_hash,
            "trades_hash": digest_trades,
            "data_versions": dg.MetadataValue.json(plan.data_versions),
        }
        return dg.MaterializeResult(data_version=dg.DataVersion(digest_trades), metadata=metadata)

    return walk_forward


def build_walk_forward_assets(specs: list[StrategySpec], base: dict[str, Any]) -> list[dg.AssetsDefinition]:
    """A walk-forward asset for each strategy that declares hyperopt parameters; model strategies,
    whose backtests also pin a model version, are left out."""
    return [
        build_walk_forward_asset(spec, base)
        for spec in specs
        if not spec.is_model and not spec.problem and declared_parameters(spec.file, spec.name)
    ]
