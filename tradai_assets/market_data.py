"""Market data as assets: ``markets/<exchange>/<market_type>`` snapshots and ``ohlcv/<exchange>/<market_type>``
candles in ArcticDB, their checks, and the jobs and schedules that keep them fresh.

One set of definitions per universe entry (see ``universe.py``).
"""


import datetime as dt
import hashlib
import json
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import numpy as np
import pandas as pd
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from resources import aws_contract
from resources.arctic import ArcticStore
from resources.binance_archive import ArchiveError, BinanceArchive, Span, archive_market
from resources.exchange import ExchangeRequestFailed, ExchangeResource
from resources.freqtrade_data import DataFileError, find_candle_file, read_candle_file
from tradai_core.candle_chunks import CandleChunk, CandleSource, fill_span, rest_source
from tradai_core.candles import (
    CleanReport,
    candle_symbol,
    clean_candles,
    empty_candles,
    find_gaps,
    frame_from_rows,
    merge_candles,
    parse_candle_symbol,
    timeframe_delta,
)
from tradai_core.universe import UniverseEntry

GROUP = "market_data"

# Single-run backfills make a date-range backfill one bulk fetch; Dagster marks that parameter beta.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)


def markets_key(entry: UniverseEntry) -> dg.AssetKey:
    return dg.AssetKey(["markets", entry.exchange, entry.market_type])


def ohlcv_key(entry: UniverseEntry) -> dg.AssetKey:
    return dg.AssetKey(["ohlcv", entry.exchange, entry.market_type])


def ohlcv_pool(entry: UniverseEntry) -> str:
    """One writer at a time per ArcticDB library (instance setting ``concurrency.pools.default_limit: 1``)."""
    return f"arcticdb_ohlcv_{entry.exchange}_{entry.market_type}"


def content_hash(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


# Markets -------------------------------------------------------------------------------------------


class MarketsConfig(dg.Config):
    from_file: str | None = None
    """A snapshot JSON file ({"markets": ..., "leverage_tiers": ...}) to store instead of asking the exchange."""


def read_markets_file(path: Path) -> dict[str, Any]:
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise dg.Failure(f"{path}: cannot read markets snapshot ({exc})") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("markets"), dict):
        raise dg.Failure(f"{path}: a markets snapshot is an object with a 'markets' object keyed by symbol")
    payload.setdefault("leverage_tiers", {})
    return payload


def build_markets_asset(entry: UniverseEntry) -> dg.AssetsDefinition:
    @dg.asset(
        key=markets_key(entry),
        group_name=GROUP,
        kinds={"ccxt", "arcticdb"},
        description=(
            f"ccxt load_markets() of {entry.exchange} {entry.market_type} (precision, limits, fees"
            + (", leverage tiers" if entry.market_type == "futures" else "")
            + "), stored in ArcticDB as a versioned snapshot named by its content hash."
        ),
    )
    def markets(context: dg.AssetExecutionContext, config: MarketsConfig, arctic: ArcticStore, exchange: ExchangeResource):
        source_file = Path(config.from_file) if config.from_file else entry.markets_file
        if source_file is not None:
            payload = read_markets_file(source_file)
            source = str(source_file)
        else:
            client = exchange.client(entry.exchange, entry.market_type, entry.ccxt_config)
            try:
                markets = client.load_markets()
                tiers, tiers_source = ({}, "")
                if entry.market_type == "futures":
                    tiers, tiers_source = client.leverage_tiers(sorted(markets))
            finally:
                client.close()
            payload = {"markets": markets, "leverage_tiers": tiers}
            source = f"{entry.exchange} via ccxt" + (f"; leverage tiers from {tiers_source}" if tiers_source else "")
        digest = content_hash(payload)
        stored = arctic.write_markets_snapshot(
            entry.exchange,
            entry.market_type,
            payload,
            digest,
            {"source": source, "stored_at": dt.datetime.now(dt.UTC).isoformat()},
        )
        missing = sorted(set(entry.pairs) - set(payload["markets"]))
        if missing:
            context.log.warning(f"snapshot lacks configured pairs: {', '.join(missing)}")
        return dg.MaterializeResult(
            data_version=dg.DataVersion(digest),
            metadata={
                "content_hash": digest,
                "market_count": len(payload["markets"]),
                "leverage_tier_pairs": len(payload["leverage_tiers"]),
                "snapshot_version": stored.version,
                "source": source,
                "configured_pairs_missing": dg.MetadataValue.json(missing),
            },
        )

    return markets


