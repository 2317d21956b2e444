"""Freqtrade's own CLI, offline: ``freqtrade`` with the markets (and leverage tiers) of a snapshot file.

    python -m bench.freqtrade_offline_cli SNAPSHOT.json backtesting --config config.json ...

Freqtrade's CLI always loads markets from the live exchange. This launcher replaces the two methods
of Freqtrade's Binance class that reach it (``_api_reload_markets``, ``load_leverage_tiers``) with
ones serving the snapshot, then runs ``freqtrade.main.main`` with the remaining arguments: every
other line of the CLI's code path is Freqtrade's.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path


def main() -> None:
    snapshot = json.loads(Path(sys.argv[1]).read_text())
    markets, tiers = snapshot["markets"], snapshot.get("leverage_tiers", {})

    from freqtrade.exchange import Binance
    from freqtrade.main import main as freqtrade_main

    async def _api_reload_markets(self, reload: bool = False) -> None:
        self._api_async.set_markets(copy.deepcopy(markets))

    def load_leverage_tiers(self) -> dict:
        return copy.deepcopy(tiers)

    Binance._api_reload_markets = _api_reload_markets
    Binance.load_leverage_tiers = load_leverage_tiers
    freqtrade_main(sys.argv[2:])


if __name__ == "__main__":
    main()
