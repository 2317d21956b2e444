"""Bad input fails the asset at fault with a clear message and loses nothing; a stake below the
market minimum ends with no trades and a warning rather than a crash."""

import pytest

from tests.backtest_support import BacktestLocation, copy_strategies
from tests.market_data_support import failure_message, materialization_metadata
from tradai_assets.strategies import backtest_key


@pytest.fixture(scope="module")
def location(tmp_path_factory, module_instance):
    root = tmp_path_factory.mktemp("bad-input")
    location = BacktestLocation(root, copy_strategies(root / "strategies", "EmaCross"))
    location.load_sample(module_instance)
    return location


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"timerange": "20180120-20180115"}, "timerange '20180120-20180115' is empty or reversed"),
        ({"timerange": "20180115-20180115"}, "timerange '20180115-20180115' is empty or reversed"),
        ({"timerange": "20170101-20170201"},
         "reaches outside the stored candles: stored binance spot 5m candles of 10 pairs span 2018-01-10 04:55 to 2018-01-30 04:55 UTC"),
        ({"exchange": {"pair_whitelist": ["ETH/BTC", "DOGE/BTC"]}},
         "pair(s) DOGE/BTC absent from the binance spot markets snapshot"),
    ],
)
def test_bad_backtest_inputs_fail_the_backtest_naming_the_problem(location, module_instance, overrides, message):
    result = location.backtest("EmaCross", module_instance, overrides)
    assert not result.success
    assert message in failure_message(result)
    assert not [m for m in result.get_asset_materialization_events() if m.asset_key == backtest_key("EmaCross")]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_open_trade": 3}, "unknown Freqtrade config key(s) max_open_trade"),
        ({"exchange": {"nmae": "kraken"}}, "unknown Freqtrade config key(s) exchange.nmae"),
        ({"stake_amount": "lots"}, "config key stake_amount: 'lots' does not match 'unlimited'"),
        ({"max_open_trades": "three"}, "config key max_open_trades: 'three' is not of type 'integer', 'number'"),
    ],
)
def test_bad_config_overrides_fail_the_config_and_keep_the_stored_one(location, module_instance, overrides, message):
    assert location.config("EmaCross", module_instance).success
    stored = location.store.latest_config("EmaCross")
    result = location.config("EmaCross", module_instance, overrides)
    assert not result.success
    assert message in failure_message(result)
    assert location.store.latest_config("EmaCross") == stored


def test_stake_below_market_minimum_gives_no_trades_and_a_warning(location, module_instance):
    result = location.backtest("EmaCross", module_instance, {"stake_amount": 0.0001, "exchange": {"pair_whitelist": ["LTC/BTC"]}})
    assert result.success, failure_message(result)
    meta = materialization_metadata(result, backtest_key("EmaCross"))
    assert meta["trades"] == 0
    assert any("LTC/BTC: stake 0.0001 BTC is below the market's minimum order" in w for w in meta["warnings"])
    assert "the backtest made no trades" in meta["warnings"]
