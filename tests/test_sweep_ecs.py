"""A sweep's trial batches launched on ECS (a moto server) through deploy/dagster.yaml's run queue and
EcsRunLauncher: never more sweep tasks at once than the queue's limit, and every batch launched exactly
once (tests/sweep_ecs_support.py says what is real and what plays the run worker)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.servers import moto_server
from tests.sweep_ecs_support import planned_sweep, provision_aws, run_sweep_through_queue, sweep_limit_of, sweep_queue

HERE = Path(__file__).resolve().parent


@pytest.fixture
def restored_environment():
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_a_sweep_never_has_more_tasks_than_the_limit_and_launches_every_batch_once(tmp_path, restored_environment):
    hold = 2  # each batch's task runs for two dequeue iterations, so batches queue behind the limit
    arctic = f"lmdb://{tmp_path / 'arctic'}"
    os.environ["TRADAI_SWEEP_ECS_ARCTIC"] = arctic
    add, expected = planned_sweep(arctic, "ecs_sweep", trials=30, trials_per_run=3)
    with moto_server() as moto:
        env = provision_aws(moto.url)
        home = tmp_path / "dagster_home"
        home.mkdir()
        with sweep_queue(home, env, HERE / "sweep_ecs_location.py", None, sweep_limit=3) as (context, config, calls):
            assert sweep_limit_of(config) == 3
            report = run_sweep_through_queue(context, calls, add, hold=hold)
    assert report.runs_requested == 10
    assert report.max_in_flight == 3  # the limit is reached and never passed
    assert report.run_task_calls == report.tasks_in_moto == 10
    assert report.batches_launched == {batch: 1 for batch in expected}
    # With tasks that run for `hold` iterations the queue needs at least ceil(10 / 3) * hold of them.
    assert report.iterations >= 4 * hold
