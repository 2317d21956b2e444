"""Shared pieces of the benchmarks: synthetic candles, timing, and reporting."""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def synthetic_candles(pair_index: int, start: str, periods: int, freq: str) -> pd.DataFrame:
    """A random walk with valid OHLC, indexed by UTC open time (float64)."""
    rng = np.random.default_rng(pair_index)
    index = pd.date_range(start, periods=periods, freq=freq, tz="UTC", name="date")
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, periods)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = rng.uniform(0, 2e-3, periods)
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * (1 + spread),
            "low": np.minimum(open_, close) * (1 - spread),
            "close": close,
            "volume": rng.uniform(1, 100, periods),
        },
        index=index,
    )


def best_of(fn: Callable[[], object], repeat: int) -> tuple[float, list[float]]:
    """Minimum and all wall times of ``repeat`` calls (the minimum is the least disturbed)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times), times


def compute_seconds(instance, run_id: str) -> float:
    """Seconds from the step's start to its first materialization: the asset's own work, without the run's
    start and Dagster's per-partition events (one materialization per partition of the range)."""
    from dagster import DagsterEventType

    logs = instance.all_logs(run_id)
    start = next(e.timestamp for e in logs if e.dagster_event and e.dagster_event.event_type == DagsterEventType.STEP_START)
    first = next(
        e.timestamp for e in logs if e.dagster_event and e.dagster_event.event_type == DagsterEventType.ASSET_MATERIALIZATION
    )
    return first - start


def load_average() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def report(title: str, command: str, lines: list[str]) -> str:
    today = dt.date.today().isoformat()
    body = "\n".join(f"- {line}" for line in lines)
    return f"### {title}\n\n`{command}` on {today} ({machine()})\n\n{body}\n"


def median(values: list[float]) -> float:
    return statistics.median(values)
