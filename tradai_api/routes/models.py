"""Models: the model strategies' registered versions, their aliases and audit log; promotion, rollback
and retraining by hand. Alias moves go through the product's ``ModelRegistry`` (which records each in
the audit log); training is a run materialising ``strategies/<Name>/model``, launched through Dagster."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Response

from resources.aws_contract import ecs_run_tags
from tradai_api.auth import MODELS_READ, MODELS_WRITE, Principal
from tradai_api.dagster_client import AssetNotFound
from tradai_api.deps import Services, authorize, services, unprocessable
from tradai_api.routes.backtests import TAG_REQUESTED_BY, TAG_STRATEGY
from tradai_api.schemas import (
    JOB_STATUS_OF,
    STRATEGY_NAME,
    AliasMove,
    AuditLog,
    ModelList,
    ModelVersions,
    PromoteRequest,
    RollbackRequest,
    RunAccepted,
    ShadowInfo,
)
from tradai_api.strategy_files import strategies_by_name

router = APIRouter(prefix="/api/v1/models", tags=["models"])
ModelName = Annotated[str, Path(pattern=STRATEGY_NAME, description="The model strategy's class name")]


@contextmanager
def registry_errors(name: str) -> Iterator[None]:
    """The registry's errors as HTTP answers: 503 unreachable, 404 missing version, 409 alias state."""
    from resources.model_registry import (
        AliasNotSetError,
        ModelRegistryError,
        RegistryUnavailableError,
        VersionNotFoundError,
    )

    try:
        yield
    except RegistryUnavailableError as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "10"}) from exc
    except VersionNotFoundError as exc:
        raise HTTPException(404, str(exc)) from exc
    except AliasNotSetError as exc:
        raise HTTPException(409, str(exc)) from exc
    except ModelRegistryError as exc:
        raise HTTPException(409, str(exc)) from exc


def model_strategies(svc: Services) -> dict[str, Any]:
    return {name: spec for name, spec in strategies_by_name(svc.settings.strategies_dir).items() if spec.is_model}


def require_model(name: str, svc: Services) -> None:
    """404 unless the registry has the model."""
    with registry_errors(name):
        registry = svc.models.registry()
        if registry.exists(name):
            return
        known = sorted(set(registry.models()) | set(model_strategies(svc)))
    if name in known:
        raise HTTPException(404, f"model {name} has no registered version yet; train it first (POST /api/v1/models/{name}/train)")
    raise HTTPException(404, f"unknown model {name!r}; known: {', '.join(known) or 'none'}")


def version_or_none(value: float) -> int | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else int(value)


def alias_move(name: str, row, aliases: dict[str, int]) -> dict[str, Any]:
    return {
        "name": name, "event": row["event"], "trigger": row["trigger"],
        "champion_before": version_or_none(row["champion_before"]),
        "champion_after": version_or_none(row["champion_after"]),
        "previous_after": version_or_none(row["previous_after"]),
        "aliases": aliases,
    }


@router.get("", response_model=ModelList, summary="Model strategies and their aliases")
def list_models(_: Principal = Depends(authorize(MODELS_READ)), svc: Services = Depends(services)):
    """Every model strategy in the strategies directory, and every registered model, with the versions
    its `champion`, `challenger` and `previous` aliases point at."""
    specs = model_strategies(svc)
    with registry_errors("*"):
        registered = svc.models.registry().models()
    items = []
    for name in sorted(set(specs) | set(registered)):
        spec = specs.get(name)
        items.append({
            "name": name, "file": spec.file.name if spec else None, "registered": name in registered,
            "aliases": registered.get(name, {}), "problem": spec.problem if spec else None,
        })
    return {"items": items}


@router.get("/{name}/versions", response_model=ModelVersions, summary="A model's versions, newest first")
def model_versions(name: ModelName, _: Principal = Depends(authorize(MODELS_READ)), svc: Services = Depends(services)):
    require_model(name, svc)
    with registry_errors(name):
        return {"name": name, "items": svc.models.registry().versions(name)}


@router.get("/{name}/audit", response_model=AuditLog, summary="Every decision and alias move of a model, oldest first")
def model_audit(name: ModelName, _: Principal = Depends(authorize(MODELS_READ)), svc: Services = Depends(services)):
    with registry_errors(name):
        log = svc.models.registry().audit_log(name)
    if log.empty:
        require_model(name, svc)
    items = []
    for when, row in log.iterrows():
        p_value = row["p_value"]
        items.append({
            "time": when.to_pydatetime(), "event": row["event"], "trigger": row["trigger"],
            "champion_before": version_or_none(row["champion_before"]),
            "champion_after": version_or_none(row["champion_after"]),
            "previous_after": version_or_none(row["previous_after"]),
            "challenger": version_or_none(row["challenger"]),
            "p_value": None if math.isnan(p_value) else float(p_value),
            "details": json.loads(row["details"] or "{}"),
        })
    return {"name": name, "items": items}


