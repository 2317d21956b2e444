"""Parameter sweeps as assets: the ``sweep`` job plans a sweep (every input checked and pinned before a
trial starts), each trial is a partition of ``sweeps/trial``, and ``sweeps/summary`` ranks a sweep's
trials. ``apply_sweep_parameters`` writes a sweep's best parameters back as a new strategy config
version, only when asked.

A worker run materialises a batch of trial partitions (``BackfillPolicy.multi_run``): it loads
Freqtrade, the candles and the markets snapshot once (``FreqtradeRunner.session``) and runs its
trials one after the other. A trial that raises fails its own partition, named; the others of the
batch are materialised. ``sensors/sweeps.py`` launches the batches of a planned sweep and, once every
trial is done, its summary.

``plan_sweep`` and ``run_sweep`` work without Dagster: given the stores, a strategy and a spec they
return the plan and the ranked trials (walk-forward optimisation calls them per window).
"""

import base64
import dataclasses
import io
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from resources import aws_contract
from resources.arctic import ArcticStore
from resources.backtest_store import BacktestStore
from resources.freqtrade_runner import BacktestError, FreqtradeRunner, strategy_parameters
from resources.mlflow_tracker import MlflowTracker
from resources.sweep_store import SweepExistsError, SweepStore
from resources.sweep_studies import SweepStudies
from tradai_assets.backtests import BacktestInputError, BacktestPlan, plan_backtest, trades_hash
from tradai_assets.market_data import content_hash
from tradai_core.keys import (
    APPLY_SWEEP_JOB,
    SWEEP_JOB,
    SWEEP_SUMMARY_JOB,
    SWEEP_SUMMARY_KEY,
    SWEEP_TAG,
    SWEEP_TRIAL_KEY,
    SWEEP_TRIALS,
    SWEEP_TRIALS_JOB,
    SWEEPS,
    config_key,
)
from tradai_core.metrics import metrics_of
from tradai_core.strategy_config import (
    BASE_CONFIG_PATH,
    ConfigError,
    build_strategy_config,
    deep_merge,
    load_base_config,
    validate_config,
)
from tradai_core.strategy_discovery import StrategySpec, source_hash
from tradai_core.sweeps import (
    OBJECTIVES,
    OPTUNA_SEARCHES,
    STRATEGY_PARAMETERS_KEY,
    Dimension,
    SweepSpec,
    SweepSpecError,
    TrialResult,
    by_space,
    check_sweep_id,
    default_sweep_id,
    dimensions,
    judge,
    merge_parameters,
    parse_spec,
    plan_grid_or_random,
    rank,
    ranked_rows,
    results_of,
    sweep_of,
    trial_key,
)

TRIALS_PER_RUN = 10  # the backfill policy's batch for trials re-run from the UI; a sweep sets its own


# Planning -----------------------------------------------------------------------------------------


def _sweep_config(spec: SweepSpec, strategy: StrategySpec, base_path: Path) -> dict[str, Any]:
    overrides = deep_merge(spec.overrides, {"timerange": spec.timerange})
    if spec.pairs is not None:
        overrides = deep_merge(overrides, {"exchange": {"pair_whitelist": spec.pairs}})
    try:
        return build_strategy_config(load_base_config(base_path), strategy, overrides)
    except ConfigError as exc:
        raise SweepSpecError(f"overrides: {exc}") from exc


