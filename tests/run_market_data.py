"""Run one OHLCV materialisation in its own process against the instance in DAGSTER_HOME.

    python -m tests.run_market_data UNIVERSE ARCTIC_URI ENTRY FIRST_DAY LAST_DAY
"""

import sys

import dagster as dg

from resources.arctic import ArcticStore
from tests.market_data_support import MarketDataLocation
from tradai_assets.universe import load_universe


def main(universe: str, uri: str, entry: str, first: str, last: str) -> int:
    from pathlib import Path

    location = MarketDataLocation(load_universe(Path(universe)).markets, ArcticStore(uri=uri))
    with dg.DagsterInstance.get() as instance:
        result = location.ohlcv(entry, instance, first, last)
    print(result.run_id)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
