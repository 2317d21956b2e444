"""Archive ingestion over REST ingestion: 10 pairs x 1 year of 1m candles into ArcticDB, in one run.

    .venv/bin/python -m bench.archive [--market futures|spot] [--throttle product|off]

The same synthetic candles are served twice: as Binance archive files (monthly zips with checksums) by
the local archive server (tests/archive_server.py), and over REST by the local simulated exchange
(simulator/binance.py, given them as its data directory). Each side is one backfill of the
OHLCV asset over 2024; the stores they leave must be identical.

``--throttle product`` (the default) fetches over REST as the product does out of the box: ccxt's own
rate limiter on, with its cost table for Binance (a 1000-candle page costs 0.4 x 50 ms on spot, 5 x
50 ms on USD-M futures), while the simulated exchange enforces Binance's request weights (spot 6,000,
futures 2,400 a minute) and refuses what goes past them. ``--throttle off`` measures the REST path's
own cost against an exchange without limits, which no real exchange is.
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
from bench.market_data import PAIRS
from resources.arctic import ArcticStore
from tradai_core.candles import candle_symbol
from resources.exchange import ExchangeResource
from tests.archive_server import archive_server, write_candles, write_funding
from tests.fakes.client import FakeBinance
from tradai_assets.market_data import build_market_data, ohlcv_key
from tradai_core.universe import load_universe

FUTURES_PAIRS = [f"{base}/USDT:USDT" for base in
                 ("BTC", "ETH", "XRP", "ADA", "LTC", "DOGE", "SOL", "BNB", "DOT", "LINK")]
# As the exchange names each market's files: freqtrade's data directory, the archive's path and symbol.
LAYOUT = {
    "spot": (PAIRS, "{stem}-1m.feather", "spot"),
    "futures": (FUTURES_PAIRS, "{stem}-1m-futures.feather", "futures/um"),
}


def pair_id(pair: str) -> str:
    return pair.split(":")[0].replace("/", "")


def write_inputs(workdir: Path, market: str, days: int) -> int:
    """The candles as the exchange's data directory and as archive files; returns their count."""
    pairs, data_file, archive_market = LAYOUT[market]
    data, archive = workdir / "data", workdir / "archive"
    data.mkdir(parents=True, exist_ok=True)
    total = 0
    for i, pair in enumerate(pairs):
        # Rounded to the 8 decimals REST sends, so both paths deliver the same floats.
        frame = synthetic_candles(i, "2024-01-01", days * 1440, "1min").round(8)
        stem = pair.replace("/", "_").replace(":", "_")
        frame.reset_index().to_feather(data / data_file.format(stem=stem))
        write_candles(archive, archive_market, pair_id(pair), "1m", frame)
        total += len(frame)
        if market == "futures":  # the mark prices and funding rates a futures backtest needs too
            mark = synthetic_candles(100 + i, "2024-01-01", days * 24, "1h").round(8).assign(volume=0.0)  # none traded
            mark.reset_index().to_feather(data / f"{stem}-1h-mark.feather")
            write_candles(archive, archive_market, pair_id(pair), "1h", mark, kind="markPriceKlines")
            funding = synthetic_candles(200 + i, "2024-01-01", days * 3, "8h")
            rates = (funding["open"] * 1e-6).round(8)
            funding = funding.assign(open=rates, high=rates, low=rates, close=rates)
            funding.reset_index().to_feather(data / f"{stem}-8h-funding_rate.feather")
            write_funding(archive, archive_market, pair_id(pair), funding)
            total += len(mark) + len(funding)
    return total