def plan_sweep(
    spec: SweepSpec,
    sweep_id: str,
    strategy: StrategySpec,
    arctic: ArcticStore,
    base_path: Path = BASE_CONFIG_PATH,
) -> dict[str, Any]:
    """Everything a trial needs, checked and pinned: the searched dimensions, the config, the markets
    snapshot and candle versions, and (grid, random) every trial's parameters. SweepSpecError naming
    the field, parameter or value at fault; nothing is written."""
    check_sweep_id(sweep_id)
    if strategy.problem:
        raise SweepSpecError(f"strategy {strategy.name}: {strategy.problem}")
    try:
        declared = strategy_parameters(strategy.file, strategy.name)
    except BacktestError as exc:
        raise SweepSpecError(f"strategy {strategy.name}: {exc}") from exc
    dims = dimensions(spec, declared)
    config = _sweep_config(spec, strategy, base_path)
    try:
        backtest = plan_backtest(arctic, strategy.name, strategy.file, config, content_hash(config))
    except BacktestInputError as exc:
        raise SweepSpecError(f"inputs of {spec.strategy} over {spec.timerange}: {exc}") from exc
    if backtest.timerange != spec.timerange:
        raise SweepSpecError(f"timerange {spec.timerange}: resolved to {backtest.timerange}")
    if spec.search in OPTUNA_SEARCHES:
        trials = [{"number": n, "key": trial_key(sweep_id, n), "params": None} for n in range(spec.budget)]
    else:
        trials = [
            {"number": n, "key": trial_key(sweep_id, n), "params": p}
            for n, p in enumerate(plan_grid_or_random(spec, dims))
        ]
    return {
        "sweep_id": sweep_id,
        "spec": spec.model_dump(mode="json"),
        "strategy": strategy.name,
        "strategy_file": str(strategy.file),
        "strategy_source_hash": source_hash(strategy.file),
        "dimensions": [dataclasses.asdict(d) for d in dims],
        "config": config,
        "config_hash": backtest.config_hash,
        "timerange": backtest.timerange,
        "markets_hash": backtest.markets_hash,
        "data_versions": backtest.data_versions,
        "trials": trials,
        "created": datetime.now(UTC).isoformat(),
        "parent_run_id": None,
    }


def plan_dimensions(plan: dict[str, Any]) -> list[Dimension]:
    return [
        Dimension(**{**d, "choices": None if d["choices"] is None else tuple(d["choices"])}) for d in plan["dimensions"]
    ]


def experiment_of(strategy: str) -> str:
    return f"strategies/{strategy}"


# Trials -------------------------------------------------------------------------------------------


def _backtest_plan(plan: dict[str, Any], arctic: ArcticStore) -> BacktestPlan:
    strategy_file = Path(plan["strategy_file"])
    if not strategy_file.is_file() or source_hash(strategy_file) != plan["strategy_source_hash"]:
        raise BacktestError(
            f"{strategy_file}: the strategy file changed or vanished since sweep "
            f"{plan['sweep_id']} was planned; start a new sweep"
        )
    return plan_backtest(
        arctic,
        plan["strategy"],
        strategy_file,
        plan["config"],
        plan["config_hash"],
        markets_hash=plan["markets_hash"],
        data_versions={k: int(v) for k, v in plan["data_versions"].items()},
    )


def _log_trial(
    tracker: MlflowTracker,
    plan: dict[str, Any],
    trial_plan: BacktestPlan,
    key: str,
    outcome,
    metrics: dict[str, float],
    digest: str,
    params: dict[str, Any],
    tags: dict[str, str],
) -> str:
    with tempfile.TemporaryDirectory(prefix=f"mlflow-{key}-") as tmp:
        out = Path(tmp)
        (out / "config.json").write_text(json.dumps(outcome.engine_config, indent=2, sort_keys=True))
        (out / "stats.json").write_text(json.dumps(outcome.stats, indent=2, sort_keys=True))
        outcome.trades.to_parquet(out / "trades.parquet", index=False)
        return tracker.log_run(
            experiment=experiment_of(plan["strategy"]),
            run_name=f"trial {key}",
            params={
                **trial_plan.lineage(),
                "sweep_id": plan["sweep_id"],
                "trial_key": key,
                **{f"param.{k}": v for k, v in params.items()},
            },
            metrics=metrics,
            tags={
                **tags,
                "tradai.kind": "sweep_trial",
                "tradai.trades_hash": digest,
                SWEEP_TAG: plan["sweep_id"],
                **({"mlflow.parentRunId": plan["parent_run_id"]} if plan.get("parent_run_id") else {}),
            },
            artifact_dir=out,
        )


