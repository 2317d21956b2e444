"""Prepare the local instance: copy the repository's dagster.yaml into DAGSTER_HOME, create the
local stores, and load the offline sample (every universe entry with an import directory or a stored
markets file) the first time, with its checks, so that a fresh ``make dev`` shows materialised market
data.

    python -m tradai_dev.bootstrap [dagster-instance] [mlflow-store] [load-sample]   (all by default)

``dagster-instance`` and ``mlflow-store`` create (or migrate) Dagster's SQLite storage and the MLflow
SQLite store, each in one process: servers started together on a fresh home would otherwise race to
create them (MLflow's schema migration then fails in all but one). ``make dev`` runs both, side by
side, before starting the servers that use them.
``load-sample`` runs in-process against the same instance the webserver uses; the runs appear in the UI.
"""

from __future__ import annotations

import os
import shutil
import sys
import time

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from resources.mlflow_tracker import initialise_sqlite_store
from tradai_core import settings


def dagster_home() -> str:
    return os.environ.setdefault("DAGSTER_HOME", str(settings.tradai_home() / "dagster"))


def prepare_dagster_home() -> str:
    home = dagster_home()
    os.makedirs(home, exist_ok=True)
    shutil.copyfile(settings.REPO_ROOT / "dagster.yaml", os.path.join(home, "dagster.yaml"))
    return home


def prepare_dagster_instance() -> str:
    """Dagster's instance storage exists; returns DAGSTER_HOME."""
    home = prepare_dagster_home()
    with dg.DagsterInstance.get():  # creates the run, event log and schedule databases
        pass
    return home


def prepare_mlflow_store() -> str:
    """The local MLflow store exists and is migrated; returns its URI."""
    tracking_uri = settings.local_mlflow_uri()
    if tracking_uri.startswith("sqlite:///"):
        initialise_sqlite_store(tracking_uri)
    return tracking_uri


# The summary line per asset says what happened; the step-by-step log stays in the UI.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def load_sample(instance: dg.DagsterInstance) -> None:
    # The code location takes seconds to import: only this step needs it.
    from tradai_assets.definitions import defs
    from tradai_assets.market_data import markets_key, ohlcv_key
    from tradai_core.universe import load_universe

    universe = load_universe(settings.universe_path())
    job = defs.resolve_implicit_global_asset_job_def()
    for entry in universe.markets:
        if entry.import_dir is None and entry.markets_file is None:
            continue
        key = ohlcv_key(entry)
        if instance.get_latest_materialization_event(key) is not None:
            print(f"  {key.to_user_string()}: already loaded")
            continue
        started = time.monotonic()
        if entry.markets_file is not None:
            job.execute_in_process(instance=instance, asset_selection=[markets_key(entry)], run_config=QUIET)
        partitions = defs.resolve_assets_def(key).partitions_def
        keys = partitions.get_partition_keys()
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[key],
            run_config=QUIET,
            tags={ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]},
            raise_on_error=False,
        )
        checks = [
            f"{e.check_name}={'ok' if e.passed else e.severity.value}"
            for e in result.get_asset_check_evaluations()
        ]
        status = "loaded" if result.success else "FAILED"
        print(f"  {key.to_user_string()}: {status} {keys[0]}..{keys[-1]} in {time.monotonic() - started:.1f}s; checks: {', '.join(checks)}")
        if not result.success:
            sys.exit(f"loading the sample into {key.to_user_string()} failed; see the run in the UI")


STEPS = ("dagster-instance", "mlflow-store", "load-sample")


def main(argv: list[str] | None = None) -> None:
    steps = argv if argv is not None else sys.argv[1:]
    unknown = [step for step in steps if step not in STEPS]
    if unknown:
        sys.exit(f"unknown step {' '.join(unknown)}; usage: python -m tradai_dev.bootstrap [{'] ['.join(STEPS)}]")
    steps = steps or list(STEPS)
    if "dagster-instance" in steps:
        print(f"Dagster instance: DAGSTER_HOME={prepare_dagster_instance()}", flush=True)
    if "mlflow-store" in steps:
        print(f"MLflow store: {prepare_mlflow_store()}", flush=True)
    if "load-sample" in steps:
        dagster_home()  # prepared already: servers may be reading its dagster.yaml now
        with dg.DagsterInstance.get() as instance:
            load_sample(instance)


if __name__ == "__main__":
    main()
