"""Backtest assets on the offline sample: offline, logged to MLflow, identical to Freqtrade's own engine,
reproducible from their lineage, and ad-hoc runs that leave the canonical asset alone."""

import json

import pandas as pd
import pytest

from tests.backtest_support import BacktestLocation, backtest_offline, copy_strategies
from tests.market_data_support import (
    SAMPLE_DATA,
    SPOT_PAIRS,
    failure_message,
    materialization_metadata,
)
from tradai_assets.strategies import backtest_key, config_key

METRICS = {"profit_total_abs", "profit_total", "trades", "winrate", "max_drawdown", "sharpe", "sortino", "calmar",
           "cagr", "profit_factor", "expectancy"}


@pytest.fixture(scope="module")
def location(tmp_path_factory, module_instance):
    root = tmp_path_factory.mktemp("backtests")
    location = BacktestLocation(root, copy_strategies(root / "strategies", "SampleStrategy", "RsiMeanReversion"))
    location.load_sample(module_instance)
    return location


@pytest.fixture(scope="module")
def sample_run(location, module_instance):
    """SampleStrategy's config and backtest, materialised once with the network blocked."""
    result = backtest_offline(location, "SampleStrategy", module_instance)
    assert result.success, failure_message(result)
    return result


def test_backtest_materialises_offline_with_metrics_summary_plot_and_mlflow_run(location, sample_run):
    meta = materialization_metadata(sample_run, backtest_key("SampleStrategy"))
    assert METRICS <= set(meta)
    assert meta["trades"] == 102 and meta["profit_total_abs"] == pytest.approx(0.01240546, abs=1e-8)
    # The base wallet (0.2 BTC) fits three 0.05 BTC stakes: profit and drawdown are readable percentages.
    assert meta["profit_total"] == pytest.approx(0.01240546 / 0.2, rel=1e-4)
    assert 0.001 < meta["max_drawdown"] < 0.5
    # A profit over 19 days compounds to a positive CAGR: the account's start plus the trades' profit.
    assert meta["cagr"] == pytest.approx((1 + 0.01240546 / 0.2) ** (365 / 19) - 1, rel=1e-4) and meta["cagr"] > 0
    assert "SampleStrategy" in meta["summary"] and meta["timerange"] == "20180110-20180131"
    assert meta["equity_curve"].startswith("![equity curve of SampleStrategy](data:image/png;base64,")
    assert meta["mlflow_run"].startswith("http://127.0.0.1:5000/#/experiments/")

    params, tags, metrics = location.mlflow.run_record(meta["mlflow_run_id"])
    assert params["config_hash"] == materialization_metadata(sample_run, config_key("SampleStrategy"))["config_hash"]
    assert json.loads(params["pairs"]) == SPOT_PAIRS and params["timeframe"] == "5m"
    assert json.loads(params["data_versions"]) == {f"{p}|5m|spot": 0 for p in SPOT_PAIRS}
    assert {"strategy_source_hash", "markets_snapshot_hash", "freqtrade_version", "ccxt_version"} <= set(params)
    assert metrics["trades"] == 102 and METRICS <= set(metrics)
    client = location.mlflow._client()
    artifacts = {a.path for a in client.list_artifacts(meta["mlflow_run_id"])}
    assert artifacts == {"config.json", "markets.json", "trades.parquet", "stats.json", "SampleStrategy.py", "equity.png"}

    trades, equity, stats, lineage = location.store.read_backtest("SampleStrategy")
    assert len(trades) == 102 and stats["total_trades"] == 102
    assert lineage["mlflow_run_id"] == meta["mlflow_run_id"] and not equity.empty


def test_trades_identical_to_freqtrades_own_engine(location, sample_run, tmp_path):
    """Plain Backtesting on the sample's own feather files, same config, markets from the same snapshot."""
    from freqtrade.commands.optimize_commands import setup_optimize_configuration
    from freqtrade.enums import RunMode
    from freqtrade.optimize.backtesting import Backtesting

    from resources.freqtrade_runner import offline_exchange

    meta = materialization_metadata(sample_run, backtest_key("SampleStrategy"))
    run_dir = tmp_path / "mlflow"
    engine_config = json.loads(location.mlflow.download(meta["mlflow_run_id"], "config.json", run_dir).read_text())
    stored_config, _ = location.store.latest_config("SampleStrategy")
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({
        **stored_config, "timerange": engine_config["timerange"], "strategy": "SampleStrategy",
        "strategy_path": str(location.root / "strategies"), "backtest_cache": "none", "export": "none",
    }))
    config = setup_optimize_configuration(
        {"config": [str(config_file)], "datadir": str(SAMPLE_DATA), "user_data_dir": str(tmp_path)}, RunMode.BACKTEST
    )
    snapshot = location.arctic.markets_snapshot("binance", "spot", meta["markets_snapshot_hash"])
    exchange = offline_exchange(config, snapshot.payload["markets"], {})
    try:
        backtesting = Backtesting(config, exchange=exchange)
        backtesting.start()
    finally:
        Backtesting.cleanup()
    theirs = backtesting.all_bt_content["SampleStrategy"]["results"]

    ours, _, _, _ = location.store.read_backtest("SampleStrategy")
    ours = ours.assign(orders=[json.loads(o) for o in ours["orders"]])
    theirs = theirs.reset_index(drop=True).assign(
        orders=[json.loads(json.dumps(o, default=str)) for o in theirs["orders"]]
    )
    assert len(theirs) == 102
    pd.testing.assert_frame_equal(ours, theirs, check_exact=True)


def test_reproduce_job_reruns_from_lineage_and_matches(location, sample_run, module_instance):
    run_id = materialization_metadata(sample_run, backtest_key("SampleStrategy"))["mlflow_run_id"]
    result = location.run_job("reproduce_backtest", module_instance, "rerun_logged_backtest", {"mlflow_run_id": run_id})
    assert result.success, failure_message(result)
    output = result.output_for_node("rerun_logged_backtest")
    assert output is True


def test_adhoc_backtest_is_logged_and_leaves_the_canonical_asset(location, sample_run, module_instance):
    before = location.store.read_backtest("SampleStrategy")[3]["mlflow_run_id"]
    result = location.run_job("adhoc_backtest", module_instance, "backtest_with_overrides", {
        "strategy": "SampleStrategy", "timerange": "20180115-20180125", "pairs": ["ETH/BTC", "LTC/BTC"],
        "stake_amount": 0.01, "fee": 0.002,
    })
    assert result.success, failure_message(result)
    run_id = result.output_for_node("backtest_with_overrides")
    params, tags, _ = location.mlflow.run_record(run_id)
    assert tags["tradai.kind"] == "adhoc" and params["timerange"] == "20180115-20180125"
    assert json.loads(params["pairs"]) == ["ETH/BTC", "LTC/BTC"]
    config = location.store.config("SampleStrategy", params["config_hash"])
    assert config["stake_amount"] == 0.01 and config["fee"] == 0.002
    assert location.store.read_backtest("SampleStrategy")[3]["mlflow_run_id"] == before
    assert run_id != before