# Candles -------------------------------------------------------------------------------------------


class CandleSyncConfig(dg.Config):
    source: Literal["auto", "exchange", "import"] = "auto"
    """Where candles come from: 'auto' uses the universe's import_dir when it has one, else the exchange."""
    import_dir: str | None = None
    """A Freqtrade data directory to import instead of the universe's."""
    pairs: list[str] | None = None
    """Only these pairs (all configured pairs by default)."""
    refetch: bool = False
    """Fetch the whole window again instead of only what follows the last stored candle."""


@dataclass
class SeriesResult:
    pair: str
    timeframe: str
    candle_type: str
    frame: pd.DataFrame
    stored: pd.DataFrame
    received: int = 0
    clean_report: dict[str, Any] = field(default_factory=dict)
    version: int | None = None
    written: int = 0
    error: str | None = None
    chunks: int = 0
    retries: int = 0
    by_source: dict[str, int] = field(default_factory=dict)
    first: pd.Timestamp | None = None
    last: pd.Timestamp | None = None
    archive_files: dict[str, dict[str, str]] = field(default_factory=dict)
    """Archive files the stored candles came from (path -> checksum, ETag, Last-Modified)."""
    sources: list[tuple[Span, int]] = field(default_factory=list)
    """Each fetched span, where its candles came from (the file, or why REST), and how many."""


def partition_window(context: dg.AssetExecutionContext) -> tuple[pd.Timestamp, pd.Timestamp]:
    window = context.partition_time_window
    return pd.Timestamp(window.start).tz_convert("UTC"), pd.Timestamp(window.end).tz_convert("UTC")


class ProgressLog:
    """Reports a long fetch every ``interval`` seconds: each log line is an event in the run's log
    storage, so one per page would cost more than the fetch itself."""

    def __init__(self, context: dg.AssetExecutionContext, label: str, interval: float = 15.0):
        self.context, self.label, self.interval = context, label, interval
        self.next_report = time.monotonic() + interval

    def __call__(self, rows: int, last_ms: int) -> None:
        if time.monotonic() >= self.next_report:
            self.next_report = time.monotonic() + self.interval
            self.context.log.info(f"{self.label}: {rows} candles stored so far, up to {pd.Timestamp(last_ms, unit='ms', tz='UTC')}")


def _sync_from_exchange(
    context: dg.AssetExecutionContext,
    entry: UniverseEntry,
    arctic: ArcticStore,
    exchange: ExchangeResource,
    results: list[SeriesResult],
    start: pd.Timestamp,
    end: pd.Timestamp,
    refetch: bool,
) -> dict[str, Any]:
    """Fetch each series pair by pair and commit it chunk by chunk, so that a failure, a kill or a
    lost task keeps every whole chunk already stored and a re-run resumes after the last one.

    A series that fails for good records its error and the others go on. Returns run metadata."""
    client = exchange.client(entry.exchange, entry.market_type, entry.ccxt_config, on_retry=context.log.warning)
    archive = None
    try:
        client.check_pairs(sorted({r.pair for r in results}))
        for tf in sorted({r.timeframe for r in results if r.candle_type != "funding_rate"}):
            client.check_timeframe(tf)
        now_ms, clock = client.server_time_ms()
        now = pd.Timestamp(now_ms, unit="ms", tz="UTC")
        sources = [rest_source(client, timeframe_delta, exchange.pages_per_chunk * exchange.candles_per_request)]
        if entry.archive_url is not None:
            archive = BinanceArchive(
                entry.archive_url, exchange.max_retries, exchange.backoff_seconds, exchange.max_backoff_seconds,
                on_retry=context.log.warning,
            )
            sources.insert(0, _archive_source(archive, client, entry, results, now))
        for r in sorted(results, key=lambda r: r.pair):  # pair by pair: a failing pair stops only itself
            step = timeframe_delta(r.timeframe)
            # A candle is final once its close time has passed on the exchange's clock.
            until = min(end, now.floor(step) if r.candle_type != "funding_rate" else now)
            since = start
            if not refetch and not r.stored.empty:
                since = r.stored.index[-1] + (step if r.candle_type != "funding_rate" else pd.Timedelta(1, "ms"))
            if since >= until:
                continue
            label = f"{r.pair} {r.timeframe} {r.candle_type}"
            retries_before = client.retries.total()
            try:
                _commit_chunks(context, entry, arctic, r, fill_span(sources, r.pair, r.timeframe, r.candle_type, since, until))
            except (ExchangeRequestFailed, ArchiveError) as exc:
                r.error = str(exc)
                context.log.error(f"{label}: {exc}; {r.chunks} chunk(s) of it were stored")
            finally:
                r.retries = client.retries.total() - retries_before
            context.log.info(f"{label}: {r.received} rows from {since} to {until}, {r.chunks} chunk(s) committed")
        return {"clock": clock, "retries": client.retries.total(), "retries_by_cause": dg.MetadataValue.json(dict(client.retries))}
    finally:
        client.close()
        if archive is not None:
            archive.close()


