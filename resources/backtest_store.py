"""Strategy configs and backtest results in ArcticDB.

``strategy_configs``: one symbol per strategy, one version per distinct config content hash, never
pruned, so every config a backtest ran with stays retrievable by its hash. ``backtests``: per strategy
the trades, the equity curve and the statistics of its latest canonical backtest, each write a new
version. A strategy writes only its own symbols, so strategies backtest in parallel safely.
"""


import json
from typing import Any

import pandas as pd
from dagster import ConfigurableResource

from resources.arctic import ArcticStore

CONFIG_LIBRARY = "strategy_configs"
BACKTEST_LIBRARY = "backtests"


class BacktestStore(ConfigurableResource):
    arctic: ArcticStore

    # Configs ------------------------------------------------------------------------------------

    def write_config(self, strategy: str, config: dict[str, Any], content_hash: str) -> int:
        """Store a config unless the strategy's newest one has this hash; returns its version."""
        lib = self.arctic.library(CONFIG_LIBRARY)
        if lib.has_symbol(strategy):
            latest = lib.read_metadata(strategy)
            if (latest.metadata or {}).get("content_hash") == content_hash:
                return latest.version
        item = lib.write_pickle(strategy, json.dumps(config, sort_keys=True), metadata={"content_hash": content_hash})
        return item.version

    def latest_config(self, strategy: str) -> tuple[dict[str, Any], str] | None:
        lib = self.arctic.library(CONFIG_LIBRARY)
        if not lib.has_symbol(strategy):
            return None
        item = lib.read(strategy)
        return json.loads(item.data), item.metadata["content_hash"]

    def config(self, strategy: str, content_hash: str) -> dict[str, Any]:
        """The config with this hash; KeyError naming the stored hashes otherwise."""
        lib = self.arctic.library(CONFIG_LIBRARY)
        known = []
        if lib.has_symbol(strategy):
            for key in sorted(lib.list_versions(strategy), key=lambda k: -k.version):
                meta = lib.read_metadata(strategy, as_of=key.version).metadata or {}
                if meta.get("content_hash") == content_hash:
                    return json.loads(lib.read(strategy, as_of=key.version).data)
                known.append(meta.get("content_hash"))
        raise KeyError(f"no config {content_hash} for strategy {strategy}; stored: {known or 'none'}")

    # Backtest results ---------------------------------------------------------------------------

    def write_backtest(
        self,
        strategy: str,
        trades: pd.DataFrame,
        equity: pd.DataFrame,
        stats: dict[str, Any],
        lineage: dict[str, Any],
    ) -> int:
        """Store one backtest's results; returns the version of its trades."""
        lib = self.arctic.library(BACKTEST_LIBRARY)
        item = lib.write(f"{strategy}|trades", trades, metadata=lineage)
        lib.write(f"{strategy}|equity", equity, metadata=lineage)
        lib.write_pickle(f"{strategy}|stats", json.dumps(stats, sort_keys=True), metadata=lineage)
        return item.version

    def latest_lineage(self, strategy: str) -> dict[str, Any] | None:
        """The lineage of the strategy's latest backtest (None before the first one)."""
        lib = self.arctic.library(BACKTEST_LIBRARY)
        if not lib.has_symbol(f"{strategy}|trades"):
            return None
        return lib.read_metadata(f"{strategy}|trades").metadata

    def read_backtest(self, strategy: str) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any], dict[str, Any]]:
        """Trades, equity curve, statistics and lineage of the strategy's latest backtest."""
        lib = self.arctic.library(BACKTEST_LIBRARY)
        trades = lib.read(f"{strategy}|trades")
        equity = lib.read(f"{strategy}|equity").data
        stats = json.loads(lib.read(f"{strategy}|stats").data)
        return _as_utc(trades.data), equity, stats, trades.metadata

    # Walk-forward results ------------------------------------------------------------------------

    def write_walk_forward(
        self,
        strategy: str,
        trades: pd.DataFrame,
        equity: pd.DataFrame,
        report: dict[str, Any],
        lineage: dict[str, Any],
    ) -> int:
        """Store a walk-forward's stitched out-of-sample trades and equity curve (each with its
        ``window`` column) and its report (windows, summary, stability, as JSON), beside the strategy's
        canonical backtest; returns the version of its trades."""
        lib = self.arctic.library(BACKTEST_LIBRARY)
        item = lib.write(f"{strategy}|walk_forward|trades", trades, metadata=lineage)
        lib.write(f"{strategy}|walk_forward|equity", equity, metadata=lineage)
        lib.write_pickle(f"{strategy}|walk_forward|report", json.dumps(report, sort_keys=True), metadata=lineage)
        return item.version

    def read_walk_forward(self, strategy: str) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any], dict[str, Any]]:
        """Out-of-sample trades, equity curve, report and lineage of the strategy's latest walk-forward."""
        lib = self.arctic.library(BACKTEST_LIBRARY)
        if not lib.has_symbol(f"{strategy}|walk_forward|trades"):
            raise KeyError(f"no walk-forward stored for strategy {strategy}")
        trades = lib.read(f"{strategy}|walk_forward|trades")
        equity = lib.read(f"{strategy}|walk_forward|equity").data
        report = json.loads(lib.read(f"{strategy}|walk_forward|report").data)
        return _as_utc(trades.data), equity, report, trades.metadata


def _as_utc(frame: pd.DataFrame) -> pd.DataFrame:
    """ArcticDB keeps a column's datetimes but not their timezone; every one stored here is UTC."""
    naive = [c for c, t in frame.dtypes.items() if pd.api.types.is_datetime64_dtype(t) and getattr(t, "tz", None) is None]
    return frame.assign(**{c: frame[c].dt.tz_localize("UTC") for c in naive}) if naive else frame
