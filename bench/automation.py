"""Strategy automation on the offline sample: how many assets ten ticks with nothing changed request,
and how many one edited strategy file requests (and which).

    .venv/bin/python -m bench.automation [--strategies SampleStrategy,RsiMeanReversion,EmaCross]

Every strategy's config and backtest are materialised once on four days of the spot sample; then ten
ticks (the automation_inputs sensor, then one evaluation of every automation condition, against a
real Dagster instance), then one strategy file is edited, the location rebuilt, and one tick run;
the requested assets are materialised in one run, as the automation sensor would launch them, and
ten more ticks run.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from bench.common import report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategies", default="SampleStrategy,RsiMeanReversion,EmaCross")
    args = parser.parse_args()
    names = tuple(args.strategies.split(","))

    import dagster as dg

    from tests.automation_support import AutomationLocation
    from tradai_core.keys import backtest_key, config_key

    logging.getLogger("dagster").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp, dg.instance_for_test() as instance:
        location = AutomationLocation(Path(tmp), names)
        location.location.load_sample(instance, "2018-01-10", "2018-01-13")
        location.tick(instance)
        for name in names:
            location.materialise(instance, [config_key(name), backtest_key(name)])
        idle = [location.tick(instance) for _ in range(10)]
        edited = location.strategies_dir / f"{names[0]}.py"
        edited.write_text(edited.read_text() + "\n# an edit\n")
        location.reload()
        after_edit = location.tick(instance)
        location.materialise(instance, after_edit)
        settled = [location.tick(instance) for _ in range(10)]

    shown = ", ".join(sorted(k.to_user_string() for k in after_edit))
    print(
        report(
            "Automation: ticks on the offline sample",
            "python -m bench.automation --strategies " + ",".join(names),
            [
                f"{len(names)} strategies, configs and backtests materialised once",
                f"10 ticks with nothing changed: {sum(len(r) for r in idle)} assets requested",
                f"one edited file ({edited.name}): {len(after_edit)} assets requested in one tick ({shown})",
                f"10 ticks after that run: {sum(len(r) for r in settled)} assets requested",
            ],
        )
    )


if __name__ == "__main__":
    main()