def _archive_source(
    archive: BinanceArchive, client, entry: UniverseEntry, results: list[SeriesResult], now: pd.Timestamp
) -> CandleSource:
    """The exchange's public archive as the first source: one chunk per published file, in time order;
    the spans it has not published, and files missing or re-uploaded there, are left to REST."""
    by_series = {(r.pair, r.timeframe, r.candle_type): r for r in results}

    def chunks(pair: str, timeframe: str, candle_type: str, start: pd.Timestamp, end: pd.Timestamp) -> Iterator[CandleChunk]:
        r = by_series[(pair, timeframe, candle_type)]
        market = client.load_markets()[pair]
        parts = archive.parts(
            market["id"], archive_market(entry.market_type, bool(market.get("inverse"))), timeframe, candle_type,
            start, end, now, r.archive_files,
        )
        for span, rows, record in parts:
            if rows is None:
                r.sources.append((span, 0))  # REST fills it; its count is added when its chunks arrive
                continue
            yield CandleChunk(span.start, span.end, frame_from_rows(rows, candle_type), "archive", {span.reason: record})

    return chunks


def _commit_chunks(
    context: dg.AssetExecutionContext,
    entry: UniverseEntry,
    arctic: ArcticStore,
    r: SeriesResult,
    chunks: Iterator[CandleChunk],
) -> None:
    """Clean each chunk and make its span in the store exactly the union of what was stored there and
    the chunk: one ArcticDB version per chunk, so readers see whole chunks or none."""
    symbol = candle_symbol(r.pair, r.timeframe, r.candle_type)
    meta = {"exchange": entry.exchange, "pair": r.pair, "timeframe": r.timeframe, "candle_type": r.candle_type}
    progress = ProgressLog(context, f"{r.pair} {r.timeframe} {r.candle_type}")
    report = CleanReport()
    try:
        for chunk in chunks:
            clean, chunk_report = clean_candles(chunk.candles, r.timeframe, r.candle_type)
            report.duplicates += chunk_report.duplicates
            report.reordered |= chunk_report.reordered
            report.invalid += chunk_report.invalid
            r.received += len(chunk.candles)
            r.by_source[chunk.source] = r.by_source.get(chunk.source, 0) + len(chunk.candles)
            _count_source(r, chunk)
            stored = r.stored[(r.stored.index >= chunk.start) & (r.stored.index < chunk.end)]
            merged = merge_candles(stored, clean)
            if merged.empty or merged.equals(stored):
                continue  # nothing new: no new ArcticDB version
            # A re-uploaded file keeps its first record: its span stays with REST on later runs too.
            r.archive_files = {**dict(chunk.files), **r.archive_files}
            if r.archive_files:
                meta["archive_files"] = r.archive_files
            r.version = arctic.replace_window(entry.exchange, entry.market_type, symbol, merged, chunk.start, chunk.end, meta)
            r.chunks += 1
            r.written += int((~merged.index.isin(stored.index)).sum())
            r.first = merged.index[0] if r.first is None else min(r.first, merged.index[0])
            r.last = merged.index[-1] if r.last is None else max(r.last, merged.index[-1])
            progress(r.written, int(merged.index[-1].value // 1_000_000))
    finally:
        r.clean_report = report.as_metadata()


def _count_source(r: SeriesResult, chunk: CandleChunk) -> None:
    """Add a chunk's rows to ``r.sources``: an archive chunk is its own span; a REST chunk's rows go to
    the spans the archive left to REST that they fall in (one REST chunk may fill several)."""
    if chunk.source == "archive":
        r.sources.append((Span(chunk.start, chunk.end, "archive", next(iter(chunk.files), "")), len(chunk.candles)))
        return
    times = chunk.candles.index
    covered = np.zeros(len(times), dtype=bool)
    overlapped = False
    for index, (span, count) in enumerate(r.sources):
        if span.source != "rest" or span.end <= chunk.start or chunk.end <= span.start:
            continue
        overlapped = True
        inside = (times >= span.start) & (times < span.end)
        covered |= inside
        r.sources[index] = (span, count + int(inside.sum()))
    if not overlapped:
        r.sources.append((Span(chunk.start, chunk.end, chunk.source, "no archive for this exchange"), len(times)))
    elif not covered.all():
        r.sources.append((Span(chunk.start, chunk.end, chunk.source, "outside the archive's plan"), int((~covered).sum())))


def _read_from_directory(
    context: dg.AssetExecutionContext,
    datadir: Path,
    results: list[SeriesResult],
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> None:
    for r in results:
        path = find_candle_file(datadir, r.pair, r.timeframe, r.candle_type)
        if path is None:
            context.log.info(f"{datadir}: no file for {r.pair} {r.timeframe} {r.candle_type}")
            continue
        try:
            raw = read_candle_file(path, r.pair, r.candle_type)
        except DataFileError as exc:
            r.error = str(exc)
            context.log.error(r.error)
            continue
        raw = raw[(raw.index >= start) & (raw.index < end)]
        r.received = len(raw)
        clean, report = clean_candles(raw, r.timeframe, r.candle_type)
        r.clean_report = report.as_metadata()
        r.frame = merge_candles(r.frame, clean)
        context.log.info(f"{path.name}: {len(raw)} rows in window, {len(clean)} clean")


def _write_imported(
    entry: UniverseEntry, arctic: ArcticStore, results: list[SeriesResult], start: pd.Timestamp, stop: pd.Timestamp
) -> None:
    """One version per imported series: the union of what was stored in the window and the file."""
    for r in results:
        if r.frame.equals(r.stored):
            continue  # nothing new: no new ArcticDB version
        r.written = int((~r.frame.index.isin(r.stored.index)).sum())
        symbol = candle_symbol(r.pair, r.timeframe, r.candle_type)
        meta = {"exchange": entry.exchange, "pair": r.pair, "timeframe": r.timeframe, "candle_type": r.candle_type}
        r.version = arctic.replace_window(entry.exchange, entry.market_type, symbol, r.frame, start, stop, meta)
        if not r.frame.empty:
            r.first, r.last = r.frame.index[0], r.frame.index[-1]


def _series_table(results: list[SeriesResult]) -> dg.TableMetadataValue:
    records = []
    for r in results:
        records.append(
            dg.TableRecord(
                {
                    "pair": r.pair,
                    "timeframe": r.timeframe,
                    "type": r.candle_type,
                    "received": r.received,
                    "new_candles": r.written,
                    "invalid_dropped": int(r.clean_report.get("invalid_dropped", 0)),
                    "duplicates_dropped": int(r.clean_report.get("duplicates_dropped", 0)),
                    "from_rest": r.by_source.get("rest", 0),
                    "chunks": r.chunks,
                    "retries": r.retries,
                    "first_written": "" if r.first is None else r.first.isoformat(),
                    "last_written": "" if r.last is None else r.last.isoformat(),
                    "version": -1 if r.version is None else r.version,
                    "error": r.error or "",
                }
            )
        )
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn("pair", "string"),
            dg.TableColumn("timeframe", "string"),
            dg.TableColumn("type", "string"),
            dg.TableColumn("received", "int"),
            dg.TableColumn("new_candles", "int"),
            dg.TableColumn("invalid_dropped", "int"),
            dg.TableColumn("duplicates_dropped", "int"),
            dg.TableColumn("from_rest", "int", description="rows received from the exchange's REST API"),
            dg.TableColumn("chunks", "int", description="chunks committed, each one ArcticDB version"),
            dg.TableColumn("retries", "int", description="requests repeated after a transient failure"),
            dg.TableColumn("first_written", "string"),
            dg.TableColumn("last_written", "string"),
            dg.TableColumn("version", "int", description="ArcticDB version after this run (-1: none)"),
            dg.TableColumn("error", "string"),
        ]
    )
    return dg.MetadataValue.table(records, schema=schema)


def _sources_table(results: list[SeriesResult]) -> dg.TableMetadataValue:
    """Where each fetched span came from: runs of archive files as one row, each REST span with its reason."""
    records = []
    for r in results:
        runs: list[list] = []  # [span of the run, files, candles]
        for span, count in r.sources:
            last = runs[-1] if runs else None
            if last and last[0].source == span.source and (span.source == "archive" or last[0].reason == span.reason):
                last[0] = Span(last[0].start, span.end, span.source, last[0].reason)
                last[1].append(span.reason)
                last[2] += count
            else:
                runs.append([span, [span.reason], count])
        for span, reasons, count in runs:
            many = span.source == "archive" and len(reasons) > 1
            detail = f"{len(reasons)} files: {reasons[0]} .. {reasons[-1]}" if many else reasons[0]
            records.append(dg.TableRecord({
                "pair": r.pair, "timeframe": r.timeframe, "type": r.candle_type, "from": span.start.isoformat(),
                "to": span.end.isoformat(), "source": span.source, "candles": count, "detail": detail,
            }))
    schema = dg.TableSchema(columns=[
        dg.TableColumn("pair", "string"),
        dg.TableColumn("timeframe", "string"),
        dg.TableColumn("type", "string"),
        dg.TableColumn("from", "string"),
        dg.TableColumn("to", "string", description="exclusive"),
        dg.TableColumn("source", "string", description="archive (the exchange's public data files) or rest"),
        dg.TableColumn("candles", "int", description="rows received for the span"),
        dg.TableColumn("detail", "string", description="the archive files, or why the span came from REST"),
    ])
    return dg.MetadataValue.table(records, schema=schema)


RUN_TABLES = ("series", "sources", "data_versions", "retries_by_cause")
"""Metadata of the whole run, on the materialization of its newest partition only."""


def build_ohlcv_asset(entry: UniverseEntry) -> dg.AssetsDefinition:
    end = None if entry.end is None else entry.end.isoformat()
    partitions = dg.DailyPartitionsDefinition(start_date=entry.start.isoformat(), end_date=end, timezone="UTC")
    series_text = ", ".join(f"{tf} {ct}" for _, tf, ct in entry.series(entry.pairs[:1]))

    @dg.asset(
        key=ohlcv_key(entry),
        group_name=GROUP,
        kinds={"ccxt", "arcticdb"},
        partitions_def=partitions,
        # A backfill of any range is one run: candles are paged in bulk and written once per series.
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=ohlcv_pool(entry),
        # The UI's freshness: the newest sync at most the universe's max_age ago (the `fresh` check
        # judges the newest candle instead).
        freshness_policy=None if entry.max_age is None else dg.FreshnessPolicy.time_window(
            fail_window=timeframe_delta(entry.max_age).to_pytimedelta()),
        description=(
            f"Candles of {entry.exchange} {entry.market_type} ({series_text}) for {len(entry.pairs)} pairs, "
            "in ArcticDB, one symbol per pair, timeframe and candle type. A partition is a UTC day; "
            "materialising one fetches only what follows the last stored candle and never stores the "
            "still-open candle."
        ),
        metadata={"pairs": dg.MetadataValue.json(entry.pairs), "arcticdb_library": f"ohlcv.{entry.exchange}.{entry.market_type}"},
    )
    def ohlcv(context: dg.AssetExecutionContext, config: CandleSyncConfig, arctic: ArcticStore, exchange: ExchangeResource):
        start, stop = partition_window(context)
        pairs = config.pairs or entry.pairs
        unknown = sorted(set(pairs) - set(entry.pairs))
        if unknown:
            raise dg.Failure(
                f"pairs {', '.join(unknown)} are not in the universe for {entry.exchange} {entry.market_type}; "
                f"add them to {entry.exchange} {entry.market_type} in the universe file first"
            )
        # Read, merge and write under the library's writer lock: nothing else changes these symbols meanwhile.
        with arctic.candle_writer(entry.exchange, entry.market_type, on_wait=context.log.info):
            results = []
            for pair, tf, ct in entry.series(pairs):
                symbol = candle_symbol(pair, tf, ct)
                stored = arctic.read_candles(entry.exchange, entry.market_type, symbol, start, stop)
                stored = empty_candles(ct) if stored is None else stored
                recorded = arctic.candle_metadata(entry.exchange, entry.market_type, symbol).get("archive_files", {})
                results.append(SeriesResult(pair, tf, ct, frame=stored, stored=stored, archive_files=recorded))

            import_dir = config.import_dir or entry.import_dir
            use_import = config.source == "import" or (config.source == "auto" and import_dir is not None)
            if use_import:
                if import_dir is None:
                    raise dg.Failure("source 'import' needs import_dir in the run config or the universe")
                _read_from_directory(context, Path(import_dir), results, start, stop)
                _write_imported(entry, arctic, results, start, stop)
                extra = {}
            else:
                extra = _sync_from_exchange(context, entry, arctic, exchange, results, start, stop, config.refetch)

        failed = [r for r in results if r.error]
        metadata = {
            "window_start": start.isoformat(),
            "window_end": stop.isoformat(),
            "series": _series_table(results),
            "new_candles": sum(r.written for r in results),
            "invalid_candles_dropped": sum(int(r.clean_report.get("invalid_dropped", 0)) for r in results),
            "data_versions": dg.MetadataValue.json(
                {candle_symbol(r.pair, r.timeframe, r.candle_type): r.version for r in results if r.version is not None}
            ),
            "source": f"import {import_dir}" if use_import else f"{entry.exchange} via ccxt",
        }
        if not use_import:
            sources = sorted({"rest", *(s for r in results for s in r.by_source)})
            metadata |= {f"candles_from_{s}": sum(r.by_source.get(s, 0) for r in results) for s in sources}
            metadata |= {"chunks_committed": sum(r.chunks for r in results), "sources": _sources_table(results), **extra}
        if failed:
            what = "file(s) could not be imported" if use_import else "series failed for good"
            raise dg.Failure(
                f"{len(failed)} {what} ({', '.join(sorted({r.pair for r in failed}))}); "
                "the other series were stored:\n" + "\n".join(r.error for r in failed),
                metadata=metadata,
            )
        # Dagster records one materialization per partition of the run, each with its own copy of the
        # metadata: the counts go on every one, the run's tables only on its newest partition, the one
        # the asset's page shows as latest (serialising them 366 times made a year's backfill slower).
        tables = {k: metadata.pop(k) for k in RUN_TABLES if k in metadata}
        context.add_asset_metadata(tables, partition_key=context.partition_keys[-1])
        return dg.MaterializeResult(metadata=metadata)

    return ohlcv


# Candle checks -------------------------------------------------------------------------------------


def _read_all_series(arctic: ArcticStore, entry: UniverseEntry) -> dict[tuple[str, str, str], pd.DataFrame]:
    wanted = set(entry.series())
    out = {}
    for symbol in arctic.candle_symbols(entry.exchange, entry.market_type):
        key = parse_candle_symbol(symbol)
        if key in wanted:
            out[key] = arctic.read_candles(entry.exchange, entry.market_type, symbol)
    return out


CHECK_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("pair", "string"),
        dg.TableColumn("timeframe", "string"),
        dg.TableColumn("type", "string"),
        dg.TableColumn("candles", "int"),
        dg.TableColumn("found", "int", description="duplicates, missing or bad candles"),
        dg.TableColumn("detail", "string"),
    ]
)


