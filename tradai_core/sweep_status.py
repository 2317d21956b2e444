"""Where a sweep stands, from the Dagster instance (each trial partition's status) and the sweep store
(plan, results, summary): what the sweep sensor, the API and the CLI read."""

from __future__ import annotations

from typing import Any, Protocol

import dagster as dg

from tradai_core.keys import SWEEP_TRIAL_KEY, SWEEP_TRIALS


class SweepRecords(Protocol):
    """What the sweep store (resources.sweep_store.SweepStore) answers."""

    def plan(self, sweep_id: str) -> dict[str, Any] | None: ...

    def trials(self, sweep_id: str) -> list[dict[str, Any]]: ...

    def summary(self, sweep_id: str) -> tuple[Any, dict[str, Any]] | None: ...


def sweep_status(instance: dg.DagsterInstance, store: SweepRecords, sweep_id: str) -> dict[str, Any]:
    """{sweep_id, state (unknown, running, finished, summarised), planned, materialized, failed,
    in_progress, pending, trials: {key: status}, errors: {key: error}, summary_done, best_trial,
    best_parameters, best_objective}. ``summarised`` once the summary covers every finished trial."""
    plan = store.plan(sweep_id)
    if plan is None:
        return {"sweep_id": sweep_id, "state": "unknown"}
    keys = [t["key"] for t in plan["trials"]]
    known = set(instance.get_dynamic_partitions(SWEEP_TRIALS.name))
    statuses = instance.get_status_by_partition(SWEEP_TRIAL_KEY, [k for k in keys if k in known], SWEEP_TRIALS) or {}
    trials = {k: (statuses.get(k).value.lower() if statuses.get(k) is not None else "pending") for k in keys}
    counts = {s: sum(v == s for v in trials.values()) for s in ("materialized", "failed", "in_progress", "pending")}
    summary = store.summary(sweep_id)
    meta = summary[1] if summary else {}
    finished = counts["materialized"] + counts["failed"]
    if finished < len(keys):
        state = "running"
    elif summary and meta.get("done", 0) >= finished:
        state = "summarised"
    else:
        state = "finished"
    errors = {r["key"]: r["error"] for r in store.trials(sweep_id) if r.get("status") == "failed"}
    return {
        "sweep_id": sweep_id,
        "strategy": plan["strategy"],
        "state": state,
        "planned": len(keys),
        **counts,
        "trials": trials,
        "errors": errors,
        "summary_done": meta.get("done", 0),
        "best_trial": meta.get("best_trial"),
        "best_parameters": meta.get("best_parameters"),
        "best_objective": meta.get("best_objective"),
        "objective": plan["spec"]["objective"],
        "parent_run_id": plan.get("parent_run_id"),
    }
