"""The sweep sensor: launches the trial batches of every planned sweep and, once each of its trials
has finished (materialised or failed), the sweep's summary. It reads the Dagster instance and the
sweep store and emits run requests; the trials run in the runs it requests.

Batches are partition ranges of ``sweeps/trial`` (``trials_per_run`` trials each), tagged with the
sweep id and the run kind ``sweep``: the run queue admits as many at once as the instance's
``tradai/kind=sweep`` limit allows (dagster.yaml), locally and on ECS alike. Run keys make every
request once; a summary is requested again when more trials have finished since the last one (a
failed trial re-run from the UI). A cancelled sweep (its mark in the sweep store) gets no more runs.
"""

from __future__ import annotations

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from resources import aws_contract
from resources.sweep_store import SweepStore
from tradai_core.keys import SWEEP_SUMMARY_JOB, SWEEP_SUMMARY_KEY, SWEEP_TAG, SWEEP_TRIALS_JOB, SWEEPS
from tradai_core.sweep_status import sweep_status

SWEEP_SENSOR = "sweep_sensor"


def sweep_requests(instance: dg.DagsterInstance, store: SweepStore) -> list[dg.RunRequest]:
    requests = []
    summarised = instance.get_materialized_partitions(SWEEP_SUMMARY_KEY)
    for sweep_id in instance.get_dynamic_partitions(SWEEPS.name):
        plan = store.plan(sweep_id)
        if plan is None or store.cancellation(sweep_id) is not None:
            continue
        keys = [t["key"] for t in plan["trials"]]
        batch = int(plan["spec"].get("trials_per_run", 10))
        tags = {**aws_contract.ecs_run_tags("sweep"), SWEEP_TAG: sweep_id}
        for start in range(0, len(keys), batch):
            chunk = keys[start : start + batch]
            requests.append(
                dg.RunRequest(
                    run_key=f"{sweep_id}:trials:{chunk[0]}",
                    job_name=SWEEP_TRIALS_JOB,
                    tags={**tags, ASSET_PARTITION_RANGE_START_TAG: chunk[0], ASSET_PARTITION_RANGE_END_TAG: chunk[-1]},
                )
            )
        status = sweep_status(instance, store, sweep_id)
        finished = status["materialized"] + status["failed"]
        if finished == len(keys) and (sweep_id not in summarised or status["summary_done"] < finished):
            requests.append(
                dg.RunRequest(
                    run_key=f"{sweep_id}:summary:{status['materialized']}:{status['failed']}",
                    job_name=SWEEP_SUMMARY_JOB,
                    partition_key=sweep_id,
                    tags={SWEEP_TAG: sweep_id},
                )
            )
    return requests


def build_sweep_sensor(jobs: list) -> dg.SensorDefinition:
    """The sensor over the code location's ``sweep_trials`` and ``sweep_summary`` jobs."""

    @dg.sensor(
        name=SWEEP_SENSOR,
        jobs=jobs,
        minimum_interval_seconds=15,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Launches the trial batches of planned sweeps, then each sweep's summary.",
    )
    def sweep_sensor(context: dg.SensorEvaluationContext, sweep_store: SweepStore):
        return dg.SensorResult(run_requests=sweep_requests(context.instance, sweep_store))

    return sweep_sensor
