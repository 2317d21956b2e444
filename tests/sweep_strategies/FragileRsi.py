"""RSI mean reversion whose entry threshold 13 raises: a sweep trial that fails on its own."""

import talib.abstract as ta
from freqtrade.strategy import BooleanParameter, CategoricalParameter, DecimalParameter, IntParameter, IStrategy
from pandas import DataFrame


class FragileRsi(IStrategy):
    """Buys RSI below its threshold, sells above its exit; refuses the threshold 13."""

    timeframe = "5m"
    minimal_roi = {"0": 0.02}
    stoploss = -0.05
    startup_candle_count = 30

    buy_rsi = IntParameter(10, 45, default=30, space="buy")
    buy_volume_factor = DecimalParameter(0.0, 2.0, default=0.0, decimals=1, space="buy", optimize=False)
    sell_rsi = IntParameter(50, 80, default=60, space="sell")
    sell_signal = BooleanParameter(default=True, space="sell", optimize=False)
    sell_band = CategoricalParameter(["none", "upper"], default="none", space="sell", optimize=False)

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["rsi"] = ta.RSI(dataframe, timeperiod=14)
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        if self.buy_rsi.value == 13:
            raise ValueError("buy_rsi 13 is unlucky")
        dataframe.loc[(dataframe["rsi"] < self.buy_rsi.value) & (dataframe["volume"] > 0), "enter_long"] = 1
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        if self.sell_signal.value:
            dataframe.loc[dataframe["rsi"] > self.sell_rsi.value, "exit_long"] = 1
        return dataframe
