"""Parameter sweeps: the declared search, checked against the strategy's hyperopt parameters, planned
into trials, and the trials' results judged and ranked.

A strategy declares what can be searched the Freqtrade way (``IntParameter``, ``DecimalParameter``,
``RealParameter``, ``CategoricalParameter``, ``BooleanParameter``, each in a space such as ``buy`` or
``sell``); a ``SweepSpec`` says which spaces to search (or an explicit grid, or narrower ranges), how
(grid, random, Optuna TPE or NSGA-II), how many trials, and what to maximise. Everything is checked
before a trial starts, and every error names the field, parameter or value at fault.

A trial's parameter values reach Freqtrade as its parameter file would hand them over
(``{space: {name: value}}``); in a strategy config they are the ``strategy_parameters`` key.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SEARCHES = ("grid", "random", "tpe", "nsga2")
OPTUNA_SEARCHES = ("tpe", "nsga2")
# Objective -> (metric recorded by tradai_core.metrics, direction).
OBJECTIVES: dict[str, tuple[str, str]] = {
    "sharpe": ("sharpe", "maximize"),
    "sortino": ("sortino", "maximize"),
    "calmar": ("calmar", "maximize"),
    "profit": ("profit_total", "maximize"),
    "max_drawdown": ("max_drawdown", "minimize"),
}
Objective = Literal["sharpe", "sortino", "calmar", "profit", "max_drawdown"]
# The key of a strategy config that carries hyperopt parameter values: {space: {name: value}}.
STRATEGY_PARAMETERS_KEY = "strategy_parameters"
SWEEP_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_]{0,47}$")
TIMERANGE_PATTERN = re.compile(r"^\d{8}-\d{8}$")
MAX_GRID = 100_000
# Names the code location, the sensor, the API and the CLI share (tradai_core.keys re-exports them
# beside the Dagster asset keys; the API reads them here without importing Dagster).
SWEEP_JOB = "sweep"
SWEEP_PLAN_OP = "plan_sweep"
SWEEP_TAG = "tradai/sweep_id"
SWEEP_TRIAL_ASSET_PATH = ("sweeps", "trial")


class SweepSpecError(ValueError):
    """A sweep that cannot start; the message names the field, parameter or value at fault."""


@dataclass(frozen=True)
class ParameterInfo:
    """One hyperopt parameter as the strategy class declares it."""

    name: str
    space: str
    kind: Literal["int", "decimal", "real", "categorical", "boolean"]
    default: Any
    optimize: bool = True
    low: float | None = None
    high: float | None = None
    decimals: int | None = None
    categories: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class Dimension:
    """A searched parameter: a numeric range or a list of choices (a grid or a categorical)."""

    name: str
    space: str
    kind: str
    low: float | None = None
    high: float | None = None
    decimals: int | None = None
    choices: tuple[Any, ...] | None = None

    def values(self) -> list[Any]:
        """Every value a grid visits."""
        if self.choices is not None:
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1))
        if self.kind == "decimal":
            scale = 10**self.decimals
            return [
                round(n / scale, self.decimals) for n in range(round(self.low * scale), round(self.high * scale) + 1)
            ]
        raise SweepSpecError(
            f"parameter {self.name} is a RealParameter (continuous): a grid needs its values listed in grid.{self.name}"
        )

    def sample(self, rng: random.Random) -> Any:
        if self.choices is not None:
            return rng.choice(self.choices)
        if self.kind == "int":
            return rng.randint(int(self.low), int(self.high))
        if self.kind == "decimal":
            scale = 10**self.decimals
            return round(rng.randint(round(self.low * scale), round(self.high * scale)) / scale, self.decimals)
        return rng.uniform(self.low, self.high)


class SweepSpec(BaseModel):
    """What to search, how, and what counts as better."""

    model_config = ConfigDict(extra="forbid")

    strategy: str = Field(min_length=1)
    timerange: str
    """YYYYMMDD-YYYYMMDD, inside the stored candles."""
    spaces: list[str] = []
    """Freqtrade parameter spaces to search (buy, sell, ...); empty: every space the strategy declares."""
    grid: dict[str, list[Any]] = {}
    """Explicit values per parameter; the grid search visits their product."""
    ranges: dict[str, tuple[float, float]] = {}
    """Narrower [low, high] per numeric parameter than the strategy declares."""
    objective: Objective = "sharpe"
    second_objective: Objective | None = None
    """NSGA-II only: the second objective of the Pareto search (e.g. max_drawdown)."""
    min_trades: int = Field(10, ge=0)
    """Trials with fewer trades are kept but not ranked."""
    search: Literal["grid", "random", "tpe", "nsga2"] = "random"
    budget: int = Field(ge=1)
    """Number of trials (a grid may have fewer combinations)."""
    seed: int = 0
    trials_per_run: int = Field(10, ge=1, le=1000)
    """Trials one worker run does after loading Freqtrade, the candles and the markets once."""
    pairs: list[str] | None = None
    """Other pairs than the strategy config's."""
    overrides: dict[str, Any] = {}
    """Other Freqtrade config keys for every trial (stake, fee, ...)."""

    @field_validator("timerange")
    @classmethod
    def _timerange(cls, value: str) -> str:
        if not TIMERANGE_PATTERN.match(value) or value[:8] >= value[9:]:
            raise ValueError(f"{value!r} is not a YYYYMMDD-YYYYMMDD range with its start before its end")
        return value

    @field_validator("grid")
    @classmethod
    def _grid(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        empty = [name for name, values in value.items() if not values]
        if empty:
            raise ValueError(f"empty list of values for {', '.join(empty)}")
        return value

    @field_validator("ranges")
    @classmethod
    def _ranges(cls, value: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        inverted = [f"{name} [{lo}, {hi}]" for name, (lo, hi) in value.items() if lo > hi]
        if inverted:
            raise ValueError(f"inverted range (low > high) for {', '.join(inverted)}")
        return value

    @property
    def objectives(self) -> list[str]:
        return [self.objective] + ([self.second_objective] if self.second_objective else [])


def spec_conflicts(spec: SweepSpec) -> list[tuple[str, str]]:
    """(field, message) of every combination of fields that cannot go together."""
    if spec.search == "nsga2" and spec.second_objective is None:
        return [("second_objective", "NSGA-II searches two objectives; name the second (e.g. max_drawdown)")]
    if spec.search != "nsga2" and spec.second_objective is not None:
        return [("second_objective", f"only the nsga2 search uses it, not {spec.search}")]
    return []


def parse_spec(values: dict[str, Any]) -> SweepSpec:
    """A ``SweepSpec`` from plain values, or a SweepSpecError naming every bad field."""
    try:
        spec = SweepSpec.model_validate(values)
    except ValidationError as exc:
        raise SweepSpecError(
            "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'sweep'}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()
            )
        ) from exc
    conflicts = spec_conflicts(spec)
    if conflicts:
        raise SweepSpecError("; ".join(f"{name}: {message}" for name, message in conflicts))
    return spec


def default_sweep_id(strategy: str, now: datetime | None = None) -> str:
    return f"{strategy.lower()[:30]}_{(now or datetime.now(UTC)):%Y%m%d%H%M%S}"


def check_sweep_id(sweep_id: str) -> str:
    if not SWEEP_ID_PATTERN.match(sweep_id):
        raise SweepSpecError(
            f"sweep_id {sweep_id!r}: use 1-48 lower-case letters, digits or underscores, starting with a letter or digit"
        )
    return sweep_id


def _check_declared(strategy: str, info: ParameterInfo) -> None:
    where = f"{strategy}.{info.name}"
    if info.kind in ("int", "decimal", "real") and info.low > info.high:
        raise SweepSpecError(f"{where} declares an inverted space: low {info.low} > high {info.high}")
    if info.kind in ("categorical", "boolean") and not info.categories:
        raise SweepSpecError(f"{where} declares an empty list of categories")


def _in_declared(info: ParameterInfo, value: Any) -> bool:
    if info.kind in ("categorical", "boolean"):
        return value in info.categories
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if info.kind == "int" and value != int(value):
        return False
    return info.low <= value <= info.high


def dimensions(spec: SweepSpec, parameters: dict[str, ParameterInfo]) -> list[Dimension]:
    """The searched parameters of ``spec`` on a strategy that declares ``parameters``; SweepSpecError
    naming the parameter, space or value that does not fit."""
    name = spec.strategy
    if not parameters:
        raise SweepSpecError(
            f"{name} declares no hyperopt parameters (IntParameter, DecimalParameter, CategoricalParameter, "
            "BooleanParameter with a space=): nothing to sweep"
        )
    for info in parameters.values():
        _check_declared(name, info)
    known_spaces = sorted({p.space for p in parameters.values()})
    unknown_spaces = [s for s in spec.spaces if s not in known_spaces]
    if unknown_spaces:
        raise SweepSpecError(
            f"spaces: {name} has no parameters in space(s) {', '.join(unknown_spaces)} "
            f"(its spaces: {', '.join(known_spaces)})"
        )
    for field_name, named in (("grid", spec.grid), ("ranges", spec.ranges)):
        unknown = [p for p in named if p not in parameters]
        if unknown:
            raise SweepSpecError(
                f"{field_name}: unknown parameter(s) {', '.join(unknown)}; {name} declares "
                f"{', '.join(sorted(parameters))}"
            )
        if spec.spaces:
            outside = [f"{p} (space {parameters[p].space})" for p in named if parameters[p].space not in spec.spaces]
            if outside:
                raise SweepSpecError(
                    f"{field_name}: {', '.join(outside)} outside the searched spaces {', '.join(spec.spaces)}"
                )
    both = sorted(set(spec.grid) & set(spec.ranges))
    if both:
        raise SweepSpecError(f"grid and ranges both name {', '.join(both)}: give each parameter one or the other")

    out = []
    for info in sorted(parameters.values(), key=lambda p: (p.space, p.name)):
        named = info.name in spec.grid or info.name in spec.ranges
        if spec.grid and spec.search == "grid" and not named:
            continue  # an explicit grid searches exactly the parameters it lists
        if not named and (not info.optimize or (spec.spaces and info.space not in spec.spaces)):
            continue
        if info.name in spec.grid:
            values = spec.grid[info.name]
            bad = [v for v in values if not _in_declared(info, v)]
            if bad:
                declared = (
                    f"categories {list(info.categories)}"
                    if info.categories is not None
                    else f"[{info.low}, {info.high}]"
                )
                raise SweepSpecError(f"grid.{info.name}: value(s) {bad} outside its declared {declared}")
            out.append(Dimension(info.name, info.space, info.kind, choices=tuple(values)))
        elif info.name in spec.ranges:
            if info.kind not in ("int", "decimal", "real"):
                raise SweepSpecError(f"ranges.{info.name}: a {info.kind} parameter has no range; list values in grid")
            low, high = spec.ranges[info.name]
            if low < info.low or high > info.high:
                raise SweepSpecError(
                    f"ranges.{info.name}: [{low}, {high}] reaches outside its declared [{info.low}, {info.high}]"
                )
            out.append(Dimension(info.name, info.space, info.kind, low, high, info.decimals))
        elif info.kind in ("categorical", "boolean"):
            out.append(Dimension(info.name, info.space, info.kind, choices=tuple(info.categories)))
        else:
            out.append(Dimension(info.name, info.space, info.kind, info.low, info.high, info.decimals))
    if not out:
        raise SweepSpecError(
            f"{name}: no optimisable parameter in the searched spaces {', '.join(spec.spaces or known_spaces)}"
        )
    return out


def plan_grid_or_random(spec: SweepSpec, dims: list[Dimension]) -> list[dict[str, Any]]:
    """The parameters of every trial of a grid or random search, fixed now (an Optuna search asks
    its study trial by trial instead)."""
    if spec.search == "grid":
        axes = [d.values() for d in dims]
        size = math.prod(len(a) for a in axes)
        if size > spec.budget:
            raise SweepSpecError(
                f"budget: the grid has {size} combinations ({' x '.join(f'{d.name}:{len(a)}' for d, a in zip(dims, axes))}), "
                f"more than the budget of {spec.budget}; list fewer values in grid or raise the budget"
            )
        return [dict(zip((d.name for d in dims), combo)) for combo in itertools.product(*axes)]
    if spec.search == "random":
        rng = random.Random(spec.seed)
        return [{d.name: d.sample(rng) for d in dims} for _ in range(spec.budget)]
    raise ValueError(f"{spec.search} trials are asked of an Optuna study, not planned")


def by_space(params: dict[str, Any], dims: list[Dimension]) -> dict[str, dict[str, Any]]:
    """Trial parameters as Freqtrade's parameter file groups them: {space: {name: value}}."""
    spaces = {d.name: d.space for d in dims}
    out: dict[str, dict[str, Any]] = {}
    for name, value in params.items():
        out.setdefault(spaces[name], {})[name] = value
    return out


def merge_parameters(base: dict[str, dict[str, Any]], extra: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {space: dict(values) for space, values in base.items()}
    for space, values in extra.items():
        out.setdefault(space, {}).update(values)
    return out


def trial_key(sweep_id: str, number: int) -> str:
    return f"{sweep_id}-{number:04d}"


def sweep_of(key: str) -> tuple[str, int]:
    """(sweep id, trial number) of a trial partition key."""
    sweep_id, _, number = key.rpartition("-")
    if not sweep_id or not number.isdigit():
        raise ValueError(f"{key!r} is not a trial key <sweep_id>-<nnnn>")
    return sweep_id, int(number)


# Results ------------------------------------------------------------------------------------------

TrialStatus = Literal["ok", "too_few_trades", "failed"]


@dataclass
class TrialResult:
    key: str
    number: int
    params: dict[str, Any]
    status: TrialStatus
    objectives: list[float | None] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    trades_hash: str | None = None
    mlflow_run_id: str | None = None
    error: str | None = None
    lineage: dict[str, str] = field(default_factory=dict)

    @property
    def objective(self) -> float | None:
        return self.objectives[0] if self.objectives else None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(spec: SweepSpec, metrics: dict[str, float]) -> tuple[TrialStatus, list[float | None]]:
    """The trial's objective values, and whether it made enough trades to be ranked."""
    values = [metrics.get(OBJECTIVES[o][0]) for o in spec.objectives]
    values = [None if v is None or not math.isfinite(v) else float(v) for v in values]
    trades = int(metrics.get("trades", 0))
    return ("ok" if trades >= spec.min_trades else "too_few_trades"), values


def rank(spec: SweepSpec, results: list[TrialResult]) -> list[TrialResult]:
    """Best first by the (first) objective among trials with enough trades; then the trials with too
    few trades, then the failed ones, each by trial number."""
    metric_direction = OBJECTIVES[spec.objective][1]
    sign = -1.0 if metric_direction == "maximize" else 1.0

    def order(r: TrialResult):
        if r.status == "ok" and r.objective is not None:
            return (0, sign * r.objective, r.number)
        return (1 if r.status != "failed" else 2, 0.0, r.number)

    return sorted(results, key=order)


def results_of(records: list[dict[str, Any]]) -> list[TrialResult]:
    return [TrialResult(**r) for r in records]


def ranked_rows(spec: SweepSpec, results: list[TrialResult]) -> list[dict[str, Any]]:
    """The ranked trials: rank (ranked trials only), key, status, objectives, main metrics, parameters,
    error and MLflow run, best first."""
    rows = []
    position = 0
    for r in rank(spec, results):
        ranked = r.status == "ok" and r.objective is not None
        position += ranked
        row: dict[str, Any] = {"rank": position if ranked else None, "trial": r.key, "status": r.status}
        for name, value in zip(spec.objectives, r.objectives or [None] * len(spec.objectives)):
            row[name] = value
        for metric in ("trades", "profit_total", "sharpe", "max_drawdown"):
            row.setdefault(metric, r.metrics.get(metric))
        row.update({f"param.{k}": v for k, v in r.params.items()})
        row["error"] = r.error
        row["mlflow_run_id"] = r.mlflow_run_id
        rows.append(row)
    return rows
