"""The strategies the API knows: the files in the strategies directory, read the way the code location
reads them (their syntax tree, without importing Freqtrade), so the API and Dagster agree on names."""

from __future__ import annotations

from pathlib import Path

from fastapi import HTTPException

from tradai_api.deps import unprocessable
from tradai_core.strategy_discovery import StrategySpec, discover_strategies


def strategies_by_name(directory: Path) -> dict[str, StrategySpec]:
    return {spec.name: spec for spec in discover_strategies(directory)}


def require_strategy(directory: Path, name: str) -> StrategySpec:
    specs = strategies_by_name(directory)
    spec = specs.get(name)
    if spec is None:
        known = ", ".join(sorted(specs)) or "none"
        raise HTTPException(404, f"unknown strategy {name!r}; known: {known}")
    return spec


def require_runnable_strategy(directory: Path, name: str, loc: list[str]) -> StrategySpec:
    """``loc`` names where the request gave the strategy's name (body or path), for the 422."""
    spec = require_strategy(directory, name)
    if spec.problem:
        raise unprocessable(loc, f"strategy {name} cannot run: {spec.problem}")
    return spec
