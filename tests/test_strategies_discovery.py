"""Discovery: every strategy class becomes a config and a backtest asset when the code location loads;
a broken strategy fails its own assets naming the file and the reason, and the rest still load."""

import dagster as dg
import pytest

from tests.backtest_support import BacktestLocation, copy_strategies
from tests.market_data_support import failure_message, materialization_metadata
from tradai_assets.definitions import build_definitions
from tradai_assets.strategies import backtest_key, config_key
from tradai_core.strategy_discovery import discover_strategies

HEADER = "from freqtrade.strategy import IStrategy\nfrom pandas import DataFrame\n\n"
METHODS = '''
    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["enter_long"] = 0
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["exit_long"] = 0
        return dataframe
'''
BROKEN = {
    "ImportFails": HEADER + "import not_an_installed_module\n\nclass ImportFails(IStrategy):\n    minimal_roi = {'0': 1}\n    stoploss = -0.1\n" + METHODS,
    "SyntaxBroken": HEADER + "class SyntaxBroken(IStrategy):\n    stoploss = -0.1\n    def populate_indicators(self, dataframe, metadata)\n        return dataframe\n",
    "NoExit": HEADER + "class NoExit(IStrategy):\n    minimal_roi = {'0': 1}\n    stoploss = -0.1\n" + METHODS.split("    def populate_exit_trend")[0],
    "BadTimeframe": HEADER + "class BadTimeframe(IStrategy):\n    timeframe = '7m'\n    minimal_roi = {'0': 1}\n    stoploss = -0.1\n" + METHODS,
    "RaisesInPopulate": HEADER + "class RaisesInPopulate(IStrategy):\n    minimal_roi = {'0': 1}\n    stoploss = -0.1\n"
    + METHODS.replace("        return dataframe\n", "        raise ValueError('indicator blew up')\n", 1),
}


def test_example_strategies_load_as_asset_groups_with_metadata(tradai_home):
    defs = build_definitions()
    for name in ("SampleStrategy", "RsiMeanReversion", "EmaCross"):
        backtest = defs.resolve_assets_def(backtest_key(name))
        assert backtest.group_names_by_key[backtest_key(name)] == f"strategy_{name}"
        assert defs.resolve_assets_def(config_key(name)) is not None
        spec = backtest.specs_by_key[backtest_key(name)]
        assert {config_key(name), dg.AssetKey(["markets", "binance", "spot"]), dg.AssetKey(["ohlcv", "binance", "spot"])} <= {d.asset_key for d in spec.deps}
    meta = defs.resolve_assets_def(backtest_key("RsiMeanReversion")).specs_by_key[backtest_key("RsiMeanReversion")].metadata
    assert meta["version"] == "1.0" and meta["category"] == "mean_reversion" and meta["timeframe"] == "5m"


def test_discovery_reads_metadata_without_importing(tmp_path):
    (tmp_path / "Meta.py").write_text(
        HEADER + 'class Base(IStrategy):\n    """Shared base."""\n    category = "trend"\n    stoploss = -0.1\n' + METHODS
        + '\nclass Child(Base):\n    timeframe = "1h"\n    pairs = ["ETH/BTC"]\n    description = "A child"\n'
        + '    def version(self):\n        return "2.1"\n\nclass NotAStrategy:\n    timeframe = "1m"\n'
    )
    (tmp_path / "_helpers.py").write_text("class Ignored(IStrategy):\n    pass\n")
    specs = {s.name: s for s in discover_strategies(tmp_path)}
    assert set(specs) == {"Base", "Child"}
    child = specs["Child"]
    assert (child.category, child.timeframe, child.pairs, child.description, child.version) == ("trend", "1h", ["ETH/BTC"], "A child", "2.1")
    assert specs["Base"].description == "Shared base." and child.problem is None


@pytest.fixture(scope="module")
def location(tmp_path_factory, module_instance):
    root = tmp_path_factory.mktemp("broken")
    strategies = copy_strategies(root / "strategies", "RsiMeanReversion")
    for name, source in BROKEN.items():
        (strategies / f"{name}.py").write_text(source)
    location = BacktestLocation(root, strategies)
    location.load_sample(module_instance)
    return location


@pytest.mark.parametrize(
    ("name", "failing", "reason"),
    [
        ("SyntaxBroken", config_key, "SyntaxBroken.py:6: cannot be parsed"),
        ("BadTimeframe", config_key, "timeframe '7m' is not stored for binance spot"),
        ("ImportFails", backtest_key, "ImportFails.py: cannot import (ModuleNotFoundError: No module named 'not_an_installed_module')"),
        ("NoExit", backtest_key, "`populate_exit_trend` or `populate_sell_trend` must be implemented"),
        ("RaisesInPopulate", backtest_key, "ValueError: indicator blew up"),
    ],
)
def test_broken_strategy_fails_its_own_asset_naming_file_and_reason(location, module_instance, name, failing, reason):
    result = location.backtest(name, module_instance)
    assert not result.success
    message = failure_message(result)
    assert reason in message and f"{name}.py" in message
    assert {e.step_key for e in result.all_events if e.is_step_failure} == {failing(name).to_python_identifier()}


def test_a_working_strategy_beside_broken_ones_backtests(location, module_instance):
    assert {s.name for s in location.strategies.specs} == {"RsiMeanReversion", *BROKEN}
    result = location.backtest("RsiMeanReversion", module_instance)
    assert result.success, failure_message(result)
    assert materialization_metadata(result, backtest_key("RsiMeanReversion"))["trades"] > 0
