"""The backtest metrics the product records (MLflow, asset metadata, the API), from Freqtrade's stats."""

from __future__ import annotations

from typing import Any

# Freqtrade's names; max_drawdown is its drawdown relative to the account.
METRICS = {
    "profit_total_abs": "profit_total_abs",
    "profit_total": "profit_total",
    "trades": "total_trades",
    "winrate": "winrate",
    "max_drawdown": "max_drawdown_account",
    "sharpe": "sharpe",
    "sortino": "sortino",
    "calmar": "calmar",
    "cagr": "cagr",
    "profit_factor": "profit_factor",
    "expectancy": "expectancy",
}


def metrics_of(stats: dict[str, Any]) -> dict[str, float]:
    return {name: float(stats[key]) for name, key in METRICS.items() if stats.get(key) is not None}