def _check_table(rows: list[tuple[tuple[str, str, str], int, int, str]]) -> dg.TableMetadataValue:
    records = [
        dg.TableRecord({"pair": k[0], "timeframe": k[1], "type": k[2], "candles": n, "found": f, "detail": d})
        for k, n, f, d in rows
    ]
    return dg.MetadataValue.table(records, schema=CHECK_SCHEMA)


def missing_candles_report(
    series: dict[tuple[str, str, str], pd.DataFrame],
) -> list[tuple[tuple[str, str, str], int, int, str, int]]:
    """Per OHLCV series: (key, candles, missing, where, largest gap).

    Missing candles are holes inside a series, plus candles at its end that series of the same
    timeframe and type in the same market have: a pair that stops early is missing its tail."""
    newest: dict[tuple[str, str], pd.Timestamp] = {}
    for (pair, tf, ct), frame in series.items():
        if ct != "funding_rate" and not frame.empty:
            newest[(tf, ct)] = max(newest.get((tf, ct), frame.index[-1]), frame.index[-1])
    rows = []
    for key, frame in sorted(series.items()):
        pair, tf, ct = key
        if ct == "funding_rate" or frame.empty:
            continue
        gaps = find_gaps(pd.DatetimeIndex(frame.index), tf)
        missing = sum(g.missing for g in gaps)
        where = [f"{g.missing} after {g.after.isoformat()}" for g in sorted(gaps, key=lambda g: -g.missing)[:5]]
        largest = max((g.missing for g in gaps), default=0)
        tail = int((newest[(tf, ct)] - frame.index[-1]) / timeframe_delta(tf))
        if tail:
            missing += tail
            largest = max(largest, tail)
            where.append(f"{tail} at the end (series stops at {frame.index[-1].isoformat()})")
        rows.append((key, len(frame), missing, "; ".join(where), largest))
    return rows


