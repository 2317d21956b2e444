"""Sensors of the model lifecycle: drift (PSI) of every champion, evaluation of new challengers, and a
notification for every failed run.

- ``drift_sensor`` (every 6 h; ``TRADAI_DRIFT_INTERVAL_SECONDS``): for each model strategy with a
  champion, PSI per feature and on the predictions between the champion's stored reference bins and the
  last ``drift_window_days`` of stored candles. Every tick records an observation of
  ``strategies/<Name>/model`` with the PSI table. A drift band requests ``train_<Name>`` once per drift
  event (run key ``drift:<name>:v<champion>:<first drift tick>``) and notifies once; the per-model state
  lives in the cursor (JSON), so a restarted daemon neither re-requests nor re-notifies.
- ``challenger_sensor`` (every 5 min): a ``challenger`` with no decision in the audit log gets one
  ``evaluate_challenger`` run (run key ``evaluate:<name>:v<challenger>``).
- ``run_failure_notifier``: every failed run of the code location goes to the notifier.

The sensors read state through resources (``model_registry``, ``arctic``, ``notifier``) and do light work
only: PSI over a week of features and one model's predictions per champion.
"""


import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from resources.arctic import ArcticStore
from resources.model_registry import (
    CHALLENGER,
    CHAMPION,
    ModelRegistry,
    ModelRegistryError,
    RegistryUnavailableError,
)
from resources.notifier import Notifier
from tradai_core.drift import DriftInputError, DriftReport, ReferenceBins, drift_report
from tradai_core.keys import EVALUATE_JOB, EVALUATE_OP, model_key, train_job_name
from tradai_core.model_data import (
    feature_window,
    market_of,
    model_settings,
    model_specs,
    predict,
    stored_end,
    strategy_config,
)
from tradai_core.strategy_config import BASE_CONFIG_PATH
from tradai_core.strategy_discovery import StrategySpec

DRIFT_INTERVAL_ENV = "TRADAI_DRIFT_INTERVAL_SECONDS"
DEFAULT_DRIFT_INTERVAL = 6 * 3600
CHALLENGER_INTERVAL_ENV = "TRADAI_CHALLENGER_INTERVAL_SECONDS"
DEFAULT_CHALLENGER_INTERVAL = 300
DECISIONS = ("promote", "keep", "inconclusive")


def _interval(env: str, default: int) -> int:
    raw = os.environ.get(env)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{env}={raw!r}: expected a whole number of seconds") from exc
    if value < 1:
        raise ValueError(f"{env}={raw!r}: must be at least 1 second")
    return value


# Drift -------------------------------------------------------------------------------------------


@dataclass
class ModelDrift:
    name: str
    champion: int
    report: DriftReport
    window: tuple[pd.Timestamp, pd.Timestamp]
    rows: int
    features: list[str] = field(default_factory=list)


def recent_window(arctic: ArcticStore, spec: StrategySpec, champion: int, registry: ModelRegistry,
                  days: float, base_path: Path) -> tuple[pd.DataFrame, tuple[pd.Timestamp, pd.Timestamp]]:
    """The features of the last ``days`` of stored candles of the model's pairs, with the champion's
    predictions as the ``prediction`` column."""
    from tradai_core.model_strategy import PREDICTION, load_model, load_strategy_class

    market = market_of(strategy_config(spec, base_path))
    end = stored_end(arctic, market)
    start = end - pd.Timedelta(days=days)
    cls = load_strategy_class(spec.file, spec.name)
    features = feature_window(arctic, cls, market.exchange, market.market_type, market.pairs, market.timeframe,
                              start=start, end=end)
    model, _, _ = load_model(spec.name, {"tradai_model": {
        "name": spec.name, "version": champion, "tracking_uri": registry.tracking_uri,
        "registry_uri": registry.registry_uri or registry.tracking_uri,
    }})
    window = features.copy()
    window[PREDICTION] = predict(model, features)
    return window, (start, end)