def backfill(
    workdir: Path, fake: FakeBinance, uri: str, archive_url: str | None, market: str, throttle: bool, days: int
) -> tuple[float, float, dict]:
    universe_file = workdir / f"universe-{time.monotonic_ns()}.yaml"
    universe_file.write_text(yaml.safe_dump({"markets": [
        {"exchange": "binance", "market_type": market, "pairs": LAYOUT[market][0], "timeframes": ["1m"],
         "start": "2024-01-01", "archive_url": archive_url}
        | ({"mark_timeframes": ["1h"], "funding_timeframes": ["8h"]} if market == "futures" else {})
    ]}))
    entries = load_universe(universe_file).markets
    built = build_market_data(entries, schedules_running=False)
    # Without "enableRateLimit" the product's default (on) applies.
    settings = {"urls": fake.ccxt_config()["urls"], "timeout": 30000} | ({} if throttle else {"enableRateLimit": False})
    defs = dg.Definitions(
        assets=built.assets,
        resources={"arctic": ArcticStore(uri=uri), "exchange": ExchangeResource(ccxt_config={"binance": settings})},
    )
    job = defs.resolve_implicit_global_asset_job_def()
    key = ohlcv_key(entries[0])
    with dg.instance_for_test() as instance:
        started = time.perf_counter()
        result = job.execute_in_process(
            instance=instance, asset_selection=[key],
            tags={ASSET_PARTITION_RANGE_START_TAG: "2024-01-01",
                  ASSET_PARTITION_RANGE_END_TAG: (pd.Timestamp("2024-01-01") + pd.Timedelta(days=days - 1)).strftime("%Y-%m-%d")},
        )
        elapsed = time.perf_counter() - started
        compute = compute_seconds(instance, result.run_id)
    assert result.success
    event = [m for m in result.get_asset_materialization_events() if m.asset_key == key][-1]
    return elapsed, compute, {k: v.value for k, v in event.materialization.metadata.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--market", choices=sorted(LAYOUT), default="futures")
    parser.add_argument("--throttle", choices=["product", "off"], default="product")
    parser.add_argument("--days", type=int, default=366, help="from 2024-01-01 (a short run to try the bench)")
    args = parser.parse_args()
    market, throttle = args.market, args.throttle == "product"
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-archive-"))
    days = args.days
    candles = write_inputs(workdir, market, days)
    load_before = load_average()
    exchange_config = {"request_weights": True}
    if market == "futures":
        exchange_config["futures"] = [{"symbol": pair, "listed_since": "2020-01-01"} for pair in FUTURES_PAIRS]
    with FakeBinance(config=exchange_config, now_ms="2025-01-20T00:00:30Z", data_dir=workdir / "data") as fake, \
            archive_server(workdir / "archive") as archive_url:
        from_archive, archive_compute, archive_meta = backfill(
            workdir, fake, f"lmdb://{workdir / 'from-archive'}", archive_url, market, throttle, days)
        before = fake.stats()
        started = time.perf_counter()
        from_rest, rest_compute, rest_meta = backfill(
            workdir, fake, f"lmdb://{workdir / 'from-rest'}", None, market, throttle, days)
        after = fake.stats()
    paths = ["/api/v3/klines"] if market == "spot" else ["/fapi/v1/klines", "/fapi/v1/markPriceKlines", "/fapi/v1/fundingRate"]
    pages = sum(after["requests"].get(path, 0) - before["requests"].get(path, 0) for path in paths)
    refused = after["weight_refused"] - before["weight_refused"]
    assert archive_meta["candles_from_archive"] == candles and archive_meta["candles_from_rest"] == 0, archive_meta
    assert rest_meta["candles_from_rest"] == candles
    archived, fetched = ArcticStore(uri=f"lmdb://{workdir / 'from-archive'}"), ArcticStore(uri=f"lmdb://{workdir / 'from-rest'}")
    series = [("1m", market)] + ([("1h", "mark"), ("8h", "funding_rate")] if market == "futures" else [])
    for pair in LAYOUT[market][0]:
        for timeframe, kind in series:
            symbol = candle_symbol(pair, timeframe, kind)
            pd.testing.assert_frame_equal(archived.read_candles("binance", market, symbol),
                                          fetched.read_candles("binance", market, symbol))
    extra = " (with each pair's 1h mark prices and 8h funding rates)" if market == "futures" else ""
    limiter = (
        "ccxt's rate limiter on, as the product ships it, against an exchange enforcing Binance's request weights"
        if throttle else "ccxt's rate limiter off, against an exchange enforcing Binance's request weights"
    )
    print(report(
        f"Archive ingestion: 10 {market} pairs x {days} days of 1m candles from the local archive server over REST from "
        "the local exchange (goal <= 0.05)",
        f"python -m bench.archive --market {market} --throttle {args.throttle}",
        [
            f"{candles:,} synthetic candles; one backfill of the OHLCV asset from 2024-01-01 ({days} daily partitions, one run: "
            "fetch, verify, parse, clean, ArcticDB write; checks not timed) from "
            f"{len(list((workdir / 'archive').rglob('*.zip')))} monthly archive files{extra} over the "
            f"same backfill over REST ({pages:,} requests of up to 1000; {limiter}): "
            f"**{from_archive / from_rest:.3f}**",
            f"archive {candles / from_archive:,.0f} candles/s, REST {candles / from_rest:,.0f} candles/s "
            f"({pages / (time.perf_counter() - started) * 60:,.0f} pages a minute); requests refused for their weight: "
            f"{refused}; REST retries: {rest_meta.get('retries', 0)}; both stores identical",
            (
                "the asset's own work only (step start to its first materialization, without the run's start and "
                f"Dagster's {days} per-partition events): archive over REST **{archive_compute / rest_compute:.3f}**; "
                f"Dagster's share of the run: archive {1 - archive_compute / from_archive:.0%}, "
                f"REST {1 - rest_compute / from_rest:.0%}"
            ),
            f"load average (1, 5, 15 min) before {load_before}, after {load_average()}: the machine is shared",
        ],
    ))


if __name__ == "__main__":
    main()
