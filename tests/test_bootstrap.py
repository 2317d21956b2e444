"""What `make dev` does before starting the servers: a fresh TRADAI_HOME gets the sample, once."""

import os
import subprocess
import sys

import dagster as dg
from dagster._core.instance.ref import InstanceRef

from tests.market_data_support import REPO


def run_bootstrap(env):
    return subprocess.run([sys.executable, "-m", "tradai_dev.bootstrap"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_first_start_loads_the_sample_with_checks_and_the_second_does_nothing(tradai_home, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    first = run_bootstrap(env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "ohlcv/binance/spot: loaded 2018-01-10..2018-01-30" in first.stdout
    assert "no_missing_candles=WARN" in first.stdout  # the sample's real gaps

    home = tradai_home / "dagster"
    assert (home / "dagster.yaml").read_text() == (REPO / "dagster.yaml").read_text()
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        for key in (["markets", "binance", "spot"], ["ohlcv", "binance", "spot"], ["ohlcv", "binance", "futures"]):
            assert instance.get_latest_materialization_event(dg.AssetKey(key)) is not None

    second = run_bootstrap(env)
    assert second.returncode == 0 and "already loaded" in second.stdout
