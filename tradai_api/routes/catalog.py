"""The research catalog: every strategy with what was learnt about it, and its results side by side.

``/api/v1/catalog/strategies`` lists each strategy with its latest backtest's metrics, how many sweeps
it has and, for a model strategy, its model's aliases; ``/{name}`` adds the stored config;
``/{name}/compare`` puts its backtests (the canonical asset and the API's ad-hoc jobs), its sweeps (the
best trial's metrics) and its model versions (the training metrics) in one table of rows.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel, Field

from resources.model_registry import ModelRegistryError
from tradai_api.auth import BACKTESTS_READ, Principal
from tradai_api.deps import Services, authorize, services
from tradai_api.routes.backtests import ADHOC_JOB, ADHOC_OP, TAG_STRATEGY, backtest_metrics, timestamp
from tradai_api.routes.strategies import latest_backtest, stored_config, strategy_summary
from tradai_api.routes.sweeps import status_of
from tradai_api.schemas import STRATEGY_NAME, LatestBacktest, StoredConfig, StrategySummary
from tradai_api.strategy_files import require_strategy, strategies_by_name
from tradai_core.sweeps import SWEEP_JOB, SWEEP_TAG

router = APIRouter(prefix="/api/v1/catalog", tags=["catalog"])


class ModelAliases(BaseModel):
    registered: bool
    aliases: dict[str, int] = Field(description="Alias -> version (champion, challenger, previous)")


class CatalogEntry(StrategySummary):
    latest_backtest: LatestBacktest | None
    sweeps: int = Field(description="How many sweeps of this strategy the sweep store holds or are planning")
    model: ModelAliases | None = Field(description="For a model strategy: its registered model's aliases")


class CatalogDetail(CatalogEntry):
    config: StoredConfig | None


class CatalogList(BaseModel):
    items: list[CatalogEntry]


class ComparisonRow(BaseModel):
    kind: Literal["backtest", "adhoc_backtest", "sweep", "model_version"]
    id: str = Field(description="Dagster run id, sweep id or model version")
    at: dt.datetime | None = Field(description="When it finished (a sweep: when it was planned; a version: created)")
    status: str | None
    metrics: dict[str, float]
    details: dict[str, Any] = Field(description="What sets the row apart: timerange, best parameters, aliases")


class Comparison(BaseModel):
    name: str
    items: list[ComparisonRow]


def strategy_sweeps(name: str, svc: Services) -> list[str]:
    """The ids of the strategy's sweeps: planned ones (the sweep store) and those still planning."""
    store = svc.sweeps.store()
    ids = {sweep_id for sweep_id in store.sweep_ids() if store.plan(sweep_id)["strategy"] == name}
    ids |= {r.tags[SWEEP_TAG] for r in svc.dagster.runs(SWEEP_JOB, tags={TAG_STRATEGY: name}) if SWEEP_TAG in r.tags}
    return sorted(ids)


def model_aliases(name: str, svc: Services) -> ModelAliases:
    try:
        registry = svc.models.registry()
        if not registry.exists(name):
            return ModelAliases(registered=False, aliases={})
        return ModelAliases(registered=True, aliases={k: int(v) for k, v in registry.aliases(name).items()})
    except ModelRegistryError as exc:
        raise HTTPException(503, f"model registry: {exc}") from exc


def entry(name: str, svc: Services) -> dict[str, Any]:
    spec = require_strategy(svc.settings.strategies_dir, name)
    return {
        **strategy_summary(spec),
        "latest_backtest": latest_backtest(name, svc),
        "sweeps": len(strategy_sweeps(name, svc)),
        "model": model_aliases(name, svc) if spec.is_model else None,
    }


@router.get("/strategies", response_model=CatalogList, summary="Every strategy with its latest results")
def catalog(_: Principal = Depends(authorize(BACKTESTS_READ)), svc: Services = Depends(services)):
    return {"items": [entry(name, svc) for name in sorted(strategies_by_name(svc.settings.strategies_dir))]}


@router.get("/strategies/{name}", response_model=CatalogDetail, summary="A strategy, its config and latest results")
def catalog_strategy(
    name: Annotated[str, Path(pattern=STRATEGY_NAME)],
    _: Principal = Depends(authorize(BACKTESTS_READ)),
    svc: Services = Depends(services),
):
    return {**entry(name, svc), "config": stored_config(name, svc)}


@router.get("/strategies/{name}/compare", response_model=Comparison,
            summary="A strategy's backtests, sweeps and model versions side by side")
def compare(
    name: Annotated[str, Path(pattern=STRATEGY_NAME)],
    limit: Annotated[int, Query(ge=1, le=100, description="At most this many rows of each kind")] = 20,
    _: Principal = Depends(authorize(BACKTESTS_READ)),
    svc: Services = Depends(services),
):
    spec = require_strategy(svc.settings.strategies_dir, name)
    rows: list[dict[str, Any]] = []
    canonical = latest_backtest(name, svc)
    if canonical is not None and canonical["kind"] == "canonical":
        rows.append({"kind": "backtest", "id": canonical["dagster_run_id"], "at": canonical["finished_at"],
                     "status": "SUCCEEDED", "metrics": canonical["metrics"],
                     "details": {"timerange": canonical["timerange"]}})
    for run in svc.dagster.runs(ADHOC_JOB, tags={TAG_STRATEGY: name}, statuses=["SUCCESS"], limit=limit):
        metadata = svc.run_outcome(run.run_id, finished=True).output_metadata.get(ADHOC_OP, {})
        rows.append({"kind": "adhoc_backtest", "id": run.run_id, "at": timestamp(run.finished_at),
                     "status": "SUCCEEDED", "metrics": backtest_metrics(metadata),
                     "details": {"timerange": metadata.get("timerange")}})
    store = svc.sweeps.store()
    for sweep_id in strategy_sweeps(name, svc)[-limit:]:
        status = status_of(sweep_id, svc, detail=False)
        plan = store.plan(sweep_id)
        best = status.get("best_objective")
        rows.append({
            "kind": "sweep", "id": sweep_id, "status": status["state"],
            "at": dt.datetime.fromisoformat(plan["created"]) if plan else None,
            "metrics": {status["objective"]: float(best)} if best is not None and status.get("objective") else {},
            "details": {key: status.get(key) for key in
                        ("best_trial", "best_parameters", "planned", "materialized", "failed")},
        })
    if spec.is_model and model_aliases(name, svc).registered:
        try:
            versions = svc.models.registry().versions(name)[:limit]
        except ModelRegistryError as exc:
            raise HTTPException(503, f"model registry: {exc}") from exc
        rows += [{"kind": "model_version", "id": str(v["version"]), "at": v["created_at"], "status": v["status"],
                  "metrics": v["metrics"], "details": {"aliases": v["aliases"], "run_id": v["run_id"]}}
                 for v in versions]
    return {"name": name, "items": rows}
