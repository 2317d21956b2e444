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
    with closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)) as src, \
            closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")


def record(minutes: float, closed_per_pair: int) -> None:
    from resources.local_bots import LocalBotServices
    from resources.bot_services import BotSpec
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
                home=str(root / label), strategies_dir=str(strategies), exchange_url=exchange.url,
                arctic_uri=f"lmdb://{root / label / 'arctic'}", heartbeat_seconds=5, stop_timeout_seconds=30,
            )
            desired = DesiredState(mode="dry_run", stake_amount=0.01, pairs=tuple(PAIRS))
            config_path = services.write_config(PROBE_ID, bot_config(PROBE_CONFIG, PROBE, desired))
            started = datetime.now(UTC)
            services.reconcile(BotSpec(strategy=PROBE, strategy_id=PROBE_ID, mode="dry_run", image="local",
                                       config_path=config_path, stake_amount=0.01, pairs=tuple(PAIRS)))
            runs[label] = {"exchange": exchange, "services": services, "started": started}
        deadline = time.monotonic() + minutes * 60
        while time.monotonic() < deadline:
            counts = {label: closed_trades(run["services"].bot_dir(PROBE_ID) / "trades.sqlite") for label, run in runs.items()}
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
            (DATA / f"{label}.json").write_text(json.dumps({
                "started": run["started"].isoformat(), "stopped": stopped.isoformat(),
                "fault": DELAY_RULE if label == "delayed" else None,
                "exchange_stats": run["exchange"].stats().get("injected"),
            }, indent=1))
            shutil.copyfile(bot_dir / "freqtrade.log", root / f"{label}-freqtrade.log")
            print(label, "closed trades:", closed_trades(DATA / f"{label}.sqlite"), "logs in", root)
    finally:
        for run in runs.values():
            try:
                run["services"].stop(PROBE_ID)
            finally:
                run["exchange"].stop()


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
