"""Starting points for ``tradai strategy new``: plain Freqtrade strategies that backtest on the shipped
sample as they are (5m candles of the BTC pairs), one class per file: the example strategies under a
new name, or a blank one."""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from string import Template

from tradai_core import settings
from tradai_core.strategy_discovery import discover_strategies

CLASS_NAME = re.compile(r"^[A-Z][A-Za-z0-9]{0,79}$")

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

# The rsi and ema templates are the shipped example strategies themselves, under the new class name.
EXAMPLES = {"rsi": "RsiMeanReversion", "ema": "EmaCross"}
TEMPLATES = (*EXAMPLES, "blank")


def render(template: str, class_name: str) -> str:
    if template == "blank":
        return BLANK.substitute(class_name=class_name)
    example = EXAMPLES[template]
    source = (settings.REPO_ROOT / "strategies" / f"{example}.py").read_text(encoding="utf-8")
    renamed, count = re.subn(rf"^class {example}\(", f"class {class_name}(", source, flags=re.MULTILINE)
    if count != 1:
        raise StrategyFileError(f"the example strategy {example} no longer defines class {example}")
    return renamed


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
        handle.write(render(template, class_name))
    return path
