"""Request and response bodies of the API (they are also its OpenAPI schema at /docs)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from tradai_core.sweeps import SWEEP_ID_PATTERN, SweepSpec

STRATEGY_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,99}$"
PAIR = r"^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}(:[A-Z0-9]{1,20})?$"
TIMEFRAME = r"^[1-9][0-9]{0,3}[smhdwM]$"
TIMERANGE_ALL = "all"
# Freqtrade's own config needs about 5 levels (overrides.exchange.ccxt_config.options.<key>); deeper
# overrides are a mistake or an attack on every component that walks them (hashing, Dagster's config).
MAX_OVERRIDES_DEPTH = 8

Pair = Annotated[str, StringConstraints(pattern=PAIR)]
JobStatus = Literal["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELING", "CANCELED"]

# The API's job statuses, each a set of Dagster run statuses.
DAGSTER_STATUSES: dict[str, tuple[str, ...]] = {
    "QUEUED": ("QUEUED", "NOT_STARTED"),
    "RUNNING": ("STARTING", "STARTED", "SUSPENDED", "MANAGED"),
    "SUCCEEDED": ("SUCCESS",),
    "FAILED": ("FAILURE",),
    "CANCELING": ("CANCELING",),
    "CANCELED": ("CANCELED",),
}
JOB_STATUS_OF = {dagster: api for api, group in DAGSTER_STATUSES.items() for dagster in group}


def nesting_depth(value: Any) -> int:
    """How many objects and arrays deep ``value`` nests (0 for a scalar), without recursion."""
    deepest, pending = 0, [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth + 1)
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def check_timerange(value: str) -> str:
    """Freqtrade's ``YYYYMMDD-YYYYMMDD`` (either side may be open) or ``all``: real dates, start before end."""
    if value == TIMERANGE_ALL:
        return value
    match = re.fullmatch(r"(\d{8})?-(\d{8})?", value)
    if not match:
        raise ValueError("expected YYYYMMDD-YYYYMMDD (either side may be empty) or 'all'")
    try:
        start, end = (dt.datetime.strptime(d, "%Y%m%d").date() if d else None for d in match.groups())
    except ValueError as exc:
        raise ValueError(f"not a calendar date: {exc}") from exc
    if start is not None and end is not None and end <= start:
        raise ValueError("the end must be after the start")
    return value


class BacktestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"strategy": "SampleStrategy", "timerange": "20180115-20180125", "pairs": ["ETH/BTC", "LTC/BTC"],
                      "overrides": {"stake_amount": 0.01, "max_open_trades": 2}}],
    })

    strategy: str = Field(pattern=STRATEGY_NAME, description="Strategy class name, as in strategies/<Name>/...")
    timerange: str | None = Field(default=None, max_length=17, description="YYYYMMDD-YYYYMMDD (open ends allowed) or 'all'")
    pairs: list[Pair] | None = Field(default=None, min_length=1, max_length=500, description="ccxt symbols, e.g. ETH/BTC")
    timeframe: str | None = Field(default=None, pattern=TIMEFRAME, description="e.g. 5m, 1h")
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Freqtrade config keys merged over the strategy's config, e.g. stake_amount, fee; "
        f"objects and arrays nest at most {MAX_OVERRIDES_DEPTH} levels deep",
    )

    @field_validator("overrides")
    @classmethod
    def _overrides(cls, value: dict[str, Any]) -> dict[str, Any]:
        depth = nesting_depth(value)
        if depth > MAX_OVERRIDES_DEPTH:
            raise ValueError(f"nests {depth} levels deep; at most {MAX_OVERRIDES_DEPTH} are allowed")
        return value

    @field_validator("timerange")
    @classmethod
    def _timerange(cls, value: str | None) -> str | None:
        return None if value is None else check_timerange(value)


class Links(BaseModel):
    model_config = ConfigDict(extra="allow")
    self: str


class BacktestAccepted(BaseModel):
    job_id: str
    status: JobStatus
    links: Links


