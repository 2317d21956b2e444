"""The divergence probe: a 1m strategy whose trades a dry-run bot on the local simulated exchange makes
in minutes, and the bot config it runs with. ``bench/divergence.py record`` runs that bot and keeps its
Freqtrade trade database under ``tests/data/divergence/``; the divergence tests replay it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data" / "divergence"
PROBE = "DivergenceProbe"
PROBE_ID = "divergence-probe"  # tradai_core.keys.strategy_id(PROBE)
PAIRS = ["ETH/BTC", "LTC/BTC"]
DELAYED_PAIR = "LTC/BTC"  # the pair whose first entry the simulator fills late
# Entry signals on even minutes, exit signals on odd ones: a trade enters on candle m+1 after the
# signal candle m and exits one candle later, so the bot trades every two minutes.
PROBE_STRATEGY = """
from freqtrade.strategy import IStrategy


class DivergenceProbe(IStrategy):
    timeframe = "1m"
    startup_candle_count = 3
    minimal_roi = {"0": 10}
    stoploss = -0.5
    use_exit_signal = True

    def populate_indicators(self, dataframe, metadata):
        return dataframe

    def populate_entry_trend(self, dataframe, metadata):
        dataframe["enter_long"] = (dataframe["date"].dt.minute % 2 == 0).astype(int)
        return dataframe

    def populate_exit_trend(self, dataframe, metadata):
        dataframe["exit_long"] = (dataframe["date"].dt.minute % 2 == 1).astype(int)
        return dataframe

    def custom_entry_price(self, pair, trade, current_time, proposed_rate, entry_tag, side, **kwargs):
        # A limit a little above the ask: filled at once unless the book moves away (the planted fault).
        return proposed_rate * 1.003
"""
# The probe's stored config (what strategies/<Name>/config would hold); the deployment adds its settings.
PROBE_CONFIG: dict[str, Any] = {
    "exchange": {"name": "binance", "key": "", "secret": "", "pair_whitelist": PAIRS},
    "stake_currency": "BTC",
    "stake_amount": 0.01,
    "dry_run_wallet": 1,
    "max_open_trades": 2,
    "timeframe": "1m",
    "pairlists": [{"method": "StaticPairList"}],
    "entry_pricing": {
        "price_side": "other",
        "use_order_book": False,
        "order_book_top": 1,
        "price_last_balance": 0.0,
        "check_depth_of_market": {"enabled": False, "bids_to_ask_delta": 1},
    },
    "exit_pricing": {"price_side": "other", "use_order_book": False, "order_book_top": 1},
    "unfilledtimeout": {"entry": 10, "exit": 10, "unit": "minutes"},
    "internals": {"process_throttle_secs": 1, "heartbeat_interval": 60},
}
# The planted fault: the simulator's order book for the pair stands 1% away for this many depth
# requests (about one a second while the order is open), so the entry fills a candle or more late.
DELAY_RULE = {"path": "/api/v3/depth", "symbol": "LTCBTC", "book_shift_bps": 100, "times": 80}


def write_probe(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{PROBE}.py"
    path.write_text(PROBE_STRATEGY)
    return path


# --- The replay's inputs, as the platform would hold them after the recorded bot-day ----------------


def recording(label: str) -> dict[str, Any]:
    """The recorded run ``label`` (clean or delayed): its window and the bot database's path."""
    import json

    meta = json.loads((DATA / f"{label}.json").read_text())
    return {**meta, "database": DATA / f"{label}.sqlite"}


def record_deployment(instance, name: str, config_hash: str, at: float, bot_id: str = PROBE_ID,
                      pairs: list[str] = PAIRS) -> None:
    """The deployment's materialisation as ``strategies/<Name>/deployment`` records it, dated ``at``
    (the bot was deployed before it traded; the instance is younger than the recording)."""
    import dagster as dg
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
    from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID

    from tradai_core.keys import deployment_key

    materialization = dg.AssetMaterialization(
        asset_key=deployment_key(name),
        metadata={
            "mode": "dry_run",
            "strategy_id": bot_id,
            "config_hash": config_hash,
            "desired": dg.MetadataValue.json(
                {"mode": "dry_run", "exchange_secret": None, "stake_amount": 0.01, "pairs": pairs}
            ),
        },
    )
    instance.report_dagster_event(
        DagsterEvent(
            event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
            job_name=RUNLESS_JOB_NAME,
            event_specific_data=StepMaterializationData(materialization),
        ),
        run_id=RUNLESS_RUN_ID,
        timestamp=at,
    )


def sync_probe_candles(tmp: Path, fake, instance, day: str):
    """The simulated exchange's markets (the ``markets`` asset) and its closed 1m candles of ``day``
    (the market-data client the ``ohlcv`` asset pages with) into ArcticDB. The ``ohlcv`` asset itself
    has no partition for a day until the day is over, and the recording may be from today."""
    import pandas as pd

    from resources.arctic import ArcticStore
    from tests.market_data_support import MarketDataLocation, NoWaitExchange, write_universe
    from tradai_core.candles import candle_symbol, frame_from_rows

    entry = {
        "exchange": "binance",
        "market_type": "spot",
        "pairs": PAIRS,
        "timeframes": ["1m"],
        "start": day,
        "archive_url": None,
    }
    tmp.mkdir(parents=True, exist_ok=True)
    universe = write_universe(tmp / "universe.yaml", [entry])
    exchange = NoWaitExchange(ccxt_config={"binance": {"urls": fake.ccxt_config()["urls"], "timeout": 10000}})
    location = MarketDataLocation(universe, ArcticStore(uri=f"lmdb://{tmp / 'arctic'}"), exchange)
    assert location.markets("binance_spot", instance).success
    client = exchange.client("binance", "spot")
    try:
        now_ms, _ = client.server_time_ms()
        start = pd.Timestamp(day, tz="UTC")
        end = min(start + pd.Timedelta(days=1), pd.Timestamp(now_ms, unit="ms", tz="UTC").floor("1min"))
        for pair in PAIRS:
            rows = client.fetch_candles(pair, "1m", "spot", int(start.timestamp() * 1000), int(end.timestamp() * 1000))
            frame = frame_from_rows(rows, "spot")
            frame = frame[frame.index < end]
            location.arctic.replace_window(
                "binance", "spot", candle_symbol(pair, "1m", "spot"), frame, start, end, {"source": "simulator"}
            )
    finally:
        client.close()
    return location.arctic