@router.get("/{name}/shadow", response_model=ShadowInfo, summary="The challenger's shadow bot")
def model_shadow(name: ModelName, _: Principal = Depends(authorize(MODELS_READ)), svc: Services = Depends(services)):
    """The dry-run shadow bot of the current challenger (the latest shadow when the challenger has none;
    `status: none` when there was never one), from the audit log; while it runs, `trades` counts the
    closed trades its bot opened in its period."""
    from resources.bot_trades import BotTradesError
    from tradai_core.shadow import shadow_state, window_returns

    require_model(name, svc)
    registry = svc.models.registry()
    with registry_errors(name):
        log = registry.audit_log(name)
        challenger = registry.aliases(name).get("challenger")
    state = shadow_state(log, challenger)
    if state.status == "none" and (latest := shadow_state(log)).status != "none":
        state = latest  # the latest shadow of an earlier version
    trades = None
    if state.status == "running":
        try:
            trades = len(window_returns(svc.bots.bot_trades.read(state.bot_id).trades, state.started, state.ends))
        except BotTradesError:
            trades = None  # the body says so: unreadable
    elif state.result:
        trades = state.result["trades"]["shadow"]
    return {"name": name, "status": state.status, "challenger": state.challenger, "bot_id": state.bot_id,
            "started": state.started, "ends": state.ends, "trades": trades, "result": state.result,
            "reason": state.reason}


@router.post("/{name}/promote", response_model=AliasMove, summary="Make the challenger (or a version) the champion")
def promote_model(
    name: ModelName,
    body: PromoteRequest | None = None,
    principal: Principal = Depends(authorize(MODELS_WRITE)),
    svc: Services = Depends(services),
):
    """A manual promotion, without the champion/challenger evaluation: `champion` moves to the
    challenger (or `version`), `previous` to the old champion. Recorded in the audit log with the
    trigger `api:<token subject>`. 409 when there is no challenger or the version is already the champion."""
    body = body or PromoteRequest()
    require_model(name, svc)
    registry = svc.models.registry()
    with svc.models.lock(name), registry_errors(name):
        row = registry.promote(name, f"api:{principal.subject}", version=body.version)
        return alias_move(name, row, registry.aliases(name))


@router.post("/{name}/rollback", response_model=AliasMove, summary="Move the champion back")
def rollback_model(
    name: ModelName,
    body: RollbackRequest | None = None,
    principal: Principal = Depends(authorize(MODELS_WRITE)),
    svc: Services = Depends(services),
):
    """`champion` moves back to `previous` (or `to_version`), and `previous` to the version rolled back
    from, so a rollback can itself be undone. Recorded in the audit log with the trigger
    `api:<token subject>`. 409 when there is nothing to roll back to."""
    from resources.model_registry import AliasNotSetError

    body = body or RollbackRequest()
    require_model(name, svc)
    registry = svc.models.registry()
    with svc.models.lock(name), registry_errors(name):
        try:
            row = registry.rollback(name, f"api:{principal.subject}", to_version=body.to_version)
        except AliasNotSetError as exc:
            raise HTTPException(409, f"nothing to roll back: {exc}") from exc
        return alias_move(name, row, registry.aliases(name))


@router.post("/{name}/train", status_code=202, response_model=RunAccepted, summary="Retrain a model now")
def train_model(
    name: ModelName,
    response: Response,
    principal: Principal = Depends(authorize(MODELS_WRITE)),
    svc: Services = Depends(services),
):
    """Launches a run materialising `strategies/<name>/model`, the same training asset the schedule and
    the drift sensor materialise, with the trigger `api:<token subject>`; the new version becomes the
    challenger (or the champion when there is none)."""
    specs = model_strategies(svc)
    if name not in specs:
        known = ", ".join(sorted(specs)) or "none"
        raise HTTPException(404, f"{name!r} is not a model strategy; model strategies: {known}")
    if specs[name].problem:
        raise unprocessable(["path", "name"], f"strategy {name} cannot run: {specs[name].problem}")
    asset = ["strategies", name, "model"]
    tags = {**ecs_run_tags("training"), TAG_STRATEGY: name, TAG_REQUESTED_BY: principal.subject}
    try:
        run = svc.dagster.launch_asset_run(asset, {"trigger": f"api:{principal.subject}"}, tags)
    except AssetNotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    links = {"self": f"{svc.dagster.ui_url}/runs/{run.run_id}", "dagster_run": f"{svc.dagster.ui_url}/runs/{run.run_id}"}
    response.headers["Location"] = links["dagster_run"]
    return {"job_id": run.run_id, "status": JOB_STATUS_OF[run.status], "asset": "/".join(asset), "links": links}

