"""The Dagster code location: assets, asset checks, jobs and schedules; ``definitions.py`` builds them.

Run by ``dagster`` (the webserver and daemon under ``make dev``, a gRPC code server and ECS run tasks on
AWS) through ``workspace.yaml``. Nothing else lives here: domain logic is in :mod:`tradai_core`, the
clients of the outside world in :mod:`resources`, the sensors in :mod:`sensors`.
"""
