"""A writer killed in the middle of a write leaves the previous version whole, and the next run recovers."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from resources.arctic import ArcticStore
from resources.exchange import ExchangeResource
from tests.market_data_support import REPO, SAMPLE, SAMPLE_DATA, MarketDataLocation, check_results, write_universe
from tests.write_forever import ROWS
from tradai_core.candles import candle_symbol


@pytest.mark.parametrize("delay", [0.2, 0.7, 1.3])
def test_killed_writer_leaves_a_whole_version(tmp_path, delay):
    uri = f"lmdb://{tmp_path / 'arctic'}"
    writer = subprocess.Popen([sys.executable, "-m", "tests.write_forever", uri], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().startswith("writing 1")
        assert writer.stdout.readline().startswith("writing 2")  # version 1 is complete
        time.sleep(delay)
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()

    store = ArcticStore(uri=uri)
    frame = store.read_candles("binance", "spot", "BIG/USDT|1m|spot")
    assert len(frame) == ROWS
    assert frame["close"].nunique() == 1, "a version mixes two writes"
    assert frame.index.is_monotonic_increasing and frame.index.is_unique


def test_import_after_a_killed_import_completes_the_store(tmp_path, instance):
    universe = write_universe(tmp_path / "u.yaml", [{
        "exchange": "binance", "market_type": "spot", "pairs": ["ADA/BTC", "ETH/BTC", "TRX/BTC"],
        "timeframes": ["5m"], "start": "2018-01-10", "end": "2018-01-31", "import_dir": str(SAMPLE_DATA),
        "markets_file": str(SAMPLE / "markets" / "binance-spot.json"),
    }])
    uri = f"lmdb://{tmp_path / 'arctic'}"
    home = tmp_path / "dagster"
    home.mkdir()
    # The run kills itself right after its first candle write: one pair stored, two not yet.
    killed = subprocess.run(
        [sys.executable, "-m", "tests.run_market_data", str(tmp_path / "u.yaml"), uri, "binance_spot",
         "2018-01-10", "2018-01-30"],
        cwd=REPO, env={**os.environ, "DAGSTER_HOME": str(home), "KILL_AFTER_WRITES": "1"},
        capture_output=True, text=True, timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    location = MarketDataLocation(universe, ArcticStore(uri=uri))
    assert len(location.arctic.candle_symbols("binance", "spot")) == 1
    result = location.ohlcv("binance_spot", instance, "2018-01-10", "2018-01-30")
    assert result.success
    checks = check_results(result)
    assert checks["no_duplicate_candles"].passed and checks["monotonic_utc_index"].passed
    for pair in ["ADA/BTC", "ETH/BTC", "TRX/BTC"]:
        stored = location.arctic.read_candles("binance", "spot", f"{pair}|5m|spot")
        source = pd.read_feather(SAMPLE_DATA / f"{pair.replace('/', '_')}-5m.feather").set_index("date")
        pd.testing.assert_frame_equal(stored, source, check_freq=False, check_names=False)


def test_backfill_killed_at_a_random_point_resumes_repeating_at_most_one_chunk_per_pair(tmp_path, fake_binance_clean, instance):
    fake = fake_binance_clean
    fake.control(now_ms="2024-03-01T00:00:30Z")
    pairs = ["ETH/BTC", "LTC/BTC", "ZEC/BTC"]
    settings = {"max_retries": 0, "candles_per_request": 500, "pages_per_chunk": 2}
    chunk = settings["candles_per_request"] * settings["pages_per_chunk"]
    universe_file = tmp_path / "u.yaml"
    universe = write_universe(universe_file, [{
        "exchange": "binance", "market_type": "spot", "pairs": pairs, "timeframes": ["5m"], "start": "2024-02-01",
        "ccxt_config": {"urls": fake.ccxt_config()["urls"]}, "archive_url": None,
    }])
    reference = MarketDataLocation(universe, ArcticStore(uri=f"lmdb://{tmp_path / 'reference'}"), ExchangeResource(**settings))
    assert reference.ohlcv("binance_spot", instance, "2024-02-01", "2024-02-14").success
    total = fake.candles_served()  # 3 pairs x 4,032 candles, 5 chunks each
    fake.reset()
    fake.control(now_ms="2024-03-01T00:00:30Z")

    uri = f"lmdb://{tmp_path / 'arctic'}"
    home = tmp_path / "dagster"
    home.mkdir()
    kill_at = random.Random().randint(total // 10, total * 9 // 10)  # candles served before the kill
    backfill = subprocess.Popen(
        [sys.executable, "-m", "tests.run_market_data", str(universe_file), uri, "binance_spot", "2024-02-01", "2024-02-14"],
        cwd=REPO, env={**os.environ, "DAGSTER_HOME": str(home), "EXCHANGE_SETTINGS": json.dumps(settings)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while fake.candles_served() < kill_at and backfill.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        os.kill(backfill.pid, signal.SIGKILL)
        stderr = backfill.communicate()[1]
    assert backfill.returncode == -signal.SIGKILL, stderr[-2000:]
    served_before_kill = fake.candles_served()

    store = ArcticStore(uri=uri)
    survived = 0
    for pair in pairs:  # whole chunks only, each exactly the reference's candles
        kept = store.read_candles("binance", "spot", candle_symbol(pair, "5m", "spot"))
        if kept is None:
            continue
        expected = reference.arctic.read_candles("binance", "spot", candle_symbol(pair, "5m", "spot"))
        assert len(kept) % chunk == 0 or len(kept) == len(expected)
        pd.testing.assert_frame_equal(kept, expected.iloc[: len(kept)])
        survived += len(kept)

    fake.reset()
    fake.control(now_ms="2024-03-01T00:00:30Z")
    location = MarketDataLocation(universe, store, ExchangeResource(**settings))
    result = location.ohlcv("binance_spot", instance, "2024-02-01", "2024-02-14")
    assert result.success
    # What the killed run and the re-run fetched together beyond one uninterrupted run:
    repeated = served_before_kill + fake.candles_served() - total
    assert 0 <= repeated <= chunk, (kill_at, survived, repeated)  # one series is in flight at a time
    for pair in pairs:
        pd.testing.assert_frame_equal(
            store.read_candles("binance", "spot", candle_symbol(pair, "5m", "spot")),
            reference.arctic.read_candles("binance", "spot", candle_symbol(pair, "5m", "spot")),
        )
    assert check_results(result)["no_duplicate_candles"].passed
