"""The HTTP API service (FastAPI), versioned under ``/api/v1``: scripts, CI and the CLI start backtests,
read results, manage models and bots through it (docs/api.md).

Run by ``uvicorn --factory tradai_api.app:create_app_from_environment`` (``make dev`` on 127.0.0.1:8000,
the API image on ECS). It launches runs through Dagster's GraphQL API and reads results through the
resources; it never imports the Dagster code location.
"""
