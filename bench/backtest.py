"""Backtest benchmarks on 10 pairs x 1 year of synthetic 5m candles (1.05M rows).

    .venv/bin/python -m bench.backtest single      [--workdir DIR]  # our asset over bare Freqtrade's CLI
    .venv/bin/python -m bench.backtest concurrent  [--workdir DIR]  # four strategies, two workers over one
    .venv/bin/python -m bench.backtest mlflow      [--workdir DIR]  # MLflow logging time per backtest

``single``: our backtest asset (config and backtest materialised through Dagster: ArcticDB read,
Freqtrade in-process and offline, MLflow logging, results stored) in a fresh process, against
``freqtrade backtesting`` in a fresh process on the same candles as feather files, with the same
config and the same markets snapshot (``bench.freqtrade_offline_cli``: Freqtrade's CLI with its two
market-loading methods serving the snapshot). Wall time and peak memory (max RSS from ``wait4``) of
each process.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO, report, synthetic_candles

PAIRS = ["ADA/BTC", "DASH/BTC", "ETC/BTC", "ETH/BTC", "LTC/BTC", "NXT/BTC", "TRX/BTC", "XLM/BTC", "XMR/BTC", "ZEC/BTC"]
PERIODS = 365 * 288  # one year of 5m candles
START = "2023-01-01"
MARKETS_FILE = REPO / "tradai_assets" / "sample" / "markets" / "binance-spot.json"
PRELOADED_MODULES = ["bench.backtest", "freqtrade.optimize.backtesting", "mlflow", "matplotlib.figure", "talib"]
CONCURRENT_STRATEGIES = ["SampleStrategy", "RsiMeanReversion", "EmaCross", "EmaCrossFast"]


def btc_candles(pair_index: int, periods: int):
    """The common random walk scaled to BTC-quoted prices, so the sample snapshot's limits fit."""
    frame = synthetic_candles(pair_index, START, periods, "5min")
    frame[["open", "high", "low", "close"]] *= 0.0005
    return frame


def prepare(workdir: Path, periods: int = PERIODS) -> dict:
    """The same candles in ArcticDB (ours) and as feather files (Freqtrade's), the snapshot, configs."""
    from resources.arctic import ArcticStore
    from tradai_assets.backtests import resolve_timerange
    from tradai_assets.market_data import content_hash, read_markets_file
    from tradai_core.candles import candle_symbol
    from tradai_core.strategy_config import load_base_config

    if workdir.exists():
        shutil.rmtree(workdir)
    feather = workdir / "feather" / "binance"
    feather.mkdir(parents=True)
    store = ArcticStore(uri=f"lmdb://{workdir / 'arctic'}")
    for i, pair in enumerate(PAIRS):
        frame = btc_candles(i, periods)
        frame.reset_index().to_feather(feather / f"{pair.replace('/', '_')}-5m.feather")
        store.replace_window("binance", "spot", candle_symbol(pair, "5m", "spot"), frame,
                             frame.index[0], frame.index[-1] + frame.index.freq, {})
    snapshot = read_markets_file(MARKETS_FILE)
    (workdir / "snapshot.json").write_text(json.dumps(snapshot))
    store.write_markets_snapshot("binance", "spot", snapshot, content_hash(snapshot), {})

    strategies = workdir / "strategies"
    strategies.mkdir()
    for name in ("SampleStrategy", "RsiMeanReversion", "EmaCross"):
        shutil.copyfile(REPO / "strategies" / f"{name}.py", strategies / f"{name}.py")
    # A fourth strategy for the concurrency benchmark: EmaCross with other periods.
    source = (REPO / "strategies" / "EmaCross.py").read_text()
    (strategies / "EmaCrossFast.py").write_text(
        source.replace("class EmaCross(", "class EmaCrossFast(").replace("default=12", "default=8").replace("default=26", "default=30")
    )

    index = btc_candles(0, periods).index
    timerange = resolve_timerange("all", index[0], index[-1] + index.freq, "bench candles")
    theirs = {
        **load_base_config(), "timerange": timerange, "strategy": "SampleStrategy", "strategy_path": str(strategies),
        "user_data_dir": str(workdir / "freqtrade"), "dataformat_ohlcv": "feather",
        "backtest_cache": "none", "export": "none",
    }
    (workdir / "freqtrade").mkdir()
    (workdir / "freqtrade_config.json").write_text(json.dumps(theirs, indent=2))
    return {"timerange": timerange}