def measure_drift(spec: StrategySpec, registry: ModelRegistry, arctic: ArcticStore, base_path: Path) -> ModelDrift:
    champion, stored = registry.reference_bins(spec.name, CHAMPION)
    reference = ReferenceBins.from_dict(stored)
    days = float(model_settings(spec).drift_window_days)
    window, span = recent_window(arctic, spec, champion, registry, days, base_path)
    report = drift_report(reference, window)
    return ModelDrift(spec.name, champion, report, span, len(window), list(reference.features))


def psi_table(report: DriftReport) -> dg.TableMetadataValue:
    return dg.MetadataValue.table(
        records=[dg.TableRecord({"feature": str(f), "psi": float(r.psi), "band": str(r.band)})
                 for f, r in report.table.iterrows()],
        schema=dg.TableSchema(columns=[
            dg.TableColumn("feature", "string"), dg.TableColumn("psi", "float"), dg.TableColumn("band", "string"),
        ]),
    )


def drift_observation(drift: ModelDrift, tick: str) -> dg.AssetObservation:
    worst = drift.report.table.iloc[0]
    return dg.AssetObservation(
        asset_key=model_key(drift.name),
        metadata={
            "psi": psi_table(drift.report),
            "worst_band": drift.report.worst_band,
            "worst_feature": str(drift.report.table.index[0]),
            "worst_psi": dg.MetadataValue.float(float(worst["psi"])),
            "champion_version": drift.champion,
            "drifting_features": dg.MetadataValue.json(drift.report.features_in("drift")),
            "warning_features": dg.MetadataValue.json(drift.report.features_in("warning")),
            "window_start": drift.window[0].isoformat(),
            "window_end": drift.window[1].isoformat(),
            "window_rows": drift.rows,
            "tick": tick,
        },
    )


def tick_label(now: float | None = None) -> str:
    return pd.Timestamp(now if now is not None else time.time(), unit="s", tz="UTC").strftime("%Y%m%dT%H%M%SZ")


def drift_run_key(name: str, champion: int, first_tick: str) -> str:
    return f"drift:{name}:v{champion}:{first_tick}"


def load_cursor(cursor: str | None) -> dict[str, Any]:
    if not cursor:
        return {"models": {}}
    try:
        state = json.loads(cursor)
    except json.JSONDecodeError:
        return {"models": {}}
    return state if isinstance(state.get("models"), dict) else {"models": {}}


def build_drift_sensor(specs: list[StrategySpec], train_jobs: list, base_path: Path = BASE_CONFIG_PATH,
                       clock: Callable[[], float] = time.time) -> dg.SensorDefinition:
    """``train_jobs``: the code location's ``train_<Name>`` jobs, the runs this sensor requests; ``clock``:
    the current time (epoch seconds), which labels each tick."""
    models = [s for s in model_specs(specs)]
    jobs = list(train_jobs)

    @dg.sensor(
        name="drift_sensor",
        jobs=jobs or None,
        minimum_interval_seconds=_interval(DRIFT_INTERVAL_ENV, DEFAULT_DRIFT_INTERVAL),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="PSI of every champion model's features and predictions on the recent window against its "
        "training window; drift requests a retraining (once per drift event) and notifies.",
    )
    def drift_sensor(context: dg.SensorEvaluationContext, model_registry: ModelRegistry, arctic: ArcticStore,
                     notifier: Notifier):
        return evaluate_drift(context, models, model_registry, arctic, notifier, base_path, now=clock())

    return drift_sensor


