"""Market-data benchmarks against the local simulated exchange (simulator/binance.py) and ArcticDB on LMDB.

    .venv/bin/python -m bench.market_data ingest        # 10 pairs x 1 year of 1m candles: ours over bare ccxt
    .venv/bin/python -m bench.market_data incremental   # one new day into a 3-year store over into an empty one
    .venv/bin/python -m bench.market_data faults        # the sample pairs with 20% and 50% of requests failing
    .venv/bin/python -m bench.market_data kill          # kill -9 of a backfill at a random point, then the re-run

Rate limiting is off for both sides of a comparison (the local exchange has no limit), so the figures
measure our storage and bookkeeping, not ccxt's throttle.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import ClassVar

import dagster as dg
import pandas as pd
import yaml
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from bench.common import REPO, compute_seconds, load_average, report, synthetic_candles
from resources.arctic import ArcticStore
from resources.exchange import ExchangeResource
from tests.fakes.client import FakeBinance
from tradai_assets.market_data import build_market_data, ohlcv_key
from tradai_core.candles import candle_symbol
from tradai_core.universe import load_universe

PAIRS = ["ADA/BTC", "DASH/BTC", "ETC/BTC", "ETH/BTC", "LTC/BTC", "NXT/BTC", "TRX/BTC", "XLM/BTC", "XMR/BTC", "ZEC/BTC"]


def ccxt_settings(fake: FakeBinance) -> dict:
    return {"urls": fake.ccxt_config()["urls"], "enableRateLimit": False, "timeout": 30000}


def run_sync(workdir: Path, fake: FakeBinance, uri: str, start: str, first: str, last: str, split: bool = False):
    universe_file = workdir / f"universe-{time.monotonic_ns()}.yaml"
    universe_file.write_text(yaml.safe_dump({"markets": [
        {"exchange": "binance", "market_type": "spot", "pairs": PAIRS, "timeframes": ["1m"], "start": start,
         "archive_url": None}
    ]}))
    entries = load_universe(universe_file).markets
    built = build_market_data(entries, schedules_running=False)
    defs = dg.Definitions(
        assets=built.assets,
        resources={"arctic": ArcticStore(uri=uri),
                   "exchange": ExchangeResource(ccxt_config={"binance": ccxt_settings(fake)})},
    )
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        started = time.perf_counter()
        result = job.execute_in_process(
            instance=instance, asset_selection=[ohlcv_key(entries[0])],
            tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
        )
        elapsed = time.perf_counter() - started
        compute = compute_seconds(instance, result.run_id)
    assert result.success
    return (elapsed, compute) if split else elapsed


def bare_ccxt_fetch(fake: FakeBinance, since: pd.Timestamp, until: pd.Timestamp) -> tuple[float, int]:
    import ccxt

    exchange = ccxt.binance(ccxt_settings(fake))
    exchange.load_markets()
    started = time.perf_counter()
    total = 0
    end_ms = int(until.timestamp() * 1000)
    for pair in PAIRS:
        cursor = int(since.timestamp() * 1000)
        while cursor < end_ms:
            page = exchange.fetch_ohlcv(pair, "1m", cursor, 1000)
            page = [row for row in page if row[0] < end_ms]
            if not page:
                break
            total += len(page)
            cursor = page[-1][0] + 60_000
    return time.perf_counter() - started, total


def ingest(workdir: Path) -> str:
    # Alternating rounds, best of each side: the machine's other load hits both alike.
    bares, ours_times = [], []
    load_before = load_average()
    with FakeBinance(now_ms="2025-01-01T00:00:30Z") as fake:
        for round_ in range(2):
            bare, candles = bare_ccxt_fetch(fake, pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2025-01-01", tz="UTC"))
            bares.append(bare)
            ours_times.append(run_sync(workdir, fake, f"lmdb://{workdir / f'ingest{round_}'}", "2024-01-01", "2024-01-01",
                                       "2024-12-31", split=True))
    bare = min(bares)
    ours, ours_compute = min(ours_times)
    store = ArcticStore(uri=f"lmdb://{workdir / 'ingest0'}")
    stored = sum(len(store.read_candles("binance", "spot", candle_symbol(p, "1m", "spot"))) for p in PAIRS)
    assert stored == candles, (stored, candles)
    return report(
        "Ingestion: 10 pairs x 1 year of 1m candles from the local exchange into ArcticDB (goal <= 1.10)",
        "python -m bench.market_data ingest",
        [
            f"{candles:,} candles; our backfill (one Dagster run over 366 daily partitions: "
            f"fetch, clean, ArcticDB write; the checks are a separate step, not timed) over a bare ccxt "
            f"fetch_ohlcv loop of the same candles: "
            f"**{ours / bare:.3f}**",
            f"best of 2 alternating rounds; ours {candles / ours:,.0f} candles/s, bare ccxt {candles / bare:,.0f} candles/s "
            "(rate limiting off on both); all rounds (s): bare "
            + ", ".join(f"{t:.1f}" for t in bares)
            + "; ours "
            + ", ".join(f"{t:.1f} (asset's own work {c:.1f})" for t, c in ours_times),
            (
                "the asset's own work only (step start to its first materialization, without the run's start and "
                f"Dagster's 366 per-partition events) over bare ccxt: **{ours_compute / bare:.3f}**"
            ),
            f"load average (1, 5, 15 min) before {load_before}, after {load_average()}: the machine is shared",
        ],
    )


def incremental(workdir: Path) -> str:
    day = "2024-06-01"
    full_uri, empty_uri = f"lmdb://{workdir / 'full'}", f"lmdb://{workdir / 'empty'}"
    full = ArcticStore(uri=full_uri)
    periods = 3 * 365 * 1440
    history_start = pd.Timestamp(day, tz="UTC") - pd.Timedelta(minutes=periods)
    for i, pair in enumerate(PAIRS):  # three years of candles up to the day before
        frame = synthetic_candles(i, str(history_start), periods, "1min")
        full.replace_window("binance", "spot", candle_symbol(pair, "1m", "spot"), frame,
                            frame.index[0], frame.index[-1] + pd.Timedelta(minutes=1), {})
    with FakeBinance(now_ms="2024-06-02T00:00:30Z") as fake:
        into_empty, into_full = [], []
        for _ in range(3):
            ArcticStore(uri=empty_uri).arctic.delete_library("ohlcv.binance.spot")
            into_empty.append(run_sync(workdir, fake, empty_uri, "2021-01-01", day, day))
            for pair in PAIRS:  # the day itself is new every round
                full.library("ohlcv.binance.spot").delete_data_in_range(
                    candle_symbol(pair, "1m", "spot"), (pd.Timestamp(day, tz="UTC"), None))
            into_full.append(run_sync(workdir, fake, full_uri, "2021-01-01", day, day))
    rows = sum(len(full.read_candles("binance", "spot", candle_symbol(p, "1m", "spot"))) for p in PAIRS)
    return report(
        "Incremental sync: one new day into a store holding 3 years, over the same into an empty store (goal <= 1.5)",
        "python -m bench.market_data incremental",
        [
            f"10 pairs of 1m candles; the full store holds {rows:,} rows after the sync",
            f"best of 3, one process: **{min(into_full) / min(into_empty):.3f}** "
            f"(median {sorted(into_full)[1] / sorted(into_empty)[1]:.3f})",
        ],
    )


SAMPLE_DATA = REPO / "tradai_assets" / "sample" / "data" / "binance"


class WaitRecordingExchange(ExchangeResource):
    """Waits for real, and adds up how long: wall time with faults is mostly the waits asked."""

    waited: ClassVar[list[float]] = []

    def sleep(self, seconds: float) -> None:
        self.waited.append(seconds)
        time.sleep(seconds)


def sample_backfill(workdir: Path, fake: FakeBinance, uri: str, settings: dict, exchange_class=ExchangeResource):
    """The 10 sample pairs, January 2018, 5m, from the local exchange serving the sample's candles."""
    universe_file = workdir / f"universe-{time.monotonic_ns()}.yaml"
    universe_file.write_text(yaml.safe_dump({"markets": [
        {"exchange": "binance", "market_type": "spot", "pairs": PAIRS, "timeframes": ["5m"], "start": "2018-01-01",
         "ccxt_config": {"urls": fake.ccxt_config()["urls"], "timeout": 2000}, "archive_url": None}
    ]}))
    entries = load_universe(universe_file).markets
    built = build_market_data(entries, schedules_running=False)
    defs = dg.Definitions(assets=built.assets, resources={"arctic": ArcticStore(uri=uri), "exchange": exchange_class(**settings)})
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        started = time.perf_counter()
        result = job.execute_in_process(
            instance=instance, asset_selection=[ohlcv_key(entries[0])], raise_on_error=False,
            tags={ASSET_PARTITION_RANGE_START_TAG: "2018-01-01", ASSET_PARTITION_RANGE_END_TAG: "2018-01-31"},
        )
        elapsed = time.perf_counter() - started
        events = [m for m in result.get_asset_materialization_events()]
        meta = {k: v.value for k, v in events[-1].materialization.metadata.items()} if events else {}
    return result.success, elapsed, meta, universe_file


