"""A code location with the product's sweep sensor over jobs of the same names and partitions as the
product's sweeps (tradai_assets/sweeps.py), for launching sweep batches on moto ECS without loading
Freqtrade. Its runs are never executed (moto's ECS starts no containers): the assets fail if they are.
The sweep store is the product's, on LMDB at $TRADAI_SWEEP_ECS_ARCTIC."""

import os

import dagster as dg

from resources import aws_contract
from resources.arctic import ArcticStore
from resources.sweep_store import SweepStore
from sensors.sweeps import build_sweep_sensor
from tradai_core.keys import (
    SWEEP_SUMMARY_JOB,
    SWEEP_SUMMARY_KEY,
    SWEEP_TRIAL_KEY,
    SWEEP_TRIALS,
    SWEEP_TRIALS_JOB,
    SWEEPS,
)

NOT_EXECUTED = "runs of this location are launched as ECS tasks on moto and never executed"


@dg.asset(key=SWEEP_TRIAL_KEY, partitions_def=SWEEP_TRIALS, backfill_policy=dg.BackfillPolicy.multi_run(10))
def sweep_trial():
    raise dg.Failure(NOT_EXECUTED)


@dg.asset(key=SWEEP_SUMMARY_KEY, partitions_def=SWEEPS)
def sweep_summary():
    raise dg.Failure(NOT_EXECUTED)


jobs = [
    dg.define_asset_job(SWEEP_TRIALS_JOB, [SWEEP_TRIAL_KEY], tags=aws_contract.ecs_run_tags("sweep")),
    dg.define_asset_job(SWEEP_SUMMARY_JOB, [SWEEP_SUMMARY_KEY]),
]
defs = dg.Definitions(
    assets=[sweep_trial, sweep_summary],
    jobs=jobs,
    sensors=[build_sweep_sensor(jobs)],
    resources={"sweep_store": SweepStore(arctic=ArcticStore(uri=os.environ["TRADAI_SWEEP_ECS_ARCTIC"]))},
)
