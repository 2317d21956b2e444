"""Request and response bodies of the API (they are also its OpenAPI schema at /docs)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

STRATEGY_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,99}$"
PAIR = r"^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}(:[A-Z0-9]{1,20})?$"
TIMEFRAME = r"^[1-9][0-9]{0,3}[smhdwM]$"
TIMERANGE_ALL = "all"

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
        default_factory=dict, description="Freqtrade config keys merged over the strategy's config, e.g. stake_amount, fee"
    )

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
    detail: str
    latency_ms: float


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    checks: dict[str, ComponentHealth]