def bench_definitions(workdir: str):
    import dagster as dg

    from resources.arctic import ArcticStore
    from resources.backtest_store import BacktestStore
    from resources.freqtrade_runner import FreqtradeRunner
    from resources.mlflow_tracker import MlflowTracker
    from tradai_assets.strategies import build_strategies

    root = Path(workdir)
    arctic = ArcticStore(uri=f"lmdb://{root / 'arctic'}")
    built = build_strategies(root / "strategies")
    return dg.Definitions(
        assets=built.assets,
        jobs=[dg.define_asset_job("bench_backtests")],
        resources={
            "arctic": arctic,
            "backtest_store": BacktestStore(arctic=arctic),
            "freqtrade_runner": FreqtradeRunner(workdir=str(root)),
            "mlflow": MlflowTracker(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", artifact_root=str(root / "mlartifacts")),
        },
    )


def bench_job(workdir: str):
    return bench_definitions(workdir).resolve_job_def("bench_backtests")


def run_job(workdir: Path, strategies: list[str], what: str, workers: int) -> None:
    """Materialise the strategies' configs, then their backtests, in one run on a local instance."""
    import dagster as dg

    from tradai_assets.strategies import backtest_key, config_key

    job = dg.build_reconstructable_job("bench.backtest", "bench_job", reconstructable_args=(str(workdir),))
    executor = {"in_process": {}} if workers == 1 else {"multiprocess": {
        "max_concurrent": workers,
        # Steps fork from a server that imported the heavy modules once, instead of each importing them.
        "start_method": {"forkserver": {"preload_modules": PRELOADED_MODULES}},
    }}
    keys = ([config_key(n) for n in strategies] if what in ("config", "both") else []) + (
        [backtest_key(n) for n in strategies] if what in ("backtest", "both") else []
    )
    with tempfile.TemporaryDirectory(prefix="dagster-", dir=workdir) as home:
        instance = dg.DagsterInstance.local_temp(tempdir=home)
        with dg.execute_job(job, instance=instance, asset_selection=keys,
                            run_config={"execution": {"config": executor}}) as result:
            if not result.success:
                raise SystemExit(f"run failed: {[e.message for e in result.all_events if e.is_failure]}")
            for name in strategies:
                for event in result.asset_materializations_for_node(backtest_key(name).to_python_identifier()):
                    meta = event.metadata
                    print(json.dumps({"strategy": name, "trades": meta["trades"].value, "trades_hash": meta["trades_hash"].value}))


def bytecode_env(workdir: Path) -> dict[str, str]:
    """Children cache compiled bytecode under the workdir, as the images ship it compiled: without
    it every process compiles its imports (PYTHONDONTWRITEBYTECODE), which costs ours, importing
    Dagster and MLflow besides Freqtrade, far more than theirs. The first of repeated runs warms it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    return env


def timed_process(args: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MiB and stdout of a child process."""
    started = time.perf_counter()
    process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({process.returncode}):\n{output[-4000:]}")
    return elapsed, usage.ru_maxrss / 1024, output


def freqtrade_trades(output: str) -> int:
    match = re.search(r"Total/Daily Avg Trades\s*[│|]\s*(\d+)", output)
    if match is None:
        raise SystemExit(f"no trade count in Freqtrade's output:\n{output[-3000:]}")
    return int(match.group(1))


def single(workdir: Path, repeat: int) -> str:
    prepare(workdir)
    env = bytecode_env(workdir)
    python = sys.executable
    ours_times, theirs_times, ours_rss, theirs_rss = [], [], [], []
    for _ in range(repeat):
        elapsed, rss, output = timed_process(
            [python, "-m", "bench.backtest", "run-job", "--workdir", str(workdir), "--strategies", "SampleStrategy",
             "--what", "both"], env
        )
        ours_trades = json.loads(output.strip().splitlines()[-1])["trades"]
        ours_times.append(elapsed), ours_rss.append(rss)
        elapsed, rss, output = timed_process([
            python, "-m", "bench.freqtrade_offline_cli", str(workdir / "snapshot.json"),
            "backtesting", "--config", str(workdir / "freqtrade_config.json"), "--datadir", str(workdir / "feather" / "binance"),
        ], env)
        theirs_trades = freqtrade_trades(output)
        theirs_times.append(elapsed), theirs_rss.append(rss)
        if ours_trades != theirs_trades:
            raise SystemExit(f"different results: ours {ours_trades} trades, Freqtrade's {theirs_trades}")
    return report(
        "One backtest: our asset over bare Freqtrade (goals: time <= 0.6, memory <= 1.0)",
        "python -m bench.backtest single",
        [
            f"SampleStrategy, 10 pairs x 1 year of synthetic 5m candles ({PERIODS * len(PAIRS):,} rows), "
            f"{ours_trades} trades on both sides; each side a fresh process with compiled bytecode cached (the first "
            f"run warms the cache), best of {repeat}",
            "ours: `strategies/SampleStrategy/config` and `/backtest` materialised through Dagster (ArcticDB read, "
            "Freqtrade in-process with the vectorised tick size, MLflow logging on SQLite, results stored in ArcticDB)",
            "theirs: `freqtrade backtesting` (Freqtrade's CLI code path via `bench.freqtrade_offline_cli`, which only "
            "replaces Binance's `_api_reload_markets` and `load_leverage_tiers` to serve the same snapshot) on the same "
            "candles in feather, same config",
            f"wall time ours / theirs: **{min(ours_times) / min(theirs_times):.2f}** "
            f"(ours {', '.join(f'{t:.1f}' for t in ours_times)} s; theirs {', '.join(f'{t:.1f}' for t in theirs_times)} s)",
            f"peak memory (max RSS) ours / theirs: **{max(ours_rss) / max(theirs_rss):.2f}** "
            f"(ours {max(ours_rss):.0f} MiB, theirs {max(theirs_rss):.0f} MiB)",
        ],
    )


def concurrent(workdir: Path, periods: int) -> str:
    prepare(workdir, periods)
    env = bytecode_env(workdir)
    python = sys.executable
    base = [python, "-m", "bench.backtest", "run-job", "--workdir", str(workdir), "--strategies", *CONCURRENT_STRATEGIES]
    # Configs first, so both timed runs do only the four backtests.
    timed_process(base + ["--what", "config"], env)
    # One untimed backtest fills the bytecode cache both timed runs then use.
    timed_process([python, "-m", "bench.backtest", "run-job", "--workdir", str(workdir), "--strategies", "EmaCross"], env)
    load = os.getloadavg()[0]
    serial, _, serial_out = timed_process(base + ["--workers", "1"], env)
    parallel, _, parallel_out = timed_process(base + ["--workers", "2"], env)

    def hashes(output: str) -> dict:
        return {r["strategy"]: r["trades_hash"] for r in map(json.loads, output.strip().splitlines()[-4:])}

    if hashes(serial_out) != hashes(parallel_out):
        raise SystemExit("concurrent backtests gave other trades than serial ones")
    return report(
        "Four strategies on two cores: concurrent over serial (goal <= 0.6)",
        "python -m bench.backtest concurrent",
        [
            f"{', '.join(CONCURRENT_STRATEGIES)} on 10 pairs x {periods // 288} days of synthetic 5m candles; "
            "one Dagster run each way, in a fresh process: serial = in-process executor, concurrent = multiprocess "
            "executor with 2 workers, steps forked from a forkserver that preloaded Freqtrade and MLflow; trades identical",
            f"concurrent / serial wall time: **{parallel / serial:.2f}** (serial {serial:.1f} s, concurrent {parallel:.1f} s)",
            f"load average {load:.1f} before the timed runs (the machine is shared: other work takes cores too)",
        ],
    )


def mlflow_logging(workdir: Path, repeat: int) -> str:
    from resources.arctic import ArcticStore
    from resources.freqtrade_runner import FreqtradeRunner
    from resources.mlflow_tracker import MlflowTracker
    from tradai_assets.backtests import plan_backtest, record_backtest
    from tradai_core.strategy_config import load_base_config

    prepare(workdir)
    arctic = ArcticStore(uri=f"lmdb://{workdir / 'arctic'}")
    strategy_file = workdir / "strategies" / "SampleStrategy.py"
    plan = plan_backtest(arctic, "SampleStrategy", strategy_file, load_base_config(), "bench")
    outcome = FreqtradeRunner(workdir=str(workdir)).run(plan.request)
    tracker = MlflowTracker(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}", artifact_root=str(workdir / "mlartifacts"))
    tracker.experiment_id("strategies/SampleStrategy")  # the store exists, as it does after the first backtest
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        record_backtest(plan, outcome, tracker, "bench", {})
        times.append(time.perf_counter() - started)
    return report(
        "MLflow logging per backtest (goal <= 1 s)",
        "python -m bench.backtest mlflow",
        [
            f"SampleStrategy on 10 pairs x 1 year ({len(outcome.trades)} trades, {len(outcome.wallet):,} wallet rows): "
            "equity curve, trades digest, plot, params, metrics, tags and six artifacts into a local SQLite store",
            f"median **{sorted(times)[len(times) // 2]:.2f} s** (all: {', '.join(f'{t:.2f}' for t in times)})",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["single", "concurrent", "mlflow", "run-job"])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--days", type=int, default=180, help="candles per pair for `concurrent`")
    parser.add_argument("--strategies", nargs="*", default=["SampleStrategy"])
    parser.add_argument("--what", choices=["config", "backtest", "both"], default="backtest")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-backtest-"))
    if args.mode == "run-job":
        run_job(workdir, args.strategies, args.what, args.workers)
    elif args.mode == "single":
        print(single(workdir, args.repeat))
    elif args.mode == "concurrent":
        print(concurrent(workdir, args.days * 288))
    else:
        print(mlflow_logging(workdir, max(args.repeat, 5)))


if __name__ == "__main__":
    main()
