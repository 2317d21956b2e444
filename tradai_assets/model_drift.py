"""Drift of every champion model, as an asset check on its model asset, and the schedule that runs it.

- check ``drift`` on ``strategies/<Name>/model``: PSI of the champion's features and predictions on the
  last ``drift_window_days`` of stored candles against the champion's reference bins. Passed in the
  ``fine`` band; failed with WARN severity in the ``warning`` band and with ERROR severity in the
  ``drift`` band. The metadata hold the PSI table, the worst band and feature, the champion's version
  and the window. Not blocking: training never waits on it.
- job ``drift_checks``: the drift checks of the model strategies, one step each, in one process (a
  model whose check fails does not stop the others).
- schedule ``drift_checks_schedule`` (every 6 h; ``TRADAI_DRIFT_INTERVAL_SECONDS``, RUNNING by
  default): the checks of the models that have a champion; the others are named in the tick.

The drift sensor (``sensors.models``) reacts to the check's evaluations. See docs/models.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pandas as pd

from resources.arctic import ArcticStore
from resources.model_registry import CHAMPION, ModelRegistry, RegistryUnavailableError
from tradai_core import settings
from tradai_core.drift import DriftReport, ReferenceBins, drift_report
from tradai_core.keys import DRIFT_CHECK, DRIFT_CHECKS_JOB, drift_check_key, model_key
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

DRIFT_SCHEDULE = "drift_checks_schedule"


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


def drift_check_result(drift: ModelDrift) -> dg.AssetCheckResult:
    band = drift.report.worst_band
    worst = drift.report.table.iloc[0]
    worst_feature = str(drift.report.table.index[0])
    return dg.AssetCheckResult(
        passed=band == "fine",
        severity=dg.AssetCheckSeverity.ERROR if band == "drift" else dg.AssetCheckSeverity.WARN,
        description=f"champion v{drift.champion}: worst band {band} ({worst_feature}, PSI {float(worst['psi']):.3f})",
        metadata={
            "psi": psi_table(drift.report),
            "band": band,
            "worst_feature": worst_feature,
            "worst_psi": dg.MetadataValue.float(float(worst["psi"])),
            "champion_version": drift.champion,
            "drifting_features": dg.MetadataValue.json(drift.report.features_in("drift")),
            "warning_features": dg.MetadataValue.json(drift.report.features_in("warning")),
            "window_start": drift.window[0].isoformat(),
            "window_end": drift.window[1].isoformat(),
            "window_rows": drift.rows,
        },
    )


def build_drift_check(spec: StrategySpec, base_path: Path = BASE_CONFIG_PATH) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=model_key(spec.name),
        name=DRIFT_CHECK,
        description=f"PSI of {spec.name}'s champion on the last drift_window_days of candles against its "
        "training window: WARN in the warning band (PSI >= 0.1), failed in the drift band (PSI >= 0.25).",
    )
    def drift(model_registry: ModelRegistry, arctic: ArcticStore) -> dg.AssetCheckResult:
        try:
            measured = measure_drift(spec, model_registry, arctic, base_path)
        except (ValueError, RuntimeError, ImportError) as exc:
            # No champion, no reference bins, a broken feature pipeline or strategy file, the registry down.
            raise dg.Failure(description=f"drift check of {spec.name}: {type(exc).__name__}: {exc}") from exc
        return drift_check_result(measured)

    return drift


def drift_cron(interval_seconds: int) -> str:
    """A cron that runs every ``interval_seconds``: whole minutes dividing an hour, or whole hours
    dividing a day."""
    minutes, seconds = divmod(interval_seconds, 60)
    if not seconds and 1 <= minutes < 60 and 60 % minutes == 0:
        return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    hours, rest = divmod(minutes, 60)
    if not seconds and not rest and 1 <= hours <= 24 and 24 % hours == 0:
        return "0 0 * * *" if hours == 24 else f"0 */{hours} * * *"
    raise settings.SettingsError(
        f"TRADAI_DRIFT_INTERVAL_SECONDS={interval_seconds}: the drift schedule needs whole minutes that divide "
        "an hour or whole hours that divide a day (60, 300, 900, 3600, 21600, 86400, ...)"
    )


def checks_to_run(models: list[StrategySpec], registry: ModelRegistry) -> tuple[list[dg.AssetCheckKey], list[str]]:
    """The drift checks of the models with a champion; and why the others are passed over."""
    keys, passed = [], []
    for spec in models:
        if spec.problem:
            passed.append(f"{spec.name}: {spec.problem}")
        elif not registry.exists(spec.name) or CHAMPION not in registry.aliases(spec.name):
            passed.append(f"{spec.name}: no champion")
        else:
            keys.append(drift_check_key(spec.name))
    return keys, passed


def build_model_drift(specs: list[StrategySpec], base_path: Path = BASE_CONFIG_PATH):
    """The drift check of every model strategy, the job that runs them and its schedule (nothing
    without model strategies)."""
    models = model_specs(specs)
    if not models:
        return [], [], []
    checks = [build_drift_check(s, base_path) for s in models]
    job = dg.define_asset_job(
        DRIFT_CHECKS_JOB,
        selection=dg.AssetSelection.checks(*checks),
        executor_def=dg.in_process_executor,
        description="The drift check of every model strategy's champion (PSI on the recent window).",
    )
    cron = drift_cron(settings.lifecycle_settings().drift_interval_seconds)

    @dg.schedule(
        name=DRIFT_SCHEDULE,
        cron_schedule=cron,
        job=job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Runs the drift check of every champion ({cron} UTC; TRADAI_DRIFT_INTERVAL_SECONDS).",
    )
    def drift_schedule(context: dg.ScheduleEvaluationContext, model_registry: ModelRegistry):
        try:
            keys, passed = checks_to_run(models, model_registry)
        except RegistryUnavailableError as exc:
            return dg.SkipReason(f"drift checks skipped: {exc}")
        for reason in passed:
            context.log.info(f"drift check skipped {reason}")
        if not keys:
            return dg.SkipReason("; ".join(passed))
        return dg.RunRequest(asset_selection=[], asset_check_keys=keys, tags={"tradai/trigger": DRIFT_SCHEDULE})

    return checks, [job], [drift_schedule]