class MlflowRun(BaseModel):
    run_id: str
    url: str | None = None


class BacktestSummary(BaseModel):
    job_id: str
    strategy: str | None
    status: JobStatus
    dagster_status: str
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    request: dict[str, Any] = Field(description="The run config the job was launched with")
    links: Links


class BacktestDetail(BacktestSummary):
    metrics: dict[str, float] | None = Field(description="When SUCCEEDED: the metrics logged to the MLflow run")
    mlflow: MlflowRun | None
    timerange: str | None = Field(description="The resolved timerange the backtest ran on")
    warnings: list[str]
    error: str | None = Field(description="When FAILED: why")


class BacktestPage(BaseModel):
    items: list[BacktestSummary]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page")


class EquityPoint(BaseModel):
    date: dt.datetime
    equity: float


class EquityCurve(BaseModel):
    job_id: str
    currency: str
    basis: Literal["closed_trades"] = Field(
        description="closed_trades: the starting balance plus each closed trade's profit at its close time"
    )
    starting_balance: float
    points: list[EquityPoint]


class TradesPage(BaseModel):
    job_id: str
    total: int
    offset: int
    items: list[dict[str, Any]] = Field(description="Freqtrade's trade records")


class StrategySummary(BaseModel):
    name: str
    file: str
    category: str | None
    timeframe: str | None
    version: str | None
    pairs: list[str] | None
    description: str | None
    problem: str | None = Field(description="Why the strategy cannot run, naming the file; null when it can")


class StoredConfig(BaseModel):
    config_hash: str
    values: dict[str, Any]
    materialized_at: dt.datetime
    dagster_run_id: str


class LatestBacktest(BaseModel):
    kind: Literal["canonical", "adhoc"]
    dagster_run_id: str
    finished_at: dt.datetime
    metrics: dict[str, float]
    timerange: str | None
    mlflow: MlflowRun | None


class StrategyDetail(StrategySummary):
    config_overrides: dict[str, Any]
    config: StoredConfig | None = Field(description="The latest materialisation of strategies/<Name>/config")
    latest_backtest: LatestBacktest | None = Field(
        description="The newer of the latest strategies/<Name>/backtest materialisation and the latest API backtest"
    )


class StrategyList(BaseModel):
    items: list[StrategySummary]


class MarketSymbols(BaseModel):
    exchange: str
    market_type: str
    pairs: list[str]
    timeframes: list[str]
    mark_timeframes: list[str]
    funding_timeframes: list[str]
    stored_symbols: list[str] = Field(description="ArcticDB symbols <pair>|<timeframe>|<candle type> that hold candles")


class SymbolList(BaseModel):
    markets: list[MarketSymbols]


class SeriesFreshness(BaseModel):
    exchange: str
    market_type: str
    pair: str
    timeframe: str
    candle_type: str
    last_candle: dt.datetime | None = Field(description="Open time of the newest stored candle (UTC)")
    age_seconds: float | None = Field(description="Seconds from the newest candle's open time to now")
    max_age_seconds: float | None = Field(description="The universe's max_age for the entry, if set")
    fresh: bool | None = Field(description="age <= max_age; null when the entry sets no max_age")


class Freshness(BaseModel):
    checked_at: dt.datetime
    series: list[SeriesFreshness]


class SyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exchange: str | None = Field(default=None, pattern=r"^[a-z0-9]{1,40}$", description="Only this exchange")
    market_type: Literal["spot", "futures"] | None = None
    start: dt.date | None = Field(default=None, description="First UTC day to sync; default yesterday")
    end: dt.date | None = Field(default=None, description="Last UTC day to sync (inclusive); default today")


class SyncRun(BaseModel):
    job_id: str
    job: str
    exchange: str
    market_type: str
    start: dt.date
    end: dt.date
    status: JobStatus
    links: Links


class SyncSkipped(BaseModel):
    exchange: str
    market_type: str
    reason: str