def build_ohlcv_checks(entry: UniverseEntry) -> dg.AssetChecksDefinition:
    key = ohlcv_key(entry)
    specs = [
        dg.AssetCheckSpec("no_duplicate_candles", asset=key, blocking=True,
                          description="No timestamp appears twice in a series."),
        dg.AssetCheckSpec("no_missing_candles", asset=key,
                          description=f"Missing candles per series at most {entry.max_missing_candles}; "
                          "reports count, largest gap and where."),
        dg.AssetCheckSpec("ohlc_sanity", asset=key, blocking=True,
                          description="low <= open, close <= high; prices > 0; volume >= 0; no NaN."),
        dg.AssetCheckSpec("monotonic_utc_index", asset=key, blocking=True,
                          description="Index is UTC and strictly increasing."),
    ]
    if entry.max_age is not None:
        specs.append(dg.AssetCheckSpec("fresh", asset=key, description=f"Newest candle at most {entry.max_age} old."))

    @dg.multi_asset_check(specs=specs, name=f"ohlcv_{entry.name}_checks", can_subset=True)
    def ohlcv_checks(context: dg.AssetCheckExecutionContext, arctic: ArcticStore):
        from tradai_core.candles import invalid_reasons

        series = _read_all_series(arctic, entry)
        selected = {k.name for k in context.selected_asset_check_keys}

        def result(name: str, passed: bool, severity: dg.AssetCheckSeverity, **metadata) -> dg.AssetCheckResult:
            return dg.AssetCheckResult(asset_key=key, check_name=name, passed=passed, severity=severity, metadata=metadata)

        if "no_duplicate_candles" in selected:
            rows = []
            for k, frame in sorted(series.items()):
                dup = frame.index[frame.index.duplicated()]
                rows.append((k, len(frame), len(dup), ", ".join(t.isoformat() for t in dup[:5])))
            total = sum(r[2] for r in rows)
            yield result("no_duplicate_candles", total == 0, dg.AssetCheckSeverity.ERROR,
                         duplicates=total, series=_check_table(rows))

        if "no_missing_candles" in selected:
            report = missing_candles_report(series)
            over = [r for r in report if r[2] > entry.max_missing_candles]
            yield result(
                "no_missing_candles", not over, dg.AssetCheckSeverity.WARN,
                missing_candles=sum(r[2] for r in report),
                largest_gap_candles=max((r[4] for r in report), default=0),
                series_over_tolerance=len(over),
                tolerance=entry.max_missing_candles,
                series=_check_table([r[:4] for r in report]),
            )

        if "ohlc_sanity" in selected:
            rows = []
            for k, frame in sorted(series.items()):
                reasons = invalid_reasons(frame, k[2])
                bad = reasons[reasons != ""]
                rows.append((k, len(frame), len(bad), "; ".join(f"{t.isoformat()}: {w}" for t, w in bad.head(5).items())))
            total = sum(r[2] for r in rows)
            yield result("ohlc_sanity", total == 0, dg.AssetCheckSeverity.ERROR, bad_candles=total, series=_check_table(rows))

        if "monotonic_utc_index" in selected:
            rows = []
            for k, frame in sorted(series.items()):
                index = pd.DatetimeIndex(frame.index)
                problems = []
                if str(index.tz) != "UTC":
                    problems.append(f"timezone {index.tz}")
                if not index.is_monotonic_increasing:
                    problems.append("not increasing")
                rows.append((k, len(frame), len(problems), ", ".join(problems)))
            bad = sum(1 for r in rows if r[2])
            yield result("monotonic_utc_index", bad == 0, dg.AssetCheckSeverity.ERROR, bad_series=bad, series=_check_table(rows))

        if "fresh" in selected and entry.max_age is not None:
            limit = timeframe_delta(entry.max_age)
            now = pd.Timestamp.now(tz="UTC")
            rows = []
            for k, frame in sorted(series.items()):
                age = now - frame.index[-1] if not frame.empty else None
                stale = age is None or age > limit
                rows.append((k, len(frame), int(stale), "empty" if age is None else f"newest {frame.index[-1].isoformat()}, age {age}"))
            missing_series = sorted(set(entry.series()) - set(series))
            rows += [(k, 0, 1, "never stored") for k in missing_series]
            stale_count = sum(r[2] for r in rows)
            yield result("fresh", stale_count == 0, dg.AssetCheckSeverity.WARN, stale_series=stale_count,
                         max_age=entry.max_age, series=_check_table(rows))

    return ohlcv_checks


