"""Parameter sweeps: each starts as one run of the Dagster job ``sweep`` (its op ``plan_sweep`` checks
and plans it); the sweep sensor then launches its trial batches and summary. Status and results are
read from the sweep store in ArcticDB and the trial partitions' statuses through the webserver."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response

from resources.aws_contract import ecs_run_tags
from tradai_api.auth import BACKTESTS_READ, BACKTESTS_RUN, Principal
from tradai_api.dagster_client import FINISHED_STATUSES, RunNotTerminable, RunRecord
from tradai_api.deps import Services, authorize, services
from tradai_api.routes.backtests import TAG_REQUESTED_BY, TAG_STRATEGY, check_override_keys
from tradai_api.schemas import SweepAccepted, SweepDetail, SweepPage, SweepRequest, SweepResults
from tradai_api.strategy_files import require_runnable_strategy
from tradai_core.sweep_status import sweep_state
from tradai_core.sweeps import (
    OPTUNA_SEARCHES,
    SWEEP_ID_PATTERN,
    SWEEP_JOB,
    SWEEP_PLAN_OP,
    SWEEP_TAG,
    SWEEP_TRIAL_ASSET_PATH,
    SweepSpec,
    SweepSpecError,
    default_sweep_id,
    dimensions,
    plan_grid_or_random,
    rank,
    ranked_rows,
    results_of,
    spec_conflicts,
)

router = APIRouter(prefix="/api/v1/sweeps", tags=["sweeps"])
SweepId = Annotated[str, Path(pattern=SWEEP_ID_PATTERN.pattern, description="The sweep id")]
UNFINISHED_RUN_STATUSES = ["QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"]


def sweep_links(sweep_id: str, svc: Services) -> dict[str, str]:
    base = f"/api/v1/sweeps/{sweep_id}"
    return {
        "self": base, "cancel": f"{base}/cancel", "results": f"{base}/results",
        "dagster_runs": f"{svc.dagster.ui_url}/runs?q[]=tag:{SWEEP_TAG}={sweep_id}",
    }


def unprocessable_fields(errors: list[tuple[list[str], str]]) -> HTTPException:
    return HTTPException(422, [{"loc": loc, "msg": msg, "type": "value_error"} for loc, msg in errors])


def check_parameters(spec: SweepSpec, strategy) -> None:
    """The spec against the parameters the strategy declares (names, spaces, values, the grid's size),
    as the plan op checks it: a 422 naming the field before anything is launched."""
    from resources.freqtrade_runner import BacktestError, strategy_parameters

    try:
        declared = strategy_parameters(strategy.file, strategy.name)
    except BacktestError as exc:
        raise unprocessable_fields([(["body", "strategy"], f"strategy {strategy.name} cannot be loaded: {exc}")]) from exc
    try:
        dims = dimensions(spec, declared)
        if spec.search not in OPTUNA_SEARCHES:
            plan_grid_or_random(spec, dims)
    except SweepSpecError as exc:
        message = str(exc)
        field, sep, _ = message.partition(":")
        field = field.split(".")[0]
        # A message that does not start with a field names the strategy's declarations.
        loc = ["body", field] if sep and field in SweepSpec.model_fields else ["body", "strategy"]
        raise unprocessable_fields([(loc, message)]) from exc


def planning_run(sweep_id: str, svc: Services) -> RunRecord | None:
    runs = svc.dagster.runs(SWEEP_JOB, tags={SWEEP_TAG: sweep_id}, limit=1)
    return runs[0] if runs else None


def trial_partitions(svc: Services) -> dict[str, str]:
    return svc.dagster.partition_statuses(list(SWEEP_TRIAL_ASSET_PATH))


def status_of(sweep_id: str, svc: Services, partitions: dict[str, str] | None = None, detail: bool = True) -> dict[str, Any]:
    """The sweep's state: from its planning run until it has a plan, then from the sweep store and its
    trial partitions. 404 for a sweep neither knows."""
    store = svc.sweeps.store()
    plan = store.plan(sweep_id)
    run = planning_run(sweep_id, svc) if plan is None or detail else None
    links = sweep_links(sweep_id, svc)
    if plan is None:
        if run is None:
            raise HTTPException(404, f"no sweep {sweep_id}")
        out: dict[str, Any] = {
            "sweep_id": sweep_id, "strategy": run.tags.get(TAG_STRATEGY), "links": links, "job_id": run.run_id,
            "cancelled": store.cancellation(sweep_id), "error": None,
        }
        if run.status == "FAILURE":
            errors = svc.run_outcome(run.run_id, finished=True).errors
            out.update(state="planning_failed", error="; ".join(errors) or "the planning run failed; see its Dagster run")
        elif run.status == "CANCELED" or out["cancelled"] is not None:
            out["state"] = "cancelled" if run.status in FINISHED_STATUSES else "cancelling"
        elif run.status == "SUCCESS":  # planned and then removed from the store? say so rather than guess
            raise HTTPException(502, f"sweep {sweep_id}: its planning run succeeded but the sweep store has no plan")
        else:
            out["state"] = "planning"
        return out
    summary = store.summary(sweep_id)
    state = sweep_state(
        plan,
        trial_partitions(svc) if partitions is None else partitions,
        store.trials(sweep_id),
        summary[1] if summary else None,
        store.cancellation(sweep_id),
    )
    return {**state, "links": links, "job_id": run.run_id if run else None, "error": None}


@router.post("", status_code=202, response_model=SweepAccepted, summary="Start a parameter sweep")
def start_sweep(
    body: SweepRequest,
    response: Response,
    principal: Principal = Depends(authorize(BACKTESTS_RUN, backtest_launch=True)),
    svc: Services = Depends(services),
):
    """Checks the spec against the strategy's declared hyperopt parameters, then launches the `sweep`
    job through the Dagster instance; the sweep sensor runs its trials in batches."""
    conflicts = spec_conflicts(body)
    if conflicts:
        raise unprocessable_fields([(["body", name], message) for name, message in conflicts])
    strategy = require_runnable_strategy(svc.settings.strategies_dir, body.strategy, ["body", "strategy"])
    check_override_keys(body.overrides)
    check_parameters(body, strategy)
    sweep_id = body.sweep_id or default_sweep_id(body.strategy)
    config = {**body.model_dump(mode="json", exclude_none=True), "sweep_id": sweep_id}
    tags = {**ecs_run_tags("sweep"), SWEEP_TAG: sweep_id, TAG_STRATEGY: body.strategy, TAG_REQUESTED_BY: principal.subject}
    with svc.launch_lock:
        if svc.sweeps.store().plan(sweep_id) is not None or planning_run(sweep_id, svc) is not None:
            raise HTTPException(409, f"sweep_id {sweep_id!r} is taken by an earlier sweep; choose another")
        run = svc.dagster.launch_run(SWEEP_JOB, {"ops": {SWEEP_PLAN_OP: {"config": config}}}, tags)
    links = sweep_links(sweep_id, svc)
    response.headers["Location"] = links["self"]
    return {"sweep_id": sweep_id, "state": "planning", "job_id": run.run_id, "links": links}


@router.get("", response_model=SweepPage, summary="List sweeps, newest first")
def list_sweeps(
    strategy: Annotated[str | None, Query(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    _: Principal = Depends(authorize(BACKTESTS_READ)),
    svc: Services = Depends(services),
):
    """Planned sweeps (the sweep store) and those still planning or refused (their `sweep` runs)."""
    store = svc.sweeps.store()
    created: dict[str, str] = {}
    for sweep_id in store.sweep_ids():
        created[sweep_id] = store.plan(sweep_id)["created"]
    for run in svc.dagster.runs(SWEEP_JOB, tags={TAG_STRATEGY: strategy} if strategy else None, limit=limit):
        sweep_id = run.tags.get(SWEEP_TAG)
        if sweep_id and sweep_id not in created:
            created[sweep_id] = dt.datetime.fromtimestamp(run.created_at, dt.UTC).isoformat()
    partitions = trial_partitions(svc)
    items = []
    for sweep_id in sorted(created, key=created.__getitem__, reverse=True):
        item = status_of(sweep_id, svc, partitions, detail=False)
        if strategy is None or item["strategy"] == strategy:
            items.append(item)
        if len(items) == limit:
            break
    return {"items": items}


@router.get("/{sweep_id}", response_model=SweepDetail, summary="A sweep: state, trials done/failed/total, best so far")
def get_sweep(sweep_id: SweepId, _: Principal = Depends(authorize(BACKTESTS_READ)), svc: Services = Depends(services)):
    return status_of(sweep_id, svc)


@router.post("/{sweep_id}/cancel", status_code=202, response_model=SweepDetail, summary="Cancel a sweep")
def cancel_sweep(
    sweep_id: SweepId, principal: Principal = Depends(authorize(BACKTESTS_RUN)), svc: Services = Depends(services)
):
    """Marks the sweep cancelled in the sweep store first (the sweep sensor then launches nothing more
    of it, and a batch launched meanwhile refuses to run), then cancels its queued and running runs."""
    status = status_of(sweep_id, svc)
    if status["state"] in ("finished", "summarised", "planning_failed", "cancelled"):
        raise HTTPException(409, f"sweep {sweep_id} is already {status['state']}")
    svc.sweeps.store().write_cancellation(sweep_id, principal.subject, dt.datetime.now(dt.UTC).isoformat())
    refused = []
    for run in svc.dagster.runs(tags={SWEEP_TAG: sweep_id}, statuses=UNFINISHED_RUN_STATUSES, limit=1000):
        if run.status == "CANCELING":
            continue
        try:
            svc.dagster.terminate(run.run_id)
        except RunNotTerminable as exc:
            refused.append(f"{run.run_id}: {exc}")
    if refused:
        raise HTTPException(409, f"sweep {sweep_id} is marked cancelled, but some runs cannot be: {'; '.join(refused)}")
    return status_of(sweep_id, svc)


@router.get("/{sweep_id}/results", response_model=SweepResults, summary="A sweep's trials ranked, its best parameters")
def sweep_results(sweep_id: SweepId, _: Principal = Depends(authorize(BACKTESTS_READ)), svc: Services = Depends(services)):
    """Ranked from the trial results stored so far (best first by the objective among trials with
    enough trades, then those with too few, then failed ones): the same ranking as `sweeps/summary`."""
    store = svc.sweeps.store()
    plan = store.plan(sweep_id)
    if plan is None:
        if planning_run(sweep_id, svc) is None:
            raise HTTPException(404, f"no sweep {sweep_id}")
        raise HTTPException(409, f"sweep {sweep_id} has no plan yet (see GET /api/v1/sweeps/{sweep_id})")
    spec = SweepSpec.model_validate(plan["spec"])
    results = results_of(store.trials(sweep_id))
    best = next((r for r in rank(spec, results) if r.status == "ok" and r.objective is not None), None)
    return {
        "sweep_id": sweep_id, "strategy": plan["strategy"], "objective": spec.objective,
        "complete": len(results) == len(plan["trials"]),
        "best_trial": best.key if best else None,
        "best_parameters": best.params if best else None,
        "best_objective": best.objective if best else None,
        "trials": ranked_rows(spec, results),
    }