def sample_candles(uri: str) -> dict[str, pd.DataFrame]:
    store = ArcticStore(uri=uri)
    return {p: store.read_candles("binance", "spot", candle_symbol(p, "5m", "spot")) for p in PAIRS}


def faults(workdir: Path) -> str:
    settings = {"max_retries": 10, "backoff_seconds": 0.1, "max_backoff_seconds": 2.0}
    lines = []
    with FakeBinance(data_dir=SAMPLE_DATA, now_ms="2026-01-01") as fake:
        sample_backfill(workdir, fake, f"lmdb://{workdir / 'warm-up'}", settings)  # imports and first-run costs
        fake.reset()
        ok, clean_time, meta, _ = sample_backfill(workdir, fake, f"lmdb://{workdir / 'clean'}", settings)
        assert ok and meta["retries"] == 0
        expected = sample_candles(f"lmdb://{workdir / 'clean'}")
        candles = sum(len(f) for f in expected.values())
        clean_requests = fake.requests_made()
        lines.append(f"fault-free: {candles:,} candles, {clean_requests} requests, {clean_time:.1f} s")
        for chance in (0.2, 0.5):
            fake.reset()
            fake.add_rule(chance=chance, seed=2026, mix="binance")
            WaitRecordingExchange.waited.clear()
            uri = f"lmdb://{workdir / f'faults{int(chance * 100)}'}"
            ok, elapsed, meta, _ = sample_backfill(workdir, fake, uri, settings, WaitRecordingExchange)
            got = sample_candles(uri)
            identical = ok and all(got[p].equals(expected[p]) for p in PAIRS)
            waited = sum(WaitRecordingExchange.waited)
            lines.append(
                f"{chance:.0%} of requests faulty: identical candles **{identical}**, {meta.get('retries')} retries "
                f"({meta.get('retries_by_cause')}), {fake.requests_made()} requests; wall time "
                f"**{elapsed / clean_time:.2f}x** fault-free ({elapsed:.1f} s, of which {waited:.1f} s waiting as "
                "asked: Retry-After 1 s on 429, 2 s on 418, backoff from 0.1 s; timeouts 2 s)"
            )
    return report("Fault survival: the sample backfill with 20% and 50% of requests failing as Binance fails, one run",
                  "python -m bench.market_data faults", lines)


