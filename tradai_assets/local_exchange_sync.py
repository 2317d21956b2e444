"""``sync_local_exchange_candles``: the closed candles of the local simulated exchange, for the pairs its
bots trade, into ArcticDB (``make dev`` only: defined when ``TRADAI_LOCAL_EXCHANGE_URL`` is set locally).

Local bots trade on the simulated exchange (docs/bots.md), whose candles no universe entry stores: the
shipped entries are the offline sample of 2018. The divergence report replays a bot's day on the stored
candles, so they must be the ones the bot saw. The ``local_exchange_candles`` sensor
(:mod:`sensors.local_exchange`) asks for this job whenever a running bot's newest stored candle is behind
the exchange's last closed one; the job fetches what is missing through the market-data client (the same
paging and retries as the ``ohlcv`` assets) and writes it under the library's writer lock, one ArcticDB
version per pair.
"""

import os

import dagster as dg
import pandas as pd

from resources.arctic import ArcticStore
from resources.aws_contract import EnvVar
from resources.exchange import ExchangeResource
from tradai_core.binance_urls import ccxt_config
from tradai_core.candles import candle_symbol, clean_candles, frame_from_rows, timeframe_delta

LOCAL_EXCHANGE_SYNC_JOB = "sync_local_exchange_candles"

class SyncedSeries(dg.Config):
    exchange: str
    market_type: str
    timeframe: str
    pairs: list[str]
    since: str  # ISO time: the first candle wanted when none after it is stored

class LocalExchangeSyncConfig(dg.Config):
    series: list[SyncedSeries]

def local_exchange_url() -> str | None:
    return os.environ.get(EnvVar.LOCAL_EXCHANGE_URL, "").strip() or None

def sync_series(
    arctic: ArcticStore, exchange: ExchangeResource, url: str, series: SyncedSeries, log
) -> dict[str, int]:
    """New closed candles per pair written for one series (0 when none was missing)."""
    if series.exchange != "binance":
        raise dg.Failure(f"the local exchange simulates binance, not {series.exchange}")
    step = timeframe_delta(series.timeframe)
    candle_type = "futures" if series.market_type == "futures" else "spot"
    client = exchange.client("binance", series.market_type, ccxt_config=ccxt_config(url, series.market_type),
                             on_retry=log.warning)
    written = {}
    try:
        now_ms, _ = client.server_time_ms()
        end = pd.Timestamp(now_ms, unit="ms", tz="UTC").floor(step)  # candles opening before it have closed
        for pair in series.pairs:
            symbol = candle_symbol(pair, series.timeframe, candle_type)
            last = arctic.last_candle_time(series.exchange, series.market_type, symbol)
            start = pd.Timestamp(series.since).floor(step)
            if last is not None and last + step > start:
                start = last + step
            if start >= end:
                written[pair] = 0
                continue
            rows = client.fetch_candles(pair, series.timeframe, candle_type, int(start.timestamp() * 1000),
                                        int(end.timestamp() * 1000))
            frame, _ = clean_candles(frame_from_rows(rows, candle_type), series.timeframe, candle_type)
            frame = frame[(frame.index >= start) & (frame.index < end)]
            with arctic.candle_writer(series.exchange, series.market_type, on_wait=log.info):
                arctic.replace_window(series.exchange, series.market_type, symbol, frame, start, end,
                                      {"source": f"local exchange {url}"})
            written[pair] = len(frame)
            log.info(f"{pair} {series.timeframe}: {len(frame)} candles {start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M} UTC "
                     f"from the local exchange")
    finally:
        client.close()
    return written

@dg.op(name="sync_local_exchange_candles_op")
def sync_local_exchange_candles_op(
    context: dg.OpExecutionContext, config: LocalExchangeSyncConfig, arctic: ArcticStore, exchange: ExchangeResource
) -> None:
    url = local_exchange_url()
    if url is None:
        raise dg.Failure(f"{EnvVar.LOCAL_EXCHANGE_URL} is not set: there is no local exchange to sync from")
    counts = {}
    for series in config.series:
        written = sync_series(arctic, exchange, url, series, context.log)
        counts.update({f"{series.exchange} {series.market_type} {pair} {series.timeframe}": n
                       for pair, n in written.items()})
    context.add_output_metadata({"local_exchange": url, "candles_written": dg.MetadataValue.json(counts),
                                 "total": sum(counts.values())})

@dg.job(name=LOCAL_EXCHANGE_SYNC_JOB,
        description="The local simulated exchange's closed candles for the pairs its bots trade, into ArcticDB "
        "(make dev; asked for by the local_exchange_candles sensor).")
def sync_local_exchange_candles():
    sync_local_exchange_candles_op()
