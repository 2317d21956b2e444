"""Strategies: what the files declare, the stored config, and the latest backtest's metrics."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from tradai_api.auth import BACKTESTS_READ, Principal
from tradai_api.deps import Services, authorize, services
from tradai_api.routes.backtests import (
    ADHOC_JOB,
    ADHOC_OP,
    TAG_STRATEGY,
    backtest_metrics,
    mlflow_run,
    timestamp,
)
from tradai_api.schemas import STRATEGY_NAME, StrategyDetail, StrategyList
from tradai_api.strategy_files import require_strategy
from tradai_core.strategy_discovery import StrategySpec, discover_strategies

router = APIRouter(prefix="/api/v1/strategies", tags=["strategies"])


def strategy_summary(spec: StrategySpec) -> dict[str, Any]:
    return {
        "name": spec.name, "file": spec.file.name, "category": spec.category, "timeframe": spec.timeframe,
        "version": spec.version, "pairs": spec.pairs, "description": spec.description, "problem": spec.problem,
    }


def stored_config(name: str, svc: Services) -> dict[str, Any] | None:
    event = svc.dagster.latest_materialization(["strategies", name, "config"])
    if event is None:
        return None
    return {
        "config_hash": event.metadata["config_hash"],
        "values": event.metadata["config"],
        "materialized_at": dt.datetime.fromtimestamp(event.timestamp_ms / 1000, dt.UTC),
        "dagster_run_id": event.run_id,
    }


def latest_backtest(name: str, svc: Services) -> dict[str, Any] | None:
    candidates = []
    event = svc.dagster.latest_materialization(["strategies", name, "backtest"])
    if event is not None:
        candidates.append({
            "kind": "canonical", "dagster_run_id": event.run_id,
            "finished_at": dt.datetime.fromtimestamp(event.timestamp_ms / 1000, dt.UTC),
            "metrics": backtest_metrics(event.metadata), "timerange": event.metadata.get("timerange"),
            "mlflow": mlflow_run(event.metadata),
        })
    runs = svc.dagster.runs(ADHOC_JOB, tags={TAG_STRATEGY: name}, statuses=["SUCCESS"], limit=1)
    if runs:
        metadata = svc.run_outcome(runs[0].run_id, finished=True).output_metadata.get(ADHOC_OP, {})
        candidates.append({
            "kind": "adhoc", "dagster_run_id": runs[0].run_id, "finished_at": timestamp(runs[0].finished_at),
            "metrics": backtest_metrics(metadata), "timerange": metadata.get("timerange"), "mlflow": mlflow_run(metadata),
        })
    return max(candidates, key=lambda c: c["finished_at"], default=None)


@router.get("", response_model=StrategyList, summary="Every strategy in the strategies directory")
def list_strategies(_: Principal = Depends(authorize(BACKTESTS_READ)), svc: Services = Depends(services)):
    return {"items": [strategy_summary(s) for s in discover_strategies(svc.settings.strategies_dir)]}


@router.get("/{name}", response_model=StrategyDetail, summary="A strategy: metadata, config, latest backtest metrics")
def get_strategy(
    name: Annotated[str, Path(pattern=STRATEGY_NAME)],
    _: Principal = Depends(authorize(BACKTESTS_READ)),
    svc: Services = Depends(services),
):
    spec = require_strategy(svc.settings.strategies_dir, name)
    return {
        **strategy_summary(spec),
        "config_overrides": spec.config_overrides,
        "config": stored_config(name, svc),
        "latest_backtest": latest_backtest(name, svc),
    }
