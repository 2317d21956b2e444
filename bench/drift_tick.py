"""One drift-sensor tick over 20 champion models (goal < 30 s).

    .venv/bin/python -m bench.drift_tick [--models 20] [--days 30]

Each model is a small model strategy (its own file, as quants write them) over 2 pairs of 5m candles in
ArcticDB (LMDB), with a champion registered in MLflow (SQLite) with its reference bins. The tick does
what the sensor does for each model: read the reference bins, the recent window's features from
ArcticDB, load the champion and predict, compute PSI, and record an observation.
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
from tests.model_lifecycle_support import (
    TRAIN_START,
    append_shifted_market,
    make_champion,
    register_version,
    store_stationary_market,
    write_toy_strategy,
)
from tradai_assets.model_lifecycle import train_jobs

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
        (sensor,) = [s for s in build_model_sensors(specs, train_jobs(specs)) if s.name == "drift_sensor"]
        with dg.instance_for_test() as instance:
            timings = []
            for _ in range(2):  # the first tick pays the imports (Freqtrade, scikit-learn); a daemon pays them once
                with dg.build_sensor_context(instance=instance, resources={
                        "model_registry": registry, "arctic": arctic, "notifier": Notifier()}) as context:
                    started = time.perf_counter()
                    result = sensor(context)
                    timings.append(time.perf_counter() - started)
        assert len(result.asset_events) == args.models and len(result.run_requests) == args.models
    print(report(
        f"Drift sensor: one tick over {args.models} models (goal < {GOAL_SECONDS:.0f} s)",
        "python -m bench.drift_tick",
        [
            f"{args.models} model strategies, 2 pairs of 5m candles each ({args.days + 2} days stored), "
            "7-day window (4,032 rows, 3 features and the prediction), MLflow on SQLite, ArcticDB on LMDB",
            f"first tick in a fresh process (imports included): **{timings[0]:.1f} s**; next tick: **{timings[1]:.1f} s** "
            f"({timings[1] / args.models:.2f} s per model)",
            f"every model drifted: {len(result.run_requests)} retraining requests, {len(result.asset_events)} observations",
            f"setup (registering {args.models} champions): {setup:.1f} s",
        ],
    ))


if __name__ == "__main__":
    main()
