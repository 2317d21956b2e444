"""The shadow of a challenger model: a dry-run bot trading beside the champion's bot before promotion.

Its life is written to the model's audit log (``resources.model_registry``), one row per step, each
naming the challenger version: ``shadow_started`` (bot id, start, end, settings), then either
``shadow_failed`` (the reason) or ``shadow_finished`` (both bots' trades over the shadow's period and
the comparison of their per-trade returns). The state of a challenger's shadow is read back from those
rows, so the sensor, the jobs and the API agree on it without state of their own.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd

from tradai_core.keys import strategy_id

SHADOW_STARTED, SHADOW_FAILED, SHADOW_FINISHED = "shadow_started", "shadow_failed", "shadow_finished"
SHADOW_EVENTS = (SHADOW_STARTED, SHADOW_FAILED, SHADOW_FINISHED)
SHADOW_SUFFIX = "-shadow"
ShadowStatus = Literal["none", "running", "finished", "failed"]


def shadow_bot_id(name: str) -> str:
    """The shadow bot's id: the champion bot's id with ``-shadow`` (within the 63 characters of an id)."""
    return f"{strategy_id(name)[: 63 - len(SHADOW_SUFFIX)].rstrip('-')}{SHADOW_SUFFIX}"


@dataclass(frozen=True)
class ShadowState:
    status: ShadowStatus
    challenger: int | None = None
    bot_id: str | None = None
    started: datetime | None = None
    ends: datetime | None = None
    details: dict[str, Any] = field(default_factory=dict)  # the latest shadow row's details

    @property
    def reason(self) -> str | None:
        return self.details.get("reason") if self.status == "failed" else None

    @property
    def result(self) -> dict[str, Any] | None:
        return self.details.get("result") if self.status == "finished" else None


def shadow_state(log: pd.DataFrame, challenger: int | None = None) -> ShadowState:
    """The shadow of ``challenger`` (the latest shadow of any version when None) as the audit log tells it."""
    rows = log[log["event"].isin(SHADOW_EVENTS)]
    if challenger is not None:
        rows = rows[rows["challenger"] == float(challenger)]
    if rows.empty:
        return ShadowState("none", challenger)
    started = rows[rows["event"] == SHADOW_STARTED]
    start = json.loads(started["details"].iloc[-1]) if len(started) else {}
    last = rows.iloc[-1]
    details = json.loads(last["details"] or "{}")
    status: ShadowStatus = {SHADOW_STARTED: "running", SHADOW_FAILED: "failed", SHADOW_FINISHED: "finished"}[
        last["event"]
    ]
    version = None if math.isnan(last["challenger"]) else int(last["challenger"])
    when = {k: pd.Timestamp(start[k]).to_pydatetime() for k in ("started", "ends") if start.get(k)}
    return ShadowState(
        status, version, details.get("bot_id") or start.get("bot_id"), when.get("started"), when.get("ends"), details
    )


def window_returns(trades: pd.DataFrame, start: datetime, end: datetime) -> np.ndarray:
    """Per-trade returns (``profit_ratio``, Freqtrade's ``close_profit``: a fraction of the stake) of the
    trades whose entry filled in [start, end) and that closed, in the order they closed. ``trades``: a
    bot's trades as ``resources.bot_trades`` reads them (``entry_time``, ``exit_time``, ``is_open``, ``pair``)."""
    if trades.empty:
        return np.array([], dtype="float64")
    entered = trades["entry_time"]
    chosen = trades[(entered >= pd.Timestamp(start)) & (entered < pd.Timestamp(end)) & ~trades["is_open"].astype(bool)]
    return chosen.sort_values(["exit_time", "entry_time", "pair"], kind="stable")["profit_ratio"].to_numpy("float64")


SHADOW_JOB = "shadow_challenger"
SHADOW_OP = "shadow_step"  # an op may not share its job's name
SHADOW_STEPS = ("start", "finish")


def shadow_observation(name: str, state: ShadowState, trades: int | None = None, description: str | None = None):
    """The shadow's state as an observation of ``strategies/<name>/model`` (what the UI shows)."""
    import dagster as dg

    from tradai_core.keys import model_key

    def value(v: Any):
        return dg.MetadataValue.null() if v is None else v

    result = state.result or {}
    metadata = {
        "shadow_status": state.status,
        "shadow_challenger": value(state.challenger),
        "shadow_bot_id": value(state.bot_id),
        "shadow_started": value(state.started.isoformat() if state.started else None),
        "shadow_ends": value(state.ends.isoformat() if state.ends else None),
        "shadow_trades": value(trades if trades is not None else result.get("trades", {}).get("shadow")),
        "shadow_reason": value(state.reason),
        "shadow_outcome": value(result.get("decision", {}).get("outcome")),
    }
    return dg.AssetObservation(
        asset_key=model_key(name), description=description or f"shadow {state.status}", metadata=metadata
    )
