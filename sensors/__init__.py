"""Sensors: read state through resources and the Dagster instance, and request runs."""