def run_trials(
    plan: dict[str, Any],
    numbers: list[int],
    *,
    arctic: ArcticStore,
    runner: FreqtradeRunner,
    store: SweepStore | None = None,
    tracker: MlflowTracker | None = None,
    studies: SweepStudies | None = None,
    tags: dict[str, str] | None = None,
    log=None,
):
    """Run the sweep's trials ``numbers`` in one Freqtrade session, yielding each ``TrialResult`` as
    it finishes. A trial whose backtest raises is a ``failed`` result naming the error; the next
    trial runs. Results go to ``store`` and ``tracker`` (a child run of the sweep's parent) when given."""
    spec = SweepSpec.model_validate(plan["spec"])
    dims = plan_dimensions(plan)
    base_parameters = plan["config"].get(STRATEGY_PARAMETERS_KEY, {})
    backtest = _backtest_plan(plan, arctic)
    with runner.session(backtest.request) as session:
        for number in numbers:
            key = trial_key(plan["sweep_id"], number)
            optuna_number = None
            if spec.search in OPTUNA_SEARCHES:
                params, optuna_number = studies.ask(
                    plan["sweep_id"], key, number, dims, spec.search, spec.seed, spec.budget
                )
            else:
                params = plan["trials"][number]["params"]
            parameters = merge_parameters(base_parameters, by_space(params, dims))
            trial_config = {**plan["config"], STRATEGY_PARAMETERS_KEY: parameters}
            trial_plan = dataclasses.replace(backtest, config=trial_config, config_hash=content_hash(trial_config))
            try:
                outcome = session.run(parameters)
            except BacktestError as exc:
                result = TrialResult(key, number, params, "failed", error=str(exc), lineage=trial_plan.lineage())
                if log is not None:
                    log.error(f"trial {key} failed: {exc}")
            else:
                metrics = metrics_of(outcome.stats)
                metrics.setdefault("trades", float(len(outcome.trades)))
                digest = trades_hash(outcome.trades)
                status, values = judge(spec, metrics)
                run_id = (
                    None
                    if tracker is None
                    else _log_trial(tracker, plan, trial_plan, key, outcome, metrics, digest, params, tags or {})
                )
                result = TrialResult(
                    key, number, params, status, values, metrics, digest, run_id, lineage=trial_plan.lineage()
                )
            if studies is not None and spec.search in OPTUNA_SEARCHES:
                told = result.objectives if result.status == "ok" and None not in result.objectives else None
                studies.tell(plan["sweep_id"], key, optuna_number, params, dims, told)
            if store is not None:
                store.write_trial(plan["sweep_id"], number, result.as_dict())
            yield result


def run_sweep(
    spec: SweepSpec | dict[str, Any],
    strategy: StrategySpec,
    *,
    arctic: ArcticStore,
    runner: FreqtradeRunner,
    sweep_id: str | None = None,
    studies: SweepStudies | None = None,
    tracker: MlflowTracker | None = None,
    base_path: Path = BASE_CONFIG_PATH,
) -> list[TrialResult]:
    """A whole sweep in this process, without Dagster: plan, run every trial in one session, rank.
    TPE and NSGA-II searches keep their study in ``studies`` (a temporary SQLite file when None)."""
    spec = parse_spec(spec) if isinstance(spec, dict) else spec
    if spec.strategy != strategy.name:
        raise SweepSpecError(f"strategy: the spec names {spec.strategy}, the strategy given is {strategy.name}")
    sweep_id = sweep_id or default_sweep_id(strategy.name)
    plan = plan_sweep(spec, sweep_id, strategy, arctic, base_path)
    with tempfile.TemporaryDirectory(prefix=f"sweep-{sweep_id}-") as tmp:
        if spec.search in OPTUNA_SEARCHES:
            studies = studies or SweepStudies(storage_url=f"sqlite:///{tmp}/studies.db")
            studies.create(sweep_id, [OBJECTIVES[o][1] for o in spec.objectives])
        results = list(
            run_trials(
                plan,
                [t["number"] for t in plan["trials"]],
                arctic=arctic,
                runner=runner,
                tracker=tracker,
                studies=studies,
            )
        )
    return rank(spec, results)


# Summary ------------------------------------------------------------------------------------------


def ranked_frame(spec: SweepSpec, results: list[TrialResult]) -> pd.DataFrame:
    """The ranked trials (tradai_core.sweeps.ranked_rows) as a table."""
    return pd.DataFrame(ranked_rows(spec, results))


