"""Starting points for ``tradai strategy new``: plain Freqtrade strategies that backtest on the shipped
sample as they are (5m candles of the BTC pairs), one class per file."""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from string import Template

from tradai_assets.strategy_discovery import discover_strategies

CLASS_NAME = re.compile(r"^[A-Z][A-Za-z0-9]{0,79}$")

RSI = Template('''"""${class_name}: RSI mean reversion. Buys a pair that is oversold below its lower Bollinger band
and sells once it has reverted."""

import talib.abstract as ta
from pandas import DataFrame
from technical import qtpylib

from freqtrade.strategy import IntParameter, IStrategy


class ${class_name}(IStrategy):
    """Buys oversold dips (RSI under its entry level, close under the lower band); sells the reversion."""

    INTERFACE_VERSION = 3
    category = "mean_reversion"

    timeframe = "5m"
    can_short = False
    minimal_roi = {"0": 0.03, "60": 0.015, "180": 0.005}
    stoploss = -0.06
    startup_candle_count = 40

    rsi_entry = IntParameter(15, 40, default=30, space="buy")
    rsi_exit = IntParameter(45, 75, default=55, space="sell")

    def version(self) -> str:
        return "0.1"

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
''')

EMA = Template('''"""${class_name}: EMA cross trend following. Long while the fast EMA is above the slow one and the
trend filter agrees; out when it crosses back below."""

import talib.abstract as ta
from pandas import DataFrame
from technical import qtpylib

from freqtrade.strategy import IntParameter, IStrategy


class ${class_name}(IStrategy):
    """Enters when the fast EMA crosses above the slow EMA above the 100-candle EMA; exits on the cross back."""

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
        return "0.1"

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
''')

BLANK = Template('''"""${class_name}: describe the idea in one paragraph; it is shown on the strategy's assets."""

from pandas import DataFrame

from freqtrade.strategy import IStrategy


class ${class_name}(IStrategy):
    """One line on what the strategy does."""

    INTERFACE_VERSION = 3
    category = "unsorted"

    timeframe = "5m"
    can_short = False
    minimal_roi = {"0": 0.05}
    stoploss = -0.05
    startup_candle_count = 30

    def version(self) -> str:
        return "0.1"

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        # Compute indicators as new columns, e.g. with talib.abstract or technical.qtpylib.
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        # Set enter_long = 1 (and optionally enter_tag) on the candles to buy. None yet: no trades.
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        # Set exit_long = 1 (and optionally exit_tag) on the candles to sell; ROI and stoploss exit too.
        return dataframe
''')

TEMPLATES = {"rsi": RSI, "ema": EMA, "blank": BLANK}


class StrategyFileError(ValueError):
    """The strategy cannot be written; the message says why."""


def new_strategy(directory: Path, class_name: str, template: str) -> Path:
    """Write ``directory/<class_name>.py`` from a template; refuses a bad name, an existing file, or a
    class name another file already defines (the code location would reject the duplicate)."""
    if not CLASS_NAME.match(class_name) or keyword.iskeyword(class_name):
        raise StrategyFileError(
            f"{class_name!r} is not a valid strategy class name: start with a capital letter, then letters and digits "
            "(e.g. MyRsiStrategy)"
        )
    if template not in TEMPLATES:
        raise StrategyFileError(f"unknown template {template!r}; choose one of {', '.join(TEMPLATES)}")
    path = directory / f"{class_name}.py"
    if path.exists():
        raise StrategyFileError(f"{path} already exists")
    for spec in discover_strategies(directory) if directory.is_dir() else []:
        if spec.name == class_name:
            raise StrategyFileError(f"strategy class {class_name} is already defined in {spec.file}")
    directory.mkdir(parents=True, exist_ok=True)
    # "x": never overwrite a file that appeared since the check above.
    with path.open("x", encoding="utf-8") as handle:
        handle.write(TEMPLATES[template].substitute(class_name=class_name))
    return path