class SyncAccepted(BaseModel):
    runs: list[SyncRun]
    skipped: list[SyncSkipped]


class SyncStatus(BaseModel):
    job_id: str
    job: str
    status: JobStatus
    dagster_status: str
    created_at: dt.datetime
    finished_at: dt.datetime | None
    error: str | None


class ComponentHealth(BaseModel):
    ok: bool
    detail: str | None = Field(
        default=None, description="Only for a token with the admin scope: where the component is and what it answered"
    )
    latency_ms: float | None = Field(default=None, description="Only for a token with the admin scope")


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    checks: dict[str, ComponentHealth]


# Models -------------------------------------------------------------------------------------------


class ModelSummary(BaseModel):
    name: str = Field(description="The registered model's name: the model strategy's class name")
    file: str | None = Field(description="The strategy file; null for a registered model without one")
    registered: bool = Field(description="Whether the registry has a version of it yet")
    aliases: dict[str, int] = Field(description="champion, challenger, previous: the version each points at")
    problem: str | None = None


class ModelList(BaseModel):
    items: list[ModelSummary]


class ModelVersion(BaseModel):
    version: int
    aliases: list[str]
    created_at: dt.datetime
    run_id: str | None
    status: str | None
    metrics: dict[str, float] = Field(description="The training run's metrics (per-fold and overall)")


class ModelVersions(BaseModel):
    name: str
    items: list[ModelVersion]


class AuditEvent(BaseModel):
    time: dt.datetime
    event: str = Field(description="challenger, promote, keep, inconclusive or rollback")
    trigger: str = Field(description="Who or what asked: a sensor, a run, api:<subject>")
    champion_before: int | None
    champion_after: int | None
    previous_after: int | None
    challenger: int | None
    p_value: float | None
    details: dict[str, Any]


class AuditLog(BaseModel):
    name: str
    items: list[AuditEvent] = Field(description="Oldest first")


class ShadowInfo(BaseModel):
    name: str
    status: Literal["none", "running", "finished", "failed"] = Field(
        description="The shadow bot of the current challenger (else the latest shadow): none, running, finished, failed"
    )
    challenger: int | None = Field(description="The challenger version the shadow trades")
    bot_id: str | None
    started: dt.datetime | None
    ends: dt.datetime | None = Field(description="When its period ends (shadow_days after the start)")
    trades: int | None = Field(
        description="The shadow's closed trades in its period so far (running: read from its bot; None when unreadable)"
    )
    result: dict[str, Any] | None = Field(
        description="finished: both bots' trade counts, the window and the comparison of their per-trade returns"
    )
    reason: str | None = Field(description="failed: why")


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(default=None, ge=1, description="The version to promote; default the challenger")


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to_version: int | None = Field(default=None, ge=1, description="The version to go back to; default previous")


class AliasMove(BaseModel):
    name: str
    event: str
    champion_before: int | None
    champion_after: int | None
    previous_after: int | None
    trigger: str
    aliases: dict[str, int] = Field(description="The aliases after the move")


class RunAccepted(BaseModel):
    job_id: str
    status: JobStatus
    asset: str = Field(description="The asset the run materialises")
    links: Links


# Bots ---------------------------------------------------------------------------------------------


class BotHeartbeat(BaseModel):
    status: str = Field(description="What the bot last reported: starting, running, stopped or error")
    last_heartbeat: dt.datetime
    age_seconds: float
    open_trades: int
    profit: float = Field(description="Closed and open profit in the stake currency")


class Bot(BaseModel):
    strategy: str | None = Field(description="The strategy class; null when the backend does not say")
    strategy_id: str | None = Field(description="The bot's id (its service or directory); null when not deployed")
    mode: str | None = Field(description="dry_run or live as deployed; null when unknown")
    state: str = Field(description="The backend's state: running, starting, failed, stopped (local); ACTIVE, DRAINING (ECS); absent")
    backend: dict[str, Any] = Field(description="What the backend reports: pids and restarts, or desired and running counts")
    heartbeat: BotHeartbeat | None
    healthy: bool = Field(description="Running or starting, with a heartbeat younger than the limit (180 s by default)")


