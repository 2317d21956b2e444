"""A 1,000-trial sweep (trials_per_run=10: 100 batch runs) through deploy/dagster.yaml's run queue and
EcsRunLauncher on a moto server, with the queue's own sweep limit (tradai/kind=sweep: 6).

Counts RunTask calls, the most tasks in flight at once and the time the queue takes to dispatch every
batch; tests/sweep_ecs_support.py says what is real and what plays the run worker. Each batch's task
"runs" for HOLD dequeue iterations. The code location is tests/sweep_ecs_location.py (the product's
sweep sensor over jobs named and partitioned as the product's).

    .venv/bin/python -m bench.sweep_ecs [HOLD]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from tests.servers import moto_server
from tests.sweep_ecs_support import planned_sweep, provision_aws, run_sweep_through_queue, sweep_limit_of, sweep_queue

REPO = Path(__file__).resolve().parents[1]
TRIALS, TRIALS_PER_RUN = 1000, 10


def main(argv: list[str]) -> int:
    hold = int(argv[1]) if len(argv) > 1 else 2
    with tempfile.TemporaryDirectory(prefix="sweep-ecs-") as tmp:
        root = Path(tmp)
        arctic = f"lmdb://{root / 'arctic'}"
        os.environ["TRADAI_SWEEP_ECS_ARCTIC"] = arctic
        add, expected = planned_sweep(arctic, "bench_sweep", TRIALS, TRIALS_PER_RUN)
        with moto_server() as moto:
            env = provision_aws(moto.url)
            (root / "home").mkdir()
            began = time.monotonic()
            with sweep_queue(root / "home", env, REPO / "tests" / "sweep_ecs_location.py", None, None) as (
                context,
                config,
                calls,
            ):
                limit = sweep_limit_of(config)
                report = run_sweep_through_queue(context, calls, add, hold=hold)
            total = time.monotonic() - began
    once = all(v == 1 for v in report.batches_launched.values()) and set(report.batches_launched) == expected
    print(f"trials {TRIALS}, trials_per_run {TRIALS_PER_RUN}, sweep limit {limit}, hold {hold} iterations")
    print(f"runs requested by the sweep sensor: {report.runs_requested}")
    print(f"RunTask calls: {report.run_task_calls}; tasks in moto: {report.tasks_in_moto}; each batch once: {once}")
    print(f"most tasks in flight: {report.max_in_flight} (limit {limit})")
    print(f"queue iterations: {report.iterations} (lower bound ceil(runs/limit)*hold = {-(-report.runs_requested // limit) * hold})")
    print(f"sensor submit: {report.submit_seconds:.1f} s; queue dispatch: {report.dispatch_seconds:.1f} s"
          f" ({report.dispatch_seconds / report.runs_requested:.2f} s per run); whole script {total:.0f} s")
    return 0 if once and report.max_in_flight <= limit else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
