"""Sensors of the code location: drift, champion/challenger evaluation, bot heartbeats and model hot swaps.

Run by the Dagster daemon (``make dev``, the daemon's ECS service) as part of the code location that
:mod:`tradai_assets.definitions` builds. They read state through resources and the Dagster instance and
request runs; they never do the heavy work themselves, and import no asset module.
"""