def objective_png(spec: SweepSpec, results: list[TrialResult], dims: list[Dimension]) -> bytes:
    """Objective against each searched parameter, one panel per parameter; trials with too few
    trades hollow, failed trials left out."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    shown = dims[:6]
    figure = Figure(figsize=(3.2 * len(shown), 3), dpi=100)
    axes = figure.subplots(1, len(shown), squeeze=False)[0]
    for ax, dim in zip(axes, shown):
        for status, style in (
            ("ok", {"color": "tab:blue"}),
            ("too_few_trades", {"facecolors": "none", "edgecolors": "grey"}),
        ):
            points = [
                (r.params[dim.name], r.objective)
                for r in results
                if r.status == status and r.objective is not None and dim.name in r.params
            ]
            if points:
                xs, ys = zip(*points)
                ax.scatter(
                    [str(x) if dim.choices is not None and not isinstance(x, int | float) else x for x in xs],
                    ys,
                    s=18,
                    label=status,
                    **style,
                )
        ax.set_xlabel(dim.name)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(spec.objective)
    figure.suptitle(f"{spec.strategy} {spec.timerange}: {spec.objective} per trial")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def _markdown_table(frame: pd.DataFrame, limit: int = 25) -> str:
    shown = frame.drop(columns=["mlflow_run_id"]).head(limit)
    header = "| " + " | ".join(shown.columns) + " |\n|" + "---|" * len(shown.columns) + "\n"

    def cell(v):
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return ""
        return f"{v:.4g}" if isinstance(v, float) else str(v).replace("|", "/").replace("\n", " ")[:120]

    body = "\n".join("| " + " | ".join(cell(v) for v in row) + " |" for row in shown.itertuples(index=False))
    more = (
        f"\n\n{len(frame) - limit} more trials in ArcticDB (sweeps/{{sweep_id}}|summary) and MLflow."
        if len(frame) > limit
        else ""
    )
    return header + body + more


# Dagster definitions ------------------------------------------------------------------------------


class SweepConfig(dg.Config):
    """A sweep, as run config of the ``sweep`` job (see tradai_core.sweeps.SweepSpec for the fields)."""

    strategy: str
    timerange: str
    budget: int
    search: str = "random"
    objective: str = "sharpe"
    second_objective: str | None = None
    min_trades: int = 10
    spaces: list[str] = Field(default_factory=list)
    grid: dict[str, Any] = Field(default_factory=dict)
    """{parameter: [values]}"""
    ranges: dict[str, Any] = Field(default_factory=dict)
    """{parameter: [low, high]}"""
    seed: int = 0
    trials_per_run: int = 10
    pairs: list[str] | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    sweep_id: str | None = None
    """Default: <strategy>_<UTC time>."""

    def spec(self) -> SweepSpec:
        return parse_spec(self.model_dump(exclude={"sweep_id"}, exclude_none=True))


class ApplySweepConfig(dg.Config):
    sweep_id: str
    trial: str | None = None
    """A trial key (<sweep_id>-<nnnn>); default: the sweep's best ranked trial."""


@dataclasses.dataclass
class SweepDefinitions:
    assets: list[dg.AssetsDefinition]
    jobs: list

    @property
    def sensor_jobs(self) -> list:
        """The jobs the sweep sensor launches: the trial batches and the summaries."""
        return [j for j in self.jobs if j.name in (SWEEP_TRIALS_JOB, SWEEP_SUMMARY_JOB)]


