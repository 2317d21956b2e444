"""Bots: every deployed bot with its backend state and health, start and stop (runs materialising
``strategies/<Name>/deployment``, so that the deployment's interlocks apply in one place), and the
kill switch, which stops every live bot at once, synchronously, without waiting for a run."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Response

from tradai_api.auth import BOTS_READ, BOTS_WRITE, Principal
from tradai_api.dagster_client import AssetNotFound
from tradai_api.deps import Services, authorize, services
from tradai_api.routes.backtests import TAG_REQUESTED_BY, TAG_STRATEGY
from tradai_api.schemas import (
    JOB_STATUS_OF,
    STRATEGY_NAME,
    Bot,
    BotList,
    BotStartRequest,
    KillSwitchRequest,
    KillSwitchResult,
    RunAccepted,
)
from tradai_api.strategy_files import require_runnable_strategy, require_strategy, strategies_by_name

router = APIRouter(prefix="/api/v1/bots", tags=["bots"])
log = logging.getLogger("tradai.api.bots")
BotName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,99}$", description="Strategy class name or bot id")]


def plain(value: Any) -> Any:
    """A backend's state (a dataclass) as JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, FsPath):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def launched_as(svc: Services, strategy_id: str) -> dict[str, str]:
    """A local bot's launch environment (strategy and mode), from the file the backend keeps."""
    bot_dir = getattr(svc.bots.bot_services, "bot_dir", None)
    if bot_dir is None:
        return {}
    try:
        return json.loads((bot_dir(strategy_id) / "launch.json").read_text()).get("environment", {})
    except (OSError, ValueError):
        return {}


def strategy_names(svc: Services) -> dict[str, str]:
    """Bot id -> strategy class name, for every strategy in the strategies directory."""
    from tradai_core.keys import strategy_id

    return {strategy_id(name): name for name in strategies_by_name(svc.settings.strategies_dir)}


def bot_row(
    svc: Services, strategy_id: str | None, state: Any, heartbeat: Any, now: dt.datetime, names: dict[str, str]
) -> dict[str, Any]:
    from resources.aws_contract import EnvVar

    backend = plain(state) if state is not None else {}
    backend.pop("actions", None)
    launched = launched_as(svc, strategy_id) if strategy_id else {}
    beat = None
    if heartbeat is not None:
        beat = {
            "status": heartbeat.status, "last_heartbeat": heartbeat.last_heartbeat,
            "age_seconds": round(heartbeat.age_seconds(now), 3), "open_trades": heartbeat.open_trades,
            "profit": heartbeat.profit,
        }
    return {
        "strategy": launched.get(EnvVar.STRATEGY) or names.get(strategy_id),
        "strategy_id": strategy_id,
        "mode": backend.get("trading_mode") or backend.get("mode") or launched.get(EnvVar.TRADING_MODE),
        "state": backend.get("status", "absent"),
        "backend": {k: v for k, v in backend.items() if k not in ("strategy_id", "status")},
        "heartbeat": beat,
        # A stopped, failed or crash-looping bot is not healthy, however recent its last heartbeat; a bot
        # the stale-data pause holds (status paused) is alive and still manages its trades.
        "healthy": beat is not None and beat["status"] in ("starting", "running", "paused")
        and beat["age_seconds"] < svc.settings.heartbeat_max_age_seconds
        and not getattr(state, "crash_looping", False),
    }


def all_bots(svc: Services, now: dt.datetime) -> list[dict[str, Any]]:
    """Every bot the backend runs, and every bot with a heartbeat, by bot id."""
    states = {s.strategy_id: s for s in svc.bots.bot_services.list_bots()}
    heartbeats = {h.strategy_id: h for h in svc.bots.trading_state.list()}
    names = strategy_names(svc)
    return [bot_row(svc, i, states.get(i), heartbeats.get(i), now, names) for i in sorted(set(states) | set(heartbeats))]


def listing(svc: Services, now: dt.datetime) -> list[dict[str, Any]]:
    from resources.bot_services import BotServiceError

    try:
        return all_bots(svc, now)
    except BotServiceError as exc:
        raise HTTPException(502, f"listing the bots failed: {exc}") from exc


