"""Backtest jobs: each is one run of the Dagster job ``adhoc_backtest``; the job id is the run id."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Response

from resources.aws_contract import ecs_run_tags
from tradai_api.auth import BACKTESTS_READ, BACKTESTS_RUN, Principal
from tradai_api.dagster_client import FINISHED_STATUSES, RunNotTerminable, RunRecord
from tradai_api.deps import Services, authorize, services
from tradai_api.schemas import (
    DAGSTER_STATUSES,
    JOB_STATUS_OF,
    BacktestAccepted,
    BacktestDetail,
    BacktestPage,
    BacktestRequest,
    BacktestSummary,
    EquityCurve,
    JobStatus,
    TradesPage,
)
from tradai_api.stores import equity_points
from tradai_api.strategy_files import require_runnable_strategy
from tradai_core.metrics import METRICS

ADHOC_JOB = "adhoc_backtest"
ADHOC_OP = "backtest_with_overrides"
TAG_STRATEGY = "tradai/strategy"
TAG_REQUESTED_BY = "tradai/requested_by"
TAG_IDEMPOTENCY_KEY = "tradai/idempotency_key"
TAG_REQUEST_HASH = "tradai/request_hash"
RUN_ID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
IDEMPOTENCY_KEY = r"^[\x21-\x7e]{1,255}$"  # printable ASCII, as Stripe and the IETF draft use

router = APIRouter(prefix="/api/v1/backtests", tags=["backtests"])
JobId = Annotated[str, Path(pattern=RUN_ID, description="The job id (a Dagster run id)")]


def timestamp(seconds: float | None) -> dt.datetime | None:
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.UTC)


def job_links(job_id: str, svc: Services) -> dict[str, str]:
    base = f"/api/v1/backtests/{job_id}"
    return {
        "self": base, "cancel": f"{base}/cancel", "equity": f"{base}/equity", "trades": f"{base}/trades",
        "dagster_run": f"{svc.dagster.ui_url}/runs/{job_id}",
    }


def launched_config(run: RunRecord) -> dict[str, Any]:
    config = yaml.safe_load(run.run_config_yaml) or {}
    return config.get("ops", {}).get(ADHOC_OP, {}).get("config", {})


def summary(run: RunRecord, svc: Services) -> dict[str, Any]:
    request = launched_config(run)
    return {
        "job_id": run.run_id,
        "strategy": run.tags.get(TAG_STRATEGY) or request.get("strategy"),
        "status": JOB_STATUS_OF[run.status],
        "dagster_status": run.status,
        "created_at": timestamp(run.created_at),
        "started_at": timestamp(run.started_at),
        "finished_at": timestamp(run.finished_at),
        "request": request,
        "links": job_links(run.run_id, svc),
    }


def backtest_run(job_id: str, svc: Services) -> RunRecord:
    run = svc.dagster.run(job_id)
    if run is None or run.job_name != ADHOC_JOB:
        raise HTTPException(404, f"no backtest job {job_id}")
    return run


def backtest_metrics(metadata: dict[str, Any]) -> dict[str, float]:
    """The backtest's metrics, as logged to its MLflow run (the names of tradai_core.metrics.METRICS)."""
    return {name: float(metadata[name]) for name in METRICS if isinstance(metadata.get(name), int | float)}


def mlflow_run(metadata: dict[str, Any]) -> dict[str, Any] | None:
    run_id = metadata.get("mlflow_run_id")
    return None if run_id is None else {"run_id": run_id, "url": metadata.get("mlflow_run")}


def finished_backtest_metadata(run: RunRecord, svc: Services) -> dict[str, Any]:
    if run.status != "SUCCESS":
        raise HTTPException(409, f"backtest job {run.run_id} is {JOB_STATUS_OF[run.status]}; results exist once it has SUCCEEDED")
    metadata = svc.run_outcome(run.run_id, finished=True).output_metadata.get(ADHOC_OP)
    if not metadata or "mlflow_run_id" not in metadata:
        raise HTTPException(502, f"backtest job {run.run_id} succeeded without recording its MLflow run")
    return metadata