def kill(workdir: Path, rounds: int = 3) -> str:
    import json
    import os
    import random
    import signal
    import subprocess

    settings = {"max_retries": 0, "candles_per_request": 1000, "pages_per_chunk": 2}
    lines = []
    with FakeBinance(data_dir=SAMPLE_DATA, now_ms="2026-01-01") as fake:
        ok, _, _, universe_file = sample_backfill(workdir, fake, f"lmdb://{workdir / 'reference'}", settings)
        assert ok
        expected = sample_candles(f"lmdb://{workdir / 'reference'}")
        total = fake.candles_served()
        ids = {pair: pair.replace("/", "") for pair in PAIRS}
        per_pair_total = {pair: fake.candles_served(ids[pair]) for pair in PAIRS}
        shares: list[float] = []
        worst_pair_chunks = 0.0
        for round_ in range(rounds):
            fake.reset()
            uri = f"lmdb://{workdir / f'killed{round_}'}"
            home = workdir / f"dagster{round_}"
            home.mkdir()
            kill_at = random.Random().randint(total // 10, total * 9 // 10)
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.run_market_data", str(universe_file), uri, "binance_spot", "2018-01-01", "2018-01-31"],
                cwd=REPO, env={**os.environ, "DAGSTER_HOME": str(home), "EXCHANGE_SETTINGS": json.dumps(settings)},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            while fake.candles_served() < kill_at and process.poll() is None:
                time.sleep(0.01)
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            served_before_kill = fake.candles_served()
            killed_per_pair = {pair: fake.candles_served(ids[pair]) for pair in PAIRS}
            survived = sum(len(f) for f in sample_candles(uri).values() if f is not None)
            fake.reset()
            ok, _, meta, _ = sample_backfill(workdir, fake, uri, settings)
            got = sample_candles(uri)
            identical = ok and all(got[p].equals(expected[p]) for p in PAIRS)
            # Work repeated: what the killed run and the re-run fetched together beyond one uninterrupted run.
            repeated = served_before_kill + fake.candles_served() - total
            shares.append(repeated / total)
            by_pair = {pair: killed_per_pair[pair] + fake.candles_served(ids[pair]) - per_pair_total[pair] for pair in PAIRS}
            repeating = {pair: n for pair, n in by_pair.items() if n}
            most = max(by_pair.values()) / 2000
            worst_pair_chunks = max(worst_pair_chunks, most)
            lines.append(
                f"round {round_ + 1}: killed after {served_before_kill:,} of {total:,} candles served, {survived:,} stored; "
                f"re-run fetched {fake.candles_served():,}, repeated {repeated:,} = **{repeated / total:.1%}** of the work "
                f"(one chunk is 2,000 candles = {2000 / total:.1%}); identical to an uninterrupted run: **{identical}**; "
                f"repeated per pair: {', '.join(f'{pair} {n:,}' for pair, n in repeating.items()) or 'none'}, "
                f"at most **{most:.2f}** chunk of one pair"
            )
    lines.append(f"largest share repeated: **{max(shares):.1%}**; most repeated by one pair: **{worst_pair_chunks:.2f}** "
                 "chunk (goal: at most one chunk per pair)")
    lines.insert(0, "10 sample pairs, January 2018, 5m (3 chunks of 2 pages of 1,000 per pair); the backfill runs in its own "
                    "process, killed with SIGKILL once the exchange has served a random share (10-90%) of the candles")
    return report("kill -9 of a backfill at a random point, then the same backfill again",
                  f"python -m bench.market_data kill --rounds {rounds}", lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("which", choices=["ingest", "incremental", "faults", "kill"])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3, help="kill: how many kills at random points")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"bench-{args.which}-"))
    if args.which == "kill":
        print(kill(workdir, args.rounds))
        return
    print({"ingest": ingest, "incremental": incremental, "faults": faults}[args.which](workdir))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
