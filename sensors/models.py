"""Sensors of the model lifecycle: reaction to drift of a champion, evaluation of new challengers, and a
notification for every failed run.

- ``drift_sensor`` (every minute): reacts to the ``drift`` asset check of ``strategies/<Name>/model``
  (``tradai_assets.model_drift``, run every 6 h by its schedule). A new evaluation in the ``drift`` band
  for the current champion requests ``train_<Name>`` once per drift event (run key
  ``drift:<name>:v<champion>:<first drift evaluation>``) and notifies once; the per-model state lives
  in the cursor (JSON), so a restarted daemon neither re-requests nor re-notifies.
- ``challenger_sensor`` (every 5 min): a ``challenger`` with no decision in the audit log gets one
  ``evaluate_challenger`` run (run key ``evaluate:<name>:v<challenger>``); with ``shadow_days`` > 0
  only once its shadow finished (``shadow_sensor``, ``sensors.shadow``).
- ``run_failure_notifier``: every failed run of the code location goes to the notifier.

The sensors read state through resources (``model_registry``, ``notifier``) and the Dagster instance and
do light work only: the drift check measures, the sensor reads its latest result.
"""


import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from dagster._core.storage.asset_check_execution_record import COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES

from resources.model_registry import (
    CHALLENGER,
    CHAMPION,
    ModelRegistry,
    ModelRegistryError,
    RegistryUnavailableError,
)
from resources.notifier import Notifier
from sensors.shadow import build_shadow_sensor, shadow_wait
from tradai_core import settings
from tradai_core.keys import EVALUATE_JOB, EVALUATE_OP, drift_check_key, train_job_name
from tradai_core.model_data import model_specs
from tradai_core.strategy_config import BASE_CONFIG_PATH
from tradai_core.strategy_discovery import StrategySpec

DRIFT_SENSOR_INTERVAL_SECONDS = 60
DECISIONS = ("promote", "keep", "inconclusive")


# Drift -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftEvaluation:
    """The latest completed evaluation of a model's drift check, as its metadata recorded it."""

    storage_id: int
    label: str  # when it was evaluated, UTC: 20240301T120000Z
    champion: int
    band: str
    metadata: dict[str, Any]

    def psi(self) -> dict[str, float]:
        return {r.data["feature"]: round(float(r.data["psi"]), 6) for r in self.metadata["psi"].records}


def latest_drift_evaluation(instance: dg.DagsterInstance, name: str) -> DriftEvaluation | None:
    (record, *_) = instance.event_log_storage.get_asset_check_execution_history(
        drift_check_key(name), limit=1, status=COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
    ) or [None]
    if record is None:
        return None
    evaluation = record.event.dagster_event.event_specific_data
    metadata = {k: v.value for k, v in evaluation.metadata.items()}
    return DriftEvaluation(record.id, evaluation_label(record.event.timestamp), int(metadata["champion_version"]),
                           str(metadata["band"]), metadata)


def evaluation_label(timestamp: float) -> str:
    return pd.Timestamp(timestamp, unit="s", tz="UTC").strftime("%Y%m%dT%H%M%SZ")


def drift_run_key(name: str, champion: int, first_evaluation: str) -> str:
    return f"drift:{name}:v{champion}:{first_evaluation}"


def load_cursor(cursor: str | None) -> dict[str, Any]:
    if not cursor:
        return {"models": {}}
    try:
        state = json.loads(cursor)
    except json.JSONDecodeError:
        return {"models": {}}
    return state if isinstance(state.get("models"), dict) else {"models": {}}


def build_drift_sensor(specs: list[StrategySpec], train_jobs: list) -> dg.SensorDefinition:
    """``train_jobs``: the code location's ``train_<Name>`` jobs, the runs this sensor requests."""
    models = model_specs(specs)
    jobs = list(train_jobs)

    @dg.sensor(
        name="drift_sensor",
        jobs=jobs or None,
        minimum_interval_seconds=DRIFT_SENSOR_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Reacts to the drift check of every model: an evaluation in the drift band for the current "
        "champion requests a retraining (once per drift event) and notifies.",
    )
    def drift_sensor(context: dg.SensorEvaluationContext, model_registry: ModelRegistry, notifier: Notifier):
        return react_to_drift(context, models, model_registry, notifier)

    return drift_sensor


