"""One run of the drift checks over 20 champion models, and the drift sensor's reaction (goal < 30 s).

    .venv/bin/python -m bench.drift_tick [--models 20] [--days 30]

Each model is a small model strategy (its own file, as quants write them) over 2 pairs of 5m candles in
ArcticDB (LMDB), with a champion registered in MLflow (SQLite) with its reference bins. The run is what
the drift schedule launches: the ``drift_checks`` job with every model's ``drift`` check, in one
process; each check reads the reference bins, the recent window's features from ArcticDB, loads the
champion and predicts, and computes PSI. Then one drift-sensor tick reads the evaluations and requests
the retrainings.
"""

import argparse
import tempfile
import time
from pathlib import Path

import dagster as dg
import pandas as pd

from bench.common import report
from resources.arctic import ArcticStore
from resources.model_registry import ModelRegistry
from resources.notifier import Notifier
from sensors.models import build_model_sensors
from tradai_assets.model_drift import build_model_drift
from tests.model_lifecycle_support import (
    TRAIN_START,
    append_shifted_market,
    make_champion,
    register_version,
    store_stationary_market,
    write_toy_strategy,
)
from tradai_assets.model_lifecycle import train_jobs
from tradai_core.keys import DRIFT_CHECKS_JOB

GOAL_SECONDS = 30.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        root = Path(tmp)
        arctic = ArcticStore(uri=f"lmdb://{root / 'arctic'}")
        registry = ModelRegistry(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", store=arctic)
        end = store_stationary_market(arctic, days=args.days)
        end = append_shifted_market(arctic, end, days=2)  # a drift for every model: run requests and notifications too
        specs = []
        setup = time.perf_counter()
        for i in range(args.models):
            spec = write_toy_strategy(root / "strategies", f"Bench{i:02d}",
                                      settings={"drift_window_days": 7, "label_horizon": 6, "min_rows": 100, "folds": 2})
            version = register_version(registry, spec, arctic, TRAIN_START, end - pd.Timedelta(days=9))
            make_champion(registry, spec.name, version)
            specs.append(spec)
        setup = time.perf_counter() - setup
        checks, jobs, _ = build_model_drift(specs)
        job = dg.Definitions(asset_checks=checks, jobs=jobs, resources={
            "model_registry": registry, "arctic": arctic}).resolve_job_def(DRIFT_CHECKS_JOB)
        (sensor,) = [s for s in build_model_sensors(specs, train_jobs(specs)) if s.name == "drift_sensor"]
        with dg.instance_for_test() as instance:
            timings = []
            for _ in range(2):  # the first run pays the imports (Freqtrade, scikit-learn); a worker pays them once
                started = time.perf_counter()
                run = job.execute_in_process(instance=instance)
                timings.append(time.perf_counter() - started)
            evaluations = run.get_asset_check_evaluations()
            with dg.build_sensor_context(instance=instance, resources={
                    "model_registry": registry, "notifier": Notifier()}) as context:
                started = time.perf_counter()
                result = sensor(context)
                tick = time.perf_counter() - started
        assert len(evaluations) == args.models and not any(e.passed for e in evaluations)
        assert len(result.run_requests) == args.models
    print(report(
        f"Drift checks: one run over {args.models} models, and the drift sensor's tick (goal < {GOAL_SECONDS:.0f} s)",
        "python -m bench.drift_tick",
        [
            f"{args.models} model strategies, 2 pairs of 5m candles each ({args.days + 2} days stored), "
            "7-day window (4,032 rows, 3 features and the prediction), MLflow on SQLite, ArcticDB on LMDB",
            f"first run of the drift checks in a fresh process (imports included): **{timings[0]:.1f} s**; next run: "
            f"**{timings[1]:.1f} s** ({timings[1] / args.models:.2f} s per model)",
            f"every model drifted: {len(evaluations)} failed checks; the sensor's tick: {tick:.2f} s, "
            f"{len(result.run_requests)} retraining requests",
            f"setup (registering {args.models} champions): {setup:.1f} s",
        ],
    ))


if __name__ == "__main__":
    main()
