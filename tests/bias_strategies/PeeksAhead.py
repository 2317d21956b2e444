"""A strategy that reads the future: it buys when the next candle closes higher. Used to prove the
lookahead check flags it."""

import talib.abstract as ta
from freqtrade.strategy import IStrategy
from pandas import DataFrame


class PeeksAhead(IStrategy):
    """Buys when the next candle will close 0.3% higher (it cannot know that live)."""

    timeframe = "5m"
    bias_checks = True
    pairs = ["ETH/BTC"]
    # Few trades and one extra startup size keep the analyses short.
    config_overrides = {"timerange": "20180115-20180125", "minimum_trade_amount": 3, "targeted_trade_amount": 3, "startup_candle": [100]}
    minimal_roi = {"0": 0.01}
    stoploss = -0.05
    startup_candle_count = 30

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["rsi"] = ta.RSI(dataframe, timeperiod=14)
        dataframe["next_close"] = dataframe["close"].shift(-1)
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe.loc[(dataframe["next_close"] > dataframe["close"] * 1.003) & (dataframe["rsi"] < 45), "enter_long"] = 1
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe.loc[dataframe["rsi"] > 70, "exit_long"] = 1
        return dataframe
