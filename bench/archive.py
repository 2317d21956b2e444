"""Archive ingestion over REST ingestion: 10 pairs x 1 year of 1m candles into ArcticDB, in one run.

    .venv/bin/python -m bench.archive

The same synthetic candles are served twice: as Binance archive files (monthly zips with checksums) by
the local archive server (tests/archive_server.py), and over REST by the local simulated exchange
(simulator/binance.py, given them as its data directory). Each side is one backfill of the
OHLCV asset over 2024; the stores they leave must be identical.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import yaml
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from bench.common import compute_seconds, load_average, report, synthetic_candles
from bench.market_data import PAIRS, ccxt_settings
from resources.arctic import ArcticStore
from tradai_core.candles import candle_symbol
from resources.exchange import ExchangeResource
from tests.archive_server import archive_server, write_candles
from tests.fakes.client import FakeBinance
from tradai_assets.market_data import build_market_data, ohlcv_key
from tradai_core.universe import load_universe

YEAR = 366 * 1440  # 2024 in minutes


def write_inputs(workdir: Path) -> int:
    """The candles as the exchange's data directory and as archive files; returns their count."""
    data, archive = workdir / "data", workdir / "archive"
    data.mkdir(parents=True, exist_ok=True)
    for i, pair in enumerate(PAIRS):
        # Rounded to the 8 decimals REST sends, so both paths deliver the same floats.
        frame = synthetic_candles(i, "2024-01-01", YEAR, "1min").round(8)
        frame.reset_index().to_feather(data / f"{pair.replace('/', '_')}-1m.feather")
        write_candles(archive, "spot", pair.replace("/", ""), "1m", frame)
    return len(PAIRS) * YEAR


def backfill(workdir: Path, fake: FakeBinance, uri: str, archive_url: str | None) -> tuple[float, float, dict]:
    universe_file = workdir / f"universe-{time.monotonic_ns()}.yaml"
    universe_file.write_text(yaml.safe_dump({"markets": [
        {"exchange": "binance", "market_type": "spot", "pairs": PAIRS, "timeframes": ["1m"], "start": "2024-01-01",
         "archive_url": archive_url}
    ]}))
    entries = load_universe(universe_file).markets
    built = build_market_data(entries, schedules_running=False)
    defs = dg.Definitions(
        assets=built.assets,
        resources={"arctic": ArcticStore(uri=uri), "exchange": ExchangeResource(ccxt_config={"binance": ccxt_settings(fake)})},
    )
    job = defs.resolve_implicit_global_asset_job_def()
    key = ohlcv_key(entries[0])
    with dg.instance_for_test() as instance:
        started = time.perf_counter()
        result = job.execute_in_process(
            instance=instance, asset_selection=[key],
            tags={ASSET_PARTITION_RANGE_START_TAG: "2024-01-01", ASSET_PARTITION_RANGE_END_TAG: "2024-12-31"},
        )
        elapsed = time.perf_counter() - started
        compute = compute_seconds(instance, result.run_id)
    assert result.success
    event = [m for m in result.get_asset_materialization_events() if m.asset_key == key][-1]
    return elapsed, compute, {k: v.value for k, v in event.materialization.metadata.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-archive-"))
    candles = write_inputs(workdir)
    load_before = load_average()
    with FakeBinance(now_ms="2025-01-20T00:00:30Z", data_dir=workdir / "data") as fake, \
            archive_server(workdir / "archive") as archive_url:
        from_archive, archive_compute, archive_meta = backfill(workdir, fake, f"lmdb://{workdir / 'from-archive'}", archive_url)
        served_before = fake.candles_served()
        from_rest, rest_compute, rest_meta = backfill(workdir, fake, f"lmdb://{workdir / 'from-rest'}", None)
        served = fake.candles_served() - served_before
    assert archive_meta["candles_from_archive"] == candles and archive_meta["candles_from_rest"] == 0
    assert rest_meta["candles_from_rest"] == candles
    archived, fetched = ArcticStore(uri=f"lmdb://{workdir / 'from-archive'}"), ArcticStore(uri=f"lmdb://{workdir / 'from-rest'}")
    for pair in PAIRS:
        symbol = candle_symbol(pair, "1m", "spot")
        pd.testing.assert_frame_equal(archived.read_candles("binance", "spot", symbol), fetched.read_candles("binance", "spot", symbol))
    print(report(
        "Archive ingestion: 10 pairs x 1 year of 1m candles from the local archive server over REST from the local exchange (goal <= 0.05)",
        "python -m bench.archive",
        [
            f"{candles:,} synthetic candles; one backfill of the OHLCV asset over 2024 (366 daily partitions, one run: "
            "fetch, verify, parse, clean, ArcticDB write; checks not timed) from 120 monthly archive files over the "
            f"same backfill over REST ({served:,} candles served in 1000-candle pages): **{from_archive / from_rest:.3f}**",
            f"archive {candles / from_archive:,.0f} candles/s, REST {candles / from_rest:,.0f} candles/s; both stores identical",
            (
                "the asset's own work only (step start to its first materialization, without the run's start and "
                f"Dagster's 366 per-partition events): archive over REST **{archive_compute / rest_compute:.3f}**; "
                f"Dagster's share of the run: archive {1 - archive_compute / from_archive:.0%}, "
                f"REST {1 - rest_compute / from_rest:.0%}"
            ),
            f"load average (1, 5, 15 min) before {load_before}, after {load_average()}: the machine is shared",
        ],
    ))


if __name__ == "__main__":
    main()
