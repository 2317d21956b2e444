"""Several processes writing one library at once: every candle ends up stored, because writers of a
candle library hold its writer lock (a file lock on LMDB) around their read-merge-write, on top of
the library's Dagster pool."""

import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from dagster._core.instance.ref import InstanceRef

from resources.arctic import ArcticStore
from tests.market_data_support import REPO, write_universe
from tradai_core.candles import candle_symbol

PAIRS = ["AAA/USDT", "BBB/USDT", "CCC/USDT"]
DAYS = 8


def synthetic_datadir(path: Path) -> dict[str, pd.DataFrame]:
    path.mkdir()
    index = pd.date_range("2024-01-01", periods=DAYS * 1440, freq="1min", tz="UTC")
    frames = {}
    for i, pair in enumerate(PAIRS):
        rng = np.random.default_rng(i)
        close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, len(index))))
        frame = pd.DataFrame(
            {"date": index, "open": close, "high": close * 1.001, "low": close * 0.999, "close": close,
             "volume": rng.uniform(1, 10, len(index))}
        )
        frame.to_feather(path / f"{pair.replace('/', '_')}-1m.feather")
        frames[pair] = frame.set_index("date")
    return frames


def test_parallel_backfills_of_one_library_lose_no_candle(tmp_path):
    frames = synthetic_datadir(tmp_path / "data")
    universe = tmp_path / "universe.yaml"
    write_universe(universe, [{
        "exchange": "binance", "market_type": "spot", "pairs": PAIRS, "timeframes": ["1m"],
        "start": "2024-01-01", "end": "2024-01-09", "import_dir": str(tmp_path / "data"),
    }])
    home = tmp_path / "dagster"
    home.mkdir()
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")  # the shipped pool settings
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))):
        pass  # create the instance's databases once, before the writers race for them
    uri = f"lmdb://{tmp_path / 'arctic'}"
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    ranges = [("2024-01-01", "2024-01-02"), ("2024-01-03", "2024-01-04"), ("2024-01-05", "2024-01-06"),
              ("2024-01-07", "2024-01-08"), ("2024-01-01", "2024-01-08")]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.run_market_data", str(universe), uri, "binance_spot", first, last],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for first, last in ranges
    ]
    outputs = [p.communicate(timeout=600) for p in processes]
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]

    arctic = ArcticStore(uri=uri)
    for pair, expected in frames.items():
        stored = arctic.read_candles("binance", "spot", candle_symbol(pair, "1m", "spot"))
        pd.testing.assert_frame_equal(stored, expected, check_freq=False, check_names=False)

    # The runs overlapped in time (so the writers really raced), and each run stored its candles.
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        runs = []
        for out, _ in outputs:
            run_id = out.strip().splitlines()[-1]
            stats = instance.get_run_stats(run_id)
            runs.append((stats.start_time, stats.end_time))
    runs.sort()
    assert any(later[0] < earlier[1] for earlier, later in zip(runs, runs[1:])), "runs never overlapped"


def _increment(uri: str, rounds: int, log: str) -> None:
    """Read-modify-write of one counter symbol under the writer lock, recording when it held it."""
    arctic = ArcticStore(uri=uri)
    lib = arctic.library("ohlcv.binance.spot")
    for _ in range(rounds):
        with arctic.candle_writer("binance", "spot"):
            entered = time.time()
            value = int(lib.read("counter").data["n"].iloc[0])
            time.sleep(0.01)  # widen the window a lost update would need
            lib.write("counter", pd.DataFrame({"n": [value + 1]}))
            left = time.time()
        with open(log, "a") as handle:
            handle.write(f"{entered} {left}\n")


def test_writer_lock_serialises_processes(tmp_path):
    uri = f"lmdb://{tmp_path / 'arctic'}"
    ArcticStore(uri=uri).library("ohlcv.binance.spot").write("counter", pd.DataFrame({"n": [0]}))
    log = tmp_path / "held.txt"
    workers, rounds = 4, 10
    context = multiprocessing.get_context("spawn")  # fresh processes, each with its own LMDB handle
    processes = [context.Process(target=_increment, args=(uri, rounds, str(log))) for _ in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0

    counter = ArcticStore(uri=uri).library("ohlcv.binance.spot").read("counter").data
    assert int(counter["n"].iloc[0]) == workers * rounds  # no update lost
    held = sorted(tuple(map(float, line.split())) for line in log.read_text().splitlines())
    assert len(held) == workers * rounds
    for earlier, later in zip(held, held[1:]):
        assert later[0] >= earlier[1], f"two holders at once: {earlier} and {later}"


def test_writer_lock_is_released_when_the_block_fails(tmp_path):
    arctic = ArcticStore(uri=f"lmdb://{tmp_path / 'arctic'}")
    with pytest.raises(RuntimeError, match="write failed"):
        with arctic.candle_writer("binance", "spot"):
            raise RuntimeError("write failed")
    waits = []
    with arctic.candle_writer("binance", "spot", on_wait=waits.append):
        pass
    assert waits == []  # taken at once: the failed block let go of it
    # Libraries have their own locks, and the lock files stay out of ArcticDB's way.
    with arctic.candle_writer("binance", "spot"), arctic.candle_writer("binance", "futures", on_wait=waits.append):
        pass
    assert waits == []
    assert arctic.arctic.list_libraries() == []