def request_hash(body: BacktestRequest) -> str:
    canonical = json.dumps(body.model_dump(exclude_none=True), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_override_keys(overrides: dict[str, Any]) -> None:
    """Freqtrade ignores a misspelt key silently; refuse it before launching anything."""
    from freqtrade.config_schema.config_schema import CONF_SCHEMA

    from tradai_core.strategy_config import unknown_keys

    unknown = unknown_keys(overrides, CONF_SCHEMA, CONF_SCHEMA)
    if unknown:
        raise HTTPException(422, [
            {"loc": ["body", "overrides", *key.split(".")], "msg": f"unknown Freqtrade config key {key}", "type": "value_error"}
            for key in unknown
        ])


@router.post("", status_code=202, response_model=BacktestAccepted, summary="Launch a backtest")
def submit_backtest(
    body: BacktestRequest,
    response: Response,
    principal: Principal = Depends(authorize(BACKTESTS_RUN, backtest_launch=True)),
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", pattern=IDEMPOTENCY_KEY)] = None,
    svc: Services = Depends(services),
):
    """Launches the `adhoc_backtest` job through the Dagster instance (its run queue and launcher).
    With an `Idempotency-Key`, a repeated request returns the job of the first one and launches nothing."""
    require_runnable_strategy(svc.settings.strategies_dir, body.strategy, ["body", "strategy"])
    check_override_keys(body.overrides)
    digest = request_hash(body)
    config = {"strategy": body.strategy, "overrides": body.overrides}
    config.update({k: v for k, v in (("timerange", body.timerange), ("pairs", body.pairs), ("timeframe", body.timeframe)) if v is not None})
    tags = {**ecs_run_tags("backtest"), TAG_STRATEGY: body.strategy, TAG_REQUESTED_BY: principal.subject, TAG_REQUEST_HASH: digest}
    with svc.launch_lock:
        if idempotency_key is not None:
            tags[TAG_IDEMPOTENCY_KEY] = idempotency_key
            earlier = svc.dagster.runs(
                ADHOC_JOB, tags={TAG_IDEMPOTENCY_KEY: idempotency_key, TAG_REQUESTED_BY: principal.subject}, limit=1
            )
            if earlier:
                if earlier[0].tags.get(TAG_REQUEST_HASH) != digest:
                    raise HTTPException(409, f"Idempotency-Key {idempotency_key!r} was used for a different request (job {earlier[0].run_id})")
                response.headers["Idempotent-Replayed"] = "true"
                run = earlier[0]
            else:
                run = svc.dagster.launch_run(ADHOC_JOB, {"ops": {ADHOC_OP: {"config": config}}}, tags)
        else:
            run = svc.dagster.launch_run(ADHOC_JOB, {"ops": {ADHOC_OP: {"config": config}}}, tags)
    links = job_links(run.run_id, svc)
    response.headers["Location"] = links["self"]
    return {"job_id": run.run_id, "status": JOB_STATUS_OF[run.status], "links": links}


@router.get("", response_model=BacktestPage, summary="List backtest jobs, newest first")
def list_backtests(
    strategy: Annotated[str | None, Query(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")] = None,
    status: Annotated[list[JobStatus] | None, Query(description="Repeat to match any of several")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(pattern=RUN_ID, description="next_cursor of the previous page")] = None,
    _: Principal = Depends(authorize(BACKTESTS_READ)),
    svc: Services = Depends(services),
):
    statuses = [s for name in status or [] for s in DAGSTER_STATUSES[name]]
    runs = svc.dagster.runs(
        ADHOC_JOB, tags={TAG_STRATEGY: strategy} if strategy else None, statuses=statuses or None, cursor=cursor, limit=limit + 1
    )
    page = runs[:limit]
    return {"items": [summary(r, svc) for r in page], "next_cursor": page[-1].run_id if len(runs) > limit else None}


@router.get("/{job_id}", response_model=BacktestDetail, summary="A backtest job: status; metrics once finished")
def get_backtest(job_id: JobId, _: Principal = Depends(authorize(BACKTESTS_READ)), svc: Services = Depends(services)):
    run = backtest_run(job_id, svc)
    detail = {**summary(run, svc), "metrics": None, "mlflow": None, "timerange": None, "warnings": [], "error": None}
    if run.status in ("SUCCESS", "FAILURE"):
        outcome = svc.run_outcome(run.run_id, finished=True)
        metadata = outcome.output_metadata.get(ADHOC_OP, {})
        if run.status == "SUCCESS":
            detail["metrics"] = backtest_metrics(metadata)
            detail["mlflow"] = mlflow_run(metadata)
            detail["timerange"] = metadata.get("timerange")
            detail["warnings"] = metadata.get("warnings", [])
            if detail["mlflow"]:
                detail["links"]["mlflow_run"] = detail["mlflow"]["url"]
        else:
            detail["error"] = "; ".join(outcome.errors) or "the run failed without a step error; see the Dagster run"
    return detail


@router.post("/{job_id}/cancel", status_code=202, response_model=BacktestSummary, summary="Cancel a queued or running backtest")
def cancel_backtest(job_id: JobId, _: Principal = Depends(authorize(BACKTESTS_RUN)), svc: Services = Depends(services)):
    run = backtest_run(job_id, svc)
    if run.status in FINISHED_STATUSES:
        raise HTTPException(409, f"backtest job {job_id} already finished: {JOB_STATUS_OF[run.status]}")
    try:
        svc.dagster.terminate(job_id)
    except RunNotTerminable as exc:
        raise HTTPException(409, f"backtest job {job_id} cannot be cancelled: {exc}") from exc
    # The mutation answers with the run as it was; read it again for CANCELING or CANCELED.
    return summary(backtest_run(job_id, svc), svc)


@router.get("/{job_id}/equity", response_model=EquityCurve, summary="Equity curve of a finished backtest")
def backtest_equity(job_id: JobId, _: Principal = Depends(authorize(BACKTESTS_READ)), svc: Services = Depends(services)):
    metadata = finished_backtest_metadata(backtest_run(job_id, svc), svc)
    stats = svc.artifacts.stats(metadata["mlflow_run_id"])
    return {
        "job_id": job_id, "currency": stats["stake_currency"], "basis": "closed_trades",
        "starting_balance": float(stats["starting_balance"]), "points": equity_points(stats),
    }


@router.get("/{job_id}/trades", response_model=TradesPage, summary="Trades of a finished backtest")
def backtest_trades(
    job_id: JobId,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    _: Principal = Depends(authorize(BACKTESTS_READ)),
    svc: Services = Depends(services),
):
    metadata = finished_backtest_metadata(backtest_run(job_id, svc), svc)
    trades = svc.artifacts.stats(metadata["mlflow_run_id"]).get("trades", [])
    return {"job_id": job_id, "total": len(trades), "offset": offset, "items": trades[offset:offset + limit]}
