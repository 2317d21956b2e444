"""Divergence reports: a real dry-run bot's trades against Freqtrade's replay of the same candles.

    python -m bench.divergence record [--minutes 6]   # two dry-run bots on two simulated exchanges
    python -m bench.divergence measure                # wall time and matched shares -> bench/RESULTS.md

``record`` runs the probe strategy (tests/divergence_support.py, 1m candles) as local dry-run bots,
exactly as make dev runs them, on two local simulated exchanges with the same seed (so the same
candles): one clean, one with a planted delayed fill (its order book stands 1% away for the first
entry of LTC/BTC). It keeps each bot's Freqtrade database and its trading window under
tests/data/divergence/, which the tests and ``measure`` replay.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from bench.common import REPO, machine  # noqa: F401  (puts the repository on sys.path)


def closed_trades(database: Path) -> dict[str, int]:
    if not database.is_file():
        return {}
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as connection:
            rows = connection.execute("SELECT pair, COUNT(*) FROM trades WHERE is_open = 0 GROUP BY pair").fetchall()
    except sqlite3.OperationalError:
        return {}
    return dict(rows)


def copy_database(source: Path, target: Path) -> None:
    """A self-contained copy (SQLite's backup: what the bot's write-ahead log still holds included)."""
    target.unlink(missing_ok=True)
    with (
        closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)) as src,
        closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")


def record(minutes: float, closed_per_pair: int) -> None:
    from resources.bot_services import BotSpec
    from resources.local_bots import LocalBotServices
    from tests.divergence_support import DATA, DELAY_RULE, PAIRS, PROBE, PROBE_CONFIG, PROBE_ID, write_probe
    from tests.fakes.client import FakeBinance
    from tradai_assets.deployments import DesiredState, bot_config

    root = Path(tempfile.mkdtemp(prefix="divergence-record-"))
    strategies = root / "strategies"
    write_probe(strategies)
    runs = {}
    try:
        for label in ("clean", "delayed"):
            exchange = FakeBinance().start()
            if label == "delayed":
                exchange.add_rule(**DELAY_RULE)
            services = LocalBotServices(
                home=str(root / label),
                strategies_dir=str(strategies),
                exchange_url=exchange.url,
                arctic_uri=f"lmdb://{root / label / 'arctic'}",
                heartbeat_seconds=5,
                stop_timeout_seconds=30,
            )
            desired = DesiredState(mode="dry_run", stake_amount=0.01, pairs=tuple(PAIRS))
            config_path = services.write_config(PROBE_ID, bot_config(PROBE_CONFIG, PROBE, desired))
            started = datetime.now(UTC)
            services.reconcile(
                BotSpec(
                    strategy=PROBE,
                    strategy_id=PROBE_ID,
                    mode="dry_run",
                    image="local",
                    config_path=config_path,
                    stake_amount=0.01,
                    pairs=tuple(PAIRS),
                )
            )
            runs[label] = {"exchange": exchange, "services": services, "started": started}
        deadline = time.monotonic() + minutes * 60
        while time.monotonic() < deadline:
            counts = {
                label: closed_trades(run["services"].bot_dir(PROBE_ID) / "trades.sqlite") for label, run in runs.items()
            }
            print(datetime.now(UTC).isoformat(timespec="seconds"), counts, flush=True)
            if all(all(c.get(p, 0) >= closed_per_pair for p in PAIRS) for c in counts.values()):
                break
            time.sleep(10)
        DATA.mkdir(parents=True, exist_ok=True)
        for label, run in runs.items():
            services = run["services"]
            services.stop(PROBE_ID)
            stopped = datetime.now(UTC)
            bot_dir = services.bot_dir(PROBE_ID)
            copy_database(bot_dir / "trades.sqlite", DATA / f"{label}.sqlite")
            (DATA / f"{label}.json").write_text(
                json.dumps(
                    {
                        "started": run["started"].isoformat(),
                        "stopped": stopped.isoformat(),
                        "fault": DELAY_RULE if label == "delayed" else None,
                        "exchange_stats": run["exchange"].stats().get("injected"),
                    },
                    indent=1,
                )
            )
            shutil.copyfile(bot_dir / "freqtrade.log", root / f"{label}-freqtrade.log")
            print(label, "closed trades:", closed_trades(DATA / f"{label}.sqlite"), "logs in", root)
    finally:
        for run in runs.values():
            try:
                run["services"].stop(PROBE_ID)
            finally:
                run["exchange"].stop()


def measure(repeat: int = 5) -> int:
    """Both figures, printed and appended to bench/RESULTS.md."""
    import pandas as pd

    from bench.backtest import MARKETS_FILE, btc_candles
    from bench.backtest import PAIRS as TEN_PAIRS
    from bench.common import best_of, report
    from resources.arctic import ArcticStore
    from resources.backtest_store import BacktestStore
    from resources.bot_trades import BotTradeLog, LocalBotTrades
    from resources.freqtrade_runner import FreqtradeRunner
    from tests.divergence_support import DATA, PROBE, PROBE_CONFIG, write_probe
    from tests.fakes.client import FakeBinance
    from tradai_assets.backtests import plan_backtest
    from tradai_assets.divergence import DivergenceSettings, build_report, replay_frame, report_metadata
    from tradai_assets.market_data import content_hash, read_markets_file
    from tradai_core.candles import candle_symbol
    from tradai_core.strategy_config import load_base_config
    from tradai_core.strategy_discovery import StrategySpec

    root = Path(tempfile.mkdtemp(prefix="divergence-bench-"))
    lines = []
    try:
        # 1. One bot-day of 10 pairs of 5m candles (30 days stored, the report of day 20) against a
        #    backtest of that day. The bot's trades are the backtest's own (a bot that traded exactly
        #    as the replay): the matching then has every trade to pair up.
        store = ArcticStore(uri=f"lmdb://{root / 'arctic'}")
        for i, pair in enumerate(TEN_PAIRS):
            frame = btc_candles(i, 30 * 288)
            store.replace_window(
                "binance",
                "spot",
                candle_symbol(pair, "5m", "spot"),
                frame,
                frame.index[0],
                frame.index[-1] + frame.index.freq,
                {},
            )
        snapshot = read_markets_file(MARKETS_FILE)
        store.write_markets_snapshot("binance", "spot", snapshot, content_hash(snapshot), {})
        strategies = root / "strategies"
        strategies.mkdir()
        shutil.copyfile(REPO / "strategies" / "SampleStrategy.py", strategies / "SampleStrategy.py")
        spec = StrategySpec(name="SampleStrategy", file=strategies / "SampleStrategy.py")
        config = {
            **load_base_config(),
            "exchange": {**load_base_config()["exchange"], "pair_whitelist": TEN_PAIRS},
            "stake_amount": 0.001,
            "max_open_trades": 10,
        }
        digest = content_hash(config)
        backtest_store = BacktestStore(arctic=store)
        backtest_store.write_config("SampleStrategy", config, digest)
        day = pd.Timestamp(btc_candles(0, 1).index[0]) + pd.Timedelta(days=20)
        runner = FreqtradeRunner()

        def backtest():
            plan = plan_backtest(
                store,
                "SampleStrategy",
                spec.file,
                {**config, "timerange": f"{day:%Y%m%d}-{day + pd.Timedelta(days=1):%Y%m%d}"},
                digest,
            )
            return runner.run(plan.request)

        outcome = backtest()
        bot_trades = replay_frame(outcome.trades)
        log = BotTradeLog("samplestrategy", "bench", bot_trades, None)
        deployment = {"config_hash": digest, "desired": {"mode": "dry_run", "stake_amount": 0.001, "pairs": TEN_PAIRS}}
        settings = DivergenceSettings()

        def divergence():
            made = build_report(
                spec=spec,
                day=day,
                deployment=deployment,
                log=log,
                arctic=store,
                backtest_store=backtest_store,
                runner=runner,
                settings=settings,
            )
            report_metadata(made, settings)
            return made

        made = divergence()
        started = time.perf_counter()
        build_report(
            spec=spec,
            day=day,
            deployment=deployment,
            log=log,
            arctic=store,
            backtest_store=backtest_store,
            runner=runner,
            settings=settings,
        )
        built = time.perf_counter() - started
        report_metadata(made, settings)
        plotted = time.perf_counter() - started - built
        times = {"backtest": [], "divergence": []}
        for _ in range(repeat):  # interleaved: the machine's load hits both alike
            times["backtest"].append(best_of(backtest, 1)[0])
            times["divergence"].append(best_of(divergence, 1)[0])
        ratio = min(times["divergence"]) / min(times["backtest"])
        rounds = sorted(d / b for d, b in zip(times["divergence"], times["backtest"], strict=True))
        print({k: [round(t, 3) for t in v] for k, v in times.items()}, flush=True)
        lines.append(
            f"one bot-day, 10 pairs of 5m candles ({len(bot_trades)} trades, SampleStrategy, day {day:%Y-%m-%d} of 30 "
            f"stored): divergence report / backtest of the same day = **{ratio:.2f}** (best of {repeat} each, "
            f"interleaved; median of the {repeat} rounds' ratios {rounds[len(rounds) // 2]:.2f}, range {rounds[0]:.2f}-"
            f"{rounds[-1]:.2f}); the report includes the matching, the metadata table and the overlay PNG (the "
            f"table and PNG: {plotted / built:.0%} of the report's replay and matching); matched share "
            f"{made.summary.matched_share:.0%}"
        )
        # 2. The recorded dry-run bot-days on the simulator (bench.divergence record), replayed.
        fake = FakeBinance().start()
        try:
            from dagster import DagsterInstance

            from tests.divergence_support import PROBE_ID, recording, sync_probe_candles

            instance = DagsterInstance.ephemeral()
            clean = recording("clean")
            day = pd.Timestamp(clean["started"]).floor("D")
            arctic = sync_probe_candles(root / "probe", fake, instance, f"{day:%Y-%m-%d}")
            probe_store = BacktestStore(arctic=arctic)
            probe_hash = content_hash(PROBE_CONFIG)
            probe_store.write_config(PROBE, PROBE_CONFIG, probe_hash)
            probe = StrategySpec(name=PROBE, file=write_probe(root / "probe" / "strategies"))
            for label in ("clean", "delayed"):
                recorded = recording(label)
                home = root / label
                (home / "bots" / PROBE_ID).mkdir(parents=True)
                shutil.copyfile(DATA / f"{label}.sqlite", home / "bots" / PROBE_ID / "trades.sqlite")
                made = build_report(
                    spec=probe,
                    day=day,
                    log=LocalBotTrades(home=str(home)).read(PROBE_ID),
                    arctic=arctic,
                    deployment={
                        "config_hash": probe_hash,
                        "desired": {
                            "mode": "dry_run",
                            "stake_amount": 0.01,
                            "pairs": list(PROBE_CONFIG["exchange"]["pair_whitelist"]),
                        },
                    },
                    backtest_store=probe_store,
                    runner=runner,
                    stopped_at=datetime.fromisoformat(recorded["stopped"]),
                    settings=settings,
                )
                summary = made.summary
                lines.append(
                    f"simulator, {label} ({recorded['started'][:16]} to {recorded['stopped'][11:16]} UTC, probe strategy "
                    f"on 1m candles, 2 pairs): {summary.bot_trades} bot trades, {summary.replay_trades} replay trades, "
                    f"matched share **{summary.matched_share:.0%}**, entry and exit on the same candle "
                    f"**{summary.aligned_share:.0%}**; named: {'; '.join(made.divergent) or 'none'}"
                )
        finally:
            fake.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    text = report(
        "Divergence reports",
        "python -m bench.divergence measure",
        lines
        + [
            "the machine is shared with other work and its load varies (2-3x between runs): read the ratio, not times",
        ],
    )
    print(text)
    with open(REPO / "bench" / "RESULTS.md", "a") as results:
        results.write("\n" + text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    rec = commands.add_parser("record")
    rec.add_argument("--minutes", type=float, default=8)
    rec.add_argument("--closed-per-pair", type=int, default=2)
    commands.add_parser("measure")
    args = parser.parse_args(argv)
    if args.command == "record":
        record(args.minutes, args.closed_per_pair)
        return 0
    return measure()


if __name__ == "__main__":
    sys.exit(main())