@router.get("", response_model=BotList, summary="Every deployed bot, its backend state and its health")
def list_bots(_: Principal = Depends(authorize(BOTS_READ)), svc: Services = Depends(services)):
    """One row per bot id known to the backend or to the trading-state store. `healthy` is false when
    the last heartbeat is older than the limit (180 s), says stopped or error, or there is none."""
    now = dt.datetime.now(dt.UTC)
    return {"checked_at": now, "max_heartbeat_age_seconds": svc.settings.heartbeat_max_age_seconds, "items": listing(svc, now)}


@router.get("/{name}", response_model=Bot, summary="A bot by strategy class name or bot id")
def get_bot(name: BotName, _: Principal = Depends(authorize(BOTS_READ)), svc: Services = Depends(services)):
    from tradai_core.keys import strategy_id

    now = dt.datetime.now(dt.UTC)
    for row in listing(svc, now):
        if name in (row["strategy"], row["strategy_id"]):
            return row
    require_strategy(svc.settings.strategies_dir, name)  # 404 for a name that is neither
    return {"strategy": name, "strategy_id": strategy_id(name), "mode": None, "state": "absent", "backend": {},
            "heartbeat": None, "healthy": False}


def launch_deployment(name: str, config: dict[str, Any], principal: Principal, svc: Services, response: Response):
    require_runnable_strategy(svc.settings.strategies_dir, name, ["path", "name"])
    asset = ["strategies", name, "deployment"]
    tags = {TAG_STRATEGY: name, TAG_REQUESTED_BY: principal.subject}
    try:
        run = svc.dagster.launch_asset_run(asset, config, tags)
    except AssetNotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    url = f"{svc.dagster.ui_url}/runs/{run.run_id}"
    response.headers["Location"] = url
    return {"job_id": run.run_id, "status": JOB_STATUS_OF[run.status], "asset": "/".join(asset),
            "links": {"self": url, "dagster_run": url, "bot": f"/api/v1/bots/{name}"}}


@router.post("/kill-switch", response_model=KillSwitchResult, summary="Stop every live bot now")
def kill_switch(
    body: KillSwitchRequest | None = None,
    principal: Principal = Depends(authorize(BOTS_WRITE)),
    svc: Services = Depends(services),
):
    """Stops every live bot (and the dry-run ones with `include_dry_run`) straight through the bot
    backend, without waiting for a Dagster run, and answers with what it stopped. The `kill_switch`
    Dagster job does the same."""
    from resources.bot_control import KillSwitchError, kill_all_live
    from resources.bot_services import BotServiceError

    body = body or KillSwitchRequest()
    log.warning("kill switch pulled by %s (include_dry_run=%s)", principal.subject, body.include_dry_run)
    try:
        report = kill_all_live(svc.bots.bot_services, include_dry_run=body.include_dry_run)
    except KillSwitchError as exc:
        # Every other bot was stopped; say which were and which were not.
        raise HTTPException(502, str(exc)) from exc
    except BotServiceError as exc:
        raise HTTPException(502, f"the kill switch could not list the bots: {exc}") from exc
    log.warning("kill switch stopped %s", ", ".join(s.strategy_id for s in report.stopped) or "nothing")
    return {"requested_by": principal.subject, "include_dry_run": body.include_dry_run,
            "stopped": [plain(s) for s in report.stopped], "left_running": [plain(s) for s in report.left_running]}


@router.post("/{name}/start", status_code=202, response_model=RunAccepted, summary="Deploy a strategy's bot")
def start_bot(
    name: Annotated[str, Path(pattern=STRATEGY_NAME)],
    response: Response,
    body: BotStartRequest | None = None,
    principal: Principal = Depends(authorize(BOTS_WRITE)),
    svc: Services = Depends(services),
):
    """Launches a run materialising `strategies/<name>/deployment` with `mode` (`dry_run` or `live`) and
    `force`; the deployment refuses, in the run, what its interlocks forbid (live without the strategy's
    `live = True`, the environment's allow flag or the exchange secret; a failed latest backtest unless forced)."""
    body = body or BotStartRequest()
    return launch_deployment(name, {"mode": body.mode, "force": body.force}, principal, svc, response)


@router.post("/{name}/stop", status_code=202, response_model=RunAccepted, summary="Stop a strategy's bot")
def stop_bot(
    name: Annotated[str, Path(pattern=STRATEGY_NAME)],
    response: Response,
    principal: Principal = Depends(authorize(BOTS_WRITE)),
    svc: Services = Depends(services),
):
    """Launches a run materialising `strategies/<name>/deployment` with mode `stopped`."""
    return launch_deployment(name, {"mode": "stopped"}, principal, svc, response)