def evaluate_drift(context, models: list[StrategySpec], registry: ModelRegistry, arctic: ArcticStore,
                   notifier: Notifier, base_path: Path = BASE_CONFIG_PATH, now: float | None = None) -> dg.SensorResult | dg.SkipReason:
    """One tick of the drift sensor (see the module docstring)."""
    state = load_cursor(context.cursor)
    tick = tick_label(now)
    events, requests, skipped = [], [], []
    for spec in models:
        name = spec.name
        if spec.problem:
            skipped.append(f"{name}: {spec.problem}")
            continue
        try:
            drift = measure_drift(spec, registry, arctic, base_path)
        except RegistryUnavailableError as exc:
            # The registry is down for every model: skip the whole tick and keep the state as it was.
            reason = f"drift check skipped: {exc}"
            context.log.warning(reason)
            return dg.SkipReason(reason)
        except ModelRegistryError as exc:  # no champion, no reference bins, a deleted version
            skipped.append(f"{name}: {exc}")
            continue
        except (DriftInputError, ValueError, ImportError, RuntimeError, dg.Failure) as exc:
            # A broken feature pipeline or strategy file: reported, and the other models still checked.
            message = exc.description if isinstance(exc, dg.Failure) else str(exc)
            skipped.append(f"{name}: {type(exc).__name__}: {message}")
            context.log.error(f"drift check of {name} failed: {message}")
            continue
        events.append(drift_observation(drift, tick))
        previous = state["models"].get(name, {})
        if drift.report.worst_band != "drift":
            state["models"][name] = {"champion": drift.champion, "band": drift.report.worst_band, "checked": tick}
            continue
        same_event = previous.get("champion") == drift.champion and previous.get("drift_since")
        first = previous["drift_since"] if same_event else tick
        run_key = drift_run_key(name, drift.champion, first)
        # Requested on every tick of the event under the same run key: Dagster launches it once.
        requests.append(dg.RunRequest(
            run_key=run_key, job_name=train_job_name(name),
            tags={"tradai/trigger": "drift_sensor", "tradai/model": name, "tradai/champion": str(drift.champion)},
        ))
        if not (same_event and previous.get("notified")):
            drifting = drift.report.features_in("drift")
            notifier.notify(
                "drift", f"{name}: drift in {len(drifting)} feature(s) of champion v{drift.champion}",
                f"PSI >= 0.25 on the last {drift.window[1] - drift.window[0]} of candles "
                f"({drift.window[0]:%Y-%m-%d %H:%M} to {drift.window[1]:%Y-%m-%d %H:%M} UTC) for "
                f"{', '.join(drifting)}; retraining requested ({run_key}).",
                severity="warning",
                details={"psi": {str(f): round(float(v), 6) for f, v in drift.report.table["psi"].items()}, "run_key": run_key},
            )
        state["models"][name] = {"champion": drift.champion, "band": "drift", "checked": tick, "drift_since": first,
                                 "run_key": run_key, "notified": True}
    for reason in skipped:
        context.log.info(f"drift check skipped {reason}")
    cursor = json.dumps(state, sort_keys=True)
    if not events and not requests:
        return dg.SensorResult(skip_reason="; ".join(skipped) or "no model strategy", cursor=cursor)
    return dg.SensorResult(run_requests=requests, asset_events=events, cursor=cursor)


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
        pending.append((name, challenger))
    return pending, passed


def build_challenger_sensor(specs: list[StrategySpec], base_path: Path = BASE_CONFIG_PATH) -> dg.SensorDefinition:
    models = model_specs(specs)

    @dg.sensor(
        name="challenger_sensor",
        # By name: the job object is the one in Definitions (a second copy here would conflict with it
        # once Definitions binds its resources).
        job_name=EVALUATE_JOB if models else None,
        minimum_interval_seconds=_interval(CHALLENGER_INTERVAL_ENV, DEFAULT_CHALLENGER_INTERVAL),
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


def build_model_sensors(specs: list[StrategySpec], train_jobs: list, base_path: Path = BASE_CONFIG_PATH,
                        clock: Callable[[], float] = time.time) -> list[dg.SensorDefinition]:
    """The drift and challenger sensors over the model strategies, and the failed-run notifier."""
    return [build_drift_sensor(specs, train_jobs, base_path, clock), build_challenger_sensor(specs, base_path),
            build_run_failure_notifier()]