# Jobs and schedules --------------------------------------------------------------------------------


def build_sync_job(entry: UniverseEntry) -> UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        f"sync_{entry.name}",
        selection=dg.AssetSelection.assets(ohlcv_key(entry)),
        description=f"Fetch new {entry.exchange} {entry.market_type} candles and run their checks.",
        # Sized for ECS, and counted against the run queue's one-run-per-exchange limit.
        tags={**aws_contract.ecs_run_tags("sync"), aws_contract.EXCHANGE_TAG: entry.exchange},
    )


def build_sync_schedule(entry: UniverseEntry, job: UnresolvedAssetJobDefinition, running: bool) -> dg.ScheduleDefinition:
    """Hourly: one run over yesterday and today, which fetches only candles after the last stored one."""

    @dg.schedule(
        name=f"sync_{entry.name}_hourly",
        cron_schedule="7 * * * *",
        job=job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
        description=f"Keeps {entry.exchange} {entry.market_type} candles fresh.",
    )
    def sync_schedule(context: dg.ScheduleEvaluationContext):
        today = context.scheduled_execution_time.astimezone(dt.UTC).date()
        first = max(today - dt.timedelta(days=1), entry.start)
        if entry.end is not None and today >= entry.end:
            return dg.SkipReason(f"{entry.exchange} {entry.market_type} ends on {entry.end}: nothing to sync")
        return dg.RunRequest(
            run_key=f"{entry.name}-{context.scheduled_execution_time.isoformat()}",
            tags={ASSET_PARTITION_RANGE_START_TAG: first.isoformat(), ASSET_PARTITION_RANGE_END_TAG: today.isoformat()},
        )

    return sync_schedule


