"""RSI mean reversion: buy a pair that is oversold below its lower Bollinger band, sell when it
has reverted (RSI back above its middle, or the price back at the band's mean)."""

import talib.abstract as ta
from pandas import DataFrame
from technical import qtpylib

from freqtrade.strategy import IStrategy, IntParameter


class RsiMeanReversion(IStrategy):
    """Buys oversold dips (RSI below 30 under the lower Bollinger band) and sells the reversion."""

    INTERFACE_VERSION = 3
    category = "mean_reversion"

    timeframe = "5m"
    can_short = False
    minimal_roi = {"0": 0.03, "60": 0.015, "180": 0.005}
    stoploss = -0.06
    startup_candle_count = 40
    process_only_new_candles = True

    rsi_entry = IntParameter(15, 40, default=30, space="buy")
    rsi_exit = IntParameter(45, 75, default=55, space="sell")

    def version(self) -> str:
        return "1.0"

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["rsi"] = ta.RSI(dataframe, timeperiod=14)
        bands = qtpylib.bollinger_bands(qtpylib.typical_price(dataframe), window=20, stds=2)
        dataframe["bb_lower"] = bands["lower"]
        dataframe["bb_middle"] = bands["mid"]
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe.loc[
            (dataframe["rsi"] < self.rsi_entry.value)
            & (dataframe["close"] < dataframe["bb_lower"])
            & (dataframe["volume"] > 0),
            ["enter_long", "enter_tag"],
        ] = (1, "rsi_oversold")
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe.loc[
            ((dataframe["rsi"] > self.rsi_exit.value) | (dataframe["close"] > dataframe["bb_middle"]))
            & (dataframe["volume"] > 0),
            ["exit_long", "exit_tag"],
        ] = (1, "reverted")
        return dataframe
