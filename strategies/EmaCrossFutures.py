"""EMA cross on a perpetual future, long and short with 3x leverage: long while the fast EMA is above
the slow one, short while it is below. Positions pay or receive funding every 8 hours."""

import talib.abstract as ta
from pandas import DataFrame
from technical import qtpylib

from freqtrade.strategy import IStrategy, IntParameter


class EmaCrossFutures(IStrategy):
    """Trend following on XRP/USDT:USDT perpetual futures, both directions, 3x isolated leverage."""

    INTERFACE_VERSION = 3
    category = "trend"
    pairs = ["XRP/USDT:USDT"]
    # The futures sample has funding rates and mark prices for 2021-11-18 onwards.
    config_overrides = {
        "trading_mode": "futures",
        "margin_mode": "isolated",
        "stake_currency": "USDT",
        "stake_amount": 100,
        "dry_run_wallet": 1000,  # USDT: the base config's wallet is in BTC
        "max_open_trades": 1,
        "timerange": "20211118-20211121",
        # Binance futures configs need order-book pricing, even in backtests.
        "entry_pricing": {"use_order_book": True},
        "exit_pricing": {"use_order_book": True},
    }

    timeframe = "5m"
    can_short = True
    minimal_roi = {"0": 0.2}
    stoploss = -0.1
    startup_candle_count = 60

    fast_period = IntParameter(5, 20, default=12, space="buy")
    slow_period = IntParameter(21, 60, default=48, space="buy")

    def version(self) -> str:
        return "1.0"

    def leverage(self, pair: str, current_time, current_rate: float, proposed_leverage: float,
                 max_leverage: float, entry_tag, side: str, **kwargs) -> float:
        return min(3.0, max_leverage)

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["ema_fast"] = ta.EMA(dataframe, timeperiod=self.fast_period.value)
        dataframe["ema_slow"] = ta.EMA(dataframe, timeperiod=self.slow_period.value)
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        up = qtpylib.crossed_above(dataframe["ema_fast"], dataframe["ema_slow"]) & (dataframe["volume"] > 0)
        down = qtpylib.crossed_below(dataframe["ema_fast"], dataframe["ema_slow"]) & (dataframe["volume"] > 0)
        dataframe.loc[up, ["enter_long", "enter_tag"]] = (1, "ema_cross_up")
        dataframe.loc[down, ["enter_short", "enter_tag"]] = (1, "ema_cross_down")
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe.loc[qtpylib.crossed_below(dataframe["ema_fast"], dataframe["ema_slow"]), ["exit_long", "exit_tag"]] = (1, "ema_cross_down")
        dataframe.loc[qtpylib.crossed_above(dataframe["ema_fast"], dataframe["ema_slow"]), ["exit_short", "exit_tag"]] = (1, "ema_cross_up")
        return dataframe
