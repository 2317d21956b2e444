"""Where a sweep stands, from each trial partition's status and the sweep store (plan, results, summary,
cancellation): what the sweep sensor, the API and the CLI read.

``sweep_state`` is the judgement itself, on plain values: the sensor feeds it from the Dagster instance
(``sweep_status``), the API from the webserver's GraphQL answers, so the API does not import Dagster.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import dagster as dg

PARTITION_STATES = ("materialized", "failed", "in_progress", "pending")


class SweepRecords(Protocol):
    """What the sweep store (resources.sweep_store.SweepStore) answers."""

    def plan(self, sweep_id: str) -> dict[str, Any] | None: ...

    def trials(self, sweep_id: str) -> list[dict[str, Any]]: ...

    def summary(self, sweep_id: str) -> tuple[Any, dict[str, Any]] | None: ...

    def cancellation(self, sweep_id: str) -> dict[str, Any] | None: ...


def sweep_state(
    plan: dict[str, Any],
    partitions: dict[str, str],
    trial_records: list[dict[str, Any]],
    summary_meta: dict[str, Any] | None,
    cancellation: dict[str, Any] | None,
) -> dict[str, Any]:
    """{sweep_id, strategy, state, planned, materialized, failed, in_progress, pending, trials: {key:
    status}, errors: {key: error}, summary_done, best_trial, best_parameters, best_objective, objective,
    parent_run_id, cancelled}. ``partitions`` maps trial keys to ``materialized``, ``failed`` or
    ``in_progress`` (a key it lacks is ``pending``). The state is ``running`` until every trial has
    finished, then ``finished``, and ``summarised`` once the summary covers every finished trial; a
    cancelled sweep is ``cancelling`` while a trial is still in progress, then ``cancelled``."""
    keys = [t["key"] for t in plan["trials"]]
    trials = {k: partitions.get(k, "pending") for k in keys}
    counts = {s: sum(v == s for v in trials.values()) for s in PARTITION_STATES}
    meta = summary_meta or {}
    finished = counts["materialized"] + counts["failed"]
    if cancellation is not None and finished < len(keys):
        state = "cancelling" if counts["in_progress"] else "cancelled"
    elif finished < len(keys):
        state = "running"
    elif summary_meta is not None and meta.get("done", 0) >= finished:
        state = "summarised"
    else:
        state = "finished"
    errors = {r["key"]: r["error"] for r in trial_records if r.get("status") == "failed"}
    return {
        "sweep_id": plan["sweep_id"],
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
        "cancelled": cancellation,
    }


def sweep_status(instance: dg.DagsterInstance, store: SweepRecords, sweep_id: str) -> dict[str, Any]:
    """``sweep_state`` from the Dagster instance's trial partition statuses; ``{sweep_id, state:
    unknown}`` for a sweep without a plan."""
    from tradai_core.keys import SWEEP_TRIAL_KEY, SWEEP_TRIALS

    plan = store.plan(sweep_id)
    if plan is None:
        return {"sweep_id": sweep_id, "state": "unknown"}
    keys = [t["key"] for t in plan["trials"]]
    known = set(instance.get_dynamic_partitions(SWEEP_TRIALS.name))
    statuses = instance.get_status_by_partition(SWEEP_TRIAL_KEY, [k for k in keys if k in known], SWEEP_TRIALS) or {}
    partitions = {k: s.value.lower() for k, s in statuses.items() if s is not None}
    summary = store.summary(sweep_id)
    return sweep_state(
        plan, partitions, store.trials(sweep_id), summary[1] if summary else None, store.cancellation(sweep_id)
    )
