"""A code location with one job shaped like the product's backtest job, for the ECS launch test.

The product's backtest job is not defined yet. This job carries the same run tags it will carry
(``resources.aws_contract.ecs_run_tags("backtest")``), so launching it exercises the launcher exactly
as a backtest will. To test the real job instead, point ``LAUNCH_TARGET`` in
tests/infra/test_ecs_launch.py at the product's code location and job name.
"""

from dagster import Definitions, job, op

from resources.aws_contract import ecs_run_tags


@op
def report_launch_context(context) -> str:
    # Never executed by the test: moto's ECS records tasks but does not start containers.
    context.log.info(f"run {context.run_id} started in its ECS task")
    return context.run_id


@job(tags=ecs_run_tags("backtest"))
def adhoc_backtest():
    report_launch_context()


defs = Definitions(jobs=[adhoc_backtest])