class BotList(BaseModel):
    checked_at: dt.datetime
    max_heartbeat_age_seconds: float
    items: list[Bot]


class BotStartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["dry_run", "live"] = "dry_run"
    force: bool = Field(default=False, description="Deploy even though the strategy's latest backtest failed")


class KillSwitchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_dry_run: bool = Field(default=False, description="Stop the dry-run bots too")


class KillSwitchResult(BaseModel):
    requested_by: str
    include_dry_run: bool
    stopped: list[dict[str, Any]] = Field(description="Every bot stopped, as its backend reports it")
    left_running: list[dict[str, Any]] = Field(description="Running dry-run bots left alone (without include_dry_run)")


# Sweeps -------------------------------------------------------------------------------------------

SweepState = Literal[
    "planning", "planning_failed", "running", "finished", "summarised", "cancelling", "cancelled"
]


class SweepRequest(SweepSpec):
    """A sweep spec (tradai_core.sweeps.SweepSpec, the run config of the `sweep` job) and its id."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"strategy": "SampleStrategy", "timerange": "20180115-20180125", "search": "grid",
                      "grid": {"buy_rsi": [25, 30, 35]}, "budget": 3, "objective": "sharpe", "min_trades": 5}],
    })

    strategy: str = Field(pattern=STRATEGY_NAME, description="Strategy class name")
    timerange: str = Field(max_length=17, description="YYYYMMDD-YYYYMMDD, inside the stored candles")
    budget: int = Field(ge=1, le=100_000, description="Number of trials (a grid may have fewer combinations)")
    pairs: list[Pair] | None = Field(default=None, min_length=1, max_length=500)
    sweep_id: str | None = Field(
        default=None, pattern=SWEEP_ID_PATTERN.pattern,
        description="1-48 lower-case letters, digits or underscores; default <strategy>_<UTC time>",
    )

    @field_validator("overrides", "grid")
    @classmethod
    def _not_too_deep(cls, value: dict[str, Any]) -> dict[str, Any]:
        depth = nesting_depth(value)
        if depth > MAX_OVERRIDES_DEPTH:
            raise ValueError(f"nests {depth} levels deep; at most {MAX_OVERRIDES_DEPTH} are allowed")
        return value


class SweepAccepted(BaseModel):
    sweep_id: str
    state: SweepState
    job_id: str = Field(description="The Dagster run of the `sweep` job that plans it")
    links: Links


class SweepSummary(BaseModel):
    sweep_id: str
    strategy: str | None
    state: SweepState
    objective: str | None = None
    planned: int = 0
    materialized: int = Field(0, description="Trials done")
    failed: int = 0
    in_progress: int = 0
    pending: int = 0
    best_trial: str | None = None
    best_parameters: dict[str, Any] | None = None
    best_objective: float | None = None
    links: Links


class SweepDetail(SweepSummary):
    trials: dict[str, str] = Field(default_factory=dict, description="Trial key -> materialized, failed, in_progress, pending")
    errors: dict[str, str] = Field(default_factory=dict, description="Failed trials' errors")
    error: str | None = Field(None, description="Why the sweep did not start (state planning_failed)")
    cancelled: dict[str, Any] | None = Field(None, description="Who cancelled it and when")
    job_id: str | None = Field(None, description="The Dagster run that planned it")


class SweepPage(BaseModel):
    items: list[SweepSummary]


class SweepResults(BaseModel):
    sweep_id: str
    strategy: str
    objective: str
    complete: bool = Field(description="Every planned trial has a result")
    best_trial: str | None
    best_parameters: dict[str, Any] | None
    best_objective: float | None
    trials: list[dict[str, Any]] = Field(description="Ranked best first: rank, trial, status, objective(s), metrics, param.<name>, error")