def react_to_drift(context, models: list[StrategySpec], registry: ModelRegistry,
                   notifier: Notifier) -> dg.SensorResult | dg.SkipReason:
    """One tick of the drift sensor (see the module docstring)."""
    state = load_cursor(context.cursor)
    requests, passed = [], []
    for spec in models:
        name = spec.name
        previous = state["models"].get(name, {})
        evaluation = latest_drift_evaluation(context.instance, name)
        if evaluation is None:
            passed.append(f"{name}: no drift check evaluated yet")
            continue
        if evaluation.storage_id == previous.get("evaluation"):
            passed.append(f"{name}: no new drift check since the one of {previous.get('checked')}")
            continue
        seen = {"evaluation": evaluation.storage_id, "checked": evaluation.label}
        if evaluation.band != "drift":
            state["models"][name] = {"champion": evaluation.champion, "band": evaluation.band, **seen}
            passed.append(f"{name}: {evaluation.band} at {evaluation.label}")
            continue
        try:
            champion = registry.version(name, CHAMPION)
        except RegistryUnavailableError as exc:
            # The registry is down for every model: skip the whole tick and keep the state as it was.
            reason = f"drift reaction skipped: {exc}"
            context.log.warning(reason)
            return dg.SkipReason(reason)
        except ModelRegistryError as exc:  # the champion alias was removed, its version deleted
            passed.append(f"{name}: {exc}")
            continue
        if champion != evaluation.champion:
            state["models"][name] = {**previous, **seen}
            passed.append(f"{name}: the drift evaluated at {evaluation.label} is of v{evaluation.champion}, "
                          f"the champion is now v{champion}")
            continue
        same_event = previous.get("champion") == champion and previous.get("drift_since")
        first = previous["drift_since"] if same_event else evaluation.label
        run_key = drift_run_key(name, champion, first)
        # Requested on every drift evaluation of the event under the same run key: Dagster launches it once.
        requests.append(dg.RunRequest(
            run_key=run_key, job_name=train_job_name(name),
            tags={"tradai/trigger": "drift_sensor", "tradai/model": name, "tradai/champion": str(champion)},
        ))
        if not (same_event and previous.get("notified")):
            drifting = evaluation.metadata["drifting_features"]
            start, end = (pd.Timestamp(evaluation.metadata[k]) for k in ("window_start", "window_end"))
            notifier.notify(
                "drift", f"{name}: drift in {len(drifting)} feature(s) of champion v{champion}",
                f"PSI >= 0.25 on the last {end - start} of candles ({start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} "
                f"UTC) for {', '.join(drifting)}; retraining requested ({run_key}).",
                severity="warning",
                details={"psi": evaluation.psi(), "run_key": run_key},
            )
        state["models"][name] = {"champion": champion, "band": "drift", "drift_since": first, "run_key": run_key,
                                 "notified": True, **seen}
    for reason in passed:
        context.log.info(f"drift sensor passed over {reason}")
    cursor = json.dumps(state, sort_keys=True)
    if not requests:
        return dg.SensorResult(skip_reason="; ".join(passed) or "no model strategy", cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)


# Challenger ---------------------------------------------------------------------------------------


def evaluate_run_key(name: str, challenger: int) -> str:
    return f"evaluate:{name}:v{challenger}"


def pending_challengers(models: list[StrategySpec], registry: ModelRegistry) -> tuple[list[tuple[str, int]], list[str]]:
    """Models whose challenger has no decision in the audit log yet; and why the others were passed over."""
    pending, passed = [], []
    for spec in models:
        name = spec.name
        if spec.problem:
            passed.append(f"{name}: {spec.problem}")
            continue
        if not registry.exists(name):
            passed.append(f"{name}: not trained yet")
            continue
        challenger = registry.aliases(name).get(CHALLENGER)
        if challenger is None:
            passed.append(f"{name}: no challenger")
            continue
        log = registry.audit_log(name)
        decided = log[log["event"].isin(DECISIONS) & (log["challenger"] == float(challenger))]
        if len(decided):
            passed.append(f"{name}: challenger v{challenger} already decided ({decided['event'].iloc[-1]})")
            continue
        waiting = shadow_wait(spec, log, challenger)
        if waiting:
            passed.append(f"{name}: {waiting}")
            continue
        pending.append((name, challenger))
    return pending, passed


