"""Market data: the universe's symbols, their freshness, and syncs launched as the schedules launch them."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path

from tradai_api.auth import DATA_READ, DATA_SYNC, Principal
from tradai_api.deps import Services, authorize, services, unprocessable
from tradai_api.routes.backtests import RUN_ID, TAG_REQUESTED_BY, timestamp
from tradai_api.schemas import JOB_STATUS_OF, Freshness, SymbolList, SyncAccepted, SyncRequest, SyncStatus

router = APIRouter(prefix="/api/v1/data", tags=["data"])

# Dagster's tags for a run over a range of partitions (dagster._core.storage.tags); spelled out here
# so the API does not import dagster.
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"
SYNC_JOB_PREFIX = "sync_"


@router.get("/symbols", response_model=SymbolList, summary="Pairs and timeframes kept, and the symbols stored")
def symbols(_: Principal = Depends(authorize(DATA_READ)), svc: Services = Depends(services)):
    return {"markets": svc.market_data.symbols()}


@router.get("/freshness", response_model=Freshness, summary="Per pair and timeframe: the newest candle and its age")
def freshness(_: Principal = Depends(authorize(DATA_READ)), svc: Services = Depends(services)):
    now = dt.datetime.now(dt.UTC)
    return {"checked_at": now, "series": svc.market_data.freshness(now)}


def sync_window(entry, body: SyncRequest, today: dt.date) -> tuple[dt.date, dt.date] | str:
    """The days to sync (inclusive), or why there is nothing to sync by default."""
    last_day = today if entry.end is None else min(today, entry.end - dt.timedelta(days=1))
    where = f"{entry.exchange} {entry.market_type}"
    if body.start is None and body.end is None and entry.end is not None and today >= entry.end:
        return f"{where} ends on {entry.end}: nothing new to sync (pass start and end to sync past days again)"
    start = body.start or max(today - dt.timedelta(days=1), entry.start)
    end = body.end or last_day
    if start > end:
        raise unprocessable(["body", "start"], f"{where}: start {start} is after end {end}")
    if start < entry.start or end > last_day:
        field = "start" if start < entry.start else "end"
        raise unprocessable(["body", field], f"{where}: {start}..{end} reaches outside the days kept, {entry.start}..{last_day}")
    return start, end


@router.post("/sync", status_code=202, response_model=SyncAccepted, summary="Sync candles now")
def sync(
    body: SyncRequest | None = None,
    principal: Principal = Depends(authorize(DATA_SYNC)),
    svc: Services = Depends(services),
):
    """Launches `sync_<exchange>_<market_type>` over the days asked (default yesterday and today), as
    the hourly schedules do: only candles after the last stored one are fetched."""
    body = body or SyncRequest()
    entries = [
        e for e in svc.market_data.entries()
        if body.exchange in (None, e.exchange) and body.market_type in (None, e.market_type)
    ]
    if not entries:
        raise HTTPException(404, f"the universe has no {body.exchange or 'any exchange'} {body.market_type or ''} entry".strip())
    today = dt.datetime.now(dt.UTC).date()
    planned, skipped = [], []
    for entry in entries:
        window = sync_window(entry, body, today)
        if isinstance(window, str):
            skipped.append({"exchange": entry.exchange, "market_type": entry.market_type, "reason": window})
        else:
            planned.append((entry, window))
    runs = []
    for entry, (start, end) in planned:
        job = f"{SYNC_JOB_PREFIX}{entry.name}"
        run = svc.dagster.launch_run(job, {}, {
            PARTITION_RANGE_START_TAG: start.isoformat(), PARTITION_RANGE_END_TAG: end.isoformat(),
            TAG_REQUESTED_BY: principal.subject,
        })
        runs.append({
            "job_id": run.run_id, "job": job, "exchange": entry.exchange, "market_type": entry.market_type,
            "start": start, "end": end, "status": JOB_STATUS_OF[run.status],
            "links": {"self": f"/api/v1/data/sync/{run.run_id}", "dagster_run": f"{svc.dagster.ui_url}/runs/{run.run_id}"},
        })
    return {"runs": runs, "skipped": skipped}


@router.get("/sync/{job_id}", response_model=SyncStatus, summary="Status of a sync job")
def sync_status(
    job_id: Annotated[str, Path(pattern=RUN_ID)],
    _: Principal = Depends(authorize(DATA_READ)),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    run = svc.dagster.run(job_id)
    if run is None or not run.job_name.startswith(SYNC_JOB_PREFIX):
        raise HTTPException(404, f"no sync job {job_id}")
    error = None
    if run.status == "FAILURE":
        error = "; ".join(svc.run_outcome(job_id, finished=True).errors) or "the run failed; see the Dagster run"
    return {
        "job_id": job_id, "job": run.job_name, "status": JOB_STATUS_OF[run.status], "dagster_status": run.status,
        "created_at": timestamp(run.created_at), "finished_at": timestamp(run.finished_at), "error": error,
    }