def build_markets_refresh(entries: list[UniverseEntry], running: bool) -> tuple[UnresolvedAssetJobDefinition, dg.ScheduleDefinition]:
    job = dg.define_asset_job(
        "refresh_markets",
        selection=dg.AssetSelection.assets(*[markets_key(e) for e in entries]),
        description="Store a new markets snapshot for every exchange whose market rules changed.",
        tags=aws_contract.ecs_run_tags("sync"),
    )
    schedule = dg.ScheduleDefinition(
        name="refresh_markets_daily",
        cron_schedule="17 0 * * *",
        job=job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
    )
    return job, schedule


@dataclass
class MarketData:
    assets: list[dg.AssetsDefinition]
    checks: list[dg.AssetChecksDefinition]
    jobs: list[UnresolvedAssetJobDefinition]
    schedules: list[dg.ScheduleDefinition]


def build_market_data(entries: list[UniverseEntry], schedules_running: bool) -> MarketData:
    out = MarketData([], [], [], [])
    for entry in entries:
        out.assets += [build_markets_asset(entry), build_ohlcv_asset(entry)]
        out.checks.append(build_ohlcv_checks(entry))
        job = build_sync_job(entry)
        out.jobs.append(job)
        out.schedules.append(build_sync_schedule(entry, job, schedules_running))
    job, schedule = build_markets_refresh(entries, schedules_running)
    out.jobs.append(job)
    out.schedules.append(schedule)
    return out