def build_challenger_sensor(specs: list[StrategySpec], base_path: Path = BASE_CONFIG_PATH) -> dg.SensorDefinition:
    models = model_specs(specs)

    @dg.sensor(
        name="challenger_sensor",
        # By name: the job object is the one in Definitions (a second copy here would conflict with it
        # once Definitions binds its resources).
        job_name=EVALUATE_JOB if models else None,
        minimum_interval_seconds=settings.lifecycle_settings().challenger_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="A challenger model with no decision in the audit log gets one champion/challenger evaluation.",
    )
    def challenger_sensor(context: dg.SensorEvaluationContext, model_registry: ModelRegistry):
        return evaluate_challengers(context, models, model_registry)

    return challenger_sensor


def evaluate_challengers(context, models: list[StrategySpec], registry: ModelRegistry):
    try:
        pending, passed = pending_challengers(models, registry)
    except RegistryUnavailableError as exc:
        reason = f"challenger check skipped: {exc}"
        context.log.warning(reason)
        return dg.SkipReason(reason)
    if not pending:
        return dg.SkipReason("; ".join(passed) or "no model strategy")
    return [
        dg.RunRequest(
            run_key=evaluate_run_key(name, challenger),
            job_name=EVALUATE_JOB,
            run_config={"ops": {EVALUATE_OP: {"config": {
                "model": name, "trigger": f"challenger_sensor: v{challenger} is the challenger"}}}},
            tags={"tradai/trigger": "challenger_sensor", "tradai/model": name, "tradai/challenger": str(challenger)},
        )
        for name, challenger in pending
    ]


# Failed runs --------------------------------------------------------------------------------------


def _error_text(error) -> str:
    """The error and its causes, innermost last (Dagster wraps a step's own exception)."""
    if error is None:
        return "unknown error"
    parts = []
    while error is not None:
        parts.append(error.message.strip())
        error = error.cause
    return " <- caused by: ".join(parts[::-1]) if len(parts) > 1 else parts[0]


def failure_summary(context: dg.RunFailureSensorContext) -> tuple[str, str, dict[str, Any]]:
    run = context.dagster_run
    steps = []
    for event in context.get_step_failure_events():
        steps.append({"step": event.step_key, "error": _error_text(event.step_failure_data.error)})
    run_error = context.failure_event.message or "the run failed"
    subject = f"run {run.run_id[:8]} of {run.job_name} failed"
    message = "\n".join(f"{s['step']}: {s['error'][:2000]}" for s in steps) or run_error
    details = {"run_id": run.run_id, "job": run.job_name, "error": run_error, "steps": steps,
               "tags": {k: v for k, v in run.tags.items() if k.startswith("tradai/") or k == "dagster/sensor_name"}}
    return subject, message, details


def build_run_failure_notifier() -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name="run_failure_notifier",
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Sends every failed run (run id, job, error) to the notifier.",
    )
    def run_failure_notifier(context: dg.RunFailureSensorContext, notifier: Notifier):
        subject, message, details = failure_summary(context)
        notifier.notify("run_failure", subject, message, severity="error", details=details)

    return run_failure_notifier


def build_model_sensors(specs: list[StrategySpec], train_jobs: list,
                        base_path: Path = BASE_CONFIG_PATH) -> list[dg.SensorDefinition]:
    """The drift, challenger and shadow sensors over the model strategies, and the failed-run notifier."""
    return [build_drift_sensor(specs, train_jobs), build_challenger_sensor(specs, base_path), build_shadow_sensor(specs),
            build_run_failure_notifier()]
