"""Freqtrade's lookahead- and recursive-analysis as asset checks of the backtest, for strategies that
opt in: a strategy that reads future candles is flagged, one that does not passes."""

import shutil
from pathlib import Path

import dagster as dg
import pytest

from tests.backtest_support import BacktestLocation, backtest_offline, copy_strategies
from tests.market_data_support import check_results, failure_message
from tradai_assets.definitions import build_definitions
from tradai_assets.strategies import backtest_key

BIAS_STRATEGIES = Path(__file__).parent / "bias_strategies"


def strategies_dir(destination: Path) -> Path:
    copy_strategies(destination, "EmaCross")  # does not opt in
    for name in ("PeeksAhead", "NoPeeking"):
        shutil.copyfile(BIAS_STRATEGIES / f"{name}.py", destination / f"{name}.py")
    return destination


def test_only_strategies_that_opt_in_get_bias_checks(tradai_home, tmp_path, monkeypatch):
    monkeypatch.setenv("TRADAI_STRATEGIES", str(strategies_dir(tmp_path / "strategies")))
    defs = build_definitions()
    checks = {(k.asset_key, k.name) for c in defs.asset_checks for k in c.check_keys if k.asset_key.path[0] == "strategies"}
    assert checks == {
        (backtest_key(n), check) for n in ("PeeksAhead", "NoPeeking") for check in ("no_lookahead_bias", "indicators_independent_of_startup")
    }


@pytest.fixture(scope="module")
def location(tmp_path_factory, module_instance):
    root = tmp_path_factory.mktemp("bias")
    location = BacktestLocation(root, strategies_dir(root / "strategies"))
    location.load_sample(module_instance)
    return location


def backtest_with_checks(location, module_instance, name):
    result = backtest_offline(location, name, module_instance)
    assert [m for m in result.get_asset_materialization_events() if m.asset_key == backtest_key(name)]
    return result, check_results(result)


def test_a_strategy_that_peeks_at_future_candles_is_flagged(location, module_instance):
    result, checks = backtest_with_checks(location, module_instance, "PeeksAhead")
    # The check is blocking: the run fails on it.
    assert not result.success
    assert "blocking asset check failed with ERROR severity" in failure_message(result)
    assert "strategies/PeeksAhead/backtest: no_lookahead_bias" in failure_message(result)
    lookahead = checks["no_lookahead_bias"]
    assert not lookahead.passed and lookahead.severity == dg.AssetCheckSeverity.ERROR
    meta = {k: v.value for k, v in lookahead.metadata.items()}
    assert "next_close" in meta["biased_indicators"] and meta["analysed_trades"] == 3
    assert "PeeksAhead looks ahead" in lookahead.description


def test_a_strategy_that_does_not_peek_passes_and_its_short_startup_is_reported(location, module_instance):
    result, checks = backtest_with_checks(location, module_instance, "NoPeeking")
    assert result.success, failure_message(result)
    lookahead = checks["no_lookahead_bias"]
    assert lookahead.passed, lookahead.description
    assert {k: v.value for k, v in lookahead.metadata.items()}["biased_indicators"] == []
    recursive = checks["indicators_independent_of_startup"]
    # RSI's smoothing has not settled after 15 candles; with 100 it has.
    assert not recursive.passed and recursive.severity == dg.AssetCheckSeverity.WARN
    assert "rsi (" in recursive.description and "startup_candle_count 15" in recursive.description
    differences = {k: v.value for k, v in recursive.metadata.items()}["relative_differences"]
    assert abs(differences["rsi"]["15"]) > 0.01 > abs(differences["rsi"]["100"])
