"""Several processes backfilling one library at once: every candle ends up stored, because the
shipped instance config lets one writer at a time into a library's pool."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef
import numpy as np
import pandas as pd

from resources.arctic import ArcticStore, candle_symbol
from tests.market_data_support import REPO, write_universe

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

    # The runs overlapped in time, but their writing steps did not.
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        runs, steps = [], []
        for out, _ in outputs:
            run_id = out.strip().splitlines()[-1]
            records = instance.get_records_for_run(run_id).records
            times = {}
            for record in records:
                event = record.event_log_entry.dagster_event
                if event is not None and event.step_key and event.step_key.startswith("ohlcv"):
                    times.setdefault(event.event_type_value, record.event_log_entry.timestamp)
            steps.append((times["STEP_START"], times["STEP_SUCCESS"]))
            stats = instance.get_run_stats(run_id)
            runs.append((stats.start_time, stats.end_time))
    runs.sort()
    assert any(later[0] < earlier[1] for earlier, later in zip(runs, runs[1:])), "runs never overlapped"
    steps.sort()
    for earlier, later in zip(steps, steps[1:]):
        assert later[0] >= earlier[1], f"two writers at once: {earlier} and {later}"
