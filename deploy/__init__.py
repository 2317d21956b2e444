"""The ECS deployment's Python side: the run launcher deploy/dagster.yaml names, and start-up helpers."""
