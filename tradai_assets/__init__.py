"""TradAI Dagster code location: assets, checks, jobs and schedules."""
