"""Start-up cost of the bot image's entry point and of the code location, in fresh interpreters.

    python -m bench.startup_imports [--before DIR] [--rounds 5]

For each program it starts a new interpreter that only imports it (bytecode already compiled, as in
the images) and reports the median wall time and the sum of ``python -X importtime``'s
self times. ``--before DIR`` measures another checkout of the product too (e.g. a git worktree
of an older commit), interleaved round by round so both see the same machine load; its module
names are read from that checkout's layout.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def programs(checkout: Path) -> dict[str, str]:
    """The import line of each program, by the layout of ``checkout``."""
    if (checkout / "tradai_bot").is_dir():
        bot = "import tradai_client.cli, tradai_bot.runtime"
    else:
        bot = "import tradai_assets.cli, resources.bot_runtime"
    return {"bot entry point (tradai run-bot)": bot,
            "code location (tradai_assets.definitions)": "from tradai_assets.definitions import defs"}


def measure(checkout: Path, statement: str, home: Path) -> tuple[float, float, set[str]]:
    """(wall seconds, importtime self-seconds summed, top-level product packages loaded)."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "TRADAI_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    probe = statement + "; import sys; print(','.join(sorted({m.split('.')[0] for m in sys.modules})))"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", probe], cwd=checkout, env=env,
                          capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    self_us = 0
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "self [us]" not in line:
            self_us += int(line.split(":", 1)[1].split("|")[0])
    product = {"tradai_assets", "sensors", "tradai_api", "tradai_client", "tradai_bot", "resources", "tradai_core",
               "simulator"}
    loaded = set(done.stdout.strip().splitlines()[-1].split(",")) & product
    return wall, self_us / 1e6, loaded


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="another checkout to measure beside this one")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    checkouts = {"now": REPO} | ({"before": args.before.resolve()} if args.before else {})
    home = Path(os.environ.get("TMPDIR", "/tmp")) / "tradai-startup-bench"
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    for checkout in checkouts.values():  # compile bytecode once, as the images do
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(checkout)], check=False, capture_output=True)
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    loaded: dict[tuple[str, str], set[str]] = {}
    for _ in range(args.rounds):
        for label, checkout in checkouts.items():
            for name, statement in programs(checkout).items():
                wall, imports, packages = measure(checkout, statement, home)
                results.setdefault((label, name), []).append((wall, imports))
                loaded[(label, name)] = packages
    print(f"{'checkout':8} {'program':44} {'wall s (median)':>16} {'importtime s':>13}  product packages loaded")
    for (label, name), samples in results.items():
        wall = statistics.median(s[0] for s in samples)
        imports = statistics.median(s[1] for s in samples)
        print(f"{label:8} {name:44} {wall:16.2f} {imports:13.2f}  {', '.join(sorted(loaded[(label, name)]))}")
    if args.before:
        for name in programs(REPO):
            now = statistics.median(s[0] for s in results[("now", name)])
            before = statistics.median(s[0] for s in results[("before", name)])
            print(f"{name}: now / before = {now / before:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
