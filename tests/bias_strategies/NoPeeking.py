"""The same trading idea without the future: buys on a rising close below RSI 45. Its RSI needs more
than its 15 startup candles to settle, which the recursive check reports."""

import talib.abstract as ta
from freqtrade.strategy import IStrategy
from pandas import DataFrame


class NoPeeking(IStrategy):
    """Buys after a candle closed 0.3% higher while RSI is below 45."""

    timeframe = "5m"
    bias_checks = True
    pairs = ["ETH/BTC"]
    config_overrides = {"timerange": "20180115-20180125", "minimum_trade_amount": 3, "targeted_trade_amount": 3, "startup_candle": [100]}
    minimal_roi = {"0": 0.01}
    stoploss = -0.05
    startup_candle_count = 15

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["rsi"] = ta.RSI(dataframe, timeperiod=14)
        dataframe["previous_close"] = dataframe["close"].shift(1)
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe.loc[(dataframe["close"] > dataframe["previous_close"] * 1.003) & (dataframe["rsi"] < 45), "enter_long"] = 1
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe.loc[dataframe["rsi"] > 70, "exit_long"] = 1
        return dataframe
