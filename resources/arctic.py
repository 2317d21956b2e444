"""ArcticDB: candles and market snapshots, versioned.

One library per exchange and market type (``ohlcv.binance.spot``), one symbol per pair, timeframe and
candle type (``ETH/BTC|5m|spot``). Market snapshots live in the ``markets`` library, one symbol per
exchange and market type, one version per distinct content hash.

ArcticDB does not support two processes writing one symbol at once (a write can fail with
``E_NON_INCREASING_INDEX_VERSION`` or the last writer's data wins), so writers of a candle library
take ``candle_writer``: the OHLCV assets and the demo jobs hold it around their read-merge-write, on
top of the Dagster pool of the library. On LMDB it is a file lock, which also holds where the pool
cannot (Dagster's SQLite storage claims pool slots without a transaction, so two processes can both
win the one slot); on S3 the pool is the guard, backed by the PostgreSQL instance of the cloud setup.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd
from dagster import ConfigurableResource
from pydantic import Field

from tradai_core.candles import candle_library_name

MARKETS_LIBRARY = "markets"


# One Arctic instance per store and process. LMDB does not support opening one environment twice in
# a process (ArcticDB warns that reads may then be wrong), and the API's request threads ask for the
# store at the same moment: the lock makes the first caller open it and the others wait for that one.
_ARCTICS: dict[str, Any] = {}
_ARCTICS_LOCK = threading.Lock()


def _connect(uri: str):
    key = _store_key(uri)
    with _ARCTICS_LOCK:
        if key not in _ARCTICS:
            _ARCTICS[key] = _open(uri)
        return _ARCTICS[key]


def _open(uri: str):
    import arcticdb  # imported on first use: loading the code location stays fast
    from arcticdb.config import set_config_int

    # ArcticDB caches each symbol's version list for a while (about 2 s): a process reading a symbol
    # right after another process wrote it would see the old version, and a read-merge-write would
    # drop that write. Always read the current version.
    set_config_int("VersionMap.ReloadInterval", 0)

    root = _lmdb_root(uri)
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
    return arcticdb.Arctic(uri)


def _store_key(uri: str) -> str:
    """The same LMDB directory under any spelling (relative, trailing slash) is the same store."""
    root = _lmdb_root(uri)
    if root is None:
        return uri
    _, _, query = uri.partition("?")
    return f"lmdb://{root.resolve()}?{query}"


def _lmdb_root(uri: str) -> Path | None:
    return Path(uri.removeprefix("lmdb://").split("?")[0]) if uri.startswith("lmdb://") else None


@dataclass(frozen=True)
class StoredSnapshot:
    exchange: str
    market_type: str
    content_hash: str
    version: int
    payload: dict[str, Any]
    metadata: dict[str, Any]


class ArcticStore(ConfigurableResource):
    """Candles and market snapshots in ArcticDB (``lmdb://path`` locally, ``s3://``/``s3s://`` in AWS)."""

    uri: str = Field(description="ArcticDB URI, e.g. lmdb://.tradai/arctic or s3s://host:bucket?aws_auth=true")
    keep_versions: int = Field(
        default=50,
        description="Versions kept per candle symbol; older ones are pruned after each write.",
    )

    @property
    def arctic(self):
        return _connect(self.uri)

    def library(self, name: str):
        return self.arctic.get_library(name, create_if_missing=True)

    # Candles ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def writer(self, library: str, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
        """Hold the one writer slot of a library for the block (blocking; ``on_wait`` hears of a wait).

        On LMDB a file lock in ``.writer-locks/`` inside the store, across the processes of one
        machine; on S3 a no-op, the callers' Dagster pool on the PostgreSQL instance being the guard.
        """
        root = _lmdb_root(self.uri)
        if root is None:
            yield
            return
        locks = root / ".writer-locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / f"{library}.lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait(f"waiting for another writer of {library} to finish")
                started = time.monotonic()
                fcntl.flock(handle, fcntl.LOCK_EX)
                if on_wait is not None:
                    on_wait(f"got the writer lock of {library} after {time.monotonic() - started:.1f} s")
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def candle_writer(self, exchange: str, market_type: str, on_wait: Callable[[str], None] | None = None):
        """The writer lock of a candle library (see :meth:`writer`)."""
        return self.writer(candle_library_name(exchange, market_type), on_wait)

    def candle_symbols(self, exchange: str, market_type: str) -> list[str]:
        name = candle_library_name(exchange, market_type)
        if not self.arctic.has_library(name):
            return []
        return sorted(self.library(name).list_symbols())

    def read_candles(
        self,
        exchange: str,
        market_type: str,
        symbol: str,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
        as_of: int | None = None,
    ) -> pd.DataFrame | None:
        """Candles with open time in [start, end); None when the symbol has never been written."""
        lib = self.library(candle_library_name(exchange, market_type))
        if not lib.has_symbol(symbol):
            return None
        date_range = None
        if start is not None or end is not None:
            date_range = (start, None if end is None else end - pd.Timedelta(1, "ns"))
        return lib.read(symbol, date_range=date_range, as_of=as_of).data

    def candle_version(self, exchange: str, market_type: str, symbol: str) -> int | None:
        lib = self.library(candle_library_name(exchange, market_type))
        if not lib.has_symbol(symbol):
            return None
        return lib.read_metadata(symbol).version

    def candle_metadata(self, exchange: str, market_type: str, symbol: str) -> dict[str, Any]:
        """The metadata written with the symbol's current version ({} when never written)."""
        lib = self.library(candle_library_name(exchange, market_type))
        if not lib.has_symbol(symbol):
            return {}
        return lib.read_metadata(symbol).metadata or {}

    def last_candle_time(self, exchange: str, market_type: str, symbol: str) -> pd.Timestamp | None:
        lib = self.library(candle_library_name(exchange, market_type))
        if not lib.has_symbol(symbol):
            return None
        tail = lib.tail(symbol, 1).data
        return None if tail.empty else tail.index[-1]

    def replace_window(
        self,
        exchange: str,
        market_type: str,
        symbol: str,
        candles: pd.DataFrame,
        start: pd.Timestamp,
        end: pd.Timestamp,
        metadata: dict[str, Any],
    ) -> int | None:
        """Make [start, end) of the symbol exactly ``candles``; returns the new version (None if no write).

        Callers pass the union of what was stored and what is new, so nothing already stored is lost.
        One ArcticDB version per call: a killed writer leaves the previous version intact.
        """
        if candles.empty:
            return None
        outside = (candles.index < start) | (candles.index >= end)
        if outside.any():
            raise ValueError(f"{symbol}: {int(outside.sum())} candles fall outside [{start}, {end})")
        lib = self.library(candle_library_name(exchange, market_type))
        data = candles.astype("float64")
        item = lib.update(
            symbol, data, metadata=metadata, upsert=True, date_range=(start, end - pd.Timedelta(1, "ns"))
        )
        self._prune(lib, symbol)
        return item.version

    def _prune(self, lib, symbol: str) -> None:
        versions = sorted(key.version for key in lib.list_versions(symbol, skip_snapshots=True))
        stale = versions[: -self.keep_versions]
        if stale:
            lib.delete(symbol, versions=stale)

    # Market snapshots ---------------------------------------------------------------------------

    def write_markets_snapshot(
        self, exchange: str, market_type: str, payload: dict[str, Any], content_hash: str, metadata: dict[str, Any]
    ) -> StoredSnapshot:
        """Store a snapshot unless the newest one has the same content hash; returns the stored one."""
        existing = self.latest_markets_snapshot(exchange, market_type)
        if existing is not None and existing.content_hash == content_hash:
            return existing
        lib = self.library(MARKETS_LIBRARY)
        meta = {**metadata, "content_hash": content_hash, "exchange": exchange, "market_type": market_type}
        item = lib.write_pickle(f"{exchange}.{market_type}", json.dumps(payload, sort_keys=True), metadata=meta)
        return StoredSnapshot(exchange, market_type, content_hash, item.version, payload, meta)

    def latest_markets_snapshot(self, exchange: str, market_type: str) -> StoredSnapshot | None:
        lib = self.library(MARKETS_LIBRARY)
        symbol = f"{exchange}.{market_type}"
        if not lib.has_symbol(symbol):
            return None
        return self._snapshot_at(exchange, market_type, None)

    def markets_snapshot(self, exchange: str, market_type: str, content_hash: str) -> StoredSnapshot:
        """The snapshot with this content hash; KeyError naming the hashes that exist otherwise."""
        lib = self.library(MARKETS_LIBRARY)
        symbol = f"{exchange}.{market_type}"
        known = []
        if lib.has_symbol(symbol):
            for key in sorted(lib.list_versions(symbol), key=lambda k: -k.version):
                version = key.version
                meta = lib.read_metadata(symbol, as_of=version).metadata or {}
                if meta.get("content_hash") == content_hash:
                    return self._snapshot_at(exchange, market_type, version)
                known.append(meta.get("content_hash"))
        raise KeyError(f"no markets snapshot {content_hash} for {exchange} {market_type}; stored: {known or 'none'}")

    def _snapshot_at(self, exchange: str, market_type: str, version: int | None) -> StoredSnapshot:
        item = self.library(MARKETS_LIBRARY).read(f"{exchange}.{market_type}", as_of=version)
        meta = item.metadata or {}
        return StoredSnapshot(exchange, market_type, meta["content_hash"], item.version, json.loads(item.data), meta)
