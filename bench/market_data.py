"""Market-data benchmarks against the local simulated exchange (resources/local_exchange.py) and ArcticDB on LMDB.

    .venv/bin/python -m bench.market_data ingest        # 10 pairs x 1 year of 1m candles: ours over bare ccxt
    .venv/bin/python -m bench.market_data incremental   # one new day into a 3-year store over into an empty one

Rate limiting is off for both sides of a comparison (the local exchange has no limit), so the figures
measure our storage and bookkeeping, not ccxt's throttle.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import yaml
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from bench.common import REPO, report, synthetic_candles
from resources.arctic import ArcticStore, candle_symbol
from resources.exchange import ExchangeResource
from tests.fakes.client import FakeBinance
from tradai_assets.market_data import build_market_data, ohlcv_key
from tradai_assets.universe import load_universe

PAIRS = ["ADA/BTC", "DASH/BTC", "ETC/BTC", "ETH/BTC", "LTC/BTC", "NXT/BTC", "TRX/BTC", "XLM/BTC", "XMR/BTC", "ZEC/BTC"]


def ccxt_settings(fake: FakeBinance) -> dict:
    return {"urls": fake.ccxt_config()["urls"], "enableRateLimit": False, "timeout": 30000}


def run_sync(workdir: Path, fake: FakeBinance, uri: str, start: str, first: str, last: str) -> float:
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
    assert result.success
    return elapsed


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
    with FakeBinance(now_ms="2025-01-01T00:00:30Z") as fake:
        for round_ in range(2):
            bare, candles = bare_ccxt_fetch(fake, pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2025-01-01", tz="UTC"))
            bares.append(bare)
            ours_times.append(run_sync(workdir, fake, f"lmdb://{workdir / f'ingest{round_}'}", "2024-01-01", "2024-01-01", "2024-12-31"))
    bare, ours = min(bares), min(ours_times)
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
            "(rate limiting off on both)",
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("which", choices=["ingest", "incremental"])
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"bench-{args.which}-"))
    print({"ingest": ingest, "incremental": incremental}[args.which](workdir))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
