"""EMA cross trend following: long while the fast EMA is above the slow one and the trend filter
agrees, out when it crosses back below."""

import talib.abstract as ta
from pandas import DataFrame
from technical import qtpylib

from freqtrade.strategy import IStrategy, IntParameter


class EmaCross(IStrategy):
    """Follows trends: enters when EMA(12) crosses above EMA(26) above EMA(100), exits on the cross back."""

    INTERFACE_VERSION = 3
    category = "trend"

    timeframe = "5m"
    can_short = False
    minimal_roi = {"0": 0.10}
    stoploss = -0.05
    trailing_stop = True
    trailing_stop_positive = 0.01
    trailing_stop_positive_offset = 0.02
    trailing_only_offset_is_reached = True
    startup_candle_count = 120

    fast_period = IntParameter(5, 20, default=12, space="buy")
    slow_period = IntParameter(21, 60, default=26, space="buy")

    def version(self) -> str:
        return "1.0"

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["ema_fast"] = ta.EMA(dataframe, timeperiod=self.fast_period.value)
        dataframe["ema_slow"] = ta.EMA(dataframe, timeperiod=self.slow_period.value)
        dataframe["ema_trend"] = ta.EMA(dataframe, timeperiod=100)
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe.loc[
            qtpylib.crossed_above(dataframe["ema_fast"], dataframe["ema_slow"])
            & (dataframe["close"] > dataframe["ema_trend"])
            & (dataframe["volume"] > 0),
            ["enter_long", "enter_tag"],
        ] = (1, "ema_cross_up")
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe.loc[
            qtpylib.crossed_below(dataframe["ema_fast"], dataframe["ema_slow"]) & (dataframe["volume"] > 0),
            ["exit_long", "exit_tag"],
        ] = (1, "ema_cross_down")
        return dataframe