def build_sweeps(specs: list[StrategySpec], base_path: Path = BASE_CONFIG_PATH) -> SweepDefinitions:
    by_name = {s.name: s for s in specs}

    @dg.op(
        name="plan_sweep",
        description="Check a sweep against the strategy and the stored data, pin its inputs, "
        "plan its trials and register them as partitions of sweeps/trial.",
    )
    def plan_op(
        context: dg.OpExecutionContext,
        config: SweepConfig,
        arctic: ArcticStore,
        sweep_store: SweepStore,
        sweep_studies: SweepStudies,
        mlflow: MlflowTracker,
    ) -> str:
        try:
            spec = config.spec()
            strategy = by_name.get(spec.strategy)
            if strategy is None:
                raise SweepSpecError(
                    f"strategy: unknown strategy {spec.strategy!r}; known: {', '.join(sorted(by_name)) or 'none'}"
                )
            sweep_id = check_sweep_id(config.sweep_id or default_sweep_id(strategy.name))
            if sweep_store.plan(sweep_id) is not None:
                raise SweepExistsError(f"sweep_id {sweep_id!r} is taken by an earlier sweep; choose another")
            plan = plan_sweep(spec, sweep_id, strategy, arctic, base_path)
        except (SweepSpecError, SweepExistsError) as exc:
            raise dg.Failure(description=f"sweep not started: {exc}") from exc
        if spec.search in OPTUNA_SEARCHES:
            sweep_studies.create(sweep_id, [OBJECTIVES[o][1] for o in spec.objectives])
        plan["parent_run_id"] = mlflow.start_run(
            experiment_of(strategy.name),
            f"sweep {sweep_id}",
            params={
                "sweep_id": sweep_id,
                "search": spec.search,
                "budget": spec.budget,
                "objective": ",".join(spec.objectives),
                "min_trades": spec.min_trades,
                "seed": spec.seed,
                "timerange": plan["timerange"],
                "config_hash": plan["config_hash"],
                "markets_snapshot_hash": plan["markets_hash"],
                "strategy_source_hash": plan["strategy_source_hash"],
                "dimensions": json.dumps([d["name"] for d in plan["dimensions"]]),
            },
            tags={"tradai.kind": "sweep", SWEEP_TAG: sweep_id, "dagster.run_id": context.run.run_id},
        )
        sweep_store.write_plan(sweep_id, plan)
        context.instance.add_dynamic_partitions(SWEEP_TRIALS.name, [t["key"] for t in plan["trials"]])
        context.instance.add_dynamic_partitions(SWEEPS.name, [sweep_id])
        context.add_output_metadata(
            {
                "sweep_id": sweep_id,
                "trials": dg.MetadataValue.int(len(plan["trials"])),
                "search": spec.search,
                "dimensions": dg.MetadataValue.json(plan["dimensions"]),
                "mlflow_parent_run": dg.MetadataValue.url(mlflow.run_url(plan["parent_run_id"])),
            }
        )
        context.log.info(f"sweep {sweep_id}: {len(plan['trials'])} trials planned; the sweep sensor launches them")
        return sweep_id

    @dg.job(
        name=SWEEP_JOB,
        tags={aws_contract.RUN_KIND_TAG: "sweep"},
        description="Start a parameter sweep: run config names the strategy, timerange, search, budget and "
        "objective; the trials appear as partitions of sweeps/trial and run in batches.",
    )
    def sweep_job():
        plan_op()

    @dg.asset(
        key=SWEEP_TRIAL_KEY,
        group_name="sweeps",
        partitions_def=SWEEP_TRIALS,
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=TRIALS_PER_RUN),
        output_required=False,
        kinds={"freqtrade", "mlflow"},
        description="One backtest per partition (<sweep_id>-<nnnn>) with the trial's parameters, on the inputs "
        "its sweep pinned; a run does a batch of trials in one Freqtrade session. A trial that raises fails alone.",
    )
    def sweep_trial(
        context: dg.AssetExecutionContext,
        arctic: ArcticStore,
        freqtrade_runner: FreqtradeRunner,
        mlflow: MlflowTracker,
        sweep_store: SweepStore,
        sweep_studies: SweepStudies,
    ):
        by_sweep: dict[str, list[int]] = {}
        for key in context.partition_keys:
            sweep_id, number = sweep_of(key)
            by_sweep.setdefault(sweep_id, []).append(number)
        failed = []
        for sweep_id, numbers in by_sweep.items():
            plan = sweep_store.plan(sweep_id)
            if plan is None:
                raise dg.Failure(
                    description=f"sweep {sweep_id}: no stored plan (was it started with the {SWEEP_JOB} job?)"
                )
            cancelled = sweep_store.cancellation(sweep_id)
            if cancelled is not None:
                # A batch that a sensor tick requested while the sweep was being cancelled.
                raise dg.Failure(
                    description=f"sweep {sweep_id} was cancelled by {cancelled['by']} at {cancelled['at']}; "
                    f"trials {numbers} are not run"
                )
            try:
                for result in run_trials(
                    plan,
                    numbers,
                    arctic=arctic,
                    runner=freqtrade_runner,
                    store=sweep_store,
                    tracker=mlflow,
                    studies=sweep_studies,
                    tags={"dagster.run_id": context.run.run_id},
                    log=context.log,
                ):
                    if result.status == "failed":
                        failed.append(result)
                        continue
                    yield dg.AssetMaterialization(
                        asset_key=SWEEP_TRIAL_KEY,
                        partition=result.key,
                        metadata={
                            "status": result.status,
                            **{
                                name: dg.MetadataValue.float(v)
                                for name, v in zip(SweepSpec.model_validate(plan["spec"]).objectives, result.objectives)
                                if v is not None
                            },
                            "trades": dg.MetadataValue.int(int(result.metrics.get("trades", 0))),
                            "parameters": dg.MetadataValue.json(result.params),
                            "trades_hash": result.trades_hash,
                            "config_hash": result.lineage["config_hash"],
                            "mlflow_run": dg.MetadataValue.url(mlflow.run_url(result.mlflow_run_id)),
                        },
                    )
            except (BacktestError, BacktestInputError) as exc:  # the batch's engine could not start
                raise dg.Failure(description=f"sweep {sweep_id}: trials {numbers} cannot run: {exc}") from exc
        if failed:
            raise dg.Failure(
                description=f"{len(failed)} of {len(context.partition_keys)} trials failed: "
                + "; ".join(f"{r.key} ({json.dumps(r.params)}): {r.error}" for r in failed),
                metadata={"failed_trials": dg.MetadataValue.json([r.key for r in failed])},
            )

    @dg.asset(
        key=SWEEP_SUMMARY_KEY,
        group_name="sweeps",
        partitions_def=SWEEPS,
        deps=[dg.AssetDep(SWEEP_TRIAL_KEY, partition_mapping=dg.AllPartitionMapping())],
        kinds={"mlflow"},
        description="A sweep's trials ranked by its objective (trials with too few trades and failed trials "
        "last), its best parameters and an objective plot; the sweep's MLflow parent run is closed with them.",
    )
    def sweep_summary(context: dg.AssetExecutionContext, sweep_store: SweepStore, mlflow: MlflowTracker):
        sweep_id = context.partition_key
        plan = sweep_store.plan(sweep_id)
        if plan is None:
            raise dg.Failure(description=f"sweep {sweep_id}: no stored plan")
        spec = SweepSpec.model_validate(plan["spec"])
        results = results_of(sweep_store.trials(sweep_id))
        frame = ranked_frame(spec, results)
        counts = {s: sum(r.status == s for r in results) for s in ("ok", "too_few_trades", "failed")}
        best = next((r for r in rank(spec, results) if r.status == "ok" and r.objective is not None), None)
        png = objective_png(spec, results, plan_dimensions(plan))
        summary = {
            "sweep_id": sweep_id,
            "strategy": plan["strategy"],
            "planned": len(plan["trials"]),
            "done": len(results),
            **counts,
            "best_trial": best.key if best else None,
            "best_parameters": best.params if best else None,
            "best_objective": best.objective if best else None,
            "objective": spec.objective,
        }
        sweep_store.write_summary(sweep_id, frame, summary)
        with tempfile.TemporaryDirectory(prefix=f"summary-{sweep_id}-") as tmp:
            out = Path(tmp)
            frame.to_csv(out / "trials.csv", index=False)
            (out / "objective.png").write_bytes(png)
            (out / "best_parameters.json").write_text(json.dumps(best.params if best else None, indent=2))
            mlflow.finish_run(
                plan["parent_run_id"],
                metrics={f"best_{spec.objective}": best.objective} if best else {},
                tags={
                    "tradai.best_trial": best.key if best else "none",
                    **{f"tradai.trials_{k}": v for k, v in counts.items()},
                },
                artifact_dir=out,
            )
        if best is None:
            context.log.warning(f"sweep {sweep_id}: no trial made {spec.min_trades} trades or more; nothing is ranked")
        return dg.MaterializeResult(
            metadata={
                "trials": dg.MetadataValue.md(_markdown_table(frame).replace("{sweep_id}", sweep_id)),
                "ranked": dg.MetadataValue.int(counts["ok"]),
                "too_few_trades": dg.MetadataValue.int(counts["too_few_trades"]),
                "failed": dg.MetadataValue.int(counts["failed"]),
                "planned": dg.MetadataValue.int(len(plan["trials"])),
                "best_trial": best.key if best else "none",
                "best_parameters": dg.MetadataValue.json(best.params if best else {}),
                f"best_{spec.objective}": dg.MetadataValue.float(best.objective if best else float("nan")),
                "objective_plot": dg.MetadataValue.md(
                    f"![{spec.objective} per parameter](data:image/png;base64,{base64.b64encode(png).decode()})"
                ),
                "mlflow_parent_run": dg.MetadataValue.url(mlflow.run_url(plan["parent_run_id"])),
            }
        )

    @dg.op(
        name="write_best_parameters",
        description="Write a sweep's best (or a chosen) trial's parameters into "
        "the strategy's config as a new content-hashed version.",
    )
    def apply_op(
        context: dg.OpExecutionContext, config: ApplySweepConfig, sweep_store: SweepStore, backtest_store: BacktestStore
    ):
        written = apply_sweep_parameters(config.sweep_id, config.trial, sweep_store, backtest_store, by_name, base_path)
        context.log.info(written.message)
        # The config asset's history shows the new version and where its parameters came from.
        yield dg.AssetMaterialization(
            asset_key=config_key(written.strategy),
            metadata={
                "config_hash": written.config_hash,
                "stored_version": dg.MetadataValue.int(written.version),
                "sweep_id": config.sweep_id,
                "trial": written.trial,
                "strategy_parameters": dg.MetadataValue.json(written.parameters),
            },
        )
        yield dg.Output(written.config_hash)

    @dg.job(
        name=APPLY_SWEEP_JOB,
        description="Write the best parameters of a sweep back as the strategy's config "
        "(a new strategies/<Name>/config version); the next backtest runs with them.",
    )
    def apply_job():
        apply_op()

    trials_job = dg.define_asset_job(
        SWEEP_TRIALS_JOB,
        selection=[SWEEP_TRIAL_KEY],
        tags=aws_contract.ecs_run_tags("sweep"),
        description="Batches of sweep trials (the sweep sensor launches them).",
    )
    summary_job = dg.define_asset_job(
        SWEEP_SUMMARY_JOB,
        selection=[SWEEP_SUMMARY_KEY],
        description="A sweep's summary (the sweep sensor launches it).",
    )
    return SweepDefinitions([sweep_trial, sweep_summary], [sweep_job, apply_job, trials_job, summary_job])


