"""Sweep benchmarks on 10 pairs x 90 days of synthetic 5m candles (259k rows), SampleStrategy, a random
search over buy_rsi and sell_rsi.

    .venv/bin/python -m bench.sweeps overhead [--trials N] [--workdir DIR]  # per-trial time over one backtest
    .venv/bin/python -m bench.sweeps workers  [--trials N] [--workdir DIR]  # two worker processes over one

``overhead``: one worker's wall time per trial (``run_trials``: plan pinned, one Freqtrade session,
each trial recorded in ArcticDB and as an MLflow child run on SQLite) over one in-process Freqtrade
backtest of the same candles (``FreqtradeRunner.run``, after a warm-up), in one process.
``workers``: the wall time of the same N trials done by one worker process, and split over two
worker processes started together (what two sweep runs of the run queue do on two cores).
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench.common import REPO, machine, median

PERIODS = 90 * 288
SPACE = {
    "search": "random",
    "spaces": ["buy", "sell"],
    "ranges": {"buy_rsi": [20, 40], "sell_rsi": [60, 80]},
    "min_trades": 0,
    "seed": 1,
}


def stores(workdir: Path):
    from resources.arctic import ArcticStore
    from resources.freqtrade_runner import FreqtradeRunner
    from resources.mlflow_tracker import MlflowTracker
    from resources.sweep_store import SweepStore

    arctic = ArcticStore(uri=f"lmdb://{workdir / 'arctic'}")
    return (
        arctic,
        FreqtradeRunner(workdir=str(workdir)),
        SweepStore(arctic=arctic),
        MlflowTracker(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}", artifact_root=str(workdir / "mlartifacts")),
    )


def strategy(workdir: Path):
    from tradai_core.strategy_discovery import discover_strategies

    return next(s for s in discover_strategies(workdir / "strategies") if s.name == "SampleStrategy")


def prepare(workdir: Path, trials: int) -> str:
    """Candles and snapshot (bench.backtest's), and a planned sweep of ``trials`` trials; its id."""
    from bench.backtest import prepare as prepare_candles
    from tradai_assets.sweeps import plan_sweep
    from tradai_core.sweeps import parse_spec

    timerange = prepare_candles(workdir, PERIODS)["timerange"]
    arctic, _, store, tracker = stores(workdir)
    spec = parse_spec({"strategy": "SampleStrategy", "timerange": timerange, "budget": trials, **SPACE})
    plan = plan_sweep(spec, "bench", strategy(workdir), arctic)
    plan["parent_run_id"] = tracker.start_run("strategies/SampleStrategy", "sweep bench", {}, {})
    store.write_plan("bench", plan)
    return timerange


def worker(workdir: Path, numbers: list[int]) -> float:
    """Run the trials ``numbers`` of the planned sweep as one worker run does; its wall time."""
    from tradai_assets.sweeps import run_trials

    arctic, runner, store, tracker = stores(workdir)
    started = time.perf_counter()
    done = list(run_trials(store.plan("bench"), numbers, arctic=arctic, runner=runner, store=store, tracker=tracker))
    elapsed = time.perf_counter() - started
    assert all(r.status != "failed" for r in done), [r.error for r in done if r.status == "failed"]
    return elapsed


def overhead(workdir: Path, trials: int) -> list[str]:
    from tradai_assets.backtests import plan_backtest

    prepare(workdir, trials)
    arctic, runner, store, _ = stores(workdir)
    plan = store.plan("bench")
    backtest = plan_backtest(arctic, "SampleStrategy", Path(plan["strategy_file"]), plan["config"], plan["config_hash"])
    runner.run(backtest.request)  # warm-up: imports
    single = []
    for _ in range(2):
        started = time.perf_counter()
        runner.run(backtest.request)
        single.append(time.perf_counter() - started)
    sweep = worker(workdir, list(range(trials)))
    per_trial = sweep / trials
    return [
        f"one in-process backtest (median of 2 after a warm-up): {median(single):.1f} s ({', '.join(f'{t:.1f}' for t in single)})",
        f"{trials} trials by one worker: {sweep:.1f} s, {per_trial:.1f} s per trial",
        f"per trial / one backtest: **{per_trial / median(single):.2f}** (goal <= 1.2)",
    ]


def workers(workdir: Path, trials: int) -> list[str]:
    prepare(workdir, trials)
    command = [sys.executable, "-m", "bench.sweeps", "worker", "--workdir", str(workdir), "--numbers"]

    def run(groups: list[list[int]]) -> float:
        started = time.perf_counter()
        processes = [subprocess.Popen([*command, json.dumps(g)], cwd=REPO) for g in groups]
        for p in processes:
            if p.wait() != 0:
                raise RuntimeError(f"worker {p.args} exited with {p.returncode}")
        return time.perf_counter() - started

    numbers = list(range(trials))
    one = run([numbers])
    two = run([numbers[0::2], numbers[1::2]])
    return [
        f"{trials} trials, one worker process: {one:.1f} s; two worker processes at once: {two:.1f} s",
        f"two workers / one: **{two / one:.2f}** (goal <= 0.6)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["overhead", "workers", "worker"])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tradai-bench-sweeps"))
    parser.add_argument("--numbers", default="[]")
    args = parser.parse_args()
    if args.what == "worker":
        worker(args.workdir, json.loads(args.numbers))
        return
    lines = (overhead if args.what == "overhead" else workers)(args.workdir, args.trials)
    print(f"bench.sweeps {args.what} --trials {args.trials} ({machine()})")
    print("\n".join(f"- {line}" for line in lines))


if __name__ == "__main__":
    main()
