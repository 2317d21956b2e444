"""Run one OHLCV materialisation in its own process against the instance in DAGSTER_HOME.

    python -m tests.run_market_data UNIVERSE ARCTIC_URI ENTRY FIRST_DAY LAST_DAY

With ``KILL_AFTER_WRITES=N`` in the environment the process SIGKILLs itself right after its N-th
candle write, so a crash lands at a known point in the middle of the run. ``EXCHANGE_SETTINGS``
(JSON) configures the exchange resource (page and chunk sizes).
"""

import json
import os
import signal
import sys

import dagster as dg

from resources.arctic import ArcticStore
from resources.exchange import ExchangeResource
from tests.market_data_support import MarketDataLocation
from tradai_core.universe import load_universe


def kill_after_writes(count: int) -> None:
    replace_window = ArcticStore.replace_window
    done = []

    def write_then_maybe_die(self, *args, **kwargs):
        version = replace_window(self, *args, **kwargs)
        done.append(version)
        if len(done) >= count:
            os.kill(os.getpid(), signal.SIGKILL)
        return version

    ArcticStore.replace_window = write_then_maybe_die


def main(universe: str, uri: str, entry: str, first: str, last: str) -> int:
    from pathlib import Path

    if os.environ.get("KILL_AFTER_WRITES"):
        kill_after_writes(int(os.environ["KILL_AFTER_WRITES"]))

    exchange = ExchangeResource(**json.loads(os.environ.get("EXCHANGE_SETTINGS", '{"max_retries": 0}')))
    location = MarketDataLocation(load_universe(Path(universe)).markets, ArcticStore(uri=uri), exchange)
    with dg.DagsterInstance.get() as instance:
        result = location.ohlcv(entry, instance, first, last)
    print(result.run_id)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