@dataclasses.dataclass
class WrittenParameters:
    strategy: str
    trial: str
    parameters: dict[str, dict[str, Any]]
    config_hash: str
    version: int
    message: str


def apply_sweep_parameters(
    sweep_id: str,
    trial: str | None,
    sweep_store: SweepStore,
    backtest_store: BacktestStore,
    strategies: dict[str, StrategySpec],
    base_path: Path = BASE_CONFIG_PATH,
) -> WrittenParameters:
    """The strategy's newest stored config (or its built config when none is stored) with the trial's
    parameters as ``strategy_parameters``, stored as a new version.
    dg.Failure naming the sweep or trial when there is nothing to write."""
    plan = sweep_store.plan(sweep_id)
    if plan is None:
        raise dg.Failure(description=f"sweep_id {sweep_id!r}: no such sweep")
    spec = SweepSpec.model_validate(plan["spec"])
    results = results_of(sweep_store.trials(sweep_id))
    if trial is None:
        chosen = next((r for r in rank(spec, results) if r.status == "ok" and r.objective is not None), None)
        if chosen is None:
            raise dg.Failure(
                description=f"sweep {sweep_id}: no ranked trial (none finished with {spec.min_trades} "
                "trades or more); nothing to write back"
            )
    else:
        chosen = next((r for r in results if r.key == trial), None)
        if chosen is None or chosen.status == "failed":
            raise dg.Failure(description=f"trial {trial!r}: not a finished trial of sweep {sweep_id}")
    strategy = strategies.get(plan["strategy"])
    if strategy is None:
        raise dg.Failure(description=f"sweep {sweep_id}: strategy {plan['strategy']} is no longer in the code location")
    stored = backtest_store.latest_config(strategy.name)
    if stored is None:
        current = build_strategy_config(load_base_config(base_path), strategy, {})
    else:
        current = stored[0]
    parameters = merge_parameters(
        current.get(STRATEGY_PARAMETERS_KEY, {}), by_space(chosen.params, plan_dimensions(plan))
    )
    config = {**current, STRATEGY_PARAMETERS_KEY: parameters}
    try:
        validate_config(config)
    except ConfigError as exc:
        raise dg.Failure(
            description=f"{strategy.name}: the config with the parameters of {chosen.key} is invalid: {exc}"
        ) from exc
    digest = content_hash(config)
    version = backtest_store.write_config(strategy.name, config, digest)
    message = (
        f"{strategy.name}: config {digest[:12]} (stored version {version}) with the parameters of trial "
        f"{chosen.key}: {json.dumps(chosen.params)}; the strategy's backtests use it from now on"
    )
    return WrittenParameters(strategy.name, chosen.key, parameters, digest, version, message)
